//! The queue from the backends to the journal, and how a backend hands records to it.
//!
//! Records travel in batches: at full write rate one channel operation (and one wake-up of the
//! journal) per record cost more than journaling it. A backend that reads events in bulk
//! gathers a read's records ([`Delivery::gather`]) and sends them at once
//! ([`Delivery::flush`]); any other send goes on its own, as before. The journal hands the
//! emptied batches back ([`ChangeQueue::recycle`]): allocated anew for every batch and freed
//! on the other thread, they had musl's allocator map and unmap pages all the time. For the same
//! reason the journal hands back the paths of the changes it has written
//! ([`PathReturn`]): the reader builds the next paths in them. A path allocated on one thread
//! and freed on the other cost two trips through musl's one allocator lock per change.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::change::{Change, Fence, Gap, Record};

/// What one channel operation carries: records in stream order.
pub type Batch = Vec<Record>;

/// The most records a gathering backend puts in one batch.
pub const BATCH_MAX: usize = 128;

/// Batches queued between the backends and the journal: at most 64 × [`BATCH_MAX`] = 8 k
/// records (~180 B each, plus their path strings), the bound a flood meets before the backend
/// waits and its own buffer (the kernel ring, inotify's queue) absorbs and counts the excess.
pub const QUEUE_CAPACITY: usize = 64;

/// Where backends send changes: bounded, so a journal that cannot keep up makes the reader
/// wait (the ring buffer then absorbs, and counts, the excess in the kernel) instead of the
/// sidecar's memory growing without limit under a write flood. Changes dropped at stop are
/// counted in `dropped_at_stop`, which the journal turns into a last `gap` line.
#[derive(Clone)]
pub struct ChangeSink {
    tx: SyncSender<Batch>,
    dropped_at_stop: Arc<AtomicU64>,
    /// Emptied batches coming back from the journal.
    spare: Arc<Mutex<Receiver<Batch>>>,
    /// Paths of written changes coming back from the journal.
    spare_paths: Arc<Mutex<Receiver<Vec<PathBuf>>>>,
}

impl ChangeSink {
    /// An empty batch with room for [`BATCH_MAX`] records: one the journal gave back if any.
    fn empty_batch(&self) -> Batch {
        let recycled = self
            .spare
            .lock()
            .ok()
            .and_then(|spare| spare.try_recv().ok());
        recycled.unwrap_or_else(|| Vec::with_capacity(BATCH_MAX))
    }

    /// Paths the journal is done with, to build new ones in (empty if none came back).
    pub fn spare_paths(&self) -> Vec<PathBuf> {
        let recycled = self
            .spare_paths
            .lock()
            .ok()
            .and_then(|spare| spare.try_recv().ok());
        recycled.unwrap_or_default()
    }

    /// Waits until the journal has written every record sent before (and so has done its
    /// start-up scan, the tree it starts from), at most `timeout`; false if it did not.
    pub fn fence(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (fence, passed) = Fence::new();
        let mut batch = vec![Record::Fence(fence)];
        loop {
            match self.tx.try_send(batch) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => batch = back,
                Err(_) => return false,
            }
            std::thread::sleep(FULL_PAUSE_MAX);
        }
        passed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// The journal's end of the queue.
pub struct ChangeQueue {
    pub rx: Receiver<Batch>,
    dropped_at_stop: Arc<AtomicU64>,
    spare: SyncSender<Batch>,
    spare_paths: SyncSender<Vec<PathBuf>>,
    /// What is left of the last batch taken by [`ChangeQueue::recv_timeout`].
    unread: RefCell<VecDeque<Record>>,
}

impl ChangeQueue {
    /// Changes the backends dropped at stop because the queue stayed full (see [`Delivery`]).
    pub fn dropped_at_stop(&self) -> u64 {
        self.dropped_at_stop.load(Ordering::Acquire)
    }

    /// Hands an emptied batch back for the backends to fill again (a batch grown past its
    /// usual size, or one too many, is freed instead).
    pub fn recycle(&self, mut batch: Batch) {
        batch.clear();
        if batch.capacity() == BATCH_MAX {
            let _ = self.spare.try_send(batch);
        }
    }

    /// Where the journal hands back the paths of the changes it has written.
    pub fn path_return(&self) -> PathReturn {
        PathReturn {
            tx: self.spare_paths.clone(),
            pending: Vec::new(),
        }
    }

