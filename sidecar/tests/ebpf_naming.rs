//! Real eBPF on this kernel (root, tracepoint mode): the journal never names a change with a
//! path the kernel side could not assemble truly: unnamed files, truncated paths, 32-bit callers.
//!
//! * a path longer than the kernel sends is flagged `truncated`, one too deep for the walk is
//!   counted, neither is journaled as another path;
//! * a file without a name (`O_TMPFILE`, deleted while open) is counted, never journaled under
//!   the `#<ino>` or old name its dentry still carries;
//! * a 32-bit (ia32) process's syscalls are not misread as the x86_64 writes with their numbers.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

mod ebpf_common;

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use diffkeeper_ebpf::event::Stat;
use diffkeeper_sidecar::change::{self, Change, Op};
use diffkeeper_sidecar::ebpf::{self, AttachMode, EbpfSession};
use ebpf_common::*;

fn start(
    label: &str,
) -> (
    Scratch,
    std::path::PathBuf,
    EbpfSession,
    std::sync::mpsc::Receiver<Change>,
) {
    capture_logs();
    let scratch = Scratch::new(label);
    let root = scratch.dir("state");
    let cfg = config(AttachMode::Tracepoint, &scratch, vec![root.clone()]);
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    assert_eq!(session.backend(), TRACEPOINT);
    (scratch, root, session, rx)
}

/// The counters are refreshed every 250 ms.
fn unreported(session: &EbpfSession, stat: Stat) -> u64 {
    std::thread::sleep(Duration::from_millis(400));
    session.unreported().get(stat)
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// mkdirat + openat one level down: the whole path can be longer than PATH_MAX.
fn mkdir_below(dir: &OwnedFd, name: &str) -> OwnedFd {
    let name = c(name);
    // SAFETY: valid fd and NUL-terminated name.
    let rc = unsafe { nix::libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) };
    assert_eq!(rc, 0, "mkdirat: {}", std::io::Error::last_os_error());
    let fd = unsafe {
        nix::libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            nix::libc::O_RDONLY | nix::libc::O_DIRECTORY,
        )
    };
    assert!(fd >= 0, "openat: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn open_dir(path: &Path) -> OwnedFd {
    fs::File::open(path).unwrap().into()
}

fn write_at(dir: &OwnedFd, name: &str, data: &[u8]) {
    let name = c(name);
    // SAFETY: valid fd, name and buffer.
    unsafe {
        let fd = nix::libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            nix::libc::O_WRONLY | nix::libc::O_CREAT,
            0o644,
        );
        assert!(fd >= 0, "openat: {}", std::io::Error::last_os_error());
        assert_eq!(
            nix::libc::write(fd, data.as_ptr().cast(), data.len()),
            data.len() as isize
        );
        nix::libc::close(fd);
    }
}

/// Item 8: a path longer than DK_PATH_MAX (4096) is journaled cut after its last whole name,
/// ending with '/', and flagged; a file 40 directories down (the walk goes 32 links up) is
/// counted as too_deep and not journaled. Before: the cut path came without a flag (the
/// journal named a directory as the written file), and the deep write vanished uncounted.
#[test]
fn truncated_paths_are_flagged_and_too_deep_ones_counted() {
    let (_scratch, root, session, rx) = start("naming-long");
    let long = "n".repeat(250);
    let mut dir = open_dir(&root);
    for _ in 0..17 {
        dir = mkdir_below(&dir, &long); // 17 × 251 bytes > 4096
    }
    write_at(&dir, "leaf", b"long");
    let mut deep = open_dir(&root);
    for i in 0..40 {
        deep = mkdir_below(&deep, &format!("d{i}"));
    }
    let too_deep_before = session.unreported().get(Stat::TooDeep);
    write_at(&deep, "deep-leaf", b"deep");
    let marker = root.join("zz-marker");
    fs::write(&marker, b"m").unwrap();
    let got = collect_until(&rx, &marker);
    let too_deep = unreported(&session, Stat::TooDeep) - too_deep_before;
    ebpf_common::stop_and_check_unloaded(session);

    let prefix = format!("{}/", root.display());
    let long_writes: Vec<&Change> = got
        .iter()
        .filter(|c| c.op == Op::Write && c.path.contains(&long))
        .collect();
    assert_eq!(long_writes.len(), 1, "{got:#?}");
    let w = long_writes[0];
    let relative = &w.path[prefix.len()..];
    assert!(
        w.truncated,
        "a cut path must be flagged truncated: {} bytes",
        relative.len()
    );
    assert!(
        relative.len() <= 4096 && relative.ends_with('/'),
        "{relative}"
    );
    assert_eq!(relative, format!("{long}/").repeat(relative.len() / 251));
    assert!(
        !got.iter()
            .any(|c| c.path.contains("deep-leaf") || c.path.contains("/d39")),
        "{got:#?}"
    );
    assert!(too_deep >= 1, "the too-deep write was not counted");
    assert!(
        got.iter()
            .filter(|c| c.path == marker.to_string_lossy())
            .all(|c| !c.truncated),
        "a whole path is not flagged"
    );
}

