//! `--restore-from`: the real diffkeeper-init restoring a real store into a state directory.
#![allow(clippy::unwrap_used)] // helpers of tests, not #[test] functions

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{run, Env, Run};
use diffkeeper_store::{Change, Meta, Record, Store, StoreOptions};
use diffkeeper_tests::store_log;

const ROOT: &str = "/var/lib/app";

/// A store holding v1 of the state, then (after the returned time) v2.
fn recorded_store(dir: &Path) -> u64 {
    let mut w = Store::create_or_open(dir, StoreOptions::default()).unwrap();
    let now = SystemTime::now;
    let private = Meta {
        mode: 0o600,
        uid: 65532,
        gid: 65532,
        ..Meta::default()
    };
    let dir_meta = Meta {
        mode: 0o750,
        uid: 65532,
        gid: 65532,
        ..Meta::default()
    };
    w.put_dir(now(), ROOT, b"db", &dir_meta).unwrap();
    w.put_file(now(), ROOT, b"db/data", &private, &mut &b"v1"[..])
        .unwrap();
    w.put_dir(now(), ROOT, b"empty", &dir_meta).unwrap();
    w.put_symlink(now(), ROOT, b"current", &Meta::default(), b"db/data")
        .unwrap();
    w.put_hardlink(now(), ROOT, b"db/data.link", b"db/data")
        .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let t1 = diffkeeper_store::ts_ns(now());
    std::thread::sleep(Duration::from_millis(5));
    w.put_file(now(), ROOT, b"db/data", &private, &mut &b"v2"[..])
        .unwrap();
    w.put_hardlink(now(), ROOT, b"db/data.link", b"db/data")
        .unwrap();
    t1
}

fn rfc3339(ns: u64) -> String {
    let second = diffkeeper_cli::time::format_second(ns / 1_000_000_000);
    format!(
        "{}.{:09}Z",
        String::from_utf8_lossy(&second),
        ns % 1_000_000_000
    )
}

/// diffkeeper-init restoring the newest state of `store` into `target`, no other flag.
fn restore(env: &Env, store: &Path, target: &Path) -> Run {
    run(env
        .init_with_system_btf()
        .arg("--restore-from")
        .arg(store)
        .arg("--restore-to")
        .arg(target))
}

#[test]
fn restores_the_newest_state_or_t_into_an_empty_dir() {
    let env = Env::new("restore");
    let store = env.scratch.dir("store");
    let t1 = recorded_store(&store);
    let target = env.scratch.dir("state");
    let r = restore(&env, &store, &target);
    r.expect(
        0,
        &["restore: 1 files (2 bytes), 1 hard links, 1 symlinks, 2 directories"],
    );
    assert_eq!(fs::read(target.join("db/data")).unwrap(), b"v2");
    let md = fs::metadata(target.join("db/data")).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid()),
        (0o600, 65532, 65532)
    );
    assert_eq!(md.nlink(), 2, "the hard link is a hard link");
    assert_eq!(
        fs::read_link(target.join("current")).unwrap(),
        Path::new("db/data")
    );
    assert!(fs::read_dir(target.join("empty")).unwrap().next().is_none());
    assert_eq!(
        fs::metadata(target.join("db")).unwrap().mode() & 0o7777,
        0o750
    );

    // Not empty: refused and untouched, unless --restore-overwrite.
    let r = run(env
        .init_with_system_btf()
        .env("DIFFKEEPER_RESTORE_FROM", &store)
        .env("DIFFKEEPER_RESTORE_TO", &target)
        .env("DIFFKEEPER_RESTORE_AT", rfc3339(t1)));
    r.expect(1, &["is not empty", "--restore-overwrite"]);
    assert_eq!(fs::read(target.join("db/data")).unwrap(), b"v2");
    fs::write(target.join("stray"), "left by the app").unwrap();
    let r = run(env
        .init_with_system_btf()
        .args([
            "--restore-from",
            store.to_str().unwrap(),
            "--restore-to",
            target.to_str().unwrap(),
        ])
        .args(["--restore-at", &rfc3339(t1), "--restore-overwrite"]));
    r.expect(0, &["restore:"]);
    assert_eq!(fs::read(target.join("db/data")).unwrap(), b"v1");
    assert!(!target.join("stray").exists());
}

/// A pod's first start: the store's new volume is empty (or holds only `lost+found`), so
/// there is nothing to restore and the app starts on an empty state directory.
#[test]
fn a_new_empty_store_volume_restores_nothing_and_succeeds() {
    let env = Env::new("restore-first");
    let store = env.scratch.dir("store");
    env.scratch.dir("store/lost+found");
    let target = env.scratch.dir("state");
    let r = restore(&env, &store, &target);
    r.expect(
        0,
        &["holds no store yet (nothing recorded so far): nothing to restore"],
    );
    assert!(fs::read_dir(&target).unwrap().next().is_none());
    // Anything else in it is opened as a store, and refused when it is not one.
    fs::write(store.join("stray"), "x").unwrap();
    let r = restore(&env, &store, &target);
    r.expect(1, &["not a diffkeeper store"]);
}

#[test]
fn a_hostile_store_is_refused_whole_and_writes_nothing() {
    let env = Env::new("restore-hostile");
    let outside = env.scratch.dir("outside");
    let target = env.scratch.dir("state");
    let dir = Meta {
        mode: 0o755,
        ..Meta::default()
    };
    let rec = |path: &[u8], change| Record {
        ts_ns: 1,
        root: ROOT.into(),
        path: path.to_vec(),
        change,
    };
    let cases: [(&str, Vec<Record>, &str); 2] = [
        (
            "symlinked-parent",
            vec![
                rec(b"a", Change::Dir { meta: dir }),
                rec(
                    b"link",
                    Change::Symlink {
                        meta: Meta::default(),
                        target: outside.to_str().unwrap().into(),
                    },
                ),
                rec(b"link/planted", Change::Dir { meta: dir }),
            ],
            "below link, a symlink",
        ),
        (
            "dotdot",
            vec![
                rec(b"a", Change::Dir { meta: dir }),
                rec(b"../planted", Change::Dir { meta: dir }),
            ],
            ".. component",
        ),
    ];
    for (name, records, needle) in cases {
        let store = env.scratch.dir(name);
        let payloads: Vec<Vec<u8>> = records.iter().map(Record::encode).collect();
        store_log::forged_store(&store, &payloads);
        let r = restore(&env, &store, &target);
        r.expect(1, &["restore from", needle]);
        assert_eq!(
            fs::read_dir(&target).unwrap().count(),
            0,
            "{name}: wrote into the target"
        );
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "{name}: wrote outside"
        );
        assert!(
            !env.scratch.path().join("planted").exists(),
            "{name}: wrote outside"
        );
    }
}

#[test]
fn restore_flags_need_each_other() {
    let env = Env::new("restore-usage");
    for (args, needle) in [
        (
            &["--restore-to", "/x"][..],
            "--restore-to is given without --restore-from",
        ),
        (&["--restore-from", "/s"], "needs --restore-to"),
        (
            &[
                "--restore-from",
                "/s",
                "--restore-to",
                "/x",
                "--restore-at",
                "noon",
            ],
            "neither an RFC 3339 time",
        ),
        (&["--restore-overwrite"], "without --restore-from"),
    ] {
        run(env.init_with_system_btf().args(args)).expect(2, &[needle]);
    }
}
