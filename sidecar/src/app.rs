//! The sidecar's life: check the state directories, open the journal, serve metrics, start a
//! backend (eBPF, else inotify), say ready, wait for SIGTERM/SIGINT, then stop cleanly.

use std::fmt;
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use diffkeeper_ebpf::cli::{env_var, init_logging};
use nix::sys::signal::Signal;

use crate::change::{self, Backend, ChangeSink};
use crate::config::{self, Command, Config};
use crate::ebpf::{self, EbpfConfig, EbpfSession};
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
        Ok(Command::Help) => {
            print!("{}", config::help_text());
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("diffkeeper-sidecar {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Run(config)) => {
            init_logging(config.debug);
            match run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// Why the sidecar cannot run or had to stop; the text says what failed and what to do.
#[derive(Debug)]
pub struct Fatal(String);

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

/// What ends the wait in [`run`].
enum Stop {
    Signal(Signal),
    JournalFailed(String),
}

enum Running {
    Ebpf(EbpfSession),
    Inotify(Inotify),
}

pub fn run(config: &Config) -> Result<(), Fatal> {
    // Before any thread exists, so that every thread inherits the blocked mask.
    let signals = signals::block_termination()
        .map_err(|e| Fatal(format!("cannot block SIGTERM/SIGINT (sigprocmask): {e}")))?;
    let roots = canonical_state_dirs(&config.state_dirs)?;
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = config.metrics_addr {
        let bound = metrics::serve(addr, metrics.clone())
            .map_err(|e| Fatal(format!("cannot listen on {addr} (--metrics-addr): {e}")))?;
        log::info!("serving http://{bound}/metrics and /healthz");
    }
    let (stop_tx, stop_rx) = mpsc::channel();
    signals::forward(signals, stop_tx.clone(), Stop::Signal)
        .map_err(|e| Fatal(format!("cannot start the signal thread: {e}")))?;
    let (changes, journal) = start_journal(config, metrics.clone(), stop_tx)?;

    let mut canary = config
        .enable_ebpf
        .then(|| CanaryDir::create(&config.btf_cache_dir));
    let running = start_backend(config, &roots, canary.as_ref(), changes, &metrics)?;
    if let Running::Inotify(_) = running {
        canary = None; // no eBPF: the canary directory is not needed any more
    }
    log::info!(
        "diffkeeper-sidecar ready: backend={}",
        match &running {
            Running::Ebpf(session) => session.backend(),
            Running::Inotify(_) => Backend::Inotify,
        }
        .as_str()
    );

    let stop = stop_rx.recv();
    let failure = match stop {
        Ok(Stop::Signal(signal)) => {
            log::info!("received {signal}: stopping");
            None
        }
        Ok(Stop::JournalFailed(e)) => Some(e),
        Err(_) => Some("the signal and journal threads are gone".into()),
    };
    match running {
        Running::Ebpf(session) => session.stop(),
        Running::Inotify(inotify) => inotify.stop(),
    }
    // The backends held the last senders: the journal drains, flushes and ends.
    let Some(journal_result) = join_within(journal, JOURNAL_FLUSH_LIMIT) else {
        drop(canary);
        return Err(Fatal(format!(
            "the journal {} did not take the last changes within {JOURNAL_FLUSH_LIMIT:?}: \
             its output is blocked (a stalled pipe?); exiting without them",
            config.journal.display()
        )));
    };
    drop(canary);
    match (failure, journal_result) {
        (Some(e), _) => Err(Fatal(e)),
        (None, Ok(Ok(()))) => {
            log::info!("stopped; journal flushed");
            Ok(())
        }
        (None, Ok(Err(e))) => Err(Fatal(journal_error(&config.journal, &e))),
        (None, Err(_)) => Err(Fatal("the journal thread panicked".into())),
    }
}

/// How long a stopping sidecar waits for the journal to flush: Kubernetes' grace period is
/// short, and a blocked output (a stalled stdout pipe) would otherwise hold the exit forever.
const JOURNAL_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_millis(800);

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
/// device and inode, and journal paths are built from these).
fn canonical_state_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, Fatal> {
    dirs.iter()
        .map(|dir| {
            let canonical = dir.canonicalize().map_err(|e| {
                Fatal(format!(
                    "state directory {} cannot be used: {e}; create it or fix --state-dir / \
                     DIFFKEEPER_STATE_DIRS",
                    dir.display()
                ))
            })?;
            if !canonical.is_dir() {
                return Err(Fatal(format!(
                    "state directory {} is not a directory; fix --state-dir / DIFFKEEPER_STATE_DIRS",
                    dir.display()
                )));
            }
            Ok(canonical)
        })
        .collect()
}

type JournalThread = JoinHandle<std::io::Result<()>>;

fn start_journal(
    config: &Config,
    metrics: Arc<Metrics>,
    stop: Sender<Stop>,
) -> Result<(ChangeSink, JournalThread), Fatal> {
    let out = journal::open(&config.journal).map_err(|e| {
        Fatal(format!(
            "cannot open the journal {} (--journal): {e}",
            config.journal.display()
        ))
    })?;
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let coalesce = config.coalesce;
    let path = config.journal.clone();
    let thread = std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || {
            let result = journal::run(out, coalesce, metrics, rx);
            if let Err(e) = &result {
                let _ = stop.send(Stop::JournalFailed(journal_error(&path, e)));
            }
            result
        })
        .map_err(|e| Fatal(format!("cannot start the journal thread: {e}")))?;
    Ok((tx, thread))
}

fn journal_error(path: &Path, e: &std::io::Error) -> String {
    format!(
        "writing the journal {} failed: {e}; is its reader gone or its disk full?",
        path.display()
    )
}

/// eBPF unless disabled; inotify when eBPF is disabled, or impossible and fallback is allowed.
fn start_backend(
    config: &Config,
    roots: &[PathBuf],
    canary: Option<&Result<CanaryDir, String>>,
    changes: ChangeSink,
    metrics: &Arc<Metrics>,
) -> Result<Running, Fatal> {
    let unavailable = match canary {
        None => {
            log::info!("eBPF disabled (--enable-ebpf=false): using inotify");
            None
        }
        Some(Err(e)) => Some(e.clone()),
        Some(Ok(canary)) => {
            let ebpf_config = EbpfConfig {
                attach: config.attach,
                object: config.ebpf_object,
                cache_dir: config.btf_cache_dir.clone(),
                kernel_release: kernel_release()?,
                roots: roots.to_vec(),
                ringbuf_bytes: config.ringbuf_bytes,
                canary_dir: canary.path().to_owned(),
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
                    });
                    return Ok(Running::Ebpf(session));
                }
                Err(unavailable) => Some(unavailable.to_string()),
            }
        }
    };
    if let Some(reason) = unavailable {
        if !config.fallback_fsnotify {
            return Err(Fatal(format!(
                "eBPF is unavailable and --fallback-fsnotify=false: {reason}"
            )));
        }
        log::warn!("eBPF is unavailable: {reason}; falling back to inotify (--fallback-fsnotify)");
    }
    let inotify =
        inotify::start(roots, changes, metrics.clone()).map_err(|e| Fatal(e.to_string()))?;
    metrics.set_ready(Active {
        backend: Backend::Inotify,
        btf_source: None,
        lost_events: None,
    });
    Ok(Running::Inotify(inotify))
}

