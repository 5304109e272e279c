//! `diffkeeper-scenario --races`: two races between a syscall and the name the journal gives it,
//! under one sidecar.
//!
//! * **dup2**: one thread `write()`s tens of MiB to `dup2/secret-N` through fd K; once the file
//!   grows, the main thread points K at a decoy (`dup2/decoy`, then `/dev/null`). The kernel
//!   wrote to the secret: its write lines must add up to the bytes written, and the decoy must
//!   have none. A backend that resolves the fd after the call names the decoy (or nothing).
//! * **flip**: thousands of `symlinkat()` calls in `flip/` while another thread changes the
//!   first byte of the name buffer every millisecond. No journaled name may be one the kernel
//!   did not create, and each created name is journaled or stands as a line on `flip/` flagged
//!   `truncated` (the name changed in memory during the call: a backend that reads names from
//!   user memory cannot tell which one the kernel used).
//!
//! Prints `RACES {...}`; a round where the write finished before the dup2 is retried with a
//! bigger write, and reported (`dup2_raced` counts the rounds that did race).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::libc;
use serde_json::{json, Value};

use super::session::{in_fresh_dirs, mark_end, with_ready_sidecar};
use super::{Dirs, Options};

/// The last change made: once its line is in the journal, so is everything before it.
const MARKER: &str = "zz-end-of-races";
/// The write sizes tried per dup2 round, until the dup2 lands while the write is under way.
const WRITE_MIB: [usize; 3] = [32, 64, 128];
/// The `symlinkat()` calls of the flip race.
const FLIP_CALLS: u32 = 5000;

/// What the race run found.
#[derive(Debug, Default)]
pub struct RacesOutcome {
    pub backend: Option<String>,
    pub pass: bool,
    pub reason: Option<String>,
    pub dup2_rounds: usize,
    /// Rounds whose dup2 happened while the write was still running.
    pub dup2_raced: usize,
    /// `secret-N: journaled X of Y bytes`, `decoy: N write lines`.
    pub dup2_wrong: Vec<String>,
    pub flip_made: usize,
    pub flip_journaled: usize,
    pub flip_flagged: usize,
    pub flip_never_made: Vec<String>,
    pub flip_missing: usize,
    /// How often the flipper changed the name's first byte.
    pub flips: u64,
    pub lines: usize,
    pub gaps: usize,
    pub log: String,
}

impl RacesOutcome {
    fn fail(&mut self, reason: impl Into<String>) {
        if self.reason.is_none() {
            self.reason = Some(reason.into());
        }
        self.pass = false;
    }

    /// `RACES {...}`: the machine-readable summary.
    pub fn summary_line(&self) -> String {
        let summary = json!({
            "observed_backend": self.backend,
            "result": if self.pass { "pass" } else { "fail" },
            "reason": self.reason,
            "dup2_rounds": self.dup2_rounds,
            "dup2_raced": self.dup2_raced,
            "dup2_wrong": self.dup2_wrong,
            "flip_calls": FLIP_CALLS,
            "flip_made": self.flip_made,
            "flip_journaled": self.flip_journaled,
            "flip_flagged": self.flip_flagged,
            "flip_never_made": self.flip_never_made.len(),
            "flip_missing": self.flip_missing,
            "flips": self.flips,
            "lines": self.lines,
            "gaps": self.gaps,
        });
        format!("RACES {summary}")
    }
}

/// Runs both races under one sidecar started with `opts`.
pub fn run(opts: &Options) -> RacesOutcome {
    let mut outcome = RacesOutcome {
        pass: true,
        ..RacesOutcome::default()
    };
    if let Err(e) = in_fresh_dirs(opts, |dirs| run_in(opts, dirs, &mut outcome)) {
        outcome.fail(e);
    }
    outcome
}

fn run_in(opts: &Options, dirs: &Dirs, outcome: &mut RacesOutcome) {
    let (dup2_dir, flip_dir) = (dirs.state.join("dup2"), dirs.state.join("flip"));
    for dir in [&dup2_dir, &flip_dir] {
        if let Err(e) = fs::create_dir(dir) {
            return outcome.fail(format!("mkdir {}: {e}", dir.display()));
        }
    }
    let run = with_ready_sidecar(opts, dirs, || race(dirs, &dup2_dir, &flip_dir, outcome));
    outcome.backend = run.backend;
    outcome.log = run.log;
    if let Some(problem) = run.stop_problem {
        outcome.fail(problem);
    }
    match run.made {
        Ok(written) => check(dirs, &dup2_dir, &flip_dir, &written, outcome),
        Err(e) => outcome.fail(e),
    }
}

