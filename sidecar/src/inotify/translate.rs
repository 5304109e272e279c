//! notify's events to journal changes: create/mkdir/write/attrib/delete/rmdir/rename, paths
//! under a renamed directory followed, losses journaled as gaps.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{CreateKind, EventKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, INotifyWatcher, RecursiveMode, Watcher};

use super::pairing::Waiting;
use super::scan::PendingDir;
use super::{describe, is_directory, Msg};
use crate::change::{Backend, Change, ChangeSink, Delivery, Gap, GapReason, Op, STOP_GRACE};
use crate::metrics::Metrics;

/// How long the first half of a rename waits for its second half before it counts as a move
/// out of the watched tree (reported as a delete). Everything after it waits as long.
pub(super) const RENAME_PAIR_WAIT: Duration = Duration::from_millis(50);
/// How often an idle translator looks for events notify's thread had to drop.
const BEHIND_CHECK: Duration = Duration::from_millis(100);
/// Directory renames whose old paths are followed at once (see `Translator::moved_dirs`).
pub(super) const MOVED_DIRS_MAX: usize = 64;

pub(super) struct Translator {
    pub(super) watcher: INotifyWatcher,
    pub(super) roots: Vec<PathBuf>,
    /// Hands changes to the journal (bounded waits once stopping).
    pub(super) delivery: Delivery,
    pub(super) metrics: Arc<Metrics>,
    /// Records in journal order, held while the first half of a rename at their front waits
    /// for its second half (see [`super::pairing`]).
    pub(super) waiting: VecDeque<Waiting>,
    /// Entries a catch-up scan reported, by path, with their inode: a new directory is scanned
    /// after its watch is in place, so an entry made in between is both found by the scan and
    /// reported by inotify. An inotify create of that very inode is skipped; a create of
    /// another inode under that name (a file moved onto it) is new.
    pub(super) scanned: HashMap<PathBuf, (u64, Instant)>,
    pub(super) last_purge: Instant,
    /// New directories whose catch-up scan is due (see [`super::scan`]).
    pub(super) pending_dirs: HashSet<PathBuf>,
    pub(super) pending_order: Vec<PendingDir>,
    /// Directories renamed within the tree (from, to). notify names events by the watch they
    /// came from, and re-watches a renamed directory only after the batch of events it read the
    /// rename in: events from the old watches still carry the old path. They are renamed here
    /// until something new takes the old name or a directory above it.
    pub(super) moved_dirs: Vec<(PathBuf, PathBuf)>,
    /// Events notify's thread dropped because the event queue was full (see `handler`).
    pub(super) behind: Arc<AtomicU64>,
    /// The path of the last removal journaled: a removed watched directory is reported twice
    /// (its own watch, then its parent's), and journaled once.
    pub(super) last_removed: Option<PathBuf>,
}