    /// The next change within `timeout`, passing over gaps (for readers that look at changes
    /// only, such as tests of a backend; the journal reads `rx`).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Change, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            let next = self.unread.borrow_mut().pop_front();
            match next {
                Some(Record::Change(change)) => return Ok(change),
                Some(_) => {}
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let batch = self.rx.recv_timeout(left)?;
                    self.unread.borrow_mut().extend(batch);
                }
            }
        }
    }

    /// Every change until all senders are gone, passing over gaps.
    pub fn iter(&self) -> impl Iterator<Item = Change> + '_ {
        self.take_unread()
            .chain(self.rx.iter().flatten())
            .filter_map(Record::into_change)
    }

    /// The changes queued now, passing over gaps.
    pub fn try_iter(&self) -> impl Iterator<Item = Change> + '_ {
        self.take_unread()
            .chain(self.rx.try_iter().flatten())
            .filter_map(Record::into_change)
    }

    fn take_unread(&self) -> impl Iterator<Item = Record> {
        std::mem::take(&mut *self.unread.borrow_mut()).into_iter()
    }
}

/// A change queue of `capacity` batches.
pub fn queue(capacity: usize) -> (ChangeSink, ChangeQueue) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
    let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel(capacity);
    let (paths_tx, paths_rx) = std::sync::mpsc::sync_channel(PATHS_QUEUED);
    let dropped_at_stop = Arc::new(AtomicU64::new(0));
    (
        ChangeSink {
            tx,
            dropped_at_stop: dropped_at_stop.clone(),
            spare: Arc::new(Mutex::new(spare_rx)),
            spare_paths: Arc::new(Mutex::new(paths_rx)),
        },
        ChangeQueue {
            rx,
            dropped_at_stop,
            spare: spare_tx,
            spare_paths: paths_tx,
            unread: RefCell::default(),
        },
    )
}

/// Bundles of [`BATCH_MAX`] paths on their way back (4 k paths, ~250 KB at most). The reader
/// takes one when it runs out and the journal sends one per [`BATCH_MAX`] changes written, in
/// bursts; with 4 bundles, those that found the queue full were freed, and the reader still
/// allocated a path for one change in five at full rate.
const PATHS_QUEUED: usize = 32;

/// The journal's side of path reuse: paths gathered and sent back [`BATCH_MAX`] at a time
/// (dropped, and freed, when nobody takes them).
pub struct PathReturn {
    tx: SyncSender<Vec<PathBuf>>,
    pending: Vec<PathBuf>,
}

impl PathReturn {
    pub fn give(&mut self, path: PathBuf) {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(BATCH_MAX);
        }
        self.pending.push(path);
        if self.pending.len() == BATCH_MAX {
            let _ = self.tx.try_send(std::mem::take(&mut self.pending));
        }
    }
}

/// How often a backend waiting on a fence looks at the stop flag.
const FENCE_STOP_CHECK: Duration = Duration::from_millis(20);
/// After stop, a backend waits on a full change queue this long in all, then drops what is left.
pub const STOP_GRACE: Duration = Duration::from_millis(200);
/// While the queue is full a backend re-tries after a pause that doubles up to the maximum:
/// short next to the time the journal needs to drain the queue, so it never runs dry.
const FULL_PAUSE_MIN: Duration = Duration::from_micros(10);
const FULL_PAUSE_MAX: Duration = Duration::from_micros(200);

/// How both backends hand changes to the journal. While running, a send waits as long as the
/// queue is full: the backend then stops reading, and its own bounded buffer (the kernel ring,
/// inotify's event queue) absorbs and counts the excess. Once `stop` is set it waits at most
/// [`STOP_GRACE`] in all, then drops (and counts) what is left, so a journal stuck on a blocked
/// output cannot hang shutdown. (std's SyncSender has no send with timeout, hence try_send and
/// short pauses while the queue is full.)
pub struct Delivery {
    sink: ChangeSink,
    stop: Arc<AtomicBool>,
    /// Set when a full queue is first met after stop: the most it waits from then on.
    give_up_at: Option<Instant>,
    dropped: u64,
    /// Records not sent yet: only between [`Delivery::gather`] and [`Delivery::flush`].
    pending: Batch,
    gathering: bool,
}

