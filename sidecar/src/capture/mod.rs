//! Capture (`--store`): the content of every journaled change, recorded into the content store
//! off the hot path.
//!
//! * this file: starting capture (baseline before ready), the journal's feed, the counters;
//! * [`worker`]: the capture thread (reads, tombstones, moves, retries);
//! * [`read`]: one path read as it is once its writes settled, never torn;
//! * [`state`]: what was recorded per path (rescans, hard links);
//! * [`record`]: one path recorded (and the rescan after a loss);
//! * [`exclude`]: `--exclude` globs; [`note`]: the journal's `"op":"capture"` lines.

mod exclude;
pub mod note;
mod read;
mod record;
mod settings;
mod setup;
mod state;
mod walk;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use diffkeeper_store::{Store, StoreError, StoreOptions};

pub use exclude::{BadGlob, Excludes};
pub use settings::CaptureSettings;
pub use setup::setup;
pub use worker::Settings;
use worker::Worker;

use crate::change::{Change, Op};
use note::{Content, Note, NoteReceiver};

/// Jobs queued between the journal and the capture thread. A job is a path or two; when the
/// store falls this far behind, jobs are counted lost and a rescan follows.
pub const QUEUE_CAPACITY: usize = 16 * 1024;

/// One journaled change for the capture thread.
#[derive(Debug, Clone)]
pub struct Job {
    pub op: Op,
    pub path: PathBuf,
    pub from: Option<PathBuf>,
    pub ts: SystemTime,
}

/// Capture's counters, shown by `/metrics`.
#[derive(Debug, Default)]
pub struct CaptureStats {
    pub queued: AtomicU64,
    pub handled: AtomicU64,
    pub recorded: AtomicU64,
    pub skipped: AtomicU64,
    pub deferred: AtomicU64,
    pub failed: AtomicU64,
    pub lost_queue_full: AtomicU64,
    pub lost_store_halted: AtomicU64,
    pub rescans: AtomicU64,
    /// Paths put off by `--capture-interval-ms`, now.
    pub deferred_now: AtomicU64,
    /// 1 while the store's file system is full.
    pub store_full: AtomicU64,
    /// Set by the journal when it dropped a job; the capture thread rescans and clears it.
    overflowed: AtomicBool,
    /// Set by the journal after a gap line (changes the backend lost); the capture thread
    /// rescans and clears it.
    gap_rescan: AtomicBool,
}

impl CaptureStats {
    fn handled(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }
    fn recorded(&self) {
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }
    fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }
    fn deferred(&self) {
        self.deferred.fetch_add(1, Ordering::Relaxed);
    }
    fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    fn rescan(&self) {
        self.rescans.fetch_add(1, Ordering::Relaxed);
    }
    fn lost_while_halted(&self) {
        self.lost_store_halted.fetch_add(1, Ordering::Relaxed);
    }
    fn no_space(&self, full: bool) {
        self.store_full.store(u64::from(full), Ordering::Relaxed);
    }
    fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }
    fn take_gap_rescan(&self) -> bool {
        self.gap_rescan.swap(false, Ordering::AcqRel)
    }

    /// Changes handed to the capture thread and not yet handled, plus paths put off.
    pub fn backlog(&self) -> u64 {
        self.queued
            .load(Ordering::Relaxed)
            .saturating_sub(self.handled.load(Ordering::Relaxed))
            + self.deferred_now.load(Ordering::Relaxed)
    }
}

/// The journal's end of capture: hands over each emitted change, and brings back the notes.
pub struct Feed {
    jobs: SyncSender<Job>,
    stats: Arc<CaptureStats>,
    pub notes: NoteReceiver,
    /// Dropping jobs: one note per run of drops, not one per job.
    dropping: bool,
}

impl Feed {
    /// The journal wrote a gap: the backend lost changes, so capture rescans the watched
    /// directories (the gap's repair lines are fed as changes too, but a gap repaired only
    /// partly, or not at all once the repair index is over its limit, would leave content
    /// behind).
    pub fn rescan(&self) {
        self.stats.gap_rescan.store(true, Ordering::Release);
    }

    /// Queues `change` for capture without waiting; a full queue returns the note to journal.
    pub fn offer(&mut self, change: &Change) -> Option<Note> {
        let job = Job {
            op: change.op,
            path: change.path.clone(),
            from: change.from.clone(),
            ts: change.ts,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                self.dropping = false;
                None
            }
            Err(TrySendError::Full(_)) => {
                self.stats.lost_queue_full.fetch_add(1, Ordering::Relaxed);
                self.stats.overflowed.store(true, Ordering::Release);
                if std::mem::replace(&mut self.dropping, true) {
                    return None;
                }
                log::warn!(
                    "capture: the capture queue is full ({QUEUE_CAPACITY} changes): the store is slower than the changes; their content is recorded by a rescan once it catches up"
                );
                Some(Note::new(
                    Some(&change.path),
                    Content::Lost,
                    format!("capture queue full ({QUEUE_CAPACITY} changes): this and further changes until it drains are recorded by a rescan of the watched directories"),
                ))
            }
            Err(TrySendError::Disconnected(_)) => None,
        }
    }
}

