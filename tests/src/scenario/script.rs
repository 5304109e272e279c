//! The scripted changes, made on a thread named [`WRITER_COMM`], and the journal lines each
//! backend must write for them.

use std::fs::{self, File, OpenOptions};
use std::io::{IoSlice, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use diffkeeper_cli::name::printed;
use serde_json::{json, Map, Value};

use super::{covers, journal_op, WRITER_COMM};

/// Makes the changes on a thread named [`WRITER_COMM`] and returns the expected journal lines
/// (without `ts`) for `backend`.
pub(super) fn perform(state: &Path, outside: &Path, backend: &str) -> Result<Vec<Value>, String> {
    let outside = outside.to_owned();
    on_writer_thread(state, backend, move |script| {
        script.inside().map_err(|e| e.to_string())?;
        Script::outside(&outside).map_err(|e| format!("outside the watched directory: {e}"))?;
        script.after_outside().map_err(|e| e.to_string())
    })
}

/// The operations scenario (`--ops`), on a thread named [`WRITER_COMM`]: returns the expected
/// journal lines for `backend`. Each failing operation must leave no line: the kprobe and
/// fentry families see its security hook, which runs before it fails. New names made in
/// `outside` must leave none either.
pub(super) fn perform_ops(
    state: &Path,
    outside: &Path,
    backend: &str,
) -> Result<Vec<Value>, String> {
    let outside = outside.to_owned();
    on_writer_thread(state, backend, move |script| {
        script.ops(&outside).map_err(|e| e.to_string())
    })
}

/// Runs `changes` on a thread named [`WRITER_COMM`] (the comm the journal must show) with a
/// script rooted at `state`; returns the lines it expects.
fn on_writer_thread(
    state: &Path,
    backend: &str,
    changes: impl FnOnce(&mut Script) -> Result<(), String> + Send + 'static,
) -> Result<Vec<Value>, String> {
    let mut script = Script {
        root: state.to_owned(),
        backend: backend.to_owned(),
        expected: Vec::new(),
    };
    std::thread::Builder::new()
        .name(WRITER_COMM.into())
        .spawn(move || changes(&mut script).map(|()| script.expected))
        .map_err(|e| format!("cannot start the writer thread: {e}"))?
        .join()
        .map_err(|_| "the writer thread panicked".to_string())?
}

fn expect_err(what: &str, result: std::io::Result<()>) -> Io {
    match result {
        Err(_) => Ok(()),
        Ok(()) => Err(std::io::Error::other(format!(
            "{what} succeeded; it must fail"
        ))),
    }
}

/// Pause after creating directories, so that inotify, which can only watch a directory once it
/// exists, has added its watches before files appear in them (eBPF needs no pause).
const NEW_DIRECTORY_PAUSE: Duration = Duration::from_millis(300);

struct Script {
    root: PathBuf,
    backend: String,
    expected: Vec<Value>,
}

type Io = std::io::Result<()>;

impl Script {
    fn inside(&mut self) -> Io {
        for dir in ["a", "a/b", "a/b/c"] {
            fs::create_dir(self.root.join(dir))?;
            self.expect("mkdir", dir, None, None);
        }
        std::thread::sleep(NEW_DIRECTORY_PAUSE);
        self.create("top.txt")?;
        self.write("top.txt", 100)?;
        self.create("a/b/c/deep.bin")?;
        self.write("a/b/c/deep.bin", 4096)?;
        self.pwrite("a/b/c/deep.bin", 10, 1000)?;
        self.create("a/mid.txt")?;
        self.writev("a/mid.txt", &[5, 6, 7])?;
        self.pwritev("a/mid.txt", &[3, 4], 2)
    }

    /// Changes outside the watched directory: none may reach the journal.
    fn outside(dir: &Path) -> Io {
        let file = dir.join("o.txt");
        fs::write(&file, [b'o'; 55])?;
        open_for_write(&file)?.write_all_at(&[b'p'; 9], 3)?;
        fs::rename(&file, dir.join("o2.txt"))?;
        fs::remove_file(dir.join("o2.txt"))
    }

    fn after_outside(&mut self) -> Io {
        for _ in 0..3 {
            self.write("top.txt", 1)?;
        }
        self.rename("top.txt", "a/b/renamed.txt")?;
        self.write("a/b/renamed.txt", 7)?;
        self.write("a/b/renamed.txt", 65_536)?;
        self.delete("a/mid.txt")?;
        self.delete("a/b/c/deep.bin")?;
        fs::remove_dir(self.root.join("a/b/c"))?;
        self.expect("rmdir", "a/b/c", None, None);
        self.chmod("a/b/renamed.txt", 0o600)?;
        // Another event between chmod and chown: the kernel merges an inotify event into an
        // identical one still unread at the queue's tail, so a busy reader would see one
        // IN_ATTRIB for the two.
        let dir = File::open(self.root.join("a/b"))?;
        nix::unistd::symlinkat("renamed.txt", &dir, "sym")?;
        self.expect("link", "a/b/sym", None, None);
        std::os::unix::fs::chown(self.root.join("a/b/renamed.txt"), Some(65534), Some(65534))?;
        self.expect("chown", "a/b/renamed.txt", None, None);
        // A directory rename is one line, whatever it holds.
        self.rename("a/b", "a/b2")
    }

    fn chmod(&mut self, rel: &str, mode: u32) -> Io {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(self.root.join(rel), fs::Permissions::from_mode(mode))?;
        self.expect("chmod", rel, None, None);
        Ok(())
    }

    /// `args` run as user nobody, which must fail (EPERM after the security hook ran).
    fn fail_as_nobody(&self, what: &str, args: &[&str]) -> Io {
        use std::os::unix::process::CommandExt;
        let status = std::process::Command::new(args[0])
            .args(&args[1..])
            .current_dir(&self.root)
            .uid(65534)
            .gid(65534)
            .stderr(std::process::Stdio::null())
            .status()?;
        if status.success() {
            return Err(std::io::Error::other(format!("{what} as nobody succeeded")));
        }
        Ok(())
    }

    fn ops(&mut self, outside: &Path) -> Io {
        use std::os::unix::process::CommandExt;
        self.create("new.txt")?;
        // open(O_CREAT) of an existing file whose dentry is not cached runs the create hook
        // (on disk file systems; tmpfs keeps every dentry, so there it is a plain open).
        let _ = fs::write("/proc/sys/vm/drop_caches", "3");
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.root.join("new.txt"))?;
        self.truncations("new.txt")?;
        // rename onto a non-empty directory: the hook runs, the file system says ENOTEMPTY.
        for dir in ["d1", "d2", "sticky"] {
            fs::create_dir(self.root.join(dir))?;
            self.expect("mkdir", dir, None, None);
        }
        std::thread::sleep(NEW_DIRECTORY_PAUSE);
        self.create("d2/f")?;
        expect_err(
            "rename onto a non-empty directory",
            fs::rename(self.root.join("d1"), self.root.join("d2")),
        )?;
        // rmdir of a non-empty directory: the hook runs, the file system says ENOTEMPTY.
        expect_err(
            "rmdir of a non-empty directory",
            fs::remove_dir(self.root.join("d2")),
        )?;
        // unlink by another user in a sticky directory: EPERM.
        self.chmod("sticky", 0o1777)?;
        self.create("sticky/owned")?;
        // chmod and chown of another user's file: EPERM once the hook ran.
        self.fail_as_nobody("chmod", &["chmod", "666", "sticky/owned"])?;
        self.fail_as_nobody("chown", &["chown", "65534", "sticky/owned"])?;
        let status = std::process::Command::new("rm")
            .arg("-f")
            .arg(self.root.join("sticky/owned"))
            .uid(65534)
            .gid(65534)
            .stderr(std::process::Stdio::null())
            .status()?;
        if status.success() || !self.root.join("sticky/owned").exists() {
            return Err(std::io::Error::other(
                "an unprivileged rm removed sticky/owned",
            ));
        }
        self.rename("new.txt", "moved.txt")?;
        self.new_names(outside)?;
        // A write through a descriptor of a deleted file: no name, no line.
        let mut gone = File::create(self.root.join("gone"))?;
        self.expect("create", "gone", None, None);
        self.delete("gone")?;
        gone.write_all(b"after unlink")?;
        drop(gone);
        self.delete("moved.txt")?;
        self.names_not_utf8()?;
        // Creates until the file system is out of inodes (only on a small tmpfs): the one that
        // fails with ENOSPC ran the create hook and must leave no line.
        let free = nix::sys::statvfs::statvfs(&self.root).map_err(std::io::Error::from)?;
        if free.files_free() < 1000 {
            for i in 0..1000 {
                let rel = format!("fill-{i}");
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(self.root.join(&rel))
                {
                    Ok(_) => self.expect("create", &rel, None, None),
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {
                        // A mkdir past the last inode: its hook ran, ENOSPC, no line.
                        return expect_err(
                            "mkdir with no inode left",
                            fs::create_dir(self.root.join("full-dir")),
                        );
                    }
                    Err(e) => return Err(e),
                }
            }
            return Err(std::io::Error::other("no ENOSPC after 1000 creates"));
        }
        Ok(())
    }

    /// Two names that differ only in an invalid UTF-8 byte (Linux names are bytes), created,
    /// written, renamed and deleted: their lines print the same lossy `path` but different
    /// `path_b64`/`from_b64` (the exact bytes).
    fn names_not_utf8(&mut self) -> Io {
        for invalid in [0xff_u8, 0xfe] {
            let name = |stem: &str| {
                let bytes = [stem.as_bytes(), &[invalid]].concat();
                PathBuf::from(std::ffi::OsStr::from_bytes(&bytes))
            };
            let (made, moved) = (name("bad-"), name("moved-"));
            self.create(&made)?;
            self.write(&made, 3)?;
            self.rename(&made, &moved)?;
            self.delete(&moved)?;
        }
        Ok(())
    }

    /// New names for `moved.txt` from link(2), linkat(2), symlink(2) and symlinkat(2) (on arm64
    /// libc makes the first and third the *at calls), relative to a directory descriptor and to
    /// the working directory, in nested directories, and O_TMPFILE files given a name by
    /// linkat(2) (AT_EMPTY_PATH, and /proc/self/fd with AT_SYMLINK_FOLLOW); their writes are
    /// never journaled (under their "#<ino>" name or any). Then an absolute new name and one
    /// with `..`, and new names outside the watched directory, which must leave no line.
    fn new_names(&mut self, outside: &Path) -> Io {
        use nix::fcntl::{AtFlags, AT_FDCWD};
        use nix::unistd::{linkat, symlinkat};
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::symlink;
        let plain = AtFlags::empty();
        // The working directory is per process: chdir on this thread only.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
        for dir in ["links", "links/sub"] {
            fs::create_dir(self.root.join(dir))?;
            self.expect("mkdir", dir, None, None);
        }
        std::thread::sleep(NEW_DIRECTORY_PAUSE);
        let target = self.root.join("moved.txt");
        let links = File::open(self.root.join("links"))?;
        linkat(AT_FDCWD, &target, &links, "hard-at.txt", plain)?;
        self.expect("link", "links/hard-at.txt", None, None);
        linkat(AT_FDCWD, &target, &links, "sub//deep.txt", plain)?;
        self.expect("link", "links/sub/deep.txt", None, None);
        symlinkat("../moved.txt", &links, "./sym-at")?;
        self.expect("link", "links/sym-at", None, None);
        self.tmpfile_linked(|file| {
            linkat(file, "", &links, "sub/linked.txt", AtFlags::AT_EMPTY_PATH)
        })?;
        self.expect("link", "links/sub/linked.txt", None, None);
        self.expect(
            "tmpfile-content",
            "links/sub/linked.txt",
            None,
            Some(b"unnamed".len()),
        );
        std::env::set_current_dir(self.root.join("links/sub"))?;
        let c = |s: &str| std::ffi::CString::new(s).map_err(std::io::Error::other);
        let (old, hard) = (c(&target.to_string_lossy())?, c("hard-cwd.txt")?);
        let (to, sym) = (c("../../moved.txt")?, c("sym-cwd")?);
        // libc's link and symlink: the link(2) and symlink(2) syscalls on x86_64 (the *at ones
        // on arm64, which has no others). SAFETY: NUL-terminated paths.
        check_rc(unsafe { nix::libc::link(old.as_ptr(), hard.as_ptr()) })?;
        self.expect("link", "links/sub/hard-cwd.txt", None, None);
        // SAFETY: NUL-terminated paths.
        check_rc(unsafe { nix::libc::symlink(to.as_ptr(), sym.as_ptr()) })?;
        self.expect("link", "links/sub/sym-cwd", None, None);
        fs::hard_link(&target, "hard-cwd-at.txt")?; // linkat(AT_FDCWD, …, AT_FDCWD, …)
        self.expect("link", "links/sub/hard-cwd-at.txt", None, None);
        self.tmpfile_linked(|file| {
            let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
            linkat(
                AT_FDCWD,
                proc.as_str(),
                AT_FDCWD,
                "linked-proc.txt",
                AtFlags::AT_SYMLINK_FOLLOW,
            )
        })?;
        self.expect("link", "links/sub/linked-proc.txt", None, None);
        // An absolute new name (tracepoint mode places it: the caller shares the sidecar's root),
        // and one with `..` (tracepoint mode journals its directory, flagged).
        fs::hard_link(&target, self.root.join("links/absolute.txt"))?;
        self.expect("absolute-link", "links/absolute.txt", None, None);
        symlink("moved.txt", "../dotdot-sym")?;
        let made = if self.backend == "tracepoint" {
            "links/sub"
        } else {
            "links/dotdot-sym"
        };
        self.expect("dotdot-link", made, None, None);
        // Outside the watched directory: from a working directory and a descriptor there.
        std::env::set_current_dir(outside)?;
        fs::write("o.txt", b"outside")?;
        fs::hard_link("o.txt", "o-hard")?;
        symlink("o.txt", "o-sym")?;
        let out = File::open(outside)?;
        symlinkat("o.txt", &out, "o-sym-at")?;
        linkat(AT_FDCWD, &target, &out, "o-hard-at", plain)?;
        Ok(())
    }

    /// An O_TMPFILE file in `links/`, written, given a name by `link`, written again.
    fn tmpfile_linked(&mut self, link: impl FnOnce(&File) -> nix::Result<()>) -> Io {
        let mut file = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_TMPFILE)
            .open(self.root.join("links"))?;
        file.write_all(b"unnamed")?;
        link(&file)?;
        file.write_all(b" then named")?;
        Ok(())
    }

    /// Truncations of an existing file with nothing written after them, each a `write` (eBPF:
    /// of 0 bytes): ftruncate(2), an O_TRUNC open, O_CREAT | O_TRUNC (File::create, creat(2)
    /// on x86_64), then truncate(2) by name. Each but the last ends with a close: inotify merges
    /// an IN_MODIFY into an identical one still unread at its queue's tail.
    fn truncations(&mut self, rel: &str) -> Io {
        let path = self.root.join(rel);
        open_for_write(&path)?.set_len(0)?;
        self.expect("ftruncate", rel, None, Some(0));
        OpenOptions::new().write(true).truncate(true).open(&path)?;
        self.expect("O_TRUNC open", rel, None, Some(0));
        File::create(&path)?;
        self.expect("O_CREAT | O_TRUNC open", rel, None, Some(0));
        let name = std::ffi::CString::new(path.to_string_lossy().as_bytes())?;
        // SAFETY: a NUL-terminated name that outlives the calls; the descriptor is closed here.
        unsafe {
            let fd = nix::libc::creat(name.as_ptr(), 0o644);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::libc::close(fd);
            self.expect("creat over it", rel, None, Some(0));
            check_rc(nix::libc::truncate(name.as_ptr(), 0))?;
        }
        self.expect("truncate", rel, None, Some(0));
        Ok(())
    }

    fn create(&mut self, rel: impl AsRef<Path>) -> Io {
        let rel = rel.as_ref();
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.root.join(rel))?;
        self.expect("create", rel, None, None);
        Ok(())
    }

    /// Every write opens its own descriptor: inotify merges identical consecutive events, and
    /// the open/close events in between keep one event per write.
    fn write(&mut self, rel: impl AsRef<Path>, len: usize) -> Io {
        let rel = rel.as_ref();
        let mut file = OpenOptions::new().append(true).open(self.root.join(rel))?;
        let written = file.write(&vec![b'w'; len])?;
        check_len(written, len)?;
        self.expect("write", rel, None, Some(len));
        Ok(())
    }

    fn pwrite(&mut self, rel: &str, len: usize, offset: u64) -> Io {
        let written = open_for_write(&self.root.join(rel))?.write_at(&vec![b'p'; len], offset)?;
        check_len(written, len)?;
        self.expect("pwrite", rel, None, Some(len));
        Ok(())
    }

    fn writev(&mut self, rel: &str, lens: &[usize]) -> Io {
        let bufs: Vec<Vec<u8>> = lens.iter().map(|&n| vec![b'v'; n]).collect();
        let slices: Vec<IoSlice> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let file = OpenOptions::new().append(true).open(self.root.join(rel))?;
        let written = nix::sys::uio::writev(&file, &slices)?;
        let total = lens.iter().sum();
        check_len(written, total)?;
        self.expect("writev", rel, None, Some(total));
        Ok(())
    }

    fn pwritev(&mut self, rel: &str, lens: &[usize], offset: i64) -> Io {
        let bufs: Vec<Vec<u8>> = lens.iter().map(|&n| vec![b'q'; n]).collect();
        let slices: Vec<IoSlice> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let file = open_for_write(&self.root.join(rel))?;
        let written = nix::sys::uio::pwritev(&file, &slices, offset)?;
        let total = lens.iter().sum();
        check_len(written, total)?;
        self.expect("pwritev", rel, None, Some(total));
        Ok(())
    }

    fn rename(&mut self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Io {
        let (from, to) = (from.as_ref(), to.as_ref());
        fs::rename(self.root.join(from), self.root.join(to))?;
        self.expect("rename", to, Some(from), None);
        Ok(())
    }

    fn delete(&mut self, rel: impl AsRef<Path>) -> Io {
        let rel = rel.as_ref();
        fs::remove_file(self.root.join(rel))?;
        self.expect("delete", rel, None, None);
        Ok(())
    }

    /// Records the journal line `step` must produce, if the backend sees it.
    fn expect(
        &mut self,
        step: &str,
        rel: impl AsRef<Path>,
        from: Option<&Path>,
        bytes: Option<usize>,
    ) {
        if !covers(&self.backend, step) {
            return;
        }
        let rel = rel.as_ref();
        let path = |rel: &Path| self.root.join(rel).to_string_lossy().into_owned();
        let mut line = Map::new();
        line.insert("backend".into(), json!(self.backend));
        line.insert("op".into(), json!(journal_op(step)));
        // The journal's rule for a name that is not UTF-8 (docs/journal.md).
        let mut name = |key: &str, rel: &Path| {
            let full = self.root.join(rel);
            let printed = printed(full.as_os_str().as_bytes());
            line.insert(key.into(), json!(printed.text));
            if let Some(exact) = printed.exact_b64 {
                line.insert(format!("{key}_b64"), json!(exact));
            }
        };
        name("path", rel);
        if let Some(from) = from {
            name("from", from);
        }
        if step == "dotdot-link" && self.backend == "tracepoint" {
            // Its directory (the working directory), flagged: the name is not placed.
            line.insert("path".into(), json!(format!("{}/", path(rel))));
            line.insert("truncated".into(), json!(true));
        }
        if self.backend != "inotify" {
            line.insert("pid".into(), json!(std::process::id()));
            line.insert("comm".into(), json!(WRITER_COMM));
            if let Some(bytes) = bytes {
                line.insert("bytes".into(), json!(bytes));
            }
        }
        self.expected.push(Value::Object(line));
    }
}

/// A libc call's return code as an `io::Result`.
fn check_rc(rc: nix::libc::c_int) -> Io {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn open_for_write(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).open(path)
}

fn check_len(written: usize, wanted: usize) -> Io {
    if written == wanted {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "short write: {written} of {wanted} bytes"
        )))
    }
}
