//! The inotify backend (notify crate, recursive watches): used when eBPF is disabled or
//! impossible. Same journal schema with `"backend":"inotify"`; inotify cannot tell who wrote or
//! how much, so pid/comm/bytes stay empty.
//!
//! notify hands us its own event kinds; [`Translator`] turns them into create/mkdir/write/
//! attrib/delete/rmdir/rename, pairs the two halves of a rename, reports files that appeared in
//! a new directory before its watch existed, and journals a lost event (queue overflow, watch
//! limit, a full event queue) as a gap, which the journal repairs from a rescan.
//!
//! `attrib` is every IN_ATTRIB: a mode or owner change, but also `touch`'s timestamps, a link
//! count change and extended attributes, which inotify does not tell apart (telling them apart
//! would need every file's mode and owner kept in memory).
//!
//! Symlinks are never followed: a link is a file here, and no watch may observe a tree outside
//! the roots under a path inside them.
//!
//! Events reach the translator through a bounded queue that notify's thread never waits on:
//! when the translator falls behind (the journal does not keep up), the queue fills, and further
//! events are dropped, counted and journaled as a gap (as the eBPF ring buffer does in the
//! kernel), so memory stays bounded.
//!
//! * this file: starting and stopping, errors;
//! * [`handler`]: notify's side: which events are queued, drops counted;
//! * [`translate`]: notify's events to journal changes and gaps;
//! * [`pairing`]: renames paired, in journal order, and handing changes to the journal;
//! * [`scan`]: catching up on new directories, and the paths that catch-up reported.

mod handler;
mod pairing;
mod scan;
#[cfg(test)]
mod tests;
mod translate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use notify::{Config, Event, INotifyWatcher, RecursiveMode, Watcher};

use crate::change::ChangeSink;
use crate::metrics::Metrics;
use handler::Handler;
use translate::Translator;

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
    let behind = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handler = Handler {
        events,
        metrics: metrics.clone(),
        behind: behind.clone(),
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
    translator.behind = behind;
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
    /// Hands the queued changes over to the journal, waiting at most [`STOP_GRACE`](crate::change::STOP_GRACE) on a full
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

/// A directory itself, not a symlink to one.
fn is_directory(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_dir())
}
