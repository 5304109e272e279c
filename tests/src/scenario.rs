//! The journal scenario: run a diffkeeper-sidecar binary on a fresh watched directory, make a
//! scripted series of changes (and some outside the directory), stop the sidecar with SIGTERM
//! and compare its journal line by line with what the backend should have seen.
//!
//! Used by the sidecar's integration tests (as a library) and, as the static
//! `diffkeeper-scenario` binary, inside minimal VMs: nothing here reads the source tree.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// The name of the thread that makes the changes: the `comm` eBPF backends must report.
pub const WRITER_COMM: &str = "dk-scenario";
/// The stderr line the sidecar logs once it watches (contract line).
use diffkeeper_cli::ready::READY_PREFIX as READY_MARKER;

/// Whether `backend` reports the scenario step `step`. Steps are finer than journal ops so a
/// backend can see e.g. `write(2)` but not `pwritev(2)`:
/// `mkdir`, `create` (open with O_CREAT), `write`, `pwrite`, `writev`, `pwritev`, `rename`,
/// `delete` (unlink), `rmdir`.
pub fn covers(backend: &str, step: &str) -> bool {
    match backend {
        "inotify" => true,
        "tracepoint" => matches!(step, "create" | "write" | "pwrite" | "writev" | "pwritev"),
        "kprobe" | "fentry" => matches!(
            step,
            "write" | "pwrite" | "writev" | "pwritev" | "create" | "rename" | "delete"
        ),
        _ => false,
    }
}

