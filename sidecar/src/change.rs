//! One observed file change: what every backend (eBPF or inotify) hands to the journal.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
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
pub use diffkeeper_ebpf::event::Op;

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
    pub comm: Option<String>,
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

/// Where backends send changes: bounded, so a journal that cannot keep up makes the reader
/// wait (the ring buffer then absorbs, and counts, the excess in the kernel) instead of the
/// sidecar's memory growing without limit under a write flood. Changes dropped at stop are
/// counted in `dropped_at_stop`, which the journal turns into a last `gap` line.
#[derive(Clone)]
pub struct ChangeSink {
    tx: SyncSender<Record>,
    dropped_at_stop: Arc<AtomicU64>,
}

impl ChangeSink {
    /// Waits until the journal has written every record sent before (and so has done its
    /// start-up scan, the tree it starts from), at most `timeout`; false if it did not.
    pub fn fence(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut record = Record::Fence(Fence(tx));
        loop {
            match self.tx.try_send(record) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => record = back,
                Err(_) => return false,
            }
            std::thread::sleep(FULL_PAUSE_MAX);
        }
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// The journal's end of the queue.
pub struct ChangeQueue {
    pub rx: Receiver<Record>,
    dropped_at_stop: Arc<AtomicU64>,
}

impl ChangeQueue {
    /// Changes the backends dropped at stop because the queue stayed full (see [`Delivery`]).
    pub fn dropped_at_stop(&self) -> u64 {
        self.dropped_at_stop.load(Ordering::Acquire)
    }

    /// The next change within `timeout`, passing over gaps (for readers that look at changes
    /// only, such as tests of a backend; the journal reads `rx`).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Change, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Record::Change(change) = self.rx.recv_timeout(left)? {
                return Ok(change);
            }
        }
    }

    /// Every change until all senders are gone, passing over gaps.
    pub fn iter(&self) -> impl Iterator<Item = Change> + '_ {
        self.rx.iter().filter_map(Record::into_change)
    }

    /// The changes queued now, passing over gaps.
    pub fn try_iter(&self) -> impl Iterator<Item = Change> + '_ {
        self.rx.try_iter().filter_map(Record::into_change)
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

/// Changes queued between the backends and the journal (the slots are allocated up front:
/// 8 k × ~140 B ≈ 1.1 MiB; each queued change also holds its path strings).
pub const QUEUE_CAPACITY: usize = 8 * 1024;

/// A change queue of `capacity` entries.
pub fn queue(capacity: usize) -> (ChangeSink, ChangeQueue) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
    let dropped_at_stop = Arc::new(AtomicU64::new(0));
    (
        ChangeSink {
            tx,
            dropped_at_stop: dropped_at_stop.clone(),
        },
        ChangeQueue {
            rx,
            dropped_at_stop,
        },
    )
}

/// How often a backend waiting on a fence looks at the stop flag.
const FENCE_STOP_CHECK: Duration = Duration::from_millis(20);
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

    /// Changes dropped because the queue stayed full past the stop grace (a dropped gap counts
    /// the changes it reported lost: the journal's last gap line reports them instead).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn deliver(&mut self, change: Change) {
        self.send(Record::Change(change));
    }

    /// Reports lost changes at this point of the stream (same waiting rules as a change).
    pub fn report_gap(&mut self, gap: Gap) {
        self.send(Record::Gap(gap));
    }

    /// Waits until the journal has written every record sent before this call (a gap's repair
    /// lines included), at most `timeout`; false when it did not answer in time (or is gone).
    /// The inotify backend fences a gap so that its rescan is known to be done before it reads
    /// on (see `inotify::overflow`).
    /// Gives up at once when stopping (the journal may be stuck on its output).
    pub fn fence(&mut self, timeout: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(Record::Fence(Fence(tx)));
        let deadline = Instant::now() + timeout;
        while !self.stopping() && Instant::now() < deadline {
            match rx.recv_timeout(FENCE_STOP_CHECK) {
                Ok(()) => return true,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        false
    }

    /// Hands on a change or a loss, as [`Delivery::deliver`] does.
    pub fn send(&mut self, mut record: Record) {
        let mut pause = FULL_PAUSE_MIN;
        loop {
            match self.sink.tx.try_send(record) {
                // A closed queue means the sidecar is shutting down; nothing wants it any more.
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) => record = back,
            }
            if self.past_stop_grace() {
                let changes = record.changes_missing();
                self.dropped += changes;
                self.sink
                    .dropped_at_stop
                    .fetch_add(changes, Ordering::AcqRel);
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

    /// The last gap of a stopping backend (its loss count) is the one most likely to meet a
    /// full queue: dropped, it must hand its count on to the journal's last gap line.
    #[test]
    fn a_gap_dropped_at_stop_counts_the_changes_it_reported_lost() {
        let backend = Backend::Ebpf(Family::Tracepoint);
        let change = || Change {
            ts: SystemTime::UNIX_EPOCH,
            backend,
            op: Op::Write,
            path: "/s/f".into(),
            from: None,
            pid: None,
            comm: None,
            bytes: Some(1),
            truncated: false,
        };
        let (sink, queue) = queue(1);
        let mut delivery = Delivery::new(sink, Arc::new(AtomicBool::new(true)));
        delivery.deliver(change());
        delivery.report_gap(Gap {
            ts: SystemTime::UNIX_EPOCH,
            backend,
            roots: vec!["/s".into()],
            reason: GapReason::RingBufferFull,
            lost: Some(7),
        });
        delivery.deliver(change());
        assert_eq!((delivery.dropped(), queue.dropped_at_stop()), (8, 8));
    }
}
