//! Tracepoint mode (real eBPF, root), both objects: every op from its syscall, and what the
//! kernel did rather than what the fd table or the caller's memory say once the call is over.
//!
//! * each syscall of the op set (raw numbers, so libc picks none for us) journals its op on the
//!   right path, and a call that fails journals nothing;
//! * an O_TMPFILE file written, then linked by an absolute name from a cwd outside the roots,
//!   ends as `create` and `write` of that name.
//!
//! The races (a dup2 onto the written fd, a name changed in memory during the call) run against
//! the real binary, here and in the VM rows: `scenarios.rs`, `diffkeeper-scenario --races`.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

mod ebpf_common;

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use diffkeeper_ebpf::object::ObjectKind;
use diffkeeper_sidecar::change::{self, ChangeQueue, Op};
use diffkeeper_sidecar::ebpf::{self, AttachMode, EbpfSession, ObjectChoice};
use ebpf_common::*;
use nix::libc;

/// Both objects, each forced: the modern one and compat (4.18's helpers, unrolled walk).
const OBJECTS: [ObjectKind; 2] = [ObjectKind::Modern, ObjectKind::Compat];

fn start(label: &str, object: ObjectKind) -> (Scratch, PathBuf, EbpfSession, ChangeQueue) {
    capture_logs();
    let scratch = Scratch::new(&format!("{label}-{object}"));
    let root = scratch.dir("state");
    let mut cfg = config(AttachMode::Tracepoint, &scratch, vec![root.clone()]);
    cfg.object = ObjectChoice::Forced(object);
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    assert_eq!(session.backend(), TRACEPOINT);
    (scratch, root, session, rx)
}

fn c(p: impl AsRef<Path>) -> CString {
    CString::new(p.as_ref().to_string_lossy().as_bytes()).unwrap()
}

/// A raw syscall that must succeed.
fn ok(what: &str, rc: libc::c_long) {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
}

/// (op, path below root, from below root) of every change up to the marker's write.
fn ops_until(rx: &ChangeQueue, root: &Path, marker: &Path) -> Vec<(Op, String, Option<String>)> {
    let rel = |p: &str| {
        p.strip_prefix(&*root.to_string_lossy())
            .unwrap_or(p)
            .to_string()
    };
    collect_until(rx, marker)
        .iter()
        .map(|c| {
            let text = |p: &Path| p.to_string_lossy().into_owned();
            (
                c.op,
                rel(&text(&c.path)),
                c.from.as_deref().map(|f| rel(&text(f))),
            )
        })
        .collect()
}

/// The op set, each from its own syscall (x86_64 numbers through libc's SYS_ constants;
/// fchmodat2 is 452 on every architecture), and calls that fail: exactly the ops that happened.
#[cfg(target_arch = "x86_64")]
#[test]
fn every_op_is_journaled_from_its_syscall() {
    for object in OBJECTS {
        std::thread::spawn(move || every_op_with(object))
            .join()
            .unwrap_or_else(|_| panic!("{object}: the op scenario failed"));
    }
}

