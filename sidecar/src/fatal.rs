//! Why the sidecar cannot run or had to stop (exit code 1; 2 for a usage mistake found only
//! once paths are resolved). Each variant carries what failed
//! (the call, the path, the address) and renders, once, what to do about it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ebpf::EbpfUnavailable;
use crate::inotify::InotifyError;

#[derive(Debug)]
pub enum Fatal {
    /// sigprocmask(2) refused to block SIGTERM/SIGINT.
    BlockSignals(nix::Error),
    /// A thread (`signal`, `journal`) could not be started.
    Thread {
        name: &'static str,
        source: io::Error,
    },
    StateDir {
        path: PathBuf,
        source: io::Error,
    },
    StateDirNotADir {
        path: PathBuf,
    },
    /// The journal file lies under a watched state directory: each line written would be a
    /// change to report, forever. Bad usage (exit 2).
    JournalInStateDir {
        journal: PathBuf,
        /// Where the journal lands, links resolved.
        resolved: PathBuf,
        state_dir: PathBuf,
    },
    Listen {
        addr: SocketAddr,
        source: io::Error,
    },
    OpenJournal {
        path: PathBuf,
        source: io::Error,
    },
    KernelRelease {
        path: &'static str,
        source: io::Error,
    },
    /// eBPF is impossible and `--fallback-fsnotify=false`.
    EbpfRequired(EbpfUnavailable),
    Inotify(InotifyError),
    WriteJournal {
        path: PathBuf,
        source: io::Error,
    },
    /// The journal's output did not take the last changes in time.
    JournalBlocked {
        path: PathBuf,
        limit: Duration,
    },
    JournalPanicked,
    /// The channel the signal and journal threads report on closed.
    ThreadsGone,
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BlockSignals(e) => write!(f, "cannot block SIGTERM/SIGINT (sigprocmask): {e}"),
            Self::Thread { name, source } => write!(f, "cannot start the {name} thread: {source}"),
            Self::StateDir { path, source } => write!(
                f,
                "state directory {} cannot be used: {source}; create it or fix --state-dir / \
                 DIFFKEEPER_STATE_DIRS",
                path.display()
            ),
            Self::StateDirNotADir { path } => write!(
                f,
                "state directory {} is not a directory; fix --state-dir / DIFFKEEPER_STATE_DIRS",
                path.display()
            ),
            Self::JournalInStateDir {
                journal,
                resolved,
                state_dir,
            } => {
                write!(
                    f,
                    "the journal {} (--journal) is inside the watched state directory {} \
                     (--state-dir)",
                    journal.display(),
                    state_dir.display()
                )?;
                if resolved != journal {
                    write!(f, " (it resolves to {})", resolved.display())?;
                }
                write!(
                    f,
                    ": every journal line would be a change to journal, without end; put the \
                     journal outside every state directory (or use --journal - for stdout)"
                )
            }
            Self::Listen { addr, source } => {
                write!(f, "cannot listen on {addr} (--metrics-addr): {source}")
            }
            Self::OpenJournal { path, source } => write!(
                f,
                "cannot open the journal {} (--journal): {source}",
                path.display()
            ),
            Self::KernelRelease { path, source } => write!(
                f,
                "cannot read the kernel release from {path}: {source}; is /proc mounted?"
            ),
            Self::EbpfRequired(reason) => write!(
                f,
                "eBPF is unavailable and --fallback-fsnotify=false: {reason}"
            ),
            Self::Inotify(e) => e.fmt(f),
            Self::WriteJournal { path, source } => write!(
                f,
                "writing the journal {} failed: {source}; is its reader gone or its disk full?",
                path.display()
            ),
            Self::JournalBlocked { path, limit } => write!(
                f,
                "the journal {} did not take the last changes within {limit:?}: its output is \
                 blocked (a stalled pipe?); exiting without them",
                path.display()
            ),
            Self::JournalPanicked => f.write_str("the journal thread panicked"),
            Self::ThreadsGone => f.write_str("the signal and journal threads are gone"),
        }
    }
}

impl Fatal {
    /// The process exit code: 2 for bad usage, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::JournalInStateDir { .. } => 2,
            _ => 1,
        }
    }
}

impl std::error::Error for Fatal {}
