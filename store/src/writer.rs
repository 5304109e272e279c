//! The writer: one per store (an exclusive lock), appending chunks and records.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{Flock, FlockArg};

use crate::chunker;
use crate::error::{Result, StoreError};
use crate::log::LogWriter;
use crate::pack::{Packs, Scan};
use crate::path::{check_rel, check_root};
use crate::prune::{self, PruneReport};
use crate::record::{Change, Meta, Record};
use crate::tree::{Node, Tree};

/// How a writer behaves.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Longest time a recorded change may stay unsynced: each call syncs once it has passed
    /// (and [`StoreWriter::sync_if_due`] on an idle tick).
    pub sync_interval: Duration,
    /// Prune the oldest versions once the store passes this size.
    pub max_bytes: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            sync_interval: Duration::from_secs(1),
            max_bytes: None,
        }
    }
}

/// What one put did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// True when the path already held exactly this; nothing was recorded.
    pub unchanged: bool,
    /// Content bytes read.
    pub bytes_read: u64,
    pub new_chunks: u32,
    pub reused_chunks: u32,
    /// Bytes appended to packs and log.
    pub bytes_written: u64,
    /// Set when this call pruned old versions to stay under `max_bytes`.
    pub pruned: Option<PruneReport>,
}

/// Running totals of a writer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub records: u64,
    pub chunks: u64,
    /// Bytes of packs plus log on disk.
    pub store_bytes: u64,
    /// Live paths in the newest state.
    pub live_paths: u64,
}

/// Opens stores for writing.
pub struct Store;

impl Store {
    /// Creates the store at `dir` (or opens it), taking its lock; a torn tail left by a crash is
    /// cut off.
    pub fn create_or_open(dir: &Path, opts: StoreOptions) -> Result<StoreWriter> {
        let packs_dir = dir.join("packs");
        fs::create_dir_all(&packs_dir).map_err(|e| StoreError::io(&packs_dir, e))?;
        let lock_path = dir.join("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            if e == nix::errno::Errno::EWOULDBLOCK {
                StoreError::Locked {
                    dir: dir.to_path_buf(),
                }
            } else {
                StoreError::io(&lock_path, e.into())
            }
        })?;
        let (log, records) = LogWriter::open(dir)?;
        let packs = Packs::open(&packs_dir, true, Scan::Heads)?;
        for bad in &packs.bad {
            // The chunk is lost; recording the same content again writes it anew.
            log::warn!("store: {bad} (skipped; run diffkeeper verify)");
        }
        let tree = Tree::replay(
            records.iter().enumerate().map(|(i, r)| (i as u64, r)),
            u64::MAX,
        );
        Ok(StoreWriter {
            dir: dir.to_path_buf(),
            opts,
            _lock: lock,
            log,
            packs,
            tree,
            records: records.len() as u64,
            last_sync: Instant::now(),
            dirty: false,
        })
    }
}

/// Appends changes to a store. Every call either records its change whole or returns an error
/// having recorded nothing of it, with one exception: when the periodic sync that follows a
/// recorded change fails, the error is returned although the change was appended (it is
/// recorded, not yet durable; recording it again is harmless, an unchanged file records nothing).
pub struct StoreWriter {
    dir: PathBuf,
    opts: StoreOptions,
    _lock: Flock<File>,
    log: LogWriter,
    packs: Packs,
    tree: Tree,
    records: u64,
    last_sync: Instant,
    dirty: bool,
}

