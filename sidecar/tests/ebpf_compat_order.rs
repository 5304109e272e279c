//! The compat object's per-CPU perf buffers must come out as one stream in kernel-timestamp
//! order: a file created by a thread on one CPU and then written by a thread on another must be
//! journaled create first. Real eBPF (root), raw tracepoint mode, compat object forced.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

mod ebpf_common;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;

use diffkeeper_ebpf::event::Op;
use diffkeeper_ebpf::object::ObjectKind;
use diffkeeper_sidecar::change;
use diffkeeper_sidecar::ebpf::{self, AttachMode, ObjectChoice};
use ebpf_common::*;
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

const FILES: usize = 20_000;

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu).unwrap();
    sched_setaffinity(Pid::from_raw(0), &set).unwrap();
}

#[test]
fn a_create_on_one_cpu_comes_before_the_write_on_another() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "this test needs two CPUs, the machine has {cpus}"
    );
    let scratch = Scratch::new("compat-order");
    let root = scratch.dir("state");
    let mut cfg = config(AttachMode::Tracepoint, &scratch, vec![root.clone()]);
    cfg.object = ObjectChoice::Forced(ObjectKind::Compat);
    cfg.ringbuf_bytes = 8 << 20; // room for the whole run: a loss would not be an order problem
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    assert_eq!(session.object(), ObjectKind::Compat);
    let journal = std::thread::spawn(move || rx.iter().collect::<Vec<_>>());

    // The creator on CPU 0 hands each new file to the writer on CPU 1 at once.
    let (to_writer, for_writer) = mpsc::sync_channel::<PathBuf>(64);
    let writer = std::thread::spawn(move || {
        pin(1);
        for path in for_writer {
            OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(b"w")
                .unwrap();
        }
    });
    let creator_root = root.clone();
    let creator = std::thread::spawn(move || {
        pin(0);
        for i in 0..FILES {
            let path = creator_root.join(format!("f{i}"));
            File::create(&path).unwrap();
            to_writer.send(path).unwrap();
        }
    });
    creator.join().unwrap();
    writer.join().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let lost = session
        .lost_counter()
        .load(std::sync::atomic::Ordering::Relaxed);
    session.stop();
    let changes = journal.join().unwrap();

    assert_eq!(lost, 0, "the kernel dropped events: enlarge the buffers");
    // Per file: the op of its first line.
    let mut first: HashMap<&str, Op> = HashMap::new();
    for c in &changes {
        first
            .entry(c.path.to_str().expect("UTF-8 test names"))
            .or_insert(c.op);
    }
    let write_first: Vec<&str> = first
        .iter()
        .filter(|(_, op)| **op == Op::Write)
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(first.len(), FILES, "files journaled");
    assert!(
        write_first.is_empty(),
        "{} of {FILES} files journaled write before create, e.g. {:?}",
        write_first.len(),
        &write_first[..write_first.len().min(3)]
    );
}