impl Translator {
    pub(super) fn new(
        watcher: INotifyWatcher,
        roots: Vec<PathBuf>,
        sink: ChangeSink,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            watcher,
            roots,
            delivery: Delivery::new(sink, stop),
            metrics,
            waiting: VecDeque::new(),
            scanned: HashMap::new(),
            last_purge: Instant::now(),
            pending_dirs: HashSet::new(),
            pending_order: Vec::new(),
            moved_dirs: Vec::new(),
            behind: Arc::new(AtomicU64::new(0)),
            last_removed: None,
        }
    }

    pub(super) fn run(&mut self, rx: Receiver<Msg>) {
        while !self.stopping() {
            let msg = if let Some(deadline) = self.pair_deadline() {
                rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            } else if !self.pending_order.is_empty() {
                // Scans wait until notify's queue is read empty: one round trip for them all.
                match rx.try_recv() {
                    Ok(msg) => Ok(msg),
                    Err(TryRecvError::Empty) => {
                        self.catch_up_pending();
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                }
            } else {
                // Not a plain recv: events notify's thread dropped while the queue was full are
                // journaled (as a gap) even when no event follows them.
                rx.recv_timeout(BEHIND_CHECK)
            };
            match msg {
                Ok(Msg::Notify(Ok(event))) => self.handle(event),
                Ok(Msg::Notify(Err(error))) => self.report_error(&error),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.report_behind();
            self.expire_unpaired_moves(Some(Instant::now()));
        }
        // Hand over what is queued (bounded: deliver() gives up after the stop grace).
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Notify(Ok(event)) = msg {
                self.handle(event);
            }
        }
        self.expire_unpaired_moves(None);
        let dropped = self.delivery.dropped();
        if dropped > 0 {
            let total = self.metrics.count_inotify_dropped(dropped);
            log::warn!(
                "inotify: stopping: dropped {} changes the journal did not take within {} ms \
                 ({total} dropped in all; is its output blocked, e.g. a stalled stdout pipe?)",
                dropped,
                STOP_GRACE.as_millis()
            );
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.delivery.stopping()
    }

    pub(super) fn handle(&mut self, mut event: Event) {
        self.scan_pending_before(&event);
        let tracker = event.attrs.tracker();
        if !self.moved_dirs.is_empty() {
            if let (EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)), Some(path)) =
                (event.kind, event.paths.last())
            {
                // The name (or one above it) is taken by something new: events under it are
                // its own from now on.
                let path = path.clone();
                self.moved_dirs.retain(|(from, _)| !from.starts_with(&path));
            }
            // Both names of a rename too: its old name may lie below a renamed directory.
            for path in event.paths.iter_mut() {
                self.follow_moved_dirs(path);
            }
        }
        let mut paths = event.paths.into_iter();
        match event.kind {
            EventKind::Other if event.attrs.flag() == Some(notify::event::Flag::Rescan) => {
                self.rescan_after_overflow();
            }
            EventKind::Create(kind) => {
                let Some(path) = paths.next() else { return };
                let is_dir = kind == CreateKind::Folder || is_directory(&path);
                self.report_create(&path, is_dir);
                if is_dir {
                    self.schedule_catch_up(path);
                }
            }
            EventKind::Modify(ModifyKind::Data(_)) => {
                if let Some(path) = paths.next() {
                    self.emit(Op::Write, &path, None);
                }
            }
            EventKind::Modify(ModifyKind::Metadata(_)) => {
                if let Some(path) = paths.next() {
                    self.emit(Op::Attrib, &path, None);
                }
            }
            EventKind::Remove(kind) => {
                if let Some(path) = paths.next() {
                    if self.last_removed.as_ref() == Some(&path) {
                        return; // the same directory, from its own watch and its parent's
                    }
                    self.forget_scanned_under(&path);
                    let op = if kind == RemoveKind::Folder {
                        Op::Rmdir
                    } else {
                        Op::Delete
                    };
                    self.emit(op, &path, None);
                    self.last_removed = Some(path);
                }
            }
            EventKind::Modify(ModifyKind::Name(mode)) => self.handle_rename(mode, tracker, paths),
            // Opens and closes: not part of the journal.
            _ => {}
        }
    }

    pub(super) fn handle_rename(
        &mut self,
        mode: RenameMode,
        tracker: Option<usize>,
        mut paths: impl Iterator<Item = PathBuf>,
    ) {
        match (mode, tracker) {
            (RenameMode::From, Some(cookie)) => {
                if let Some(path) = paths.next() {
                    self.hold_move_out(cookie, path);
                }
            }
            (RenameMode::To, Some(cookie)) => {
                // Paired halves are followed by a `Both` event; a lone `To` is a move into the
                // tree from outside: new to us, like a create.
                if let (false, Some(path)) = (self.is_waiting_move(cookie), paths.next()) {
                    let is_dir = is_directory(&path);
                    self.report_create(&path, is_dir);
                    if is_dir {
                        self.schedule_catch_up(path);
                    }
                }
            }
            (RenameMode::Both, Some(cookie)) => {
                if let (Some(from), Some(to)) = (paths.next(), paths.next()) {
                    self.forget_scanned_under(&from);
                    self.forget_scanned_under(&to);
                    self.pair_move(cookie, &from, &to);
                    // Followed whatever `to` is now: notify does not say whether a renamed
                    // entry is a directory, and it may be gone already (following a file's
                    // name renames nothing: no event comes from below a file).
                    if self.moved_dirs.len() == MOVED_DIRS_MAX {
                        self.moved_dirs.remove(0);
                    }
                    self.moved_dirs.push((from, to));
                }
            }
            // A watched root itself moved (no cookie), or kinds inotify does not produce.
            _ => {}
        }
    }

    /// Renames `path` when it lies under a directory that was renamed (see `moved_dirs`),
    /// latest rename last.
    pub(super) fn follow_moved_dirs(&self, path: &mut PathBuf) {
        // Only what lies below: the old name itself is reported by its parent's watch, which
        // names it rightly (a directory created again under that name).
        for (from, to) in &self.moved_dirs {
            if let Ok(rest) = path.strip_prefix(from) {
                if !rest.as_os_str().is_empty() {
                    *path = to.join(rest);
                }
            }
        }
    }

    /// An inotify create (or move-in): reported unless a catch-up scan already reported this
    /// very entry (same inode).
    pub(super) fn report_create(&mut self, path: &Path, is_dir: bool) {
        if let Some((ino, _)) = self.scanned.remove(path) {
            let now = path.symlink_metadata().ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.ino()
            });
            if now == Some(ino) {
                return;
            }
        }
        self.emit(if is_dir { Op::Mkdir } else { Op::Create }, path, None);
    }
}

