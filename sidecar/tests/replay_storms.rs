//! The journal's replay contract on this machine's backends, as the VM `replay.*` rows check it
//! for fentry and kprobe: under one sidecar, the parity workload (one scripted change of every
//! kind, each step's (op, path, from) lines expected, nothing else) and then 20 seeded storms of
//! every op kind without pauses, each replayed onto the tree it started as. Tracepoint mode with
//! each object, and inotify. Needs root.

use std::sync::Mutex;

use diffkeeper_tests::scenario::storms::{self, StormsOutcome};
use diffkeeper_tests::scenario::Options;

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");
const SEEDS: u64 = 20;
const STEPS: usize = 40;

/// One sidecar at a time: the canary allows about a second and this machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn run(options: Options) -> StormsOutcome {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let outcome = storms::run(&options, SEEDS, STEPS);
    assert!(
        outcome.pass,
        "{}\n{}\nfailed seeds:\n{}\n--- sidecar log ---\n{}",
        outcome.summary_line(),
        outcome.parity_line(),
        outcome.failed.join("\n"),
        outcome.log
    );
    assert_eq!(outcome.seeds, SEEDS);
    println!("{}\n{}", outcome.summary_line(), outcome.parity_line());
    outcome
}

#[test]
fn tracepoint_journals_every_kind_and_replays_to_the_real_tree_with_both_objects() {
    for object in ["modern", "compat"] {
        run(Options::new(SIDECAR, "tracepoint")
            .arg("--attach")
            .arg("tracepoint")
            .arg("--ebpf-object")
            .arg(object));
    }
}

#[test]
fn inotify_journals_every_kind_and_replays_to_the_real_tree() {
    run(Options::new(SIDECAR, "inotify").arg("--enable-ebpf=false"));
}
