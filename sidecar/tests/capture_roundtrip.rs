//! The state recorder's round trip against the real sidecar with `--store`: a workload in
//! phases (diffkeeper_tests::recorder::workload), a `cp -a` snapshot after each, and the store's
//! export at each phase's time held against its snapshot, in inotify mode and in real eBPF
//! tracepoint mode. A difference at a path changed through an operation the backend does not
//! report would be printed as a KNOWN GAP with its reason; both backends report every op of the
//! workload (chmod as `attrib`, truncations as writes), so their every phase must match exactly.
//! Needs root.

use std::sync::Mutex;

use diffkeeper_sidecar::change::{Backend, Family, Op};
use diffkeeper_store::{ts_ns, StoreReader};
use diffkeeper_tests::recorder::{round_trip, Options};

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");

/// One sidecar at a time: this machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn export(
    store: &std::path::Path,
    at: std::time::SystemTime,
    out: &std::path::Path,
) -> Result<(), String> {
    let reader = StoreReader::open(store).map_err(|e| e.to_string())?;
    reader
        .export(ts_ns(at), out)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Whether `backend` reports the workload's op name at all.
fn reports(backend: Backend) -> impl Fn(&str) -> bool {
    move |op| match op {
        "rename" => backend.reports(Op::Rename),
        "delete" => backend.reports(Op::Delete),
        "attrib" => backend.reports(Op::Attrib),
        "mkdir" => backend.reports(Op::Mkdir),
        // Names given by absolute path are placed below their root by every backend.
        "link by absolute path" => true,
        other => panic!("the workload names an op this test does not know: {other}"),
    }
}

fn run(backend: Backend, args: &[&str]) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let reports = reports(backend);
    let result = round_trip(&Options {
        sidecar: std::path::Path::new(SIDECAR),
        backend_args: args.iter().map(|a| a.to_string()).collect(),
        reports: &reports,
        export: &export,
    });
    println!("{}", result.table());
    assert_eq!(result.backend, backend.as_str(), "{}", result.log);
    assert_eq!(result.failures(), 0, "{}\n{}", result.table(), result.log);
    // Every op the workload uses is reported: no known gap at all.
    for phase in &result.phases {
        assert!(
            phase.explained.is_empty(),
            "{}: {:?}\n{}",
            phase.name,
            phase.explained,
            result.table()
        );
    }
}

#[test]
fn inotify_round_trip_exports_every_phase_as_snapshotted() {
    run(Backend::Inotify, &["--enable-ebpf=false"]);
}

#[test]
fn tracepoint_round_trip_exports_every_phase_as_snapshotted() {
    // Rename, delete, mkdir, chmod, links and truncations (as writes) are all reported.
    run(
        Backend::Ebpf(Family::Tracepoint),
        &["--attach", "tracepoint"],
    );
}

/// A restarted sidecar's baseline brings the store up to date with what happened while none
/// ran: a file deleted meanwhile gets a tombstone, a changed one a new version.
#[test]
fn a_restart_records_what_changed_while_no_sidecar_ran() {
    use diffkeeper_tests::recorder::compare::differences;
    use diffkeeper_tests::recorder::{settle, snapshot, start_inotify_ready};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = diffkeeper_tests::scratch::Scratch::new("restart");
    let state = scratch.dir("state");
    let store = scratch.path().join("store");
    std::fs::write(state.join("kept.txt"), "kept\n").unwrap();
    std::fs::write(state.join("deleted.txt"), "deleted while stopped\n").unwrap();
    std::fs::write(state.join("changed.txt"), "v1\n").unwrap();
    for round in 0..2 {
        let (mut sidecar, addr) =
            start_inotify_ready(std::path::Path::new(SIDECAR), &state, &store, &scratch);
        settle(addr);
        let (status, _) = sidecar.terminate();
        assert!(status.is_some_and(|s| s.success()), "{}", sidecar.log());
        if round == 0 {
            std::fs::remove_file(state.join("deleted.txt")).unwrap();
            std::fs::write(state.join("changed.txt"), "v2, while stopped\n").unwrap();
        }
    }
    let snap = scratch.path().join("snap");
    snapshot(&state, &snap);
    let out = scratch.path().join("export");
    export(&store, std::time::SystemTime::now(), &out).unwrap();
    assert_eq!(differences(&snap, &out), []);
}

/// A file written every 2 ms without a pause (never quiet for the 20 ms a read waits for) is
/// put off once, said once, then recorded all the same; its last version is in the store
/// after the sidecar stops.
#[test]
fn a_file_written_without_pause_is_recorded_and_its_deferral_said_once() {
    use diffkeeper_tests::recorder::start_inotify_ready;
    use std::io::Write;
    use std::time::{Duration, Instant};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = diffkeeper_tests::scratch::Scratch::new("hot");
    let state = scratch.dir("state");
    let store = scratch.path().join("store");
    let (mut sidecar, _) =
        start_inotify_ready(std::path::Path::new(SIDECAR), &state, &store, &scratch);
    let mut log = std::fs::File::create(state.join("hot.log")).unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while Instant::now() < until {
        writeln!(log, "line {n}").unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(log);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = sidecar.terminate();
    assert!(status.is_some_and(|s| s.success()), "{}", sidecar.log());
    let journal = std::fs::read_to_string(scratch.path().join("journal.jsonl")).unwrap();
    let deferred = journal
        .lines()
        .filter(|l| l.contains(r#""content":"deferred""#))
        .count();
    assert!(deferred <= 1, "said {deferred} times:\n{journal}");
    let reader = StoreReader::open(&store).unwrap();
    let versions = reader.timeline(Some(b"hot.log")).len();
    let out = scratch.path().join("export");
    export(&store, std::time::SystemTime::now(), &out).unwrap();
    assert_eq!(
        std::fs::read(out.join("hot.log")).unwrap(),
        std::fs::read(state.join("hot.log")).unwrap()
    );
    println!("{n} writes over 3 s: {versions} versions recorded, deferral said {deferred} time(s)");
    assert!(
        versions >= 2,
        "recorded only at the end: {versions} versions"
    );
}
