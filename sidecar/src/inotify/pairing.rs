//! Renames in journal order. inotify reports a rename as two events (moved-from, moved-to)
//! that share a cookie; a moved-from without its partner is a move out of the roots, known only
//! once the partner did not come. While a moved-from waits, everything after it waits too, so
//! the rename (or the delete it turns into) stands where it happened, not after later changes.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::translate::{Translator, RENAME_PAIR_WAIT};
use super::watches::Detached;
use crate::change::{Backend, Change, Gap, Op};

/// One record in journal order.
pub(super) enum Waiting {
    Change(Change),
    Gap(Gap),
    /// The first half of a rename, waiting for its second half since `since`.
    MoveOut {
        cookie: u32,
        path: PathBuf,
        /// The watches of the moved directory and below (none for a file).
        detached: Detached,
        /// Its place in the event stream (see `RawEvent::at`).
        at: u64,
        ts: SystemTime,
        since: Instant,
    },
}

impl Translator {
    /// Journals `record` now, or behind a waiting moved-from.
    pub(super) fn queue(&mut self, record: Waiting) {
        if self.waiting.is_empty() {
            self.deliver(record);
        } else {
            self.waiting.push_back(record);
        }
    }

    pub(super) fn hold_move_out(&mut self, cookie: u32, path: PathBuf, at: u64) {
        let detached = self.watches.detach(&path);
        self.waiting.push_back(Waiting::MoveOut {
            cookie,
            path,
            detached,
            at,
            ts: SystemTime::now(),
            since: Instant::now(),
        });
    }

    /// The path of the first half waiting with `cookie`, if any, its detached watches (taken:
    /// the second half places them) and its place in the event stream.
    pub(super) fn waiting_move_out(&mut self, cookie: u32) -> Option<(PathBuf, Detached, u64)> {
        self.waiting.iter_mut().find_map(|w| match w {
            Waiting::MoveOut {
                cookie: c,
                path,
                detached,
                at,
                ..
            } if *c == cookie => Some((path.clone(), std::mem::take(detached), *at)),
            _ => None,
        })
    }

    /// Both halves came: the rename takes its first half's place.
    pub(super) fn pair_move(&mut self, cookie: u32, from: &Path, to: &Path) {
        let rename = |ts| Change {
            ts,
            backend: Backend::Inotify,
            op: Op::Rename,
            path: to.to_path_buf(),
            from: Some(from.to_path_buf()),
            pid: None,
            comm: None,
            bytes: None,
            truncated: false,
        };
        let slot = self
            .waiting
            .iter_mut()
            .find(|w| matches!(w, Waiting::MoveOut { cookie: c, .. } if *c == cookie));
        match slot {
            Some(slot) => {
                let ts = match slot {
                    Waiting::MoveOut { ts, .. } => *ts,
                    _ => SystemTime::now(),
                };
                *slot = Waiting::Change(rename(ts));
                self.release_ready();
            }
            None => self.queue(Waiting::Change(rename(SystemTime::now()))),
        }
    }

    /// When the oldest waiting moved-from expires.
    pub(super) fn pair_deadline(&self) -> Option<Instant> {
        self.waiting.iter().find_map(|w| match w {
            Waiting::MoveOut { since, .. } => Some(*since + RENAME_PAIR_WAIT),
            _ => None,
        })
    }

    /// Moved-froms whose second half never came left the watched tree: they become deletes
    /// (of the path and all below it) where they stand. `None` expires all (at shutdown).
    pub(super) fn expire_unpaired_moves(&mut self, now: Option<Instant>) {
        let mut expired = Vec::new();
        for w in self.waiting.iter_mut() {
            if let Waiting::MoveOut {
                path,
                detached,
                ts,
                since,
                ..
            } = w
            {
                if now.is_none_or(|now| now.duration_since(*since) >= RENAME_PAIR_WAIT) {
                    let change = moved_out(path, *ts);
                    expired.push((std::mem::take(path), std::mem::take(detached)));
                    *w = Waiting::Change(change);
                }
            }
        }
        for (path, detached) in expired {
            self.forget_scanned_under(&path);
            self.watches.remove(detached);
        }
        self.release_ready();
    }

    /// The first half waiting with `cookie` is journaled as a move out (a delete) where it
    /// stands, though its second half came (see `Translator::moved_to`).
    pub(super) fn unpair(&mut self, cookie: u32) {
        for w in self.waiting.iter_mut() {
            if let Waiting::MoveOut {
                cookie: c,
                path,
                ts,
                ..
            } = w
            {
                if *c == cookie {
                    *w = Waiting::Change(moved_out(path, *ts));
                    break;
                }
            }
        }
        self.release_ready();
    }

    /// Journals the records at the front that no longer wait.
    fn release_ready(&mut self) {
        while let Some(front) = self.waiting.pop_front() {
            if matches!(front, Waiting::MoveOut { .. }) {
                self.waiting.push_front(front);
                return;
            }
            self.deliver(front);
        }
    }

    /// Queues a record for the journal (see [`crate::change::Delivery`]: events pile up in the
    /// bounded event queue meanwhile, and past it are dropped, counted and journaled as a gap).
    /// A waiting move is never handed over: it stays at the front.
    fn deliver(&mut self, record: Waiting) {
        match record {
            Waiting::Change(change) => self.delivery.deliver(change),
            Waiting::Gap(gap) => self.delivery.report_gap(gap),
            move_out @ Waiting::MoveOut { .. } => self.waiting.push_front(move_out),
        }
    }
}

/// A path moved out of the roots: deleted, with all below it.
fn moved_out(path: &Path, ts: SystemTime) -> Change {
    Change {
        ts,
        backend: Backend::Inotify,
        op: Op::Delete,
        path: path.to_path_buf(),
        from: None,
        pid: None,
        comm: None,
        bytes: None,
        truncated: false,
    }
}
