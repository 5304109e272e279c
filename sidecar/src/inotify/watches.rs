//! The watch descriptor → directory map. inotify names an event by the watch it came from and
//! the entry's name in that directory; the map gives the directory's path *at this point of
//! the event stream*: a directory rename is applied to the map (the directory and everything
//! below it) when its moved-from/moved-to pair is read, so events from the same watches that
//! follow carry the new path.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use inotify::{Inotify, WatchDescriptor, WatchMask};
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, lstat, Mode, SFlag};

/// What every directory is watched for. `ONLYDIR`: only a directory is watched (opened with
/// `O_NOFOLLOW`, never a symlink: no tree outside the roots may be observed under a path
/// inside them); `EXCL_UNLINK`: no events from files unlinked while still open.
/// `CLOSE_WRITE` is not journaled: it stands between the `MODIFY` events of two writers (or
/// two opens) of a file, which the kernel would otherwise merge into one while unread.
fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ONLYDIR
        | WatchMask::EXCL_UNLINK
}

/// Whether directories can be watched through their descriptors (`/proc` mounted); else by
/// path, with the race that a directory renamed between its open and its watch is watched
/// under the wrong name.
fn proc_fd_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// A directory itself (never through a symlink), for reading.
fn open_dir<Fd: AsFd>(at: Option<Fd>, path: &Path) -> io::Result<Dir> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir = match at {
        Some(fd) => Dir::openat(fd, path, flags, Mode::empty()),
        None => Dir::open(path, flags, Mode::empty()),
    };
    // A symlink where a directory was: ELOOP from O_NOFOLLOW, like a file (ENOTDIR).
    dir.map_err(|e| match e {
        nix::errno::Errno::ELOOP => io::Error::from_raw_os_error(nix::libc::ENOTDIR),
        e => io::Error::from(e),
    })
}

/// An entry found below a directory as it was watched: its path, whether it is a directory,
/// and its inode; for a directory that was already watched under another path, that path
/// (it was renamed there, and the rename's events may never come: see [`Watches::watch_tree`]).
pub(super) struct Found {
    pub(super) path: PathBuf,
    pub(super) is_dir: bool,
    pub(super) ino: u64,
    pub(super) moved_from: Option<PathBuf>,
}

/// Watches taken out of the map by [`Watches::detach`], with their paths below the moved
/// directory.
pub(super) type Detached = Vec<(WatchDescriptor, PathBuf)>;

/// The directory a watch is on: its (device, inode), which inotify's events do not carry (a
/// path alone cannot tell a directory from a newer one made under its name), and where the
/// event stream stood when the watch was added: the bytes of all events queued before it.
struct Watched {
    id: (u64, u64),
    since: u64,
}

pub(super) struct Watches {
    pub(super) inotify: Inotify,
    paths: HashMap<WatchDescriptor, PathBuf>,
    /// The directory each watch is on (the very one opened and watched through its
    /// descriptor; one watch per inode, so this never changes while the watch lives).
    ids: HashMap<WatchDescriptor, Watched>,
    /// The bytes of the events read so far (see [`RawEvent::at`](super::translate::RawEvent)).
    pub(super) read: u64,
}

impl Watches {
    pub(super) fn new(inotify: Inotify) -> Self {
        Self {
            inotify,
            paths: HashMap::new(),
            ids: HashMap::new(),
            read: 0,
        }
    }

    /// The directory a watch stands for now (`None`: removed meanwhile).
    pub(super) fn path(&self, wd: &WatchDescriptor) -> Option<&Path> {
        self.paths.get(wd).map(PathBuf::as_path)
    }

    /// Watches `dir` and every directory below it (symlinks are never followed). Each directory
    /// is opened, watched through that handle and listed through it, so the listing is of the
    /// very directory watched even when it is renamed meanwhile (its entries are named under
    /// `dir`, its name at this point of the event stream). An entry is in `found`, or reported
    /// by a later event, or both. A directory that is already watched under another path is a
    /// known directory renamed here after the events read so far: it is neither renamed in the
    /// map nor listed, and its old path is returned (for `dir`) or put in its [`Found`] entry.
    /// The first error ends the walk: the watch limit (`ENOSPC`) matters, a directory gone
    /// meanwhile (`ENOENT`, `ENOTDIR`) does not.
    pub(super) fn watch_tree(
        &mut self,
        dir: &Path,
        found: &mut Vec<Found>,
    ) -> io::Result<Option<PathBuf>> {
        let handle = open_dir(None::<std::os::fd::BorrowedFd>, dir)?;
        self.watch_open(handle, dir, found)
    }

