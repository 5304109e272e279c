//! The inotify backend from the outside (real inotify, the real sidecar binary): symlinks are
//! never followed out of a state dir, a directory re-created under the same name is journaled
//! again, and a journal nobody reads neither holds the exit nor grows memory.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diffkeeper_tests::http::{http_get, metric_sample};
use diffkeeper_tests::scratch::Scratch;
use diffkeeper_tests::sidecar::SidecarProcess;

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An inotify sidecar on `state`, journal to `journal`, no coalescing.
fn start(state: &Path, journal: &Path) -> SidecarProcess {
    start_coalescing(state, journal, 0)
}

fn start_coalescing(state: &Path, journal: &Path, coalesce_ms: u32) -> SidecarProcess {
    let mut cmd = Command::new(SIDECAR);
    cmd.arg("--enable-ebpf=false")
        .arg(format!("--coalesce-ms={coalesce_ms}"))
        .args(["--state-dir", path(state), "--journal", path(journal)])
        .stdout(Stdio::null());
    let mut sidecar = SidecarProcess::spawn(&mut cmd).expect("run diffkeeper-sidecar");
    assert_eq!(sidecar.wait_ready(READY_TIMEOUT).unwrap(), "inotify");
    sidecar
}

/// Creates `<state>/done` and waits until the journal has its create line: inotify reports the
/// events of one watcher in order, so everything done before is journaled by then. Returns the
/// journal as `op path` / `rename from -> path` lines, paths relative to `state`.
fn journal_until_done(sidecar: &SidecarProcess, state: &Path, journal: &Path) -> Vec<String> {
    File::create(state.join("done")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = read_journal(state, journal);
        if lines.iter().any(|l| l == "create done") {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no `create done` in the journal within 10 s: {lines:#?}\n{}",
            sidecar.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_journal(state: &Path, journal: &Path) -> Vec<String> {
    let state = format!("{}/", state.canonicalize().unwrap().display());
    // A gap line (the kernel queue overflowed on a loaded machine) has no path.
    let rel = |v: &serde_json::Value| -> String {
        let p = v.as_str().unwrap_or_default();
        p.strip_prefix(&state).unwrap_or(p).to_string()
    };
    fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| match v.get("from") {
            Some(from) => format!(
                "{} {} -> {}",
                v["op"].as_str().unwrap(),
                rel(from),
                rel(&v["path"])
            ),
            None => format!("{} {}", v["op"].as_str().unwrap(), rel(&v["path"])),
        })
        .collect()
}

#[test]
fn inotify_never_follows_a_symlink_out_of_the_state_dir() {
    let scratch = Scratch::new("inotify-symlink");
    let (state, journal) = (scratch.dir("state"), scratch.path().join("journal.jsonl"));
    let (before, after) = (scratch.dir("outside-a"), scratch.dir("outside-b"));
    fs::write(after.join("already-there"), b"x").unwrap();
    // One link exists when the sidecar starts (the initial recursive walk), one is made later.
    std::os::unix::fs::symlink(&before, state.join("link-at-start")).unwrap();
    let mut sidecar = start(&state, &journal);
    std::os::unix::fs::symlink(&after, state.join("link")).unwrap();
    for dir in [&before, &after] {
        fs::write(dir.join("x"), b"written outside").unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/y"), b"y").unwrap();
    }
    let lines = journal_until_done(&sidecar, &state, &journal);
    assert_eq!(lines, ["create link", "create done"], "{}", sidecar.log());
    let (status, _) = sidecar.terminate();
    assert!(status.is_some_and(|s| s.success()), "{}", sidecar.log());
}

#[test]
fn a_directory_recreated_under_the_same_name_is_journaled_again() {
    let scratch = Scratch::new("inotify-recreate");
    let (state, journal) = (scratch.dir("state"), scratch.path().join("journal.jsonl"));
    let mut sidecar = start(&state, &journal);
    // mkdir tmp; touch tmp/f; mv tmp v1; mkdir tmp; touch tmp/f -- all within a fraction of a
    // second. Each step waits for its line first: a directory created and renamed before
    // inotify watches it is a different (inotify) limit, not the one this test is about.
    let steps: [(&dyn Fn(), &str); 4] = [
        (&|| fs::create_dir(state.join("tmp")).unwrap(), "mkdir tmp"),
        (
            &|| drop(File::create(state.join("tmp/f")).unwrap()),
            "create tmp/f",
        ),
        (
            &|| fs::rename(state.join("tmp"), state.join("v1")).unwrap(),
            "rename tmp -> v1",
        ),
        (&|| fs::create_dir(state.join("tmp")).unwrap(), "mkdir tmp"),
    ];
    let started = Instant::now();
    for (n, (step, line)) in steps.iter().enumerate() {
        step();
        wait_for_lines(&sidecar, &state, &journal, n + 1, line);
    }
    File::create(state.join("tmp/f")).unwrap();
    let lines: Vec<String> = journal_until_done(&sidecar, &state, &journal)
        .into_iter()
        .filter(|l| !l.starts_with("write "))
        .collect();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        lines,
        [
            "mkdir tmp",
            "create tmp/f",
            "rename tmp -> v1",
            "mkdir tmp",
            "create tmp/f",
            "create done"
        ],
        "{}",
        sidecar.log()
    );
    let (status, _) = sidecar.terminate();
    assert!(status.is_some_and(|s| s.success()), "{}", sidecar.log());
}

#[test]
fn a_held_write_comes_out_before_the_rename_or_delete_of_its_directory() {
    let scratch = Scratch::new("inotify-coalesce-dir");
    let (state, journal) = (scratch.dir("state"), scratch.path().join("journal.jsonl"));
    // A window long enough that only the rename/delete can release the write in time.
    let mut sidecar = start_coalescing(&state, &journal, 2000);
    fs::create_dir_all(state.join("d/sub")).unwrap();
    wait_for_lines(&sidecar, &state, &journal, 2, "mkdir d/sub");
    fs::write(state.join("d/f"), b"held").unwrap();
    fs::write(state.join("d/sub/g"), b"held too").unwrap();
    fs::rename(state.join("d"), state.join("e")).unwrap();
    // A held write to a file that is then deleted: the exact path releases it.
    fs::write(state.join("x"), b"held").unwrap();
    fs::remove_file(state.join("x")).unwrap();
    journal_until_done(&sidecar, &state, &journal);
    let (status, _) = sidecar.terminate();
    assert!(status.is_some_and(|s| s.success()), "{}", sidecar.log());
    // Everything, including what was still held at SIGTERM.
    let lines: Vec<String> = read_journal(&state, &journal)
        .into_iter()
        .filter(|l| l.starts_with("write ") || l.starts_with("rename ") || l.starts_with("delete "))
        .collect();
    assert_eq!(
        lines,
        [
            "write d/f",
            "write d/sub/g",
            "rename d -> e",
            "write x",
            "delete x",
        ],
        "{}",
        sidecar.log()
    );
}

/// Waits until the journal has `count` lines (writes aside), the last one `last`.
fn wait_for_lines(
    sidecar: &SidecarProcess,
    state: &Path,
    journal: &Path,
    count: usize,
    last: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = read_journal(state, journal)
            .into_iter()
            .filter(|l| !l.starts_with("write "))
            .collect();
        if lines.len() >= count {
            assert_eq!(lines[count - 1], last, "{lines:#?}\n{}", sidecar.log());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {last:?} in the journal within 10 s: {lines:#?}\n{}",
            sidecar.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"))
}

/// `count` new files with long names (so that whatever is queued per change weighs).
fn create_files(dir: &Path, round: usize, count: usize) {
    let pad = "p".repeat(180);
    for i in 0..count {
        File::create(dir.join(format!("{round}-{i:05}-{pad}"))).unwrap();
    }
}

/// A journal nobody reads: the reader waits for it, and the kernel's inotify queue holds what
/// comes meanwhile (past its size the kernel drops events and says so: an overflow gap), so the
/// sidecar's memory stays flat however many changes are made; SIGTERM still ends it in time,
/// counting what the journal never took.
#[test]
fn a_journal_nobody_reads_bounds_memory_counts_drops_and_cannot_hold_the_exit() {
    let scratch = Scratch::new("inotify-stalled");
    let state = scratch.dir("state");
    // stdout is a pipe that is held open but never read: once its 64 KiB are full, every
    // journal write blocks, as behind a stuck log shipper.
    // Close-on-exec, so no other test's child holds either end.
    let (_reader, writer) = std::io::pipe().unwrap();
    let mut cmd = Command::new(SIDECAR);
    cmd.args(["--enable-ebpf=false", "--coalesce-ms", "0"])
        .args(["--state-dir", path(&state), "--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::from(writer));
    let mut sidecar = SidecarProcess::spawn(&mut cmd).expect("run diffkeeper-sidecar");
    let addr = sidecar.metrics_addr(READY_TIMEOUT).unwrap();
    assert_eq!(sidecar.wait_ready(READY_TIMEOUT).unwrap(), "inotify");
    let metric = |addr, name| {
        let (_, metrics) = http_get(addr, "/metrics").unwrap();
        metric_sample(&metrics, name).unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
    };

    // Far more than the pipe and the journal queue hold together (and, with the second round,
    // than the kernel's default queue of 16,384 events).
    const CREATES: usize = 12_000;
    create_files(&state, 1, CREATES);
    // The journal's queue fills (the reader then waits on it).
    std::thread::sleep(Duration::from_secs(2));
    let peak_full = peak_rss_kib(sidecar.pid());
    create_files(&state, 2, CREATES);
    std::thread::sleep(Duration::from_secs(2));
    let peak_after = peak_rss_kib(sidecar.pid());
    assert!(
        peak_after <= peak_full + 2048,
        "memory grew by {} KiB while the journal was stalled ({peak_full} -> {peak_after} KiB)",
        peak_after - peak_full
    );
    assert!(peak_after < 64 * 1024, "peak RSS {peak_after} KiB");
    assert_eq!(
        metric(addr, "diffkeeper_inotify_dropped_events_total"),
        0,
        "nothing is dropped by the sidecar while it runs: the kernel holds it"
    );

    let (status, took) = sidecar.terminate();
    let log = sidecar.log();
    // The README's bound: 0.2 s for the backend to hand over, 0.8 s for the journal.
    assert!(
        took.is_some_and(|t| t < Duration::from_millis(1500)),
        "exit took {took:?}: {log}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(log.contains("did not take the last changes"), "{log}");
    assert!(log.contains("inotify: stopping: dropped"), "{log}");
}

/// 4,000 new directories with a file each, made as fast as possible: each is watched when its
/// event is read, and the sidecar must not lose the files made before its watch existed.
/// Replaying the journal gives the real tree, and the log never blames the journal's output (a
/// local file here).
#[test]
fn a_storm_of_new_directories_journals_every_file() {
    use diffkeeper_tests::replay::{replay, Tree};
    let scratch = Scratch::new("inotify-dir-storm");
    let (state, journal) = (scratch.dir("state"), scratch.path().join("journal.jsonl"));
    let mut sidecar = start(&state, &journal);
    for i in 0..4000 {
        let dir = state.join(format!("d{i:04}"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("f"), "x").unwrap();
    }
    journal_until_done(&sidecar, &state, &journal);
    sidecar.terminate();
    let text = fs::read_to_string(&journal).unwrap();
    let replayed = replay(Tree::default(), &state, &text);
    let real = Tree::scan(&state);
    let log = sidecar.log();
    assert_eq!(
        real.0.len(),
        8001,
        "4,000 directories, 4,000 files and done"
    );
    assert_eq!(
        replayed.tree.differences(&real),
        "",
        "{}\n{log}",
        replayed.summary()
    );
    assert!(replayed.anomalies.is_empty(), "{}", replayed.summary());
    assert!(!log.contains("stalled stdout"), "{log}");
    eprintln!("directory storm: {}", replayed.summary());
}
