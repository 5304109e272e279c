//! Loading and attaching one raw tracepoint program of an object, as the sidecar's tracepoint
//! mode does: the helpers hold the same attach points the sidecar uses (sys_enter, sys_exit).

use aya::programs::RawTracePoint;
use aya::Ebpf;

/// Loads `name` from `ebpf` and attaches it to the raw tracepoint `tracepoint`; its program id.
pub fn raw_tracepoint(ebpf: &mut Ebpf, name: &str, tracepoint: &str) -> Result<u32, String> {
    let prog: &mut RawTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("the object has no program {name}"))?
        .try_into()
        .map_err(|e| format!("{name}: {e}"))?;
    prog.load().map_err(|e| format!("loading {name}: {e}"))?;
    prog.attach(tracepoint)
        .map_err(|e| format!("attaching {name} to raw tracepoint {tracepoint}: {e}"))?;
    Ok(prog.info().map_err(|e| format!("{name} info: {e}"))?.id())
}
