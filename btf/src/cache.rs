//! The BTF cache layout, shared by both binaries:
//!
//! ```text
//! <cache>/<release>.btf    the kernel's BTF (full or minimised), always validated
//! <cache>/<release>.json   status: where it came from (written by diffkeeper-init)
//! <cache>/.lock            flock that serialises writers
//! ```
//!
//! The kernel release becomes a file name, so it is checked to be a single safe path component.
//!
//! Writers hold [`CacheLock`] (an exclusive `flock` on `.lock`) and write through [`TempFile`]:
//! an anonymous `O_TMPFILE` in the cache dir that only gets a name once it is complete and
//! fsynced, so a writer killed at any moment leaves either the old file or the new one, never a
//! partial one. Where `O_TMPFILE` is unsupported a named `.tmp-*` file is used instead; such
//! leftovers of killed writers are removed the next time the lock is taken.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{AtFlags, Flock, FlockArg, AT_FDCWD};

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

/// Prefix of named temporary files; anything with it found under the lock is a crash leftover.
const TEMP_PREFIX: &str = ".tmp-";

/// A cache operation that failed, naming what was attempted on which path.
#[derive(Debug)]
pub struct CacheError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for CacheError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn cache_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError {
    let path = path.to_path_buf();
    move |source| CacheError {
        action,
        path,
        source,
    }
}

impl BtfCache {
    /// Creates the cache dir (and parents), takes the exclusive lock (waiting for other writers)
    /// and removes temp files that killed writers left behind.
    pub fn lock(&self) -> Result<CacheLock, CacheError> {
        fs::create_dir_all(&self.dir).map_err(cache_err("create cache dir", &self.dir))?;
        let path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(&path)
            .map_err(cache_err("open lock file", &path))?;
        let flock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| cache_err("flock", &path)(io::Error::from(errno)))?;
        let lock = CacheLock {
            dir: self.dir.clone(),
            _flock: flock,
        };
        lock.remove_stale_temps()?;
        Ok(lock)
    }
}

/// Proof that this process holds the cache's writer lock; released on drop (or process death).
#[derive(Debug)]
pub struct CacheLock {
    dir: PathBuf,
    _flock: Flock<File>,
}

impl CacheLock {
    /// Starts a new file in the cache dir; it becomes visible only through [`TempFile::commit`].
    pub fn create_temp(&self) -> Result<TempFile, CacheError> {
        let anonymous = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_TMPFILE)
            .open(&self.dir);
        match anonymous {
            Ok(file) => Ok(TempFile {
                file,
                dir: self.dir.clone(),
                named: None,
            }),
            // Filesystems without O_TMPFILE support answer EOPNOTSUPP, EISDIR or EINVAL.
            Err(_) => self.create_named_temp(),
        }
    }

    /// The fallback for file systems without `O_TMPFILE`: a `.tmp-*` file, removed on drop
    /// (or, after a crash, by the next [`BtfCache::lock`]).
    fn create_named_temp(&self) -> Result<TempFile, CacheError> {
        let path = self.dir.join(temp_name());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(cache_err("create temp file", &path))?;
        Ok(TempFile {
            file,
            dir: self.dir.clone(),
            named: Some(path),
        })
    }

    /// Removes a cache file (e.g. an invalid BTF) and makes the removal durable.
    pub fn remove(&self, path: &Path) -> Result<(), CacheError> {
        match fs::remove_file(path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(cache_err("remove", path)(e)),
        }
    }

    fn remove_stale_temps(&self) -> Result<(), CacheError> {
        let entries = fs::read_dir(&self.dir).map_err(cache_err("list cache dir", &self.dir))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let path = entry.path();
                log::debug!("removing stale temp file {}", path.display());
                fs::remove_file(&path).map_err(cache_err("remove stale temp file", &path))?;
            }
        }
        Ok(())
    }
}

/// A file being written in the cache dir. Dropped without [`commit`](Self::commit), it vanishes.
#[derive(Debug)]
pub struct TempFile {
    file: File,
    dir: PathBuf,
    /// `None` for an anonymous `O_TMPFILE`.
    named: Option<PathBuf>,
}

impl TempFile {
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Makes the content durable and atomically puts it at `dest` (in the cache dir), replacing
    /// whatever was there.
    pub fn commit(mut self, dest: &Path) -> Result<(), CacheError> {
        self.file
            .sync_all()
            .map_err(cache_err("fsync temp file for", dest))?;
        let named = match self.named.take() {
            Some(path) => path,
            None => self.link_anonymous(dest)?,
        };
        let renamed = fs::rename(&named, dest).map_err(cache_err("rename temp file to", dest));
        if renamed.is_err() {
            let _ = fs::remove_file(&named);
        }
        renamed?;
        sync_dir(&self.dir)
    }

    /// Gives the `O_TMPFILE` a temporary name (rename cannot take an fd, and linkat cannot
    /// replace an existing file). Linking through /proc needs no CAP_DAC_READ_SEARCH.
    fn link_anonymous(&self, dest: &Path) -> Result<PathBuf, CacheError> {
        let path = self.dir.join(temp_name());
        let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        nix::unistd::linkat(
            AT_FDCWD,
            proc_path.as_str(),
            AT_FDCWD,
            &path,
            AtFlags::AT_SYMLINK_FOLLOW,
        )
        .or_else(|_| {
            // Without /proc, AT_EMPTY_PATH works for processes with CAP_DAC_READ_SEARCH.
            nix::unistd::linkat(&self.file, "", AT_FDCWD, &path, AtFlags::AT_EMPTY_PATH)
        })
        .map_err(|errno| cache_err("link temp file for", dest)(io::Error::from(errno)))?;
        Ok(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = &self.named {
            let _ = fs::remove_file(path);
        }
    }
}

/// A temp name unique across processes (pid) and within one (counter, time).
fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{TEMP_PREFIX}{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), CacheError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(cache_err("fsync cache dir", dir))
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

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dk-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn commit_replaces_atomically_and_drop_leaves_nothing() {
        use std::io::Write;
        let dir = scratch("commit");
        let cache = BtfCache::new(dir.join("nested"));
        let lock = cache.lock().unwrap();
        let dest = cache.btf_path("r1").unwrap();
        for content in [&b"first"[..], b"second"] {
            let mut t = lock.create_temp().unwrap();
            t.file().write_all(content).unwrap();
            t.commit(&dest).unwrap();
            assert_eq!(fs::read(&dest).unwrap(), content);
        }
        let mut abandoned = lock.create_temp().unwrap();
        abandoned.file().write_all(b"partial").unwrap();
        drop(abandoned);
        assert_eq!(names_in(cache.dir()), [".lock", "r1.btf"]);

        // The named fallback behaves the same: visible only as a .tmp-* until committed.
        let mut named = lock.create_named_temp().unwrap();
        named.file().write_all(b"third").unwrap();
        assert_eq!(names_in(cache.dir()).len(), 3);
        named.commit(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"third");
        let abandoned = lock.create_named_temp().unwrap();
        drop(abandoned);
        assert_eq!(names_in(cache.dir()), [".lock", "r1.btf"]);
        lock.remove(&dest).unwrap();
        assert_eq!(names_in(cache.dir()), [".lock"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn lock_removes_stale_temps() {
        let dir = scratch("stale");
        let cache = BtfCache::new(&dir);
        drop(cache.lock().unwrap());
        fs::write(dir.join(".tmp-999-0-0"), b"left by a killed writer").unwrap();
        let _lock = cache.lock().unwrap();
        assert_eq!(names_in(&dir), [".lock"]);
        fs::remove_dir_all(dir).unwrap();
    }
}
