//! Kernel identity: who the node's kernel is, in the names BTFHub uses for its archive.
//!
//! A BTFHub archive path is `<distro>/<version>/<arch>/<release>.btf.tar.xz`
//! (e.g. `ubuntu/20.04/x86_64/5.4.0-91-generic.btf.tar.xz`, `centos/7/x86_64/...`,
//! `sles/15.3/x86_64/...`). The release and the architecture come from `uname`; the distro and
//! its version come from the **host's** os-release, read under a host root: inside a container
//! `/etc/os-release` describes the image, not the node. Without an os-release, patterns in the
//! kernel release (`.el7`, `.amzn2`, `-generic`, `-cloud-amd64`, ...) give a hint.
//!
//! Facts about the archive layout that the rules below rely on (aquasecurity/btfhub-archive and
//! the `distroReleases` table of aquasecurity/btfhub):
//! * top-level distro dirs: `amzn`, `centos`, `debian`, `fedora`, `ol`, `rhel`, `sles`, `ubuntu`;
//!   there is no `rocky` or `almalinux` dir;
//! * versions: ubuntu `16.04`/`18.04`/`20.04` (full `VERSION_ID`); debian `10`/`11`,
//!   centos `7`/`8`, rhel `7`/`8`, ol `7`/`8`, fedora `24`..`34` (major only); amzn `1`/`2018`/`2`
//!   (Amazon Linux AMI 2018.03 kernels, `*.amzn1.*`, sit under `2018`); sles `12.3`, `12.5`,
//!   `15.1`..`15.4` (`VERSION_ID` as is, BTFHub's release list names SLES 15 GA `15.0`);
//! * arch dirs: `x86_64` and `arm64` only.
//!
//! One file per concern: [`host_root`] reads files the way the host sees them, [`os_release`]
//! parses os-release(5), [`btfhub`] holds BTFHub's naming tables, [`hints`] guesses the distro
//! from a kernel release. This file puts them together in [`detect`], the only caller of uname.

mod btfhub;
#[cfg(test)]
mod fixtures;
mod hints;
mod host_root;
mod os_release;
#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use diffkeeper_btf::cache::check_release;
use nix::errno::Errno;
use nix::sys::utsname::UtsName;

use btfhub::{btfhub_arch, is_path_segment, BTFHUB_ARCHES};
use hints::hint_from_release;
use host_root::{check_host_root, read_host_os_release};

/// The node's kernel, named the way BTFHub names its archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelIdentity {
    /// `uname -r`, e.g. `5.15.0-92-generic`.
    pub release: String,
    /// BTFHub architecture name (`x86_64` | `arm64`); an architecture BTFHub lacks is kept as is.
    pub arch: String,
    /// BTFHub distro directory (`ubuntu`, `centos`, ...), when known.
    pub distro: Option<String>,
    /// BTFHub version directory (`22.04`, `7`, `15.3`, ...), when known.
    pub version: Option<String>,
}

impl KernelIdentity {
    /// Whether BTFHub publishes BTFs for this architecture at all.
    pub fn btfhub_arch_supported(&self) -> bool {
        BTFHUB_ARCHES.contains(&self.arch.as_str())
    }

    /// `<distro>/<version>/<arch>`: the archive directory holding this kernel's BTF (also the
    /// shape of a baked BTFHub tree). `None` when distro or version is unknown, or when a
    /// component is not a single safe path segment.
    pub fn btfhub_dir(&self) -> Option<String> {
        let distro = self.distro.as_deref()?;
        let version = self.version.as_deref()?;
        [distro, version, self.arch.as_str()]
            .iter()
            .all(|part| is_path_segment(part))
            .then(|| format!("{distro}/{version}/{}", self.arch))
    }

    /// `<distro>/<version>/<arch>/<release>.btf.tar.xz`, relative to a BTFHub mirror root.
    pub fn btfhub_path(&self) -> Option<String> {
        check_release(&self.release).ok()?;
        Some(format!(
            "{}/{}.btf.tar.xz",
            self.btfhub_dir()?,
            self.release
        ))
    }
}

impl fmt::Display for KernelIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kernel {} ({}), distro {} {}",
            self.release,
            self.arch,
            self.distro.as_deref().unwrap_or("unknown"),
            self.version.as_deref().unwrap_or("(version unknown)")
        )
    }
}

