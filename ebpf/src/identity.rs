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

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use crate::cache::check_release;

/// The architecture directories BTFHub has.
pub const BTFHUB_ARCHES: [&str; 2] = ["x86_64", "arm64"];

/// The distro directories at the top of the BTFHub archive.
pub const BTFHUB_DISTROS: [&str; 8] = [
    "amzn", "centos", "debian", "fedora", "ol", "rhel", "sles", "ubuntu",
];

/// Where the host's os-release may live, in the order os-release(5) prescribes.
pub const OS_RELEASE_PATHS: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];

/// An os-release file is a few hundred bytes; anything bigger is not one.
const OS_RELEASE_MAX_BYTES: u64 = 64 * 1024;
/// Same limit the kernel applies to nested symlinks (MAXSYMLINKS).
const MAX_SYMLINK_HOPS: usize = 40;

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

fn uname() -> Result<nix::sys::utsname::UtsName, IdentityError> {
    nix::sys::utsname::uname().map_err(IdentityError::Uname)
}

fn detect_release(release_override: Option<&str>) -> Result<String, IdentityError> {
    let (release, origin) = match release_override {
        Some(release) => (release.trim().to_string(), "the --kernel-release override"),
        None => (
            uname()?.release().to_string_lossy().into_owned(),
            "uname -r",
        ),
    };
    match check_release(&release) {
        Ok(()) => Ok(release),
        Err(_) => Err(IdentityError::InvalidRelease { release, origin }),
    }
}

fn detect_arch(arch_override: Option<&str>) -> Result<String, IdentityError> {
    let (machine, origin) = match arch_override {
        Some(arch) => (arch.trim().to_string(), "the --arch override"),
        None => (
            uname()?.machine().to_string_lossy().into_owned(),
            "uname -m",
        ),
    };
    // An arch BTFHub lacks is kept: only a download needs BTFHub's arch list.
    let arch = btfhub_arch(&machine).map_or(machine, str::to_string);
    if is_path_segment(&arch) {
        Ok(arch)
    } else {
        Err(IdentityError::InvalidArch { arch, origin })
    }
}

fn check_host_root(host_root: &Path) -> Result<(), IdentityError> {
    let error = |source| IdentityError::HostRoot {
        path: host_root.to_path_buf(),
        source,
    };
    let meta = fs::metadata(host_root).map_err(error)?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(error(io::Error::from(Errno::ENOTDIR)))
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

/// The first os-release found under the host root, with the path it was read from.
fn read_host_os_release(host_root: &Path) -> Result<Option<(PathBuf, OsRelease)>, IdentityError> {
    for rel in OS_RELEASE_PATHS {
        match read_in_host_root(host_root, Path::new(rel)) {
            Ok((path, bytes)) => {
                let os = parse_os_release(&String::from_utf8_lossy(&bytes));
                return Ok(Some((path, os)));
            }
            Err((_, source)) if source.kind() == io::ErrorKind::NotFound => continue,
            Err((path, source)) => return Err(IdentityError::ReadOsRelease { path, source }),
        }
    }
    Ok(None)
}

/// Reads `<host_root>/<rel>`, following symlinks the way the host sees them: an absolute link
/// target (`/etc/os-release -> /usr/lib/os-release`) and any `..` are resolved inside the host
/// root, never in the container's own filesystem. Only regular files are read (a FIFO would
/// block), up to a size cap.
fn read_in_host_root(
    host_root: &Path,
    rel: &Path,
) -> Result<(PathBuf, Vec<u8>), (PathBuf, io::Error)> {
    let mut rel = rel.to_path_buf();
    for _ in 0..MAX_SYMLINK_HOPS {
        let path = host_root.join(&rel);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) => return Err((path, e)),
        };
        if meta.file_type().is_symlink() {
            match fs::read_link(&path) {
                Ok(target) => rel = resolve_link_in_root(&rel, &target),
                Err(e) => return Err((path, e)),
            }
            continue;
        }
        if !meta.is_file() {
            let e = io::Error::new(io::ErrorKind::InvalidData, "not a regular file");
            return Err((path, e));
        }
        let mut bytes = Vec::new();
        let read =
            File::open(&path).and_then(|f| f.take(OS_RELEASE_MAX_BYTES).read_to_end(&mut bytes));
        return match read {
            Ok(_) => Ok((path, bytes)),
            Err(e) => Err((path, e)),
        };
    }
    Err((host_root.join(rel), io::Error::from(Errno::ELOOP)))
}

/// Where the symlink at `link` points, both relative to the host root: an absolute target starts
/// at the host root and `..` stops there, as `/..` is `/` on the host itself.
fn resolve_link_in_root(link: &Path, target: &Path) -> PathBuf {
    let mut resolved: Vec<&std::ffi::OsStr> = Vec::new();
    let base = if target.is_absolute() {
        None
    } else {
        link.parent()
    };
    for part in base
        .into_iter()
        .flat_map(Path::components)
        .chain(target.components())
    {
        match part {
            Component::Normal(name) => resolved.push(name),
            Component::ParentDir => {
                resolved.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    resolved.iter().collect()
}

/// The fields of an os-release file that identify the distro.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`, e.g. `ubuntu`, `rhel`, `sles`.
    pub id: Option<String>,
    /// `ID_LIKE`, split on whitespace, e.g. `["rhel", "centos", "fedora"]`.
    pub id_like: Vec<String>,
    /// `VERSION_ID`, e.g. `22.04`, `8.9`, `15.3`.
    pub version_id: Option<String>,
    /// `PRETTY_NAME`, for log messages.
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// BTFHub distro and version for this os-release. An ID BTFHub does not know whose
    /// `ID_LIKE` names `rhel` is an EL rebuild (same kernels, same major versions as RHEL), so
    /// it maps to `rhel`; any other unknown ID is kept (lower-cased) with its version as is.
    pub fn btfhub_distro_version(&self) -> (Option<String>, Option<String>) {
        let Some(id) = self
            .id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
        else {
            return (None, None);
        };
        let el_rebuild = self.id_like.iter().any(|like| like == "rhel");
        let distro = match btfhub_distro(id) {
            unknown if !BTFHUB_DISTROS.contains(&unknown.as_str()) && el_rebuild => "rhel".into(),
            distro => distro,
        };
        if !is_path_segment(&distro) {
            return (None, None);
        }
        let version = self
            .version_id
            .as_deref()
            .and_then(|version| normalise(&distro, version))
            .map(|(_, version)| version);
        (Some(distro), version)
    }
}

/// Parses os-release(5) text: `KEY=value` lines, values optionally in single or double quotes
/// (double quotes honour the shell escapes `\"`, `\\`, `\$`, `` \` ``), `#` comments and blank
/// lines ignored. Unknown keys are ignored; the last assignment of a key wins.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw.trim());
        match key.trim() {
            "ID" => os.id = Some(value.to_ascii_lowercase()),
            "ID_LIKE" => {
                os.id_like = value
                    .split_whitespace()
                    .map(str::to_ascii_lowercase)
                    .collect()
            }
            "VERSION_ID" => os.version_id = Some(value),
            "PRETTY_NAME" => os.pretty_name = Some(value),
            _ => {}
        }
    }
    os
}

