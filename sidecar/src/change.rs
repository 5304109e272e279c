//! One observed file change: what every backend (eBPF or inotify) hands to the journal.

use std::time::SystemTime;

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

/// The journal's `op` field: the eBPF ABI's four ops, which inotify events map onto too.
pub use diffkeeper_ebpf::event::Op;

/// A change under a watched state directory. `path` (and `from` for renames) are absolute:
/// the watched root joined with the path below it. pid/comm/bytes are `None` where the
/// backend cannot know them (inotify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub ts: SystemTime,
    pub backend: Backend,
    pub op: Op,
    pub path: String,
    pub from: Option<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub bytes: Option<u64>,
    /// The kernel side could not assemble the whole path (longer than it sends, or a name it
    /// could not read): `path` (or `from`) is cut after its last whole name and ends with `/`.
    /// Journaled as `"truncated": true`.
    pub truncated: bool,
}

/// Where backends send changes: bounded, so a journal that cannot keep up makes the reader
/// wait (the ring buffer then absorbs, and counts, the excess in the kernel) instead of the
/// sidecar's memory growing without limit under a write flood.
pub type ChangeSink = std::sync::mpsc::SyncSender<Change>;

/// Changes queued between the backends and the journal (the slots are allocated up front:
/// 8 k × ~140 B ≈ 1.1 MiB; each queued change also holds its path strings).
pub const QUEUE_CAPACITY: usize = 8 * 1024;

/// A change queue of `capacity` entries.
pub fn queue(capacity: usize) -> (ChangeSink, std::sync::mpsc::Receiver<Change>) {
    std::sync::mpsc::sync_channel(capacity)
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
