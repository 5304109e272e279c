//! The state recorder's round trip against the real sidecar: a workload in phases under a
//! watched directory with `--store`, a `cp -a` snapshot after each phase, and the export at each
//! phase's time compared with its snapshot.
//!
//! * this file: running the sidecar through the phases and comparing;
//! * [`workload`]: the phases; [`compare`]: what "equal" means.

pub mod compare;
pub mod workload;

mod cli_export;
pub use cli_export::export_with_cli;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::http::{http_get, metric_sample};
use crate::scratch::Scratch;
use crate::sidecar::SidecarProcess;
use compare::{differences, Difference};

/// Exports the store's state at a time into a new directory.
pub type Export<'a> = &'a dyn Fn(&Path, SystemTime, &Path) -> Result<(), String>;

/// How to run one round trip.
pub struct Options<'a> {
    pub sidecar: &'a Path,
    /// The backend's flags (e.g. `--attach tracepoint`, `--enable-ebpf=false`).
    pub backend_args: Vec<String>,
    /// Whether the backend reports a journal op at all (`rename`, `delete`, ...).
    pub reports: &'a dyn Fn(&str) -> bool,
    pub export: Export<'a>,
}

/// One phase's export held against its snapshot.
#[derive(Debug)]
pub struct PhaseResult {
    pub name: &'static str,
    /// Differences no unreported op explains: failures.
    pub unexplained: Vec<Difference>,
    /// Differences at paths changed through an op this backend does not report, and why.
    pub explained: Vec<(Difference, String)>,
    /// Seconds the phase took: its changes, until capture settled, and the snapshot.
    pub record_secs: f64,
    /// Seconds the export at its time and the comparison took.
    pub export_secs: f64,
}

/// The whole round trip.
#[derive(Debug)]
pub struct RoundTrip {
    pub backend: String,
    pub phases: Vec<PhaseResult>,
    pub log: String,
}

impl RoundTrip {
    /// A table: one row per phase, `ok`, `known gap (why)` or `FAIL (what)`.
    pub fn table(&self) -> String {
        let mut out = format!("round trip, backend {}:\n", self.backend);
        for p in &self.phases {
            let verdict = match (p.unexplained.is_empty(), p.explained.is_empty()) {
                (true, true) => "ok".to_string(),
                (true, false) => {
                    let mut why: Vec<&str> =
                        p.explained.iter().map(|(_, why)| why.as_str()).collect();
                    why.dedup();
                    why.sort_unstable();
                    why.dedup();
                    format!(
                        "KNOWN GAP, not a pass: {} paths differ, all changed through ops the backend does not report: {}",
                        p.explained.len(),
                        why.join("; ")
                    )
                }
                (false, _) => {
                    let what: Vec<String> = p.unexplained.iter().map(|d| d.to_string()).collect();
                    format!("FAIL: {}", what.join("; "))
                }
            };
            out.push_str(&format!("  {:<45} {verdict}\n", p.name));
        }
        out
    }

    pub fn failures(&self) -> usize {
        self.phases.iter().map(|p| p.unexplained.len()).sum()
    }
}

