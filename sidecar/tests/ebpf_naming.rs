//! Real eBPF on this kernel (root, tracepoint mode): the journal never names a change with a
//! path the kernel side could not assemble truly: unnamed files, truncated paths, 32-bit callers.
//!
//! * a path longer than the kernel sends is flagged `truncated`, one too deep for the walk is
//!   counted, neither is journaled as another path;
//! * a file without a name (`O_TMPFILE`, deleted while open) is counted, never journaled under
//!   the `#<ino>` or old name its dentry still carries; the name `linkat` gives it is journaled;
//! * a new name from link/linkat/symlink/symlinkat is journaled below the directory it is
//!   relative to, with both objects; one that cannot be placed there (absolute, `..`, through
//!   a symlink) is counted and logged, never journaled as a guess;
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
use diffkeeper_ebpf::object::ObjectKind;
use diffkeeper_sidecar::change::{self, Change, Op};
use diffkeeper_sidecar::ebpf::{self, AttachMode, EbpfSession, ObjectChoice};
use ebpf_common::*;

fn start(
    label: &str,
) -> (
    Scratch,
    std::path::PathBuf,
    EbpfSession,
    diffkeeper_sidecar::change::ChangeQueue,
) {
    start_with(label, ObjectChoice::Auto)
}

fn start_with(
    label: &str,
    object: ObjectChoice,
) -> (
    Scratch,
    std::path::PathBuf,
    EbpfSession,
    diffkeeper_sidecar::change::ChangeQueue,
) {
    capture_logs();
    let scratch = Scratch::new(label);
    let root = scratch.dir("state");
    let mut cfg = config(AttachMode::Tracepoint, &scratch, vec![root.clone()]);
    cfg.object = object;
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    assert_eq!(session.backend(), TRACEPOINT);
    (scratch, root, session, rx)
}

/// Both objects, each forced: the modern one and compat (4.18's helpers, unrolled walk).
const OBJECTS: [ObjectKind; 2] = [ObjectKind::Modern, ObjectKind::Compat];

