//! One observed file change: what every backend (eBPF or inotify) hands to the journal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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

    /// Whether this backend reports `op` at all (the README's coverage table): the tracepoint
    /// family sees every op from the syscalls (docs/tracepoint.md); the others do not report
    /// directories or attribute changes as their own ops yet.
    pub fn reports(self, op: Op) -> bool {
        matches!(self, Self::Ebpf(Family::Tracepoint))
            || !matches!(op, Op::Mkdir | Op::Rmdir | Op::Attrib)
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

/// After stop, a backend waits on a full change queue this long in all, then drops what is left.
pub const STOP_GRACE: Duration = Duration::from_millis(200);
/// While the queue is full a backend re-tries after a pause that doubles up to the maximum:
/// short next to the time the journal needs to drain the queue, so it never runs dry.
const FULL_PAUSE_MIN: Duration = Duration::from_micros(10);
const FULL_PAUSE_MAX: Duration = Duration::from_micros(200);

/// How both backends hand changes to the journal. While running, [`Delivery::deliver`] waits as
/// long as the queue is full: the backend then stops reading, and its own bounded buffer (the
/// kernel ring, inotify's event queue) absorbs and counts the excess. Once `stop` is set it
/// waits at most [`STOP_GRACE`] in all, then drops (and counts) what is left, so a journal stuck
/// on a blocked output cannot hang shutdown. (std's SyncSender has no send with timeout, hence
/// try_send and short pauses while the queue is full.)
pub struct Delivery {
    sink: ChangeSink,
    stop: Arc<AtomicBool>,
    /// Set when a full queue is first met after stop: the most it waits from then on.
    give_up_at: Option<Instant>,
    dropped: u64,
}

impl Delivery {
    pub fn new(sink: ChangeSink, stop: Arc<AtomicBool>) -> Self {
        Self {
            sink,
            stop,
            give_up_at: None,
            dropped: 0,
        }
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Changes dropped because the queue stayed full past the stop grace.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn deliver(&mut self, mut change: Change) {
        let mut pause = FULL_PAUSE_MIN;
        loop {
            match self.sink.try_send(change) {
                // A closed queue means the sidecar is shutting down; nothing wants it any more.
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) => change = back,
            }
            if self.past_stop_grace() {
                self.dropped += 1;
                return;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(FULL_PAUSE_MAX);
        }
    }

    fn past_stop_grace(&mut self) -> bool {
        if !self.stopping() {
            return false;
        }
        let give_up_at = *self
            .give_up_at
            .get_or_insert_with(|| Instant::now() + STOP_GRACE);
        Instant::now() >= give_up_at
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
