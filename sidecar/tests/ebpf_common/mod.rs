//! Shared by the sidecar/tests/ebpf_*.rs tests: scratch dirs, a log capture, a config, and the
//! write scenario every eBPF mode must report exactly.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{IoSlice, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use diffkeeper_sidecar::change::{Backend, Change, ChangeQueue, Family, Op};
use diffkeeper_sidecar::ebpf::{AttachMode, EbpfConfig, EbpfSession, ObjectChoice};

pub use diffkeeper_tests::scratch::Scratch;

/// The backend every eBPF test on this machine ends up with (no kprobes, no fentry here).
pub const TRACEPOINT: Backend = Backend::Ebpf(Family::Tracepoint);

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.level() <= log::Level::Info || !meta.target().starts_with("aya")
    }
    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("{} {}", record.level(), record.args());
        eprintln!("{line}");
        LOGS.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

/// Captures every log line of this test binary (also echoed to stderr).
pub fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
}

pub fn logs_containing(needle: &str) -> Vec<String> {
    LOGS.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

pub use diffkeeper_tests::btf::kernel_release;

pub fn config(attach: AttachMode, scratch: &Scratch, roots: Vec<PathBuf>) -> EbpfConfig {
    EbpfConfig {
        attach,
        object: ObjectChoice::Auto,
        btf_cache_dir: scratch.dir("btf-cache"),
        kernel_release: kernel_release(),
        roots,
        ringbuf_bytes: 1 << 20,
        kretprobe_maxactive: diffkeeper_sidecar::ebpf::KRETPROBE_MAXACTIVE_MAX,
        tracefs_dir: None,
    }
}

/// A journaled path as text (these tests name their files in UTF-8).
pub fn text(path: &Path) -> &str {
    path.to_str().expect("UTF-8 test names")
}

/// Collects changes until one for `marker` arrives (events from one thread are in order).
pub fn collect_until(rx: &ChangeQueue, marker: &Path) -> Vec<Change> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let change = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!("no event for {} within 5 s; got {got:#?}", marker.display())
        });
        let done = change.path == marker && change.op == Op::Write;
        got.push(change);
        if done {
            return got;
        }
    }
}

fn thread_comm() -> String {
    fs::read_to_string("/proc/thread-self/comm")
        .unwrap()
        .trim()
        .to_string()
}

/// Writes of known sizes through write, pwrite64, writev, pwritev and pwritev2, in nested
/// directories (one 20 levels deep) and outside the root; checks the exact change list.
/// `sees_creates`: whether the mode reports file creation.
pub fn write_scenario(
    backend: Backend,
    root: &Path,
    outside: &Path,
    rx: &ChangeQueue,
    sees_creates: bool,
) {
    let deep_dir = root.join("sub/dir/deep");
    fs::create_dir_all(&deep_dir).unwrap();
    let very_deep: PathBuf = (1..=20).fold(root.to_path_buf(), |p, i| p.join(format!("d{i}")));
    fs::create_dir_all(&very_deep).unwrap();
    let a = root.join("a.txt");
    let bin = deep_dir.join("file.bin");
    let leaf = very_deep.join("leaf");
    let marker = root.join("zz-marker");

    fs::write(outside.join("x.txt"), b"outside").unwrap(); // must not be reported
    fs::write(&a, b"0123456789").unwrap(); // write(2), 10 bytes
    let mut f = File::create(&bin).unwrap();
    f.write_all(&[7u8; 123]).unwrap(); // 123
    drop(f);
    let f = OpenOptions::new().write(true).open(&a).unwrap();
    f.write_at(b"abcde", 2).unwrap(); // pwrite64, 5
    drop(f);
    let mut f = OpenOptions::new().append(true).open(&bin).unwrap();
    let n = f
        .write_vectored(&[IoSlice::new(b"abc"), IoSlice::new(b"defg")])
        .unwrap(); // writev, 7
    assert_eq!(n, 7);
    let iov = [IoSlice::new(b"123456789")];
    let fd = f.as_raw_fd();
    // SAFETY: iov points at live buffers for the duration of the calls.
    let n = unsafe { nix::libc::pwritev(fd, iov.as_ptr().cast(), 1, 0) }; // pwritev, 9
    assert_eq!(n, 9);
    let iov = [IoSlice::new(b"1234")];
    let n = unsafe { nix::libc::pwritev2(fd, iov.as_ptr().cast(), 1, 0, 0) }; // pwritev2, 4
    assert_eq!(n, 4);
    drop(f);
    fs::write(&leaf, b"L").unwrap(); // 1 byte, 21 links below the root
    fs::write(outside.join("y.txt"), b"outside again").unwrap();
    fs::write(&marker, b"m").unwrap();

    let got = collect_until(rx, &marker);
    let pid = std::process::id();
    let comm = thread_comm();
    let mut want: Vec<(Op, PathBuf, Option<u64>)> = Vec::new();
    if backend.reports(Op::Mkdir) {
        let made = |top: &Path, levels: usize| {
            let mut dirs: Vec<PathBuf> = top
                .ancestors()
                .take(levels)
                .map(Path::to_path_buf)
                .collect();
            dirs.reverse();
            dirs
        };
        for dir in made(&deep_dir, 3).into_iter().chain(made(&very_deep, 20)) {
            want.push((Op::Mkdir, dir, None));
        }
    }
    let created = |p: &Path, want: &mut Vec<_>| {
        if sees_creates {
            want.push((Op::Create, p.to_path_buf(), None));
        }
    };
    created(&a, &mut want);
    want.push((Op::Write, a.clone(), Some(10)));
    created(&bin, &mut want);
    want.push((Op::Write, bin.clone(), Some(123)));
    want.push((Op::Write, a.clone(), Some(5)));
    want.push((Op::Write, bin.clone(), Some(7)));
    want.push((Op::Write, bin.clone(), Some(9)));
    want.push((Op::Write, bin.clone(), Some(4)));
    created(&leaf, &mut want);
    want.push((Op::Write, leaf.clone(), Some(1)));
    created(&marker, &mut want);
    want.push((Op::Write, marker.clone(), Some(1)));

    let seen: Vec<(Op, PathBuf, Option<u64>)> = got
        .iter()
        .map(|c| (c.op, PathBuf::from(&c.path), c.bytes))
        .collect();
    assert_eq!(seen, want, "changes seen vs expected");
    for c in &got {
        assert_eq!(c.backend, backend);
        assert_eq!(c.pid, Some(pid), "{c:?}");
        assert_eq!(c.comm, Some(comm.as_str().into()), "{c:?}");
        assert!(c.from.is_none());
    }
}

