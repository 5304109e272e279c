//! One observed file change: what every backend (eBPF or inotify) hands to the journal.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::SystemTime;

pub use crate::delivery::{queue, ChangeQueue, ChangeSink, Delivery, QUEUE_CAPACITY, STOP_GRACE};

/// Which mechanism saw the change; printed as the journal's `backend` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The eBPF programs of one attach family.
    Ebpf(Family),
    Inotify,
}

impl Backend {
    /// Every backend, in the order metrics list them.
    pub const ALL: [Backend; 4] = [
        Self::Ebpf(Family::Fentry),
        Self::Ebpf(Family::Kprobe),
        Self::Ebpf(Family::Tracepoint),
        Self::Inotify,
    ];

    /// This backend's position in [`Backend::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Ebpf(Family::Fentry) => 0,
            Self::Ebpf(Family::Kprobe) => 1,
            Self::Ebpf(Family::Tracepoint) => 2,
            Self::Inotify => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ebpf(family) => family.as_str(),
            Self::Inotify => "inotify",
        }
    }

    /// Whether this backend reports `op` at all (the coverage table of docs/how-it-works.md):
    /// kprobe and fentry see every op through the VFS, inotify every op through its events, and
    /// the tracepoint family every op from the syscalls (docs/tracepoint.md).
    /// The match is exhaustive on purpose: a new backend must say what it reports.
    pub fn reports(self, _op: Op) -> bool {
        match self {
            Self::Ebpf(_) | Self::Inotify => true,
        }
    }
}

/// An eBPF attach family: the programs that see writes, creates, deletes and renames. Defined
/// here, beside [`Backend`], because the journal names it; the eBPF wing attaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Fentry,
    Kprobe,
    Tracepoint,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::Tracepoint => "tracepoint",
        }
    }
}

/// The journal's `op` field: the eBPF ABI's ops, which inotify events map onto too.
pub use diffkeeper_ebpf::event::{Comm, Op};

/// A change under a watched state directory. `path` (and `from` for renames) are absolute:
/// the watched root joined with the path below it, as the bytes the kernel names them with
/// (Linux names need not be UTF-8; the journal line says how it prints those). pid/comm/bytes
/// are `None` where the backend cannot know them (inotify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub ts: SystemTime,
    pub backend: Backend,
    pub op: Op,
    pub path: PathBuf,
    pub from: Option<PathBuf>,
    pub pid: Option<u32>,
    pub comm: Option<Comm>,
    pub bytes: Option<u64>,
    /// The kernel side could not assemble the whole path (longer than it sends, or a name it
    /// could not read): `path` (or `from`) is cut after its last whole name and ends with `/`.
    /// Journaled as `"truncated": true`.
    pub truncated: bool,
}

/// What travels from the backends to the journal: a change, or the news that changes were lost
/// at this point of the stream (journaled as a `gap` line, then repaired by a rescan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Change(Change),
    Gap(Gap),
    /// Not a line: the journal writes everything it received before the fence (a gap's
    /// repair included), then answers it (see [`Delivery::fence`]).
    Fence(Fence),
}

/// A backend waiting until the journal has written what it was sent before (see
/// [`Delivery::fence`]).
#[derive(Debug, Clone)]
pub struct Fence(SyncSender<()>);

impl Fence {
    /// A fence, and where its [`Fence::pass`] arrives.
    pub(crate) fn new() -> (Self, Receiver<()>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        (Self(tx), rx)
    }

    /// Everything before the fence is written: the backend may go on.
    pub fn pass(self) {
        // The backend may have stopped waiting (timed out or stopping): nothing to tell.
        let _ = self.0.try_send(());
    }
}

/// Fences carry no data: any two are alike (so records compare by their changes and gaps).
impl PartialEq for Fence {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Fence {}

/// Changes lost before they reached the journal: where, why and (if known) how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub ts: SystemTime,
    /// The backend that lost them (its name is on the repair lines that follow).
    pub backend: Backend,
    /// The watched roots whose changes may be missing (all of them when the backend cannot tell).
    pub roots: Vec<PathBuf>,
    pub reason: GapReason,
    pub lost: Option<u64>,
}

/// Why changes were lost; the journal's `reason` and the `/metrics` label of `diffkeeper_gaps_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapReason {
    /// The kernel ring (or perf) buffer was full: eBPF events dropped in the kernel.
    RingBufferFull,
    /// kprobe mode: kretprobes that never ran (maxactive exhausted).
    KretprobeMissed,
    /// inotify's kernel queue overflowed (IN_Q_OVERFLOW).
    InotifyOverflow,
    /// A new directory could not be watched (fs.inotify.max_user_watches reached).
    InotifyWatchLimit,
    /// The sidecar stopped while the journal queue stayed full: the rest was dropped.
    StopDropped,
    /// The repair index reached its limit: later gaps in these roots cannot be repaired.
    IndexLimit,
    /// A change named a path the journal never reported (the backend missed its creation).
    UnreportedChange,
    /// tracepoint mode: a new name from a link call that cannot be placed below its directory.
    UnplacedName,
    /// eBPF: more changes came while the start-up canary ran than the reader holds back.
    CanaryHoldFull,
}

impl GapReason {
    pub const ALL: [GapReason; 9] = [
        Self::RingBufferFull,
        Self::KretprobeMissed,
        Self::InotifyOverflow,
        Self::InotifyWatchLimit,
        Self::StopDropped,
        Self::IndexLimit,
        Self::UnreportedChange,
        Self::UnplacedName,
        Self::CanaryHoldFull,
    ];

    /// The journal's `reason` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RingBufferFull => "ring buffer full",
            Self::KretprobeMissed => "kretprobe missed",
            Self::InotifyOverflow => "inotify queue overflow",
            Self::InotifyWatchLimit => "inotify watch limit",
            Self::StopDropped => "dropped at stop",
            Self::IndexLimit => "repair index limit",
            Self::UnreportedChange => "unreported change",
            Self::UnplacedName => "unplaced name",
            Self::CanaryHoldFull => "held back during the canary",
        }
    }

    /// The `/metrics` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::RingBufferFull => "ring_buffer_full",
            Self::KretprobeMissed => "kretprobe_missed",
            Self::InotifyOverflow => "inotify_overflow",
            Self::InotifyWatchLimit => "inotify_watch_limit",
            Self::StopDropped => "dropped_at_stop",
            Self::IndexLimit => "index_limit",
            Self::UnreportedChange => "unreported_change",
            Self::UnplacedName => "unplaced_name",
            Self::CanaryHoldFull => "canary_hold_full",
        }
    }

    /// This reason's position in [`GapReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Record {
    /// The changes the journal misses if this record never reaches it: a change itself, or a
    /// gap's own count (unknown counts as none: only the gap line itself would be missing); a
    /// fence carries no change.
    pub fn changes_missing(&self) -> u64 {
        match self {
            Self::Change(_) => 1,
            Self::Gap(gap) => gap.lost.unwrap_or(0),
            Self::Fence(_) => 0,
        }
    }

    pub fn into_change(self) -> Option<Change> {
        match self {
            Self::Change(change) => Some(change),
            Self::Gap(_) | Self::Fence(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_follows_all() {
        for (i, backend) in Backend::ALL.into_iter().enumerate() {
            assert_eq!(backend.index(), i, "{backend:?}");
        }
    }
}
