//! `kill -9` of a recording sidecar at random points of a write storm, 20 times on one store
//! (each start reopens what the last kill left): every time the store verifies (every record
//! checksum, every chunk hash) and the export at the last time before the storm equals the
//! `cp -a` snapshot taken then. Alternates inotify and real eBPF tracepoint mode. Needs root.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use diffkeeper_store::{ts_ns, StoreReader};
use diffkeeper_tests::recorder::compare::differences;
use diffkeeper_tests::recorder::workload::noise;
use diffkeeper_tests::recorder::{settle, snapshot, start};
use diffkeeper_tests::scratch::Scratch;

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");
const ROUNDS: u64 = 20;

/// Writes, appends and new files under `state` until `stop`; returns how many writes it made.
fn storm(state: &Path, round: u64, stop: &AtomicBool) -> u64 {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let file = state.join(format!("storm/r{round}-{}.bin", n % 40));
        let size = 1 + (n * 7919 % 65536) as usize;
        std::fs::write(&file, noise(size, round * 1000 + n)).expect("storm write");
        if n % 5 == 0 {
            use std::io::Write;
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(state.join("storm.log"))
                .expect("open storm.log");
            writeln!(log, "round {round} write {n}").expect("append to storm.log");
        }
        n += 1;
    }
    n
}

#[test]
fn kill_9_during_a_write_storm_leaves_a_store_that_verifies_and_exports_the_past() {
    let scratch = Scratch::new("crash");
    let state = scratch.dir("state");
    let store = scratch.path().join("store");
    std::fs::create_dir(state.join("storm")).unwrap();
    std::fs::write(state.join("settled.txt"), "before any storm\n").unwrap();
    // A random point per round, from the clock (no rand crate needed for this).
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut table = String::new();
    for round in 0..ROUNDS {
        let backend_args: Vec<String> = if round % 2 == 0 {
            vec!["--enable-ebpf=false".into()]
        } else {
            vec!["--attach".into(), "tracepoint".into()]
        };
        std::fs::write(
            state.join("settled.txt"),
            format!("settled before storm {round}\n"),
        )
        .unwrap();
        let mut sidecar = start(Path::new(SIDECAR), &backend_args, &state, &store, &scratch);
        let addr = sidecar.metrics_addr(Duration::from_secs(10)).unwrap();
        let backend = sidecar
            .wait_ready(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", sidecar.log()));
        settle(addr);
        let before_storm = SystemTime::now();
        let snap = scratch.path().join(format!("snap-{round}"));
        snapshot(&state, &snap);

        let stop = Arc::new(AtomicBool::new(false));
        let storm_thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || storm(&state, round, &stop))
        };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = Duration::from_millis(30 + seed % 900);
        std::thread::sleep(kill_after);
        let killed_at = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(sidecar.pid() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let status = sidecar.wait_exit(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        let writes = storm_thread.join().unwrap();
        assert!(
            status.is_some(),
            "round {round}: not dead {:?} after SIGKILL",
            killed_at.elapsed()
        );

        let report =
            StoreReader::verify(&store).unwrap_or_else(|e| panic!("round {round}: verify: {e}"));
        assert!(
            report.problems.is_empty(),
            "round {round}: verify found {:?}",
            report.problems
        );
        let out = scratch.path().join(format!("export-{round}"));
        StoreReader::open(&store)
            .and_then(|r| r.export(ts_ns(before_storm), &out))
            .unwrap_or_else(|e| panic!("round {round}: export: {e}"));
        let diffs = differences(&snap, &out);
        assert!(
            diffs.is_empty(),
            "round {round} ({backend}): the export before the storm differs: {diffs:?}"
        );
        table.push_str(&format!(
            "  round {round:>2} {backend:<10} killed after {:>4} ms of storm ({writes} writes): verify ok ({} records, {} chunks, torn tails {}), export before the storm = snapshot\n",
            kill_after.as_millis(),
            report.records,
            report.chunks,
            report.torn_tails.len()
        ));
        std::fs::remove_dir_all(&out).unwrap();
        std::fs::remove_dir_all(&snap).unwrap();
    }
    println!("kill -9 rounds:\n{table}");
}
