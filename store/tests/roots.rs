//! Several roots in one store: each root's files export to its own place and nowhere else, when
//! two roots share a final name and when one root lies inside another.
#![allow(clippy::unwrap_used)] // helpers of tests, not #[test] functions

mod common;

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use common::*;
use diffkeeper_store::{Meta, Store, StoreOptions, StoreReader};

fn file_meta() -> Meta {
    Meta {
        mode: 0o644,
        ..Default::default()
    }
}

fn dir_meta() -> Meta {
    Meta {
        mode: 0o755,
        ..Default::default()
    }
}

fn put(w: &mut diffkeeper_store::StoreWriter, root: &str, path: &str, content: &str) {
    w.put_file(
        SystemTime::now(),
        root,
        path.as_bytes(),
        &file_meta(),
        &mut content.as_bytes(),
    )
    .unwrap();
}

/// Every path below `dir` with what it holds ("dir", "-> target" or the file's content).
fn listing(dir: &Path) -> Vec<(String, String)> {
    walk(dir)
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let md = fs::symlink_metadata(&p).unwrap();
            let what = if md.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                "dir".to_string()
            } else {
                String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned()
            };
            (rel, what)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn roots_with_the_same_final_name_export_apart() {
    let tmp = tempdir();
    let store_dir = tmp.path().join("store");
    let mut w = Store::create_or_open(&store_dir, StoreOptions::default()).unwrap();
    put(&mut w, "/a/data", "f", "of /a/data");
    put(&mut w, "/b/data", "f", "of /b/data");
    put(&mut w, "/b/data", "only-b", "b alone");
    drop(w);
    let reader = StoreReader::open(&store_dir).unwrap();
    let out = tmp.path().join("out");
    reader.export(u64::MAX, &out).unwrap();
    assert_eq!(
        listing(&out),
        pairs(&[
            ("a", "dir"),
            ("a/data", "dir"),
            ("a/data/f", "of /a/data"),
            ("b", "dir"),
            ("b/data", "dir"),
            ("b/data/f", "of /b/data"),
            ("b/data/only-b", "b alone"),
        ])
    );
}

/// `/srv` and `/srv/db` watched together, after a run that watched `/srv` alone recorded
/// `db/x` under `/srv`: the inner root owns `srv/db` in the export, and nothing the outer root
/// recorded there (stale, or a symlink out of the export) is written at, below or through it.
#[test]
fn a_root_inside_another_owns_its_directory() {
    let tmp = tempdir();
    let store_dir = tmp.path().join("store");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let mut w = Store::create_or_open(&store_dir, StoreOptions::default()).unwrap();
    // The earlier run: /srv alone.
    put(&mut w, "/srv", "top", "outer top");
    w.put_dir(SystemTime::now(), "/srv", b"db", &dir_meta())
        .unwrap();
    put(&mut w, "/srv", "db/x", "stale, recorded by /srv");
    put(&mut w, "/srv", "db/only-outer", "stale too");
    // A forged or stale symlink on the way to a nested root must not carry its files away.
    w.put_symlink(
        SystemTime::now(),
        "/srv",
        b"cache",
        &file_meta(),
        outside.as_os_str().as_encoded_bytes(),
    )
    .unwrap();
    // Then both roots.
    put(&mut w, "/srv/db", "x", "inner x");
    put(&mut w, "/srv/db", "y", "inner y");
    put(&mut w, "/srv/cache/blobs", "z", "inner z");
    drop(w);
    let reader = StoreReader::open(&store_dir).unwrap();
    let want = pairs(&[
        ("srv", "dir"),
        ("srv/cache", "dir"),
        ("srv/cache/blobs", "dir"),
        ("srv/cache/blobs/z", "inner z"),
        ("srv/db", "dir"),
        ("srv/db/x", "inner x"),
        ("srv/db/y", "inner y"),
        ("srv/top", "outer top"),
    ]);
    let out = tmp.path().join("out");
    let report = reader.export(u64::MAX, &out).unwrap();
    assert_eq!(listing(&out), want);
    // The outer root's db, db/x, db/only-outer and cache: left out, and counted.
    assert_eq!(report.shadowed, 4, "{report:?}");
    let restored = tmp.path().join("restored");
    fs::create_dir(&restored).unwrap();
    reader.restore_into(u64::MAX, &restored, false).unwrap();
    assert_eq!(listing(&restored), want);
    assert_eq!(listing(&outside), [], "written through a symlink");
}