/// Item 6 (tracepoint mode): writes to an O_TMPFILE file (before and after linkat gives it a
/// name) and to a file deleted while open are counted as unlinked, never journaled under the
/// dentry's `#<ino>` or old name. Before: journaled as `write …/#<ino>` and `write …/gone`.
#[test]
fn unnamed_files_are_never_journaled_with_a_made_up_path() {
    let (_scratch, root, session, rx) = start("naming-tmpfile");
    let before = session.unreported().get(Stat::Unlinked);
    let dir = c(&root.to_string_lossy());
    // SAFETY: plain syscalls on owned descriptors and live buffers.
    unsafe {
        let fd = nix::libc::open(
            dir.as_ptr(),
            nix::libc::O_TMPFILE | nix::libc::O_WRONLY,
            0o644,
        );
        assert!(fd >= 0, "O_TMPFILE: {}", std::io::Error::last_os_error());
        assert_eq!(nix::libc::write(fd, b"tmp".as_ptr().cast(), 3), 3);
        let linked = c(&root.join("linked.txt").to_string_lossy());
        let empty = c("");
        let rc = nix::libc::linkat(
            fd,
            empty.as_ptr(),
            nix::libc::AT_FDCWD,
            linked.as_ptr(),
            nix::libc::AT_EMPTY_PATH,
        );
        assert_eq!(rc, 0, "linkat: {}", std::io::Error::last_os_error());
        assert_eq!(nix::libc::write(fd, b"more".as_ptr().cast(), 4), 4);
        nix::libc::close(fd);
    }
    let gone = root.join("gone");
    let mut f = fs::File::create(&gone).unwrap();
    fs::remove_file(&gone).unwrap();
    std::io::Write::write_all(&mut f, b"after unlink").unwrap();
    drop(f);
    let marker = root.join("zz-marker");
    fs::write(&marker, b"m").unwrap();
    let got = collect_until(&rx, &marker);
    let unlinked = unreported(&session, Stat::Unlinked) - before;
    ebpf_common::stop_and_check_unloaded(session);

    let made_up: Vec<&Change> = got
        .iter()
        .filter(|c| c.path.contains('#') || (c.op == Op::Write && c.path == gone.to_string_lossy()))
        .collect();
    assert!(
        made_up.is_empty(),
        "journaled with a made-up path: {made_up:#?}"
    );
    assert!(unlinked >= 3, "3 unnamed writes, {unlinked} counted");
}

/// Builds the ia32 test program (gcc -m32 -static: gcc-multilib, scripts/setup.sh).
fn ia32_program(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("ia32.c");
    let exe = dir.join("ia32");
    // int 0x80 with the watched file's descriptor in edi (which the x86_64 decoding read as
    // argument 0): getpid (20 = x86_64 writev), eventfd2 (328 = pwritev2), and a real 32-bit
    // write(2) (4), which is not decoded either (README: 32-bit processes).
    fs::write(
        &src,
        r#"
static long sys(long nr, long a, long b, long c, long di) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c), "D"(di) : "memory");
    return ret;
}
int main(int argc, char **argv) {
    long fd = sys(5 /* open */, (long)argv[1], 01 /* O_WRONLY */, 0, 0);
    if (fd < 0) return 2;
    for (int i = 0; i < 50; i++) {
        if (sys(20 /* getpid */, 0, 0, 0, fd) <= 0) return 3;
        long efd = sys(328 /* eventfd2 */, 0, 0, 0, fd);
        if (efd < 0) return 4;
        sys(6 /* close */, efd, 0, 0, fd);
    }
    if (sys(4 /* write */, fd, (long)"x32", 3, fd) != 3) return 5;
    return 0;
}
"#,
    )
    .unwrap();
    let out = Command::new("gcc")
        .args(["-m32", "-static", "-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc -m32 -static failed (install gcc-multilib: scripts/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Item 11: a 32-bit process's getpid/eventfd2 (ia32 numbers 20 and 328, x86_64's writev and
/// pwritev2) with a watched file's descriptor in edi produce no journal line; its 32-bit
/// write(2) is not decoded (documented). Before: 100 bogus writes of the watched file, their
/// `bytes` the pid or the new eventfd.
#[test]
fn ia32_syscalls_are_not_misread_as_writes() {
    let (scratch, root, session, rx) = start("naming-ia32");
    let exe = ia32_program(&scratch.dir("bin"));
    let target = root.join("target");
    fs::write(&target, b"").unwrap();
    let out = Command::new(&exe)
        .arg(target.as_os_str())
        .output()
        .expect("run the ia32 program");
    assert!(out.status.success(), "ia32 program exited {}", out.status);
    let marker = root.join("zz-marker");
    fs::write(&marker, b"m").unwrap();
    let got = collect_until(&rx, &marker);
    ebpf_common::stop_and_check_unloaded(session);
    let target = target.to_string_lossy();
    let bogus: Vec<&Change> = got
        .iter()
        .filter(|c| c.path == target && c.comm.as_deref() == Some("ia32"))
        .collect();
    assert!(
        bogus.is_empty(),
        "{} lines from ia32 syscalls: {:#?}",
        bogus.len(),
        &bogus[..bogus.len().min(3)]
    );
}
