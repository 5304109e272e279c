//! What btfgen can run into, as data: a [`BtfgenError`] stops the run (no bundle is written), a
//! [`SkipReason`] says why one archive file is reported and left out of the bundle, an
//! [`ExtractError`] why a kernel archive was refused. Every message is rendered here, once.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use diffkeeper_btf::bundle::EncodeError;
use diffkeeper_btf::validate::BtfError;

use crate::inputs::{Skipped, ARCHES, EM_BPF, SUFFIX};

/// Why no bundle was written.
#[derive(Debug)]
pub enum BtfgenError {
    /// The archive dir (or a dir below it) cannot be listed.
    ListArchive {
        root: PathBuf,
        error: io::Error,
    },
    /// The objects dir (or a dir below it) cannot be listed.
    ListObjects {
        dir: PathBuf,
        error: io::Error,
    },
    /// No `*.bpf.o` under the objects dir.
    NoObjects {
        dir: PathBuf,
    },
    /// A `*.bpf.o` whose ELF header cannot be read.
    ObjectUnreadable {
        path: PathBuf,
        error: io::Error,
    },
    /// A `*.bpf.o` that is not an eBPF ELF (`machine`: its `e_machine`).
    NotBpfObject {
        path: PathBuf,
        machine: u16,
    },
    /// The output dir or the work dir cannot be made.
    Mkdir {
        path: PathBuf,
        error: io::Error,
    },
    /// No xz encoder with btfgen's settings.
    XzEncoder(xz2::stream::Error),
    /// Compressing the minimised BTF of `key` failed.
    Xz {
        key: String,
        error: io::Error,
    },
    /// The minimised BTF of `key` does not fit the index's 32-bit length.
    HugeBtf {
        key: String,
        len: usize,
    },
    /// Every kernel of `archive` was skipped (`skipped`: each one, with its reason).
    NoKernel {
        archive: PathBuf,
        skipped: Vec<Skipped>,
    },
    /// The bundle cannot be laid out.
    Encode(EncodeError),
    Write {
        path: PathBuf,
        error: io::Error,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for BtfgenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ListArchive { root, error } => {
                write!(f, "cannot list the archive {}: {error}", root.display())
            }
            Self::ListObjects { dir, error } => write!(f, "cannot list {}: {error}", dir.display()),
            Self::NoObjects { dir } => write!(
                f,
                "no *.bpf.o under {} (the objects are committed in ebpf/obj/; `just ebpf` \
                 rebuilds them)",
                dir.display()
            ),
            Self::ObjectUnreadable { path, error } => write!(
                f,
                "eBPF object {}: cannot read its ELF header: {error}",
                path.display()
            ),
            Self::NotBpfObject { path, machine } => write!(
                f,
                "{} is not an eBPF ELF object (e_machine {machine}, want {EM_BPF})",
                path.display()
            ),
            Self::Mkdir { path, error } => write!(f, "mkdir {}: {error}", path.display()),
            Self::XzEncoder(e) => write!(f, "xz encoder: {e}"),
            Self::Xz { key, error } => write!(f, "xz of the minimised BTF of {key}: {error}"),
            Self::HugeBtf { key, len } => write!(
                f,
                "the minimised BTF of {key} is {len} bytes: too large for the bundle index"
            ),
            Self::NoKernel { archive, skipped } => write!(
                f,
                "no kernel of {} could be minimised ({} skipped, see above): no bundle written",
                archive.display(),
                skipped.len()
            ),
            Self::Encode(e) => write!(f, "cannot lay out the bundle: {e}"),
            Self::Write { path, error } => write!(f, "write {}: {error}", path.display()),
            Self::Rename { from, to, error } => {
                write!(f, "rename {} to {}: {error}", from.display(), to.display())
            }
        }
    }
}

impl std::error::Error for BtfgenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ListArchive { error, .. }
            | Self::ListObjects { error, .. }
            | Self::ObjectUnreadable { error, .. }
            | Self::Mkdir { error, .. }
            | Self::Xz { error, .. }
            | Self::Write { error, .. }
            | Self::Rename { error, .. } => Some(error),
            Self::XzEncoder(e) => Some(e),
            Self::Encode(e) => Some(e),
            _ => None,
        }
    }
}