/// Shell-style unquoting of one os-release value.
fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => out.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => out.push(e),
                            Some(other) => out.extend(['\\', other]),
                            None => out.push('\\'),
                        },
                        _ => out.push(c),
                    }
                }
            }
            '\\' => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    out
}

/// Maps `uname -m` (or a user's `--arch`) to BTFHub's architecture directory name.
pub fn btfhub_arch(uname_machine: &str) -> Option<&'static str> {
    let machine = uname_machine.trim().to_ascii_lowercase();
    match machine.as_str() {
        "x86_64" | "amd64" => Some("x86_64"),
        "aarch64" | "arm64" => Some("arm64"),
        _ => None,
    }
}

/// The BTFHub distro directory for an os-release `ID` (lower-cased; unknown IDs kept).
fn btfhub_distro(id: &str) -> String {
    let id = id.trim().to_ascii_lowercase();
    match id.as_str() {
        // EL rebuilds: BTFHub has no rocky/almalinux dirs; their kernels carry the same
        // release strings as RHEL's (e.g. 4.18.0-513.5.1.el8_9), so RHEL's directory is the match.
        "rocky" | "almalinux" => "rhel".into(),
        // SLES for SAP runs the SLES kernels.
        "sles_sap" => "sles".into(),
        _ => id,
    }
}

/// Normalises os-release `ID` and `VERSION_ID` to BTFHub directory names.
/// `None` when either is empty or would not be a single safe path segment.
pub fn normalise(id: &str, version_id: &str) -> Option<(String, String)> {
    let distro = btfhub_distro(id);
    let version = version_id.trim().to_ascii_lowercase();
    let version = match distro.as_str() {
        // Ubuntu dirs are the full VERSION_ID: ubuntu/18.04, ubuntu/20.04.
        "ubuntu" => version,
        // These families use the major version only: rhel/8 (VERSION_ID 8.9), ol/7 (7.9),
        // centos/7, debian/11, fedora/34, and amzn/2018 for Amazon Linux AMI "2018.03".
        "rhel" | "centos" | "ol" | "debian" | "fedora" | "amzn" => major(&version).to_string(),
        // SLES dirs are VERSION_ID (15.3 for 15-SP3); BTFHub names a GA release 15.0/12.0,
        // while its os-release says just "15".
        "sles" if !version.is_empty() && !version.contains('.') => format!("{version}.0"),
        // Unknown distros (and sles/opensuse-leap with dotted versions): as is.
        _ => version,
    };
    (is_path_segment(&distro) && is_path_segment(&version)).then_some((distro, version))
}

fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// A single path segment that cannot escape or hide: non-empty, no leading '.', only
/// `[A-Za-z0-9._-]`. Distro, version and arch all become URL and file path components.
fn is_path_segment(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with('.')
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Ubuntu kernel flavours (the part after `<version>-<abi>-`), e.g. `5.15.0-92-generic`,
/// `5.4.0-1103-aws`, `5.15.0-1057-azure`, `5.15.0-1049-gcp`.
const UBUNTU_FLAVOURS: [&str; 14] = [
    "generic",
    "lowlatency",
    "aws",
    "azure",
    "gcp",
    "gke",
    "gkeop",
    "oracle",
    "kvm",
    "ibm",
    "oem",
    "raspi",
    "nvidia",
    "realtime",
];

/// Debian kernel flavours end in the Debian arch: `-amd64`, `-cloud-amd64`, `-rt-arm64`,
/// `-686-pae`, `-armmp-lpae`, ... (whole words: Ubuntu's `-generic-lpae` is not one of them).
const DEBIAN_FLAVOUR_SUFFIXES: [&str; 8] = [
    "-amd64",
    "-arm64",
    "-686",
    "-686-pae",
    "-armmp",
    "-armmp-lpae",
    "-powerpc64le",
    "-s390x",
];

/// Debian stable releases each pin one upstream kernel series (4.19 -> 10 buster,
/// 5.10 -> 11 bullseye, ...); BTFHub files debian/10 and debian/11 accordingly.
const DEBIAN_SERIES: [(&str, &str); 6] = [
    ("3.16", "8"),
    ("4.9", "9"),
    ("4.19", "10"),
    ("5.10", "11"),
    ("6.1", "12"),
    ("6.12", "13"),
];

/// SUSE kernel flavours, e.g. `5.3.18-150300.59.93-default`, `4.4.138-4.7-azure`.
const SUSE_FLAVOURS: [&str; 5] = ["default", "azure", "rt", "64kb", "kvmsmall"];

/// Guesses distro (and, where the release says it, version) from a kernel release string.
/// Used only when the host has no os-release. Versions are given only where the release
/// encodes them unambiguously; Ubuntu's are not (HWE kernels run on older releases).
pub fn hint_from_release(release: &str) -> Option<(String, Option<String>)> {
    let release = release.trim().to_ascii_lowercase();
    let (_, rest) = release.split_once('-')?;
    // Debian flavours end in the Debian arch, whatever comes before (`4.19.0-26-amd64`,
    // `5.10.0-0.deb10.17-cloud-arm64`, and since Debian 13 `6.12.41+deb13-amd64`).
    if DEBIAN_FLAVOUR_SUFFIXES
        .iter()
        .any(|suffix| release.ends_with(suffix))
    {
        return Some(("debian".into(), debian_version(&release)));
    }
    let (abi, flavour) = match rest.split_once('-') {
        Some((abi, flavour)) => (abi, Some(flavour)),
        None => (rest, None),
    };
    if let Some(hint) = rpm_dist_tag_hint(abi) {
        return Some(hint);
    }
    let first_flavour_word = flavour?.split('-').next()?;
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    // Ubuntu: a plain numeric ABI (`5.15.0-92-generic`); SUSE: a dotted one (`4.4.138-4.7-azure`).
    if digits(abi) && UBUNTU_FLAVOURS.contains(&first_flavour_word) {
        return Some(("ubuntu".into(), None));
    }
    if abi.contains('.')
        && abi.split('.').all(digits)
        && SUSE_FLAVOURS.contains(&first_flavour_word)
    {
        return Some(("sles".into(), sles_version_from_abi(abi)));
    }
    None
}

/// RPM kernels carry a dist tag: `.el7`, `.el8_9`, `.el7uek` (Oracle UEK), `.el7a` (RHEL for
/// ARM), `.amzn2`, `.fc39`.
fn rpm_dist_tag_hint(abi: &str) -> Option<(String, Option<String>)> {
    abi.split('.').find_map(|tag| {
        let (family, rest) = split_alpha_prefix(tag);
        let (number, suffix) = split_digit_prefix(rest);
        if number.is_empty() {
            return None;
        }
        let distro = match (family, suffix) {
            // UEK is Oracle's own kernel: only Oracle Linux runs it.
            ("el", "uek") => "ol",
            // el7a: the RHEL 7 "alt" kernel for aarch64, archived under rhel/7/arm64.
            ("el", "a") => "rhel",
            // el7, el8, el8_9: RHEL and its rebuilds share these; BTFHub builds CentOS by
            // default (RHEL repos are not public), so centos/<major> is the better-stocked dir.
            ("el", s) if s.is_empty() || s.starts_with('_') => "centos",
            ("amzn", "") => "amzn",
            ("fc", "") => "fedora",
            _ => return None,
        };
        let version = match (distro, number) {
            // Amazon Linux AMI kernels (*.amzn1.*) are archived under amzn/2018 (its
            // os-release VERSION_ID is 2018.03).
            ("amzn", "1") => "2018",
            (_, number) => number,
        };
        Some((distro.to_string(), Some(version.to_string())))
    })
}

fn split_alpha_prefix(s: &str) -> (&str, &str) {
    s.split_at(
        s.find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(s.len()),
    )
}

fn split_digit_prefix(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()))
}

