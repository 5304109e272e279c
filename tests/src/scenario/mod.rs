//! The journal scenario: run a diffkeeper-sidecar binary on a fresh watched directory, make a
//! scripted series of changes (and some outside the directory), stop the sidecar with SIGTERM
//! and compare its journal line by line with what the backend should have seen.
//!
//! Used by the sidecar's integration tests (as a library) and, as the static
//! `diffkeeper-scenario` binary, inside minimal VMs: nothing here reads the source tree.

//!
//! * this file: the run (directories, sidecar, outcome);
//! * [`script`]: the changes and the lines they must produce;
//! * [`diff`]: the journal against those lines;
//! * [`storms`]: the replay contract under seeded storms (`--replay-storms`), and [`parity`]:
//!   one scripted change of every kind against the lines it must produce;
//! * [`races`]: a dup2 during a write and a name changed in memory during the call
//!   (`--races`): the journal names what the kernel did;
//! * [`session`]: what the runs share (fresh directories, a sidecar ready with the expected
//!   backend while the changes are made, the end marker).
//!
//! Process control is [`crate::sidecar`]; the HTTP client is [`crate::http`].

mod diff;
pub mod parity;
pub mod races;
mod script;
mod session;
pub mod storms;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::sidecar::SidecarProcess;
use diff::{diff, normalise_journal};
use script::{perform, perform_ops};
use session::in_fresh_dirs;

/// The name of the thread that makes the changes: the `comm` eBPF backends must report.
pub const WRITER_COMM: &str = "dk-scenario";

/// Whether `backend` reports the scenario step `step`. Steps are finer than journal ops so a
/// backend can see e.g. `write(2)` but not `pwritev(2)`:
/// `mkdir`, `create` (open with O_CREAT), `write`, `pwrite`, `writev`, `pwritev`, `rename`
/// (of a file or a directory), `delete` (unlink), `rmdir`, `chmod`, `chown`, `link` (a new name
/// from link(2), linkat(2), also of an O_TMPFILE file, symlink(2) or symlinkat(2), relative to
/// a directory descriptor or the working directory), `absolute-link` (the same with an
/// absolute new name), `dotdot-link` (a new name with `..`: tracepoint mode journals its
/// directory, flagged `truncated`) and `tmpfile-content` (tracepoint mode: the write of an
/// O_TMPFILE file's content when linkat(AT_EMPTY_PATH) names it; the other backends see that
/// write while the file has no name).
pub fn covers(backend: &str, step: &str) -> bool {
    match backend {
        // Every step but the unnamed write: the syscalls, with the names resolved at entry.
        "tracepoint" => true,
        // IN_ATTRIB covers chmod and chown; the VFS hooks see every named change.
        "inotify" | "kprobe" | "fentry" => step != "tmpfile-content",
        _ => false,
    }
}

/// The journal `op` a step produces (the same in every backend).
fn journal_op(step: &str) -> &'static str {
    match step {
        "create" | "link" | "absolute-link" | "dotdot-link" => "create",
        "mkdir" => "mkdir",
        "rmdir" => "rmdir",
        "rename" => "rename",
        "delete" => "delete",
        "chmod" | "chown" => "attrib",
        _ => "write",
    }
}

/// How to run one scenario.
#[derive(Debug, Clone)]
pub struct Options {
    /// The diffkeeper-sidecar binary.
    pub sidecar: PathBuf,
    /// The backend the sidecar must report ready with: fentry | kprobe | tracepoint | inotify.
    pub expect_backend: String,
    /// Where to create the scenario's directory (default: $TMPDIR).
    pub workdir: Option<PathBuf>,
    /// Appended to `--state-dir <dir> --coalesce-ms 0 --journal <file>`.
    pub sidecar_args: Vec<OsString>,
    /// Run the sidecar in a private mount namespace with `/sys/kernel/btf` hidden (root only).
    pub hide_system_btf: bool,
    /// How long the sidecar may take to become ready (VMs under emulation are slow).
    pub ready_timeout: Duration,
    /// Keep the scenario directory (journal, sidecar log) for inspection.
    pub keep: bool,
    /// Run the operations scenario instead (`--ops`): operations that fail after their
    /// security hook ran, and new names from link/symlink/O_TMPFILE; see `script::perform_ops`.
    pub ops: bool,
}