/// Why one file of the archive is not in the bundle.
#[derive(Debug)]
pub enum SkipReason {
    /// Not at `<distro>/<version>/<arch>/<release>.btf.tar.xz` (`depth`: its path components).
    NotBtfhubPath { depth: usize },
    /// The arch dir is not one of BTFHub's ([`ARCHES`]).
    UnknownArch { arch: String },
    /// The bundle key the path makes is refused by `check_key`.
    BadKey { key: String, reason: &'static str },
    /// No eBPF object serves the kernel's arch.
    NoObjectForArch { arch: String },
    /// The worker's scratch dir cannot be made.
    Mkdir { path: PathBuf, error: io::Error },
    /// The kernel archive cannot be opened.
    Open { path: PathBuf, error: io::Error },
    /// The file to extract the kernel BTF into cannot be created.
    Create { path: PathBuf, error: io::Error },
    /// The kernel archive was refused or is broken.
    Extract(ExtractError),
    /// A file btfgen wrote cannot be read back.
    Read { path: PathBuf, error: io::Error },
    /// The archive's `*.btf` is not a BTF.
    KernelNotBtf(BtfError),
    /// bpftool cannot be started.
    RunBpftool { program: String, error: io::Error },
    /// `bpftool gen min_core_btf` exited unsuccessfully (`message`: the last line of its stderr).
    BpftoolFailed {
        program: String,
        status: ExitStatus,
        message: Option<String>,
    },
    /// bpftool's output is not a BTF.
    MinimisedNotBtf(BtfError),
    /// The worker thread died before reporting this kernel.
    WorkerDidNotFinish,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBtfhubPath { depth } => write!(
                f,
                "not at <distro>/<version>/<arch>/<release>{SUFFIX} (depth {depth})"
            ),
            Self::UnknownArch { arch } => write!(
                f,
                "arch dir {arch:?} is not one of BTFHub's {}",
                ARCHES.join(", ")
            ),
            Self::BadKey { key, reason } => write!(f, "key {key:?} {reason}"),
            Self::NoObjectForArch { arch } => write!(f, "no eBPF object serves arch {arch}"),
            Self::Mkdir { path, error } => write!(f, "mkdir {}: {error}", path.display()),
            Self::Open { path: _, error } => write!(f, "cannot open: {error}"),
            Self::Create { path, error } => write!(f, "create {}: {error}", path.display()),
            Self::Extract(e) => e.fmt(f),
            Self::Read { path, error } => write!(f, "read {}: {error}", path.display()),
            Self::KernelNotBtf(e) => write!(f, "the archive's *.btf is not a BTF: {e}"),
            Self::RunBpftool { program, error } => {
                write!(f, "cannot run {program} (apt-get install bpftool): {error}")
            }
            Self::BpftoolFailed {
                program: _,
                status,
                message,
            } => write!(
                f,
                "bpftool gen min_core_btf failed ({status}): {}",
                message.as_deref().unwrap_or("no message")
            ),
            Self::MinimisedNotBtf(e) => write!(f, "bpftool's minimised BTF is unusable: {e}"),
            Self::WorkerDidNotFinish => write!(f, "worker did not finish"),
        }
    }
}

impl std::error::Error for SkipReason {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Mkdir { error, .. }
            | Self::Open { error, .. }
            | Self::Create { error, .. }
            | Self::Read { error, .. }
            | Self::RunBpftool { error, .. } => Some(error),
            Self::Extract(e) => Some(e),
            Self::KernelNotBtf(e) | Self::MinimisedNotBtf(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ExtractError> for SkipReason {
    fn from(e: ExtractError) -> Self {
        Self::Extract(e)
    }
}

/// Why [`crate::extract_single_btf`] refused an archive.
#[derive(Debug)]
pub enum ExtractError {
    /// Not even the 6 bytes of the xz magic could be read.
    ShortHead(io::Error),
    /// The first 6 bytes are not the xz magic.
    NotXz { head: [u8; 6] },
    /// The xz stream or the tar inside it is corrupt or truncated.
    Corrupt(io::Error),
    /// An entry's path is absolute or has a `..` component.
    Escapes { entry: String },
    /// An entry is a link, a device or another non-regular kind.
    Kind { entry: String, kind: tar::EntryType },
    /// More than one `*.btf` file.
    TwoBtf { first: String, second: String },
    /// The archive decompresses to more than `cap` bytes.
    TooLarge { cap: u64 },
    /// No regular `*.btf` file.
    NoBtf,
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShortHead(e) => write!(f, "not an xz archive: cannot read 6 bytes ({e})"),
            Self::NotXz { head } => write!(f, "not an xz archive (starts with {head:02x?})"),
            Self::Corrupt(e) => write!(f, "archive is corrupt or truncated: {e}"),
            Self::Escapes { entry } => {
                write!(f, "archive entry {entry:?} escapes the archive: refused")
            }
            Self::Kind { entry, kind } => {
                write!(f, "archive entry {entry:?} is a {kind:?}: refused")
            }
            Self::TwoBtf { first, second } => {
                write!(f, "archive holds two *.btf files ({first:?}, {second:?})")
            }
            Self::TooLarge { cap } => {
                write!(f, "archive decompresses to more than {cap} bytes: refused")
            }
            Self::NoBtf => write!(f, "archive holds no regular *.btf file"),
        }
    }
}

impl std::error::Error for ExtractError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ShortHead(e) | Self::Corrupt(e) => Some(e),
            _ => None,
        }
    }
}