/// A Debian tag names the release (`0.deb10.17` is a backport for Debian 10, `+deb13` is
/// Debian 13); otherwise the upstream series tells it (`4.19.0-26-amd64` is Debian 10), except
/// for backports without a release number (`0.bpo.9`, `+bpo`), which run on an older release.
fn debian_version(release: &str) -> Option<String> {
    let parts: Vec<&str> = release.split(['.', '+', '-']).collect();
    let tagged = parts
        .iter()
        .filter_map(|part| part.strip_prefix("deb"))
        .find(|number| !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()));
    if let Some(number) = tagged {
        return Some(number.to_string());
    }
    if parts.contains(&"bpo") {
        return None;
    }
    let series = format!("{}.{}", parts.first()?, parts.get(1)?);
    DEBIAN_SERIES
        .iter()
        .find(|(s, _)| *s == series)
        .map(|(_, version)| version.to_string())
}

/// SLE 15 SP2+ kernels start their release with `15SS00` (`150300.59.93` is 15 SP3 -> "15.3").
fn sles_version_from_abi(abi: &str) -> Option<String> {
    let first = abi.split('.').next()?;
    if first.len() != 6 || !first.ends_with("00") {
        return None;
    }
    let major: u32 = first[..2].parse().ok()?;
    let service_pack: u32 = first[2..4].parse().ok()?;
    Some(format!("{major}.{service_pack}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// (os-release ID, VERSION_ID, expected BTFHub (distro, version)).
    type NormaliseCase<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
    /// (kernel release, expected (distro, version) hint).
    type HintCase<'a> = (&'a str, Option<(&'a str, Option<&'a str>)>);

    /// A scratch host root, removed on drop.
    struct HostRoot(PathBuf);

    impl HostRoot {
        fn new(name: &str) -> Self {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "dk-identity-{name}-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, rel: &str, text: &str) -> &Self {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
            self
        }

        fn link(&self, rel: &str, target: &str) -> &Self {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            symlink(target, path).unwrap();
            self
        }

        fn detect(&self, release: &str) -> Result<KernelIdentity, IdentityError> {
            detect(&self.0, Some(release), Some("x86_64"))
        }
    }

    impl Drop for HostRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    // ---- os-release fixtures, as the distributions ship them ----

    const UBUNTU_2004: &str = r#"NAME="Ubuntu"
VERSION="20.04.6 LTS (Focal Fossa)"
ID=ubuntu
ID_LIKE=debian
PRETTY_NAME="Ubuntu 20.04.6 LTS"
VERSION_ID="20.04"
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
VERSION_CODENAME=focal
UBUNTU_CODENAME=focal
"#;

    const UBUNTU_2204: &str = r#"PRETTY_NAME="Ubuntu 22.04.3 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.3 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=jammy
"#;

    const DEBIAN_10: &str = r#"PRETTY_NAME="Debian GNU/Linux 10 (buster)"
NAME="Debian GNU/Linux"
VERSION_ID="10"
VERSION="10 (buster)"
VERSION_CODENAME=buster
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"#;

    const DEBIAN_11: &str = r#"PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"
NAME="Debian GNU/Linux"
VERSION_ID="11"
VERSION="11 (bullseye)"
VERSION_CODENAME=bullseye
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"#;

    const DEBIAN_12: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"#;

    /// Debian testing/unstable ship no VERSION_ID.
    const DEBIAN_SID: &str = r#"PRETTY_NAME="Debian GNU/Linux trixie/sid"
NAME="Debian GNU/Linux"
VERSION_CODENAME=trixie
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"#;

    const CENTOS_7: &str = r#"NAME="CentOS Linux"
VERSION="7 (Core)"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="7"
PRETTY_NAME="CentOS Linux 7 (Core)"
ANSI_COLOR="0;31"
CPE_NAME="cpe:/o:centos:centos:7"
HOME_URL="https://www.centos.org/"
BUG_REPORT_URL="https://bugs.centos.org/"

CENTOS_MANTISBT_PROJECT="CentOS-7"
CENTOS_MANTISBT_PROJECT_VERSION="7"
REDHAT_SUPPORT_PRODUCT="centos"
REDHAT_SUPPORT_PRODUCT_VERSION="7"

"#;

    const CENTOS_8: &str = r#"NAME="CentOS Linux"
VERSION="8"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="8"
PLATFORM_ID="platform:el8"
PRETTY_NAME="CentOS Linux 8"
ANSI_COLOR="0;31"
CPE_NAME="cpe:/o:centos:centos:8"
HOME_URL="https://centos.org/"
BUG_REPORT_URL="https://bugs.centos.org/"
CENTOS_MANTISBT_PROJECT="CentOS-8"
CENTOS_MANTISBT_PROJECT_VERSION="8"
"#;

    const RHEL_89: &str = r#"NAME="Red Hat Enterprise Linux"
VERSION="8.9 (Ootpa)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="8.9"
PLATFORM_ID="platform:el8"
PRETTY_NAME="Red Hat Enterprise Linux 8.9 (Ootpa)"
ANSI_COLOR="0;31"
CPE_NAME="cpe:/o:redhat:enterprise_linux:8::baseos"
HOME_URL="https://www.redhat.com/"
DOCUMENTATION_URL="https://access.redhat.com/documentation/en-us/red_hat_enterprise_linux/8"
BUG_REPORT_URL="https://bugzilla.redhat.com/"

REDHAT_BUGZILLA_PRODUCT="Red Hat Enterprise Linux 8"
REDHAT_BUGZILLA_PRODUCT_VERSION=8.9
REDHAT_SUPPORT_PRODUCT="Red Hat Enterprise Linux"
REDHAT_SUPPORT_PRODUCT_VERSION="8.9"
"#;

    const RHEL_93: &str = r#"NAME="Red Hat Enterprise Linux"
VERSION="9.3 (Plow)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="9.3"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Red Hat Enterprise Linux 9.3 (Plow)"
ANSI_COLOR="0;31"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:redhat:enterprise_linux:9::baseos"
HOME_URL="https://www.redhat.com/"
DOCUMENTATION_URL="https://access.redhat.com/documentation/en-us/red_hat_enterprise_linux/9"
BUG_REPORT_URL="https://bugzilla.redhat.com/"

REDHAT_BUGZILLA_PRODUCT="Red Hat Enterprise Linux 9"
REDHAT_BUGZILLA_PRODUCT_VERSION=9.3
REDHAT_SUPPORT_PRODUCT="Red Hat Enterprise Linux"
REDHAT_SUPPORT_PRODUCT_VERSION="9.3"
"#;

    const AMZN_2018: &str = r#"NAME="Amazon Linux AMI"
VERSION="2018.03"
ID="amzn"
ID_LIKE="rhel fedora"
VERSION_ID="2018.03"
PRETTY_NAME="Amazon Linux AMI 2018.03"
ANSI_COLOR="0;33"
CPE_NAME="cpe:/o:amazon:linux:2018.03:ga"
HOME_URL="http://aws.amazon.com/amazon-linux-ami/"
"#;

    const AMZN_2: &str = r#"NAME="Amazon Linux"
VERSION="2"
ID="amzn"
ID_LIKE="centos rhel fedora"
VERSION_ID="2"
PRETTY_NAME="Amazon Linux 2"
ANSI_COLOR="0;33"
CPE_NAME="cpe:2.3:o:amazon:amazon_linux:2"
HOME_URL="https://amazonlinux.com/"
SUPPORT_END="2025-06-30"
"#;

    const AMZN_2023: &str = r#"NAME="Amazon Linux"
VERSION="2023"
ID="amzn"
ID_LIKE="fedora"
VERSION_ID="2023"
PLATFORM_ID="platform:al2023"
PRETTY_NAME="Amazon Linux 2023"
ANSI_COLOR="0;33"
CPE_NAME="cpe:2.3:o:amazon:amazon_linux:2023"
HOME_URL="https://aws.amazon.com/linux/"
BUG_REPORT_URL="https://github.com/amazonlinux/amazon-linux-2023"
SUPPORT_END="2028-03-15"
"#;

    const OL_79: &str = r#"NAME="Oracle Linux Server"
VERSION="7.9"
ID="ol"
ID_LIKE="fedora"
VARIANT="Server"
VARIANT_ID="server"
VERSION_ID="7.9"
PRETTY_NAME="Oracle Linux Server 7.9"
ANSI_COLOR="0;31"
CPE_NAME="cpe:/o:oracle:linux:7:9:server"
HOME_URL="https://linux.oracle.com/"
BUG_REPORT_URL="https://bugzilla.oracle.com/"

ORACLE_BUGZILLA_PRODUCT="Oracle Linux 7"
ORACLE_BUGZILLA_PRODUCT_VERSION=7.9
ORACLE_SUPPORT_PRODUCT="Oracle Linux"
ORACLE_SUPPORT_PRODUCT_VERSION=7.9
"#;

    const OL_88: &str = r#"NAME="Oracle Linux Server"
VERSION="8.8"
ID="ol"
ID_LIKE="fedora"
VARIANT="Server"
VARIANT_ID="server"
VERSION_ID="8.8"
PLATFORM_ID="platform:el8"
PRETTY_NAME="Oracle Linux Server 8.8"
ANSI_COLOR="0;31"
CPE_NAME="cpe:/o:oracle:linux:8:8:server"
HOME_URL="https://linux.oracle.com/"
BUG_REPORT_URL="https://github.com/oracle/oracle-linux"

ORACLE_BUGZILLA_PRODUCT="Oracle Linux 8"
ORACLE_BUGZILLA_PRODUCT_VERSION=8.8
ORACLE_SUPPORT_PRODUCT="Oracle Linux"
ORACLE_SUPPORT_PRODUCT_VERSION=8.8
"#;

    const FEDORA_39: &str = r#"NAME="Fedora Linux"
VERSION="39 (Server Edition)"
ID=fedora
VERSION_ID=39
VERSION_CODENAME=""
PLATFORM_ID="platform:f39"
PRETTY_NAME="Fedora Linux 39 (Server Edition)"
ANSI_COLOR="0;38;2;60;110;180"
LOGO=fedora-logo-icon
CPE_NAME="cpe:/o:fedoraproject:fedora:39"
HOME_URL="https://fedoraproject.org/"
DOCUMENTATION_URL="https://docs.fedoraproject.org/en-US/fedora/f39/system-administrators-guide/"
SUPPORT_URL="https://ask.fedoraproject.org/"
BUG_REPORT_URL="https://bugzilla.redhat.com/"
REDHAT_BUGZILLA_PRODUCT="Fedora"
REDHAT_BUGZILLA_PRODUCT_VERSION=39
REDHAT_SUPPORT_PRODUCT="Fedora"
REDHAT_SUPPORT_PRODUCT_VERSION=39
SUPPORT_END=2024-11-12
VARIANT="Server Edition"
VARIANT_ID=server
"#;

    const SLES_15_GA: &str = r#"NAME="SLES"
VERSION="15"
VERSION_ID="15"
PRETTY_NAME="SUSE Linux Enterprise Server 15"
ID="sles"
ID_LIKE="suse"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:suse:sles:15"
"#;

    const SLES_15_SP3: &str = r#"NAME="SLES"
VERSION="15-SP3"
VERSION_ID="15.3"
PRETTY_NAME="SUSE Linux Enterprise Server 15 SP3"
ID="sles"
ID_LIKE="suse"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:suse:sles:15:sp3"
DOCUMENTATION_URL="https://documentation.suse.com/"
"#;

    const SLES_15_SP5: &str = r#"NAME="SLES"
VERSION="15-SP5"
VERSION_ID="15.5"
PRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"
ID="sles"
ID_LIKE="suse"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:suse:sles:15:sp5"
DOCUMENTATION_URL="https://documentation.suse.com/"
"#;

    const SLES_SAP_15_SP4: &str = r#"NAME="SLES"
VERSION="15-SP4"
VERSION_ID="15.4"
PRETTY_NAME="SUSE Linux Enterprise Server for SAP Applications 15 SP4"
ID="sles_sap"
ID_LIKE="suse"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:suse:sles_sap:15:sp4"
DOCUMENTATION_URL="https://documentation.suse.com/"
"#;

    const OPENSUSE_LEAP_155: &str = r#"NAME="openSUSE Leap"
VERSION="15.5"
ID="opensuse-leap"
ID_LIKE="suse opensuse"
VERSION_ID="15.5"
PRETTY_NAME="openSUSE Leap 15.5"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:opensuse:leap:15.5"
BUG_REPORT_URL="https://bugs.opensuse.org"
HOME_URL="https://www.opensuse.org/"
DOCUMENTATION_URL="https://en.opensuse.org/Portal:Leap"
LOGO="distributor-logo-Leap"
"#;

    const ROCKY_89: &str = r#"NAME="Rocky Linux"
VERSION="8.9 (Green Obsidian)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="8.9"
PLATFORM_ID="platform:el8"
PRETTY_NAME="Rocky Linux 8.9 (Green Obsidian)"
ANSI_COLOR="0;32"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:rocky:rocky:8:GA"
HOME_URL="https://rockylinux.org/"
BUG_REPORT_URL="https://bugs.rockylinux.org/"
SUPPORT_END="2029-05-31"
ROCKY_SUPPORT_PRODUCT="Rocky-Linux-8"
ROCKY_SUPPORT_PRODUCT_VERSION="8.9"
REDHAT_SUPPORT_PRODUCT="Rocky Linux"
REDHAT_SUPPORT_PRODUCT_VERSION="8.9"
"#;

    const ALMA_93: &str = r#"NAME="AlmaLinux"
VERSION="9.3 (Shamrock Pampas Cat)"
ID="almalinux"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.3"
PLATFORM_ID="platform:el9"
PRETTY_NAME="AlmaLinux 9.3 (Shamrock Pampas Cat)"
ANSI_COLOR="0;34"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:almalinux:almalinux:9::baseos"
HOME_URL="https://almalinux.org/"
DOCUMENTATION_URL="https://wiki.almalinux.org/"
BUG_REPORT_URL="https://bugs.almalinux.org/"

ALMALINUX_MANTISBT_PROJECT="AlmaLinux-9"
ALMALINUX_MANTISBT_PROJECT_VERSION="9.3"
REDHAT_SUPPORT_PRODUCT="AlmaLinux"
REDHAT_SUPPORT_PRODUCT_VERSION="9.3"
"#;

    /// An EL rebuild BTFHub has no entry for: mapped to rhel through ID_LIKE.
    const EUROLINUX_8: &str = r#"NAME="EuroLinux"
VERSION="8.6 (Tallinn)"
ID="eurolinux"
ID_LIKE="rhel fedora centos"
VERSION_ID="8.6"
PLATFORM_ID="platform:el8"
PRETTY_NAME="EuroLinux 8.6 (Tallinn)"
"#;

    const FLATCAR: &str = r#"NAME="Flatcar Container Linux by Kinvolk"
ID=flatcar
ID_LIKE=coreos
VERSION=3760.2.0
VERSION_ID=3760.2.0
BUILD_ID=2024-01-10-1432
SYSEXT_LEVEL=1.0
PRETTY_NAME="Flatcar Container Linux by Kinvolk 3760.2.0 (Oklo)"
ANSI_COLOR="38;5;75"
HOME_URL="https://flatcar.org/"
BUG_REPORT_URL="https://issues.flatcar.org"
FLATCAR_BOARD="amd64-usr"
CPE_NAME="cpe:2.3:o:flatcar-linux:flatcar_linux:3760.2.0:*:*:*:*:*:*:*"
"#;

    /// An Ubuntu derivative whose versions do not follow Ubuntu's: kept as its own ID.
    const LINUX_MINT_21: &str = r#"NAME="Linux Mint"
VERSION="21.2 (Victoria)"
ID=linuxmint
ID_LIKE="ubuntu debian"
PRETTY_NAME="Linux Mint 21.2"
VERSION_ID="21.2"
HOME_URL="https://www.linuxmint.com/"
SUPPORT_URL="https://forums.linuxmint.com/"
BUG_REPORT_URL="http://linuxmint-troubleshooting-guide.readthedocs.io/en/latest/"
PRIVACY_POLICY_URL="https://www.linuxmint.com/"
VERSION_CODENAME=victoria
UBUNTU_CODENAME=jammy
"#;

    #[test]
    fn os_release_files_map_to_btfhub_dirs() {
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            ("ubuntu 20.04", UBUNTU_2004, Some("ubuntu"), Some("20.04")),
            ("ubuntu 22.04", UBUNTU_2204, Some("ubuntu"), Some("22.04")),
            ("debian 10", DEBIAN_10, Some("debian"), Some("10")),
            ("debian 11", DEBIAN_11, Some("debian"), Some("11")),
            ("debian 12", DEBIAN_12, Some("debian"), Some("12")),
            ("debian sid", DEBIAN_SID, Some("debian"), None),
            ("centos 7", CENTOS_7, Some("centos"), Some("7")),
            ("centos 8", CENTOS_8, Some("centos"), Some("8")),
            ("rhel 8.9", RHEL_89, Some("rhel"), Some("8")),
            ("rhel 9.3", RHEL_93, Some("rhel"), Some("9")),
            ("amzn 2018.03", AMZN_2018, Some("amzn"), Some("2018")),
            ("amzn 2", AMZN_2, Some("amzn"), Some("2")),
            ("amzn 2023", AMZN_2023, Some("amzn"), Some("2023")),
            ("ol 7.9", OL_79, Some("ol"), Some("7")),
            ("ol 8.8", OL_88, Some("ol"), Some("8")),
            ("fedora 39", FEDORA_39, Some("fedora"), Some("39")),
            ("sles 15", SLES_15_GA, Some("sles"), Some("15.0")),
            ("sles 15-SP3", SLES_15_SP3, Some("sles"), Some("15.3")),
            ("sles 15-SP5", SLES_15_SP5, Some("sles"), Some("15.5")),
            (
                "sles_sap 15-SP4",
                SLES_SAP_15_SP4,
                Some("sles"),
                Some("15.4"),
            ),
            (
                "opensuse-leap 15.5",
                OPENSUSE_LEAP_155,
                Some("opensuse-leap"),
                Some("15.5"),
            ),
            ("rocky 8.9", ROCKY_89, Some("rhel"), Some("8")),
            ("almalinux 9.3", ALMA_93, Some("rhel"), Some("9")),
            ("eurolinux 8.6", EUROLINUX_8, Some("rhel"), Some("8")),
            ("flatcar", FLATCAR, Some("flatcar"), Some("3760.2.0")),
            (
                "linux mint 21.2",
                LINUX_MINT_21,
                Some("linuxmint"),
                Some("21.2"),
            ),
            ("empty file", "", None, None),
        ];
        for (name, text, distro, version) in cases {
            let got = parse_os_release(text).btfhub_distro_version();
            let want = (distro.map(String::from), version.map(String::from));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn os_release_fields_are_parsed() {
        let os = parse_os_release(ROCKY_89);
        assert_eq!(os.id.as_deref(), Some("rocky"));
        assert_eq!(os.id_like, ["rhel", "centos", "fedora"]);
        assert_eq!(os.version_id.as_deref(), Some("8.9"));
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Rocky Linux 8.9 (Green Obsidian)")
        );
    }

    #[test]
    fn os_release_quoting_comments_and_blank_lines() {
        let text = "# written by hand\n\
                    \n\
                    ID='ol'\n\
                    \x20  VERSION_ID=\"7.9\"  \r\n\
                    ID_LIKE=\"rhel  fedora\"\n\
                    PRETTY_NAME=\"Say \\\"hi\\\" for \\$5 \\\\ \\`x\\` \\n\"\n\
                    not a key value line\n\
                    #ID=ubuntu\n";
        let os = parse_os_release(text);
        assert_eq!(os.id.as_deref(), Some("ol"));
        assert_eq!(os.version_id.as_deref(), Some("7.9"));
        assert_eq!(os.id_like, ["rhel", "fedora"]);
        // Inside double quotes only \" \\ \$ \` are escapes; any other backslash stays.
        assert_eq!(
            os.pretty_name.as_deref(),
            Some(r#"Say "hi" for $5 \ `x` \n"#)
        );
    }

    #[test]
    fn os_release_value_forms() {
        let cases: &[(&str, &str)] = &[
            ("VERSION_ID=15.3", "15.3"),
            ("VERSION_ID=\"15.3\"", "15.3"),
            ("VERSION_ID='15.3'", "15.3"),
            ("VERSION_ID='a \"b\" \\c'", "a \"b\" \\c"),
            ("VERSION_ID=\"it's\"", "it's"),
            ("VERSION_ID=a\\ b", "a b"),
            ("VERSION_ID=\"a\"'b'c", "abc"),
            ("VERSION_ID=\"unterminated", "unterminated"),
            ("VERSION_ID=", ""),
        ];
        for (line, want) in cases {
            let os = parse_os_release(line);
            assert_eq!(os.version_id.as_deref(), Some(*want), "{line}");
        }
        let os = parse_os_release("ID=Ubuntu\nID=\"RHEL\"\n");
        assert_eq!(
            os.id.as_deref(),
            Some("rhel"),
            "last assignment wins, lower-cased"
        );
    }

    #[test]
    fn normalise_to_btfhub_names() {
        let cases: &[NormaliseCase] = &[
            ("ubuntu", "22.04", Some(("ubuntu", "22.04"))),
            ("Ubuntu", " 20.04 ", Some(("ubuntu", "20.04"))),
            ("debian", "11", Some(("debian", "11"))),
            ("centos", "7", Some(("centos", "7"))),
            ("rhel", "8.9", Some(("rhel", "8"))),
            ("RHEL", "9.3", Some(("rhel", "9"))),
            ("ol", "7.9", Some(("ol", "7"))),
            ("ol", "8.8", Some(("ol", "8"))),
            ("fedora", "39", Some(("fedora", "39"))),
            ("amzn", "2", Some(("amzn", "2"))),
            ("amzn", "2018.03", Some(("amzn", "2018"))),
            ("amzn", "2023", Some(("amzn", "2023"))),
            ("sles", "15.3", Some(("sles", "15.3"))),
            ("sles", "12.5", Some(("sles", "12.5"))),
            ("sles", "15", Some(("sles", "15.0"))),
            ("sles_sap", "15.4", Some(("sles", "15.4"))),
            ("opensuse-leap", "15.5", Some(("opensuse-leap", "15.5"))),
            ("rocky", "8.9", Some(("rhel", "8"))),
            ("almalinux", "9.3", Some(("rhel", "9"))),
            ("Flatcar", "3760.2.0", Some(("flatcar", "3760.2.0"))),
            ("", "1", None),
            ("ubuntu", "", None),
            ("ubuntu", "../../etc", None),
            ("ubuntu", ".hidden", None),
            ("a/b", "1", None),
            ("ubuntu", "22.04 lts", None),
        ];
        for (id, version, want) in cases {
            let want = want.map(|(d, v)| (d.to_string(), v.to_string()));
            assert_eq!(normalise(id, version), want, "{id:?} {version:?}");
        }
    }

    #[test]
    fn release_hints() {
        let cases: &[HintCase] = &[
            // Ubuntu: GA, cloud and HWE kernels share names, so no version.
            ("5.15.0-92-generic", Some(("ubuntu", None))),
            ("4.15.0-213-generic", Some(("ubuntu", None))),
            ("5.4.0-1103-aws", Some(("ubuntu", None))),
            ("5.15.0-1057-azure", Some(("ubuntu", None))),
            ("5.15.0-1049-gcp", Some(("ubuntu", None))),
            ("5.15.0-1048-gke", Some(("ubuntu", None))),
            ("5.15.0-1053-raspi", Some(("ubuntu", None))),
            ("6.8.0-40-generic-64k", Some(("ubuntu", None))),
            ("5.15.0-92-generic-lpae", Some(("ubuntu", None))),
            // EL: centos is BTFHub's default-built EL family.
            ("4.18.0-513.el8.x86_64", Some(("centos", Some("8")))),
            ("4.18.0-513.24.1.el8_9.x86_64", Some(("centos", Some("8")))),
            ("3.10.0-1160.el7.x86_64", Some(("centos", Some("7")))),
            ("3.10.0-1062.1.2.el7", Some(("centos", Some("7")))),
            ("5.14.0-362.8.1.el9_3.x86_64", Some(("centos", Some("9")))),
            ("4.14.0-115.el7a.aarch64", Some(("rhel", Some("7")))),
            ("5.4.17-2136.327.2.el7uek.x86_64", Some(("ol", Some("7")))),
            ("5.4.17-2011.0.7.el8uek.aarch64", Some(("ol", Some("8")))),
            // Amazon Linux.
            ("4.14.336-257.562.amzn2.x86_64", Some(("amzn", Some("2")))),
            ("5.10.205-195.807.amzn2.x86_64", Some(("amzn", Some("2")))),
            ("4.14.101-91.76.amzn2.aarch64", Some(("amzn", Some("2")))),
            (
                "6.1.72-96.166.amzn2023.x86_64",
                Some(("amzn", Some("2023"))),
            ),
            (
                "4.14.334-177.552.amzn1.x86_64",
                Some(("amzn", Some("2018"))),
            ),
            // Fedora.
            ("6.5.6-300.fc39.x86_64", Some(("fedora", Some("39")))),
            ("5.3.7-301.fc31.x86_64", Some(("fedora", Some("31")))),
            // Debian: the tag or the pinned upstream series gives the release.
            ("6.1.0-18-cloud-amd64", Some(("debian", Some("12")))),
            ("5.10.0-28-amd64", Some(("debian", Some("11")))),
            ("4.19.0-26-amd64", Some(("debian", Some("10")))),
            ("4.19.0-17-rt-amd64", Some(("debian", Some("10")))),
            ("4.9.0-19-amd64", Some(("debian", Some("9")))),
            (
                "5.10.0-0.deb10.17-cloud-arm64",
                Some(("debian", Some("10"))),
            ),
            ("6.1.0-0.deb11.13-amd64", Some(("debian", Some("11")))),
            ("6.12.41+deb13-amd64", Some(("debian", Some("13")))),
            ("6.12.41+deb13-cloud-amd64", Some(("debian", Some("13")))),
            ("6.5.0-4-amd64", Some(("debian", None))),
            ("4.19.0-0.bpo.9-amd64", Some(("debian", None))),
            ("6.12.12+bpo-amd64", Some(("debian", None))),
            ("6.1.0-18-armmp-lpae", Some(("debian", Some("12")))),
            ("6.1.0-18-686-pae", Some(("debian", Some("12")))),
            // SUSE: SLE 15 SP2+ releases start with 15SS00.
            ("5.3.18-150300.59.93-default", Some(("sles", Some("15.3")))),
            ("5.14.21-150500.55.39-default", Some(("sles", Some("15.5")))),
            ("4.12.14-122.37-default", Some(("sles", None))),
            ("4.4.138-4.7-azure", Some(("sles", None))),
            // Nothing to go on.
            ("6.18.44-fc-v669", None),
            ("6.6.87.2-microsoft-standard-WSL2", None),
            ("6.6.1-1-default", None),
            ("6.7.0", None),
            ("", None),
        ];
        for (release, want) in cases {
            let want = want.map(|(d, v)| (d.to_string(), v.map(String::from)));
            assert_eq!(hint_from_release(release), want, "{release}");
        }
    }

    #[test]
    fn arch_mapping() {
        let cases: &[(&str, Option<&str>)] = &[
            ("x86_64", Some("x86_64")),
            ("amd64", Some("x86_64")),
            ("aarch64", Some("arm64")),
            ("arm64", Some("arm64")),
            ("AARCH64", Some("arm64")),
            ("riscv64", None),
            ("s390x", None),
            ("ppc64le", None),
            ("i686", None),
            ("armv7l", None),
            ("", None),
        ];
        for (machine, want) in cases {
            assert_eq!(btfhub_arch(machine), *want, "{machine}");
        }
    }

    fn identity(
        release: &str,
        arch: &str,
        distro: Option<&str>,
        version: Option<&str>,
    ) -> KernelIdentity {
        KernelIdentity {
            release: release.into(),
            arch: arch.into(),
            distro: distro.map(String::from),
            version: version.map(String::from),
        }
    }

    #[test]
    fn btfhub_path_building() {
        let seed = identity("5.15.0-92-generic", "x86_64", Some("ubuntu"), Some("22.04"));
        assert_eq!(
            seed.btfhub_path().as_deref(),
            Some("ubuntu/22.04/x86_64/5.15.0-92-generic.btf.tar.xz")
        );
        assert_eq!(seed.btfhub_dir().as_deref(), Some("ubuntu/22.04/x86_64"));
        assert!(seed.btfhub_arch_supported());

        let no_version = identity("5.15.0-92-generic", "x86_64", Some("ubuntu"), None);
        assert_eq!(no_version.btfhub_path(), None);
        let no_distro = identity("5.15.0-92-generic", "x86_64", None, Some("22.04"));
        assert_eq!(no_distro.btfhub_path(), None);
        let bad_release = identity("../../x", "x86_64", Some("ubuntu"), Some("22.04"));
        assert_eq!(bad_release.btfhub_path(), None);
        let bad_version = identity("5.15.0-92-generic", "x86_64", Some("ubuntu"), Some("../.."));
        assert_eq!(bad_version.btfhub_path(), None);

        // An arch BTFHub lacks still names a (baked) tree; only downloads need support.
        let riscv = identity("6.8.0-40-generic", "riscv64", Some("ubuntu"), Some("24.04"));
        assert!(!riscv.btfhub_arch_supported());
        assert_eq!(
            riscv.btfhub_path().as_deref(),
            Some("ubuntu/24.04/riscv64/6.8.0-40-generic.btf.tar.xz")
        );
    }

    /// Release hints alone (no os-release) lead to files that exist in aquasecurity/btfhub-archive.
    #[test]
    fn hints_reach_real_archive_paths() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "3.10.0-1160.el7.x86_64",
                "x86_64",
                "centos/7/x86_64/3.10.0-1160.el7.x86_64.btf.tar.xz",
            ),
            (
                "4.18.0-348.el8.x86_64",
                "x86_64",
                "centos/8/x86_64/4.18.0-348.el8.x86_64.btf.tar.xz",
            ),
            (
                "4.14.0-115.el7a.aarch64",
                "aarch64",
                "rhel/7/arm64/4.14.0-115.el7a.aarch64.btf.tar.xz",
            ),
            (
                "5.4.17-2011.0.7.el8uek.x86_64",
                "x86_64",
                "ol/8/x86_64/5.4.17-2011.0.7.el8uek.x86_64.btf.tar.xz",
            ),
            (
                "4.14.101-91.76.amzn2.aarch64",
                "aarch64",
                "amzn/2/arm64/4.14.101-91.76.amzn2.aarch64.btf.tar.xz",
            ),
            (
                "4.14.334-177.552.amzn1.x86_64",
                "x86_64",
                "amzn/2018/x86_64/4.14.334-177.552.amzn1.x86_64.btf.tar.xz",
            ),
            (
                "5.3.7-301.fc31.x86_64",
                "x86_64",
                "fedora/31/x86_64/5.3.7-301.fc31.x86_64.btf.tar.xz",
            ),
            (
                "4.19.0-26-amd64",
                "x86_64",
                "debian/10/x86_64/4.19.0-26-amd64.btf.tar.xz",
            ),
            (
                "5.10.0-0.deb10.17-cloud-arm64",
                "arm64",
                "debian/10/arm64/5.10.0-0.deb10.17-cloud-arm64.btf.tar.xz",
            ),
            (
                "5.10.0-10-cloud-amd64",
                "amd64",
                "debian/11/x86_64/5.10.0-10-cloud-amd64.btf.tar.xz",
            ),
        ];
        let empty = HostRoot::new("archive");
        for (release, arch, want) in cases {
            let id = detect(&empty.0, Some(release), Some(arch)).unwrap();
            assert_eq!(id.btfhub_path().as_deref(), Some(*want), "{release}");
        }
    }

    #[test]
    fn detect_reads_etc_os_release() {
        let root = HostRoot::new("etc");
        root.write("etc/os-release", UBUNTU_2204)
            .write("usr/lib/os-release", RHEL_89);
        let id = root.detect("5.15.0-92-generic").unwrap();
        assert_eq!(
            id,
            identity("5.15.0-92-generic", "x86_64", Some("ubuntu"), Some("22.04"))
        );
        assert_eq!(
            id.btfhub_path().as_deref(),
            Some("ubuntu/22.04/x86_64/5.15.0-92-generic.btf.tar.xz")
        );
    }

    #[test]
    fn detect_falls_back_to_usr_lib_os_release() {
        let root = HostRoot::new("usrlib");
        root.write("usr/lib/os-release", RHEL_89);
        let id = root.detect("4.18.0-513.el8.x86_64").unwrap();
        assert_eq!(
            id.distro.as_deref(),
            Some("rhel"),
            "os-release beats the .el8 hint"
        );
        assert_eq!(id.version.as_deref(), Some("8"));
    }

    #[test]
    fn detect_without_os_release_uses_hints() {
        let root = HostRoot::new("none");
        let amzn = root.detect("4.14.336-257.562.amzn2.x86_64").unwrap();
        assert_eq!(
            amzn.btfhub_path().as_deref(),
            Some("amzn/2/x86_64/4.14.336-257.562.amzn2.x86_64.btf.tar.xz")
        );
        let ubuntu = root.detect("5.15.0-92-generic").unwrap();
        assert_eq!(ubuntu.distro.as_deref(), Some("ubuntu"));
        assert_eq!(ubuntu.version, None);
        assert_eq!(ubuntu.btfhub_path(), None);
        let unknown = root.detect("6.18.44-fc-v669").unwrap();
        assert_eq!((unknown.distro, unknown.version), (None, None));
    }

    #[test]
    fn detect_takes_missing_version_from_a_matching_hint() {
        let root = HostRoot::new("sid");
        root.write("etc/os-release", DEBIAN_SID);
        let id = root.detect("6.1.0-18-amd64").unwrap();
        assert_eq!(
            (id.distro.as_deref(), id.version.as_deref()),
            (Some("debian"), Some("12"))
        );
        // A hint for another distro is not mixed in.
        let id = root.detect("5.15.0-92-generic").unwrap();
        assert_eq!((id.distro.as_deref(), id.version), (Some("debian"), None));
    }

    #[test]
    fn detect_follows_absolute_symlinks_inside_the_host_root() {
        // This machine's own /usr/lib/os-release is not CentOS, so reading through the link
        // outside the host root would give a different answer.
        let root = HostRoot::new("abslink");
        root.write("usr/lib/os-release", CENTOS_7)
            .link("etc/os-release", "/usr/lib/os-release");
        let id = root.detect("3.10.0-1160.el7.x86_64").unwrap();
        assert_eq!(
            (id.distro.as_deref(), id.version.as_deref()),
            (Some("centos"), Some("7"))
        );

        let relative = HostRoot::new("rellink");
        relative
            .write("usr/lib/os-release", SLES_15_SP3)
            .link("etc/os-release", "../usr/lib/os-release");
        let id = relative.detect("5.3.18-150300.59.93-default").unwrap();
        assert_eq!(
            (id.distro.as_deref(), id.version.as_deref()),
            (Some("sles"), Some("15.3"))
        );

        // `..` beyond the host root stays at the host root, as `/..` does on the host.
        let climbing = HostRoot::new("dotdot");
        climbing
            .write("usr/lib/os-release", AMZN_2)
            .link("etc/os-release", "../../../../usr/lib/./os-release");
        let id = climbing.detect("5.10.205-195.807.amzn2.x86_64").unwrap();
        assert_eq!(
            (id.distro.as_deref(), id.version.as_deref()),
            (Some("amzn"), Some("2"))
        );
    }

    #[test]
    fn detect_reports_unreadable_os_release() {
        let looped = HostRoot::new("loop");
        looped.link("etc/os-release", "os-release");
        let err = looped.detect("5.15.0-92-generic").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, IdentityError::ReadOsRelease { .. }), "{text}");
        assert!(
            text.contains("etc/os-release") && text.contains("os error 40"),
            "{text}"
        );
        assert!(text.contains("--host-root"), "{text}");

        let dir = HostRoot::new("dir");
        fs::create_dir_all(dir.0.join("etc/os-release")).unwrap();
        let text = dir.detect("5.15.0-92-generic").unwrap_err().to_string();
        assert!(text.contains("not a regular file"), "{text}");
    }

    #[test]
    fn detect_rejects_a_bad_host_root() {
        let missing = std::env::temp_dir().join("dk-identity-no-such-root");
        let err = detect(&missing, Some("5.15.0-92-generic"), Some("x86_64")).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, IdentityError::HostRoot { .. }), "{text}");
        assert!(
            text.contains("dk-identity-no-such-root") && text.contains("os error 2"),
            "{text}"
        );

        let root = HostRoot::new("file");
        root.write("not-a-dir", "x");
        let err = detect(&root.0.join("not-a-dir"), Some("5.15.0-92-generic"), None).unwrap_err();
        assert!(err.to_string().contains("os error 20"), "{err}");
    }

    #[test]
    fn detect_rejects_bad_overrides() {
        let root = HostRoot::new("overrides");
        for release in ["", "  ", "../../etc/passwd", "a/b", ".hidden"] {
            let err = detect(&root.0, Some(release), Some("x86_64")).unwrap_err();
            assert!(
                matches!(err, IdentityError::InvalidRelease { .. }),
                "{release:?}: {err}"
            );
            assert!(err.to_string().contains("--kernel-release"), "{err}");
        }
        for arch in ["", "x86/64", "..", "x 86"] {
            let err = detect(&root.0, Some("5.15.0-92-generic"), Some(arch)).unwrap_err();
            assert!(
                matches!(err, IdentityError::InvalidArch { .. }),
                "{arch:?}: {err}"
            );
            assert!(err.to_string().contains("--arch"), "{err}");
        }
        let riscv = detect(&root.0, Some("6.8.0-40-generic"), Some("riscv64")).unwrap();
        assert_eq!(
            riscv.arch, "riscv64",
            "an arch BTFHub lacks is kept, not an error"
        );
        assert!(!riscv.btfhub_arch_supported());
    }

    #[test]
    fn detect_on_this_machine_matches_the_kernel() {
        let id = detect(Path::new("/"), None, None).unwrap();
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(id.release, release.trim());
        let machine = nix::sys::utsname::uname().unwrap();
        let machine = machine.machine().to_string_lossy();
        assert_eq!(
            Some(id.arch.as_str()),
            btfhub_arch(&machine).or(Some(&machine))
        );
        if let Ok(text) = fs::read_to_string("/etc/os-release") {
            let (distro, _) = parse_os_release(&text).btfhub_distro_version();
            assert_eq!(id.distro, distro);
        }
    }
}
