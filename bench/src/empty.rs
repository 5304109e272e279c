//! The floor of the tracepoint mode: an empty program on the same raw tracepoint (sys_exit).

use std::path::Path;

use aya::programs::RawTracePoint;
use aya::EbpfLoader;
use diffkeeper_ebpf::object::programs;

use crate::hold;

const PROGRAM: &str = "dk_bench_empty";

pub fn run(object: &Path) -> Result<(), String> {
    let bytes =
        std::fs::read(object).map_err(|e| format!("cannot read {}: {e}", object.display()))?;
    let mut ebpf = EbpfLoader::new()
        .load(&bytes)
        .map_err(|e| format!("loading {}: {e}", object.display()))?;
    let (_, tracepoint) = programs::SYS_EXIT;
    let prog: &mut RawTracePoint = ebpf
        .program_mut(PROGRAM)
        .ok_or_else(|| format!("{} has no program {PROGRAM}", object.display()))?
        .try_into()
        .map_err(|e| format!("{PROGRAM}: {e}"))?;
    prog.load().map_err(|e| format!("loading {PROGRAM}: {e}"))?;
    prog.attach(tracepoint)
        .map_err(|e| format!("attaching {PROGRAM} to raw tracepoint {tracepoint}: {e}"))?;
    let id = prog
        .info()
        .map_err(|e| format!("{PROGRAM} info: {e}"))?
        .id();
    hold::until_stdin_closes(id, || false);
    Ok(())
}