#[cfg(target_arch = "x86_64")]
fn every_op_with(object: ObjectKind) {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
    let (scratch, root, session, rx) = start("tp-ops", object);
    let outside = scratch.dir("outside");
    std::fs::write(outside.join("in.txt"), b"i").unwrap();
    std::fs::write(root.join("out.txt"), b"o").unwrap();
    std::env::set_current_dir(&root).unwrap();
    let dir = std::fs::File::open(&root).unwrap();
    let dfd = dir.as_raw_fd() as libc::c_long;
    let cwd = libc::AT_FDCWD as libc::c_long;
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    // Calls that fail change nothing: no line for them.
    let failed = |rc: libc::c_long| assert!(rc < 0, "this call should have failed");
    // SAFETY: raw syscalls with NUL-terminated names (CStrings alive for each call) and fds
    // this thread owns.
    unsafe {
        ok(
            "mkdir",
            libc::syscall(libc::SYS_mkdir, c("d1").as_ptr(), 0o755),
        );
        ok(
            "mkdirat",
            libc::syscall(libc::SYS_mkdirat, dfd, c("d2").as_ptr(), 0o755),
        );
        failed(libc::syscall(libc::SYS_mkdir, c("d1").as_ptr(), 0o755)); // EEXIST
        let f = libc::open(c("f").as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
        ok("open", f.into());
        ok(
            "chmod",
            libc::syscall(libc::SYS_chmod, c("f").as_ptr(), 0o600),
        );
        ok("fchmod", libc::syscall(libc::SYS_fchmod, f, 0o640));
        ok(
            "fchmodat",
            libc::syscall(libc::SYS_fchmodat, dfd, c("f").as_ptr(), 0o644),
        );
        ok(
            "fchmodat2",
            libc::syscall(452, dfd, c("f").as_ptr(), 0o644, 0),
        );
        ok(
            "chown",
            libc::syscall(libc::SYS_chown, c("f").as_ptr(), uid, gid),
        );
        ok(
            "lchown",
            libc::syscall(libc::SYS_lchown, c("f").as_ptr(), uid, gid),
        );
        ok("fchown", libc::syscall(libc::SYS_fchown, f, uid, gid));
        ok(
            "fchownat",
            libc::syscall(libc::SYS_fchownat, dfd, c("f").as_ptr(), uid, gid, 0),
        );
        // AT_EMPTY_PATH: the descriptor's own file.
        let empty = c("");
        ok(
            "fchownat \"\"",
            libc::syscall(
                libc::SYS_fchownat,
                f,
                empty.as_ptr(),
                uid,
                gid,
                libc::AT_EMPTY_PATH,
            ),
        );
        // Truncations are writes (of 0 bytes): by fd, by name, and opens with O_TRUNC of the
        // existing file (open, openat, creat); O_CREAT | O_TRUNC of a new file is a create.
        ok("ftruncate", libc::syscall(libc::SYS_ftruncate, f, 0));
        libc::close(f);
        ok(
            "truncate",
            libc::syscall(libc::SYS_truncate, c("f").as_ptr(), 1),
        );
        let trunc = |what, fd: libc::c_long| {
            ok(what, fd);
            libc::close(fd as libc::c_int);
        };
        trunc(
            "open O_TRUNC",
            libc::syscall(
                libc::SYS_open,
                c("f").as_ptr(),
                libc::O_WRONLY | libc::O_TRUNC,
            ),
        );
        trunc(
            "openat O_CREAT | O_TRUNC",
            libc::syscall(
                libc::SYS_openat,
                dfd,
                c("f").as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
                0o644,
            ),
        );
        trunc(
            "creat",
            libc::syscall(libc::SYS_creat, c("f").as_ptr(), 0o644),
        );
        trunc(
            "creat new",
            libc::syscall(libc::SYS_creat, c("k").as_ptr(), 0o644),
        );
        failed(libc::syscall(libc::SYS_truncate, c("missing").as_ptr(), 0)); // ENOENT
        failed(libc::syscall(
            libc::SYS_open,
            c("missing").as_ptr(),
            libc::O_WRONLY | libc::O_TRUNC,
        )); // ENOENT
            // Not a change: an open without O_CREAT or O_TRUNC.
        trunc(
            "open",
            libc::syscall(libc::SYS_open, c("f").as_ptr(), libc::O_WRONLY),
        );
        failed(libc::syscall(libc::SYS_chmod, c("missing").as_ptr(), 0o600)); // ENOENT
        ok(
            "rename",
            libc::syscall(libc::SYS_rename, c("f").as_ptr(), c("g").as_ptr()),
        );
        ok(
            "renameat",
            libc::syscall(
                libc::SYS_renameat,
                dfd,
                c("g").as_ptr(),
                cwd,
                c("d1/h").as_ptr(),
            ),
        );
        ok(
            "renameat2",
            libc::syscall(
                libc::SYS_renameat2,
                cwd,
                c("d1/h").as_ptr(),
                dfd,
                c("d2/i").as_ptr(),
                0,
            ),
        );
        std::fs::write(root.join("j"), b"j").unwrap();
        ok(
            "renameat2 exchange",
            libc::syscall(
                libc::SYS_renameat2,
                dfd,
                c("j").as_ptr(),
                dfd,
                c("d2/i").as_ptr(),
                libc::RENAME_EXCHANGE,
            ),
        );
        // Across the boundary: in is a create, out a delete.
        ok(
            "rename in",
            libc::syscall(
                libc::SYS_rename,
                c(outside.join("in.txt")).as_ptr(),
                c("in.txt").as_ptr(),
            ),
        );
        ok(
            "rename out",
            libc::syscall(
                libc::SYS_rename,
                c("out.txt").as_ptr(),
                c(outside.join("out.txt")).as_ptr(),
            ),
        );
    }
    // The reader places names against the tree as it is when it reads them (a name through a
    // directory gone by then is a flagged line on the directory): let it catch up before the
    // directories those names go through are removed.
    let sync = root.join("zz-sync");
    std::fs::write(&sync, b"s").unwrap();
    let mut got = ops_until(&rx, &root, &sync);
    // SAFETY: as above.
    unsafe {
        failed(libc::syscall(libc::SYS_rmdir, c("d2").as_ptr())); // ENOTEMPTY
        ok("unlink", libc::syscall(libc::SYS_unlink, c("j").as_ptr()));
        ok(
            "unlinkat",
            libc::syscall(libc::SYS_unlinkat, dfd, c("d2/i").as_ptr(), 0),
        );
        failed(libc::syscall(libc::SYS_unlink, c("j").as_ptr())); // ENOENT
    }
    let sync = root.join("zz-sync2");
    std::fs::write(&sync, b"s").unwrap();
    got.extend(ops_until(&rx, &root, &sync));
    // SAFETY: as above.
    unsafe {
        ok("rmdir", libc::syscall(libc::SYS_rmdir, c("d1").as_ptr()));
        ok(
            "unlinkat AT_REMOVEDIR",
            libc::syscall(
                libc::SYS_unlinkat,
                dfd,
                c("d2").as_ptr(),
                libc::AT_REMOVEDIR,
            ),
        );
    }
    let marker = root.join("zz-marker");
    std::fs::write(&marker, b"m").unwrap();
    got.extend(ops_until(&rx, &root, &marker));
    ebpf_common::stop_and_check_unloaded(session);
    let line =
        |op, path: &str, from: Option<&str>| (op, path.to_string(), from.map(str::to_string));
    let want = vec![
        line(Op::Create, "/out.txt", None), // set-up
        line(Op::Write, "/out.txt", None),
        line(Op::Mkdir, "/d1", None),
        line(Op::Mkdir, "/d2", None),
        line(Op::Create, "/f", None),
        line(Op::Attrib, "/f", None), // chmod
        line(Op::Attrib, "/f", None), // fchmod
        line(Op::Attrib, "/f", None), // fchmodat
        line(Op::Attrib, "/f", None), // fchmodat2
        line(Op::Attrib, "/f", None), // chown
        line(Op::Attrib, "/f", None), // lchown
        line(Op::Attrib, "/f", None), // fchown
        line(Op::Attrib, "/f", None), // fchownat
        line(Op::Attrib, "/f", None), // fchownat AT_EMPTY_PATH
        line(Op::Write, "/f", None),  // ftruncate
        line(Op::Write, "/f", None),  // truncate
        line(Op::Write, "/f", None),  // open O_TRUNC
        line(Op::Write, "/f", None),  // openat O_CREAT | O_TRUNC of the existing file
        line(Op::Write, "/f", None),  // creat over it
        line(Op::Create, "/k", None), // creat of a new file
        line(Op::Rename, "/g", Some("/f")),
        line(Op::Rename, "/d1/h", Some("/g")),
        line(Op::Rename, "/d2/i", Some("/d1/h")),
        line(Op::Create, "/j", None),
        line(Op::Write, "/j", None),
        line(Op::Rename, "/d2/i", Some("/j")), // RENAME_EXCHANGE: both ways
        line(Op::Rename, "/j", Some("/d2/i")),
        line(Op::Create, "/in.txt", None),
        line(Op::Delete, "/out.txt", None),
        line(Op::Create, "/zz-sync", None),
        line(Op::Write, "/zz-sync", None),
        line(Op::Delete, "/j", None),
        line(Op::Delete, "/d2/i", None),
        line(Op::Create, "/zz-sync2", None),
        line(Op::Write, "/zz-sync2", None),
        line(Op::Rmdir, "/d1", None),
        line(Op::Rmdir, "/d2", None),
        line(Op::Create, "/zz-marker", None),
        line(Op::Write, "/zz-marker", None),
    ];
    assert_eq!(got, want, "{object}");
}

/// A file made with O_TMPFILE, written, then given its name by
/// `linkat(fd, "", AT_FDCWD, "/abs/final.txt", AT_EMPTY_PATH)` from a cwd outside the roots left
/// nothing in the journal (the write had no name yet; the absolute name was not placed). Now:
/// `create final.txt`, then its content's `write`.
#[test]
fn an_o_tmpfile_linked_by_absolute_name_is_created_with_its_content() {
    for object in OBJECTS {
        std::thread::spawn(move || tmpfile_with(object))
            .join()
            .unwrap_or_else(|_| panic!("{object}: the O_TMPFILE scenario failed"));
    }
}

fn tmpfile_with(object: ObjectKind) {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
    let (scratch, root, session, rx) = start("tp-tmpfile", object);
    std::env::set_current_dir(scratch.dir("elsewhere")).unwrap();
    let final_txt = root.join("final.txt");
    // SAFETY: NUL-terminated names, a descriptor this thread owns, a live buffer.
    unsafe {
        let fd = libc::open(c(&root).as_ptr(), libc::O_TMPFILE | libc::O_WRONLY, 0o644);
        ok("O_TMPFILE", fd.into());
        assert_eq!(libc::write(fd, b"atomic".as_ptr().cast(), 6), 6);
        let empty = c("");
        ok(
            "linkat",
            libc::linkat(
                fd,
                empty.as_ptr(),
                libc::AT_FDCWD,
                c(&final_txt).as_ptr(),
                libc::AT_EMPTY_PATH,
            )
            .into(),
        );
        libc::close(fd);
    }
    let marker = root.join("zz-marker");
    std::fs::write(&marker, b"m").unwrap();
    let got: Vec<(Op, String, Option<u64>)> = collect_until(&rx, &marker)
        .into_iter()
        .filter(|c| c.path != marker)
        .map(|c| (c.op, c.path.to_string_lossy().into_owned(), c.bytes))
        .collect();
    ebpf_common::stop_and_check_unloaded(session);
    let path = final_txt.to_string_lossy().into_owned();
    assert_eq!(
        got,
        [(Op::Create, path.clone(), None), (Op::Write, path, Some(6))],
        "{object}"
    );
}
