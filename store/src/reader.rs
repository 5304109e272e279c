//! Reading a store: timeline, the state at a time, one file's content, diffs, verification.
//! Opening takes no lock, so a reader works beside the live writer (whose unfinished last
//! record, if any, it ignores).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::frame::End;
use crate::log::{read_all, LOG_NAME};
use crate::pack::{self, ChunkBuf, ChunkDecoder, Packs, Scan};
use crate::path::is_within;
use crate::record::{Change, ChunkRef, Record};
use crate::tree::{Node, Tree};

/// A store opened read-only.
pub struct StoreReader {
    dir: PathBuf,
    records: Vec<Record>,
    packs: Packs,
    /// Bytes of an unfinished last record that were ignored.
    pub torn_tail: Option<u64>,
}

/// One recorded change, as `diffkeeper timeline` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub ts_ns: u64,
    pub root: String,
    pub path: Vec<u8>,
    pub op: &'static str,
    /// A file version's size.
    pub size: Option<u64>,
    /// A rename's destination, a hard link's existing name, a symlink's target.
    pub other: Option<Vec<u8>>,
}

/// How a path differs between two times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    Added,
    Removed,
    /// Content (or link target, or file type) changed.
    Modified,
    /// Only mode, owner or mtime changed.
    Attributes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    pub root: String,
    pub path: Vec<u8>,
    pub kind: DiffKind,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub records: u64,
    pub chunks: u64,
    /// Each corrupt or missing thing, named.
    pub problems: Vec<String>,
    /// An unfinished last record or chunk (a crash's torn append): ignored, not a problem.
    pub torn_tails: Vec<String>,
}