/// `uname -r`, as the BTF cache names files.
fn kernel_release() -> Result<String, Fatal> {
    const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
    std::fs::read_to_string(OSRELEASE)
        .map(|r| r.trim().to_string())
        .map_err(|e| {
            Fatal(format!(
                "cannot read the kernel release from {OSRELEASE}: {e}; is /proc mounted?"
            ))
        })
}

/// The private directory the eBPF canary writes into; removed when dropped.
///
/// It goes under the BTF cache first (in Kubernetes that volume is writable even with a
/// read-only root file system), else under $TMPDIR. The name is unique per start: several
/// pods can share a node-wide cache and all run as pid 1.
struct CanaryDir(PathBuf);

impl CanaryDir {
    fn create(cache_dir: &Path) -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let name = format!(".diffkeeper-canary-{}-{nanos:08x}", std::process::id());
        let mut failures = Vec::new();
        for parent in [cache_dir.to_owned(), std::env::temp_dir()] {
            let dir = parent.join(&name);
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    log::debug!("canary directory {}", dir.display());
                    return Ok(Self(dir));
                }
                Err(e) => failures.push(format!("{}: {e}", dir.display())),
            }
        }
        Err(format!(
            "cannot create a private canary directory ({}); make --btf-cache-dir or $TMPDIR writable",
            failures.join("; ")
        ))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for CanaryDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            log::warn!(
                "cannot remove the canary directory {}: {e}",
                self.0.display()
            );
        }
    }
}
