//! Helpers that bench/bench.py drives; the Python harness does the timing, the repetitions and
//! the table. The subcommands:
//!
//! * `write PATH COUNT`: COUNT 1-byte `write(2)` calls to PATH (created/truncated), timed
//!   around the loop only; prints `{"writes":COUNT,"ns":ELAPSED}`.
//! * `getppid COUNT`: COUNT `getppid(2)` calls, a syscall the sidecar's programs ignore;
//!   prints `{"calls":COUNT,"ns":ELAPSED,"cpu_ns":CPU}`.
//! * `unfiltered DIR`: loads diffkeeper's own `dk_sys_enter` and `dk_sys_exit` programs (the
//!   sidecar's tracepoint mode, same object bytes) with DIR as the only watched root. With DIR = the root of a
//!   file system, the in-kernel filter rejects no write on it, so every write there pays the
//!   full parent walk, path assembly and ring buffer submit: the "filter removed" baseline.
//!   Prints `ready prog_id=N,M`, drains the ring buffer until stdin closes, then `events=N`.
//! * `empty OBJECT`: attaches `dk_bench_empty_enter` and `dk_bench_empty` from OBJECT
//!   (bench/empty_syscalls.bpf.c, empty programs) to the raw tracepoints the sidecar's
//!   tracepoint mode uses, sys_enter and sys_exit: the floor any program there pays. Prints
//!   `ready prog_id=N,M`. `empty-exit OBJECT`: the sys_exit one alone, the floor of the
//!   tracepoint mode before it also attached sys_enter (for before/after comparisons).
//! * `record SRC STORE ROOT`: records SRC's changed entries into the content store STORE (the
//!   capture side of the store rows; see record.rs).

mod attach;
mod empty;
mod hold;
mod record;
mod unfiltered;
mod write_loop;

use std::process::ExitCode;

const USAGE: &str =
    "usage: diffkeeper-bench write PATH COUNT | getppid COUNT | unfiltered DIR | empty OBJECT | empty-exit OBJECT | record SRC STORE ROOT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["write", path, count] => count
            .parse::<u64>()
            .map_err(|e| format!("COUNT {count:?} is not a number: {e}"))
            .and_then(|n| write_loop::run(path.as_ref(), n)),
        ["getppid", count] => count
            .parse::<u64>()
            .map_err(|e| format!("COUNT {count:?} is not a number: {e}"))
            .and_then(write_loop::run_ignored),
        ["unfiltered", dir] => unfiltered::run(dir.as_ref()),
        ["empty", object] => empty::run(object.as_ref(), &empty::BOTH),
        ["empty-exit", object] => empty::run(object.as_ref(), &empty::EXIT_ONLY),
        ["record", src, store, root] => record::run(src.as_ref(), store.as_ref(), root),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("diffkeeper-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