/// How much `stat` grew over `before`, once it grew by `want` or 5 s passed: the reader
/// refreshes the counters every 250 ms, later on a loaded machine.
fn unreported_growth(session: &EbpfSession, stat: Stat, before: u64, want: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let grown = session.unreported().get(stat) - before;
        if grown >= want || std::time::Instant::now() > deadline {
            return grown;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// A path longer than DK_PATH_MAX (4096) is journaled cut after its last whole name,
/// ending with '/', and flagged (a file's, and a new name's made there by symlinkat); a file 40 directories down (the walk goes 32 links up) is
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
    // A new name in that directory: its path is cut the same way, the name is not sent.
    let (to, name) = (c("leaf"), c("sym"));
    // SAFETY: a live descriptor, NUL-terminated paths.
    let rc = unsafe { nix::libc::symlinkat(to.as_ptr(), dir.as_raw_fd(), name.as_ptr()) };
    assert_eq!(rc, 0, "symlinkat: {}", std::io::Error::last_os_error());
    let mut deep = open_dir(&root);
    for i in 0..40 {
        deep = mkdir_below(&deep, &format!("d{i}"));
    }
    let too_deep_before = session.unreported().get(Stat::TooDeep);
    write_at(&deep, "deep-leaf", b"deep");
    let marker = root.join("zz-marker");
    fs::write(&marker, b"m").unwrap();
    let got = collect_until(&rx, &marker);
    let too_deep = unreported_growth(&session, Stat::TooDeep, too_deep_before, 1);
    ebpf_common::stop_and_check_unloaded(session);

    let prefix = format!("{}/", root.display());
    let long_writes: Vec<&Change> = got
        .iter()
        .filter(|c| c.op == Op::Write && text(&c.path).contains(&long))
        .collect();
    assert_eq!(long_writes.len(), 1, "{got:#?}");
    let w = long_writes[0];
    let relative = &text(&w.path)[prefix.len()..];
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
    let long_links: Vec<&Change> = got
        .iter()
        .filter(|c| c.op == Op::Create && text(&c.path).contains(&long))
        .collect();
    assert!(
        long_links.len() == 2
            && long_links
                .iter()
                .all(|c| c.truncated && text(&c.path).ends_with('/')),
        "the create of leaf and of the symlink, both cut: {long_links:#?}"
    );
    assert!(
        !got.iter()
            .any(|c| text(&c.path).contains("deep-leaf") || text(&c.path).contains("/d39")),
        "{got:#?}"
    );
    assert!(too_deep >= 1, "the too-deep write was not counted");
    assert!(
        got.iter()
            .filter(|c| c.path == marker)
            .all(|c| !c.truncated),
        "a whole path is not flagged"
    );
}

/// Tracepoint mode: writes to an O_TMPFILE file (before and after linkat gives it a name) and
/// to a file deleted while open are counted as unlinked, never journaled under the dentry's
/// `#<ino>` or old name; the names linkat gives the O_TMPFILE files (by AT_EMPTY_PATH relative
/// to a directory descriptor, and by /proc/self/fd with AT_SYMLINK_FOLLOW) are journaled as
/// `create`. Before: no line for the final names at all.
#[test]
fn unnamed_files_are_never_journaled_with_a_made_up_path() {
    for object in OBJECTS {
        unnamed_files_with(object);
    }
}

fn unnamed_files_with(object: ObjectKind) {
    let (_scratch, root, session, rx) = start_with("naming-tmpfile", ObjectChoice::Forced(object));
    let before = session.unreported().get(Stat::Unlinked);
    let dir = open_dir(&root);
    let root_c = c(&root.to_string_lossy());
    let tmpfile = || {
        // SAFETY: a NUL-terminated path; the descriptor is owned from here on.
        let fd = unsafe {
            nix::libc::open(
                root_c.as_ptr(),
                nix::libc::O_TMPFILE | nix::libc::O_WRONLY,
                0o644,
            )
        };
        assert!(fd >= 0, "O_TMPFILE: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        write_fd(&fd, b"tmp");
        fd
    };
    let empty = tmpfile();
    let (none, name, proc_name) = (c(""), c("linked.txt"), c("linked-proc.txt"));
    let flags = nix::libc::AT_EMPTY_PATH;
    // SAFETY: live descriptors, NUL-terminated paths.
    let rc = unsafe {
        nix::libc::linkat(
            empty.as_raw_fd(),
            none.as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            flags,
        )
    };
    assert_eq!(rc, 0, "linkat: {}", std::io::Error::last_os_error());
    write_fd(&empty, b"more");
    let proc = tmpfile();
    let from = c(&format!("/proc/self/fd/{}", proc.as_raw_fd()));
    // SAFETY: NUL-terminated paths.
    let rc = unsafe {
        nix::libc::linkat(
            nix::libc::AT_FDCWD,
            from.as_ptr(),
            dir.as_raw_fd(),
            proc_name.as_ptr(),
            nix::libc::AT_SYMLINK_FOLLOW,
        )
    };
    assert_eq!(rc, 0, "linkat: {}", std::io::Error::last_os_error());
    write_fd(&proc, b"more");
    drop((empty, proc));
    let gone = root.join("gone");
    let mut f = fs::File::create(&gone).unwrap();
    fs::remove_file(&gone).unwrap();
    std::io::Write::write_all(&mut f, b"after unlink").unwrap();
    drop(f);
    let marker = root.join("zz-marker");
    fs::write(&marker, b"m").unwrap();
    let got = collect_until(&rx, &marker);
    let unlinked = unreported_growth(&session, Stat::Unlinked, before, 5);
    ebpf_common::stop_and_check_unloaded(session);

    let made_up: Vec<&Change> = got
        .iter()
        .filter(|c| text(&c.path).contains('#') || (c.op == Op::Write && c.path == gone))
        .collect();
    assert!(
        made_up.is_empty(),
        "{object}: journaled with a made-up path: {made_up:#?}"
    );
    assert!(
        unlinked >= 5,
        "{object}: 5 unnamed writes, {unlinked} counted"
    );
    for name in ["linked.txt", "linked-proc.txt"] {
        let path = root.join(name).to_string_lossy().into_owned();
        assert!(
            got.iter()
                .any(|c| c.op == Op::Create && c.path == path && !c.truncated),
            "{object}: no create of {path} in {got:#?}"
        );
    }
}

fn write_fd(fd: &OwnedFd, data: &[u8]) {
    // SAFETY: a live descriptor and buffer.
    let n = unsafe { nix::libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    assert_eq!(
        n,
        data.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
}

/// Tracepoint mode, both objects: new names from link(2), symlink(2), linkat(2) and
/// symlinkat(2) relative to a directory descriptor and to the working directory (this thread's
/// own, unshare(CLONE_FS)), in nested directories and in the root itself, and an absolute name
/// (the caller shares the sidecar's root directory), are journaled as `create` of the path they
/// made; one with `..` and one through a symlinked directory are journaled as a `create` of
/// their directory flagged `truncated` (the name unknown), counted as unplaced_name and logged;
/// names made outside the root leave nothing.
#[test]
fn new_names_are_journaled_below_their_directory_or_counted() {
    for object in OBJECTS {
        // Its own thread: the working directory changes.
        std::thread::spawn(move || new_names_with(object))
            .join()
            .unwrap_or_else(|_| panic!("{object}: the new-name scenario failed"));
    }
}

fn new_names_with(object: ObjectKind) {
    use std::os::unix::fs::symlink;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
    let (scratch, root, session, rx) = start_with("naming-links", ObjectChoice::Forced(object));
    let outside = scratch.dir("outside");
    let target = root.join("target.txt");
    fs::write(&target, b"t").unwrap();
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    symlink(&outside, root.join("a/to-outside")).unwrap();
    let a = open_dir(&root.join("a"));
    let before = session.unreported().unplaced_names();
    let link_at = |dir: &OwnedFd, name: &str| {
        let (old, new) = (c(&target.to_string_lossy()), c(name));
        // SAFETY: a live descriptor, NUL-terminated paths.
        let rc = unsafe {
            nix::libc::linkat(
                nix::libc::AT_FDCWD,
                old.as_ptr(),
                dir.as_raw_fd(),
                new.as_ptr(),
                0,
            )
        };
        assert_eq!(rc, 0, "linkat {name}: {}", std::io::Error::last_os_error());
    };
    let symlink_at = |dir: &OwnedFd, name: &str| {
        let (to, new) = (c("t"), c(name));
        // SAFETY: a live descriptor, NUL-terminated paths.
        let rc = unsafe { nix::libc::symlinkat(to.as_ptr(), dir.as_raw_fd(), new.as_ptr()) };
        assert_eq!(
            rc,
            0,
            "symlinkat {name}: {}",
            std::io::Error::last_os_error()
        );
    };
    link_at(&a, "hard");
    link_at(&a, "b/c//deep");
    symlink_at(&a, "./b/sym");
    symlink_at(&open_dir(&root), "top-sym");
    std::env::set_current_dir(root.join("a/b")).unwrap();
    let (old, hard, to, sym) = (
        c(&target.to_string_lossy()),
        c("cwd-hard"),
        c("t"),
        c("c/cwd-sym"),
    );
    // SAFETY: NUL-terminated paths (libc's link/symlink are the link(2)/symlink(2) syscalls on
    // x86_64, linkat/symlinkat on arm64).
    unsafe {
        assert_eq!(nix::libc::link(old.as_ptr(), hard.as_ptr()), 0);
        assert_eq!(nix::libc::symlink(to.as_ptr(), sym.as_ptr()), 0);
    }
    std::env::set_current_dir(&root).unwrap();
    fs::hard_link(&target, "root-hard").unwrap();
    // Absolute: placed below the root it starts with.
    fs::hard_link(&target, root.join("a/absolute")).unwrap();
    // Not placeable: `..`, through a symlink to a directory outside.
    symlink_at(&a, "b/../dotdot");
    symlink_at(&a, "to-outside/escaped");
    // Outside the root: nothing, not even a count.
    std::env::set_current_dir(&outside).unwrap();
    symlink("t", "out-sym").unwrap();
    link_at(&open_dir(&outside), "out-hard");
    let marker = root.join("zz-marker");
    fs::write(&marker, b"m").unwrap();
    let got = collect_until(&rx, &marker);
    std::thread::sleep(Duration::from_millis(100)); // the compat object's other CPUs' buffers
    let unplaced = session.unreported().unplaced_names() - before;
    ebpf_common::stop_and_check_unloaded(session);

    let creates: Vec<String> = got
        .iter()
        .filter(|c| c.op == Op::Create && c.path != marker && !c.truncated)
        .map(|c| text(&c.path)[root.to_string_lossy().len()..].to_string())
        .collect();
    assert_eq!(
        creates,
        [
            "/target.txt",
            "/a/to-outside", // symlink(2) by absolute name, in the set-up
            "/a/hard",
            "/a/b/c/deep",
            "/a/b/sym",
            "/top-sym",
            "/a/b/cwd-hard",
            "/a/b/c/cwd-sym",
            "/root-hard",
            "/a/absolute"
        ],
        "{object}: {got:#?}"
    );
    let flagged: Vec<(Op, &str)> = got
        .iter()
        .filter(|c| c.truncated)
        .map(|c| (c.op, &text(&c.path)[root.to_string_lossy().len()..]))
        .collect();
    assert_eq!(
        flagged,
        [(Op::Create, "/a/"), (Op::Create, "/a/")],
        "{object}"
    );
    assert!(got
        .iter()
        .all(|c| c.path.starts_with(&*root.to_string_lossy())));
    assert_eq!(unplaced, 2, "{object}: `..`, through a symlink");
    for why in ["a `..` component", "is not a directory (a symlink"] {
        assert!(
            !logs_containing(why).is_empty(),
            "{object}: no log line says {why:?}"
        );
    }
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

/// A 32-bit process's getpid/eventfd2 (ia32 numbers 20 and 328, x86_64's writev and
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
    let bogus: Vec<&Change> = got
        .iter()
        .filter(|c| c.path == target && c.comm == Some("ia32".into()))
        .collect();
    assert!(
        bogus.is_empty(),
        "{} lines from ia32 syscalls: {:#?}",
        bogus.len(),
        &bogus[..bogus.len().min(3)]
    );
}
