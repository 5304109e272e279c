//! The compat object (for kernels 4.18-5.16: perf buffers, unrolled walk, settings in maps)
//! forced on this kernel must journal exactly what the modern object does: the two objects are
//! interchangeable. Real eBPF (root), raw tracepoint mode.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

mod ebpf_common;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use diffkeeper_ebpf::object::ObjectKind;
use diffkeeper_sidecar::change;
use diffkeeper_sidecar::ebpf::{self, AttachMode, EbpfConfig, ObjectChoice};
use diffkeeper_tests::btf::system_btf;
use diffkeeper_tests::mountns::hide_system_btf_in_this_thread;
use ebpf_common::*;

fn compat(mut cfg: EbpfConfig) -> EbpfConfig {
    cfg.object = ObjectChoice::Forced(ObjectKind::Compat);
    cfg
}

#[test]
fn auto_picks_the_modern_object_on_this_kernel_and_says_why() {
    capture_logs();
    let scratch = Scratch::new("compat-auto");
    let cfg = config(AttachMode::Tracepoint, &scratch, vec![scratch.dir("state")]);
    let (tx, _rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    assert_eq!(session.object(), ObjectKind::Modern);
    let line = "[eBPF] object modern: this kernel has bpf_loop and the BPF ring buffer";
    assert!(
        !logs_containing(line).is_empty(),
        "log line {line:?} missing"
    );
    stop_and_check_unloaded(session);
}

#[test]
fn compat_object_journals_the_same_scenario_with_system_btf() {
    capture_logs();
    let scratch = Scratch::new("compat-system");
    let root = scratch.dir("state");
    let outside = scratch.dir("outside");
    let cfg = compat(config(AttachMode::Tracepoint, &scratch, vec![root.clone()]));
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    assert_eq!(
        (session.object(), session.backend()),
        (ObjectKind::Compat, TRACEPOINT)
    );
    assert!(!logs_containing("[eBPF] object compat: forced by --ebpf-object").is_empty());
    // Compat has no tp_btf program: the raw tracepoint is what attaches.
    assert!(
        !logs_containing("tracepoint mode: raw_tracepoint sys_enter+sys_exit attached").is_empty()
    );
    write_scenario(TRACEPOINT, &root, &outside, &rx, true);
    assert_eq!(session.lost_counter().load(Ordering::Relaxed), 0);
    stop_and_check_unloaded(session);
}

#[test]
fn compat_object_journals_the_same_scenario_with_cached_btf() {
    capture_logs();
    let real = system_btf();
    hide_system_btf_in_this_thread();
    let scratch = Scratch::new("compat-cache");
    let root = scratch.dir("state");
    let outside = scratch.dir("outside");
    let cfg = compat(config(AttachMode::Auto, &scratch, vec![root.clone()]));
    write_cached_btf(&cfg, &real);
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    assert_eq!(
        (session.object(), session.btf_source()),
        (ObjectKind::Compat, "cache")
    );
    write_scenario(TRACEPOINT, &root, &outside, &rx, true);
    stop_and_check_unloaded(session);
}

/// Compat stamps events with CLOCK_MONOTONIC (no boot-clock helper before 5.8): converted, each
/// `ts` still lies within its write call.
#[test]
fn compat_change_time_is_when_the_write_happened() {
    capture_logs();
    let scratch = Scratch::new("compat-time");
    let root = scratch.dir("state");
    let cfg = compat(config(AttachMode::Tracepoint, &scratch, vec![root.clone()]));
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    let before = SystemTime::now();
    std::fs::write(root.join("tick"), b"tick").unwrap();
    let after = SystemTime::now();
    let changes = collect_until(&rx, &root.join("tick"));
    stop_and_check_unloaded(session);
    let path = root.join("tick").to_string_lossy().into_owned();
    let ts = changes
        .iter()
        .find(|c| c.op == change::Op::Write && c.path == path)
        .unwrap_or_else(|| panic!("no write of {path} in {changes:#?}"))
        .ts;
    let slack = Duration::from_millis(1);
    assert!(
        ts + slack >= before && ts <= after + slack,
        "ts {ts:?} outside its write call [{before:?}, {after:?}]"
    );
}

/// Every write is either received, counted as lost or counted as dropped at stop, exactly, and
/// the losses are logged.
#[test]
fn compat_perf_buffer_overflow_counts_every_lost_event() {
    capture_logs();
    let scratch = Scratch::new("compat-overflow");
    let root = scratch.dir("state");
    let mut cfg = compat(config(AttachMode::Tracepoint, &scratch, vec![root.clone()]));
    cfg.ringbuf_bytes = 4096; // the perf buffers' floor: 16 KiB per CPU
    const WRITES: u64 = 300_000;
    let burst = burst(&cfg, &root, WRITES, Drain::Keeping);
    assert!(
        burst.lost > 0,
        "16 KiB perf buffers kept up with {WRITES} writes"
    );
    assert_eq!(burst.accounted(), WRITES + 1, "{burst:?}");
    assert!(
        !logs_containing("[eBPF] the kernel dropped").is_empty(),
        "losses must be logged, not only counted"
    );
}

/// Writes elsewhere on the host while the session stops are no loss of its own: the programs
/// are gone before their tail-call table is emptied (dk_sys_enter counts every call it cannot
/// hand on as lost, whoever made it).
#[test]
fn compat_stop_counts_no_loss_for_writes_elsewhere() {
    use std::io::Write;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    capture_logs();
    let scratch = Scratch::new("compat-stop");
    let cfg = compat(config(
        AttachMode::Tracepoint,
        &scratch,
        vec![scratch.dir("state")],
    ));
    let (tx, _rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    let lost = session.lost_counter();
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut null = std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .unwrap();
                while !done.load(Ordering::Relaxed) {
                    null.write_all(b"x").unwrap();
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    session.stop();
    done.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(
        lost.load(Ordering::Relaxed),
        0,
        "writes to /dev/null were counted as lost events"
    );
}

/// A journal that takes nothing until the sidecar stopped (its output blocked): what the reader
/// could not hand on within the stop grace, changes and the kernel's last loss count alike, is
/// counted as dropped at stop, and nothing else is missing.
#[test]
fn compat_stalled_journal_counts_what_was_dropped_at_stop() {
    capture_logs();
    let scratch = Scratch::new("compat-stalled");
    let root = scratch.dir("state");
    let mut cfg = compat(config(AttachMode::Tracepoint, &scratch, vec![root.clone()]));
    cfg.ringbuf_bytes = 4096;
    const WRITES: u64 = 30_000;
    let burst = burst(&cfg, &root, WRITES, Drain::StalledUntilStopped);
    assert!(
        burst.dropped_at_stop > 0,
        "nothing dropped at stop: {burst:?}"
    );
    assert_eq!(burst.accounted(), WRITES + 1, "{burst:?}");
    assert!(
        !logs_containing("[eBPF] stopping: dropped").is_empty(),
        "drops at stop must be logged, not only counted"
    );
}
