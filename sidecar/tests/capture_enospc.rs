//! A full store disk (ENOSPC) while recording: a clear log line, the metric, a journal line;
//! the journal keeps flowing; once space returns capture resumes (a rescan, a `resumed` line)
//! and the store holds the current state. The store lives on a 4 MiB tmpfs filled on purpose.
//! Needs root (a private mount namespace).

use std::io::Write;
use std::time::{Duration, Instant};

use diffkeeper_store::{ts_ns, StoreReader};
use diffkeeper_tests::filesystems::{mount_tmpfs, private_mounts_in_this_thread};
use diffkeeper_tests::http::{http_get, metric_sample};
use diffkeeper_tests::recorder::compare::differences;
use diffkeeper_tests::recorder::workload::noise;
use diffkeeper_tests::recorder::{settle, snapshot, start_inotify_ready};
use diffkeeper_tests::scratch::Scratch;

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_store_disk_is_said_and_capture_resumes_when_space_returns() {
    let scratch = Scratch::new("enospc");
    private_mounts_in_this_thread();
    let fs = mount_tmpfs(&scratch.path().join("storefs"));
    let state = scratch.dir("state");
    let store = fs.path().join("store");
    let journal = scratch.path().join("journal.jsonl");
    let (mut sidecar, addr) =
        start_inotify_ready(std::path::Path::new(SIDECAR), &state, &store, &scratch);

    // Fill the store's file system to the last byte.
    let filler = fs.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&[0]).is_ok() {}
    drop(f);

    std::fs::write(state.join("big.bin"), noise(1 << 20, 3)).unwrap();
    let journal_text = || std::fs::read_to_string(&journal).unwrap_or_default();
    wait_until("the lost line", Duration::from_secs(20), || {
        journal_text().contains(r#""op":"capture","path":"#) && journal_text().contains("ENOSPC")
    });
    let (_, metrics) = http_get(addr, "/metrics").unwrap();
    assert_eq!(
        metric_sample(&metrics, "diffkeeper_store_full"),
        Some(1),
        "{metrics}"
    );
    // The journal goes on while the store is full.
    std::fs::write(state.join("while-full.txt"), "journaled all the same\n").unwrap();
    wait_until(
        "the journal line of a change made while full",
        Duration::from_secs(10),
        || {
            journal_text().contains(r#""op":"write","path":""#)
                && journal_text().contains("while-full.txt")
        },
    );

    std::fs::remove_file(&filler).unwrap();
    wait_until("the resumed line", Duration::from_secs(20), || {
        journal_text().contains(r#""content":"resumed""#)
    });
    settle(addr);
    let (_, metrics) = http_get(addr, "/metrics").unwrap();
    assert_eq!(
        metric_sample(&metrics, "diffkeeper_store_full"),
        Some(0),
        "{metrics}"
    );
    let (status, _) = sidecar.terminate();
    let log = sidecar.log();
    assert!(status.is_some_and(|s| s.success()), "{log}");
    assert!(
        log.contains("the store's file system is full (ENOSPC)"),
        "{log}"
    );

    let snap = scratch.path().join("snap");
    snapshot(&state, &snap);
    let out = scratch.path().join("export");
    StoreReader::open(&store)
        .and_then(|r| r.export(ts_ns(std::time::SystemTime::now()), &out))
        .unwrap();
    assert_eq!(differences(&snap, &out), []);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("capture:")).collect();
    println!("{}", lines.join("\n"));
    drop(fs);
}
