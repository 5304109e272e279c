//! inotify's events to journal changes: create/mkdir/write/attrib/delete/rmdir/rename, named
//! through the watch map, new directories watched at once and caught up on, losses journaled
//! as gaps.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use inotify::{EventMask, WatchDescriptor};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::pairing::Waiting;
use super::watches::{Detached, Watches};
use crate::change::{Backend, Change, ChangeSink, Delivery, Gap, GapReason, Op, STOP_GRACE};
use crate::metrics::Metrics;

/// How long the first half of a rename waits for its second half before it counts as a move
/// out of the watched tree (reported as a delete). Everything after it waits as long.
pub(super) const RENAME_PAIR_WAIT: Duration = Duration::from_millis(50);
/// How often an idle reader looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);
/// One read takes what fits: 256 KiB is about 8,000 events with short names, so a burst is
/// read in few system calls and the kernel queue empties fast.
const READ_BUFFER: usize = 256 * 1024;

/// One event, copied out of the read buffer.
pub(super) struct RawEvent {
    pub(super) wd: WatchDescriptor,
    pub(super) mask: EventMask,
    pub(super) cookie: u32,
    pub(super) name: Option<OsString>,
    /// Where the event stands in the stream: the bytes of the events queued before it (as
    /// the kernel counts them for `FIONREAD`), which tells it from a watch added later.
    pub(super) at: u64,
}

pub(super) struct Translator {
    pub(super) watches: Watches,
    pub(super) roots: Vec<PathBuf>,
    /// Hands changes to the journal (bounded waits once stopping).
    pub(super) delivery: Delivery,
    pub(super) metrics: Arc<Metrics>,
    /// Records in journal order, held while the first half of a rename at their front waits
    /// for its second half (see [`super::pairing`]).
    pub(super) waiting: VecDeque<Waiting>,
    /// Entries a catch-up scan reported, by path, with their inode: a new directory is listed
    /// after its watch is in place, so an entry made in between is both found by the scan and
    /// reported by inotify. An inotify create of that very inode is skipped; a create of
    /// another inode under that name (a file moved onto it) is new.
    pub(super) scanned: HashMap<PathBuf, (u64, Instant)>,
    pub(super) last_purge: Instant,
    /// Directory renames a catch-up listing journaled before their events were read (old
    /// paths), and the cookies of those events' second halves (see [`super::scan`]).
    pub(super) listed_moves: VecDeque<PathBuf>,
    /// New directories that were gone from their path when their event was read: deleted, or
    /// renamed (they or a directory above them) by events not read yet. A rename read later
    /// that moves one of them catches it up under its new path (see [`super::scan`]).
    pub(super) unwatched: VecDeque<PathBuf>,
    pub(super) passed_cookies: VecDeque<u32>,
    buffer: Vec<u8>,
}

