//! Typed errors of the store: each names the file or record that failed and what to do.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What went wrong reading or writing a store.
#[derive(Debug)]
pub enum StoreError {
    /// An I/O error on a named file.
    Io { path: PathBuf, source: io::Error },
    /// The file system is full (ENOSPC/EDQUOT): nothing of the failed call was recorded; the
    /// caller can count it and retry once space returns.
    NoSpace { path: PathBuf },
    /// Another writer holds the store's lock.
    Locked { dir: PathBuf },
    /// The store was written by a newer format than this build reads.
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A file is not a diffkeeper store file (wrong magic).
    NotAStore { path: PathBuf, reason: String },
    /// A record or chunk failed its checksum, hash or bounds check.
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A path given to the store, or found in it, is not a clean relative path.
    BadPath { path: Vec<u8>, reason: &'static str },
    /// A root name is not an absolute, clean path.
    BadRoot { root: String, reason: &'static str },
    /// A referenced chunk is absent from every pack.
    MissingChunk { hash: String },
    /// The path has no entry at the requested time (or is not of the requested type).
    NotFound { what: String },
    /// The content of a version was pruned by --store-max-bytes.
    Pruned { what: String },
    /// A single file's version list would not fit one record.
    TooLarge { what: String, limit: u64 },
    /// The export/restore target refuses the operation (non-empty, symlinked parent, ...).
    Target { path: PathBuf, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Wraps an I/O error for `path`, keeping a full disk apart so callers can retry.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        // ENOSPC and EDQUOT: the disk or the quota is full.
        match source.raw_os_error() {
            Some(28) | Some(122) => Self::NoSpace { path },
            _ if source.kind() == io::ErrorKind::StorageFull => Self::NoSpace { path },
            _ => Self::Io { path, source },
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Self::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for a full disk or quota.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::NoSpace { .. })
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::NoSpace { path } => write!(
                f,
                "{}: no space left on the store's file system; nothing of this change was recorded, free space or raise the volume's size",
                path.display()
            ),
            Self::Locked { dir } => write!(
                f,
                "{}: another diffkeeper writer holds this store's lock; one sidecar per store",
                dir.display()
            ),
            Self::NewerFormat {
                path,
                found,
                supported,
            } => write!(
                f,
                "{}: store format version {found} is newer than this build reads (up to {supported}); use a newer diffkeeper",
                path.display()
            ),
            Self::NotAStore { path, reason } => {
                write!(f, "{}: not a diffkeeper store: {reason}", path.display())
            }
            Self::Corrupt {
                path,
                offset,
                reason,
            } => write!(f, "{} at byte {offset}: corrupt: {reason}", path.display()),
            Self::BadPath { path, reason } => write!(
                f,
                "path {:?} refused: {reason}",
                String::from_utf8_lossy(path)
            ),
            Self::BadRoot { root, reason } => write!(f, "root {root:?} refused: {reason}"),
            Self::MissingChunk { hash } => write!(
                f,
                "chunk {hash} is referenced but present in no pack (run diffkeeper verify)"
            ),
            Self::NotFound { what } => write!(f, "{what}: not found"),
            Self::Pruned { what } => write!(
                f,
                "{what}: content was pruned to keep the store under its size limit"
            ),
            Self::TooLarge { what, limit } => write!(f, "{what}: larger than the limit of {limit}"),
            Self::Target { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
