//! The sidecar process with a BTF that fails the canary while the app keeps writing: nothing
//! the refused mode reported may reach the journal, then the fallback's lines follow. Real
//! eBPF on this kernel (root), system BTF hidden in a private mount namespace so that the
//! cached, edited BTF is used.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diffkeeper_tests::btf::{kernel_release, system_btf};
use diffkeeper_tests::btf_edit::shift_member;
use diffkeeper_tests::mountns::hide_system_btf;
use diffkeeper_tests::scratch::Scratch;
use diffkeeper_tests::sidecar::SidecarProcess;

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");

/// Writes a new file under `dir` every millisecond until `stop`; returns the paths written.
fn writer(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<BTreeSet<String>> {
    std::thread::spawn(move || {
        let mut written = BTreeSet::new();
        for i in 0.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let path = dir.join(format!("w-{i:05}"));
            std::fs::write(&path, b"app data").unwrap();
            written.insert(path.display().to_string());
            std::thread::sleep(Duration::from_millis(1));
        }
        written
    })
}

fn journal_lines(journal: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

#[test]
fn a_mode_that_fails_its_canary_journals_nothing_then_the_fallback_does() {
    let scratch = Scratch::new("canary-fallback");
    let (state, cache) = (scratch.dir("state"), scratch.dir("cache"));
    let journal = scratch.path().join("journal.jsonl");
    let mut edited = system_btf().to_vec();
    // Names come back as garbage (the programs read another pointer), while the parent walk
    // that decides "under a watched directory" still works: events flow, wrongly named.
    shift_member(&mut edited, "dentry", "d_name", 64).unwrap();
    std::fs::write(cache.join(format!("{}.btf", kernel_release())), &edited).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(state.clone(), stop.clone());
    let mut cmd = Command::new(SIDECAR);
    cmd.arg("--state-dir")
        .arg(&state)
        .arg("--journal")
        .arg(&journal)
        .arg("--btf-cache-dir")
        .arg(&cache)
        .args(["--attach", "tracepoint", "--coalesce-ms", "0"])
        .stdout(Stdio::null());
    hide_system_btf(&mut cmd);
    let mut sidecar = SidecarProcess::spawn(&mut cmd).unwrap();
    let backend = sidecar
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.log()));
    assert_eq!(backend, "inotify", "{}", sidecar.log());

    // The fallback journals the writer's files made from now on.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let written = writing.join().unwrap();
    let last = written.last().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !journal_lines(&journal).iter().any(|l| l["path"] == *last) {
        assert!(Instant::now() < deadline, "{last} never journaled");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = sidecar.terminate();
    let log = sidecar.log();
    assert!(status.is_some_and(|s| s.success()), "{log}");

    assert!(log.contains("tracepoint: canary check failed"), "{log}");
    let lines = journal_lines(&journal);
    let foreign: Vec<_> = lines
        .iter()
        .filter(|l| l["backend"] != "inotify" || !written.contains(l["path"].as_str().unwrap()))
        .collect();
    assert!(
        foreign.is_empty(),
        "{} of {} journal lines are not the fallback's lines about the writer's files: {:#?}",
        foreign.len(),
        lines.len(),
        &foreign[..foreign.len().min(5)]
    );
    // The writer ran through the canary's second: the refused mode saw its files.
    assert!(
        log.contains("changes tracepoint mode reported before its canary check were discarded"),
        "{log}"
    );
}
