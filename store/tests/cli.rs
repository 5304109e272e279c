//! The real `diffkeeper` binary against real stores.
#![allow(clippy::unwrap_used)] // helpers of tests, not #[test] functions

mod common;

use std::fs;
use std::process::Command;
use std::time::SystemTime;

use common::*;
use diffkeeper_store::{Meta, Store, StoreOptions};

const ROOT: &str = "/state";

/// A store with two versions of notes.txt around a mark, plus a binary and a deleted file.
fn store_with_history(dir: &std::path::Path) -> (u64, String) {
    let mut w = Store::create_or_open(dir, StoreOptions::default()).unwrap();
    let meta = Meta {
        mode: 0o644,
        mtime_ns: 1_000_000_000,
        ..Meta::default()
    };
    let now = SystemTime::now;
    w.put_file(now(), ROOT, b"notes.txt", &meta, &mut &b"one\ntwo\n"[..])
        .unwrap();
    w.put_file(now(), ROOT, b"gone", &meta, &mut &b"bye"[..])
        .unwrap();
    w.put_file(now(), ROOT, b"blob", &meta, &mut &[0u8, 1, 2][..])
        .unwrap();
    let t1 = mark();
    w.put_file(
        now(),
        ROOT,
        b"notes.txt",
        &meta,
        &mut &b"one\ntwo\nthree\n"[..],
    )
    .unwrap();
    w.delete(now(), ROOT, b"gone").unwrap();
    w.put_file(now(), ROOT, b"blob", &meta, &mut &[0u8, 9, 2][..])
        .unwrap();
    let t1_text = {
        let secs = t1 / 1_000_000_000;
        let second = diffkeeper_cli::time::format_second(secs);
        format!("{}.{:09}Z", text(&second), t1 % 1_000_000_000)
    };
    (t1, t1_text)
}

#[test]
fn timeline_cat_export_diff() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let (_, t1) = store_with_history(&store);
    let s = store.to_str().unwrap();

    let out = run(&["timeline", "--store", s, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["op"], "file");
    assert_eq!(lines[0]["path"], "notes.txt");
    assert_eq!(lines[0]["size"], 8);
    assert_eq!(lines[4]["op"], "delete");
    let out = run(&["timeline", "--store", s, "--path", "/state/gone"]);
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );

    let out = run(&["cat", "--store", s, "notes.txt", "--at", &t1]);
    assert_eq!(text(&out.stdout), "one\ntwo\n", "{}", text(&out.stderr));
    let out = run(&["cat", "--store", s, "/state/notes.txt"]);
    assert_eq!(text(&out.stdout), "one\ntwo\nthree\n");
    let out = run(&["cat", "--store", s, "gone"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/state/gone: not found"),
        "{}",
        text(&out.stderr)
    );
    // A duration ago: an hour ago the store was empty.
    let out = run(&["cat", "--store", s, "notes.txt", "--at", "1h"]);
    assert_eq!(out.status.code(), Some(1));

    let dest = tmp.path().join("exported");
    let out = run(&[
        "export",
        "--store",
        s,
        "--at",
        &t1,
        "--out",
        dest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read(dest.join("gone")).unwrap(), b"bye");
    assert_eq!(fs::read(dest.join("notes.txt")).unwrap(), b"one\ntwo\n");
    // Exporting onto a non-empty directory is refused.
    let out = run(&["export", "--store", s, "--out", dest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["diff", "--store", s, "--from", &t1, "--patch"]);
    let diff = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(diff.contains("M /state/notes.txt\n"), "{diff}");
    assert!(diff.contains("D /state/gone\n"), "{diff}");
    assert!(diff.contains("+three\n"), "{diff}");
    assert!(diff.contains("-bye\n"), "{diff}");
    assert!(
        diff.contains("Binary files (or over 8 MiB) differ: /state/blob"),
        "{diff}"
    );
}

#[test]
fn verify_names_corruption_and_exits_1() {
    let tmp = tempdir();
    store_with_history(tmp.path());
    let s = tmp.path().to_str().unwrap();
    let out = run(&["verify", "--store", s]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("6 records, 5 chunks checked, 0 problems"),
        "{}",
        text(&out.stdout)
    );
    let pack = tmp.path().join("packs/00000001.pack");
    let mut bytes = fs::read(&pack).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0xff;
    // In the last chunk: verify cannot tell it from an append cut short, but the version that
    // names the chunk finds it missing.
    fs::write(&pack, &bytes).unwrap();
    let out = run(&["verify", "--store", s]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(
        report.contains("corrupt: /state/blob: chunk") && report.contains("is missing"),
        "{report}"
    );
}

#[test]
fn usage_errors_exit_2_and_a_newer_store_exits_1() {
    let tmp = tempdir();
    store_with_history(tmp.path());
    let s = tmp.path().to_str().unwrap();
    for args in [
        &["nonsense", "--store", s][..],
        &["cat", "--store", s],
        &["export", "--store", s],
        &["cat", "--store", s, "x", "--at", "yesterday"],
        &["timeline"],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
    let log = tmp.path().join("log");
    let mut bytes = fs::read(&log).unwrap();
    bytes[12] = 9;
    fs::write(&log, &bytes).unwrap();
    let out = run(&["timeline", "--store", s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("format version 9 is newer"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["verify", "--store", s]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_reader_closing_the_pipe_early_is_not_an_error() {
    let tmp = tempdir();
    let mut w = Store::create_or_open(tmp.path(), StoreOptions::default()).unwrap();
    let big = noise(5, 4 << 20);
    w.put_file(
        SystemTime::now(),
        ROOT,
        b"big",
        &Meta::default(),
        &mut &big[..],
    )
    .unwrap();
    drop(w);
    let mut child = Command::new(bin())
        .args(["cat", "--store", tmp.path().to_str().unwrap(), "big"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    assert_eq!(first, big[..10]);
    drop(child.stdout.take()); // as `| head -c 10` does
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}