/// Nanoseconds since the Unix epoch (0 before it).
pub fn ts_ns(ts: SystemTime) -> u64 {
    ts.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl StoreWriter {
    /// Records the content of a regular file read from `content`; `meta.size` is taken from the
    /// bytes read. Content already stored (in any file) adds no chunk.
    pub fn put_file(
        &mut self,
        ts: SystemTime,
        root: &str,
        path: &[u8],
        meta: &Meta,
        content: &mut dyn Read,
    ) -> Result<PutOutcome> {
        check_root(root)?;
        check_rel(path)?;
        self.check_parents(root, path)?;
        let mut outcome = PutOutcome::default();
        let mut chunks = Vec::new();
        let packs = &mut self.packs;
        chunker::chunk(content, |data| {
            let hash = *blake3::hash(data).as_bytes();
            let written = packs.put(hash, data)?;
            if written > 0 {
                outcome.new_chunks += 1;
            } else {
                outcome.reused_chunks += 1;
            }
            outcome.bytes_written += written;
            outcome.bytes_read += data.len() as u64;
            chunks.push(crate::record::ChunkRef {
                hash,
                len: data.len() as u32,
            });
            Ok(())
        })
        .map_err(|e| match e {
            chunker::ChunkError::Read(e) => StoreError::Io {
                path: PathBuf::from(std::ffi::OsStr::from_bytes(path)),
                source: e,
            },
            chunker::ChunkError::Store(e) => e,
        })?;
        let meta = Meta {
            size: outcome.bytes_read,
            ..*meta
        };
        if let Some(entry) = self.tree.get(root, path) {
            if let Node::File {
                meta: old,
                chunks: old_chunks,
                ..
            } = &entry.node
            {
                if *old == meta && old_chunks[..] == chunks[..] {
                    outcome.unchanged = true;
                    return Ok(outcome);
                }
            }
        }
        let change = Change::File { meta, chunks };
        outcome.bytes_written += self.record(ts, root, path, change)?;
        outcome.pruned = self.after_put()?;
        Ok(outcome)
    }

    /// Records a symbolic link and its target.
    pub fn put_symlink(
        &mut self,
        ts: SystemTime,
        root: &str,
        path: &[u8],
        meta: &Meta,
        target: &[u8],
    ) -> Result<PutOutcome> {
        if target.is_empty() || target.contains(&0) || target.len() > crate::path::MAX_PATH {
            return Err(StoreError::BadPath {
                path: target.to_vec(),
                reason: "symlink target empty, too long or with a NUL byte",
            });
        }
        let change = Change::Symlink {
            meta: *meta,
            target: target.to_vec(),
        };
        self.put(ts, root, path, change)
    }

    /// Records a directory (an empty one is kept as such).
    pub fn put_dir(
        &mut self,
        ts: SystemTime,
        root: &str,
        path: &[u8],
        meta: &Meta,
    ) -> Result<PutOutcome> {
        self.put(ts, root, path, Change::Dir { meta: *meta })
    }

    /// Records `path` as another name of the already recorded file `existing`.
    pub fn put_hardlink(
        &mut self,
        ts: SystemTime,
        root: &str,
        path: &[u8],
        existing: &[u8],
    ) -> Result<PutOutcome> {
        check_rel(existing)?;
        match self.tree.get(root, existing).map(|e| &e.node) {
            Some(Node::File { .. } | Node::PrunedFile { .. }) => {}
            _ => {
                return Err(StoreError::NotFound {
                    what: format!(
                        "hard link target {:?} under {root} (record the file first)",
                        String::from_utf8_lossy(existing)
                    ),
                })
            }
        }
        let change = Change::Hardlink {
            existing: existing.to_vec(),
        };
        self.put(ts, root, path, change)
    }

    /// Records that `path` and everything below it are gone.
    pub fn delete(&mut self, ts: SystemTime, root: &str, path: &[u8]) -> Result<PutOutcome> {
        self.put(ts, root, path, Change::Delete)
    }

    /// Records a move of `from` (and its subtree) to `to`, replacing what `to` held.
    pub fn rename(
        &mut self,
        ts: SystemTime,
        root: &str,
        from: &[u8],
        to: &[u8],
    ) -> Result<PutOutcome> {
        check_rel(to)?;
        if crate::path::is_within(to, from) {
            return Err(StoreError::BadPath {
                path: to.to_vec(),
                reason: "a rename target inside its own source",
            });
        }
        self.put(ts, root, from, Change::Rename { to: to.to_vec() })
    }

    /// Records new attributes (mode, owner, mtime) of `path`.
    pub fn attrib(
        &mut self,
        ts: SystemTime,
        root: &str,
        path: &[u8],
        meta: &Meta,
    ) -> Result<PutOutcome> {
        self.put(ts, root, path, Change::Attrib { meta: *meta })
    }

    fn put(
        &mut self,
        ts: SystemTime,
        root: &str,
        path: &[u8],
        change: Change,
    ) -> Result<PutOutcome> {
        check_root(root)?;
        check_rel(path)?;
        let creates = match &change {
            Change::Rename { to } => Some(to.as_slice()),
            Change::Delete | Change::Attrib { .. } => None,
            _ => Some(path),
        };
        if let Some(created) = creates {
            self.check_parents(root, created)?;
        }
        let bytes_written = self.record(ts, root, path, change)?;
        let pruned = self.after_put()?;
        Ok(PutOutcome {
            bytes_written,
            pruned,
            ..PutOutcome::default()
        })
    }

    /// Refuses an entry below something the store holds as a file or symlink: the state would
    /// be one no file system can have (and export refuses it). Record the directory first.
    fn check_parents(&self, root: &str, path: &[u8]) -> Result<()> {
        let mut up = crate::path::parent(path);
        while let Some(parent) = up {
            if let Some(entry) = self.tree.get(root, parent) {
                if !matches!(entry.node, Node::Dir { .. }) {
                    return Err(StoreError::BadPath {
                        path: path.to_vec(),
                        reason: match entry.node {
                            Node::Symlink { .. } => "its parent is recorded as a symlink; record the directory that replaced it first",
                            _ => "its parent is recorded as a file; record the directory that replaced it first",
                        },
                    });
                }
            }
            up = crate::path::parent(parent);
        }
        Ok(())
    }

    /// Appends one record and applies it to the newest state.
    fn record(&mut self, ts: SystemTime, root: &str, path: &[u8], change: Change) -> Result<u64> {
        let record = Record {
            ts_ns: ts_ns(ts),
            root: root.to_string(),
            path: path.to_vec(),
            change,
        };
        let before = self.log.len();
        self.log.append(&record)?;
        self.tree.apply(self.records, &record);
        self.records += 1;
        self.dirty = true;
        Ok(self.log.len() - before)
    }

    fn after_put(&mut self) -> Result<Option<PruneReport>> {
        self.sync_if_due()?;
        let Some(max) = self.opts.max_bytes else {
            return Ok(None);
        };
        if self.store_bytes() <= max {
            return Ok(None);
        }
        self.sync()?;
        // The change is recorded already: a failed prune must not report it as lost.
        match prune::prune(&self.dir, &mut self.log, &mut self.packs, &self.tree, max) {
            Ok(report) => Ok(Some(report)),
            Err(e) => {
                log::warn!(
                    "store: {}: pruning to {max} bytes failed: {e}; retried after the next change",
                    self.dir.display()
                );
                Ok(None)
            }
        }
    }

    /// Syncs when the sync interval has passed since the last sync.
    pub fn sync_if_due(&mut self) -> Result<()> {
        if self.dirty && self.last_sync.elapsed() >= self.opts.sync_interval {
            self.sync()?;
        }
        Ok(())
    }

    /// Makes everything recorded so far durable: packs first, then the log that names them.
    pub fn sync(&mut self) -> Result<()> {
        self.packs.sync()?;
        self.log.sync()?;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn store_bytes(&self) -> u64 {
        self.packs.total_bytes() + self.log.len()
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            records: self.records,
            chunks: self.packs.index.len() as u64,
            store_bytes: self.store_bytes(),
            live_paths: self.tree.entries.len() as u64,
        }
    }

    /// The newest state, as recorded.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        if self.dirty {
            if let Err(e) = self.sync() {
                log::warn!("store: {}: final sync failed: {e}", self.dir.display());
            }
        }
    }
}
