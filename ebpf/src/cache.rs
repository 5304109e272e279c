//! The BTF cache layout, shared by both binaries:
//!
//! ```text
//! <cache>/<release>.btf    the kernel's BTF (full or minimised), always validated
//! <cache>/<release>.json   status: where it came from (written by diffkeeper-init)
//! <cache>/.lock            flock that serialises writers
//! ```
//!
//! The kernel release becomes a file name, so it is checked to be a single safe path component.

use std::fmt;
use std::path::{Path, PathBuf};

/// A kernel release that cannot be used as a cache file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRelease(pub String);

impl fmt::Display for InvalidRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kernel release {:?} is not usable as a file name (empty, '/', '..', NUL or control characters)",
            self.0
        )
    }
}

impl std::error::Error for InvalidRelease {}

/// Rejects releases that would escape the cache dir or hide as dotfiles.
pub fn check_release(release: &str) -> Result<(), InvalidRelease> {
    let bad = release.is_empty()
        || release.len() > 200
        || release.starts_with('.')
        || release.contains("..")
        || release.chars().any(|c| c == '/' || c.is_control());
    if bad {
        Err(InvalidRelease(release.to_string()))
    } else {
        Ok(())
    }
}

/// The cache directory and the names of what lives in it.
#[derive(Debug, Clone)]
pub struct BtfCache {
    dir: PathBuf,
}

impl BtfCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<cache>/<release>.btf`
    pub fn btf_path(&self, release: &str) -> Result<PathBuf, InvalidRelease> {
        check_release(release)?;
        Ok(self.dir.join(format!("{release}.btf")))
    }

    /// `<cache>/<release>.json`
    pub fn status_path(&self, release: &str) -> Result<PathBuf, InvalidRelease> {
        check_release(release)?;
        Ok(self.dir.join(format!("{release}.json")))
    }

    /// `<cache>/.lock`
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(".lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let c = BtfCache::new("/var/cache/diffkeeper/btf");
        assert_eq!(
            c.btf_path("5.15.0-92-generic").unwrap(),
            Path::new("/var/cache/diffkeeper/btf/5.15.0-92-generic.btf")
        );
        assert_eq!(
            c.status_path("6.1.0-18-cloud-amd64").unwrap(),
            Path::new("/var/cache/diffkeeper/btf/6.1.0-18-cloud-amd64.json")
        );
    }

    #[test]
    fn hostile_releases() {
        for r in ["", "../x", "a/b", ".hidden", "x\n", "a\0b"] {
            assert!(check_release(r).is_err(), "{r:?}");
        }
        assert!(check_release("4.18.0-513.el8.x86_64").is_ok());
    }
}
