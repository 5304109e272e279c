//! The floor of the tracepoint mode: empty programs on the same raw tracepoints (sys_enter and
//! sys_exit), so the cost of merely enabling them is measured apart from what our programs do.

use std::path::Path;

use aya::EbpfLoader;
use diffkeeper_ebpf::object::programs;

use crate::{attach, hold};

/// (program in bench/empty_syscalls.bpf.c, the sidecar's program on the same tracepoint).
const PROGRAMS: [(&str, (&str, &str)); 2] = [
    ("dk_bench_empty_enter", programs::SYS_ENTER),
    ("dk_bench_empty", programs::SYS_EXIT),
];

pub fn run(object: &Path) -> Result<(), String> {
    let bytes =
        std::fs::read(object).map_err(|e| format!("cannot read {}: {e}", object.display()))?;
    let mut ebpf = EbpfLoader::new()
        .load(&bytes)
        .map_err(|e| format!("loading {}: {e}", object.display()))?;
    let mut ids = Vec::new();
    for (name, (_, tracepoint)) in PROGRAMS {
        ids.push(attach::raw_tracepoint(&mut ebpf, name, tracepoint)?);
    }
    hold::until_stdin_closes(&ids, || false);
    Ok(())
}
