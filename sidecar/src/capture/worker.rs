//! The capture thread: takes the journal's changes after coalescing and records them (see
//! [`super::record`] for one path); a store that refuses writes (full disk) halts capture
//! until a retry succeeds, then a rescan records what changed meanwhile. Off the hot path: the
//! journal only hands over a job (or counts it lost when the queue is full).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use diffkeeper_store::{PutOutcome, StoreError, StoreWriter};

use super::note::{tell, Content, Note, NoteSender};
use super::read::ChangedWhileRead;
use super::state::{Fingerprint, Known};
use super::{CaptureStats, Excludes, Job};
use crate::change::Op;

/// First wait before retrying a full or failing store; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// How capture behaves (from the command line).
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_file_bytes: u64,
    pub interval: Duration,
    pub sync_every: Duration,
    pub excludes: Excludes,
}

/// A store that refused a write: no store calls until `retry_at`, then a rescan.
struct Halt {
    retry_at: Instant,
    backoff: Duration,
    /// The refusal that halted it.
    error: StoreError,
}

pub struct Worker {
    pub(super) store: StoreWriter,
    pub(super) roots: Vec<String>,
    pub(super) settings: Settings,
    pub(super) notes: NoteSender,
    pub(super) stats: Arc<CaptureStats>,
    pub(super) known: Known,
    pub(super) last_read: HashMap<PathBuf, Instant>,
    /// Paths read too recently to read again: when they are due.
    pub(super) deferred: HashMap<PathBuf, Instant>,
    /// Paths whose skip was journaled (once per path until it is deleted).
    pub(super) told_skipped: HashSet<PathBuf>,
    /// Paths put off as always being written, and said so, until they are recorded again.
    pub(super) told_deferred: HashSet<PathBuf>,
    unsynced: bool,
    halt: Option<Halt>,
    /// While a halted store is retried: the wait it had (a new refusal doubles it, quietly).
    retrying: Option<Duration>,
    /// The recorded times never go back, even if the clock does.
    last_ts: SystemTime,
}

impl Worker {
    pub fn new(
        store: StoreWriter,
        roots: Vec<String>,
        settings: Settings,
        notes: NoteSender,
        stats: Arc<CaptureStats>,
    ) -> Self {
        Self {
            store,
            roots,
            settings,
            notes,
            stats,
            known: Known::default(),
            last_read: HashMap::new(),
            deferred: HashMap::new(),
            told_skipped: HashSet::new(),
            told_deferred: HashSet::new(),
            unsynced: false,
            halt: None,
            retrying: None,
            last_ts: SystemTime::UNIX_EPOCH,
        }
    }

    /// The baseline: every watched root as it is now, synced. Returns the paths recorded.
    /// What an existing store holds under the roots counts as recorded but unverified, so the
    /// rescan records what differs and a tombstone for what disappeared while no sidecar ran.
    pub fn baseline(&mut self) -> Result<usize, StoreError> {
        let held: Vec<PathBuf> = self
            .store
            .tree()
            .entries
            .keys()
            .filter(|(root, _)| self.roots.contains(root))
            .map(|(root, rel)| {
                let root = super::state::trim_end_slashes(root.as_bytes());
                PathBuf::from(OsString::from_vec([root, b"/", rel].concat()))
            })
            .collect();
        for path in held {
            self.known.insert(&path, Fingerprint::UNVERIFIED);
        }
        let before = self
            .stats
            .recorded
            .load(std::sync::atomic::Ordering::Relaxed);
        self.rescan();
        if let Some(halt) = self.halt.take() {
            return Err(halt.error);
        }
        self.store.sync()?;
        self.unsynced = false;
        let after = self
            .stats
            .recorded
            .load(std::sync::atomic::Ordering::Relaxed);
        Ok((after - before) as usize)
    }