impl Options {
    pub fn new(sidecar: impl Into<PathBuf>, expect_backend: &str) -> Self {
        Self {
            sidecar: sidecar.into(),
            expect_backend: expect_backend.into(),
            workdir: None,
            sidecar_args: Vec::new(),
            hide_system_btf: false,
            ready_timeout: Duration::from_secs(30),
            keep: false,
            ops: false,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.sidecar_args.push(arg.into());
        self
    }
}

/// What happened; [`Outcome::summary_line`] is the machine-readable `SCENARIO {...}` line.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The backend named by the sidecar's ready line.
    pub backend: Option<String>,
    pub expect_backend: String,
    pub pass: bool,
    /// The first thing that went wrong.
    pub reason: Option<String>,
    /// Journal lines written.
    pub events: usize,
    pub expected: usize,
    /// `-<expected line>` missing, `+<journal line>` unexpected (lines without `ts`).
    pub diff: Vec<String>,
    pub exit_code: Option<i32>,
    /// From SIGTERM to exit.
    pub stop_ms: Option<u128>,
    /// The sidecar's stderr.
    pub log: String,
    pub journal: String,
    /// The watched directory (canonical).
    pub state_dir: PathBuf,
}

impl Outcome {
    pub fn summary_line(&self) -> String {
        let summary = json!({
            "backend": self.expect_backend,
            "observed_backend": self.backend,
            "result": if self.pass { "pass" } else { "fail" },
            "reason": self.reason,
            "events": self.events,
            "expected": self.expected,
            "exit_code": self.exit_code,
            "stop_ms": self.stop_ms.map(|ms| ms as u64),
            "diff": self.diff,
            "ops": self.journaled_ops(),
            "names_b64": self.lines_with_exact_names(),
        });
        format!("SCENARIO {summary}")
    }

    /// The distinct `op` values of the journal, sorted: the parity check's input.
    pub fn journaled_ops(&self) -> Vec<String> {
        let ops: std::collections::BTreeSet<String> = self
            .journal
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|line| line.get("op").and_then(Value::as_str).map(str::to_string))
            .collect();
        ops.into_iter().collect()
    }

    /// Journal lines that carry a name's exact bytes (`path_b64`: a name that is not UTF-8).
    pub fn lines_with_exact_names(&self) -> usize {
        self.journal
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line.get("path_b64").is_some())
            .count()
    }

    fn fail(&mut self, reason: impl Into<String>) {
        if self.reason.is_none() {
            self.reason = Some(reason.into());
        }
        self.pass = false;
    }
}

/// Runs the whole scenario. Never panics on a sidecar misbehaving: that is a failed outcome.
pub fn run(opts: &Options) -> Outcome {
    let mut outcome = Outcome {
        expect_backend: opts.expect_backend.clone(),
        pass: true,
        ..Outcome::default()
    };
    let result = in_fresh_dirs(opts, |dirs| {
        outcome.state_dir = dirs.state.clone();
        run_in(opts, dirs, &mut outcome);
        outcome.journal = fs::read_to_string(&dirs.journal).unwrap_or_default();
    });
    if let Err(e) = result {
        outcome.fail(e);
    }
    outcome
}

