//! The sidecar's start-up checks on the paths it is given, from the outside: a state
//! directory that is missing or given twice, and a journal that would land inside a watched
//! directory (directly, through links, dangling or chained, or through a bind mount). Real
//! eBPF on this kernel where a case needs it; needs root.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use diffkeeper_tests::scratch::Scratch;

mod sidecar_common;
use sidecar_common::{path, serial, sidecar, spawn, READY_TIMEOUT};

#[test]
fn a_missing_state_dir_is_named_and_exits_1() {
    let scratch = Scratch::new("sidecar-missing");
    let missing = scratch.path().join("not-there");
    let out = sidecar(&[
        "--state-dir",
        path(scratch.path()),
        "--state-dir",
        path(&missing),
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "state directory {} cannot be used",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--state-dir"), "{stderr}");
}

/// One directory given as several state dirs (the same path again, a path through a link, a
/// bind mount of it) is watched once, eBPF stays on, and a write is journaled once.
#[test]
fn a_state_dir_given_twice_is_watched_once_with_ebpf() {
    let _serial = serial();
    let scratch = Scratch::new("sidecar-state-twice");
    let state = scratch.dir("state");
    let journal = scratch.path().join("journal.jsonl");
    std::os::unix::fs::symlink(&state, scratch.path().join("link")).unwrap();
    let alias = scratch.dir("alias");
    let given = [
        state.clone(),
        scratch.path().join("link"),
        scratch.path().join("state/../state/"),
        alias.clone(),
    ];
    let mut cmd = sidecar(&["--journal", path(&journal), "--coalesce-ms", "0"]);
    for dir in &given {
        cmd.arg("--state-dir").arg(dir);
    }
    diffkeeper_tests::mountns::bind_mount(&mut cmd, &state, &alias);
    let mut sidecar = spawn(&mut cmd);
    let backend = sidecar
        .wait_ready(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.log()));
    assert_eq!(backend, "tracepoint", "{}", sidecar.log());
    let file = state.join("once.txt");
    std::fs::write(&file, b"x").unwrap();
    let want = format!("\"op\":\"write\",\"path\":\"{}\"", file.display());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&journal).unwrap().contains(&want) {
        assert!(Instant::now() < deadline, "no journal line with {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Time for a second line, had the directory been watched twice.
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = sidecar.terminate();
    let log = sidecar.log();
    assert!(status.is_some_and(|s| s.success()), "{log}");
    let text = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(text.matches(&want).count(), 1, "{text}");
    for dir in &given[1..] {
        let line = format!(
            "--state-dir {} is the same directory as --state-dir {} ({}): watched once",
            dir.display(),
            state.display(),
            state.display()
        );
        assert!(log.contains(&line), "{line:?} missing:\n{log}");
    }
}

#[test]
fn a_journal_inside_a_state_dir_is_refused_with_exit_2() {
    let _serial = serial();
    let scratch = Scratch::new("sidecar-journal-inside");
    let state = scratch.dir("state");
    // Through a symlink from outside, too: what counts is where the lines would land.
    std::os::unix::fs::symlink(&state, scratch.path().join("link")).unwrap();
    for journal in [
        state.join("journal.jsonl"),
        scratch.path().join("link/journal.jsonl"),
    ] {
        let mut cmd = sidecar(&[
            "--state-dir",
            path(&state),
            "--journal",
            path(&journal),
            "--attach",
            "tracepoint",
        ]);
        expect_refused(&mut cmd, &journal, &state, &state.join("journal.jsonl"));
    }
}

/// The journal named through a link that does not lead anywhere yet (open would create its
/// target), a chain of relative links, or a bind mount of the state directory: each lands
/// inside it. inotify is enough to show the loop.
#[test]
fn a_journal_reached_through_dangling_links_or_a_bind_mount_is_refused() {
    let scratch = Scratch::new("sidecar-journal-links");
    let state = scratch.dir("state");
    let outside = scratch.dir("outside");
    let landing = state.join("journal.jsonl");
    let link = |target: &str, name: &str| {
        let at = outside.join(name);
        std::os::unix::fs::symlink(target, &at).unwrap();
        at
    };
    let absolute = link(path(&landing), "absolute");
    link("../state/journal.jsonl", "relative");
    let chain = link("relative", "chain");
    let alias = scratch.dir("alias");
    for (journal, bind) in [
        (absolute, false),
        (chain, false),
        (alias.join("j.jsonl"), true),
    ] {
        let mut cmd = sidecar(&[
            "--state-dir",
            path(&state),
            "--journal",
            path(&journal),
            "--enable-ebpf=false",
            "--coalesce-ms",
            "0",
        ]);
        let lands_at = if bind {
            diffkeeper_tests::mountns::bind_mount(&mut cmd, &state, &alias);
            state.join("j.jsonl")
        } else {
            landing.clone()
        };
        expect_refused(&mut cmd, &journal, &state, &lands_at);
    }
}

/// `cmd` must exit 2 naming `journal` and `state`, without creating `lands_at`; a sidecar that
/// starts instead is shown feeding on its own lines.
fn expect_refused(cmd: &mut Command, journal: &Path, state: &Path, lands_at: &Path) {
    let mut sidecar = spawn(cmd);
    // Without the check it starts, and one write feeds the journal its own lines forever.
    if sidecar.wait_ready(Duration::from_secs(5)).is_ok() {
        std::fs::write(state.join("one-write"), b"x").unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let lines = std::fs::read_to_string(lands_at).unwrap_or_default();
        sidecar.terminate();
        panic!(
            "the sidecar ran with its journal {} inside {}; 2 s after one write it holds {} lines",
            journal.display(),
            state.display(),
            lines.lines().count()
        );
    }
    let status = sidecar.wait_exit(Duration::from_secs(5));
    let log = sidecar.log();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "the journal {} (--journal) is inside the watched state directory {}",
            journal.display(),
            state.display()
        )) && log.contains("put the journal outside every state directory"),
        "{log}"
    );
    assert!(!lands_at.exists(), "the refused journal was created");
}
