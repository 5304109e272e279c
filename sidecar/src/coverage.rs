//! While eBPF runs: notices when a watched directory stops being covered. The programs know
//! each root by the directory that was there at start, and their parent walk stops at a file
//! system's top, so two changes go unseen by eBPF:
//!
//! * a watched directory replaced (renamed away and another made under its name): the old
//!   one keeps the root's prefix, the new one is watched by nothing;
//! * a file system mounted below a watched directory after start (those mounted before are
//!   watched as roots of their own, see the eBPF session).
//!
//! [`Watchdog`] waits for mount table changes (`/proc/self/mountinfo` signals them with
//! POLLPRI) and re-checks every root's (device, inode) every [`RECHECK_EVERY`]; the first
//! change it finds is handed to the caller once, which switches to inotify.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::ebpf::RootIdentity;
use crate::mounts;

/// How often each root's identity is re-checked (mounts are noticed at once).
pub const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the thread waits at most before it looks at the stop flag again.
const POLL_SLICE_MS: u16 = 200;

/// A watched directory eBPF no longer covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uncovered {
    /// The directory at the root's path is not the one eBPF watches (or is gone).
    Replaced { root: PathBuf },
    /// A file system was mounted below a root after eBPF attached.
    Mounted { root: PathBuf, mount_point: PathBuf },
}

impl std::fmt::Display for Uncovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Replaced { root } => write!(
                f,
                "watched directory {} was replaced (renamed or removed, and made again) or is \
                 gone: eBPF still watches the directory that was there at start",
                root.display()
            ),
            Self::Mounted { root, mount_point } => write!(
                f,
                "a file system was mounted on {} below watched directory {} after start: \
                 eBPF does not see changes on it",
                mount_point.display(),
                root.display()
            ),
        }
    }
}

/// The watching thread; stopped on drop.
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Watches `roots` (with the mounts below them that are covered already) and calls
    /// `report` once with the first change found, then ends.
    pub fn spawn(
        roots: Vec<RootIdentity>,
        covered_mounts: Vec<PathBuf>,
        report: impl FnOnce(Uncovered) + Send + 'static,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mountinfo = File::open(mounts::MOUNTINFO)?;
        let thread = std::thread::Builder::new()
            .name("coverage".into())
            .spawn(move || {
                if let Some(found) = watch(&roots, &covered_mounts, &mountinfo, &flag) {
                    report(found);
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(
    roots: &[RootIdentity],
    covered: &[PathBuf],
    mountinfo: &File,
    stop: &AtomicBool,
) -> Option<Uncovered> {
    let mut next_check = Instant::now();
    let mut mounts_changed = true;
    while !stop.load(Ordering::Acquire) {
        if mounts_changed {
            mounts_changed = false;
            if let Some(found) = new_mount(roots, covered) {
                return Some(found);
            }
        }
        if Instant::now() >= next_check {
            next_check = Instant::now() + RECHECK_EVERY;
            if let Some(found) = replaced(roots) {
                return Some(found);
            }
        }
        // mountinfo polls readable always, and POLLPRI|POLLERR after each mount table change.
        let mut fds = [PollFd::new(mountinfo.as_fd(), PollFlags::POLLPRI)];
        if poll(&mut fds, PollTimeout::from(POLL_SLICE_MS)).is_ok_and(|n| n > 0) {
            let revents = fds[0].revents().unwrap_or(PollFlags::empty());
            if revents.intersects(PollFlags::POLLPRI | PollFlags::POLLERR) {
                mounts_changed = true;
                // Re-arm: the event stays pending until the file is read again from the start.
                rearm(mountinfo);
            }
        }
    }
    None
}

fn rearm(mountinfo: &File) {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = mountinfo;
    let _ = file.seek(SeekFrom::Start(0));
    let mut sink = Vec::new();
    let _ = file.read_to_end(&mut sink);
}

/// The first root whose path now leads to another directory (or nowhere).
pub fn replaced(roots: &[RootIdentity]) -> Option<Uncovered> {
    roots.iter().find_map(|r| {
        let same = std::fs::metadata(&r.path).is_ok_and(|m| (m.dev(), m.ino()) == (r.dev, r.ino));
        (!same).then(|| Uncovered::Replaced {
            root: r.path.clone(),
        })
    })
}

/// The first mount below a root that was not there (covered) at start.
fn new_mount(roots: &[RootIdentity], covered: &[PathBuf]) -> Option<Uncovered> {
    let table = mounts::read().ok()?;
    roots.iter().find_map(|r| {
        mounts::below(&table, &r.path)
            .find(|m| !covered.contains(&m.mount_point))
            .map(|m| Uncovered::Mounted {
                root: r.path.clone(),
                mount_point: m.mount_point.clone(),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn identity(path: &std::path::Path) -> RootIdentity {
        let m = std::fs::metadata(path).unwrap();
        RootIdentity {
            path: path.to_owned(),
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    #[test]
    fn a_root_renamed_away_and_made_again_is_reported_once() {
        let base = std::env::temp_dir().join(format!("dk-coverage-{}", std::process::id()));
        let root = base.join("state");
        std::fs::create_dir_all(&root).unwrap();
        let (tx, rx) = mpsc::channel();
        let dog = Watchdog::spawn(vec![identity(&root)], Vec::new(), move |u| {
            tx.send(u).unwrap();
        })
        .unwrap();
        assert!(
            rx.recv_timeout(RECHECK_EVERY * 2).is_err(),
            "nothing changed"
        );
        std::fs::rename(&root, base.join("old")).unwrap();
        std::fs::create_dir(&root).unwrap();
        let found = rx.recv_timeout(RECHECK_EVERY * 3).unwrap();
        assert_eq!(found, Uncovered::Replaced { root: root.clone() });
        assert!(found.to_string().contains("was replaced"), "{found}");
        drop(dog);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