/// A feed without a store, for the journal's tests: the job queue's far end, the note sender,
/// and the counters (to see a rescan asked for).
#[cfg(test)]
pub(crate) fn test_feed(
    capacity: usize,
) -> (Feed, Receiver<Job>, note::NoteSender, Arc<CaptureStats>) {
    let stats = Arc::new(CaptureStats::default());
    let (jobs_tx, jobs) = mpsc::sync_channel(capacity);
    let (note_tx, notes) = mpsc::channel();
    let feed = Feed {
        jobs: jobs_tx,
        stats: stats.clone(),
        notes,
        dropping: false,
    };
    (feed, jobs, note_tx, stats)
}

#[cfg(test)]
impl CaptureStats {
    pub(crate) fn rescan_asked(&self) -> bool {
        self.gap_rescan.load(Ordering::Acquire)
    }
}

/// Why capture cannot start.
#[derive(Debug)]
pub enum CaptureError {
    /// The store could not be opened or created.
    Open {
        store: PathBuf,
        source: StoreError,
    },
    /// The baseline could not be recorded.
    Baseline {
        store: PathBuf,
        source: StoreError,
    },
    Thread(std::io::Error),
    /// The store names paths as UTF-8; a watched directory's path is not.
    RootNotUtf8 {
        root: PathBuf,
    },
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open { store, source } => write!(
                f,
                "--store {}: cannot open the content store: {source}",
                store.display()
            ),
            Self::Baseline { store, source } => write!(
                f,
                "--store {}: cannot record the baseline of the watched directories: {source}",
                store.display()
            ),
            Self::Thread(e) => write!(f, "cannot start the capture thread: {e}"),
            Self::RootNotUtf8 { root } => write!(
                f,
                "--store: the state directory {} is not a UTF-8 path, which the store cannot name; rename it",
                root.display()
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

/// An open store and the capture thread's queue, before the baseline: the journal gets its
/// feed first, so changes made while the baseline runs are queued, not missed.
pub struct Prepared {
    worker: Worker,
    jobs: Receiver<Job>,
    store: PathBuf,
}

/// Opens (or creates) the store and makes the journal's feed.
pub fn prepare(
    store: PathBuf,
    max_store_bytes: Option<u64>,
    roots: Vec<String>,
    settings: Settings,
    stats: Arc<CaptureStats>,
) -> Result<(Prepared, Feed), CaptureError> {
    let options = StoreOptions {
        sync_interval: settings.sync_every,
        max_bytes: max_store_bytes,
    };
    let writer = Store::create_or_open(&store, options).map_err(|source| CaptureError::Open {
        store: store.clone(),
        source,
    })?;
    let (note_tx, notes) = mpsc::channel();
    let worker = Worker::new(writer, roots, settings, note_tx, stats.clone());
    let (jobs_tx, jobs) = mpsc::sync_channel(QUEUE_CAPACITY);
    let feed = Feed {
        jobs: jobs_tx,
        stats,
        notes,
        dropping: false,
    };
    Ok((
        Prepared {
            worker,
            jobs,
            store,
        },
        feed,
    ))
}

/// A running capture thread.
pub struct Capture {
    thread: JoinHandle<()>,
}

impl Prepared {
    /// Records the baseline of every root (before the sidecar says ready), then starts the
    /// capture thread on what the journal queued meanwhile and after.
    pub fn start(self) -> Result<Capture, CaptureError> {
        let Prepared {
            mut worker,
            jobs,
            store,
        } = self;
        let started = std::time::Instant::now();
        let recorded = worker.baseline().map_err(|source| CaptureError::Baseline {
            store: store.clone(),
            source,
        })?;
        log::info!(
            "capture: baseline of the watched directories recorded in {} ({recorded} paths new or changed, {} ms)",
            store.display(),
            started.elapsed().as_millis()
        );
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || worker.run(jobs))
            .map_err(CaptureError::Thread)?;
        Ok(Capture { thread })
    }
}

impl Capture {
    /// Waits for the capture thread to record what is left and sync (the journal, which holds
    /// the feed, must have ended). `false` if it did not end within `limit`.
    pub fn finish(self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while !self.thread.is_finished() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.thread.join().is_ok()
    }
}
