//! Reading one kernel's BTF out of a bundle (`just btfgen`, layout in
//! [`diffkeeper_btf::bundle`]): the header and index are read and checked in full (every offset
//! and length bounded by the file size and the caps), then only this kernel's blob is read,
//! decompressed under a cap, and checked against the length and sha256 the index gives and as a
//! BTF, before a byte of it is handed on.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use diffkeeper_btf::bundle::{self as format, FormatError, IndexEntry, HEADER_LEN};
use diffkeeper_btf::validate::{self as btf, BtfError};
use sha2::{Digest, Sha256};

use crate::identity::KernelIdentity;

/// An opened bundle whose header and index passed every check.
pub struct Bundle {
    path: PathBuf,
    file: File,
    entries: Vec<IndexEntry>,
}

/// What is wrong with a bundle, or with one of its entries.
#[derive(Debug)]
pub enum BundleError {
    Open(io::Error),
    /// Reading `len` bytes at `at` failed (an I/O error, or the file shrank under us).
    Read {
        at: u64,
        len: u64,
        source: io::Error,
    },
    Format(FormatError),
    /// The entry's blob is unusable.
    Entry {
        key: String,
        extent: String,
        problem: EntryProblem,
    },
}

#[derive(Debug)]
pub enum EntryProblem {
    NotXz,
    Corrupt(io::Error),
    TooLarge {
        btf_len: u32,
        max_bytes: u64,
    },
    /// Fewer bytes than the index says.
    WrongLength {
        want: u32,
        got: u64,
    },
    /// More bytes than the index says: decompression stopped at the first byte past `want`,
    /// so how many more is not known.
    LongerThanClaimed {
        want: u32,
    },
    TrailingData {
        used: u64,
    },
    WrongSha256 {
        want: String,
        got: String,
    },
    NotBtf(BtfError),
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotXz => write!(f, "the blob is not an xz stream"),
            Self::Corrupt(e) => write!(f, "the xz stream is corrupt or truncated ({e})"),
            Self::TooLarge { btf_len, max_bytes } => write!(
                f,
                "the index claims a {btf_len}-byte BTF, over the {max_bytes}-byte cap \
                 (--max-btf-bytes)"
            ),
            Self::WrongLength { want, got } => {
                write!(f, "decompressed to {got} bytes, the index says {want}")
            }
            Self::LongerThanClaimed { want } => write!(
                f,
                "decompresses to more than {want} bytes, the index says {want}"
            ),
            Self::TrailingData { used } => write!(
                f,
                "the xz stream ends after {used} bytes, before the end of the blob"
            ),
            Self::WrongSha256 { want, got } => {
                write!(f, "sha256 {got} differs from the index's {want}")
            }
            Self::NotBtf(e) => write!(f, "the decompressed entry is not a usable BTF: {e}"),
        }
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open(e) => write!(f, "cannot open: {e}"),
            Self::Read { at, len, source } => {
                write!(
                    f,
                    "cannot read {len} bytes at offset {at}: {source} (truncated?)"
                )
            }
            Self::Format(e) => write!(f, "{e}; rebuild the bundle with `just btfgen`"),
            Self::Entry {
                key,
                extent,
                problem,
            } => write!(
                f,
                "entry {key} ({extent}): {problem}; rebuild the bundle with `just btfgen`"
            ),
        }
    }
}

impl std::error::Error for BundleError {}

