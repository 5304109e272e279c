//! notify's events to journal changes: create/write/delete/rename, renames paired, paths
//! under a renamed directory followed, overflows re-scanned, and the hand-over to the journal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{Event, INotifyWatcher, RecursiveMode, Watcher};

use super::{describe, is_directory, Msg};
use crate::change::{Backend, Change, ChangeSink, Delivery, Op, STOP_GRACE};
use crate::metrics::Metrics;

/// How long the first half of a rename waits for its second half before it counts as a move
/// out of the watched tree (reported as a delete).
pub(super) const RENAME_PAIR_WAIT: Duration = Duration::from_millis(50);
/// Directory renames whose old paths are followed at once (see `Translator::moved_dirs`).
pub(super) const MOVED_DIRS_MAX: usize = 64;

pub(super) struct Translator {
    pub(super) watcher: INotifyWatcher,
    pub(super) roots: Vec<PathBuf>,
    /// Hands changes to the journal (bounded waits once stopping).
    pub(super) delivery: Delivery,
    pub(super) metrics: Arc<Metrics>,
    /// First halves of renames (notify's tracker = inotify cookie), waiting for the second.
    pub(super) unpaired_moves: Vec<(usize, PathBuf, SystemTime, Instant)>,
    /// Paths a catch-up scan reported: a new directory is scanned after its watch is in place,
    /// so an entry made in between is both found by the scan and reported by inotify. The one
    /// inotify create of such a path is skipped; a delete or rename of it (or of a directory
    /// above it) ends the entry, so a path created again is reported again.
    pub(super) scanned: HashMap<PathBuf, Instant>,
    pub(super) last_purge: Instant,
    /// Directories renamed within the tree (from, to). notify names events by the watch they
    /// came from, and re-watches a renamed directory only after the batch of events it read the
    /// rename in: events from the old watches still carry the old path. They are renamed here
    /// until the old path is created again (its own events then carry it rightly).
    pub(super) moved_dirs: Vec<(PathBuf, PathBuf)>,
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
            unpaired_moves: Vec::new(),
            scanned: HashMap::new(),
            last_purge: Instant::now(),
            moved_dirs: Vec::new(),
        }
    }

    pub(super) fn run(&mut self, rx: Receiver<Msg>) {
        while !self.stopping() {
            let msg = if self.unpaired_moves.is_empty() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(RENAME_PAIR_WAIT)
            };
            match msg {
                Ok(Msg::Notify(Ok(event))) => self.handle(event),
                Ok(Msg::Notify(Err(error))) => self.report_error(&error),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
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
        let tracker = event.attrs.tracker();
        let renamed_both = matches!(
            event.kind,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both))
        );
        if !self.moved_dirs.is_empty() {
            if let (EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)), Some(path)) =
                (event.kind, event.paths.last())
            {
                // The old name exists again: from now on its events are its own.
                let path = path.clone();
                self.moved_dirs.retain(|(from, _)| *from != path);
            }
            // A `Both` event's first path is the old name as it was: only its new name moves.
            let skip = usize::from(renamed_both);
            for path in event.paths.iter_mut().skip(skip) {
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
                self.report_create(&path);
                if kind == CreateKind::Folder || is_directory(&path) {
                    self.catch_up_new_directory(&path);
                }
            }
            EventKind::Modify(ModifyKind::Data(_)) => {
                if let Some(path) = paths.next() {
                    self.emit(Op::Write, &path, None);
                }
            }
            EventKind::Remove(_) => {
                if let Some(path) = paths.next() {
                    self.forget_scanned_under(&path);
                    self.emit(Op::Delete, &path, None);
                }
            }
            EventKind::Modify(ModifyKind::Name(mode)) => self.handle_rename(mode, tracker, paths),
            // Opens, closes, attribute changes: not part of the journal.
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
                    self.unpaired_moves
                        .push((cookie, path, SystemTime::now(), Instant::now()));
                }
            }
            (RenameMode::To, Some(cookie)) => {
                // Paired halves are followed by a `Both` event; a lone `To` is a move into the
                // tree from outside: new to us, like a create.
                let paired = self.unpaired_moves.iter().any(|m| m.0 == cookie);
                if let (false, Some(path)) = (paired, paths.next()) {
                    self.report_create(&path);
                    if is_directory(&path) {
                        self.catch_up_new_directory(&path);
                    }
                }
            }
            (RenameMode::Both, Some(cookie)) => {
                self.unpaired_moves.retain(|m| m.0 != cookie);
                if let (Some(from), Some(to)) = (paths.next(), paths.next()) {
                    self.forget_scanned_under(&from);
                    self.forget_scanned_under(&to);
                    self.emit(Op::Rename, &to, Some(&from));
                    if is_directory(&to) {
                        if self.moved_dirs.len() == MOVED_DIRS_MAX {
                            self.moved_dirs.remove(0);
                        }
                        self.moved_dirs.push((from, to));
                    }
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

    /// An inotify create: reported unless a catch-up scan already reported this very entry.
    pub(super) fn report_create(&mut self, path: &Path) {
        if self.scanned.remove(path).is_none() {
            self.emit(Op::Create, path, None);
        }
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
            "inotify event queue overflowed ({total} so far): changes were lost; re-scanned the \
             watched directories (raise fs.inotify.max_queued_events to make this rarer)"
        );
    }

    pub(super) fn report_error(&self, error: &notify::Error) {
        let paths: Vec<String> = error
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let text = describe(error);
        match error.kind {
            notify::ErrorKind::MaxFilesWatch => {
                log::error!("inotify: new directories are not watched: {text}")
            }
            _ => log::warn!("inotify: {text} ({})", paths.join(", ")),
        }
    }

    /// Moves whose second half never came left the watched tree: report them as deletes.
    /// `None` expires all (at shutdown).
    pub(super) fn expire_unpaired_moves(&mut self, now: Option<Instant>) {
        while let Some(i) = self
            .unpaired_moves
            .iter()
            .position(|m| now.is_none_or(|now| now.duration_since(m.3) >= RENAME_PAIR_WAIT))
        {
            let (_, path, ts, _) = self.unpaired_moves.remove(i);
            self.forget_scanned_under(&path);
            self.send(Op::Delete, &path, None, ts);
        }
    }

    pub(super) fn emit(&mut self, op: Op, path: &Path, from: Option<&Path>) {
        self.send(op, path, from, SystemTime::now());
    }

    pub(super) fn send(&mut self, op: Op, path: &Path, from: Option<&Path>, ts: SystemTime) {
        let change = Change {
            ts,
            backend: Backend::Inotify,
            op,
            path: path.to_string_lossy().into_owned(),
            from: from.map(|p| p.to_string_lossy().into_owned()),
            pid: None,
            comm: None,
            bytes: None,
            truncated: false,
        };
        self.deliver(change);
    }

    /// Queues a change for the journal (see [`Delivery`]: events pile up in the bounded event
    /// queue meanwhile, and past it are dropped and counted).
    pub(super) fn deliver(&mut self, change: Change) {
        self.delivery.deliver(change);
    }
}
