//! Which absolute names the tracepoint programs send (`dk_abs`): an absolute name is resolved
//! from the caller's root directory, which the kernel side cannot walk down from, so it sends
//! the name as passed, and only when (1) the caller's root is the sidecar's own (the same
//! directory, so the name means here what it meant there) and (2) the name starts with the
//! watched roots' common leading directories (a cheap filter: most absolute names on a machine
//! are elsewhere). [`super::names::place_absolute`] places what comes.
//!
//! Not sent, so not journaled: absolute names from a process with another root directory (a
//! container whose root is not the sidecar's: its `/data` is not ours), and names spelled
//! differently from the canonical root paths (through a symlink, or with `//` or `/./` in the
//! leading directories).

use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use diffkeeper_ebpf::event::{kernel_dev, DkAbsRoot, DK_ABS_PREFIX};
use nix::sys::stat::{major, minor};

use crate::mounts;

/// The `dk_abs` value for the state directories `roots` and the `canary` directory (the
/// sidecar checks itself with absolute names there), or none (`ino` 0) when the sidecar's root
/// cannot be read. The closer the state directories lie together, the fewer names pass.
pub fn kernel_filter(roots: &[PathBuf], canary: &Path) -> DkAbsRoot {
    let Ok(meta) = std::fs::metadata("/") else {
        log::warn!("[eBPF] cannot stat /: absolute names will not be journaled");
        return DkAbsRoot::default();
    };
    // The kernel compares d_sb->s_dev: mountinfo's device, not stat's (btrfs).
    let table = mounts::read().unwrap_or_default();
    let dev = match mounts::containing(&table, Path::new("/"), mounts::mount_id(Path::new("/"))) {
        Some(m) => kernel_dev(m.major, m.minor),
        None => kernel_dev(major(meta.dev()), minor(meta.dev())),
    };
    // Bytes: the kernel compares the name's bytes, which need not be UTF-8.
    let canonical = |r: &Path| {
        let path = std::fs::canonicalize(r).unwrap_or_else(|_| r.to_path_buf());
        path.into_os_string().into_vec()
    };
    let state: Vec<Vec<u8>> = roots.iter().map(|r| canonical(r)).collect();
    let (state, canary) = (common_prefix(&state), common_prefix(&[canonical(canary)]));
    DkAbsRoot::new(dev, meta.ino(), [&state, &canary])
}

/// The leading directories all `roots` share, each followed by `/` ("/" at least), cut to the
/// last whole directory within [`DK_ABS_PREFIX`] bytes.
fn common_prefix(roots: &[Vec<u8>]) -> Vec<u8> {
    let Some(first) = roots.first() else {
        return b"/".to_vec();
    };
    let mut prefix = b"/".to_vec();
    for part in first.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        let longer = [&prefix[..], part, b"/"].concat();
        let shared = roots
            .iter()
            .all(|r| [&r[..], b"/"].concat().starts_with(&longer));
        if !shared || longer.len() > DK_ABS_PREFIX {
            break;
        }
        prefix = longer;
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_the_shared_leading_directories_within_the_limit() {
        let roots = |r: &[&str]| r.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(
            common_prefix(&roots(&["/var/lib/app/state"])),
            b"/var/lib/app/state/"
        );
        assert_eq!(
            common_prefix(&roots(&["/var/lib/app/a", "/var/lib/app/b"])),
            b"/var/lib/app/"
        );
        // A directory is shared whole or not at all: /data and /database share only "/".
        assert_eq!(common_prefix(&roots(&["/data", "/database"])), b"/");
        assert_eq!(common_prefix(&roots(&["/"])), b"/");
        let long = "/a-rather-long-directory-name/then-another-one/and-a-third-one-past-64/state";
        assert_eq!(
            common_prefix(&roots(&[long])),
            b"/a-rather-long-directory-name/then-another-one/"
        );
    }

    #[test]
    fn the_filter_names_this_root_directory() {
        let dir = std::env::temp_dir();
        let value = kernel_filter(std::slice::from_ref(&dir), Path::new("/"));
        let meta = std::fs::metadata("/").unwrap();
        assert_eq!(value.ino, meta.ino());
        let text = |words: &[u64], mask: &[u64]| {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
            let len = mask
                .iter()
                .flat_map(|w| w.to_ne_bytes())
                .filter(|&b| b == 0xff)
                .count();
            String::from_utf8(bytes[..len].to_vec()).unwrap()
        };
        let prefix = text(&value.prefix[0], &value.mask[0]);
        let canonical = std::fs::canonicalize(&dir).unwrap();
        assert!(
            format!("{}/", canonical.display()).starts_with(&prefix),
            "{prefix}"
        );
        assert_eq!(text(&value.prefix[1], &value.mask[1]), "/");
    }
}