impl Translator {
    pub(super) fn rescan_after_overflow(&mut self) {
        let total = self.metrics.count_inotify_overflow();
        for root in &self.roots {
            if let Err(e) = self.watcher.watch(root, RecursiveMode::Recursive) {
                log::error!(
                    "inotify: re-watching {} failed: {}",
                    root.display(),
                    describe(&e)
                );
            }
        }
        log::warn!(
            "inotify event queue overflowed ({total} so far): changes were lost; journaled a \
             gap and the repair from a rescan (raise fs.inotify.max_queued_events to make this \
             rarer)"
        );
        self.gap(GapReason::InotifyOverflow, self.roots.clone(), None);
    }

    /// Events notify's thread had to drop since the last look: a gap here.
    pub(super) fn report_behind(&mut self) {
        if self.behind.load(Ordering::Relaxed) == 0 {
            return;
        }
        let lost = self.behind.swap(0, Ordering::Relaxed);
        self.gap(GapReason::InotifyBehind, self.roots.clone(), Some(lost));
    }

    pub(super) fn report_error(&mut self, error: &notify::Error) {
        let paths: Vec<String> = error
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let text = describe(error);
        match error.kind {
            notify::ErrorKind::MaxFilesWatch => {
                log::error!(
                    "inotify: new directories are not watched: {text}; journaled a gap (changes \
                     in unwatched directories are not seen until the limit is raised)"
                );
                let affected: Vec<PathBuf> = self
                    .roots
                    .iter()
                    .filter(|root| {
                        error.paths.is_empty() || error.paths.iter().any(|p| p.starts_with(root))
                    })
                    .cloned()
                    .collect();
                self.gap(GapReason::InotifyWatchLimit, affected, None);
            }
            _ => log::warn!("inotify: {text} ({})", paths.join(", ")),
        }
    }

    fn gap(&mut self, reason: GapReason, roots: Vec<PathBuf>, lost: Option<u64>) {
        let gap = Gap {
            ts: SystemTime::now(),
            backend: Backend::Inotify,
            roots,
            reason,
            lost,
        };
        self.queue(Waiting::Gap(gap));
    }

    pub(super) fn emit(&mut self, op: Op, path: &Path, from: Option<&Path>) {
        if op != Op::Delete && op != Op::Rmdir {
            self.last_removed = None;
        }
        let change = Change {
            ts: SystemTime::now(),
            backend: Backend::Inotify,
            op,
            path: path.to_path_buf(),
            from: from.map(Path::to_path_buf),
            pid: None,
            comm: None,
            bytes: None,
            truncated: false,
        };
        self.queue(Waiting::Change(change));
    }
}
