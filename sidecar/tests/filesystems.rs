//! State directories on each kind of file system, with real eBPF in tracepoint mode (the only
//! eBPF mode this build machine has) and the real sidecar binary: loop-mounted btrfs (a plain
//! directory and one in a subvolume), ext4 and XFS images, tmpfs and overlayfs. Each must
//! journal a write under each root through eBPF, never stay silent. Needs root.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diffkeeper_tests::filesystems::{make_and_mount, private_mounts_in_this_thread, Fs};
use diffkeeper_tests::scratch::Scratch;
use diffkeeper_tests::sidecar::SidecarProcess;

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");

/// One eBPF sidecar at a time: the canary allows about a second and this machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// Starts a tracepoint-mode sidecar on `roots`, writes `written-by-test` in each, and returns
/// the backend it got ready with, the journal and the log.
fn journal_a_write_in_each(roots: &[PathBuf], journal: &Path) -> (String, String, String) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new(SIDECAR);
    cmd.args(["--attach", "tracepoint", "--coalesce-ms", "0", "--journal"])
        .arg(journal)
        .stdout(Stdio::null());
    for root in roots {
        cmd.arg("--state-dir").arg(root);
    }
    let mut sidecar = SidecarProcess::spawn(&mut cmd).unwrap();
    let backend = sidecar
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.log()));
    let wanted: Vec<String> = roots
        .iter()
        .map(|root| {
            let file = root.join("written-by-test");
            std::fs::write(&file, b"hello").unwrap();
            format!("\"op\":\"write\",\"path\":\"{}\"", file.display())
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(journal).unwrap_or_default();
        if wanted.iter().all(|w| text.contains(w)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = sidecar.terminate();
    assert!(status.is_some_and(|s| s.success()), "{}", sidecar.log());
    (
        backend,
        std::fs::read_to_string(journal).unwrap_or_default(),
        sidecar.log(),
    )
}

fn assert_journaled_by_ebpf(fs: Fs, roots: &[PathBuf], journal: &Path) {
    let (backend, text, log) = journal_a_write_in_each(roots, journal);
    assert_eq!(backend, "tracepoint", "{fs:?}: {log}");
    for root in roots {
        let want = format!(
            "\"backend\":\"tracepoint\",\"op\":\"write\",\"path\":\"{}\"",
            root.join("written-by-test").display()
        );
        assert!(
            text.contains(&want),
            "{fs:?}: no {want} in the journal:\n{text}\n{log}"
        );
    }
}

fn on(fs: Fs, body: impl FnOnce(&Path, &Path)) {
    let scratch = Scratch::new(&format!("fs-{}", fs.name()));
    // The test thread's own mount namespace: the sidecar (a child) sees the same mounts.
    private_mounts_in_this_thread();
    let mounted = make_and_mount(fs, scratch.path());
    body(mounted.path(), &scratch.path().join("journal.jsonl"));
}

#[test]
fn ext4_xfs_tmpfs_and_overlay_roots_are_journaled_by_ebpf() {
    for fs in [Fs::Ext4, Fs::Xfs, Fs::Tmpfs, Fs::Overlay] {
        on(fs, |mnt, journal| {
            let sub = mnt.join("state");
            std::fs::create_dir(&sub).unwrap();
            // The mount point itself and a directory below it.
            assert_journaled_by_ebpf(fs, &[mnt.to_owned(), sub], journal);
        });
    }
}

#[test]
fn btrfs_roots_are_matched_by_the_kernels_device_not_stats() {
    on(Fs::Btrfs, |mnt, journal| {
        // A directory in the top-level subvolume, then one in subvolume `sub`: stat(2)
        // reports a device of its own for each, the kernel the file system's.
        let top = mnt.join("top");
        let inner = mnt.join("sub/inner");
        std::fs::create_dir(&top).unwrap();
        std::fs::create_dir(&inner).unwrap();
        assert_journaled_by_ebpf(Fs::Btrfs, &[top], journal);
        assert_journaled_by_ebpf(Fs::Btrfs, &[inner], journal);
        assert_journaled_by_ebpf(Fs::Btrfs, &[mnt.join("sub")], journal);
    });
}

#[test]
fn btrfs_roots_ebpf_cannot_tell_apart_fall_back_to_inotify_and_say_why() {
    on(Fs::Btrfs, |mnt, journal| {
        let top = mnt.join("top");
        let inner = mnt.join("sub/inner");
        std::fs::create_dir(&top).unwrap();
        std::fs::create_dir(&inner).unwrap();
        // Both are inode 257 (the first directory of their subvolume) on one superblock.
        let (backend, text, log) = journal_a_write_in_each(&[top.clone(), inner.clone()], journal);
        assert_eq!(backend, "inotify", "{log}");
        assert!(
            log.contains(&format!(
                "watched directories {} and {} are the same to the kernel",
                top.display(),
                inner.display()
            )),
            "{log}"
        );
        for root in [&top, &inner] {
            let want = format!("\"path\":\"{}\"", root.join("written-by-test").display());
            assert!(text.contains(&want), "no {want}:\n{text}");
        }
        // The top of the file system has subvolume `sub` below it: files there could be
        // reported under a wrong path before the root is learned.
        let (backend, text, log) = journal_a_write_in_each(&[mnt.to_owned()], journal);
        assert_eq!(backend, "inotify", "{log}");
        assert!(
            log.contains(&format!(
                "below watched directory {}, {} is a btrfs subvolume",
                mnt.display(),
                mnt.join("sub").display()
            )),
            "{log}"
        );
        assert!(text.contains("written-by-test"), "{text}");
    });
}
