//! Round trips on real files: a workload in phases, each phase mirrored into a store and
//! snapshotted with `cp -a`; the export at each phase's time must equal its snapshot exactly.
#![allow(clippy::unwrap_used)] // helpers of tests, not #[test] functions

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::time::SystemTime;

use common::*;
use diffkeeper_store::{Store, StoreOptions, StoreReader};

const ROOT: &str = "/state";

#[test]
fn export_at_each_phase_equals_its_snapshot() {
    let tmp = tempdir();
    let live = tmp.path().join("live");
    let store_dir = tmp.path().join("store");
    fs::create_dir(&live).unwrap();
    let mut w = Store::create_or_open(&store_dir, StoreOptions::default()).unwrap();
    let mut marks = Vec::new();
    let now = SystemTime::now;

    // Phase 0: text, UTF-8 and spaces, an empty dir, a symlink, a hard link, an 8 MiB binary.
    fs::write(live.join("a.txt"), "one\ntwo\n").unwrap();
    fs::create_dir(live.join("dir with space")).unwrap();
    fs::write(live.join("dir with space/ünïcødé.txt"), "héllo").unwrap();
    fs::create_dir_all(live.join("dir with space/sub")).unwrap();
    fs::write(live.join("dir with space/sub/deep"), "deep").unwrap();
    fs::create_dir(live.join("empty")).unwrap();
    symlink("a.txt", live.join("link")).unwrap();
    fs::hard_link(live.join("a.txt"), live.join("hard")).unwrap();
    fs::write(live.join("big.bin"), noise(1, 8 << 20)).unwrap();
    fs::write(live.join("script.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::write(live.join("cfg.json"), "{\"v\":1}").unwrap();
    fs::write(live.join("shrink"), "x".repeat(10_000)).unwrap();
    for rel in walk(&live) {
        if rel == "hard" {
            w.put_hardlink(now(), ROOT, b"hard", b"a.txt").unwrap();
        } else {
            put_path(&mut w, ROOT, &live, &rel);
        }
    }
    marks.push(phase_mark(&live, tmp.path(), 0));

    // Phase 1: an append (seen through both hard links), an atomic save, chmod +x, truncate.
    fs::OpenOptions::new()
        .append(true)
        .open(live.join("a.txt"))
        .unwrap();
    fs::write(live.join("a.txt"), "one\ntwo\nthree\n").unwrap();
    put_path(&mut w, ROOT, &live, "a.txt");
    w.put_hardlink(now(), ROOT, b"hard", b"a.txt").unwrap();
    fs::write(live.join(".cfg.json.tmp"), "{\"v\":2}").unwrap();
    put_path(&mut w, ROOT, &live, ".cfg.json.tmp");
    fs::rename(live.join(".cfg.json.tmp"), live.join("cfg.json")).unwrap();
    w.rename(now(), ROOT, b".cfg.json.tmp", b"cfg.json")
        .unwrap();
    fs::set_permissions(live.join("script.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    put_path(&mut w, ROOT, &live, "script.sh");
    fs::OpenOptions::new()
        .write(true)
        .open(live.join("shrink"))
        .unwrap()
        .set_len(10)
        .unwrap();
    put_path(&mut w, ROOT, &live, "shrink");
    marks.push(phase_mark(&live, tmp.path(), 1));

    // Phase 2: a directory renamed with files inside, a delete, 4 KiB changed mid-file.
    fs::rename(live.join("dir with space"), live.join("moved dir")).unwrap();
    w.rename(now(), ROOT, b"dir with space", b"moved dir")
        .unwrap();
    fs::remove_file(live.join("link")).unwrap();
    w.delete(now(), ROOT, b"link").unwrap();
    let mut big = fs::read(live.join("big.bin")).unwrap();
    big[4 << 20..(4 << 20) + 4096].copy_from_slice(&noise(2, 4096));
    fs::write(live.join("big.bin"), &big).unwrap();
    let before = w.stats().store_bytes;
    put_path(&mut w, ROOT, &live, "big.bin");
    let added = w.stats().store_bytes - before;
    assert!(
        added < 600 << 10,
        "4 KiB changed in 8 MiB added {added} bytes"
    );
    marks.push(phase_mark(&live, tmp.path(), 2));

    // Phase 3: a directory deleted with its subtree, the empty dir removed, chmod of a dir.
    fs::remove_dir_all(live.join("moved dir")).unwrap();
    w.delete(now(), ROOT, b"moved dir").unwrap();
    fs::remove_dir(live.join("empty")).unwrap();
    w.delete(now(), ROOT, b"empty").unwrap();
    marks.push(phase_mark(&live, tmp.path(), 3));
    w.sync().unwrap();

    let reader = StoreReader::open(&store_dir).unwrap();
    for (i, t) in marks.iter().enumerate() {
        let out = tmp.path().join(format!("export{i}"));
        reader.export(*t, &out).unwrap();
        let want = describe(&tmp.path().join(format!("snap{i}")));
        let got = describe(&out);
        assert_eq!(got, want, "export at phase {i} differs from its snapshot");
    }
    let report = StoreReader::verify(&store_dir).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Snapshots `live` as phase `i` and returns the phase's time.
fn phase_mark(live: &std::path::Path, base: &std::path::Path, i: usize) -> u64 {
    let t = mark();
    snapshot(live, &base.join(format!("snap{i}")));
    t
}

#[test]
fn dedup_stores_about_the_changed_chunks() {
    let tmp = tempdir();
    let mut w = Store::create_or_open(tmp.path(), StoreOptions::default()).unwrap();
    let meta = diffkeeper_store::Meta {
        mode: 0o644,
        ..Default::default()
    };
    let mut data = noise(7, 8 << 20);
    let first = w
        .put_file(SystemTime::now(), ROOT, b"f", &meta, &mut &data[..])
        .unwrap();
    assert!(first.bytes_written >= 8 << 20);
    data[3 << 20..(3 << 20) + 4096].copy_from_slice(&noise(8, 4096));
    let second = w
        .put_file(SystemTime::now(), ROOT, b"f", &meta, &mut &data[..])
        .unwrap();
    assert!(second.new_chunks <= 3, "{second:?}");
    assert!(second.bytes_written < 600 << 10, "{second:?}");
    // The same content again records nothing.
    let third = w
        .put_file(SystemTime::now(), ROOT, b"f", &meta, &mut &data[..])
        .unwrap();
    assert!(third.unchanged && third.bytes_written == 0, "{third:?}");
    // The same content under another name adds no chunk.
    let copy = w
        .put_file(SystemTime::now(), ROOT, b"g", &meta, &mut &data[..])
        .unwrap();
    assert_eq!(copy.new_chunks, 0, "{copy:?}");
}

#[test]
fn several_roots_export_under_their_paths() {
    let tmp = tempdir();
    let store_dir = tmp.path().join("store");
    let mut w = Store::create_or_open(&store_dir, StoreOptions::default()).unwrap();
    let meta = diffkeeper_store::Meta {
        mode: 0o640,
        ..Default::default()
    };
    w.put_file(
        SystemTime::now(),
        "/var/lib/db",
        b"data",
        &meta,
        &mut &b"db"[..],
    )
    .unwrap();
    w.put_file(
        SystemTime::now(),
        "/etc/app",
        b"conf",
        &meta,
        &mut &b"cf"[..],
    )
    .unwrap();
    drop(w);
    let reader = StoreReader::open(&store_dir).unwrap();
    let out = tmp.path().join("out");
    reader.export(u64::MAX, &out).unwrap();
    assert_eq!(fs::read(out.join("var/lib/db/data")).unwrap(), b"db");
    assert_eq!(fs::read(out.join("etc/app/conf")).unwrap(), b"cf");
    let mut cat = Vec::new();
    reader.cat(b"/etc/app/conf", u64::MAX, &mut cat).unwrap();
    assert_eq!(cat, b"cf");
    let err = reader.cat(b"conf", u64::MAX, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("several roots"), "{err}");
}

#[test]
fn a_second_writer_is_refused() {
    let tmp = tempdir();
    let _w = Store::create_or_open(tmp.path(), StoreOptions::default()).unwrap();
    let err = Store::create_or_open(tmp.path(), StoreOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("lock"), "{err}");
}

#[test]
fn max_bytes_prunes_old_versions_but_never_the_newest() {
    let tmp = tempdir();
    let opts = StoreOptions {
        max_bytes: Some(3 << 20),
        ..Default::default()
    };
    let mut w = Store::create_or_open(tmp.path(), opts).unwrap();
    let meta = diffkeeper_store::Meta {
        mode: 0o644,
        ..Default::default()
    };
    let keep = noise(100, 512 << 10);
    w.put_file(SystemTime::now(), ROOT, b"keep", &meta, &mut &keep[..])
        .unwrap();
    let mut pruned = Vec::new();
    for i in 0..12 {
        let data = noise(i, 512 << 10);
        let out = w
            .put_file(SystemTime::now(), ROOT, b"churn", &meta, &mut &data[..])
            .unwrap();
        if let Some(report) = out.pruned {
            assert!(report.bytes_after < report.bytes_before, "{report:?}");
            pruned.extend(report.versions);
        }
    }
    assert!(w.stats().store_bytes <= 3 << 20, "{:?}", w.stats());
    assert!(!pruned.is_empty());
    assert!(pruned.iter().all(|(_, p, _)| p == b"churn"), "{pruned:?}");
    drop(w);
    let reader = StoreReader::open(tmp.path()).unwrap();
    let mut got = Vec::new();
    reader.cat(b"keep", u64::MAX, &mut got).unwrap();
    assert_eq!(got, keep);
    got.clear();
    reader.cat(b"churn", u64::MAX, &mut got).unwrap();
    assert_eq!(got, noise(11, 512 << 10));
    // An old, pruned version says so.
    let first_ts = reader.timeline(Some(b"churn"))[0].ts_ns;
    let err = reader.cat(b"churn", first_ts, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("pruned"), "{err}");
    assert!(StoreReader::verify(tmp.path()).unwrap().problems.is_empty());
}

#[test]
fn attrib_changes_mode_and_owner_of_every_hard_link_and_keeps_content() {
    let tmp = tempdir();
    let store_dir = tmp.path().join("store");
    let mut w = Store::create_or_open(&store_dir, StoreOptions::default()).unwrap();
    let now = SystemTime::now;
    let meta = diffkeeper_store::Meta {
        mode: 0o644,
        uid: 10,
        gid: 10,
        size: 0,
        mtime_ns: 5_000_000_000,
    };
    w.put_file(now(), ROOT, b"a", &meta, &mut &b"content"[..])
        .unwrap();
    w.put_hardlink(now(), ROOT, b"b", b"a").unwrap();
    w.put_dir(
        now(),
        ROOT,
        b"d",
        &diffkeeper_store::Meta {
            mode: 0o755,
            ..meta
        },
    )
    .unwrap();
    let t0 = mark();
    let changed = diffkeeper_store::Meta {
        mode: 0o600,
        uid: 20,
        gid: 30,
        size: 999,
        mtime_ns: 6_000_000_000,
    };
    w.attrib(now(), ROOT, b"b", &changed).unwrap();
    w.attrib(
        now(),
        ROOT,
        b"d",
        &diffkeeper_store::Meta {
            mode: 0o700,
            ..changed
        },
    )
    .unwrap();
    drop(w);
    let reader = StoreReader::open(&store_dir).unwrap();
    let out = tmp.path().join("out");
    reader.export(u64::MAX, &out).unwrap();
    use std::os::unix::fs::MetadataExt;
    for name in ["a", "b"] {
        let md = fs::metadata(out.join(name)).unwrap();
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid(), md.mtime()),
            (0o600, 20, 30, 6),
            "{name}"
        );
        assert_eq!(
            fs::read(out.join(name)).unwrap(),
            b"content",
            "{name}: size kept from content"
        );
        assert_eq!(md.nlink(), 2);
    }
    assert_eq!(fs::metadata(out.join("d")).unwrap().mode() & 0o7777, 0o700);
    let before = tmp.path().join("before");
    reader.export(t0, &before).unwrap();
    assert_eq!(
        fs::metadata(before.join("a")).unwrap().mode() & 0o7777,
        0o644
    );
    let diff = reader.diff(t0, u64::MAX);
    assert_eq!(diff.len(), 3, "{diff:?}");
    assert!(
        diff.iter()
            .all(|d| d.kind == diffkeeper_store::DiffKind::Attributes),
        "{diff:?}"
    );
}

#[test]
fn an_entry_below_a_recorded_file_or_symlink_is_refused_until_the_directory_is_recorded() {
    let tmp = tempdir();
    let mut w = Store::create_or_open(tmp.path(), StoreOptions::default()).unwrap();
    let now = SystemTime::now;
    let meta = diffkeeper_store::Meta {
        mode: 0o755,
        ..Default::default()
    };
    w.put_symlink(now(), ROOT, b"a", &meta, b"/etc").unwrap();
    w.put_file(now(), ROOT, b"f", &meta, &mut &b"x"[..])
        .unwrap();
    let err = w
        .put_file(now(), ROOT, b"a/b", &meta, &mut &b"x"[..])
        .unwrap_err();
    assert!(
        err.to_string().contains("parent is recorded as a symlink"),
        "{err}"
    );
    let err = w.put_dir(now(), ROOT, b"f/sub", &meta).unwrap_err();
    assert!(
        err.to_string().contains("parent is recorded as a file"),
        "{err}"
    );
    let err = w.rename(now(), ROOT, b"f", b"a/f").unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    // Once the directory that replaced the symlink is recorded, its children are accepted.
    w.put_dir(now(), ROOT, b"a", &meta).unwrap();
    w.put_file(now(), ROOT, b"a/b", &meta, &mut &b"x"[..])
        .unwrap();
    drop(w);
    let out = tmp.path().join("out");
    StoreReader::open(tmp.path())
        .unwrap()
        .export(u64::MAX, &out)
        .unwrap();
    assert!(out.join("a").is_dir() && out.join("a/b").is_file());
}
