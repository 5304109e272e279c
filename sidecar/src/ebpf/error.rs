//! Why eBPF cannot be used, as data: the step that failed, its cause (the syscall, path or aya
//! error behind it) and the operator's hint. Each type renders its message once, here.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::btf_select::NoBtf;
use crate::change::Family;

/// eBPF cannot be used on this node; the sidecar falls back to inotify or exits.
#[derive(Debug)]
pub enum EbpfUnavailable {
    /// No private directory for the canary write.
    CanaryDir(CanaryDirError),
    /// No usable BTF.
    Btf(NoBtf),
    /// The watched roots cannot be described to the kernel.
    Roots(RootsError),
    /// Every attach family tried failed, in the order tried.
    Families(Vec<FamilyFailure>),
}

impl fmt::Display for EbpfUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CanaryDir(e) => e.fmt(f),
            Self::Btf(e) => write!(f, "btf: {e}"),
            Self::Roots(e) => write!(f, "roots: {e}"),
            Self::Families(failures) => {
                for (i, failure) in failures.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    failure.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for EbpfUnavailable {}

/// One attach family that could not be used.
#[derive(Debug)]
pub struct FamilyFailure {
    pub family: Family,
    pub failure: Failure,
}

impl fmt::Display for FamilyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.family.as_str(), self.failure)
    }
}

/// A step of loading or attaching that failed: what was attempted, why, and what to do.
#[derive(Debug)]
pub struct Failure {
    /// What was attempted, e.g. `kprobe dk_kprobe_write on vfs_write`; empty where the cause
    /// says it all.
    pub step: String,
    pub cause: Cause,
    pub hint: Hint,
}

impl Failure {
    pub fn new(step: impl Into<String>, cause: Cause, hint: Hint) -> Self {
        Self {
            step: step.into(),
            cause,
            hint,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.step.is_empty() {
            write!(f, "{}: ", self.step)?;
        }
        self.cause.fmt(f)?;
        match self.hint.text() {
            "" => Ok(()),
            hint => write!(f, " ({hint})"),
        }
    }
}

/// The cause of a [`Failure`].
#[derive(Debug)]
pub enum Cause {
    /// bpf(2) or perf_event_open(2) answered EPERM.
    PermissionDenied,
    /// The kernel has no kprobe PMU: this file is missing.
    NoKprobePmu { file: PathBuf },
    /// aya's error and its sources.
    Aya { chain: String },
    /// The verifier refused a program: the syscall's error and the log line that says why (the
    /// whole log goes to --debug).
    Verifier { errno: String, reason: String },
    /// A system call of the sidecar itself failed.
    Syscall {
        call: &'static str,
        source: io::Error,
    },
    /// fentry was asked for but the BTF is a cached file, not the kernel's own.
    CachedBtf { path: PathBuf },
    /// Attached, but the canary write did not come back right.
    Canary(CanaryError),
    /// fentry was asked for, but the compat object has no fentry programs.
    NoFentryInCompat,
    /// Attached, but the kernel filter did not match these watched directories by their
    /// (device, inode): their changes would never be reported.
    RootsNotMatched { paths: Vec<PathBuf> },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PermissionDenied => f.write_str("permission denied (EPERM)"),
            Self::NoKprobePmu { file } => {
                write!(f, "kprobe PMU missing ({} not found)", file.display())
            }
            Self::Aya { chain } => f.write_str(chain),
            Self::Verifier { errno, reason } => {
                write!(f, "the kernel's verifier refused it ({errno}): {reason}")
            }
            Self::Syscall { call, source } => write!(f, "{call}: {source}"),
            Self::CachedBtf { path } => write!(
                f,
                "needs the running kernel's own BTF type ids, but the BTF is the cached {}",
                path.display()
            ),
            Self::Canary(e) => write!(f, "canary check failed: {e}"),
            Self::NoFentryInCompat => f.write_str("the compat object has no fentry programs"),
            Self::RootsNotMatched { paths } => {
                f.write_str("the kernel filter does not match watched directory ")?;
                for (i, path) in paths.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", path.display())?;
                }
                f.write_str(
                    " by its device and inode (its changes would never be reported): \
                     a file system whose device number differs from the mount's",
                )
            }
        }
    }
}

/// What the operator can do about a [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    None,
    // EPERM also comes with both capabilities granted: from an old runtime seccomp profile that
    // allows bpf(2) only with CAP_SYS_ADMIN, or from a kernel that refuses this program type.
    Capabilities,
    // Before 5.8 the kernel knows no CAP_BPF/CAP_PERFMON: bpf(2) and perf need CAP_SYS_ADMIN.
    CapabilitiesBefore58,
    NoKprobes,
    // The modern object calls bpf_loop (Linux 5.17; some distributions backport it) and the
    // ring buffer (5.8): an older kernel's verifier rejects the call by helper number. `auto`
    // picks the compat object there, so this shows only when modern was forced.
    OldKernel,
    // The verifier's 1M-instruction budget ran out.
    TooComplex,
    WrongBtf,
    FentryNeedsSystemBtf,
    FentryNeedsModern,
    CanaryMismatch,
}