impl Bundle {
    /// Opens and checks a bundle; `Ok(None)` when there is no file at `path`.
    pub fn open(path: &Path) -> Result<Option<Bundle>, BundleError> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BundleError::Open(e)),
        };
        let len = file.metadata().map_err(BundleError::Open)?.len();
        let head = read_at(&mut file, 0, (HEADER_LEN as u64).min(len))?;
        let (count, index_len) = format::parse_header(&head, len).map_err(BundleError::Format)?;
        let index = read_at(&mut file, HEADER_LEN as u64, u64::from(index_len))?;
        let entries = format::parse_index(&index, count, len).map_err(BundleError::Format)?;
        Ok(Some(Bundle {
            path: path.to_path_buf(),
            file,
            entries,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// This kernel's entry: `<distro>/<version>/<arch>/<release>` when the distro is known (the
    /// identity the BTFHub download uses); otherwise the one entry for `<arch>/<release>`, if
    /// exactly one distro has that release.
    pub fn find(&self, id: &KernelIdentity) -> Lookup<'_> {
        if let Some(dir) = id.btfhub_dir() {
            let key = format!("{dir}/{}", id.release);
            return match self.entry(&key) {
                Some(entry) => Lookup::Found(entry),
                None => Lookup::Missing(key),
            };
        }
        let tail = format!("/{}/{}", id.arch, id.release);
        let mut matching = self.entries.iter().filter(|e| e.key.ends_with(&tail));
        match (matching.next(), matching.next()) {
            (Some(only), None) => Lookup::Found(only),
            (None, _) => Lookup::Missing(format!("*{tail}")),
            (Some(_), Some(_)) => Lookup::Ambiguous(format!("*{tail}")),
        }
    }

    /// The entry with exactly this key.
    pub fn entry(&self, key: &str) -> Option<&IndexEntry> {
        self.entries
            .binary_search_by(|e| e.key.as_str().cmp(key))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The entry's BTF, checked (cap, xz integrity, length, sha256, BTF header) before it is
    /// returned.
    pub fn extract(&mut self, entry: &IndexEntry, max_bytes: u64) -> Result<Vec<u8>, BundleError> {
        let fail = |problem| BundleError::Entry {
            key: entry.key.clone(),
            extent: entry.extent(),
            problem,
        };
        if u64::from(entry.btf_len) > max_bytes {
            return Err(fail(EntryProblem::TooLarge {
                btf_len: entry.btf_len,
                max_bytes,
            }));
        }
        let blob = read_at(&mut self.file, entry.offset, u64::from(entry.stored_len))?;
        if !blob.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
            return Err(fail(EntryProblem::NotXz));
        }
        let mut decoder = xz2::read::XzDecoder::new(&blob[..]);
        let mut btf_bytes = Vec::with_capacity(entry.btf_len as usize);
        (&mut decoder)
            .take(u64::from(entry.btf_len) + 1)
            .read_to_end(&mut btf_bytes)
            .map_err(|e| fail(EntryProblem::Corrupt(e)))?;
        // Read one byte past the claim, never more: a longer entry is refused without
        // inflating the rest of it.
        if btf_bytes.len() as u64 > u64::from(entry.btf_len) {
            return Err(fail(EntryProblem::LongerThanClaimed {
                want: entry.btf_len,
            }));
        }
        if (btf_bytes.len() as u64) < u64::from(entry.btf_len) {
            return Err(fail(EntryProblem::WrongLength {
                want: entry.btf_len,
                got: btf_bytes.len() as u64,
            }));
        }
        // The stream must end exactly at the end of the blob (its checks are at the end).
        let mut rest = Vec::new();
        (&mut decoder)
            .take(1)
            .read_to_end(&mut rest)
            .map_err(|e| fail(EntryProblem::Corrupt(e)))?;
        if !rest.is_empty() {
            return Err(fail(EntryProblem::LongerThanClaimed {
                want: entry.btf_len,
            }));
        }
        if decoder.total_in() != u64::from(entry.stored_len) {
            return Err(fail(EntryProblem::TrailingData {
                used: decoder.total_in(),
            }));
        }
        let got: [u8; 32] = Sha256::digest(&btf_bytes).into();
        if got != entry.sha256 {
            return Err(fail(EntryProblem::WrongSha256 {
                want: crate::status::hex(&entry.sha256, ""),
                got: crate::status::hex(&got, ""),
            }));
        }
        btf::check_bytes(&btf_bytes).map_err(|e| fail(EntryProblem::NotBtf(e)))?;
        Ok(btf_bytes)
    }
}

/// The result of looking a kernel up in the index.
pub enum Lookup<'a> {
    Found(&'a IndexEntry),
    /// No entry; the key (or `*/<arch>/<release>` pattern) looked for.
    Missing(String),
    /// The distro is unknown and several distros have this release.
    Ambiguous(String),
}

/// Reads exactly `len` bytes at `at`; `len` is bounded by the caller (file size, format caps).
fn read_at(file: &mut File, at: u64, len: u64) -> Result<Vec<u8>, BundleError> {
    let read = |file: &mut File| -> io::Result<Vec<u8>> {
        file.seek(SeekFrom::Start(at))?;
        let mut buf = Vec::with_capacity(len as usize);
        file.take(len).read_to_end(&mut buf)?;
        if (buf.len() as u64) < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("only {} bytes there", buf.len()),
            ));
        }
        Ok(buf)
    };
    read(file).map_err(|source| BundleError::Read { at, len, source })
}
