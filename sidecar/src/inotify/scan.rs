//! Catching up on a new directory: entries can appear in it before notify watches it; they
//! are reported from a scan, and their inotify creates (if any come) are then skipped.

use std::path::Path;
use std::time::{Duration, Instant};

use notify::Watcher;

use super::translate::Translator;
use super::{is_directory, watcher_config};
use crate::change::Op;

/// How long a path reported by a catch-up scan waits for its own inotify create (only to bound
/// memory: a later delete or rename of the path ends the wait at once).
const SCANNED_WAIT: Duration = Duration::from_secs(5);

impl Translator {
    /// An entry found by a catch-up scan: reported unless an earlier scan already did.
    pub(super) fn report_scanned(&mut self, path: &Path) {
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
    pub(super) fn forget_scanned_under(&mut self, path: &Path) {
        if !self.scanned.is_empty() {
            self.scanned.retain(|p, _| !p.starts_with(path));
        }
    }

    /// Entries can appear in a new directory before notify has watched it. Wait until notify
    /// has added that watch, then report what is already there; later changes arrive as events.
    pub(super) fn catch_up_new_directory(&mut self, dir: &Path) {
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
    pub(super) fn inside_roots(&self, dir: &Path) -> bool {
        is_directory(dir)
            && dir
                .canonicalize()
                .is_ok_and(|real| self.roots.iter().any(|root| real.starts_with(root)))
    }
}