/// The journal `op` a step produces.
fn journal_op(step: &str) -> &'static str {
    match step {
        "mkdir" | "create" => "create",
        "rename" => "rename",
        "delete" | "rmdir" => "delete",
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
        });
        format!("SCENARIO {summary}")
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
    let dirs = match Dirs::create(opts.workdir.as_deref()) {
        Ok(dirs) => dirs,
        Err(e) => {
            outcome.fail(e);
            return outcome;
        }
    };
    outcome.state_dir = dirs.state.clone();
    run_in(opts, &dirs, &mut outcome);
    outcome.journal = fs::read_to_string(&dirs.journal).unwrap_or_default();
    if opts.keep {
        eprintln!("scenario: kept {}", dirs.root.display());
    } else {
        let _ = fs::remove_dir_all(&dirs.root);
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
        Ok(backend) => match perform(&dirs.state, &dirs.outside, &backend) {
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

/// A running sidecar whose stderr is collected (and scanned for lines) on a thread.
pub struct SidecarProcess {
    child: Child,
    log: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

impl SidecarProcess {
    /// Spawns `cmd` with stdin closed and stderr captured (stdout is left as configured).
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        let mut child = cmd.stdin(Stdio::null()).stderr(Stdio::piped()).spawn()?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        Ok(Self { child, log, lines })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next log line containing `needle`, or why none came: timeout or exit.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!(
                        "the sidecar ended ({status}) without logging {needle:?}"
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the sidecar did not log {needle:?} within {} s",
                        timeout.as_secs()
                    ))
                }
            }
        }
    }

    /// Waits for the ready line and returns the backend it names.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<String, String> {
        let line = self.wait_for(READY_MARKER, timeout)?;
        let rest = line.split_once(READY_MARKER).map_or("", |(_, rest)| rest);
        Ok(rest.split_whitespace().next().unwrap_or("").to_string())
    }

    /// SIGTERM, then the exit status and how long the exit took; killed after 10 s (`None`).
    pub fn terminate(&mut self) -> (Option<ExitStatus>, Option<Duration>) {
        if let Ok(Some(status)) = self.child.try_wait() {
            return (Some(status), None);
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (Some(status), Some(start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        (None, None)
    }

    /// Waits for the exit (no signal), up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Everything logged so far (after an exit: everything).
    pub fn log(&self) -> String {
        // Give the reader thread a moment to take the last lines after an exit.
        std::thread::sleep(Duration::from_millis(50));
        self.log.lock().unwrap().clone()
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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

/// A plain HTTP/1.1 GET (for the sidecar's /metrics and /healthz): status code and body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let bad = || std::io::Error::other(format!("not an HTTP response: {response:?}"));
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_string()))
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

/// The journal without `ts` (checked for format, then dropped), one canonical JSON per line.
fn normalise_journal(journal: &str) -> Result<Vec<String>, String> {
    journal
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut value: Map<String, Value> = serde_json::from_str(line).map_err(|e| {
                format!("journal line {} is not a JSON object ({e}): {line}", i + 1)
            })?;
            let ts = value.remove("ts");
            match ts.as_ref().and_then(Value::as_str) {
                Some(ts) if is_rfc3339_nanos_utc(ts) => Ok(Value::Object(value).to_string()),
                _ => Err(format!(
                    "journal line {} has no RFC 3339 UTC `ts` with nanoseconds: {line}",
                    i + 1
                )),
            }
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
fn is_rfc3339_nanos_utc(ts: &str) -> bool {
    let pattern = b"dddd-dd-ddTdd:dd:dd.dddddddddZ";
    ts.len() == pattern.len()
        && ts.bytes().zip(pattern.iter()).all(|(c, p)| {
            if *p == b'd' {
                c.is_ascii_digit()
            } else {
                c == *p
            }
        })
}

/// A minimal line diff (longest common subsequence): `-` expected but missing, `+` unexpected.
fn diff(expected: &[String], actual: &[String]) -> Vec<String> {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            (i, j) = (i + 1, j + 1);
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+{}", actual[j]));
            j += 1;
        } else {
            out.push(format!("-{}", expected[i]));
            i += 1;
        }
    }
    out
}

/// Makes the changes on a thread named [`WRITER_COMM`] and returns the expected journal lines
/// (without `ts`) for `backend`.
fn perform(state: &Path, outside: &Path, backend: &str) -> Result<Vec<Value>, String> {
    let (state, outside, backend) = (state.to_owned(), outside.to_owned(), backend.to_owned());
    std::thread::Builder::new()
        .name(WRITER_COMM.into())
        .spawn(move || {
            let mut script = Script {
                root: state,
                backend,
                expected: Vec::new(),
            };
            script.inside().map_err(|e| e.to_string())?;
            Script::outside(&outside).map_err(|e| format!("outside the watched directory: {e}"))?;
            script.after_outside().map_err(|e| e.to_string())?;
            Ok(script.expected)
        })
        .map_err(|e| format!("cannot start the writer thread: {e}"))?
        .join()
        .map_err(|_| "the writer thread panicked".to_string())?
}

/// Pause after creating directories, so that inotify, which can only watch a directory once it
/// exists, has added its watches before files appear in them (eBPF needs no pause).
const NEW_DIRECTORY_PAUSE: Duration = Duration::from_millis(300);

struct Script {
    root: PathBuf,
    backend: String,
    expected: Vec<Value>,
}

type Io = std::io::Result<()>;

impl Script {
    fn inside(&mut self) -> Io {
        for dir in ["a", "a/b", "a/b/c"] {
            fs::create_dir(self.root.join(dir))?;
            self.expect("mkdir", dir, None, None);
        }
        std::thread::sleep(NEW_DIRECTORY_PAUSE);
        self.create("top.txt")?;
        self.write("top.txt", 100)?;
        self.create("a/b/c/deep.bin")?;
        self.write("a/b/c/deep.bin", 4096)?;
        self.pwrite("a/b/c/deep.bin", 10, 1000)?;
        self.create("a/mid.txt")?;
        self.writev("a/mid.txt", &[5, 6, 7])?;
        self.pwritev("a/mid.txt", &[3, 4], 2)
    }

    /// Changes outside the watched directory: none may reach the journal.
    fn outside(dir: &Path) -> Io {
        let file = dir.join("o.txt");
        fs::write(&file, [b'o'; 55])?;
        open_for_write(&file)?.write_all_at(&[b'p'; 9], 3)?;
        fs::rename(&file, dir.join("o2.txt"))?;
        fs::remove_file(dir.join("o2.txt"))
    }

    fn after_outside(&mut self) -> Io {
        for _ in 0..3 {
            self.write("top.txt", 1)?;
        }
        self.rename("top.txt", "a/b/renamed.txt")?;
        self.write("a/b/renamed.txt", 7)?;
        self.write("a/b/renamed.txt", 65_536)?;
        self.delete("a/mid.txt")?;
        self.delete("a/b/c/deep.bin")?;
        fs::remove_dir(self.root.join("a/b/c"))?;
        self.expect("rmdir", "a/b/c", None, None);
        Ok(())
    }

    fn create(&mut self, rel: &str) -> Io {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.root.join(rel))?;
        self.expect("create", rel, None, None);
        Ok(())
    }

    /// Every write opens its own descriptor: inotify merges identical consecutive events, and
    /// the open/close events in between keep one event per write.
    fn write(&mut self, rel: &str, len: usize) -> Io {
        let mut file = OpenOptions::new().append(true).open(self.root.join(rel))?;
        let written = file.write(&vec![b'w'; len])?;
        check_len(written, len)?;
        self.expect("write", rel, None, Some(len));
        Ok(())
    }

    fn pwrite(&mut self, rel: &str, len: usize, offset: u64) -> Io {
        let written = open_for_write(&self.root.join(rel))?.write_at(&vec![b'p'; len], offset)?;
        check_len(written, len)?;
        self.expect("pwrite", rel, None, Some(len));
        Ok(())
    }

    fn writev(&mut self, rel: &str, lens: &[usize]) -> Io {
        let bufs: Vec<Vec<u8>> = lens.iter().map(|&n| vec![b'v'; n]).collect();
        let slices: Vec<IoSlice> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let file = OpenOptions::new().append(true).open(self.root.join(rel))?;
        let written = nix::sys::uio::writev(&file, &slices)?;
        let total = lens.iter().sum();
        check_len(written, total)?;
        self.expect("writev", rel, None, Some(total));
        Ok(())
    }

    fn pwritev(&mut self, rel: &str, lens: &[usize], offset: i64) -> Io {
        let bufs: Vec<Vec<u8>> = lens.iter().map(|&n| vec![b'q'; n]).collect();
        let slices: Vec<IoSlice> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let file = open_for_write(&self.root.join(rel))?;
        let written = nix::sys::uio::pwritev(&file, &slices, offset)?;
        let total = lens.iter().sum();
        check_len(written, total)?;
        self.expect("pwritev", rel, None, Some(total));
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Io {
        fs::rename(self.root.join(from), self.root.join(to))?;
        self.expect("rename", to, Some(from), None);
        Ok(())
    }

    fn delete(&mut self, rel: &str) -> Io {
        fs::remove_file(self.root.join(rel))?;
        self.expect("delete", rel, None, None);
        Ok(())
    }

    /// Records the journal line `step` must produce, if the backend sees it.
    fn expect(&mut self, step: &str, rel: &str, from: Option<&str>, bytes: Option<usize>) {
        if !covers(&self.backend, step) {
            return;
        }
        let path = |rel: &str| self.root.join(rel).to_string_lossy().into_owned();
        let mut line = Map::new();
        line.insert("backend".into(), json!(self.backend));
        line.insert("op".into(), json!(journal_op(step)));
        line.insert("path".into(), json!(path(rel)));
        if let Some(from) = from {
            line.insert("from".into(), json!(path(from)));
        }
        if self.backend != "inotify" {
            line.insert("pid".into(), json!(std::process::id()));
            line.insert("comm".into(), json!(WRITER_COMM));
            if let Some(bytes) = bytes {
                line.insert("bytes".into(), json!(bytes));
            }
        }
        self.expected.push(Value::Object(line));
    }
}

fn open_for_write(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).open(path)
}

