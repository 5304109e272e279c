mod ebpf_common;
use std::sync::mpsc;
use std::os::fd::AsRawFd;
use diffkeeper_sidecar::ebpf::{self, AttachMode};
use ebpf_common::*;

fn stats(ids: &[u32]) -> (u64, u64) {
    let mut t = (0, 0);
    for p in aya::programs::loaded_programs().flatten() {
        if ids.contains(&p.id()) { t.0 += p.run_time().as_nanos() as u64; t.1 += p.run_count(); }
    }
    t
}

#[test]
#[ignore]
fn measure() {
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").unwrap();
    let scratch = Scratch::new("measure");
    let root = scratch.dir("state");
    let outside_same = scratch.dir("outside");
    let other_dev = std::path::PathBuf::from(std::env::var("OTHER").unwrap_or("/dev/shm".into()));
    let cfg = config(AttachMode::Tracepoint, &scratch, vec![root.clone()]);
    let (tx, rx) = mpsc::channel();
    let session = ebpf::start(&cfg, tx).unwrap();
    let ids = session.program_ids();
    let n: usize = std::env::var("N").map(|v| v.parse().unwrap()).unwrap_or(1_000_000);
    for (label, dir) in [("outside, other device", other_dev.clone()), ("outside, same device", outside_same.clone()), ("inside", root.clone())] {
        let path = dir.join("bench-file");
        let f = std::fs::File::create(&path).unwrap();
        let fd = f.as_raw_fd();
        let before = stats(&ids);
        let t0 = std::time::Instant::now();
        for _ in 0..n { unsafe { nix::libc::write(fd, b"x".as_ptr().cast(), 1); } }
        let el = t0.elapsed();
        let after = stats(&ids);
        let runs = after.1 - before.1;
        let ns = after.0 - before.0;
        eprintln!("{label}: {n} writes in {el:?} ({:.0} ns/write); program runs {runs}, {:.1} ns/run", el.as_nanos() as f64 / n as f64, ns as f64 / runs as f64);
        drop(f);
        std::fs::remove_file(&path).ok();
    }
    let mut count = 0u64;
    while let Ok(_c) = rx.recv_timeout(std::time::Duration::from_millis(500)) { count += 1; }
    eprintln!("events received {count}, lost {}", session.lost_counter().load(std::sync::atomic::Ordering::Relaxed));
    session.stop();
}
