//! The inotify backend (notify crate, recursive watches): used when eBPF is disabled or
//! impossible. Same journal schema with `"backend":"inotify"`; inotify cannot tell who wrote or
//! how much, so pid/comm/bytes stay empty.
//!
//! notify hands us its own event kinds; [`Translator`] turns them into create/write/delete/
//! rename, pairs the two halves of a rename, reports files that appeared in a new directory
//! before its watch existed, and re-scans after a queue overflow.
//!
//! Symlinks are never followed: a link is a file here, and no watch may observe a tree outside
//! the roots under a path inside them.
//!
//! Events reach the translator through a bounded queue that notify's thread never waits on:
//! when the journal does not keep up, the translator waits, the queue fills, and further events
//! are dropped and counted (as the eBPF ring buffer does in the kernel), so memory stays bounded.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{Config, Event, EventHandler, INotifyWatcher, RecursiveMode, Watcher};

use crate::change::{Backend, Change, ChangeSink, Op};
use crate::metrics::Metrics;

/// A running inotify backend; [`Inotify::stop`] removes the watches and ends its thread.
pub struct Inotify {
    stop: Arc<AtomicBool>,
    wake: SyncSender<Msg>,
    thread: JoinHandle<()>,
}

/// Why inotify could not start, with what to do about it.
#[derive(Debug)]
pub enum InotifyError {
    /// inotify_init1(2) failed.
    Init(notify::Error),
    /// inotify_add_watch(2) failed for a root (or a directory under it).
    Watch {
        root: PathBuf,
        source: notify::Error,
    },
    Thread(std::io::Error),
}

impl fmt::Display for InotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Init(e) => write!(f, "cannot initialise inotify: {}", describe(e)),
            Self::Watch { root, source } => write!(
                f,
                "cannot watch {} with inotify: {}",
                root.display(),
                describe(source)
            ),
            Self::Thread(e) => write!(f, "cannot start the inotify thread: {e}"),
        }
    }
}

impl std::error::Error for InotifyError {}

enum Msg {
    Notify(notify::Result<Event>),
    Stop,
}

/// Watches every root recursively; returns once all watches are in place.
pub fn start(
    roots: &[PathBuf],
    sink: ChangeSink,
    metrics: Arc<Metrics>,
) -> Result<Inotify, InotifyError> {
    let (events, rx) = mpsc::sync_channel(EVENT_QUEUE_CAPACITY);
    let wake = events.clone();
    let handler = Handler {
        events,
        metrics: metrics.clone(),
        warned_at: None,
    };
    let mut watcher = INotifyWatcher::new(handler, watcher_config()).map_err(InotifyError::Init)?;
    for root in roots {
        watcher
            .watch(root, RecursiveMode::Recursive)
            .map_err(|source| InotifyError::Watch {
                root: root.clone(),
                source,
            })?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut translator = Translator::new(watcher, roots.to_vec(), sink, metrics, stop.clone());
    let thread = std::thread::Builder::new()
        .name("inotify".into())
        .spawn(move || translator.run(rx))
        .map_err(InotifyError::Thread)?;
    Ok(Inotify { stop, wake, thread })
}

/// notify's default follows symlinks in its recursive walks: a link to `/` would watch the
/// whole file system, and journal what happens there under the link's path.
fn watcher_config() -> Config {
    Config::default().with_follow_symlinks(false)
}

impl Inotify {
    /// Hands the queued changes over to the journal, waiting at most [`STOP_GRACE`] on a full
    /// journal queue (then drops and counts them), removes all watches and ends the thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        // Wakes a translator that waits for events; when the queue is full it is busy anyway
        // and sees the flag after the next one.
        let _ = self.wake.try_send(Msg::Stop);
        if self.thread.join().is_err() {
            log::error!("inotify: the translator thread panicked");
        }
    }
}

/// Events waiting for the translator (journal-relevant ones only). Behind it the journal queue
/// holds 8 k changes more; this one only has to absorb the translator's own pauses.
const EVENT_QUEUE_CAPACITY: usize = 2048;
/// The most often a full queue is logged while running (every drop is counted in /metrics).
const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Runs on notify's thread: queues the events the journal needs and never waits, so that
/// notify keeps reading inotify (and answering our watch requests) whatever the journal does.
struct Handler {
    events: SyncSender<Msg>,
    metrics: Arc<Metrics>,
    warned_at: Option<Instant>,
}