    /// Handles jobs until the journal closes the queue, then records what is deferred and syncs.
    pub fn run(mut self, jobs: Receiver<Job>) {
        loop {
            let wait = self.next_wakeup().saturating_duration_since(Instant::now());
            match jobs.recv_timeout(wait) {
                Ok(job) => self.handle(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.tick(Instant::now());
            self.stats.deferred_now.store(
                self.deferred.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        self.finish();
    }

    fn next_wakeup(&self) -> Instant {
        let now = Instant::now();
        let mut next = now + RETRY_MAX;
        if self.unsynced {
            next = next.min(now + self.settings.sync_every);
        }
        if let Some(halt) = &self.halt {
            next = next.min(halt.retry_at);
        }
        if let Some(due) = self.deferred.values().min() {
            next = next.min(*due);
        }
        next
    }

    fn tick(&mut self, now: Instant) {
        if let Some(halt) = &self.halt {
            if now >= halt.retry_at {
                self.resume();
            }
            return;
        }
        let overflowed = self.stats.take_overflow();
        // After a journal gap the gap line says the loss: the rescan needs no note of its own.
        if self.stats.take_gap_rescan() || overflowed {
            self.rescan();
        }
        if overflowed {
            tell(
                &self.notes,
                Note::new(
                    None,
                    Content::Resumed,
                    "the watched directories were recorded again after the capture queue overflowed",
                ),
            );
        }
        let due: Vec<PathBuf> = self
            .deferred
            .iter()
            .filter(|(_, due)| **due <= now)
            .map(|(path, _)| path.clone())
            .collect();
        for path in due {
            self.deferred.remove(&path);
            self.capture(&path);
        }
        if self.unsynced && self.halt.is_none() {
            let synced = self.store.sync_if_due();
            self.check(synced.map(|()| PutOutcome::default()), None);
        }
    }

    /// At stop: what is deferred is recorded now, then everything is synced.
    fn finish(mut self) {
        if self.halt.is_some() {
            self.resume();
        } else if self.stats.take_overflow() | self.stats.take_gap_rescan() {
            // Lost at stop (queue full, or the journal's last gap): recorded before the sync.
            self.rescan();
        }
        let deferred: Vec<PathBuf> = self.deferred.drain().map(|(path, _)| path).collect();
        for path in deferred {
            self.last_read.remove(&path);
            self.capture(&path);
        }
        match self.store.sync() {
            Ok(()) => log::info!("capture: stopped; store synced"),
            Err(e) => log::error!("capture: final sync of the store failed: {e}"),
        }
    }

    fn handle(&mut self, job: Job) {
        self.apply(job);
        // Counted once done, with what it put off, so the backlog never reads 0 too early.
        self.stats.deferred_now.store(
            self.deferred.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.stats.handled();
    }

    fn apply(&mut self, job: Job) {
        if self.halt.is_some() {
            self.stats.lost_while_halted();
            return;
        }
        match job.op {
            Op::Delete | Op::Rmdir => self.delete(&job.path),
            Op::Rename => match &job.from {
                Some(from) => self.rename(from, &job.path),
                None => self.capture(&job.path),
            },
            Op::Attrib => self.attrib(&job.path),
            _ => self.capture(&job.path),
        }
    }

    /// The time a record is stamped with: now, never before the previous record.
    pub(super) fn now(&mut self) -> SystemTime {
        self.last_ts = self.last_ts.max(SystemTime::now());
        self.last_ts
    }

    /// Whether store calls are refused for now (the caller stops what it was doing).
    pub(super) fn halted(&self) -> bool {
        self.halt.is_some()
    }

    /// After a store call: `true` if it worked; else the store is halted until a retry.
    pub(super) fn check(
        &mut self,
        result: Result<PutOutcome, StoreError>,
        path: Option<&Path>,
    ) -> bool {
        match result {
            Ok(outcome) => {
                self.unsynced = true;
                if let Some(pruned) = outcome.pruned {
                    log::info!(
                        "capture: --store-max-bytes: pruned the content of {} old versions ({} -> {} bytes){}",
                        pruned.versions.len(),
                        pruned.bytes_before,
                        pruned.bytes_after,
                        pruned
                            .versions
                            .iter()
                            .take(5)
                            .map(|(root, path, _)| format!(", {root}/{}", String::from_utf8_lossy(path)))
                            .collect::<String>()
                    );
                }
                true
            }
            Err(e) => {
                let previous = self.halt.as_ref().map(|h| h.backoff).or(self.retrying);
                let backoff = previous.map_or(RETRY_MIN, |b| (b * 2).min(RETRY_MAX));
                if previous.is_none() {
                    let (what, fix) = if e.is_no_space() {
                        self.stats.no_space(true);
                        (
                            "the store's file system is full (ENOSPC)",
                            "free space or grow the volume",
                        )
                    } else {
                        self.stats.failed();
                        ("the store refused a write", "see the error")
                    };
                    tell(
                        &self.notes,
                        Note::new(
                            path,
                            Content::Lost,
                            format!(
                                "{what}: {e}; capture pauses, the journal goes on, and the watched directories are recorded again once the store takes writes ({fix}; first retry in {} s)",
                                backoff.as_secs()
                            ),
                        ),
                    );
                }
                self.halt = Some(Halt {
                    retry_at: Instant::now() + backoff,
                    backoff,
                    error: e,
                });
                false
            }
        }
    }

    /// Retries a halted store: a rescan records what changed meanwhile.
    fn resume(&mut self) {
        let Some(halt) = self.halt.take() else { return };
        self.retrying = Some(halt.backoff);
        self.rescan();
        if self.halt.is_none() {
            let synced = self.store.sync();
            self.check(synced.map(|()| PutOutcome::default()), None);
        }
        self.retrying = None;
        if self.halt.is_some() {
            log::debug!("capture: the store still refuses writes");
            return;
        }
        self.stats.no_space(false);
        tell(
            &self.notes,
            Note::new(
                None,
                Content::Resumed,
                "the store takes writes again: the watched directories were recorded again",
            ),
        );
    }
}

/// The watched root `path` lies in (the deepest, if roots nest) and the path below it; `None`
/// for a root itself or a path outside every root.
pub(super) fn place<'a>(roots: &'a [String], path: &'a Path) -> Option<(&'a str, &'a [u8])> {
    let root = roots
        .iter()
        .filter(|root| super::state::is_within(path, Path::new(root)))
        .max_by_key(|root| root.len())?;
    let rel = &path.as_os_str().as_bytes()[root.len()..];
    let rel = &rel[rel.iter().take_while(|&&b| b == b'/').count()..];
    (!rel.is_empty()).then_some((root.as_str(), rel))
}

/// Whether a store error comes from a file that changed while it was read.
pub(super) fn changed_while_read(e: &StoreError) -> bool {
    matches!(e, StoreError::Io { source, .. } if ChangedWhileRead::is(source))
}
