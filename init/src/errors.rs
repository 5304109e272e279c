//! What provisioning can run into: each place looked at is recorded as an [`Attempt`], a failed
//! install as an [`InstallError`], and the run's outcome as a [`ProvisionError`]. Every message is
//! rendered here, once, and names the flag to change where there is one.

use std::fmt;
use std::io;
use std::path::PathBuf;

use diffkeeper_btf::cache::{CacheError, InvalidRelease};
use diffkeeper_btf::validate::{BtfError, BtfFileError};
use diffkeeper_btf::SYSTEM_BTF_PATH;

use crate::archive::ArchiveError;
use crate::bundle::BundleError;
use crate::download::DownloadError;
use crate::identity::IdentityError;

/// Why provisioning ended without a BTF.
#[derive(Debug)]
pub enum ProvisionError {
    Identity(IdentityError),
    Release(InvalidRelease),
    Cache(CacheError),
    /// No BTF anywhere: every place looked at, with what was found there.
    NotFound {
        release: String,
        looked: Vec<Attempt>,
    },
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Identity(e) => write!(f, "cannot identify the kernel: {e}"),
            Self::Release(e) => e.fmt(f),
            Self::Cache(e) => write!(f, "BTF cache unusable: {e}"),
            Self::NotFound { release, looked } => {
                write!(f, "no BTF found for kernel {release}; looked at:")?;
                for place in looked {
                    write!(f, "\n  - {place}")?;
                }
                write!(
                    f,
                    "\nthe sidecar can only use the inotify fallback on this node; provide a BTF \
                     (a bundle made by `just btfgen` with this kernel in --btf-bundle, bake it into \
                     --baked-btf-dir, or allow a BTFHub mirror that has it)"
                )
            }
        }
    }
}

impl std::error::Error for ProvisionError {}

impl From<CacheError> for ProvisionError {
    fn from(e: CacheError) -> Self {
        Self::Cache(e)
    }
}

/// One place looked at for a BTF, and what was found there.
#[derive(Debug)]
pub enum Attempt {
    /// `--kernel-release` names another kernel than the one whose BTF the system exposes.
    SystemDescribesOther {
        running: String,
    },
    SystemAbsent,
    SystemInvalid(BtfFileError),
    CacheAbsent(PathBuf),
    /// The cached file was invalid and has been removed.
    CacheInvalid(BtfFileError),
    BundleAbsent(PathBuf),
    /// The bundle has no entry for this kernel (`looked_for`: the key, or `*/<arch>/<release>`
    /// when the distro is unknown; `ambiguous`: several distros have that release).
    BundleNoEntry {
        path: PathBuf,
        looked_for: String,
        entries: usize,
        ambiguous: bool,
    },
    /// The bundle (or this kernel's entry in it) is corrupt.
    BundleUnusable {
        path: PathBuf,
        error: InstallError,
    },
    BakedAbsent(PathBuf),
    BakedUnusable {
        path: PathBuf,
        error: InstallError,
    },
    DownloadDisabled,
    UnsupportedArch {
        arch: String,
    },
    UnknownDistro {
        host_root: PathBuf,
        release: String,
    },
    Mirror {
        url: String,
        error: InstallError,
    },
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SystemDescribesOther { running } => write!(
                f,
                "system BTF {SYSTEM_BTF_PATH}: describes the running kernel {running}"
            ),
            Self::SystemAbsent => write!(f, "system BTF {SYSTEM_BTF_PATH}: absent"),
            Self::SystemInvalid(e) => write!(f, "system BTF: {e}"),
            Self::CacheAbsent(path) => write!(f, "cache {}: absent", path.display()),
            Self::CacheInvalid(e) => write!(f, "cache: {e} (removed)"),
            Self::BundleAbsent(path) => write!(f, "bundle {}: absent", path.display()),
            Self::BundleNoEntry {
                path,
                looked_for,
                entries,
                ambiguous: false,
            } => write!(
                f,
                "bundle {}: no entry {looked_for} among its {entries}",
                path.display()
            ),
            Self::BundleNoEntry {
                path, looked_for, ..
            } => write!(
                f,
                "bundle {}: several distros have an entry {looked_for} and the host distro is \
                 unknown; mount the host's / and pass --host-root",
                path.display()
            ),
            Self::BundleUnusable { path, error } => {
                write!(f, "bundle {}: {error}", path.display())
            }
            Self::BakedAbsent(path) => write!(f, "baked {}: absent", path.display()),
            Self::BakedUnusable { path, error } => write!(f, "baked {}: {error}", path.display()),
            Self::DownloadDisabled => write!(
                f,
                "BTFHub download: disabled (--disable-btfhub-download / \
                 DIFFKEEPER_BTF_ALLOW_DOWNLOAD=0)"
            ),
            Self::UnsupportedArch { arch } => write!(
                f,
                "BTFHub download: unsupported architecture for BTFHub: {arch} (BTFHub has x86_64 \
                 and arm64 only); bake a BTF for this kernel into --baked-btf-dir"
            ),
            Self::UnknownDistro { host_root, release } => write!(
                f,
                "BTFHub download: skipped, the host distro/version is unknown (no usable \
                 os-release under {} and no hint in release {release}); mount the host's / and \
                 pass --host-root",
                host_root.display()
            ),
            Self::Mirror { url, error } => write!(f, "BTFHub mirror {url}: {error}"),
        }
    }
}

/// Why a BTF from a baked file or a download did not make it into the cache.
#[derive(Debug)]
pub enum InstallError {
    Cache(CacheError),
    Release(InvalidRelease),
    /// A baked plain `.btf` file that is not a valid BTF.
    NotBtf(BtfFileError),
    Open(io::Error),
    Copy(io::Error),
    /// A baked plain file over `--max-btf-bytes`.
    TooLarge {
        max_bytes: u64,
    },
    /// A baked archive that could not be extracted.
    Archive(ArchiveError),
    /// A bundle, or this kernel's entry in it, that could not be read.
    Bundle(BundleError),
    /// A downloaded archive that could not be extracted.
    DownloadedArchive {
        url: String,
        source: ArchiveError,
    },
    Download(DownloadError),
    /// What was extracted or copied is not a valid BTF.
    InvalidData {
        origin: String,
        source: BtfError,
    },
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cache(e) => e.fmt(f),
            Self::Release(e) => e.fmt(f),
            Self::NotBtf(e) => e.fmt(f),
            Self::Open(e) => write!(f, "cannot open: {e}"),
            Self::Copy(e) => write!(f, "cannot copy: {e}"),
            Self::TooLarge { max_bytes } => {
                write!(f, "larger than the {max_bytes}-byte cap (--max-btf-bytes)")
            }
            Self::Archive(e) => e.fmt(f),
            Self::Bundle(e) => e.fmt(f),
            Self::DownloadedArchive { url, source } => write!(f, "archive {url}: {source}"),
            Self::Download(e) => e.fmt(f),
            Self::InvalidData { origin, source } => {
                write!(f, "the data from {origin} is not a usable BTF: {source}")
            }
        }
    }
}

impl std::error::Error for InstallError {}

impl From<CacheError> for InstallError {
    fn from(e: CacheError) -> Self {
        Self::Cache(e)
    }
}
