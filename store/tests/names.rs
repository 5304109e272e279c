//! File names that are not UTF-8 (Linux names are bytes): recorded under their exact bytes,
//! shown unambiguously by `timeline --json` and `diff`, read back by `cat` from the bytes the
//! shell passes, and recreated exactly by `export`.
#![allow(clippy::unwrap_used)] // helpers of tests, not #[test] functions

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use common::*;
use diffkeeper_cli::name::decode_exact;
use diffkeeper_store::{Meta, Store, StoreOptions};

const ROOT: &str = "/state";

#[test]
fn names_differing_only_in_an_invalid_byte_stay_apart_from_store_to_export() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let mut w = Store::create_or_open(&store, StoreOptions::default()).unwrap();
    let meta = Meta {
        mode: 0o644,
        mtime_ns: 1_000_000_000,
        ..Meta::default()
    };
    let now = SystemTime::now;
    w.put_file(now(), ROOT, b"bad\xff", &meta, &mut &b"ff"[..])
        .unwrap();
    w.put_file(now(), ROOT, b"bad\xfe", &meta, &mut &b"fe"[..])
        .unwrap();
    w.put_file(now(), ROOT, b"old\xfd", &meta, &mut &b"fd"[..])
        .unwrap();
    w.rename(now(), ROOT, b"old\xfd", b"new\xfc").unwrap();
    drop(w);
    let s = store.as_os_str();
    let arg = OsStr::new;

    // timeline --json: the lossy text is the same, the exact bytes are not.
    let out = run(&[arg("timeline"), arg("--store"), s, arg("--json")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exact = |v: &serde_json::Value, key: &str| decode_exact(v[key].as_str().unwrap()).unwrap();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(
        (&lines[0]["path"], &lines[1]["path"]),
        (&"bad\u{fffd}".into(), &"bad\u{fffd}".into())
    );
    assert_eq!(exact(&lines[0], "path_b64"), b"bad\xff");
    assert_eq!(exact(&lines[1], "path_b64"), b"bad\xfe");
    assert_eq!(lines[3]["op"], "rename");
    assert_eq!(exact(&lines[3], "path_b64"), b"old\xfd");
    assert_eq!(exact(&lines[3], "other_b64"), b"new\xfc");

    // timeline --path and cat take the name's bytes as the shell passes them.
    let ff = OsStr::from_bytes(b"/state/bad\xff");
    let out = run(&[arg("timeline"), arg("--store"), s, arg("--path"), ff]);
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("[path_b64=L3N0YXRlL2JhZP8=]"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&[arg("cat"), arg("--store"), s, ff]);
    assert_eq!(out.stdout, b"ff", "{}", text(&out.stderr));
    let out = run(&[arg("cat"), arg("--store"), s, OsStr::from_bytes(b"bad\xfe")]);
    assert_eq!(out.stdout, b"fe", "{}", text(&out.stderr));

    // diff: each name once, told apart by its exact bytes.
    // From an hour ago, when the store was empty: all three are added.
    let out = run(&[arg("diff"), arg("--store"), s, arg("--from"), arg("1h")]);
    let diff = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for exact in [&b"/state/bad\xff"[..], b"/state/bad\xfe", b"/state/new\xfc"] {
        let line = format!(
            "A /state/{}\u{fffd} [path_b64={}]",
            text(&exact[7..exact.len() - 1]),
            diffkeeper_cli::name::encode_exact(exact)
        );
        assert!(diff.lines().any(|l| l == line), "{line} in {diff}");
    }

    // export recreates the exact names.
    let dest = tmp.path().join("exported");
    let out = run(&[
        arg("export"),
        arg("--store"),
        s,
        arg("--out"),
        dest.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut names: Vec<Vec<u8>> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    assert_eq!(names, [&b"bad\xfe"[..], b"bad\xff", b"new\xfc"]);
    assert_eq!(
        fs::read(dest.join(OsStr::from_bytes(b"bad\xff"))).unwrap(),
        b"ff"
    );
    assert_eq!(
        fs::read(dest.join(OsStr::from_bytes(b"bad\xfe"))).unwrap(),
        b"fe"
    );
    assert_eq!(
        fs::read(dest.join(OsStr::from_bytes(b"new\xfc"))).unwrap(),
        b"fd"
    );
}
