//! What capture last recorded per path: enough to skip unchanged paths in a rescan, to notice
//! paths that vanished without a reported delete, and to find the other names of a hard link.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The identity and version of a path's last recorded state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    /// `st_mode` with the file type bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Fingerprint {
    /// Stands for a path a store already held when the sidecar started: equal to no real
    /// file's fingerprint, so the baseline looks at it again.
    pub const UNVERIFIED: Fingerprint = Fingerprint {
        dev: 0,
        ino: 0,
        nlink: 0,
        size: 0,
        mtime: (0, 0),
        ctime: (0, 0),
        mode: 0,
        uid: 0,
        gid: 0,
    };

    pub fn of(m: &Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            nlink: m.nlink(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
        }
    }

    pub fn is_file(&self) -> bool {
        self.mode & nix::libc::S_IFMT == nix::libc::S_IFREG
    }

    pub fn is_dir(&self) -> bool {
        self.mode & nix::libc::S_IFMT == nix::libc::S_IFDIR
    }

    /// Same inode with the same content (size and mtime): only mode or owner may differ.
    pub fn same_content(&self, other: &Fingerprint) -> bool {
        (self.dev, self.ino, self.size, self.mtime)
            == (other.dev, other.ino, other.size, other.mtime)
    }
}

/// Recorded paths (absolute) and their fingerprints.
#[derive(Debug, Default)]
pub struct Known {
    paths: HashMap<PathBuf, Fingerprint>,
}

impl Known {
    pub fn get(&self, path: &Path) -> Option<&Fingerprint> {
        self.paths.get(path)
    }

    pub fn insert(&mut self, path: &Path, fingerprint: Fingerprint) {
        match self.paths.get_mut(path) {
            Some(slot) => *slot = fingerprint,
            None => {
                self.paths.insert(path.to_path_buf(), fingerprint);
            }
        }
    }

    /// Forgets `path` and everything below it.
    pub fn remove_under(&mut self, path: &Path) {
        self.paths.retain(|p, _| !is_within(p, path));
    }

    /// Moves `from` and everything below it to `to` (replacing what was at `to`).
    pub fn rename(&mut self, from: &Path, to: &Path) {
        self.remove_under(to);
        let moved: Vec<(PathBuf, Fingerprint)> = self
            .paths
            .iter()
            .filter(|(p, _)| is_within(p, from))
            .map(|(p, f)| (moved_to(p, from, to), *f))
            .collect();
        self.remove_under(from);
        self.paths.extend(moved);
    }

    /// The other recorded names of the inode `fingerprint` describes.
    pub fn other_links(&self, path: &Path, fingerprint: &Fingerprint) -> Vec<PathBuf> {
        self.paths
            .iter()
            .filter(|(p, f)| {
                p.as_path() != path && (f.dev, f.ino) == (fingerprint.dev, fingerprint.ino)
            })
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Recorded paths below `root` (not the root itself).
    pub fn paths_under(&self, root: &Path) -> Vec<PathBuf> {
        self.paths
            .keys()
            .filter(|p| is_within(p, root) && p.as_os_str().len() > root.as_os_str().len())
            .cloned()
            .collect()
    }
}

/// `path` is `dir` or lies below it (compared as bytes: names need not be UTF-8).
pub fn is_within(path: &Path, dir: &Path) -> bool {
    let dir = trim_end_slashes(dir.as_os_str().as_bytes());
    path.as_os_str()
        .as_bytes()
        .strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
}

/// `path`, which [`is_within`] `from`, with `from` replaced by `to`.
pub fn moved_to(path: &Path, from: &Path, to: &Path) -> PathBuf {
    let rest = &path.as_os_str().as_bytes()[from.as_os_str().len()..];
    let mut moved = to.as_os_str().as_bytes().to_vec();
    moved.extend_from_slice(rest);
    PathBuf::from(OsString::from_vec(moved))
}

/// `path` without its trailing `/`s.
pub fn trim_end_slashes(path: &[u8]) -> &[u8] {
    let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(ino: u64) -> Fingerprint {
        Fingerprint {
            dev: 1,
            ino,
            nlink: 2,
            size: 0,
            mtime: (0, 0),
            ctime: (0, 0),
            mode: 0o100644,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn a_directory_rename_moves_its_subtree() {
        let p = Path::new;
        let mut known = Known::default();
        for (path, ino) in [
            ("/s/d", 1),
            ("/s/d/a", 2),
            ("/s/d/b/c", 3),
            ("/s/dd", 4),
            ("/s/e/x", 5),
        ] {
            known.insert(p(path), fp(ino));
        }
        known.rename(p("/s/d"), p("/s/e"));
        let mut paths = known.paths_under(p("/s"));
        paths.sort();
        assert_eq!(
            paths,
            ["/s/dd", "/s/e", "/s/e/a", "/s/e/b/c"].map(PathBuf::from)
        );
        assert!(known.other_links(p("/s/e/a"), &fp(2)).is_empty());
        known.insert(p("/s/link"), fp(2));
        assert_eq!(known.other_links(p("/s/e/a"), &fp(2)), [p("/s/link")]);
    }

    #[test]
    fn names_differing_in_an_invalid_byte_stay_apart() {
        use std::os::unix::ffi::OsStrExt;
        let name = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
        let mut known = Known::default();
        known.insert(&name(b"/s/bad\xff"), fp(1));
        known.insert(&name(b"/s/bad\xfe"), fp(2));
        known.rename(&name(b"/s/bad\xff"), &name(b"/s/d\xff"));
        assert_eq!(known.get(&name(b"/s/d\xff")), Some(&fp(1)));
        assert_eq!(known.get(&name(b"/s/bad\xfe")), Some(&fp(2)));
        assert_eq!(known.get(&name(b"/s/bad\xff")), None);
    }
}
