//! Real eBPF on this kernel (root): raw syscall tracepoint mode with the system BTF, and the
//! forced kprobe/fentry modes falling back to it with the right reasons.

mod ebpf_common;

use diffkeeper_sidecar::change;
use diffkeeper_sidecar::ebpf::{self, AttachMode};
use ebpf_common::*;

#[test]
fn tracepoint_with_system_btf_reports_exact_writes() {
    capture_logs();
    let scratch = Scratch::new("tp-system");
    let root = scratch.dir("state");
    let outside = scratch.dir("outside");
    let cfg = config(AttachMode::Tracepoint, &scratch, vec![root.clone()]);
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    assert_eq!(session.backend(), TRACEPOINT);
    assert_eq!(session.btf_source(), "system");
    assert_eq!(
        session.btf_path(),
        std::path::Path::new("/sys/kernel/btf/vmlinux")
    );
    assert!(!logs_containing("[eBPF] Loaded BTF spec from /sys/kernel/btf/vmlinux").is_empty());

    write_scenario(TRACEPOINT, &root, &outside, &rx, true);
    assert_eq!(
        session
            .lost_counter()
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    stop_and_check_unloaded(session);
}

/// `ts` is the kernel's time of each write, not when the reader (which reads in batches, up
/// to 10 ms late) received it: each lies between the wall-clock reads around its write call.
#[test]
fn change_time_is_when_the_write_happened() {
    use std::time::{Duration, SystemTime};

    capture_logs();
    let scratch = Scratch::new("tp-time");
    let root = scratch.dir("state");
    let cfg = config(AttachMode::Tracepoint, &scratch, vec![root.clone()]);
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    let timed_write = |name: &str| {
        let before = SystemTime::now();
        std::fs::write(root.join(name), b"tick").unwrap();
        (before, SystemTime::now())
    };
    let first = timed_write("first");
    std::thread::sleep(Duration::from_millis(40));
    let second = timed_write("second");
    let changes = collect_until(&rx, &root.join("second"));
    stop_and_check_unloaded(session);

    let write_ts = |name: &str| {
        let path = root.join(name).to_string_lossy().into_owned();
        changes
            .iter()
            .find(|c| c.op == change::Op::Write && c.path == path)
            .unwrap_or_else(|| panic!("no write of {path} in {changes:#?}"))
            .ts
    };
    // The conversion's own error is microseconds (the offset is sampled between two reads).
    let slack = Duration::from_millis(1);
    for (name, (before, after)) in [("first", first), ("second", second)] {
        let ts = write_ts(name);
        assert!(
            ts + slack >= before && ts <= after + slack,
            "{name}: ts {ts:?} outside its write call [{before:?}, {after:?}]"
        );
    }
    let apart = write_ts("second")
        .duration_since(write_ts("first"))
        .expect("the first write's ts comes first");
    assert!(apart >= Duration::from_millis(40) - slack, "{apart:?}");
    let age = SystemTime::now()
        .duration_since(write_ts("second"))
        .unwrap();
    assert!(age < Duration::from_secs(1), "{age:?}");
}

#[test]
fn forced_fentry_and_kprobe_fall_back_with_reasons() {
    capture_logs();
    let scratch = Scratch::new("tp-forced");
    for attach in [AttachMode::Fentry, AttachMode::Kprobe] {
        let root = scratch.dir(&format!("state-{attach:?}"));
        let outside = scratch.dir(&format!("outside-{attach:?}"));
        let cfg = config(attach, &scratch, vec![root.clone()]);
        let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
        let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
        // This kernel refuses fentry (EPERM) and has no kprobes: tracepoint is what is left.
        assert_eq!(session.backend(), TRACEPOINT, "{attach:?}");
        write_scenario(TRACEPOINT, &root, &outside, &rx, true);
        stop_and_check_unloaded(session);
    }
    let fentry =
        logs_containing("fentry: fexit dk_fexit_vfs_write on vfs_write: permission denied (EPERM)");
    assert!(
        fentry
            .iter()
            .any(|l| l.contains("(grant CAP_BPF and CAP_PERFMON, or run privileged;")),
        "fentry reason missing: {fentry:?}"
    );
    let kprobe =
        logs_containing("kprobe: kretprobe dk_kretprobe_write on vfs_write: kprobe PMU missing");
    assert_eq!(
        kprobe.len(),
        2,
        "once per start (fentry -> kprobe, kprobe): {kprobe:?}"
    );
    assert!(
        kprobe[0].contains("(the kernel has no kprobes"),
        "{kprobe:?}"
    );
}

#[test]
fn a_burst_above_ring_capacity_counts_every_lost_event() {
    capture_logs();
    let scratch = Scratch::new("tp-overflow");
    let root = scratch.dir("state");
    let mut cfg = config(AttachMode::Tracepoint, &scratch, vec![root.clone()]);
    cfg.ringbuf_bytes = 4096; // room for about 40 records
    const WRITES: u64 = 300_000;
    let burst = burst(&cfg, &root, WRITES, Drain::Keeping);
    assert!(
        burst.lost > 0,
        "a 4 KiB ring kept up with {WRITES} writes: nothing was lost"
    );
    assert_eq!(burst.accounted(), WRITES + 1, "{burst:?}");
}