impl Hint {
    pub fn text(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Capabilities => {
                "grant CAP_BPF and CAP_PERFMON, or run privileged; if both are granted, the \
                 runtime's seccomp profile or the kernel forbids this program type"
            }
            Self::CapabilitiesBefore58 => {
                "this kernel predates CAP_BPF (Linux < 5.8): grant CAP_SYS_ADMIN, or run \
                 privileged; if it is granted, the runtime's seccomp profile forbids bpf(2)"
            }
            Self::NoKprobes => "the kernel has no kprobes (CONFIG_KPROBES is off)",
            Self::OldKernel => {
                "the kernel lacks a BPF helper the modern object needs (bpf_loop: Linux >= \
                 5.17, ring buffer: >= 5.8): use --ebpf-object=compat (or auto)"
            }
            Self::TooComplex => {
                "this kernel's verifier gave up on the program (complexity limit): try the \
                 other --ebpf-object, or another --attach mode"
            }
            Self::FentryNeedsModern => {
                "fentry needs the modern object (a kernel with bpf_loop and the ring buffer); \
                 kprobe and tracepoint work with compat"
            }
            Self::WrongBtf => {
                "the BTF does not describe this kernel: provide its own BTF as \
                 <cache>/<release>.btf (diffkeeper-init)"
            }
            Self::FentryNeedsSystemBtf => {
                "fentry works only with /sys/kernel/btf/vmlinux; kprobe and tracepoint work \
                 with cached BTF"
            }
            Self::CanaryMismatch => {
                "the BTF does not match this kernel: provide the kernel's own BTF as \
                 <cache>/<release>.btf"
            }
        }
    }
}

/// The watched roots cannot be put into the kernel's maps.
#[derive(Debug)]
pub enum RootsError {
    TooMany {
        count: usize,
        max: usize,
    },
    Open {
        path: PathBuf,
        source: io::Error,
    },
    Stat {
        path: PathBuf,
        source: io::Error,
    },
    TooManyOnOneDevice {
        path: PathBuf,
        max: usize,
    },
    /// Two roots with the same (device, inode) as the kernel sees them: btrfs subvolumes share
    /// one device and number their inodes alike; elsewhere they are one directory (the sidecar
    /// watches a directory given twice once, so this is a mount below a root showing it again).
    SameIdentity {
        first: PathBuf,
        second: PathBuf,
        dev: (u32, u32),
        ino: u64,
        /// The file system type of the mount holding `second` (empty when unknown).
        fs_type: String,
    },
    /// A btrfs subvolume below a root: its inode numbers can repeat the root's.
    NestedSubvolume {
        root: PathBuf,
        subvolume: PathBuf,
    },
}

impl fmt::Display for RootsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany { count, max } => write!(
                f,
                "{count} watched directories (with the canary's): at most {max}"
            ),
            Self::Open { path, source } => {
                write!(
                    f,
                    "cannot open watched directory {}: {source}",
                    path.display()
                )
            }
            Self::Stat { path, source } => {
                write!(
                    f,
                    "cannot stat watched directory {}: {source}",
                    path.display()
                )
            }
            Self::SameIdentity {
                first,
                second,
                dev: (major, minor),
                ino,
                fs_type,
            } if fs_type == "btrfs" => write!(
                f,
                "watched directories {} and {} are the same to the kernel (device {major}:{minor}, \
                 inode {ino}: btrfs subvolumes share one device and number their inodes alike), \
                 so eBPF cannot tell their changes apart; watch a common parent instead",
                first.display(),
                second.display()
            ),
            Self::SameIdentity {
                first,
                second,
                dev: (major, minor),
                ino,
                ..
            } => write!(
                f,
                "watched directories {} and {} are one directory (device {major}:{minor}, inode \
                 {ino}), reached twice, e.g. through a bind mount: eBPF cannot tell which path a \
                 change was made through; watch it once",
                first.display(),
                second.display()
            ),
            Self::NestedSubvolume { root, subvolume } => write!(
                f,
                "below watched directory {}, {} is a btrfs subvolume: inode numbers start \
                 afresh in each subvolume, so eBPF could take one of its directories for the \
                 watched one and report files under a wrong path; watch directories without \
                 subvolumes below them",
                root.display(),
                subvolume.display()
            ),
            Self::TooManyOnOneDevice { path, max } => write!(
                f,
                "more than {max} watched directories on one file system (at {}): watch a \
                 common parent instead",
                path.display()
            ),
        }
    }
}

impl std::error::Error for RootsError {}

/// The canary write did not come back as written.
#[derive(Debug)]
pub enum CanaryError {
    Write {
        path: PathBuf,
        source: io::Error,
    },
    ReaderStopped,
    /// An event of the awaited kind came back, with the wrong name (or size, for the write).
    Mismatch {
        expected: String,
        got_name: String,
        got_bytes: u64,
    },
    NoEvent {
        expected: String,
        wait: Duration,
    },
}

impl fmt::Display for CanaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Write { path, source } => {
                write!(
                    f,
                    "cannot change the canary file {}: {source}",
                    path.display()
                )
            }
            Self::ReaderStopped => f.write_str("the event reader stopped"),
            Self::Mismatch {
                expected,
                got_name,
                got_bytes,
            } => write!(
                f,
                "the canary's {expected} came back as {got_name:?}, {got_bytes} bytes"
            ),
            Self::NoEvent { expected, wait } => {
                write!(f, "no event for the canary's {expected} within {wait:?}")
            }
        }
    }
}

impl std::error::Error for CanaryError {}

/// No private directory for the canary could be made in any of the places tried.
#[derive(Debug)]
pub struct CanaryDirError {
    pub tried: Vec<(PathBuf, io::Error)>,
}

impl fmt::Display for CanaryDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot create a private canary directory (")?;
        for (i, (dir, e)) in self.tried.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {e}", dir.display())?;
        }
        f.write_str("); make --btf-cache-dir or $TMPDIR writable")
    }
}

impl std::error::Error for CanaryDirError {}
