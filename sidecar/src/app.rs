//! The sidecar's life: check the state directories, open the journal, serve metrics, start a
//! backend (eBPF, else inotify), say ready, wait for SIGTERM/SIGINT, then stop cleanly.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use diffkeeper_cli::ready::ready_line;
use diffkeeper_cli::{env_var, init_logging};
use nix::sys::signal::Signal;

use crate::capture::{self, Feed};
use crate::change::{self, Backend, ChangeSink};
use crate::command::Command;
use crate::config::{self, Config};
use crate::coverage::{Uncovered, Watchdog};
use crate::ebpf::{self, EbpfConfig, EbpfSession};
pub use crate::fatal::Fatal;
use crate::inotify::{self, Inotify};
use crate::metrics::{self, Active, Metrics};
use crate::{journal, signals};

/// Parses the command line and runs; returns the process exit code (0, 1, or 2 for usage).
pub fn main() -> ExitCode {
    let command = config::parse(std::env::args_os().skip(1).collect(), &env_var);
    match command {
        Err(e) => {
            eprintln!("diffkeeper-sidecar: {e}");
            ExitCode::from(2)
        }
        Ok(config::Command::Help) => {
            print!("{}", config::help_text());
            ExitCode::SUCCESS
        }
        Ok(config::Command::Version) => {
            println!("diffkeeper-sidecar {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(config::Command::Run(config)) => {
            init_logging(config.debug, &[]);
            match run(&config) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}

/// What ends (or, for `Uncovered`, interrupts) the wait in [`run`].
enum Stop {
    Signal(Signal),
    JournalFailed(Fatal),
    /// eBPF no longer covers a watched directory: switch to inotify.
    Uncovered(Uncovered),
    /// The command after `--` exited with this exit code (128+N for signal N).
    CommandExited(u8),
}

enum Running {
    Ebpf(Box<EbpfSession>),
    Inotify(Inotify),
}

/// Runs until SIGTERM/SIGINT (or, with `-- CMD`, until CMD exits); returns the exit code.
pub fn run(config: &Config) -> Result<u8, Fatal> {
    // Before any thread exists, so that every thread inherits the blocked mask.
    let signals = signals::block_termination().map_err(Fatal::BlockSignals)?;
    if !config.ignored_download_settings.is_empty() {
        log::info!(
            "{} given: ignored, the sidecar never downloads BTF (provisioning it is diffkeeper-init's job)",
            config.ignored_download_settings.join(", ")
        );
    }
    let roots = canonical_state_dirs(&config.state_dirs)?;
    refuse_journal_in_state_dir(&config.journal, &roots)?;
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = config.metrics_addr {
        let bound = metrics::serve(addr, metrics.clone())
            .map_err(|source| Fatal::Listen { addr, source })?;
        log::info!("serving http://{bound}/metrics and /healthz");
    }
    let (stop_tx, stop_rx) = mpsc::channel();
    signals::forward(signals, stop_tx.clone(), Stop::Signal).map_err(|source| Fatal::Thread {
        name: "signal",
        source,
    })?;
    let (prepared, feed) = match &config.capture {
        Some(settings) => {
            let (prepared, feed) = capture::setup(settings, &roots, &metrics)?;
            (Some(prepared), Some(feed))
        }
        None => (None, None),
    };
    let (changes, journal) = start_journal(config, &roots, metrics.clone(), stop_tx.clone(), feed)?;
    // For a switch to inotify while running; dropped before the journal is joined.
    let mut spare_sink = Some(changes.clone());

    let mut running = start_backend(config, &roots, changes, &metrics)?;
    let mut watchdog = watch_coverage(&running, &stop_tx);
    // The backend runs and the journal queues for capture meanwhile: nothing is missed.
    let capture = prepared
        .map(|prepared| prepared.start().map_err(Fatal::Capture))
        .transpose()?;
    let command_stop = (!config.command.is_empty()).then(|| stop_tx.clone());
    drop(stop_tx);
    let backend = match &running {
        Running::Ebpf(session) => session.backend(),
        Running::Inotify(_) => Backend::Inotify,
    };
    // Ready means the journal knows the tree it starts from: a change made after the ready line
    // is reported against it (its start-up scan runs on its own thread).
    if spare_sink
        .as_ref()
        .is_some_and(|sink| !sink.fence(JOURNAL_START_WAIT))
    {
        log::warn!(
            "the journal's start-up scan of the watched directories did not end within {} s; \
             changes made until it ends may be journaled as repairs",
            JOURNAL_START_WAIT.as_secs()
        );
    }
    log::info!("{}", ready_line(backend.as_str()));
    // `-- CMD`: started once ready, so everything it does is journaled (and captured).
    let command = match (config.command.split_first(), command_stop) {
        (Some((program, args)), Some(stop)) => Some(Command::spawn(program, args, move |code| {
            let _ = stop.send(Stop::CommandExited(code));
        })?),
        _ => None,
    };

    let mut exit_code = 0;
    let failure = loop {
        match stop_rx.recv() {
            Ok(Stop::Signal(signal)) => match &command {
                // The command decides when to end; its exit ends the sidecar.
                Some(command) => command.forward(signal),
                None => {
                    log::info!("received {signal}: stopping");
                    break None;
                }
            },
            Ok(Stop::CommandExited(code)) => {
                log::info!("the command exited ({code}): stopping");
                exit_code = code;
                break None;
            }
            Ok(Stop::JournalFailed(e)) => break Some(e),
            Ok(Stop::Uncovered(uncovered)) => {
                drop(watchdog.take());
                let Some(sink) = spare_sink.take() else {
                    continue;
                };
                running = switch_to_inotify(running, &uncovered, &roots, sink, &metrics)?;
            }
            Err(_) => break Some(Fatal::ThreadsGone),
        }
    };
    drop(watchdog);
    drop(spare_sink);
    match running {
        Running::Ebpf(session) => session.stop(),
        Running::Inotify(inotify) => inotify.stop(),
    }
    // The backends held the last senders: the journal drains, flushes and ends.
    let Some(journal_result) = join_within(journal, JOURNAL_FLUSH_LIMIT) else {
        return Err(Fatal::JournalBlocked {
            path: config.journal.clone(),
            limit: JOURNAL_FLUSH_LIMIT,
        });
    };
    // The journal held the capture queue's sender: capture records what is left and syncs.
    if let Some(capture) = capture {
        if !capture.finish(CAPTURE_FINISH_LIMIT) {
            log::error!(
                "capture did not finish within {CAPTURE_FINISH_LIMIT:?}: the last changes may be missing from the store (what was synced before is intact)"
            );
        }
    }
    match (failure, journal_result) {
        (Some(e), _) => Err(e),
        (None, Ok(Ok(()))) => {
            log::info!("stopped; journal flushed");
            Ok(exit_code)
        }
        (None, Ok(Err(source))) => Err(Fatal::WriteJournal {
            path: config.journal.clone(),
            source,
        }),
        (None, Err(_)) => Err(Fatal::JournalPanicked),
    }
}

/// While eBPF runs, a watchdog reports a watched directory that stops being covered.
fn watch_coverage(running: &Running, stop: &Sender<Stop>) -> Option<Watchdog> {
    let Running::Ebpf(session) = running else {
        return None;
    };
    let stop = stop.clone();
    let spawned = Watchdog::spawn(
        session.root_identities().to_vec(),
        session.covered_mounts().to_vec(),
        move |uncovered| {
            let _ = stop.send(Stop::Uncovered(uncovered));
        },
    );
    match spawned {
        Ok(watchdog) => Some(watchdog),
        Err(e) => {
            log::warn!(
                "[eBPF] cannot watch the mount table ({}): a watched directory replaced, or a \
                 file system mounted below one, after start would go unnoticed: {e}",
                crate::mounts::MOUNTINFO
            );
            None
        }
    }
}

/// eBPF no longer covers a watched directory: detach it and watch every root with inotify.
fn switch_to_inotify(
    running: Running,
    uncovered: &Uncovered,
    roots: &[PathBuf],
    sink: ChangeSink,
    metrics: &Arc<Metrics>,
) -> Result<Running, Fatal> {
    let total = metrics.count_coverage_fallback();
    log::error!(
        "{uncovered}; switching to inotify for all watched directories (eBPF coverage \
         fallback {total}; changes in the moment of the switch can be lost)"
    );
    match running {
        Running::Ebpf(session) => session.stop(),
        Running::Inotify(inotify) => return Ok(Running::Inotify(inotify)),
    }
    let running = start_inotify(roots, sink, metrics)?;
    log::info!("{}", ready_line(Backend::Inotify.as_str()));
    Ok(running)
}

/// How long a stopping sidecar waits for the journal to flush: Kubernetes' grace period is
/// short, and a blocked output (a stalled stdout pipe) would otherwise hold the exit forever.
const JOURNAL_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_millis(800);

/// How long a stopping sidecar waits for capture to record its queue and sync: the rest of a
/// Kubernetes grace period (30 s by default) after the journal's second.
const CAPTURE_FINISH_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Joins `thread` if it ends within `limit`; `None` leaves it running (process exit ends it).
fn join_within<T>(
    thread: JoinHandle<T>,
    limit: std::time::Duration,
) -> Option<std::thread::Result<T>> {
    let deadline = std::time::Instant::now() + limit;
    while !thread.is_finished() {
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Some(thread.join())
}

/// Every state directory must exist; the backends get canonical paths (eBPF matches roots by
/// device and inode, and journal paths are built from these). One directory given twice (the
/// same path, another path to it through links, a bind mount of it) is watched once, under the
/// first path given, and the log says so: watched twice, every change would be journaled twice
/// by inotify, and eBPF would refuse the pair as two roots it cannot tell apart.
fn canonical_state_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, Fatal> {
    let mut roots: Vec<(PathBuf, (u64, u64), &PathBuf)> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let state_dir = |source| Fatal::StateDir {
            path: dir.clone(),
            source,
        };
        let canonical = dir.canonicalize().map_err(state_dir)?;
        let meta = std::fs::metadata(&canonical).map_err(state_dir)?;
        if !meta.is_dir() {
            return Err(Fatal::StateDirNotADir { path: dir.clone() });
        }
        let identity = (meta.dev(), meta.ino());
        match roots.iter().find(|(_, id, _)| *id == identity) {
            Some((first, _, given)) => log::info!(
                "--state-dir {} is the same directory as --state-dir {} ({}): watched once",
                dir.display(),
                given.display(),
                first.display()
            ),
            None => roots.push((canonical, identity, dir)),
        }
    }
    Ok(roots.into_iter().map(|(canonical, ..)| canonical).collect())
}

/// A journal file under a watched directory would report its own lines, each of which is a
/// new change to report: refused, wherever links or bind mounts make it land
/// ([`journal::placement`]).
fn refuse_journal_in_state_dir(journal: &Path, roots: &[PathBuf]) -> Result<(), Fatal> {
    if journal.as_os_str() == journal::STDOUT {
        return Ok(());
    }
    journal::placement::check(journal, roots).map_err(|inside| Fatal::JournalInStateDir {
        journal: journal.to_owned(),
        resolved: inside.resolved,
        state_dir: inside.root,
    })
}

/// How long the ready line waits for the journal's start-up scan (a large tree under a slow
/// disk); past it the sidecar says so and goes on.
const JOURNAL_START_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

type JournalThread = JoinHandle<std::io::Result<()>>;

/// The journal thread runs at a lower priority (nice +5) than the backend's reader: at full
/// write rate on a small node both want the CPU the writers leave, and a reader that waits a
/// scheduler slice behind the journal lets the kernel's buffers fill (the per-CPU perf buffers
/// of the compat object first), which loses events; the journal only delays lines, its queue
/// is bounded. Lowering a thread's own priority needs no privilege; a failure is logged.
fn yield_to_the_reader() {
    // SAFETY: setpriority on the calling thread (PRIO_PROCESS with its tid), no pointers.
    let tid = nix::unistd::gettid().as_raw() as nix::libc::id_t;
    if unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, tid, 5) } != 0 {
        log::warn!(
            "journal: could not lower its thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn start_journal(
    config: &Config,
    roots: &[PathBuf],
    metrics: Arc<Metrics>,
    stop: Sender<Stop>,
    capture: Option<Feed>,
) -> Result<(ChangeSink, JournalThread), Fatal> {
    let output = journal::open(&config.journal).map_err(|source| Fatal::OpenJournal {
        path: config.journal.clone(),
        source,
    })?;
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let options = journal::Options {
        coalesce: config.coalesce,
        roots: roots.to_vec(),
        index_limit: journal::DEFAULT_INDEX_LIMIT,
    };
    let path = config.journal.clone();
    let thread = std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || {
            yield_to_the_reader();
            let result = journal::run(output, options, metrics, rx, capture);
            if let Err(e) = &result {
                // The waiting main thread learns of it at once; the join later sees it again.
                let source = std::io::Error::new(e.kind(), e.to_string());
                let _ = stop.send(Stop::JournalFailed(Fatal::WriteJournal { path, source }));
            }
            result
        })
        .map_err(|source| Fatal::Thread {
            name: "journal",
            source,
        })?;
    Ok((tx, thread))
}

/// eBPF unless disabled; inotify when eBPF is disabled, or impossible and fallback is allowed.
fn start_backend(
    config: &Config,
    roots: &[PathBuf],
    changes: ChangeSink,
    metrics: &Arc<Metrics>,
) -> Result<Running, Fatal> {
    if config.enable_ebpf {
        let ebpf_config = EbpfConfig {
            attach: config.attach,
            object: config.ebpf_object,
            btf_cache_dir: config.btf_cache_dir.clone(),
            kernel_release: kernel_release()?,
            roots: roots.to_vec(),
            ringbuf_bytes: config.ringbuf_bytes,
            kretprobe_maxactive: config.kretprobe_maxactive,
            tracefs_dir: config.tracefs_dir.clone(),
        };
        match ebpf::start(&ebpf_config, changes.clone()) {
            Ok(session) => {
                log::info!(
                    "eBPF attached: backend={}, BTF from {} ({})",
                    session.backend().as_str(),
                    session.btf_source(),
                    session.btf_path().display()
                );
                metrics.set_ready(Active {
                    backend: session.backend(),
                    btf_source: Some(session.btf_source()),
                    lost_events: Some(session.lost_counter()),
                    unreported: Some(session.unreported()),
                    kretprobes: session.kretprobe_stats(),
                });
                return Ok(Running::Ebpf(Box::new(session)));
            }
            Err(reason) if !config.fallback_fsnotify => return Err(Fatal::EbpfRequired(reason)),
            Err(reason) => log::warn!(
                "eBPF is unavailable: {reason}; falling back to inotify (--fallback-fsnotify)"
            ),
        }
    } else {
        log::info!("eBPF disabled (--enable-ebpf=false): using inotify");
    }
    start_inotify(roots, changes, metrics)
}

/// Starts the inotify backend on every root and marks the sidecar ready on it.
fn start_inotify(
    roots: &[PathBuf],
    sink: ChangeSink,
    metrics: &Arc<Metrics>,
) -> Result<Running, Fatal> {
    let inotify = inotify::start(roots, sink, metrics.clone()).map_err(Fatal::Inotify)?;
    metrics.set_ready(Active {
        backend: Backend::Inotify,
        btf_source: None,
        lost_events: None,
        unreported: None,
        kretprobes: None,
    });
    Ok(Running::Inotify(inotify))
}

/// `uname -r`, as the BTF cache names files.
fn kernel_release() -> Result<String, Fatal> {
    const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
    std::fs::read_to_string(OSRELEASE)
        .map(|r| r.trim().to_string())
        .map_err(|source| Fatal::KernelRelease {
            path: OSRELEASE,
            source,
        })
}