/// Starts the sidecar with `--store` on a fresh tree, runs every phase, and compares.
pub fn round_trip(options: &Options) -> RoundTrip {
    let scratch = Scratch::new("roundtrip");
    let state = scratch.dir("state");
    let store = scratch.path().join("store");
    workload::initial(&state);
    let mut sidecar = start(
        options.sidecar,
        &options.backend_args,
        &state,
        &store,
        &scratch,
    );
    // The metrics line comes first; waiting for a line consumes the ones before it.
    let addr = sidecar.metrics_addr(Duration::from_secs(10)).unwrap();
    let backend = sidecar
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| {
            panic!("{e}\n{}", sidecar.log());
        });
    let mut times = Vec::new();
    let mut record_secs = Vec::new();
    let mut names = vec!["baseline (the tree before the sidecar started)"];
    let started = Instant::now();
    settle(addr);
    times.push(SystemTime::now());
    snapshot(&state, &scratch.path().join("snap-0"));
    record_secs.push(started.elapsed().as_secs_f64());
    for (i, phase) in workload::PHASES.iter().enumerate() {
        let started = Instant::now();
        (phase.run)(&state);
        settle(addr);
        times.push(SystemTime::now());
        snapshot(&state, &scratch.path().join(format!("snap-{}", i + 1)));
        names.push(phase.name);
        record_secs.push(started.elapsed().as_secs_f64());
    }
    let (status, _) = sidecar.terminate();
    let log = sidecar.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "sidecar exit {status:?}\n{log}"
    );

    // Paths changed through an op this backend does not report, from which phase on.
    let mut tainted: BTreeMap<String, String> = BTreeMap::new();
    let mut phases = Vec::new();
    for (i, ts) in times.iter().enumerate() {
        if i > 0 {
            for (op, paths) in workload::PHASES[i - 1].through {
                if !(options.reports)(op) {
                    for path in *paths {
                        tainted.entry(path.to_string()).or_insert_with(|| {
                            format!("`{op}` is not reported by {backend} (phase {i})")
                        });
                    }
                }
            }
        }
        let started = Instant::now();
        let out = scratch.path().join(format!("export-{i}"));
        if let Err(e) = (options.export)(&store, *ts, &out) {
            panic!("export at phase {i} ({}): {e}\n{log}", names[i]);
        }
        let (mut unexplained, mut explained) = (Vec::new(), Vec::new());
        let found = differences(&scratch.path().join(format!("snap-{i}")), &out);
        // Compared: freed at once (a VM guest keeps its whole scratch dir in RAM).
        let _ = std::fs::remove_dir_all(&out);
        for d in found {
            let why = tainted
                .iter()
                .find(|(t, _)| d.path == **t || d.path.starts_with(&format!("{t}/")))
                .map(|(_, why)| why.clone());
            match why {
                Some(why) => explained.push((d, why)),
                None => unexplained.push(d),
            }
        }
        phases.push(PhaseResult {
            name: names[i],
            unexplained,
            explained,
            record_secs: record_secs[i],
            export_secs: started.elapsed().as_secs_f64(),
        });
    }
    RoundTrip {
        backend,
        phases,
        log,
    }
}

/// The sidecar with `--store` on `state`; metrics on a free port (for [`settle`]).
pub fn start(
    sidecar: &Path,
    backend_args: &[String],
    state: &Path,
    store: &Path,
    scratch: &Scratch,
) -> SidecarProcess {
    let mut cmd = Command::new(sidecar);
    cmd.args(backend_args)
        .arg("--state-dir")
        .arg(state)
        .arg("--store")
        .arg(store)
        .args(["--store-sync-ms", "50", "--capture-interval-ms", "100"])
        .args(["--metrics-addr", "127.0.0.1:0", "--journal"])
        .arg(scratch.path().join("journal.jsonl"));
    SidecarProcess::spawn(&mut cmd).unwrap()
}

/// [`start`] with inotify only (`--enable-ebpf=false`), once its metrics listen and it is ready.
pub fn start_inotify_ready(
    sidecar: &Path,
    state: &Path,
    store: &Path,
    scratch: &Scratch,
) -> (SidecarProcess, SocketAddr) {
    let args = ["--enable-ebpf=false".to_string()];
    let mut process = start(sidecar, &args, state, store, scratch);
    let addr = process.metrics_addr(Duration::from_secs(10)).unwrap();
    process.wait_ready(Duration::from_secs(30)).unwrap();
    (process, addr)
}

/// Waits until capture has handled every change (nothing queued or deferred, the recorded
/// count steady) and one sync interval has passed.
pub fn settle(addr: SocketAddr) {
    // The journal holds writes for --coalesce-ms (50) before capture sees them.
    std::thread::sleep(Duration::from_millis(150));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    loop {
        let (_, metrics) = http_get(addr, "/metrics").unwrap();
        let backlog = metric_sample(&metrics, "diffkeeper_capture_backlog");
        let recorded = metric_sample(&metrics, "diffkeeper_capture_recorded_total");
        if backlog == Some(0) && recorded.is_some() && last == recorded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "capture did not settle:\n{metrics}"
        );
        last = recorded;
        std::thread::sleep(Duration::from_millis(100));
    }
    // --store-sync-ms is 50: what was recorded is synced by now.
    std::thread::sleep(Duration::from_millis(120));
}

/// `cp -a state out`.
pub fn snapshot(state: &Path, out: &PathBuf) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(state)
        .arg(out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        state.display(),
        out.display()
    );
}
