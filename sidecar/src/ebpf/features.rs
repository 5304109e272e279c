//! What this kernel's BPF can do, probed rather than guessed from the version string
//! (distributions backport features: RHEL 8's 4.18 has the ring buffer, for instance).
//!
//! The probes decide which object loads ([`ObjectKind`]), which capabilities the EPERM hint
//! names (CAP_BPF exists from 5.8; before, bpf(2) needs CAP_SYS_ADMIN), and whether maps are
//! charged to `RLIMIT_MEMLOCK` (before 5.11).

use std::fmt;
use std::str::FromStr;

use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{is_helper_supported, is_map_supported, BpfHelper};
use diffkeeper_ebpf::object::ObjectKind;

use super::error::Hint;

/// `--ebpf-object`: which compiled object to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectChoice {
    /// By the feature probes: modern where it can load, else compat.
    Auto,
    Forced(ObjectKind),
}

/// A word that is not an eBPF object choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownObject(pub String);

impl fmt::Display for UnknownObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an eBPF object (use auto, modern or compat)",
            self.0
        )
    }
}

impl std::error::Error for UnknownObject {}

impl FromStr for ObjectChoice {
    type Err = UnknownObject;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "modern" => Ok(Self::Forced(ObjectKind::Modern)),
            "compat" => Ok(Self::Forced(ObjectKind::Compat)),
            _ => Err(UnknownObject(s.to_string())),
        }
    }
}

/// The probed features. A probe that cannot run (EPERM before any capability check passes,
/// say) counts as "absent": the compat object needs the least, and the load that follows
/// reports the real cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelFeatures {
    /// `BPF_MAP_TYPE_RINGBUF` (Linux 5.8).
    pub ring_buffer: bool,
    /// `bpf_loop` (Linux 5.17).
    pub bpf_loop: bool,
    /// BPF memory is charged to the memory cgroup, not `RLIMIT_MEMLOCK` (Linux 5.11). Probed
    /// the way libbpf does: through a helper that arrived in the same release.
    pub memcg_accounting: bool,
}

impl KernelFeatures {
    pub fn probe() -> Self {
        let helper = |helper: BpfHelper| {
            is_helper_supported(program_type(helper), helper).unwrap_or_else(|e| {
                log::debug!("[eBPF] probing helper {helper:?}: {e}");
                false
            })
        };
        Self {
            ring_buffer: is_map_supported(MapType::RingBuf).unwrap_or_else(|e| {
                log::debug!("[eBPF] probing the ring buffer map: {e}");
                false
            }),
            bpf_loop: helper(BpfHelper::BPF_FUNC_loop),
            memcg_accounting: helper(BpfHelper::BPF_FUNC_ktime_get_coarse_ns),
        }
    }

    /// The object `choice` resolves to, and why (for the log line).
    pub fn pick(&self, choice: ObjectChoice) -> (ObjectKind, ObjectReason) {
        match choice {
            ObjectChoice::Forced(kind) => (kind, ObjectReason::Forced),
            ObjectChoice::Auto if !self.bpf_loop => (ObjectKind::Compat, ObjectReason::NoBpfLoop),
            ObjectChoice::Auto if !self.ring_buffer => {
                (ObjectKind::Compat, ObjectReason::NoRingBuffer)
            }
            ObjectChoice::Auto => (ObjectKind::Modern, ObjectReason::AllFeatures),
        }
    }
}

/// The program type a helper is probed with: the one our programs are, except for
/// `ktime_get_coarse_ns`, which the kernel refuses to tracing programs (not NMI-safe) and which
/// libbpf probes from a cgroup skb program for the same reason.
fn program_type(helper: BpfHelper) -> ProgramType {
    match helper {
        BpfHelper::BPF_FUNC_ktime_get_coarse_ns => ProgramType::CgroupSkb,
        _ => ProgramType::KProbe,
    }
}

/// Why [`KernelFeatures::pick`] chose an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectReason {
    Forced,
    NoBpfLoop,
    NoRingBuffer,
    AllFeatures,
}

impl fmt::Display for ObjectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Forced => "forced by --ebpf-object",
            Self::NoBpfLoop => "this kernel has no bpf_loop",
            Self::NoRingBuffer => "this kernel has no BPF ring buffer",
            Self::AllFeatures => "this kernel has bpf_loop and the BPF ring buffer",
        })
    }
}

/// What to grant when bpf(2) or an attach says EPERM, for this kernel.
pub fn capability_hint() -> Hint {
    if kernel_knows_cap_bpf() {
        Hint::Capabilities
    } else {
        Hint::CapabilitiesBefore58
    }
}

/// CAP_BPF is capability 39; `cap_last_cap` names the highest one the kernel knows.
fn kernel_knows_cap_bpf() -> bool {
    const CAP_BPF: u32 = 39;
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .is_some_and(|last| last >= CAP_BPF)
}

/// Before Linux 5.11 every map and program is charged to `RLIMIT_MEMLOCK` (often 64 KiB in a
/// container). Raises it to unlimited when that kernel needs it; where the raise is refused
/// (no CAP_SYS_RESOURCE) returns the sentence the load failure should carry.
pub fn raise_memlock(features: &KernelFeatures) -> Option<String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    if features.memcg_accounting {
        return None;
    }
    match setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY) {
        Ok(()) => {
            log::debug!("[eBPF] RLIMIT_MEMLOCK raised to unlimited (kernel before 5.11)");
            None
        }
        Err(e) => {
            let (soft, _) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap_or((0, 0));
            Some(format!(
                "this kernel (before 5.11) charges BPF maps to RLIMIT_MEMLOCK, which is {} KiB \
                 and could not be raised (setrlimit: {e}): grant CAP_SYS_RESOURCE or raise the \
                 container's memlock ulimit",
                soft / 1024
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: KernelFeatures = KernelFeatures {
        ring_buffer: true,
        bpf_loop: true,
        memcg_accounting: true,
    };

    #[test]
    fn auto_picks_modern_only_with_bpf_loop_and_ring_buffer() {
        assert_eq!(NEW.pick(ObjectChoice::Auto).0, ObjectKind::Modern);
        let no_loop = KernelFeatures {
            bpf_loop: false,
            ..NEW
        };
        assert_eq!(
            no_loop.pick(ObjectChoice::Auto),
            (ObjectKind::Compat, ObjectReason::NoBpfLoop)
        );
        let no_ring = KernelFeatures {
            ring_buffer: false,
            ..NEW
        };
        assert_eq!(
            no_ring.pick(ObjectChoice::Auto),
            (ObjectKind::Compat, ObjectReason::NoRingBuffer)
        );
        assert_eq!(
            NEW.pick("compat".parse().unwrap()),
            (ObjectKind::Compat, ObjectReason::Forced)
        );
        assert!("newest".parse::<ObjectChoice>().is_err());
    }

    #[test]
    fn this_kernel_is_probed_as_new() {
        // The build machine runs Linux 6.18 as root: every probe must find its feature.
        assert_eq!(KernelFeatures::probe(), NEW);
    }

    #[test]
    fn the_eperm_hint_names_the_capabilities_this_kernel_knows() {
        // Linux 6.18 here: CAP_BPF exists.
        assert!(kernel_knows_cap_bpf());
        assert_eq!(capability_hint(), Hint::Capabilities);
        assert!(Hint::CapabilitiesBefore58.text().contains("CAP_SYS_ADMIN"));
    }
}
