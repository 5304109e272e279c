//! The floor of the tracepoint mode: empty programs on the same raw tracepoints (sys_enter and
//! sys_exit), so the cost of merely enabling them is measured apart from what our programs do.

use std::path::Path;

use aya::EbpfLoader;
use diffkeeper_ebpf::object::programs;

use crate::{attach, hold};

/// A program in bench/empty_syscalls.bpf.c and the sidecar's program on the same tracepoint.
type Floor = (&'static str, (&'static str, &'static str));

/// The tracepoint mode's attach points.
pub const BOTH: [Floor; 2] = [
    ("dk_bench_empty_enter", programs::SYS_ENTER),
    ("dk_bench_empty", programs::SYS_EXIT),
];
/// sys_exit alone: what the tracepoint mode attached before it resolved calls at sys_enter.
pub const EXIT_ONLY: [Floor; 1] = [("dk_bench_empty", programs::SYS_EXIT)];

pub fn run(object: &Path, floor: &[Floor]) -> Result<(), String> {
    let bytes =
        std::fs::read(object).map_err(|e| format!("cannot read {}: {e}", object.display()))?;
    let mut ebpf = EbpfLoader::new()
        .load(&bytes)
        .map_err(|e| format!("loading {}: {e}", object.display()))?;
    let mut ids = Vec::new();
    for &(name, (_, tracepoint)) in floor {
        ids.push(attach::raw_tracepoint(&mut ebpf, name, tracepoint)?);
    }
    hold::until_stdin_closes(&ids, || false);
    Ok(())
}