impl Delivery {
    pub fn new(sink: ChangeSink, stop: Arc<AtomicBool>) -> Self {
        Self {
            sink,
            stop,
            give_up_at: None,
            dropped: 0,
            pending: Vec::new(),
            gathering: false,
        }
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Paths the journal is done with (see [`ChangeSink::spare_paths`]).
    pub fn spare_paths(&self) -> Vec<PathBuf> {
        self.sink.spare_paths()
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

    /// From now until [`Delivery::flush`], records are sent in batches of up to [`BATCH_MAX`].
    pub fn gather(&mut self) {
        self.gathering = true;
        if self.pending.capacity() == 0 {
            self.pending = self.sink.empty_batch();
        }
    }

    /// Sends what was gathered, and sends every record on its own again.
    pub fn flush(&mut self) {
        self.gathering = false;
        self.send_pending();
    }

    /// Waits until the journal has written every record sent before this call (a gap's repair
    /// lines included), at most `timeout`; false when it did not answer in time (or is gone).
    /// The inotify backend fences a gap so that its rescan is known to be done before it reads
    /// on (see `inotify::overflow`).
    /// Gives up at once when stopping (the journal may be stuck on its output).
    pub fn fence(&mut self, timeout: Duration) -> bool {
        let (fence, passed) = Fence::new();
        self.pending.push(Record::Fence(fence));
        self.send_pending();
        let deadline = Instant::now() + timeout;
        while !self.stopping() && Instant::now() < deadline {
            match passed.recv_timeout(FENCE_STOP_CHECK) {
                Ok(()) => return true,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        false
    }

    /// Hands on a change or a loss, as [`Delivery::deliver`] does.
    pub fn send(&mut self, record: Record) {
        self.pending.push(record);
        if !self.gathering || self.pending.len() >= BATCH_MAX {
            self.send_pending();
        }
    }

    fn send_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let next = if self.gathering {
            self.sink.empty_batch()
        } else {
            Vec::new()
        };
        let mut batch = std::mem::replace(&mut self.pending, next);
        let mut pause = FULL_PAUSE_MIN;
        loop {
            match self.sink.tx.try_send(batch) {
                // A closed queue means the sidecar is shutting down; nothing wants it any more.
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) => batch = back,
            }
            if self.past_stop_grace() {
                let changes = batch.iter().map(Record::changes_missing).sum();
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
    use crate::change::{Backend, Family, GapReason, Op};
    use std::time::SystemTime;

    fn change(path: &str) -> Change {
        Change {
            ts: SystemTime::UNIX_EPOCH,
            backend: Backend::Ebpf(Family::Tracepoint),
            op: Op::Write,
            path: path.into(),
            from: None,
            pid: None,
            comm: None,
            bytes: Some(1),
            truncated: false,
        }
    }

    #[test]
    fn gathered_records_go_in_batches_in_order_and_single_ones_alone() {
        let (sink, queue) = queue(QUEUE_CAPACITY);
        let mut delivery = Delivery::new(sink, Arc::new(AtomicBool::new(false)));
        delivery.deliver(change("/s/0"));
        delivery.gather();
        for i in 1..=BATCH_MAX + 2 {
            delivery.deliver(change(&format!("/s/{i}")));
        }
        delivery.flush();
        delivery.deliver(change("/s/last"));
        let sizes: Vec<usize> = queue.rx.try_iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1, BATCH_MAX, 2, 1]);
        let (sink, queue) = queue_with(&[0, 1, 2]);
        drop(sink);
        let paths: Vec<_> = queue.iter().map(|c| c.path).collect();
        assert_eq!(
            paths,
            ["/s/0", "/s/1", "/s/2"].map(std::path::PathBuf::from)
        );
    }

    fn queue_with(ids: &[u32]) -> (ChangeSink, ChangeQueue) {
        let (sink, queue) = queue(QUEUE_CAPACITY);
        let mut delivery = Delivery::new(sink.clone(), Arc::new(AtomicBool::new(false)));
        delivery.gather();
        for id in ids {
            delivery.deliver(change(&format!("/s/{id}")));
        }
        delivery.flush();
        (sink, queue)
    }

    #[test]
    fn a_fence_sends_what_was_gathered_before_it() {
        let (sink, queue) = queue(QUEUE_CAPACITY);
        let mut delivery = Delivery::new(sink, Arc::new(AtomicBool::new(false)));
        delivery.gather();
        delivery.deliver(change("/s/a"));
        let journal = std::thread::spawn(move || {
            let batch = queue.rx.recv().unwrap();
            let mut kinds = Vec::new();
            for record in batch {
                match record {
                    Record::Fence(fence) => {
                        kinds.push("fence");
                        fence.pass();
                    }
                    _ => kinds.push("change"),
                }
            }
            kinds
        });
        assert!(delivery.fence(Duration::from_secs(5)));
        assert_eq!(journal.join().unwrap(), ["change", "fence"]);
    }

    /// The last gap of a stopping backend (its loss count) is the one most likely to meet a
    /// full queue: dropped, it must hand its count on to the journal's last gap line.
    #[test]
    fn a_gap_dropped_at_stop_counts_the_changes_it_reported_lost() {
        let (sink, queue) = queue(1);
        let mut delivery = Delivery::new(sink, Arc::new(AtomicBool::new(true)));
        delivery.deliver(change("/s/f"));
        delivery.report_gap(Gap {
            ts: SystemTime::UNIX_EPOCH,
            backend: Backend::Ebpf(Family::Tracepoint),
            roots: vec!["/s".into()],
            reason: GapReason::RingBufferFull,
            lost: Some(7),
        });
        delivery.deliver(change("/s/f"));
        assert_eq!((delivery.dropped(), queue.dropped_at_stop()), (8, 8));
    }
}
