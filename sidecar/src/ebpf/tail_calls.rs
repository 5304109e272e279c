//! The compat object's sys_enter in three programs: `dk_sys_enter` picks the call's ends and
//! tail-calls `dk_sys_enter_path`, which for a rename tail-calls `dk_sys_enter_from` (each
//! verified alone: one program was past Debian 6.1's verifier limit). The jump table is filled
//! here, after the targets are loaded and before `dk_sys_enter` is attached.

use aya::maps::ProgramArray;
use aya::programs::{ProgramFd, RawTracePoint};
use aya::Ebpf;
use diffkeeper_ebpf::object::{maps, programs};

use super::error::Failure;
use super::explain::explain;

/// Loads the tail-called programs (never attached) and puts them in [`maps::TP_TAIL`] at their
/// indexes. The kernel empties a jump table when its last user-space descriptor closes, so the
/// table stays in `ebpf` (the session holds it while the programs run).
pub fn fill(ebpf: &mut Ebpf) -> Result<(), Failure> {
    let mut targets = Vec::with_capacity(programs::SYS_ENTER_TAILS.len());
    for (index, name) in programs::SYS_ENTER_TAILS.into_iter().enumerate() {
        let step = format!(
            "load {name} (tail call {index} of {})",
            programs::SYS_ENTER.0
        );
        let prog: &mut RawTracePoint = ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("the compat object has no program {name}"))
            .try_into()
            .map_err(|e| explain(&step, &e))?;
        prog.load().map_err(|e| explain(&step, &e))?;
        let fd: ProgramFd = prog
            .fd()
            .and_then(|fd| fd.try_clone().map_err(Into::into))
            .map_err(|e| explain(&step, &e))?;
        targets.push(fd);
    }
    let step = format!("fill the tail-call map {}", maps::TP_TAIL);
    let map = ebpf
        .map_mut(maps::TP_TAIL)
        .unwrap_or_else(|| panic!("the compat object has no map {}", maps::TP_TAIL));
    let mut table = ProgramArray::try_from(map).map_err(|e| explain(&step, &e))?;
    for (index, fd) in (0u32..).zip(&targets) {
        table.set(index, fd, 0).map_err(|e| explain(&step, &e))?;
    }
    Ok(())
}
