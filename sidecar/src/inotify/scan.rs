//! Catching up on new directories: entries can appear in one before it is watched. A new
//! directory (created, moved in, or renamed before it was ever watched) is watched at once,
//! with everything below it, each directory listed after its watch is in place; what the
//! listing finds is reported, and inotify's own creates of those very entries (made between
//! the watch and the listing) are then skipped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::translate::Translator;
use super::watches::{gone, Found};
use crate::change::{GapReason, Op};

/// New directories remembered as not watched yet, at most (memory).
const UNWATCHED_MAX: usize = 256;

/// Renames found by listings whose own events are still to be passed over, at most (memory).
const LISTED_MOVES_MAX: usize = 64;

/// How long a path reported by a catch-up scan waits for its own inotify create (only to bound
/// memory: a later delete or rename of the path ends the wait at once, and a create of another
/// inode under its name is reported anyway).
const SCANNED_WAIT: Duration = Duration::from_secs(5);

impl Translator {
    /// `dir` is new: watched (with all below it), and what it already holds reported.
    ///
    /// The listing shows the directory as it is now, possibly after changes whose events are
    /// not read yet. A directory in it that is already watched under another path was renamed
    /// here meanwhile: journaled as that rename now (the map follows it, so its watches' later
    /// events name it rightly), and the rename's own events, when they come, are passed over.
    pub(super) fn catch_up(&mut self, dir: &Path) {
        self.purge_scanned();
        let mut found = Vec::new();
        let watched = self.watches.watch_tree(dir, &mut found);
        for Found {
            path,
            is_dir,
            ino,
            moved_from,
        } in found
        {
            match moved_from {
                Some(from) => self.listed_move(&from, &path),
                None => self.report_scanned(&path, ino, is_dir),
            }
        }
        match watched {
            Ok(_) => {}
            Err(e) if gone(&e) => {
                // Removed, or renamed (it or a directory above it) by events still to be read.
                if self.unwatched.len() == UNWATCHED_MAX {
                    self.unwatched.pop_front();
                }
                self.unwatched.push_back(dir.to_owned());
            }
            Err(e) => self.watch_failed(dir, &e),
        }
    }

    /// A directory could not be watched: at the watch limit a gap (its changes stay unseen
    /// until the limit is raised), else a warning.
    pub(super) fn watch_failed(&mut self, dir: &Path, error: &std::io::Error) {
        let text = super::describe(error);
        if error.raw_os_error() == Some(nix::libc::ENOSPC) {
            log::error!(
                "inotify: {} is not watched: {text}; journaled a gap (changes in unwatched \
                 directories are not seen until the limit is raised)",
                dir.display()
            );
            let affected = self
                .roots
                .iter()
                .filter(|root| dir.starts_with(root))
                .cloned()
                .collect();
            self.gap(GapReason::InotifyWatchLimit, affected, None);
        } else {
            log::warn!("inotify: cannot watch {}: {text}", dir.display());
        }
    }

    /// A known directory found at `to` by a listing: renamed there (see [`Self::catch_up`]).
    ///
    /// New directories below it that could not be watched at their old path (they were
    /// made, or moved in, under `from` and their events read after it had moved) went with
    /// it: they are caught up under `to` now, as the rename's own events would have done (see
    /// `Translator::moved_to`). Those events are passed over, and the listing does not enter a
    /// known directory, so nothing else would ever watch them.
    fn listed_move(&mut self, from: &Path, to: &Path) {
        let unwatched = self.take_unwatched_under(from);
        self.forget_scanned_under(from);
        let detached = self.watches.detach(from);
        self.watches.attach(detached, to);
        self.emit(Op::Rename, to, Some(from));
        if self.listed_moves.len() == LISTED_MOVES_MAX {
            self.listed_moves.pop_front();
        }
        self.listed_moves.push_back(from.to_owned());
        for rest in unwatched {
            // `from` itself is watched (that is how the listing knew it): its watch reports
            // what is in it, and a second listing would journal its entries twice.
            if !rest.as_os_str().is_empty() {
                self.catch_up(&super::watches::below(to, &rest));
            }
        }
    }

    /// The first half of a rename that a listing already journaled (see [`Self::catch_up`]):
    /// this half and its partner are passed over.
    pub(super) fn already_listed(&mut self, from: &Path, cookie: u32) -> bool {
        let Some(at) = self.listed_moves.iter().position(|p| p == from) else {
            return false;
        };
        self.listed_moves.remove(at);
        self.passed_cookies.push_back(cookie);
        if self.passed_cookies.len() > LISTED_MOVES_MAX {
            self.passed_cookies.pop_front();
        }
        true
    }

    /// The second half of a rename passed over by [`Self::already_listed`].
    pub(super) fn passed_over(&mut self, cookie: u32) -> bool {
        let Some(at) = self.passed_cookies.iter().position(|c| *c == cookie) else {
            return false;
        };
        self.passed_cookies.remove(at);
        true
    }

    /// An entry found by a catch-up scan: reported unless an earlier scan already did.
    fn report_scanned(&mut self, path: &Path, ino: u64, is_dir: bool) {
        let earlier = self.scanned.insert(path.to_owned(), (ino, Instant::now()));
        if earlier.is_none_or(|(earlier_ino, _)| earlier_ino != ino) {
            self.emit(if is_dir { Op::Mkdir } else { Op::Create }, path, None);
        }
    }

    fn purge_scanned(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_purge) > SCANNED_WAIT {
            self.scanned
                .retain(|_, (_, at)| now.duration_since(*at) < SCANNED_WAIT);
            self.last_purge = now;
        }
    }

    /// `path` (and anything below it) was deleted or renamed: a create of it is new from now
    /// on, and a directory there that could not be watched is not looked for any more.
    pub(super) fn forget_scanned_under(&mut self, path: &Path) {
        self.forget_listed_entries_under(path);
        self.unwatched.retain(|p| !p.starts_with(path));
    }

    /// `path` (and anything below it) left its place in journal order: what a listing reported
    /// there no longer stands for an entry the journal has, so a later listing or create of
    /// the same inode there is new.
    pub(super) fn forget_listed_entries_under(&mut self, path: &Path) {
        if !self.scanned.is_empty() {
            self.scanned.retain(|p, _| !p.starts_with(path));
        }
    }

    /// The unwatched new directories at or below `from` (see `Translator::unwatched`), as
    /// paths relative to it.
    pub(super) fn take_unwatched_under(&mut self, from: &Path) -> Vec<PathBuf> {
        let mut taken = Vec::new();
        self.unwatched.retain(|p| match p.strip_prefix(from) {
            Ok(rest) => {
                taken.push(rest.to_owned());
                false
            }
            Err(_) => true,
        });
        taken
    }
}
