//! The journal scenario (diffkeeper_tests::scenario) against the real sidecar binary: real
//! eBPF on this kernel (tracepoint mode), with the system BTF, with the system BTF hidden and a
//! cached copy, with no BTF at all (inotify fallback), and in inotify mode; the operations
//! scenario in tracepoint mode with both objects. Needs root.

use std::sync::Mutex;

use diffkeeper_tests::btf::{kernel_release, system_btf};
use diffkeeper_tests::scenario::{self, Options, Outcome};
use diffkeeper_tests::scratch::Scratch;

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");

/// One sidecar at a time: the canary allows about a second and this machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn run(options: Options) -> Outcome {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let outcome = scenario::run(&options);
    assert!(
        outcome.pass,
        "{}\n--- sidecar log ---\n{}--- journal ---\n{}",
        outcome.summary_line(),
        outcome.log,
        outcome.journal
    );
    assert!(outcome.events > 0 && outcome.stop_ms.is_some_and(|ms| ms < 1000));
    outcome
}

fn assert_logged(outcome: &Outcome, needle: &str) {
    assert!(
        outcome.log.contains(needle),
        "the log lacks {needle:?}:\n{}",
        outcome.log
    );
}

#[test]
fn tracepoint_with_system_btf_journals_exactly_the_scenario() {
    let outcome = run(Options::new(SIDECAR, "tracepoint")
        .arg("--attach")
        .arg("tracepoint"));
    assert_logged(
        &outcome,
        "[eBPF] Loaded BTF spec from /sys/kernel/btf/vmlinux",
    );
    // Every backend line carries the writer's pid: the scenario made the changes itself (the
    // journal's own gap and repair lines carry none).
    let pid = format!("\"pid\":{}", std::process::id());
    assert!(
        outcome
            .journal
            .lines()
            .filter(|l| !l.contains("\"op\":\"gap\"") && !l.contains("\"repair\":true"))
            .all(|l| l.contains(&pid)),
        "{}",
        outcome.journal
    );
}

/// The operations scenario (failed operations; new names from link, linkat, symlink and
/// symlinkat relative to a directory descriptor and to the working directory, O_TMPFILE files
/// given a name; names outside the root) in tracepoint mode with each object: every new name
/// is journaled as `create` (the absolute one too: the scenario shares the sidecar's root), the
/// one with `..` as its directory flagged `truncated`, and the log says why.
#[test]
fn tracepoint_journals_new_names_with_both_objects() {
    for object in ["modern", "compat"] {
        let mut options = Options::new(SIDECAR, "tracepoint")
            .arg("--attach")
            .arg("tracepoint")
            .arg("--ebpf-object")
            .arg(object);
        options.ops = true;
        let outcome = run(options);
        assert_logged(&outcome, &format!("[eBPF] object {object}"));
        assert_logged(&outcome, "a `..` component");
    }
}

/// The races (diffkeeper_tests::scenario::races) in tracepoint mode with each object: a dup2
/// onto the written fd during a 32+ MiB write (a file, then /dev/null as the decoy) leaves the
/// write on the file written, with its byte count; 5,000 symlinkat() calls while another thread
/// flips the name's first byte leave no journaled name that was never created, and every one
/// created is journaled or covered by a flagged line on its directory. Both failed when the
/// names and fds were resolved at sys_exit.
#[test]
fn tracepoint_names_what_the_kernel_did_under_races_with_both_objects() {
    for object in ["modern", "compat"] {
        let options = Options::new(SIDECAR, "tracepoint")
            .arg("--attach")
            .arg("tracepoint")
            .arg("--ebpf-object")
            .arg(object);
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = scenario::races::run(&options);
        eprintln!("{object}: {}", outcome.summary_line());
        assert!(
            outcome.pass,
            "{object}: {}\n--- sidecar log ---\n{}",
            outcome.summary_line(),
            outcome.log
        );
        assert!(
            outcome.dup2_raced == 2 && outcome.flips > 0,
            "{}",
            outcome.summary_line()
        );
    }
}

#[test]
fn cached_btf_is_used_when_the_kernel_exposes_none() {
    let cache = Scratch::new("sidecar-btf-cache");
    let cached = cache.path().join(format!("{}.btf", kernel_release()));
    std::fs::write(&cached, &*system_btf()).unwrap();
    let mut options = Options::new(SIDECAR, "tracepoint")
        .arg("--attach")
        .arg("tracepoint")
        .arg("--btf-cache-dir")
        .arg(cache.path());
    options.hide_system_btf = true;
    let outcome = run(options);
    assert_logged(
        &outcome,
        &format!("[eBPF] Loaded BTF spec from {}", cached.display()),
    );
    assert!(
        !outcome.log.contains("/sys/kernel/btf/vmlinux\n"),
        "{}",
        outcome.log
    );
}

#[test]
fn without_any_btf_the_sidecar_falls_back_to_inotify_and_says_why() {
    let cache = Scratch::new("sidecar-empty-cache");
    let mut options = Options::new(SIDECAR, "inotify")
        .arg("--btf-cache-dir")
        .arg(cache.path());
    options.hide_system_btf = true;
    let outcome = run(options);
    assert_logged(&outcome, "falling back to inotify");
    // The reason names the file that would have made eBPF possible.
    let wanted = cache.path().join(format!("{}.btf", kernel_release()));
    assert_logged(&outcome, &wanted.display().to_string());
    assert_logged(&outcome, "diffkeeper-init");
}

#[test]
fn inotify_mode_journals_the_scenario_without_pid_comm_bytes() {
    let outcome = run(Options::new(SIDECAR, "inotify").arg("--enable-ebpf=false"));
    assert_logged(&outcome, "eBPF disabled");
    for field in ["\"pid\"", "\"comm\"", "\"bytes\""] {
        assert!(!outcome.journal.contains(field), "{}", outcome.journal);
    }
}
