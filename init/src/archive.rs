//! BTFHub archives (`<release>.btf.tar.xz`): the one regular `*.btf` file inside is streamed into
//! a writer. Nothing from the archive is ever created on disk by name, and anything that is not
//! a plain file or directory (links, devices, `..` or absolute paths) makes the archive refused:
//! BTFHub archives hold a single regular file, so such entries can only mean a hostile archive.

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::rc::Rc;

use tar::EntryType;

/// First bytes of every xz stream.
const XZ_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];

#[derive(Debug)]
pub enum ArchiveError {
    NotXz { found: Vec<u8> },
    TooLarge { limit: u64 },
    UnsafeEntry { path: String, reason: &'static str },
    RefusedEntry { path: String, kind: String },
    NoBtf,
    SeveralBtf { first: String, second: String },
    Corrupt(io::Error),
    Write(io::Error),
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotXz { found } => write!(
                f,
                "not an xz archive (starts with {}; want fd 37 7a 58 5a 00)",
                leading_bytes(found)
            ),
            Self::TooLarge { limit } => write!(
                f,
                "extracted data exceeds the {limit}-byte cap (--max-btf-bytes): refusing a \
                 possible xz bomb"
            ),
            Self::UnsafeEntry { path, reason } => {
                write!(f, "archive entry {path:?} {reason}: refusing the archive")
            }
            Self::RefusedEntry { path, kind } => write!(
                f,
                "archive entry {path:?} is a {kind}; only regular files are accepted: refusing \
                 the archive"
            ),
            Self::NoBtf => write!(f, "archive holds no regular *.btf file"),
            Self::SeveralBtf { first, second } => write!(
                f,
                "archive holds more than one *.btf file ({first:?} and {second:?}): cannot tell \
                 which one is this kernel's"
            ),
            Self::Corrupt(e) => write!(f, "archive is corrupt or truncated: {e}"),
            Self::Write(e) => write!(f, "cannot write the extracted BTF: {e}"),
        }
    }
}

impl std::error::Error for ArchiveError {}

/// The first bytes of a file that should have been xz, for the error message.
fn leading_bytes(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "nothing (empty file)".into()
    } else {
        crate::status::hex(bytes, " ")
    }
}

/// Counts decompressed bytes and fails once more than `limit` pass through.
struct CappedReader<R> {
    inner: R,
    limit: u64,
    seen: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if self.seen > self.limit {
            self.exceeded.set(true);
            return Err(io::Error::other("extraction cap exceeded"));
        }
        Ok(n)
    }
}

/// Extracts the single regular `*.btf` of an xz-compressed tar into `out`; returns its size.
///
/// `max_bytes` caps the whole decompressed stream, so neither a huge `.btf` nor huge filler
/// entries can exhaust memory, disk or time.
pub fn extract_single_btf(
    compressed: impl Read,
    max_bytes: u64,
    out: &mut dyn Write,
) -> Result<u64, ArchiveError> {
    let mut compressed = BufReader::new(compressed);
    let head = compressed.fill_buf().map_err(ArchiveError::Corrupt)?;
    if !head.starts_with(&XZ_MAGIC) {
        let found = head[..head.len().min(XZ_MAGIC.len())].to_vec();
        return Err(ArchiveError::NotXz { found });
    }
    let exceeded = Rc::new(Cell::new(false));
    let reader = CappedReader {
        inner: xz2::read::XzDecoder::new(compressed),
        limit: max_bytes,
        seen: 0,
        exceeded: exceeded.clone(),
    };
    let classify = |e: io::Error| {
        if exceeded.get() {
            ArchiveError::TooLarge { limit: max_bytes }
        } else {
            ArchiveError::Corrupt(e)
        }
    };
    let mut archive = tar::Archive::new(reader);
    let mut taken: Option<(String, u64)> = None;
    for entry in archive.entries().map_err(classify)? {
        let mut entry = entry.map_err(classify)?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        check_path(&path)?;
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => {}
            EntryType::Directory | EntryType::XGlobalHeader => continue,
            other => {
                return Err(ArchiveError::RefusedEntry {
                    path,
                    kind: kind_name(other),
                })
            }
        }
        if !path.ends_with(".btf") {
            log::debug!("skipping archive entry {path:?}: not a .btf file");
            continue;
        }
        if let Some((first, _)) = taken {
            return Err(ArchiveError::SeveralBtf {
                first,
                second: path,
            });
        }
        let size = copy_entry(&mut entry, out).map_err(|e| match e {
            CopyError::Read(e) => classify(e),
            CopyError::Write(e) => ArchiveError::Write(e),
        })?;
        taken = Some((path, size));
    }
    // Read to the end so a truncated or corrupt xz stream (its checksum is at the end) fails.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(classify)?;
    match taken {
        Some((path, size)) => {
            log::debug!("extracted {path:?} ({size} bytes)");
            Ok(size)
        }
        None => Err(ArchiveError::NoBtf),
    }
}

fn check_path(path: &str) -> Result<(), ArchiveError> {
    let reason = if path.starts_with('/') {
        "has an absolute path"
    } else if path.split('/').any(|c| c == "..") {
        "climbs out of the archive with '..'"
    } else {
        return Ok(());
    };
    Err(ArchiveError::UnsafeEntry {
        path: path.to_string(),
        reason,
    })
}

fn kind_name(kind: EntryType) -> String {
    match kind {
        EntryType::Symlink => "symbolic link".into(),
        EntryType::Link => "hard link".into(),
        EntryType::Char => "character device".into(),
        EntryType::Block => "block device".into(),
        EntryType::Fifo => "fifo".into(),
        other => format!("{other:?} entry"),
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// `io::copy` that keeps read errors (cap, corruption) apart from write errors (disk full).
fn copy_entry(from: &mut impl Read, to: &mut dyn Write) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_the_archive_only() {
        for ok in [
            "x.btf",
            "./x.btf",
            "a/b/5.4.0-91-generic.btf",
            "a..b.btf",
            "..x.btf",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in ["/x.btf", "../x.btf", "a/../../x.btf", "a/..", "//etc/x.btf"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn not_xz_names_what_it_found() {
        let err = extract_single_btf(&b"PK\x03\x04zip"[..], 1024, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("50 4b 03 04"), "{err}");
        let err = extract_single_btf(&b""[..], 1024, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("empty file"), "{err}");
    }
}