fn check_len(written: usize, wanted: usize) -> Io {
    if written == wanted {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "short write: {written} of {wanted} bytes"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_checked_strictly() {
        assert!(is_rfc3339_nanos_utc("2026-11-26T01:02:03.123456789Z"));
        for bad in [
            "2026-11-26T01:02:03Z",
            "2026-11-26T01:02:03.123456789+00:00",
            "2026-11-26 01:02:03.123456789Z",
            "2026-11-26T01:02:03.12345678xZ",
        ] {
            assert!(!is_rfc3339_nanos_utc(bad), "{bad}");
        }
    }

    #[test]
    fn diff_names_missing_and_unexpected_lines() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(diff(&s(&["a", "b"]), &s(&["a", "b"])).is_empty());
        assert_eq!(
            diff(&s(&["a", "b", "c"]), &s(&["a", "x", "c"])),
            ["+x", "-b"]
        );
        assert_eq!(diff(&s(&["a"]), &s(&[])), ["-a"]);
        assert_eq!(diff(&s(&[]), &s(&["z"])), ["+z"]);
    }

    #[test]
    fn journal_lines_lose_ts_and_must_have_it() {
        let ok = r#"{"ts":"2026-11-26T01:02:03.123456789Z","op":"write","path":"/p"}"#;
        assert_eq!(
            normalise_journal(ok).unwrap(),
            [r#"{"op":"write","path":"/p"}"#]
        );
        assert!(normalise_journal(r#"{"op":"write"}"#).is_err());
        assert!(normalise_journal("not json").is_err());
    }

    #[test]
    fn coverage_table() {
        assert!(covers("inotify", "rmdir") && covers("tracepoint", "pwritev"));
        assert!(!covers("tracepoint", "rmdir") && !covers("nope", "write"));
        assert_eq!(journal_op("pwritev"), "write");
        assert_eq!(journal_op("rmdir"), "delete");
    }
}
