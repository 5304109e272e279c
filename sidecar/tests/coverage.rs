//! eBPF coverage of the watched directories beyond the start: a file system mounted inside a
//! root (before start: watched as a root of its own; after start: noticed through
//! /proc/self/mountinfo, and the sidecar switches to inotify), and a root renamed away and made
//! again (noticed by its changed identity; inotify then). Real eBPF in tracepoint mode, real
//! mounts in the test thread's private mount namespace, the real binary. Needs root.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diffkeeper_tests::filesystems::{mount_tmpfs, private_mounts_in_this_thread};
use diffkeeper_tests::http::http_get;
use diffkeeper_tests::scratch::Scratch;
use diffkeeper_tests::sidecar::SidecarProcess;

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");
const READY: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

struct Run {
    sidecar: SidecarProcess,
    journal: std::path::PathBuf,
    addr: SocketAddr,
}

fn start(state: &Path, scratch: &Scratch) -> Run {
    let journal = scratch.path().join("journal.jsonl");
    let mut cmd = Command::new(SIDECAR);
    cmd.args(["--attach", "tracepoint", "--coalesce-ms", "0"])
        .args(["--metrics-addr", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .arg("--journal")
        .arg(&journal)
        .stdout(Stdio::null());
    let mut sidecar = SidecarProcess::spawn(&mut cmd).unwrap();
    let addr = sidecar.metrics_addr(READY).unwrap();
    let backend = sidecar
        .wait_ready(READY)
        .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.log()));
    assert_eq!(backend, "tracepoint", "{}", sidecar.log());
    Run {
        sidecar,
        journal,
        addr,
    }
}

impl Run {
    /// Writes `file` and waits for its write line from `backend`.
    fn journals(&self, file: &Path, backend: &str) {
        std::fs::write(file, b"x").unwrap();
        let want = format!(
            "\"backend\":\"{backend}\",\"op\":\"write\",\"path\":\"{}\"",
            file.display()
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&self.journal)
            .unwrap_or_default()
            .contains(&want)
        {
            assert!(
                Instant::now() < deadline,
                "no {want} in the journal:\n{}\n{}",
                std::fs::read_to_string(&self.journal).unwrap_or_default(),
                self.sidecar.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn metric(&self, series: &str) -> Option<u64> {
        let (_, text) = http_get(self.addr, "/metrics").unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Waits for the switch to inotify and checks what it says.
    fn switched(&mut self, because: &str) {
        let line = self
            .sidecar
            .wait_for("switching to inotify", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}\n{}", self.sidecar.log()));
        assert!(line.contains(because), "{line}");
        self.sidecar
            .wait_ready(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}\n{}", self.sidecar.log()));
        assert_eq!(
            self.metric("diffkeeper_ebpf_coverage_fallbacks_total"),
            Some(1)
        );
        assert_eq!(
            self.metric("diffkeeper_backend_info{backend=\"inotify\"}"),
            Some(1)
        );
    }

    fn stop(mut self) {
        let (status, _) = self.sidecar.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "{}",
            self.sidecar.log()
        );
    }
}

#[test]
fn a_mount_inside_a_root_before_start_is_watched_by_ebpf() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("cover-mount-before");
    private_mounts_in_this_thread();
    let state = scratch.dir("state");
    let inner = state.join("cache");
    let _mounted = mount_tmpfs(&inner);
    let run = start(&state, &scratch);
    run.journals(&state.join("outer.txt"), "tracepoint");
    run.journals(&inner.join("inner.txt"), "tracepoint");
    let log = run.sidecar.log();
    assert!(
        log.contains(&format!(
            "{} (tmpfs) is mounted below watched directory {}",
            inner.display(),
            state.display()
        )),
        "{log}"
    );
    assert_eq!(
        run.metric("diffkeeper_ebpf_coverage_fallbacks_total"),
        Some(0)
    );
    run.stop();
}

#[test]
fn a_mount_inside_a_root_after_start_switches_to_inotify() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("cover-mount-after");
    private_mounts_in_this_thread();
    let state = scratch.dir("state");
    let mut run = start(&state, &scratch);
    let inner = state.join("late");
    let _mounted = mount_tmpfs(&inner);
    run.switched(&format!(
        "a file system was mounted on {} below watched directory {}",
        inner.display(),
        state.display()
    ));
    run.journals(&inner.join("inner.txt"), "inotify");
    run.journals(&state.join("outer.txt"), "inotify");
    run.stop();
}

#[test]
fn a_root_renamed_away_and_made_again_switches_to_inotify() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = Scratch::new("cover-replaced");
    let state = scratch.dir("state");
    let mut run = start(&state, &scratch);
    std::fs::rename(&state, scratch.path().join("state.old")).unwrap();
    std::fs::create_dir(&state).unwrap();
    run.switched(&format!(
        "watched directory {} was replaced",
        state.display()
    ));
    run.journals(&state.join("new.txt"), "inotify");
    run.stop();
}