impl EventHandler for Handler {
    fn handle_event(&mut self, event: notify::Result<Event>) {
        if event.as_ref().is_ok_and(|e| !journaled(e)) {
            return;
        }
        match self.events.try_send(Msg::Notify(event)) {
            // Disconnected: the translator has stopped; nothing wants events any more.
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                let total = self.metrics.count_inotify_dropped(1);
                if self
                    .warned_at
                    .is_none_or(|at| at.elapsed() >= DROP_WARNING_EVERY)
                {
                    self.warned_at = Some(Instant::now());
                    log::warn!(
                        "inotify: dropped an event ({total} so far): the journal does not keep \
                         up (is its output blocked, e.g. a stalled stdout pipe?)"
                    );
                }
            }
        }
    }
}

/// Whether the translator does anything with `event` (opens, closes and attribute changes are
/// most of inotify's traffic and are not part of the journal).
fn journaled(event: &Event) -> bool {
    match event.kind {
        EventKind::Create(_)
        | EventKind::Remove(_)
        | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_)) => true,
        EventKind::Other => event.attrs.flag() == Some(notify::event::Flag::Rescan),
        _ => false,
    }
}

/// notify's error text plus, for the watch limit, the sysctl to raise.
fn describe(error: &notify::Error) -> String {
    match error.kind {
        notify::ErrorKind::MaxFilesWatch => {
            let current = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|_| "unknown".into());
            format!(
                "the inotify watch limit fs.inotify.max_user_watches (now {current}) is reached; \
                 raise it on the node, e.g. `sysctl -w fs.inotify.max_user_watches=524288`"
            )
        }
        _ => error.to_string(),
    }
}

/// How long the first half of a rename waits for its second half before it counts as a move
/// out of the watched tree (reported as a delete).
const RENAME_PAIR_WAIT: Duration = Duration::from_millis(50);
/// How long a path reported by a catch-up scan waits for its own inotify create (only to bound
/// memory: a later delete or rename of the path ends the wait at once).
const SCANNED_WAIT: Duration = Duration::from_secs(5);
/// While the journal queue is full the translator re-tries after a pause that doubles up to this.
const FULL_PAUSE_MIN: Duration = Duration::from_micros(10);
const FULL_PAUSE_MAX: Duration = Duration::from_micros(200);
/// After stop() the translator waits on a full journal queue this long in all, then drops what
/// is left.
const STOP_GRACE: Duration = Duration::from_millis(200);

struct Translator {
    watcher: INotifyWatcher,
    roots: Vec<PathBuf>,
    sink: ChangeSink,
    metrics: Arc<Metrics>,
    /// First halves of renames (notify's tracker = inotify cookie), waiting for the second.
    unpaired_moves: Vec<(usize, PathBuf, SystemTime, Instant)>,
    /// Paths a catch-up scan reported: a new directory is scanned after its watch is in place,
    /// so an entry made in between is both found by the scan and reported by inotify. The one
    /// inotify create of such a path is skipped; a delete or rename of it (or of a directory
    /// above it) ends the entry, so a path created again is reported again.
    scanned: HashMap<PathBuf, Instant>,
    last_purge: Instant,
    stop: Arc<AtomicBool>,
    /// Set when the translator first waits on a full queue after stop: it gives up then.
    give_up_at: Option<Instant>,
    /// Changes dropped at shutdown because the journal did not take them.
    dropped_at_stop: u64,
}

