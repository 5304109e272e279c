//! kill -9 at random moments of a write storm, 20 times: the store verifies, everything synced
//! before the kill reads back exactly, and a new writer continues it.
#![allow(clippy::unwrap_used)] // helpers of tests, not #[test] functions

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use common::*;
use diffkeeper_store::{Meta, Store, StoreOptions, StoreReader};

const ROOT: &str = "/state";
const FILES: u64 = 40;

/// The storm's operation `i`: a delete of a file, or a new version of one.
fn op(i: u64) -> (String, Option<Vec<u8>>) {
    if i % 7 == 6 {
        (format!("d/f{}", (i * 3) % FILES), None)
    } else {
        let len = 1000 + (i * 7919) % 150_000;
        (format!("d/f{}", i % FILES), Some(noise(i, len as usize)))
    }
}

/// The child: writes the storm until killed, printing `synced I TS` after each explicit sync.
#[test]
#[ignore = "run by kill9_at_random_points_twenty_times as its child"]
fn storm_child() {
    let dir = std::env::var("DK_CRASH_STORE").expect("DK_CRASH_STORE names the store");
    let opts = StoreOptions {
        sync_interval: Duration::from_millis(20),
        max_bytes: None,
    };
    let mut w = Store::create_or_open(std::path::Path::new(&dir), opts).expect("open");
    let meta = Meta {
        mode: 0o600,
        ..Meta::default()
    };
    let mut out = std::io::stdout().lock();
    for i in 0..=u64::MAX {
        let (name, content) = op(i);
        match content {
            Some(data) => {
                w.put_file(
                    SystemTime::now(),
                    ROOT,
                    name.as_bytes(),
                    &meta,
                    &mut &data[..],
                )
                .expect("put_file");
            }
            None => {
                w.delete(SystemTime::now(), ROOT, name.as_bytes())
                    .expect("delete");
            }
        }
        if i % 5 == 4 {
            w.sync().expect("sync");
            let ts = diffkeeper_store::ts_ns(SystemTime::now());
            writeln!(out, "synced {i} {ts}").expect("stdout");
            out.flush().expect("flush");
        }
    }
}

#[test]
fn kill9_at_random_points_twenty_times() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let mut seed = diffkeeper_store::ts_ns(SystemTime::now()) | 1;
    let mut total_ops = 0;
    let mut torn_rounds = 0;
    for round in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(30 + seed % 400);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "storm_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("DK_CRASH_STORE", &store)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader_thread = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("synced ") {
                    let mut parts = rest.split(' ');
                    let i: u64 = parts.next().unwrap().parse().unwrap();
                    let ts: u64 = parts.next().unwrap().parse().unwrap();
                    let _ = tx.send((i, ts));
                }
            }
        });
        std::thread::sleep(delay);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();
        reader_thread.join().unwrap();
        let synced: Vec<(u64, u64)> = rx.try_iter().collect();

        let report = StoreReader::verify(&store).unwrap();
        assert!(
            report.problems.is_empty(),
            "round {round}: {:?}",
            report.problems
        );
        torn_rounds += usize::from(!report.torn_tails.is_empty());
        let Some(&(last_i, last_ts)) = synced.last() else {
            continue; // killed before its first sync: nothing to hold it to
        };
        total_ops += last_i + 1;
        // Every round restarts the storm at op 0 (later versions of the same names).
        let mut want: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        for i in 0..=last_i {
            let (name, content) = op(i);
            want.insert(name, content);
        }
        let reader = StoreReader::open(&store).unwrap();
        let tree = reader.tree_at(last_ts);
        for (name, content) in &want {
            let mut got = Vec::new();
            let found = reader.cat(name.as_bytes(), last_ts, &mut got);
            match content {
                Some(data) => {
                    assert!(found.is_ok(), "round {round}: {name}: {:?}", found.err());
                    assert!(
                        got == *data,
                        "round {round}: {name} differs at the last sync"
                    );
                }
                None => assert!(
                    tree.get(ROOT, name.as_bytes()).is_none(),
                    "round {round}: {name} should be deleted"
                ),
            }
        }
    }
    assert!(
        total_ops > 0,
        "no round reached a sync: the storm never ran"
    );
    // A writer reopens the store after the last kill (cutting any torn tail) and continues.
    let mut w = Store::create_or_open(&store, StoreOptions::default()).unwrap();
    w.put_file(
        SystemTime::now(),
        ROOT,
        b"after",
        &Meta::default(),
        &mut &b"ok"[..],
    )
    .unwrap();
    drop(w);
    let report = StoreReader::verify(&store).unwrap();
    assert!(
        report.problems.is_empty() && report.torn_tails.is_empty(),
        "{report:?}"
    );
    eprintln!(
        "kill -9: 20 rounds, {total_ops} synced operations checked, {torn_rounds} rounds left a torn tail"
    );
}
