//! The tight write loop: one byte per `write(2)`, nothing else inside the timed region.
//!
//! Reports wall time and this process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`, the scheduler's
//! exact runtime, kernel time in the syscalls and their BPF programs included). On a busy
//! machine wall time also counts the time the loop sat preempted; CPU time does not.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};

fn cpu_time() -> Result<Duration, String> {
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(Duration::from)
        .map_err(|e| format!("clock_gettime(CLOCK_PROCESS_CPUTIME_ID): {e}"))
}

pub fn run(path: &Path, count: u64) -> Result<(), String> {
    let mut file =
        File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let byte = *b"x";
    let cpu_start = cpu_time()?;
    let start = Instant::now();
    for _ in 0..count {
        // A short write of one byte cannot happen on a regular file; any error ends the run.
        file.write(&byte)
            .map_err(|e| format!("write(2) to {} failed: {e}", path.display()))?;
    }
    let ns = start.elapsed().as_nanos();
    let cpu_ns = (cpu_time()? - cpu_start).as_nanos();
    println!("{{\"writes\":{count},\"ns\":{ns},\"cpu_ns\":{cpu_ns}}}");
    Ok(())
}

/// COUNT `getppid(2)` calls, a syscall the sidecar's programs run for but ignore (what most of
/// a node's syscalls are to them); prints `{"calls":COUNT,"ns":ELAPSED,"cpu_ns":CPU}`.
pub fn run_ignored(count: u64) -> Result<(), String> {
    let cpu_start = cpu_time()?;
    let start = Instant::now();
    for _ in 0..count {
        std::hint::black_box(nix::unistd::getppid());
    }
    let ns = start.elapsed().as_nanos();
    let cpu_ns = (cpu_time()? - cpu_start).as_nanos();
    println!("{{\"calls\":{count},\"ns\":{ns},\"cpu_ns\":{cpu_ns}}}");
    Ok(())
}
