//! Reading one path as it is once its writes settled: the file type from `lstat` (never from
//! the journal's op), and a file's content through [`SettledReader`], which fails at the end
//! if the file changed while it was read (size, mtime, ctime or inode), so a torn mix is never
//! recorded: the store records nothing of a put whose reader fails.
//!
//! A write updates the times when it starts, so one already running when the file is opened
//! changes nothing `fstat` shows while it copies: a file changed less than [`QUIET`] ago is
//! therefore not read yet ([`Found::Busy`]). A single `write()` into the middle of a file that
//! runs longer than that is the one change these checks cannot see. A file that is never
//! quiet that long (written without pause) is read without waiting once it was put off, so it
//! is still recorded: then the checks at the end of the read are what stands between it and a
//! torn version.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diffkeeper_store::Meta;

use super::state::Fingerprint;

/// What a path is, when it was looked at.
#[derive(Debug)]
pub enum Found {
    /// A regular file, open for reading; `meta` and `fingerprint` are the open file's.
    File {
        meta: Meta,
        fingerprint: Fingerprint,
        reader: SettledReader,
    },
    Dir {
        meta: Meta,
        fingerprint: Fingerprint,
    },
    Symlink {
        meta: Meta,
        fingerprint: Fingerprint,
        target: PathBuf,
    },
    /// The path no longer exists (deleted or renamed away before it was read).
    Gone,
    /// Content not recorded, and why (journaled as `"content":"skipped"`).
    Skipped(Skip),
    /// Replaced between lstat and open: look again.
    Replaced,
    /// Changed less than [`QUIET`] ago: look again after this long.
    Busy(Duration),
}

/// How long a file must have been left alone before it is read.
pub const QUIET: Duration = Duration::from_millis(20);

/// Why a path's content is not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    TooBig {
        size: u64,
        limit: u64,
    },
    Excluded {
        glob: String,
    },
    /// The sidecar may not read it (EACCES/EPERM).
    NoPermission,
    /// A FIFO, socket or device node: no content to keep.
    Special,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooBig { size, limit } => write!(
                f,
                "{size} bytes, larger than --capture-max-file-bytes={limit}"
            ),
            Self::Excluded { glob } => write!(f, "excluded by --exclude {glob}"),
            Self::NoPermission => f.write_str(
                "permission denied: the sidecar cannot read this file (give its container \
                 CAP_DAC_READ_SEARCH, as k8s/components/state-recorder does)",
            ),
            Self::Special => f.write_str("not a regular file, directory or symlink"),
        }
    }
}

/// Looks at `path` without following a final symlink; files over `max_file_bytes` are skipped.
/// `quiet`: a file changed less than [`QUIET`] ago is [`Found::Busy`]; without it (a file that
/// was never quiet at the last attempts) only the checks at the end of the read apply.
pub fn look(path: &Path, max_file_bytes: u64, quiet: bool) -> io::Result<Found> {
    let before = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if is_gone(&e) => return Ok(Found::Gone),
        Err(e) if is_denied(&e) => return Ok(Found::Skipped(Skip::NoPermission)),
        Err(e) => return Err(e),
    };
    let meta = Meta::from_metadata(&before);
    let fingerprint = Fingerprint::of(&before);
    let kind = before.file_type();
    if kind.is_dir() {
        return Ok(Found::Dir { meta, fingerprint });
    }
    if kind.is_symlink() {
        return match std::fs::read_link(path) {
            Ok(target) => Ok(Found::Symlink {
                meta,
                fingerprint,
                target,
            }),
            Err(e) if is_gone(&e) => Ok(Found::Gone),
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Ok(Found::Replaced),
            Err(e) => Err(e),
        };
    }
    if !kind.is_file() {
        return Ok(Found::Skipped(Skip::Special));
    }
    if before.len() > max_file_bytes {
        return Ok(Found::Skipped(Skip::TooBig {
            size: before.len(),
            limit: max_file_bytes,
        }));
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if is_gone(&e) => return Ok(Found::Gone),
        Err(e) if is_denied(&e) => return Ok(Found::Skipped(Skip::NoPermission)),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Ok(Found::Replaced),
        Err(e) => return Err(e),
    };
    let opened = file.metadata()?;
    if (opened.dev(), opened.ino()) != (before.dev(), before.ino()) || !opened.is_file() {
        return Ok(Found::Replaced);
    }
    let changed = UNIX_EPOCH
        + Duration::new(
            opened.ctime().max(0) as u64,
            opened.ctime_nsec().clamp(0, 999_999_999) as u32,
        );
    let age = SystemTime::now()
        .duration_since(changed)
        .unwrap_or_default();
    if quiet && age < QUIET {
        return Ok(Found::Busy(QUIET - age));
    }
    Ok(Found::File {
        meta: Meta::from_metadata(&opened),
        fingerprint: Fingerprint::of(&opened),
        reader: SettledReader {
            file,
            opened,
            read: 0,
            limit: max_file_bytes,
        },
    })
}

/// The content of an open file; at its end, an error if the file changed since it was opened.
#[derive(Debug)]
pub struct SettledReader {
    file: File,
    opened: Metadata,
    read: u64,
    limit: u64,
}