fn run_in(opts: &Options, dirs: &Dirs, outcome: &mut Outcome) {
    let mut sidecar = match spawn_sidecar(opts, dirs) {
        Ok(s) => s,
        Err(e) => return outcome.fail(e),
    };
    let ready = sidecar.wait_ready(opts.ready_timeout);
    outcome.backend = ready.as_ref().ok().cloned();
    let expected = match ready {
        Err(e) => {
            outcome.fail(e);
            None
        }
        Ok(backend) if backend != opts.expect_backend => {
            outcome.fail(format!(
                "the sidecar is ready with backend {backend}, expected {}",
                opts.expect_backend
            ));
            None
        }
        Ok(backend) => match if opts.ops {
            perform_ops(&dirs.state, &dirs.outside, &backend)
        } else {
            perform(&dirs.state, &dirs.outside, &backend)
        } {
            Ok(expected) => Some(expected),
            Err(e) => {
                outcome.fail(format!("the scenario itself failed: {e}"));
                None
            }
        },
    };
    if let Some(expected) = &expected {
        wait_for_quiet_journal(&dirs.journal, expected.len());
    }
    let (status, stop) = sidecar.terminate();
    outcome.stop_ms = stop.map(|d| d.as_millis());
    outcome.exit_code = status.as_ref().and_then(ExitStatus::code);
    outcome.log = sidecar.log();
    match status {
        None => outcome.fail("the sidecar did not exit within 10 s of SIGTERM (killed)"),
        Some(s) if !s.success() => {
            outcome.fail(format!("the sidecar exited with {s} after SIGTERM"))
        }
        Some(_) => {}
    }
    let Some(expected) = expected else { return };
    let journal = fs::read_to_string(&dirs.journal).unwrap_or_default();
    outcome.expected = expected.len();
    outcome.events = journal.lines().count();
    match normalise_journal(&journal) {
        Err(e) => outcome.fail(e),
        Ok(actual) => {
            let expected: Vec<String> = expected.iter().map(Value::to_string).collect();
            outcome.diff = diff(&expected, &actual);
            if !outcome.diff.is_empty() {
                outcome.fail(format!(
                    "the journal differs from the expected {} lines ({} differences)",
                    expected.len(),
                    outcome.diff.len()
                ));
            }
        }
    }
}

/// `<workdir>/diffkeeper-scenario-<pid>-<n>/{state,outside,journal.jsonl}`.
struct Dirs {
    root: PathBuf,
    state: PathBuf,
    outside: PathBuf,
    journal: PathBuf,
}

impl Dirs {
    fn create(workdir: Option<&Path>) -> Result<Self, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = workdir.map_or_else(std::env::temp_dir, Path::to_owned);
        let name = format!(
            "diffkeeper-scenario-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let root = base.join(name);
        let _ = fs::remove_dir_all(&root);
        for dir in [&root, &root.join("state"), &root.join("outside")] {
            fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        }
        // The sidecar reports canonical paths ($TMPDIR may be a symlink).
        let root = root
            .canonicalize()
            .map_err(|e| format!("canonicalize {}: {e}", root.display()))?;
        Ok(Self {
            state: root.join("state"),
            outside: root.join("outside"),
            journal: root.join("journal.jsonl"),
            root,
        })
    }
}

fn spawn_sidecar(opts: &Options, dirs: &Dirs) -> Result<SidecarProcess, String> {
    let mut cmd = Command::new(&opts.sidecar);
    cmd.arg("--state-dir")
        .arg(&dirs.state)
        .args(["--coalesce-ms", "0", "--journal"])
        .arg(&dirs.journal)
        .args(&opts.sidecar_args)
        .stdout(Stdio::null());
    if opts.hide_system_btf {
        crate::mountns::hide_system_btf(&mut cmd);
    }
    SidecarProcess::spawn(&mut cmd)
        .map_err(|e| format!("cannot run {}: {e}", opts.sidecar.display()))
}

/// Once the changes are made: wait until the journal has at least `expected` lines and has
/// stopped growing (a missing event costs the full wait, 5 s).
fn wait_for_quiet_journal(journal: &Path, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = (usize::MAX, Instant::now());
    while Instant::now() < deadline {
        let lines = fs::read_to_string(journal).map_or(0, |j| j.lines().count());
        if lines != last.0 {
            last = (lines, Instant::now());
        } else if lines >= expected && last.1.elapsed() >= Duration::from_millis(300) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_table() {
        assert!(covers("inotify", "rmdir") && covers("tracepoint", "pwritev"));
        assert!(covers("tracepoint", "rmdir") && !covers("nope", "write"));
        assert!(covers("tracepoint", "absolute-link") && covers("tracepoint", "chown"));
        assert!(covers("kprobe", "chmod") && covers("inotify", "chown"));
        assert!(!covers("inotify", "tmpfile-content") && covers("tracepoint", "tmpfile-content"));
        assert_eq!(journal_op("dotdot-link"), "create");
        assert_eq!(journal_op("pwritev"), "write");
        assert_eq!(journal_op("rmdir"), "rmdir");
        assert_eq!(journal_op("chown"), "attrib");
    }
}