/// Both races and the end marker; waits for the marker's line. Returns each secret's size.
fn race(
    dirs: &Dirs,
    dup2_dir: &Path,
    flip_dir: &Path,
    outcome: &mut RacesOutcome,
) -> Result<Vec<(PathBuf, u64)>, String> {
    let mut written = Vec::new();
    let decoys = [dup2_dir.join("decoy"), PathBuf::from("/dev/null")];
    for (round, decoy) in decoys.iter().enumerate() {
        outcome.dup2_rounds += 1;
        for (attempt, mib) in WRITE_MIB.iter().enumerate() {
            let secret = dup2_dir.join(format!("secret-{round}-{attempt}"));
            let (bytes, raced) = dup2_round(&secret, decoy, mib << 20)?;
            // The content is not needed (its lines are what is checked): bound the memory a
            // tmpfs in a small VM holds.
            fs::remove_file(&secret).map_err(|e| format!("rm {}: {e}", secret.display()))?;
            written.push((secret, bytes));
            if raced {
                outcome.dup2_raced += 1;
                break;
            }
        }
    }
    outcome.flips = flip_round(flip_dir)?;
    mark_end(dirs, MARKER)?;
    Ok(written)
}

/// One thread writes `size` bytes to `secret`; once the file grows, its fd is pointed at
/// `decoy`. Returns the bytes written and whether the dup2 came before the write returned.
fn dup2_round(secret: &Path, decoy: &Path, size: usize) -> Result<(u64, bool), String> {
    let io = |what: &str, path: &Path, e: std::io::Error| format!("{what} {}: {e}", path.display());
    let file = File::create_new(secret).map_err(|e| io("create", secret, e))?;
    let decoy_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(decoy)
        .map_err(|e| io("open", decoy, e))?;
    let fd = file.as_raw_fd();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        std::thread::spawn(move || {
            let big = vec![b's'; size];
            // SAFETY: a live buffer; fd stays open while `file` lives in this thread.
            let n = unsafe { libc::write(fd, big.as_ptr().cast(), big.len()) };
            done.store(true, Ordering::SeqCst);
            drop(file);
            n
        })
    };
    while !done.load(Ordering::SeqCst) && fs::metadata(secret).map_or(0, |m| m.len()) == 0 {
        std::hint::spin_loop();
    }
    // SAFETY: both descriptors are open; the writer's call holds its own file reference.
    let rc = unsafe { libc::dup2(decoy_file.as_raw_fd(), fd) };
    let raced = !done.load(Ordering::SeqCst);
    let dup2_error = (rc != fd).then(std::io::Error::last_os_error);
    let n = writer.join().map_err(|_| "the writer thread panicked")?;
    if let Some(e) = dup2_error {
        return Err(format!("dup2: {e}"));
    }
    if n < 0 {
        return Err(format!(
            "write {}: {}",
            secret.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok((n as u64, raced))
}

/// `FLIP_CALLS` symlinkat() calls in `dir` while another thread keeps changing the name's first
/// byte (through 58 letters, so a change is rarely undone within one call). Returns the flips.
fn flip_round(dir: &Path) -> Result<u64, String> {
    let dir_file = File::open(dir).map_err(|e| format!("open {}: {e}", dir.display()))?;
    // One buffer, shared on purpose with the flipping thread: a data race on user memory is
    // exactly what a racing program does (bytes are read and written whole, volatile).
    let name: &'static mut [u8; 8] = Box::leak(Box::new(*b"a00000\0\0"));
    let addr = name.as_mut_ptr() as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicU64::new(0));
    let flipper = {
        let (stop, flips) = (stop.clone(), flips.clone());
        std::thread::spawn(move || {
            let first = addr as *mut u8;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: the leaked buffer lives until the process ends.
                unsafe {
                    let now = first.read_volatile();
                    first.write_volatile(if now >= b'z' { b'A' } else { now + 1 })
                };
                flips.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let target = c"t";
    for i in 0..FLIP_CALLS {
        let digits = format!("{i:05}");
        // SAFETY: as above; only the digits are written here, the flipper owns byte 0.
        unsafe {
            for (k, d) in digits.bytes().enumerate() {
                (addr as *mut u8).add(1 + k).write_volatile(d);
            }
            libc::symlinkat(target.as_ptr(), dir_file.as_raw_fd(), addr as *const _);
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().map_err(|_| "the flipping thread panicked")?;
    Ok(flips.load(Ordering::Relaxed))
}

/// One journal line's fields the checks need.
struct Line {
    op: String,
    path: String,
    bytes: u64,
    truncated: bool,
}

fn parse(journal: &str) -> Vec<Line> {
    let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    journal
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Line {
            op: field(&v, "op"),
            path: field(&v, "path"),
            bytes: v.get("bytes").and_then(Value::as_u64).unwrap_or(0),
            truncated: v.get("truncated").and_then(Value::as_bool) == Some(true),
        })
        .collect()
}

fn check(
    dirs: &Dirs,
    dup2_dir: &Path,
    flip_dir: &Path,
    written: &[(PathBuf, u64)],
    outcome: &mut RacesOutcome,
) {
    let journal = fs::read_to_string(&dirs.journal).unwrap_or_default();
    let lines = parse(&journal);
    outcome.lines = lines.len();
    outcome.gaps = lines.iter().filter(|l| l.op == "gap").count();
    check_dup2(&lines, dup2_dir, written, outcome);
    check_flip(&lines, flip_dir, outcome);
    if outcome.dup2_raced < outcome.dup2_rounds {
        outcome.fail(format!(
            "only {} of {} dup2 rounds came while the write was running: nothing proven",
            outcome.dup2_raced, outcome.dup2_rounds
        ));
    }
}

/// Each secret's write lines add up to what was written; the decoy has none.
fn check_dup2(
    lines: &[Line],
    dup2_dir: &Path,
    written: &[(PathBuf, u64)],
    outcome: &mut RacesOutcome,
) {
    let writes = |path: String| {
        lines
            .iter()
            .filter(move |l| l.op == "write" && l.path == path)
    };
    for (secret, bytes) in written {
        let journaled: u64 = writes(secret.to_string_lossy().into_owned())
            .map(|l| l.bytes)
            .sum();
        if journaled != *bytes {
            let name = secret.file_name().unwrap_or_default().to_string_lossy();
            outcome
                .dup2_wrong
                .push(format!("{name}: journaled {journaled} of {bytes} bytes"));
        }
    }
    let decoy = dup2_dir.join("decoy");
    let decoy_writes = writes(decoy.to_string_lossy().into_owned()).count();
    if decoy_writes > 0 {
        outcome.dup2_wrong.push(format!(
            "decoy: {decoy_writes} write lines (nothing was written to it)"
        ));
    }
    if !outcome.dup2_wrong.is_empty() {
        let wrong = outcome.dup2_wrong.join("; ");
        outcome.fail(format!("dup2: the journal names the wrong file: {wrong}"));
    }
}

/// No journaled name that was never made; every made name journaled or covered by a flagged
/// line on the directory.
fn check_flip(lines: &[Line], flip_dir: &Path, outcome: &mut RacesOutcome) {
    let prefix = format!("{}/", flip_dir.display());
    let creates = lines
        .iter()
        .filter(|l| l.op == "create" && l.path.starts_with(&prefix));
    let journaled: BTreeSet<&str> = creates
        .clone()
        .filter(|l| !l.truncated)
        .map(|l| l.path.as_str())
        .collect();
    let flagged: Vec<&str> = creates
        .filter(|l| l.truncated)
        .map(|l| l.path.as_str())
        .collect();
    let on_disk: BTreeSet<String> = fs::read_dir(flip_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    outcome.flip_made = on_disk.len();
    outcome.flip_journaled = journaled.len();
    outcome.flip_flagged = flagged.len();
    outcome.flip_never_made = journaled
        .iter()
        .filter(|p| !on_disk.contains(**p))
        .map(|p| p.to_string())
        .collect();
    outcome.flip_missing = on_disk
        .iter()
        .filter(|p| !journaled.contains(p.as_str()))
        .count();
    if let Some(first) = outcome.flip_never_made.first() {
        outcome.fail(format!(
            "flip: {} journaled names were never created (the first: {first})",
            outcome.flip_never_made.len()
        ));
    } else if outcome.flip_missing != outcome.flip_flagged {
        outcome.fail(format!(
            "flip: {} created names are not journaled, against {} lines flagged `truncated`",
            outcome.flip_missing, outcome.flip_flagged
        ));
    } else if let Some(odd) = flagged.iter().find(|p| **p != prefix) {
        outcome.fail(format!(
            "flip: a flagged line on {odd}, not on the directory {prefix}"
        ));
    } else if outcome.flip_made < FLIP_CALLS as usize * 4 / 5 {
        outcome.fail(format!(
            "flip: only {} of {FLIP_CALLS} symlinks made",
            outcome.flip_made
        ));
    }
}
