//! Files of the host, read under the host root the way the host itself sees them.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use super::os_release::{parse_os_release, OsRelease};
use super::IdentityError;

/// Where the host's os-release may live, in the order os-release(5) prescribes.
pub const OS_RELEASE_PATHS: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];

/// An os-release file is a few hundred bytes; anything bigger is not one.
const OS_RELEASE_MAX_BYTES: u64 = 64 * 1024;
/// Same limit the kernel applies to nested symlinks (MAXSYMLINKS).
const MAX_SYMLINK_HOPS: usize = 40;

pub(super) fn check_host_root(host_root: &Path) -> Result<(), IdentityError> {
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
/// The first os-release found under the host root, with the path it was read from.
pub(super) fn read_host_os_release(
    host_root: &Path,
) -> Result<Option<(PathBuf, OsRelease)>, IdentityError> {
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
