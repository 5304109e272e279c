//! Turning aya's errors into a [`Failure`] an operator can act on: EPERM, a missing kprobe
//! PMU, CO-RE relocation failures (wrong BTF) and verifier refusals get a specific cause and
//! hint; anything else is reported with its source chain.

use std::error::Error as StdError;
use std::io;

use aya::programs::kprobe::KProbeError;
use aya::programs::ProgramError;

use super::error::{Cause, Failure, Hint};
use super::features;

/// Turns an aya error into cause + hint: EPERM, a missing kprobe PMU and CO-RE relocation
/// failures (wrong BTF) get specific hints; anything else is reported with its source chain.
pub fn explain(step: &str, err: &(dyn StdError + 'static)) -> Failure {
    if let Some(file) = missing_kprobe_pmu(err) {
        return Failure::new(step, Cause::NoKprobePmu { file }, Hint::NoKprobes);
    }
    if sources(err).any(|e| io_errno(e) == Some(libc_eperm())) {
        return Failure::new(step, Cause::PermissionDenied, features::capability_hint());
    }
    let chain = error_chain(err);
    let relocation = sources(err).any(|e| {
        e.downcast_ref::<aya::EbpfError>().is_some_and(|e| {
            matches!(
                e,
                aya::EbpfError::RelocationError(_) | aya::EbpfError::BtfRelocationError(_)
            )
        })
    });
    if relocation {
        return Failure::new(step, Cause::Aya { chain }, Hint::WrongBtf);
    }
    if let Some(ProgramError::LoadError {
        verifier_log,
        io_error,
    }) = sources(err).find_map(|e| e.downcast_ref::<ProgramError>())
    {
        // The whole log can run to thousands of lines: it goes to --debug, the warning gets
        // the one line that says why.
        let log = verifier_log.to_string();
        log::debug!("[eBPF] {step}: verifier log:\n{log}");
        let cause = Cause::Verifier {
            errno: io_error.to_string(),
            reason: verifier_reason(&log).to_string(),
        };
        return Failure::new(step, cause, verifier_hint(&log));
    }
    Failure::new(step, Cause::Aya { chain }, Hint::None)
}

/// The line of a verifier log that says why: the last one before the statistics.
fn verifier_reason(log: &str) -> &str {
    let statistics = [
        "processed ",
        "verification time",
        "stack depth",
        "max_states",
    ];
    log.lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty() && !statistics.iter().any(|s| line.starts_with(s)))
        .unwrap_or("(no verifier output)")
}

/// A hint from the verifier's log, where it names a cause the operator can act on.
fn verifier_hint(log: &str) -> Hint {
    // check_helper_call(): "invalid func unknown#181" (helper unknown to this kernel), or
    // "unknown func bpf_loop#181" (not allowed for this program type on this kernel). Before
    // 5.13 the verifier does not count bpf_loop callbacks as subprograms and refuses the object
    // before reading an instruction: "number of funcs in func_info doesn't match".
    if log.contains("invalid func ")
        || log.contains("unknown func ")
        || log.contains("func_info doesn't match")
    {
        Hint::OldKernel
    } else if log.contains("BPF program is too large") {
        Hint::TooComplex
    } else {
        Hint::None
    }
}

fn sources<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e: &&'a (dyn StdError + 'static)| e.source())
}

fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in sources(err) {
        let text = e.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn io_errno(err: &(dyn StdError + 'static)) -> Option<i32> {
    if let Some(e) = err.downcast_ref::<io::Error>() {
        return e.raw_os_error();
    }
    if let Some(ProgramError::LoadError { io_error, .. }) = err.downcast_ref::<ProgramError>() {
        return io_error.raw_os_error();
    }
    None
}

fn libc_eperm() -> i32 {
    nix::errno::Errno::EPERM as i32
}

fn missing_kprobe_pmu(err: &(dyn StdError + 'static)) -> Option<std::path::PathBuf> {
    // ProgramError::KProbeError is `#[error(transparent)]`: it hides itself from source().
    sources(err).find_map(|e| {
        let kprobe = e
            .downcast_ref::<KProbeError>()
            .or(match e.downcast_ref::<ProgramError>() {
                Some(ProgramError::KProbeError(k)) => Some(k),
                _ => None,
            });
        match kprobe {
            Some(KProbeError::FileError { filename, io_error })
                if io_error.kind() == io::ErrorKind::NotFound
                    && filename.ends_with("devices/kprobe/type") =>
            {
                Some(filename.clone())
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_helper_the_kernel_lacks_gets_the_kernel_version_hint() {
        // As 5.10's verifier words it for bpf_loop (helper 181), and as newer kernels do.
        let old = "; return bpf_loop(DK_MAX_DEPTH, find_step, &l, 0);\n\
                   12: (85) call unknown#181\ninvalid func unknown#181\n";
        assert_eq!(verifier_hint(old), Hint::OldKernel);
        assert_eq!(
            verifier_hint("unknown func bpf_loop#181\n"),
            Hint::OldKernel
        );
        assert_eq!(
            verifier_hint("R1 invalid mem access 'scalar'\n"),
            Hint::None
        );
        // 5.10 refuses the bpf_loop callbacks before verifying anything.
        let v510 = "number of funcs in func_info doesn't match number of subprogs\n\
                    processed 0 insns (limit 1000000) max_states_per_insn 0\n";
        assert_eq!(verifier_hint(v510), Hint::OldKernel);
        assert_eq!(
            verifier_reason(v510),
            "number of funcs in func_info doesn't match number of subprogs"
        );
        let big = "2368: (57) r6 &= 1\nBPF program is too large. Processed 1000001 insn\n\
                   verification time 7152952 usec\nstack depth 120+152+8\n\
                   processed 1000001 insns (limit 1000000) max_states_per_insn 48\n";
        assert_eq!(verifier_hint(big), Hint::TooComplex);
        assert_eq!(
            verifier_reason(big),
            "BPF program is too large. Processed 1000001 insn"
        );
    }

    #[test]
    fn explains_eperm_and_missing_kprobes() {
        let eperm = io::Error::from_raw_os_error(libc_eperm());
        let f = explain("fexit dk_fexit_vfs_write on vfs_write", &eperm);
        assert_eq!(f.hint, features::capability_hint(), "{f}");
        assert!(matches!(f.cause, Cause::PermissionDenied), "{f}");
        assert!(
            f.to_string().contains("vfs_write") && f.to_string().contains("EPERM"),
            "{f}"
        );

        let pmu = ProgramError::KProbeError(KProbeError::FileError {
            filename: PathBuf::from("/sys/bus/event_source/devices/kprobe/type"),
            io_error: io::Error::from(io::ErrorKind::NotFound),
        });
        let f = explain("kprobe dk_kprobe_write on vfs_write", &pmu);
        assert_eq!(f.hint, Hint::NoKprobes, "{f}");
        assert!(f.to_string().contains("kprobe PMU missing"), "{f}");
    }
}
