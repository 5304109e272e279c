//! The sidecar process from the outside: start-up errors and exit codes, /healthz and
//! /metrics, SIGTERM handling (and that no program of ours stays loaded), ring-buffer overflow
//! (the checks on the state directory and journal paths: start_paths.rs). Real eBPF on this
//! kernel; needs root.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diffkeeper_cli::ready::READY_PREFIX;
use diffkeeper_tests::doc_flags;
use diffkeeper_tests::http::{http_get, metric_sample};
use diffkeeper_tests::scratch::Scratch;
use diffkeeper_tests::sidecar::SidecarProcess;

mod sidecar_common;
use sidecar_common::{path, serial, sidecar, spawn, READY_TIMEOUT, SIDECAR};

/// A sidecar watching `<scratch>/state` with its journal in `<scratch>/journal.jsonl`.
struct Watching {
    sidecar: SidecarProcess,
    state: std::path::PathBuf,
    journal: std::path::PathBuf,
    _scratch: Scratch,
}

impl Watching {
    fn start(label: &str, extra_args: &[&str]) -> Self {
        let scratch = Scratch::new(label);
        let (state, journal) = (scratch.dir("state"), scratch.path().join("journal.jsonl"));
        let mut cmd = sidecar(&["--state-dir", path(&state), "--journal", path(&journal)]);
        let sidecar = spawn(cmd.args(extra_args));
        Self {
            sidecar,
            state,
            journal,
            _scratch: scratch,
        }
    }

    fn journal(&self) -> String {
        std::fs::read_to_string(&self.journal).unwrap_or_default()
    }
}

#[test]
fn docs_flag_table_matches_help() {
    let help = Command::new(SIDECAR).arg("--help").output().unwrap();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sidecar.md"))
        .unwrap();
    let problems = doc_flags::disagreements(
        &doc_flags::doc_flags(&doc, "## Command line"),
        &doc_flags::help_flags(&String::from_utf8(help.stdout).unwrap()),
    );
    assert!(
        problems.is_empty(),
        "docs/sidecar.md vs --help: {problems:#?}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_documents_every_flag() {
    for args in [
        &["--bogus"][..],
        &[][..],
        &["--state-dir", "/", "--coalesce-ms", "x"][..],
    ] {
        let out = sidecar(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    let help = Command::new(SIDECAR).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--state-dir",
        "--btf-cache-dir",
        "--enable-ebpf",
        "--attach",
        "--fallback-fsnotify",
        "--journal",
        "--coalesce-ms",
        "--ringbuf-bytes",
        "--metrics-addr",
        "--debug",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    let version = Command::new(SIDECAR).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap(),
        format!("diffkeeper-sidecar {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn without_ebpf_and_without_fallback_it_exits_1_with_the_reason() {
    let _serial = serial();
    let scratch = Scratch::new("sidecar-nofallback");
    let cache = scratch.dir("cache");
    let mut cmd = sidecar(&[
        "--state-dir",
        path(scratch.path()),
        "--btf-cache-dir",
        path(&cache),
        "--fallback-fsnotify=false",
    ]);
    diffkeeper_tests::mountns::hide_system_btf(&mut cmd);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("eBPF is unavailable and --fallback-fsnotify=false"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no usable BTF") || stderr.contains(".btf"),
        "{stderr}"
    );
    assert!(!stderr.contains(READY_PREFIX), "{stderr}");
    // The private canary directory went away with the failed attempt.
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
}

#[test]
fn healthz_answers_503_until_ready_then_200() {
    let _serial = serial();
    let scratch = Scratch::new("sidecar-healthz");
    let state = scratch.dir("state");
    // The journal is a FIFO: the sidecar cannot get ready before a reader opens it, which
    // holds it in the "starting" state for as long as the test needs.
    let fifo = scratch.path().join("journal.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut sidecar = spawn(&mut sidecar(&[
        "--state-dir",
        path(&state),
        "--journal",
        path(&fifo),
        "--metrics-addr",
        "127.0.0.1:0",
        "--coalesce-ms",
        "0",
        "--attach",
        "tracepoint",
    ]));
    let addr = sidecar.metrics_addr(READY_TIMEOUT).unwrap();
    let (status, body) = http_get(addr, "/healthz").unwrap();
    assert_eq!((status, body.as_str()), (503, "starting\n"));
    let (status, metrics) = http_get(addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        metric_sample(&metrics, "diffkeeper_ready"),
        Some(0),
        "{metrics}"
    );

    let reader = std::thread::spawn(move || {
        let mut journal = String::new();
        File::open(&fifo)
            .unwrap()
            .read_to_string(&mut journal)
            .unwrap();
        journal
    });
    let backend = sidecar.wait_ready(READY_TIMEOUT).unwrap();
    assert_eq!(backend, "tracepoint");
    assert_eq!(
        http_get(addr, "/healthz").unwrap(),
        (200, "ok\n".to_string())
    );
    std::fs::write(state.join("hello.txt"), b"hello").unwrap();
    let (_, metrics) = http_get(addr, "/metrics").unwrap();
    assert_eq!(
        metric_sample(&metrics, "diffkeeper_ready"),
        Some(1),
        "{metrics}"
    );
    assert_eq!(
        metric_sample(&metrics, "diffkeeper_backend_info{backend=\"tracepoint\"}"),
        Some(1)
    );
    assert_eq!(
        metric_sample(&metrics, "diffkeeper_btf_source_info{source=\"system\"}"),
        Some(1)
    );
    // Tracepoint mode reports every op (from the syscalls): said in /metrics.
    for op in [
        "write", "create", "delete", "rename", "mkdir", "rmdir", "attrib",
    ] {
        let series = format!("diffkeeper_op_reported{{op=\"{op}\"}}");
        assert_eq!(metric_sample(&metrics, &series), Some(1), "{metrics}");
    }

    let (status, _) = sidecar.terminate();
    assert!(status.is_some_and(|s| s.success()), "{}", sidecar.log());
    let journal = reader.join().unwrap();
    assert!(
        journal.contains("hello.txt\""),
        "the FIFO reader got: {journal}"
    );
}

/// The ids of the BPF programs a process holds, from its fds' fdinfo (`prog_id:`).
fn bpf_program_ids(pid: u32) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        ids.extend(
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse::<u32>().ok()),
        );
    }
    ids
}