/// Stops the session and checks that none of its programs is still loaded in the kernel.
pub fn stop_and_check_unloaded(session: EbpfSession) {
    let ids = session.program_ids();
    assert!(!ids.is_empty(), "the session reports no loaded programs");
    session.stop();
    // The kernel frees a program after an RCU grace period, not at the last close().
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let still: Vec<u32> = aya::programs::loaded_programs()
            .filter_map(|p| p.ok().map(|p| p.id()))
            .filter(|id| ids.contains(id))
            .collect();
        if still.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "programs {still:?} still loaded 3 s after stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `btf` as the cache's `<release>.btf` for `cfg`; returns its path.
pub fn write_cached_btf(cfg: &EbpfConfig, btf: &[u8]) -> PathBuf {
    let cached = cfg
        .btf_cache_dir
        .join(format!("{}.btf", cfg.kernel_release));
    fs::write(&cached, btf).unwrap();
    cached
}

/// What a [`burst`] came to, as the journal would see it: every change it made is in exactly one
/// of `received`, `reported_lost` and `dropped_at_stop`.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// Changes that reached the queue.
    pub received: u64,
    /// The changes the gaps that reached the queue said were lost.
    pub reported_lost: u64,
    /// Events the kernel dropped (the session's lost counter, read once more at stop).
    pub lost: u64,
    /// Changes (and gaps' counts) the reader dropped at stop because the queue stayed full past
    /// its grace: reported too (the journal's last gap line), so accounted for.
    pub dropped_at_stop: u64,
}

impl Burst {
    pub fn accounted(&self) -> u64 {
        self.received + self.reported_lost + self.dropped_at_stop
    }
}

/// How the [`burst`]'s queue is drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// As the journal does, from the start.
    Keeping,
    /// Not at all until the session has stopped: a journal whose output is blocked.
    StalledUntilStopped,
}

/// Starts eBPF with `cfg` (whose buffers should be far too small), makes one file under `root`
/// and writes 1 byte to it `writes` times while the changes are drained as `drain` says (the
/// queue is bounded), then stops.
pub fn burst(cfg: &EbpfConfig, root: &Path, writes: u64, drain: Drain) -> Burst {
    use diffkeeper_sidecar::change::Record;
    use std::io::Write;
    use std::sync::atomic::Ordering;

    let (tx, queue) = diffkeeper_sidecar::change::queue(diffkeeper_sidecar::change::QUEUE_CAPACITY);
    let session = diffkeeper_sidecar::ebpf::start(cfg, tx)
        .unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    let lost = session.lost_counter();
    let (stopped_tx, stopped) = std::sync::mpsc::channel::<()>();
    let journal = std::thread::spawn(move || {
        if drain == Drain::StalledUntilStopped {
            let _ = stopped.recv();
        }
        let (mut received, mut reported_lost) = (0, 0);
        for record in queue.rx.iter().flatten() {
            match record {
                Record::Change(_) => received += 1,
                Record::Gap(gap) => reported_lost += gap.lost.unwrap_or(0),
                Record::Fence(_) => {} // only inotify fences its gaps
            }
        }
        (received, reported_lost, queue.dropped_at_stop())
    });
    let mut f = fs::File::create(root.join("burst")).unwrap(); // + 1 create event
    for _ in 0..writes {
        f.write_all(b"x").unwrap();
    }
    drop(f);
    std::thread::sleep(Duration::from_millis(100));
    session.stop(); // drains the buffers and refreshes the lost counter; drops the sink
    drop(stopped_tx);
    let (received, reported_lost, dropped_at_stop) = journal.join().unwrap();
    Burst {
        received,
        reported_lost,
        lost: lost.load(Ordering::Relaxed),
        dropped_at_stop,
    }
}
