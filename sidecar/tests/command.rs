//! `diffkeeper-sidecar ... -- CMD ARGS...`: CMD runs once the sidecar is ready, the sidecar
//! stops when it exits (final capture and sync) and exits with its status (128+N for a signal),
//! a SIGTERM to the sidecar goes to CMD, and a CMD that cannot start is 127. Real processes,
//! inotify backend (the mode does not depend on the backend).

use std::process::Command;
use std::time::Duration;

use diffkeeper_store::{ts_ns, StoreReader};
use diffkeeper_tests::scratch::Scratch;
use diffkeeper_tests::sidecar::SidecarProcess;

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");

fn sidecar(scratch: &Scratch, extra: &[&str], command: &[&str]) -> SidecarProcess {
    let mut cmd = Command::new(SIDECAR);
    cmd.args(["--enable-ebpf=false", "--journal"])
        .arg(scratch.path().join("journal.jsonl"))
        .arg("--state-dir")
        .arg(scratch.dir("state"))
        .args(extra)
        .arg("--")
        .args(command);
    SidecarProcess::spawn(&mut cmd).expect("spawn the sidecar")
}

fn exit_code(mut process: SidecarProcess) -> (Option<i32>, String) {
    let status = process.wait_exit(Duration::from_secs(30));
    (status.and_then(|s| s.code()), process.log())
}

#[test]
fn the_commands_exit_status_is_the_sidecars() {
    for (script, want) in [
        ("exit 0", 0),
        ("exit 3", 3),
        ("kill -KILL $$", 137),
        ("kill -TERM $$", 143),
    ] {
        let scratch = Scratch::new("command");
        let mut process = sidecar(&scratch, &[], &["sh", "-c", script]);
        // Lines come in order: the command is started after the ready line.
        process.wait_ready(Duration::from_secs(30)).unwrap();
        process
            .wait_for("started the command", Duration::from_secs(10))
            .unwrap();
        let (code, log) = exit_code(process);
        assert_eq!(code, Some(want), "{script}:\n{log}");
    }
}

#[test]
fn a_sigterm_to_the_sidecar_goes_to_the_command() {
    let scratch = Scratch::new("command-term");
    // The command says it got the signal, then exits 7: the sidecar exits 7 too.
    let mut process = sidecar(
        &scratch,
        &[],
        &[
            "sh",
            "-c",
            "trap 'echo got TERM >&2; exit 7' TERM; while :; do sleep 0.05; done",
        ],
    );
    process
        .wait_for("started the command", Duration::from_secs(30))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (status, _) = process.terminate();
    let log = process.log();
    assert_eq!(status.and_then(|s| s.code()), Some(7), "{log}");
    assert!(
        log.contains("passing it to the command") && log.contains("got TERM"),
        "{log}"
    );
}

#[test]
fn a_command_that_cannot_start_is_127() {
    let scratch = Scratch::new("command-missing");
    let (code, log) = exit_code(sidecar(
        &scratch,
        &[],
        &["/nonexistent/diffkeeper-test-cmd"],
    ));
    assert_eq!(code, Some(127), "{log}");
    assert!(
        log.contains("cannot run \"/nonexistent/diffkeeper-test-cmd\""),
        "{log}"
    );
}

/// What the command wrote just before it exited is in the store: the sidecar captures what is
/// left and syncs before it exits.
#[test]
fn the_commands_last_writes_are_recorded_before_the_sidecar_exits() {
    let scratch = Scratch::new("command-store");
    let store = scratch.path().join("store");
    let state = scratch.path().join("state");
    let script = format!(
        "printf 'result: failed\\n' > '{0}/report.txt'; mkdir '{0}/out'; printf 'x' > '{0}/out/last.bin'; exit 1",
        state.display()
    );
    let (code, log) = exit_code(sidecar(
        &scratch,
        &["--store", store.to_str().unwrap()],
        &["sh", "-c", &script],
    ));
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("capture: stopped; store synced"), "{log}");
    let out = scratch.path().join("export");
    StoreReader::open(&store)
        .and_then(|r| r.export(ts_ns(std::time::SystemTime::now()), &out))
        .unwrap();
    assert_eq!(
        std::fs::read(out.join("report.txt")).unwrap(),
        b"result: failed\n"
    );
    assert_eq!(std::fs::read(out.join("out/last.bin")).unwrap(), b"x");
}