impl StoreReader {
    /// Opens the store at `dir`; refuses a newer format and a corrupt log.
    pub fn open(dir: &Path) -> Result<Self> {
        let log_path = dir.join(LOG_NAME);
        let mut file = File::open(&log_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotAStore {
                path: dir.to_path_buf(),
                reason: "no log file (is this the directory given to --store?)".into(),
            },
            _ => StoreError::io(&log_path, e),
        })?;
        let (records, end) = read_all(&mut file, &log_path)?;
        let packs = Packs::open(&dir.join("packs"), false, Scan::Heads)?;
        for bad in &packs.bad {
            log::warn!("store: {bad} (that chunk is lost; run diffkeeper verify)");
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            records,
            packs,
            torn_tail: match end {
                End::Clean => None,
                End::TornTail { bytes, .. } => Some(bytes),
            },
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Every change in log order; `filter` keeps those at or below a path (absolute, with its
    /// root, or relative to any root).
    pub fn timeline(&self, filter: Option<&[u8]>) -> Vec<TimelineEntry> {
        self.records
            .iter()
            .filter(|r| filter.is_none_or(|f| matches_filter(r, f)))
            .map(|r| {
                let (size, other) = match &r.change {
                    Change::File { meta, .. } | Change::PrunedFile { meta } => {
                        (Some(meta.size), None)
                    }
                    Change::Symlink { target, .. } => (None, Some(target.clone())),
                    Change::Hardlink { existing } => (None, Some(existing.clone())),
                    Change::Rename { to } => (None, Some(to.clone())),
                    _ => (None, None),
                };
                TimelineEntry {
                    ts_ns: r.ts_ns,
                    root: r.root.clone(),
                    path: r.path.clone(),
                    op: r.op_name(),
                    size,
                    other,
                }
            })
            .collect()
    }

    /// The state of every root at `ts_ns` (every record at or before it).
    pub fn tree_at(&self, ts_ns: u64) -> Tree {
        Tree::replay(
            self.records.iter().enumerate().map(|(i, r)| (i as u64, r)),
            ts_ns,
        )
    }

    /// Finds the (root, relative path) a user's path names in `tree`: an absolute path under one
    /// of the roots, or a path relative to the only root.
    pub fn resolve(&self, tree: &Tree, user_path: &[u8]) -> Result<(String, Vec<u8>)> {
        let mut roots: BTreeSet<&str> = self.records.iter().map(|r| r.root.as_str()).collect();
        roots.extend(tree.entries.keys().map(|(r, _)| r.as_str()));
        if user_path.first() == Some(&b'/') {
            let best = roots
                .iter()
                .filter(|root| {
                    let r = root.as_bytes();
                    r == b"/" || (is_within(user_path, r) && user_path.len() > r.len())
                })
                .max_by_key(|r| r.len());
            if let Some(root) = best {
                let skip = if *root == "/" { 1 } else { root.len() + 1 };
                return Ok((root.to_string(), user_path[skip..].to_vec()));
            }
            return Err(StoreError::NotFound {
                what: format!(
                    "{} lies under none of the store's roots ({})",
                    String::from_utf8_lossy(user_path),
                    roots.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        match roots.len() {
            1 => Ok((
                roots.iter().next().map_or(String::new(), |r| r.to_string()),
                user_path.to_vec(),
            )),
            0 => Err(StoreError::NotFound {
                what: "the store is empty".into(),
            }),
            _ => Err(StoreError::NotFound {
                what: format!(
                    "{}: the store has several roots ({}); give the absolute path",
                    String::from_utf8_lossy(user_path),
                    roots.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }

    /// Writes the content of `user_path` as it was at `ts_ns` to `out`; returns its size.
    pub fn cat(&self, user_path: &[u8], ts_ns: u64, out: &mut dyn Write) -> Result<u64> {
        let tree = self.tree_at(ts_ns);
        let (root, path) = self.resolve(&tree, user_path)?;
        let what = || format!("{}{}", root_prefix(&root), String::from_utf8_lossy(&path));
        match tree.get(&root, &path).map(|e| &e.node) {
            Some(Node::File { chunks, .. }) => self.write_content(chunks, out, &what()),
            Some(Node::PrunedFile { .. }) => Err(StoreError::Pruned { what: what() }),
            Some(node) => Err(StoreError::NotFound {
                what: format!("{} is a {}, not a file", what(), node.kind()),
            }),
            None => Err(StoreError::NotFound { what: what() }),
        }
    }

    /// Writes a file's chunks in order.
    pub fn write_content(
        &self,
        chunks: &[ChunkRef],
        out: &mut dyn Write,
        what: &str,
    ) -> Result<u64> {
        let mut decoder = ChunkDecoder::new().map_err(|e| StoreError::io(&self.dir, e))?;
        let mut buf = ChunkBuf::default();
        let mut total = 0u64;
        for chunk in chunks {
            let data = self.read_chunk(chunk, &mut decoder, &mut buf, what)?;
            out.write_all(data)
                .map_err(|e| StoreError::io(format!("writing {what}"), e))?;
            total += data.len() as u64;
        }
        Ok(total)
    }

    /// Reads one chunk of `what` into `buf`, checked against its id and length.
    pub fn read_chunk<'b>(
        &self,
        chunk: &ChunkRef,
        decoder: &mut ChunkDecoder,
        buf: &'b mut ChunkBuf,
        what: &str,
    ) -> Result<&'b [u8]> {
        self.packs
            .read_with(&chunk.hash, decoder, buf)
            .map_err(|e| match e {
                StoreError::Corrupt {
                    path,
                    offset,
                    reason,
                } => StoreError::Corrupt {
                    path,
                    offset,
                    reason: format!("{reason}; it belongs to {what}"),
                },
                StoreError::MissingChunk { hash } => StoreError::MissingChunk {
                    hash: format!("{hash} (of {what})"),
                },
                other => other,
            })?;
        let data = buf.content();
        if data.len() != chunk.len as usize {
            return Err(StoreError::corrupt(
                self.dir.join("packs"),
                0,
                format!("a chunk of {what} has the wrong length"),
            ));
        }
        Ok(data)
    }

    /// Paths that differ between the states at `from_ns` and `to_ns`, sorted.
    pub fn diff(&self, from_ns: u64, to_ns: u64) -> Vec<DiffEntry> {
        let (a, b) = (self.tree_at(from_ns), self.tree_at(to_ns));
        let mut out = Vec::new();
        for (key, old) in &a.entries {
            let kind = match b.entries.get(key) {
                None => Some(DiffKind::Removed),
                Some(new) if !same_content(&old.node, &new.node) => Some(DiffKind::Modified),
                Some(new) if old.node.meta() != new.node.meta() => Some(DiffKind::Attributes),
                Some(_) => None,
            };
            if let Some(kind) = kind {
                out.push(DiffEntry {
                    root: key.0.clone(),
                    path: key.1.clone(),
                    kind,
                });
            }
        }
        for key in b.entries.keys().filter(|k| !a.entries.contains_key(*k)) {
            out.push(DiffEntry {
                root: key.0.clone(),
                path: key.1.clone(),
                kind: DiffKind::Added,
            });
        }
        out.sort_by(|x, y| (&x.root, &x.path).cmp(&(&y.root, &y.path)));
        out
    }

    /// Checks every record's checksum and every chunk's hash, and that every chunk a version
    /// names is present. Problems are collected, not fatal.
    pub fn verify(dir: &Path) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let log_path = dir.join(LOG_NAME);
        let mut file = File::open(&log_path).map_err(|e| StoreError::io(&log_path, e))?;
        let records = match read_all(&mut file, &log_path) {
            Ok((records, end)) => {
                if let End::TornTail { at, bytes } = end {
                    report.torn_tails.push(format!(
                        "{}: unfinished last record ({bytes} bytes at byte {at}) ignored",
                        log_path.display()
                    ));
                }
                records
            }
            Err(e @ StoreError::NewerFormat { .. }) => return Err(e),
            Err(e) => {
                report.problems.push(e.to_string());
                Vec::new()
            }
        };
        report.records = records.len() as u64;
        let packs_dir = dir.join("packs");
        let packs = Packs::open(&packs_dir, false, Scan::Full);
        let packs = match packs {
            Ok(p) => p,
            Err(e @ StoreError::NewerFormat { .. }) => return Err(e),
            Err(e) => {
                report.problems.push(e.to_string());
                return Ok(report);
            }
        };
        report
            .problems
            .extend(packs.bad.iter().map(|e| e.to_string()));
        let mut decoder = ChunkDecoder::new().map_err(|e| StoreError::io(&packs_dir, e))?;
        let mut buf = ChunkBuf::default();
        for hash in packs.index.keys() {
            report.chunks += 1;
            if let Err(e) = packs.read_with(hash, &mut decoder, &mut buf) {
                report.problems.push(e.to_string());
            }
        }
        for (number, size) in &packs.sizes {
            let path = pack::pack_path(&packs_dir, *number);
            let len = std::fs::metadata(&path).map_or(*size, |m| m.len());
            if len > *size {
                report.torn_tails.push(format!(
                    "{}: unfinished last chunk ({} bytes) ignored",
                    path.display(),
                    len - size
                ));
            }
        }
        let mut missing = BTreeSet::new();
        for record in &records {
            if let Change::File { chunks, .. } = &record.change {
                for chunk in chunks {
                    if !packs.index.contains_key(&chunk.hash) && missing.insert(chunk.hash) {
                        report.problems.push(format!(
                            "{}{}: chunk {} is missing",
                            root_prefix(&record.root),
                            String::from_utf8_lossy(&record.path),
                            pack::hex(&chunk.hash)
                        ));
                    }
                }
            }
        }
        Ok(report)
    }
}

/// `root/` for messages (`/` alone stays `/`).
pub fn root_prefix(root: &str) -> String {
    if root == "/" {
        "/".into()
    } else {
        format!("{root}/")
    }
}

fn same_content(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::File { chunks: x, .. }, Node::File { chunks: y, .. }) => x == y,
        (Node::Symlink { target: x, .. }, Node::Symlink { target: y, .. }) => x == y,
        (Node::Dir { .. }, Node::Dir { .. }) => true,
        (Node::PrunedFile { meta: x, link: l }, Node::PrunedFile { meta: y, link: m }) => {
            x.size == y.size && l == m
        }
        _ => false,
    }
}

fn matches_filter(record: &Record, filter: &[u8]) -> bool {
    let full = |p: &[u8]| {
        let mut v = root_prefix(&record.root).into_bytes();
        v.extend_from_slice(p);
        v
    };
    let hit = |p: &[u8]| {
        if filter.first() == Some(&b'/') {
            is_within(&full(p), filter) || is_within(filter, &full(p))
        } else {
            is_within(p, filter) || is_within(filter, p)
        }
    };
    hit(&record.path)
        || match &record.change {
            Change::Rename { to } => hit(to),
            _ => false,
        }
}

impl StoreReader {
    /// True when a pack holds the chunk.
    pub fn has_chunk(&self, hash: &crate::record::Hash) -> bool {
        self.packs.index.contains_key(hash)
    }
}
