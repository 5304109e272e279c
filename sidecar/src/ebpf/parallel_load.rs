//! Loading a mode's programs side by side. The kernel verifies a program in the thread that
//! loads it, and verification is most of the sidecar's start (here `dk_sys_enter_btf` takes
//! ~70 ms and `dk_sys_exit_btf` ~20 ms of the ~100 ms to ready): with more than one CPU, the
//! programs are verified at the same time. Attaching stays with the caller, in its order.

use std::collections::HashMap;
use std::sync::Mutex;

use aya::programs::Program;
use aya::Ebpf;

use super::error::Failure;

/// Loads each program of `programs` (name, what `load` needs to know of it) that is not loaded
/// yet (a name listed twice is loaded once), on as many threads as there are CPUs (at most one
/// per program). On failure: the first failing program in `programs` order, so the error does
/// not depend on which thread was faster.
pub(super) fn load_all<T: Sync>(
    ebpf: &mut Ebpf,
    programs: &[(&str, T)],
    load: impl Fn(&str, &T, &mut Program) -> Result<(), Failure> + Sync,
) -> Result<(), Failure> {
    let mut by_name: HashMap<&str, &mut Program> = ebpf.programs_mut().collect();
    let mut work = Vec::with_capacity(programs.len());
    for (order, (name, about)) in programs.iter().enumerate() {
        if let Some(program) = by_name.remove(name) {
            if program.fd().is_err() {
                work.push((order, *name, about, program));
            }
        } else if !programs[..order].iter().any(|(listed, _)| listed == name) {
            panic!("the eBPF object has no program {name}");
        }
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(work.len());
    let queue = Mutex::new(work.into_iter());
    let failures = Mutex::new(Vec::new());
    let run = || loop {
        // The lock is held only to take the next program, never while one is verified.
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
        let Some((order, name, about, program)) = next else {
            break;
        };
        if let Err(failure) = load(name, about, program) {
            let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
            failures.push((order, failure));
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..workers {
            // A helper thread that cannot start only means fewer at once: this one works too.
            let spawned = std::thread::Builder::new()
                .name("ebpf-load".into())
                .spawn_scoped(scope, run);
            if let Err(e) = spawned {
                log::debug!("[eBPF] loading on fewer threads: {e}");
            }
        }
        run();
    });
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort_by_key(|(order, _)| *order);
    match failures.into_iter().next() {
        Some((_, failure)) => Err(failure),
        None => Ok(()),
    }
}