impl Translator {
    fn new(
        watcher: INotifyWatcher,
        roots: Vec<PathBuf>,
        sink: ChangeSink,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            watcher,
            roots,
            sink,
            metrics,
            unpaired_moves: Vec::new(),
            scanned: HashMap::new(),
            last_purge: Instant::now(),
            stop,
            give_up_at: None,
            dropped_at_stop: 0,
        }
    }

    fn run(&mut self, rx: Receiver<Msg>) {
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
        if self.dropped_at_stop > 0 {
            let total = self.metrics.count_inotify_dropped(self.dropped_at_stop);
            log::warn!(
                "inotify: stopping: dropped {} changes the journal did not take within {} ms \
                 ({total} dropped in all; is its output blocked, e.g. a stalled stdout pipe?)",
                self.dropped_at_stop,
                STOP_GRACE.as_millis()
            );
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn handle(&mut self, event: Event) {
        let tracker = event.attrs.tracker();
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

    fn handle_rename(
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
                }
            }
            // A watched root itself moved (no cookie), or kinds inotify does not produce.
            _ => {}
        }
    }

    /// An inotify create: reported unless a catch-up scan already reported this very entry.
    fn report_create(&mut self, path: &Path) {
        if self.scanned.remove(path).is_none() {
            self.emit(Op::Create, path, None);
        }
    }

    /// An entry found by a catch-up scan: reported unless an earlier scan already did.
    fn report_scanned(&mut self, path: &Path) {
        let now = Instant::now();
        if now.duration_since(self.last_purge) > SCANNED_WAIT {
            self.scanned
                .retain(|_, at| now.duration_since(*at) < SCANNED_WAIT);
            self.last_purge = now;
        }
        if self.scanned.insert(path.to_owned(), now).is_none() {
            self.emit(Op::Create, path, None);
        }
    }

    /// `path` (and anything below it) was deleted or renamed: a create of it is new from now on.
    fn forget_scanned_under(&mut self, path: &Path) {
        if !self.scanned.is_empty() {
            self.scanned.retain(|p, _| !p.starts_with(path));
        }
    }

    /// Entries can appear in a new directory before notify has watched it. Wait until notify
    /// has added that watch, then report what is already there; later changes arrive as events.
    fn catch_up_new_directory(&mut self, dir: &Path) {
        if self.stopping() {
            return; // the journal is closing: only hand over what is queued
        }
        // A round trip through notify's event loop: it handles our request only after adding
        // the watches for the batch that contained this directory's creation.
        let _ = self.watcher.configure(watcher_config());
        if !self.inside_roots(dir) {
            // Replaced by a symlink before notify watched it: that watch would follow the link.
            if self.watcher.unwatch(dir).is_ok() {
                log::debug!(
                    "inotify: {} leads out of the roots: unwatched",
                    dir.display()
                );
            }
            return;
        }
        let mut pending = vec![dir.to_owned()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                self.report_scanned(&path);
                // file_type() does not follow symlinks: a link is reported, never entered.
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(path);
                }
            }
        }
    }

    /// A real directory (not a symlink) that resolves inside one of the roots.
    fn inside_roots(&self, dir: &Path) -> bool {
        is_directory(dir)
            && dir
                .canonicalize()
                .is_ok_and(|real| self.roots.iter().any(|root| real.starts_with(root)))
    }

    fn rescan_after_overflow(&mut self) {
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

    fn report_error(&self, error: &notify::Error) {
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
    fn expire_unpaired_moves(&mut self, now: Option<Instant>) {
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

    fn emit(&mut self, op: Op, path: &Path, from: Option<&Path>) {
        self.send(op, path, from, SystemTime::now());
    }

    fn send(&mut self, op: Op, path: &Path, from: Option<&Path>, ts: SystemTime) {
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

    /// Queues a change for the journal. While running this waits as long as the queue is full
    /// (events then pile up in the bounded event queue, and past it are dropped and counted).
    /// Once stopping it waits at most [`STOP_GRACE`] in all, then drops (and counts) what is
    /// left, so a journal stuck on a blocked output cannot hang shutdown. (std's SyncSender
    /// has no send with timeout, hence try_send and short pauses while the queue is full.)
    fn deliver(&mut self, mut change: Change) {
        let mut pause = FULL_PAUSE_MIN;
        loop {
            match self.sink.try_send(change) {
                // The journal only goes away at shutdown; nothing to do with a change then.
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) => change = back,
            }
            if self.past_stop_grace() {
                self.dropped_at_stop += 1;
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

/// A directory itself, not a symlink to one.
fn is_directory(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, Flag, RemoveKind};

    fn translator(root: &Path) -> (Translator, Receiver<Change>, Arc<Metrics>) {
        let (tx, rx) = crate::change::queue(crate::change::QUEUE_CAPACITY);
        let metrics = Arc::new(Metrics::default());
        let watcher = INotifyWatcher::new(|_| {}, watcher_config()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let t = Translator::new(watcher, vec![root.to_owned()], tx, metrics.clone(), stop);
        (t, rx, metrics)
    }

    fn lines(rx: &Receiver<Change>) -> Vec<String> {
        rx.try_iter()
            .map(|c| {
                assert_eq!(
                    (c.backend, c.pid, &c.comm, c.bytes),
                    (Backend::Inotify, None, &None, None)
                );
                match c.from {
                    Some(from) => format!("{} {from} -> {}", c.op.as_str(), c.path),
                    None => format!("{} {}", c.op.as_str(), c.path),
                }
            })
            .collect()
    }

    fn rename(mode: RenameMode, cookie: usize, paths: &[&str]) -> Event {
        let mut ev = Event::new(EventKind::Modify(ModifyKind::Name(mode))).set_tracker(cookie);
        for p in paths {
            ev = ev.add_path(PathBuf::from(p));
        }
        ev
    }

    #[test]
    fn notify_kinds_map_to_journal_ops_and_renames_pair_up() {
        let dir = std::env::temp_dir();
        let (mut t, rx, _) = translator(&dir);
        let ev = |kind| Event::new(kind).add_path(PathBuf::from("/s/f"));
        t.handle(ev(EventKind::Create(CreateKind::File)));
        t.handle(ev(EventKind::Access(notify::event::AccessKind::Open(
            notify::event::AccessMode::Any,
        ))));
        t.handle(ev(EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        t.handle(ev(EventKind::Modify(ModifyKind::Metadata(
            notify::event::MetadataKind::Any,
        ))));
        t.handle(rename(RenameMode::From, 7, &["/s/f"]));
        t.handle(rename(RenameMode::To, 7, &["/s/g"]));
        t.handle(rename(RenameMode::Both, 7, &["/s/f", "/s/g"]));
        // Moved in from outside: only the `To` half exists.
        t.handle(rename(RenameMode::To, 8, &["/s/in"]));
        // Moved out: only the `From` half; it becomes a delete once the pair wait is over.
        t.handle(rename(RenameMode::From, 9, &["/s/out"]));
        t.expire_unpaired_moves(Some(Instant::now()));
        assert_eq!(
            lines(&rx),
            [
                "create /s/f",
                "write /s/f",
                "rename /s/f -> /s/g",
                "create /s/in"
            ]
        );
        t.expire_unpaired_moves(Some(Instant::now() + RENAME_PAIR_WAIT));
        t.handle(ev(EventKind::Remove(RemoveKind::File)));
        assert_eq!(lines(&rx), ["delete /s/out", "delete /s/f"]);
    }

    #[test]
    fn a_new_directory_is_caught_up_without_duplicates() {
        let root = std::env::temp_dir().join(format!("dk-inotify-unit-{}", std::process::id()));
        let new_dir = root.join("new");
        std::fs::create_dir_all(new_dir.join("sub")).unwrap();
        std::fs::write(new_dir.join("sub/early.txt"), b"x").unwrap();
        let (mut t, rx, _) = translator(&root);
        t.handle(Event::new(EventKind::Create(CreateKind::Folder)).add_path(new_dir.clone()));
        // inotify may also report what the scan found: it must not appear twice.
        t.handle(Event::new(EventKind::Create(CreateKind::Folder)).add_path(new_dir.join("sub")));
        let mut got = lines(&rx);
        std::fs::remove_dir_all(&root).unwrap();
        got.sort();
        let n = new_dir.display();
        assert_eq!(
            got,
            [
                format!("create {n}"),
                format!("create {n}/sub"),
                format!("create {n}/sub/early.txt")
            ]
        );
    }

    #[test]
    fn queue_overflow_is_counted_and_rescanned() {
        let root = std::env::temp_dir().join(format!("dk-inotify-overflow-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let (mut t, rx, metrics) = translator(&root);
        t.handle(Event::new(EventKind::Other).set_flag(Flag::Rescan));
        t.handle(Event::new(EventKind::Other).set_flag(Flag::Rescan));
        assert!(lines(&rx).is_empty());
        assert!(metrics
            .render()
            .lines()
            .any(|l| l == "diffkeeper_inotify_overflows_total 2"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn watch_limit_error_names_the_sysctl() {
        let text = describe(&notify::Error::new(notify::ErrorKind::MaxFilesWatch));
        assert!(text.contains("fs.inotify.max_user_watches"), "{text}");
    }
}