    fn watch_open(
        &mut self,
        mut handle: Dir,
        dir: &Path,
        found: &mut Vec<Found>,
    ) -> io::Result<Option<PathBuf>> {
        let stat = fstat(handle.as_fd())?;
        let wd = if proc_fd_available() {
            // The descriptor's magic link leads to the directory opened, whatever its name now
            // (it was opened without following a symlink: it is a directory itself), so the
            // identity taken from the descriptor is the watched directory's.
            let link = format!("/proc/self/fd/{}", handle.as_raw_fd());
            self.inotify.watches().add(link, mask())?
        } else {
            // By path: the identity is the opened directory's, which a rename between the
            // open and the add may make another's (the race named at `proc_fd_available`).
            self.inotify
                .watches()
                .add(dir, mask() | WatchMask::DONT_FOLLOW)?
        };
        if !self.ids.contains_key(&wd) {
            // Read after the add: an event queued in between counts as older, which only
            // makes `stayed_behind` look at it.
            let since = self.read + self.queued_bytes();
            let id = (stat.st_dev, stat.st_ino);
            self.ids.insert(wd.clone(), Watched { id, since });
        }
        match self.paths.get(&wd) {
            Some(known) if known != dir => return Ok(Some(known.clone())),
            Some(_) => {}
            None => {
                self.paths.insert(wd, dir.to_owned());
            }
        }
        let names: Vec<CString> = handle
            .iter()
            .flatten()
            .map(|entry| entry.file_name().to_owned())
            .filter(|name| !matches!(name.to_bytes(), b"." | b".."))
            .collect();
        let mut subdirs = Vec::new();
        for name in names {
            // Does not follow symlinks: a link is an entry, never entered.
            let Ok(stat) = fstatat(
                handle.as_fd(),
                name.as_c_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) else {
                continue; // gone meanwhile: its delete event follows
            };
            let path = dir.join(OsStr::from_bytes(name.to_bytes()));
            let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
            if is_dir {
                subdirs.push((found.len(), name, path.clone()));
            }
            found.push(Found {
                path,
                is_dir,
                ino: stat.st_ino,
                moved_from: None,
            });
        }
        for (at, name, path) in subdirs {
            let watched = open_dir(
                Some(handle.as_fd()),
                Path::new(OsStr::from_bytes(name.to_bytes())),
            )
            .and_then(|sub| self.watch_open(sub, &path, found));
            match watched {
                Ok(moved_from) => found[at].moved_from = moved_from,
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// `dir` was moved away (the first half of a rename): its watches and those below leave the
    /// map until the second half says where it went ([`Watches::attach`]), or it does not come
    /// ([`Watches::remove`]: moved out of the roots). Meanwhile a new directory may take the
    /// name, with watches of its own.
    pub(super) fn detach(&mut self, dir: &Path) -> Detached {
        let below: Vec<WatchDescriptor> = self
            .paths
            .iter()
            .filter(|(_, path)| path.starts_with(dir))
            .map(|(wd, _)| wd.clone())
            .collect();
        below
            .into_iter()
            .filter_map(|wd| {
                let path = self.paths.remove(&wd)?;
                let rest = path.strip_prefix(dir).ok()?.to_owned();
                Some((wd, rest))
            })
            .collect()
    }

    /// Whether the directory watched at `from` (the top of `detached`) may not be the one a
    /// rename took to `to`, the rename's first half being queued at `moved_at` (a stream
    /// position, see [`RawEvent::at`](super::translate::RawEvent)).
    ///
    /// A watch that existed when the rename was queued is on the renamed directory. One added
    /// later was added on whatever stood at `from` then: when a directory's create is read
    /// after it was renamed away and a newer one made under its name, that newer one. So a
    /// watch younger than the rename whose directory is not at `to` but still at `from` stays
    /// there. (A directory renamed and back before this is read looks the same: it is then
    /// journaled as moved out and in, then renamed back, which replays to the same tree.) A
    /// younger watch's directory found at neither path was renamed on or deleted by events
    /// not read yet: it is taken to `to` as usual.
    pub(super) fn stayed_behind(
        &self,
        detached: &Detached,
        moved_at: u64,
        from: &Path,
        to: &Path,
    ) -> bool {
        let Some(watched) = detached
            .iter()
            .find(|(_, rest)| rest.as_os_str().is_empty())
            .and_then(|(wd, _)| self.ids.get(wd))
        else {
            return false;
        };
        if watched.since <= moved_at {
            return false;
        }
        let at = |path: &Path| lstat(path).ok().map(|s| (s.st_dev, s.st_ino));
        at(to) != Some(watched.id) && at(from) == Some(watched.id)
    }

    /// The bytes of the events queued in the kernel now (`FIONREAD`; 0 if it fails, which only
    /// makes a watch look older than it is: see [`Self::stayed_behind`]).
    fn queued_bytes(&self) -> u64 {
        let mut bytes: nix::libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer, which is valid for it.
        let ok = unsafe {
            nix::libc::ioctl(
                self.inotify.as_fd().as_raw_fd(),
                nix::libc::FIONREAD,
                &mut bytes,
            )
        } == 0;
        if ok {
            u64::try_from(bytes).unwrap_or(0)
        } else {
            0
        }
    }

    /// The second half of a rename: what was detached from its old path stands for `to` now;
    /// watches that stood for `to` (an empty directory the rename replaced) are gone. Returns
    /// whether the renamed directory itself was watched.
    pub(super) fn attach(&mut self, detached: Detached, to: &Path) -> bool {
        self.paths.retain(|_, path| !path.starts_with(to));
        let mut top = false;
        for (wd, rest) in detached {
            top |= rest.as_os_str().is_empty();
            self.paths.insert(wd, below(to, &rest));
        }
        top
    }

    /// Detached watches of a directory that left the roots: removed, so that nothing done out
    /// there is journaled. Those in the map again are kept: their directory came back (moved
    /// out and in again, or through a directory not watched yet) and was watched anew, which
    /// gives the same descriptor.
    pub(super) fn remove(&mut self, detached: Detached) {
        for (wd, _) in detached {
            if self.paths.contains_key(&wd) {
                continue;
            }
            self.ids.remove(&wd);
            // Fails when the directory is gone already (its watch went with it).
            let _ = self.inotify.watches().remove(wd);
        }
    }

    /// The kernel removed a watch (`IN_IGNORED`: its directory was deleted or unmounted).
    pub(super) fn forget(&mut self, wd: &WatchDescriptor) {
        self.paths.remove(wd);
        self.ids.remove(wd);
    }

    /// After lost events: the map is rebuilt from a walk of the roots (directories made,
    /// renamed or removed meanwhile), watches of directories no longer under them removed.
    pub(super) fn rebuild(&mut self, roots: &[PathBuf]) -> io::Result<()> {
        let old = std::mem::take(&mut self.paths);
        let mut result = Ok(());
        for root in roots {
            if let Err(e) = self.watch_tree(root, &mut Vec::new()).map(drop) {
                if result.is_ok() && !gone(&e) {
                    result = Err(e);
                }
            }
        }
        for wd in old.into_keys() {
            if !self.paths.contains_key(&wd) {
                self.ids.remove(&wd);
                let _ = self.inotify.watches().remove(wd);
            }
        }
        result
    }
}

/// The directory was gone (or replaced by a non-directory) by the time it was watched.
pub(super) fn gone(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(nix::libc::ENOENT | nix::libc::ENOTDIR)
    )
}

/// `rest` below `dir` (`dir` itself when `rest` is empty: `join` would add a `/`).
pub(super) fn below(dir: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() {
        dir.to_owned()
    } else {
        dir.join(rest)
    }
}
