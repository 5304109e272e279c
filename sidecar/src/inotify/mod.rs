//! The inotify backend: used when eBPF is disabled or impossible. Same journal schema with
//! `"backend":"inotify"`; inotify cannot tell who wrote or how much, so pid/comm/bytes stay
//! empty.
//!
//! Our own reader (one thread, the `inotify` crate, a large read buffer): every directory
//! under the roots has a watch, and the watch → directory map is kept in event order, so a
//! directory renamed within the roots keeps its watches and the events that follow name its
//! new path; a new directory is watched as soon as its event is read, then listed for what was
//! made in it before (see [`scan`]). A lost event (queue overflow, watch limit) is journaled as
//! a gap, which the journal repairs from a rescan (see [`overflow`]).
//!
//! `attrib` is every IN_ATTRIB: a mode or owner change, but also `touch`'s timestamps, a link
//! count change and extended attributes, which inotify does not tell apart (telling them apart
//! would need every file's mode and owner kept in memory).
//!
//! Symlinks are never followed: a link is a file here, and no watch may observe a tree outside
//! the roots under a path inside them.
//!
//! When the journal does not keep up, the reader waits for it and the kernel's queue
//! (`fs.inotify.max_queued_events`) absorbs the excess; past it the kernel drops events and
//! says so (an overflow: a gap), so memory stays bounded.
//!
//! * this file: starting and stopping, errors;
//! * [`watches`]: the watch → directory map, renamed in place;
//! * [`translate`]: reading, and inotify's events to journal changes;
//! * [`pairing`]: renames paired, in journal order, and handing changes to the journal;
//! * [`scan`]: catching up on new directories; the watch limit;
//! * [`overflow`]: the gap after a queue overflow, fenced against older events.

mod overflow;
mod pairing;
mod scan;
#[cfg(test)]
mod tests;
mod translate;
mod watches;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::change::ChangeSink;
use crate::metrics::Metrics;
use translate::Translator;
use watches::Watches;

/// A running inotify backend; [`Inotify::stop`] removes the watches and ends its thread.
pub struct Inotify {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Why inotify could not start, with what to do about it.
#[derive(Debug)]
pub enum InotifyError {
    /// inotify_init1(2) failed.
    Init(io::Error),
    /// inotify_add_watch(2) failed for a root (or a directory under it).
    Watch {
        root: PathBuf,
        source: io::Error,
    },
    Thread(io::Error),
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

/// Watches every root recursively; returns once all watches are in place.
pub fn start(
    roots: &[PathBuf],
    sink: ChangeSink,
    metrics: Arc<Metrics>,
) -> Result<Inotify, InotifyError> {
    let mut watches = Watches::new(inotify::Inotify::init().map_err(InotifyError::Init)?);
    for root in roots {
        watches
            .watch_tree(root, &mut Vec::new())
            .map(drop)
            .map_err(|source| InotifyError::Watch {
                root: root.clone(),
                source,
            })?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut translator = Translator::new(watches, roots.to_vec(), sink, metrics, stop.clone());
    let thread = std::thread::Builder::new()
        .name("inotify".into())
        .spawn(move || translator.run())
        .map_err(InotifyError::Thread)?;
    Ok(Inotify { stop, thread })
}

impl Inotify {
    /// Hands the queued changes over to the journal, waiting at most [`STOP_GRACE`](crate::change::STOP_GRACE) on a full
    /// journal queue (then drops and counts them), removes all watches and ends the thread.
    pub fn stop(self) {
        // Seen by the reader within its stop check (50 ms).
        self.stop.store(true, Ordering::Release);
        if self.thread.join().is_err() {
            log::error!("inotify: the translator thread panicked");
        }
    }
}

/// The system's error text plus, for a limit, the sysctl to raise.
fn describe(error: &io::Error) -> String {
    let limit = |sysctl: &str, suggested: &str| {
        let current = std::fs::read_to_string(format!("/proc/sys/fs/inotify/{sysctl}"))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        format!(
            "the inotify limit fs.inotify.{sysctl} (now {current}) is reached; raise it on the \
             node, e.g. `sysctl -w fs.inotify.{sysctl}={suggested}`"
        )
    };
    match error.raw_os_error() {
        Some(nix::libc::ENOSPC) => limit("max_user_watches", "524288"),
        Some(nix::libc::EMFILE) => limit("max_user_instances", "1024"),
        _ => error.to_string(),
    }
}