impl Translator {
    pub(super) fn new(
        watches: Watches,
        roots: Vec<PathBuf>,
        sink: ChangeSink,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            watches,
            roots,
            delivery: Delivery::new(sink, stop),
            metrics,
            waiting: VecDeque::new(),
            scanned: HashMap::new(),
            last_purge: Instant::now(),
            listed_moves: VecDeque::new(),
            unwatched: VecDeque::new(),
            passed_cookies: VecDeque::new(),
            buffer: vec![0; READ_BUFFER],
        }
    }

    pub(super) fn run(&mut self) {
        while !self.stopping() {
            let wait = self
                .pair_deadline()
                .map_or(STOP_CHECK, |deadline| {
                    deadline.saturating_duration_since(Instant::now())
                })
                .min(STOP_CHECK);
            if self.readable(wait) {
                let events = self.read();
                self.delivery.gather();
                self.handle_all(events);
                self.delivery.flush();
            }
            self.expire_unpaired_moves(Some(Instant::now()));
        }
        // Hand over what is queued (bounded: deliver() gives up after the stop grace).
        loop {
            let events = self.read();
            if events.is_empty() {
                break;
            }
            self.handle_all(events);
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

    /// Whether events are queued, waiting at most `wait` for some.
    pub(super) fn readable(&self, wait: Duration) -> bool {
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.watches.inotify.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, timeout).is_ok_and(|n| n > 0)
    }

    /// The events queued now (none when the queue is empty).
    pub(super) fn read(&mut self) -> Vec<RawEvent> {
        let read = &mut self.watches.read;
        match self.watches.inotify.read_events(&mut self.buffer) {
            Ok(events) => events
                .map(|e| {
                    let at = *read;
                    // struct inotify_event, then the name with its NUL, padded to 16 bytes.
                    let name = e
                        .name
                        .map_or(0, |n| (n.len() as u64 + 1).next_multiple_of(16));
                    *read += 16 + name;
                    RawEvent {
                        wd: e.wd,
                        mask: e.mask,
                        cookie: e.cookie,
                        name: e.name.map(ToOwned::to_owned),
                        at,
                    }
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Vec::new(),
            Err(e) => {
                log::warn!("inotify: reading events failed: {e}");
                Vec::new()
            }
        }
    }

    /// One read's events in order; an overflow ends it (what follows it in the read is older
    /// than the rescan that recovers from it, see [`super::overflow`]).
    pub(super) fn handle_all(&mut self, events: Vec<RawEvent>) {
        for event in events {
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                self.recover_from_overflow();
                return;
            }
            self.handle(event);
        }
    }

    pub(super) fn handle(&mut self, event: RawEvent) {
        let mask = event.mask;
        if mask.contains(EventMask::IGNORED) {
            self.watches.forget(&event.wd);
            return;
        }
        // Events about a watched directory itself (no name) are reported by its parent's watch.
        let (Some(dir), Some(name)) = (self.watches.path(&event.wd), event.name) else {
            return;
        };
        let path = dir.join(name);
        let is_dir = mask.contains(EventMask::ISDIR);
        if mask.contains(EventMask::CREATE) {
            self.report_create(&path, is_dir);
            if is_dir {
                self.catch_up(&path);
            }
        } else if mask.contains(EventMask::MODIFY) {
            self.emit(Op::Write, &path, None);
        } else if mask.contains(EventMask::ATTRIB) {
            self.emit(Op::Attrib, &path, None);
        } else if mask.contains(EventMask::DELETE) {
            self.forget_scanned_under(&path);
            self.emit(if is_dir { Op::Rmdir } else { Op::Delete }, &path, None);
        } else if mask.contains(EventMask::MOVED_FROM) {
            if !self.already_listed(&path, event.cookie) {
                // The rename (or the delete it becomes) stands here in the journal: what a
                // listing reported under `path` leaves with it, now, not when the second half
                // comes. A directory made at `path` next may be the one that listing saw (the
                // create read late, of the directory that left), and its own listing must
                // report those entries again. Unwatched directories below stay: the second
                // half catches them up where they went.
                self.forget_listed_entries_under(&path);
                self.hold_move_out(event.cookie, path, event.at);
            }
        } else if mask.contains(EventMask::MOVED_TO) && !self.passed_over(event.cookie) {
            self.moved_to(event.cookie, path, is_dir);
        }
    }

    /// The second half of a rename, or (no first half waiting) a move in from outside.
    fn moved_to(&mut self, cookie: u32, to: PathBuf, is_dir: bool) {
        let Some((from, detached, moved_at)) = self.waiting_move_out(cookie) else {
            // New to us, like a create.
            self.report_create(&to, is_dir);
            if is_dir {
                self.catch_up(&to);
            }
            return;
        };
        if is_dir && self.watches.stayed_behind(&detached, moved_at, &from, &to) {
            self.moved_past_watch(cookie, &from, &to, detached);
            return;
        }
        let unwatched = self.take_unwatched_under(&from);
        self.forget_scanned_under(&from);
        self.forget_scanned_under(&to);
        self.pair_move(cookie, &from, &to);
        // In place, now: the events that follow from the watches below name the new path.
        let watched = self.watches.attach(detached, &to);
        if is_dir && !watched {
            // Never watched (renamed before its create was read): what is in it is new.
            self.catch_up(&to);
        }
        for rest in unwatched {
            if !rest.as_os_str().is_empty() || watched {
                self.catch_up(&super::watches::below(&to, &rest));
            }
        }
    }

    /// A directory renamed from `from` to `to` whose watch at `from` is on a newer directory
    /// of that name (see `Watches::stayed_behind`). The renamed one was never watched, and
    /// what the journal holds under `from` came from listing the newer one: the rename is
    /// journaled as a move out of `from` (a delete of it all) and a move in at `to`, listed
    /// there. The watches stay at `from`: the newer directory's create comes next in the
    /// stream, and its listing (the entries reported before were forgotten with the
    /// moved-from) and its watches' events name it there.
    fn moved_past_watch(&mut self, cookie: u32, from: &Path, to: &Path, detached: Detached) {
        self.unpair(cookie);
        // Unwatched directories below `from` are in the renamed one: `to`'s listing covers them.
        self.forget_scanned_under(from);
        self.forget_scanned_under(to);
        self.watches.attach(detached, from);
        self.report_create(to, true);
        self.catch_up(to);
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

    pub(super) fn gap(&mut self, reason: GapReason, roots: Vec<PathBuf>, lost: Option<u64>) {
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