fn program_loaded(id: u32) -> bool {
    let out = Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .expect("run bpftool (scripts/setup.sh installs it)");
    out.status.success()
}

#[test]
fn sigterm_exits_0_within_a_second_and_leaves_no_program_loaded() {
    let _serial = serial();
    let mut w = Watching::start("sidecar-sigterm", &["--coalesce-ms", "1000"]);
    let sidecar = &mut w.sidecar;
    // `auto`: whichever eBPF mode this kernel allows.
    let backend = sidecar.wait_ready(READY_TIMEOUT).unwrap();
    assert!(
        ["fentry", "kprobe", "tracepoint"].contains(&backend.as_str()),
        "{backend}"
    );
    let programs = bpf_program_ids(sidecar.pid());
    assert!(!programs.is_empty(), "the sidecar holds no BPF program");
    assert!(
        programs.iter().all(|&id| program_loaded(id)),
        "{programs:?}"
    );
    // A write still held for coalescing must reach the journal at shutdown.
    std::fs::write(w.state.join("held.txt"), b"12345").unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let (status, took) = sidecar.terminate();
    let log = sidecar.log();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    assert!(
        took.unwrap() < Duration::from_secs(1),
        "took {took:?}\n{log}"
    );
    assert!(log.contains("received SIGTERM"), "{log}");
    let journal = w.journal();
    assert!(
        journal.contains("held.txt\"") && journal.contains("\"bytes\":5"),
        "{journal}"
    );

    // The kernel frees programs shortly after the last reference goes.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut left: Vec<u32> = programs.iter().copied().collect();
    while !left.is_empty() && Instant::now() < deadline {
        left.retain(|&id| program_loaded(id));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        left.is_empty(),
        "programs still loaded after exit: {left:?}"
    );
}

