//! Catching up on new directories: entries can appear in one before notify watches it; they
//! are reported from a scan, and their inotify creates (if any come) are then skipped.
//!
//! A scan must wait until notify has added the directory's watch (else what is made between
//! the scan and the watch is never seen), which takes a round trip through notify's thread.
//! One round trip per directory is too slow for a storm of new directories (notify's events
//! then pile up and are dropped), so new directories are collected and scanned together, after
//! one round trip, once notify's queue is read empty, or at once when an event concerns a path
//! inside one of them (its scan must come first, to keep each path's order).
//!
//! A directory is opened when its event is read and scanned through that handle: by then it
//! may have been renamed (or replaced under its name), and its entries are reported under the
//! name the journal knows it by at this point of the stream; the rename lines that follow move
//! them.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{Event, Watcher};

use super::translate::Translator;
use super::{is_directory, watcher_config};
use crate::change::Op;

/// How long a path reported by a catch-up scan waits for its own inotify create (only to bound
/// memory: a later delete or rename of the path ends the wait at once, and a create of another
/// inode under its name is reported anyway).
const SCANNED_WAIT: Duration = Duration::from_secs(5);

/// New directories held open for their scan at most: past it they are scanned at once (each
/// holds a file descriptor).
const PENDING_MAX: usize = 256;

/// A new directory whose scan is due, opened when its event was read (`None`: already gone,
/// or not a directory any more).
pub(super) struct PendingDir {
    path: PathBuf,
    handle: Option<Dir>,
}

fn open_dir<Fd: AsFd>(at: Option<Fd>, path: &Path) -> Option<Dir> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match at {
        Some(fd) => Dir::openat(fd, path, flags, Mode::empty()).ok(),
        None => Dir::open(path, flags, Mode::empty()).ok(),
    }
}

impl Translator {
    /// A new directory (created or moved in): opened now, its entries are scanned soon.
    pub(super) fn schedule_catch_up(&mut self, path: PathBuf) {
        if self.pending_dirs.insert(path.clone()) {
            let handle = open_dir(None::<std::os::fd::BorrowedFd>, &path);
            self.pending_order.push(PendingDir { path, handle });
        }
        if self.pending_order.len() >= PENDING_MAX {
            self.catch_up_pending();
        }
    }

    /// Scans the pending directories first if `event` concerns a path inside one of them (or,
    /// for a removal or rename, possibly above one).
    pub(super) fn scan_pending_before(&mut self, event: &Event) {
        if self.pending_order.is_empty() {
            return;
        }
        let moves_or_removes = matches!(
            event.kind,
            EventKind::Remove(_)
                | EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Both))
        );
        let inside_pending = event.paths.iter().any(|path| {
            path.ancestors()
                .skip(1)
                .any(|dir| self.pending_dirs.contains(dir))
        });
        if moves_or_removes || inside_pending || matches!(event.kind, EventKind::Other) {
            self.catch_up_pending();
        }
    }

    /// Waits until notify has added the watches of every directory it reported so far, then
    /// reports what is already in the pending ones; later changes arrive as events.
    pub(super) fn catch_up_pending(&mut self) {
        let dirs: Vec<PendingDir> = std::mem::take(&mut self.pending_order);
        self.pending_dirs.clear();
        if self.stopping() {
            return; // the journal is closing: only hand over what is queued
        }
        self.purge_scanned();
        // A round trip through notify's event loop: it handles our request only after adding
        // the watches for the batches it read before.
        let _ = self.watcher.configure(watcher_config());
        for dir in dirs {
            self.catch_up(dir);
        }
    }

    fn catch_up(&mut self, dir: PendingDir) {
        if !self.inside_roots(&dir.path)
            && dir.path.symlink_metadata().is_ok_and(|m| m.is_symlink())
        {
            // Replaced by a symlink before notify watched it: that watch would follow the link.
            if self.watcher.unwatch(&dir.path).is_ok() {
                log::debug!(
                    "inotify: {} leads out of the roots: unwatched",
                    dir.path.display()
                );
            }
        }
        if let Some(handle) = dir.handle {
            self.scan_tree(handle, dir.path);
        }
    }

    /// Reports everything below the open directory `handle`, named under `path`; one open
    /// directory per level.
    fn scan_tree(&mut self, mut handle: Dir, path: PathBuf) {
        let names: Vec<std::ffi::CString> = handle
            .iter()
            .flatten()
            .map(|entry| entry.file_name().to_owned())
            .filter(|name| !matches!(name.to_bytes(), b"." | b".."))
            .collect();
        let mut subdirs = Vec::new();
        for name in names {
            // Does not follow symlinks: a link is reported, never entered.
            let Ok(stat) = fstatat(
                handle.as_fd(),
                name.as_c_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) else {
                continue; // gone meanwhile: its delete event follows
            };
            let name = std::ffi::OsStr::from_bytes(name.to_bytes()).to_owned();
            let entry_path = path.join(&name);
            let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
            self.report_scanned(&entry_path, stat.st_ino, is_dir);
            if is_dir {
                subdirs.push((name, entry_path));
            }
        }
        for (name, entry_path) in subdirs {
            if let Some(sub) = open_dir(Some(handle.as_fd()), Path::new(&name)) {
                self.scan_tree(sub, entry_path);
            }
        }
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

    /// `path` (and anything below it) was deleted or renamed: a create of it is new from now on.
    pub(super) fn forget_scanned_under(&mut self, path: &Path) {
        if !self.scanned.is_empty() {
            self.scanned.retain(|p, _| !p.starts_with(path));
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