/// The error a [`SettledReader`] ends with when the file changed while it was read.
#[derive(Debug)]
pub struct ChangedWhileRead;

impl std::fmt::Display for ChangedWhileRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the file changed while it was read")
    }
}

impl std::error::Error for ChangedWhileRead {}

impl ChangedWhileRead {
    /// Whether `e` is (or wraps) this error.
    pub fn is(e: &io::Error) -> bool {
        e.get_ref()
            .is_some_and(|inner| inner.is::<ChangedWhileRead>())
    }
}

impl Read for SettledReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            // Grew past the limit while read: not this version.
            return Err(io::Error::other(ChangedWhileRead));
        }
        if n == 0 && !buf.is_empty() {
            let now = self.file.metadata()?;
            if !same_version(&self.opened, &now) || self.read != now.len() {
                return Err(io::Error::other(ChangedWhileRead));
            }
        }
        Ok(n)
    }
}

/// Same inode, size, mtime and ctime: nothing was written in between.
fn same_version(a: &Metadata, b: &Metadata) -> bool {
    (
        a.ino(),
        a.size(),
        a.mtime(),
        a.mtime_nsec(),
        a.ctime(),
        a.ctime_nsec(),
    ) == (
        b.ino(),
        b.size(),
        b.mtime(),
        b.mtime_nsec(),
        b.ctime(),
        b.ctime_nsec(),
    )
}

fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOENT | nix::libc::ENOTDIR)
    )
}

fn is_denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(nix::libc::EACCES | nix::libc::EPERM))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dk-read-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn types_come_from_lstat() {
        let dir = scratch("types");
        std::fs::write(dir.join("f"), b"hello").unwrap();
        std::os::unix::fs::symlink("f", dir.join("l")).unwrap();
        std::fs::create_dir(dir.join("d")).unwrap();
        let changed = std::time::Instant::now();
        std::fs::set_permissions(dir.join("f"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let first = look(&dir.join("f"), 10, true).unwrap();
        // Only meaningful if the look came well within QUIET of the change (ctime is a coarse
        // clock; a loaded machine may take longer: then the file is quiet already).
        if changed.elapsed() < QUIET / 2 {
            assert!(matches!(first, Found::Busy(_)), "{first:?}");
        }
        drop(first);
        std::thread::sleep(QUIET);
        match look(&dir.join("f"), 10, true).unwrap() {
            Found::File {
                meta, mut reader, ..
            } => {
                let mut content = Vec::new();
                reader.read_to_end(&mut content).unwrap();
                assert_eq!(
                    (meta.mode, meta.size, content.as_slice()),
                    (0o750, 5, &b"hello"[..])
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(look(&dir.join("l"), 10, true).unwrap(),
            Found::Symlink { target, .. } if target == Path::new("f")));
        assert!(matches!(
            look(&dir.join("d"), 10, true).unwrap(),
            Found::Dir { .. }
        ));
        assert!(matches!(
            look(&dir.join("nope"), 10, true).unwrap(),
            Found::Gone
        ));
        assert!(matches!(
            look(&dir.join("f"), 4, true).unwrap(),
            Found::Skipped(Skip::TooBig { size: 5, limit: 4 })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A writer rewrites the file in place, one letter at a time, with pauses: every read that
    /// ends without error holds one letter only (a mix is a torn read).
    #[test]
    fn a_file_written_while_read_is_never_returned_torn() {
        let dir = scratch("torn");
        let path = dir.join("busy");
        std::fs::write(&path, vec![b'a'; 1 << 20]).unwrap();
        let writer_path = path.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let writer = std::thread::spawn(move || {
            use std::io::{Seek, Write};
            let mut letter = b'a';
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(&writer_path)
                .unwrap();
            for pass in 0.. {
                if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                letter = if letter == b'z' { b'a' } else { letter + 1 };
                // In place, in 64 KiB pieces: the size never changes, only mtime/ctime do.
                file.seek(io::SeekFrom::Start(0)).unwrap();
                for _ in 0..16 {
                    file.write_all(&[letter; 64 << 10]).unwrap();
                }
                // Quiet now and then, so some reads find the file settled.
                if pass % 4 == 0 {
                    std::thread::sleep(Duration::from_millis(40));
                }
            }
        });
        let (mut whole, mut refused) = (0, 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            let mut reader = match look(&path, 2 << 20, true).unwrap() {
                Found::File { reader, .. } => reader,
                Found::Busy(wait) => {
                    refused += 1;
                    std::thread::sleep(wait / 4);
                    continue;
                }
                other => panic!("{other:?}"),
            };
            let mut content = Vec::new();
            match reader.read_to_end(&mut content) {
                Ok(_) => {
                    assert!(
                        content.iter().all(|&b| b == content[0]),
                        "torn read accepted"
                    );
                    whole += 1;
                }
                Err(e) if ChangedWhileRead::is(&e) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        println!("{whole} settled reads, {refused} refused as being written");
        assert!(
            refused > 0 && whole > 0,
            "{whole} settled, {refused} refused"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