#[test]
fn a_burst_far_above_ring_capacity_counts_lost_events_without_crashing() {
    let _serial = serial();
    let mut w = Watching::start(
        "sidecar-overflow",
        &[
            "--ringbuf-bytes",
            "4096",
            "--metrics-addr",
            "127.0.0.1:0",
            "--attach",
            "tracepoint",
        ],
    );
    let sidecar = &mut w.sidecar;
    let addr = sidecar.metrics_addr(READY_TIMEOUT).unwrap();
    assert_eq!(sidecar.wait_ready(READY_TIMEOUT).unwrap(), "tracepoint");

    const WRITES: u64 = 200_000;
    let mut file = File::create(w.state.join("burst.bin")).unwrap();
    for _ in 0..WRITES {
        file.write_all(b"x").unwrap();
    }
    drop(file);

    // Every write was either journalled (counted before coalescing) or lost in the kernel.
    let series = "diffkeeper_events_total{backend=\"tracepoint\",op=\"write\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut seen, mut lost) = (0, 0);
    while Instant::now() < deadline {
        let (_, metrics) = http_get(addr, "/metrics").unwrap();
        seen = metric_sample(&metrics, series).unwrap();
        lost = metric_sample(&metrics, "diffkeeper_lost_events_total").unwrap();
        if seen + lost >= WRITES {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        lost > 0,
        "a 4 KiB ring lost nothing of {WRITES} writes ({seen} seen)"
    );
    assert_eq!(seen + lost, WRITES, "seen {seen} + lost {lost}");
    assert_eq!(http_get(addr, "/healthz").unwrap().0, 200);

    let (status, _) = sidecar.terminate();
    assert!(status.is_some_and(|s| s.success()), "{}", sidecar.log());
    // Coalescing (default 50 ms) kept the journal short, and the byte counts add up.
    let journal = w.journal();
    let lines: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect();
    // Repair lines (after the gaps) come from a rescan: no byte counts.
    let bytes: u64 = lines
        .iter()
        .filter(|v| v["op"] == "write" && v["repair"] != true)
        .map(|v| v["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(bytes, seen, "journalled bytes vs counted 1-byte writes");
    // The loss is in the journal itself, where it was noticed, with its size.
    let gap_lost: u64 = lines
        .iter()
        .filter(|v| v["op"] == "gap" && v["reason"] == "ring buffer full")
        .map(|v| v["lost"].as_u64().unwrap())
        .sum();
    assert_eq!(gap_lost, lost, "lost events in gap lines vs /metrics");
    assert!(
        (journal.lines().count() as u64) < seen,
        "coalescing merged nothing"
    );
}

#[test]
fn a_journal_that_cannot_be_written_stops_the_sidecar_with_exit_1() {
    let scratch = Scratch::new("sidecar-epipe");
    let state = scratch.dir("state");
    // stdout is a pipe whose reading end is already closed: the first journal write fails.
    // Close-on-exec (unlike pipe(2)): a sidecar another test spawns meanwhile must not inherit
    // the reading end and keep the pipe alive.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = sidecar(&[
        "--state-dir",
        path(&state),
        "--enable-ebpf=false",
        "--coalesce-ms",
        "0",
    ]);
    cmd.stdout(Stdio::from(writer));
    let mut sidecar = spawn(&mut cmd);
    assert_eq!(sidecar.wait_ready(READY_TIMEOUT).unwrap(), "inotify");
    std::fs::write(state.join("x.txt"), b"x").unwrap();
    let status = sidecar.wait_exit(Duration::from_secs(5));
    let log = sidecar.log();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(log.contains("writing the journal - failed"), "{log}");
}

#[test]
fn sigint_stops_the_inotify_backend_cleanly_too() {
    let mut w = Watching::start("sidecar-sigint", &["--enable-ebpf=false"]);
    let sidecar = &mut w.sidecar;
    assert_eq!(sidecar.wait_ready(READY_TIMEOUT).unwrap(), "inotify");
    std::fs::write(w.state.join("a.txt"), b"a").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = nix::unistd::Pid::from_raw(sidecar.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = sidecar.wait_exit(Duration::from_secs(1));
    let log = sidecar.log();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    assert!(log.contains("received SIGINT"), "{log}");
    let journal = w.journal();
    assert!(
        journal.contains("\"op\":\"create\"") && journal.contains("a.txt\""),
        "{journal}"
    );
}

#[test]
fn a_stalled_journal_reader_cannot_hold_the_exit() {
    let _serial = serial();
    let scratch = Scratch::new("sidecar-stalled");
    let state = scratch.dir("state");
    // stdout is a pipe that is held open but never read: once its 64 KiB fill up, every
    // journal write blocks, as behind a stuck log shipper.
    // Close-on-exec, so no other test's child holds either end.
    let (_reader, writer) = std::io::pipe().unwrap();
    let mut cmd = sidecar(&[
        "--state-dir",
        path(&state),
        "--coalesce-ms",
        "0",
        "--attach",
        "tracepoint",
    ]);
    cmd.stdout(Stdio::from(writer));
    let mut sidecar = spawn(&mut cmd);
    assert_eq!(sidecar.wait_ready(READY_TIMEOUT).unwrap(), "tracepoint");
    let mut f = File::create(state.join("flood.bin")).unwrap();
    for _ in 0..20_000 {
        std::io::Write::write_all(&mut f, b"x").unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));

    let (status, took) = sidecar.terminate();
    let log = sidecar.log();
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(2)),
        "exit took {took:?}: {log}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(log.contains("did not take the last changes"), "{log}");
}