/// Why the kernel identity could not be determined.
#[derive(Debug)]
pub enum IdentityError {
    /// uname(2) failed (practically impossible, but then nothing else can be trusted either).
    Uname(Errno),
    /// The host root is missing or not a directory.
    HostRoot { path: PathBuf, source: io::Error },
    /// An os-release exists under the host root but cannot be read.
    ReadOsRelease { path: PathBuf, source: io::Error },
    /// The release (from uname or the override) cannot name a cache file or archive entry.
    InvalidRelease {
        release: String,
        origin: &'static str,
    },
    /// The architecture (from uname or the override) cannot name an archive directory.
    InvalidArch { arch: String, origin: &'static str },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uname(errno) => write!(
                f,
                "uname(2) failed: {} ({errno}); set the kernel release and architecture \
                 explicitly with --kernel-release (DIFFKEEPER_KERNEL_RELEASE) and --arch \
                 (DIFFKEEPER_ARCH)",
                errno.desc()
            ),
            Self::HostRoot { path, source } => write!(
                f,
                "host root {} is not a readable directory: {source}; mount the host's / there \
                 (e.g. a hostPath volume at /host) or pass --host-root (DIFFKEEPER_HOST_ROOT)",
                path.display()
            ),
            Self::ReadOsRelease { path, source } => write!(
                f,
                "cannot read the host's os-release {}: {source}; make it readable, or point \
                 --host-root (DIFFKEEPER_HOST_ROOT) at the host's root filesystem",
                path.display()
            ),
            Self::InvalidRelease { release, origin } => write!(
                f,
                "kernel release {release:?} from {origin} is not usable as a file name (empty, \
                 '/', '..', leading '.' or control characters); pass the real release with \
                 --kernel-release (DIFFKEEPER_KERNEL_RELEASE)"
            ),
            Self::InvalidArch { arch, origin } => write!(
                f,
                "architecture {arch:?} from {origin} is not a single path segment of letters, \
                 digits, '.', '_' or '-'; pass --arch (DIFFKEEPER_ARCH) as x86_64 or arm64"
            ),
        }
    }
}

impl std::error::Error for IdentityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Uname(errno) => Some(errno),
            Self::HostRoot { source, .. } | Self::ReadOsRelease { source, .. } => Some(source),
            Self::InvalidRelease { .. } | Self::InvalidArch { .. } => None,
        }
    }
}
/// Determines release, arch and the host's distro/version.
///
/// `release_override`/`arch_override` replace `uname -r`/`uname -m`. The distro and version come
/// from `<host_root>/etc/os-release`, else `<host_root>/usr/lib/os-release`, else from hints in
/// the release string. A missing os-release is not an error; an unreadable one is.
pub fn detect(
    host_root: &Path,
    release_override: Option<&str>,
    arch_override: Option<&str>,
) -> Result<KernelIdentity, IdentityError> {
    let release = detect_release(release_override)?;
    let arch = detect_arch(arch_override)?;
    check_host_root(host_root)?;
    let (distro, version) = detect_distro(host_root, &release)?;
    Ok(KernelIdentity {
        release,
        arch,
        distro,
        version,
    })
}

fn uname() -> Result<UtsName, IdentityError> {
    nix::sys::utsname::uname().map_err(IdentityError::Uname)
}

/// The override (trimmed), else uname's field, each with the name an error cites.
fn given_or_uname(
    given: Option<&str>,
    flag: &'static str,
    (field, command): (fn(&UtsName) -> &OsStr, &'static str),
) -> Result<(String, &'static str), IdentityError> {
    Ok(match given {
        Some(value) => (value.trim().to_string(), flag),
        None => (field(&uname()?).to_string_lossy().into_owned(), command),
    })
}

fn detect_release(release_override: Option<&str>) -> Result<String, IdentityError> {
    let (release, origin) = given_or_uname(
        release_override,
        "the --kernel-release override",
        (UtsName::release, "uname -r"),
    )?;
    match check_release(&release) {
        Ok(()) => Ok(release),
        Err(_) => Err(IdentityError::InvalidRelease { release, origin }),
    }
}

fn detect_arch(arch_override: Option<&str>) -> Result<String, IdentityError> {
    let (machine, origin) = given_or_uname(
        arch_override,
        "the --arch override",
        (UtsName::machine, "uname -m"),
    )?;
    // An arch BTFHub lacks is kept: only a download needs BTFHub's arch list.
    let arch = btfhub_arch(&machine).map_or(machine, str::to_string);
    if is_path_segment(&arch) {
        Ok(arch)
    } else {
        Err(IdentityError::InvalidArch { arch, origin })
    }
}
/// Distro and version from the host's os-release; the release hint fills what it lacks.
fn detect_distro(
    host_root: &Path,
    release: &str,
) -> Result<(Option<String>, Option<String>), IdentityError> {
    let hint = hint_from_release(release);
    let Some((path, os)) = read_host_os_release(host_root)? else {
        log::debug!(
            "no os-release under {}; kernel release hint: {hint:?}",
            host_root.display()
        );
        return Ok(split_hint(hint));
    };
    let (distro, version) = os.btfhub_distro_version();
    log::debug!(
        "host os-release {}: ID={:?} VERSION_ID={:?} -> distro {distro:?} version {version:?}",
        path.display(),
        os.id,
        os.version_id
    );
    Ok(match (distro, version) {
        // No VERSION_ID (e.g. Debian testing/sid): the release may still tell it.
        (Some(distro), None) => {
            let version = hint
                .filter(|(hinted, _)| *hinted == distro)
                .and_then(|(_, version)| version);
            (Some(distro), version)
        }
        (None, _) => split_hint(hint),
        known => known,
    })
}

fn split_hint(hint: Option<(String, Option<String>)>) -> (Option<String>, Option<String>) {
    match hint {
        Some((distro, version)) => (Some(distro), version),
        None => (None, None),
    }
}
