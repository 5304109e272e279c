//! File names that are not UTF-8 (Linux names are bytes), against the real sidecar binary with
//! `--store`: two names that differ only in an invalid byte are created, written, renamed and
//! deleted; every journal line must tell them apart by `path_b64`/`from_b64` (the exact bytes),
//! and the store must export the exact names with their own content. In tracepoint mode with
//! both eBPF objects, and in inotify mode. Needs root.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

mod sidecar_common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use diffkeeper_cli::name::decode_exact;
use diffkeeper_store::{ts_ns, StoreReader};
use diffkeeper_tests::scratch::Scratch;
use sidecar_common::{serial, sidecar, spawn, READY_TIMEOUT};

/// The two spellings: the same text once made lossy (`\u{fffd}`), different bytes.
const INVALID: [u8; 2] = [0xff, 0xfe];

fn name(dir: &Path, stem: &str, invalid: u8) -> PathBuf {
    let mut bytes = dir.as_os_str().as_bytes().to_vec();
    bytes.extend_from_slice(format!("/{stem}").as_bytes());
    bytes.push(invalid);
    PathBuf::from(OsStr::from_bytes(&bytes))
}

/// One journal line: op, the exact path and from (decoded from `_b64` when present).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Line {
    op: String,
    path: Vec<u8>,
    from: Option<Vec<u8>>,
}

/// Reads `key` the journal's way: the exact bytes from `key_b64` when the text alone would be
/// lossy, else the text; a lossy text without `_b64` fails the test.
fn exact(v: &serde_json::Value, key: &str) -> Option<Vec<u8>> {
    let text = v[key].as_str()?;
    match v[format!("{key}_b64")].as_str() {
        Some(b64) => {
            let bytes = decode_exact(b64).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(String::from_utf8_lossy(&bytes), text, "{v}");
            assert!(
                std::str::from_utf8(&bytes).is_err(),
                "_b64 on a UTF-8 name: {v}"
            );
            Some(bytes)
        }
        None => {
            assert!(!text.contains('\u{fffd}'), "a lossy name without _b64: {v}");
            Some(text.as_bytes().to_vec())
        }
    }
}

fn journal_lines(journal: &Path) -> Vec<Line> {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"))
        })
        .filter(|v| v["op"] != "capture" && v["op"] != "gap")
        .map(|v| Line {
            op: v["op"].as_str().unwrap_or_default().to_string(),
            path: exact(&v, "path").unwrap_or_default(),
            from: exact(&v, "from"),
        })
        .collect()
}

fn run(label: &str, backend_args: &[&str], backend: &str) {
    let _serial = serial();
    let scratch = Scratch::new(label);
    let root = scratch.dir("state");
    let journal = scratch.path().join("journal.jsonl");
    let store = scratch.path().join("store");
    let mut cmd = sidecar(backend_args);
    cmd.args(["--coalesce-ms", "0", "--state-dir"])
        .arg(&root)
        .arg("--journal")
        .arg(&journal)
        .arg("--store")
        .arg(&store);
    let mut process = spawn(&mut cmd);
    let ready = process
        .wait_ready(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", process.log()));
    assert_eq!(ready, backend, "{}", process.log());

    let mut want = BTreeSet::new();
    let line = |op: &str, path: &Path, from: Option<&Path>| Line {
        op: op.into(),
        path: path.as_os_str().as_bytes().to_vec(),
        from: from.map(|f| f.as_os_str().as_bytes().to_vec()),
    };
    for invalid in INVALID {
        let (made, moved, gone) = (
            name(&root, "bad", invalid),
            name(&root, "moved", invalid),
            name(&root, "gone", invalid),
        );
        std::fs::write(&made, [invalid; 3]).unwrap();
        std::fs::rename(&made, &moved).unwrap();
        std::fs::write(&gone, b"x").unwrap();
        std::fs::remove_file(&gone).unwrap();
        want.extend([
            line("create", &made, None),
            line("write", &made, None),
            line("rename", &moved, Some(&made)),
            line("create", &gone, None),
            line("write", &gone, None),
            line("delete", &gone, None),
        ]);
    }
    let marker = root.join("marker");
    std::fs::write(&marker, b"m").unwrap();
    let done = line("write", &marker, None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !journal_lines(&journal).contains(&done) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = process.terminate();
    assert!(status.is_some_and(|s| s.success()), "{}", process.log());

    let got: BTreeSet<Line> = journal_lines(&journal).into_iter().collect();
    let missing: Vec<&Line> = want.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{backend}: missing {missing:#?}\n--- journal ---\n{}\n--- log ---\n{}",
        std::fs::read_to_string(&journal).unwrap_or_default(),
        process.log()
    );

    // The store exports the exact names, each with its own content.
    let out = scratch.path().join("export");
    StoreReader::open(&store)
        .and_then(|reader| reader.export(ts_ns(std::time::SystemTime::now()), &out))
        .unwrap_or_else(|e| panic!("export: {e}\n{}", process.log()));
    let exported: BTreeSet<Vec<u8>> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    let expected: BTreeSet<Vec<u8>> = [&b"moved\xff"[..], b"moved\xfe", b"marker"]
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(exported, expected, "{}", process.log());
    for invalid in INVALID {
        let content = std::fs::read(name(&out, "moved", invalid)).unwrap();
        assert_eq!(content, [invalid; 3]);
    }
}

#[test]
fn tracepoint_modern_object_keeps_names_that_are_not_utf8() {
    run(
        "names-tp-modern",
        &["--attach", "tracepoint", "--ebpf-object", "modern"],
        "tracepoint",
    );
}

#[test]
fn tracepoint_compat_object_keeps_names_that_are_not_utf8() {
    run(
        "names-tp-compat",
        &["--attach", "tracepoint", "--ebpf-object", "compat"],
        "tracepoint",
    );
}

#[test]
fn inotify_keeps_names_that_are_not_utf8() {
    run("names-inotify", &["--enable-ebpf", "false"], "inotify");
}
