//! The repair index: what the journal has told its readers the watched trees look like
//! (a baseline scan at start, then every journaled line applied to it), so that after a `gap`
//! a rescan can journal exactly the differences (see [`super::repair`]).
//!
//! Kept in a `BTreeMap` by absolute path (its bytes: byte order keeps a subtree together, where
//! `Path`'s component order would not match the range below): a directory's subtree is one key range, so a rename
//! or removal of a directory moves or drops its entries without visiting the rest. Bounded by
//! `limit` entries: past it the index is dropped (and says so), and later gaps go unrepaired.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::ops::Bound;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::change::{Change, Op};

/// Entries indexed at most: measured at about 18 to 19 MB per 100,000 files (docs/journal.md),
/// so about 95 MB at the limit.
pub const DEFAULT_LIMIT: usize = 500_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Dir,
    /// Anything else: a file, a symlink, a device (journaled as `create`).
    NonDir,
}

/// What a scan saw of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
    pub(super) ino: u64,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

impl Stat {
    pub(super) fn of(meta: &Metadata) -> Self {
        Self {
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ino: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) kind: Kind,
    /// As last scanned; `None` for an entry the journal created since.
    pub(super) scanned: Option<Stat>,
    /// The time of the last journaled create, write or attrib of it (ns since the epoch), 0
    /// if none since the scan: a later mtime on disk is a write the journal missed.
    pub(super) touched_ns: i64,
}

impl Entry {
    pub(super) fn scanned(kind: Kind, stat: Stat) -> Self {
        Self {
            kind,
            scanned: Some(stat),
            touched_ns: 0,
        }
    }
}

/// The indexed tree, or `Over` once it passed its limit.
pub(super) enum Index {
    Live {
        entries: BTreeMap<Vec<u8>, Entry>,
        limit: usize,
    },
    Over,
}

/// Applying a change made the index pass its limit: it is dropped now.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct LimitReached(pub(super) usize);

impl Index {
    pub(super) fn new(limit: usize) -> Self {
        Self::Live {
            entries: BTreeMap::new(),
            limit,
        }
    }

    pub(super) fn entries(&self) -> Option<&BTreeMap<Vec<u8>, Entry>> {
        match self {
            Self::Live { entries, .. } => Some(entries),
            Self::Over => None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries().map_or(0, BTreeMap::len)
    }

    /// Records `path` as scanned now (baseline or repair).
    pub(super) fn set(&mut self, path: Vec<u8>, entry: Entry) -> Result<(), LimitReached> {
        let Self::Live { entries, limit } = self else {
            return Ok(());
        };
        entries.insert(path, entry);
        if entries.len() > *limit {
            let limit = *limit;
            *self = Self::Over;
            return Err(LimitReached(limit));
        }
        Ok(())
    }

    /// Applies a journaled change the way a reader replays it.
    pub(super) fn apply(&mut self, change: &Change) -> Result<(), LimitReached> {
        let Self::Live { entries, .. } = self else {
            return Ok(());
        };
        let touched_ns = nanos(change.ts);
        let path = change.path.as_os_str().as_bytes();
        match change.op {
            Op::Write | Op::Attrib => {
                // A write to a path a reader never heard of makes nothing appear for it (the
                // journal repairs such a path first when it still exists): neither here, or a
                // later rename from it would pass for known.
                if let Some(entry) = entries.get_mut(path) {
                    entry.touched_ns = touched_ns;
                }
            }
            Op::Create | Op::Mkdir => {
                let kind = if change.op == Op::Mkdir {
                    Kind::Dir
                } else {
                    Kind::NonDir
                };
                remove_tree(entries, path);
                return self.insert_new(path, kind, touched_ns);
            }
            Op::Delete | Op::Rmdir => remove_tree(entries, path),
            Op::Rename => {
                if let Some(from) = &change.from {
                    move_tree(entries, from.as_os_str().as_bytes(), path);
                }
            }
        }
        Ok(())
    }

    fn insert_new(&mut self, path: &[u8], kind: Kind, touched_ns: i64) -> Result<(), LimitReached> {
        let entry = Entry {
            kind,
            scanned: None,
            touched_ns,
        };
        self.set(path.to_owned(), entry)
    }
}

/// The keys strictly below `dir`: `dir/` up to (not including) `dir0` ('0' follows '/').
pub(super) fn below(dir: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let end = dir.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    let with = |last: u8| [&dir[..end], &[last]].concat();
    (Bound::Included(with(b'/')), Bound::Excluded(with(b'0')))
}

fn remove_tree(entries: &mut BTreeMap<Vec<u8>, Entry>, path: &[u8]) {
    entries.remove(path);
    let doomed: Vec<Vec<u8>> = entries.range(below(path)).map(|(k, _)| k.clone()).collect();
    for key in doomed {
        entries.remove(&key);
    }
}

/// Moves `from` and everything below it to `to` (replacing what was at `to`).
fn move_tree(entries: &mut BTreeMap<Vec<u8>, Entry>, from: &[u8], to: &[u8]) {
    if from == to {
        return;
    }
    let moved: Vec<(Vec<u8>, Entry)> = entries
        .range(below(from))
        .map(|(k, e)| (k[from.len()..].to_owned(), *e))
        .collect();
    let top = entries.remove(from);
    remove_tree(entries, from);
    remove_tree(entries, to);
    if let Some(top) = top {
        entries.insert(to.to_owned(), top);
    }
    for (rest, entry) in moved {
        entries.insert([to, &rest].concat(), entry);
    }
}

pub(super) fn nanos(ts: SystemTime) -> i64 {
    ts.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Walks `root` (never following symlinks) and calls `found` for every entry below it, parents
/// before children. Unreadable directories are skipped with a warning: their entries stay as
/// they were.
pub(super) fn walk(root: &Path, found: &mut dyn FnMut(Vec<u8>, Kind, Stat)) {
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                if dir.exists() {
                    log::warn!("journal: cannot scan {}: {e}", dir.display());
                }
                continue;
            }
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue; // gone meanwhile
            };
            let path = entry.path();
            let kind = if meta.is_dir() {
                pending.push(path.clone());
                Kind::Dir
            } else {
                Kind::NonDir
            };
            found(path.into_os_string().into_vec(), kind, Stat::of(&meta));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_fixture::inotify_change as change;
    use super::*;

    fn keys(index: &Index) -> Vec<(&str, Kind)> {
        fn text(k: &[u8]) -> &str {
            std::str::from_utf8(k).expect("UTF-8 test names")
        }
        index
            .entries()
            .unwrap()
            .iter()
            .map(|(k, e)| (text(k), e.kind))
            .collect()
    }

    #[test]
    fn a_directory_rename_moves_its_subtree_and_nothing_else() {
        let mut index = Index::new(100);
        for c in [
            change(Op::Mkdir, "/s/d", None),
            change(Op::Create, "/s/d/f", None),
            change(Op::Mkdir, "/s/d/e", None),
            change(Op::Create, "/s/d/e/g", None),
            change(Op::Create, "/s/d0", None),
            change(Op::Create, "/s/d.txt", None),
            change(Op::Rename, "/s/x", Some("/s/d")),
        ] {
            index.apply(&c).unwrap();
        }
        assert_eq!(
            keys(&index),
            [
                ("/s/d.txt", Kind::NonDir),
                ("/s/d0", Kind::NonDir),
                ("/s/x", Kind::Dir),
                ("/s/x/e", Kind::Dir),
                ("/s/x/e/g", Kind::NonDir),
                ("/s/x/f", Kind::NonDir),
            ]
        );
        index.apply(&change(Op::Rmdir, "/s/x", None)).unwrap();
        assert_eq!(
            keys(&index),
            [("/s/d.txt", Kind::NonDir), ("/s/d0", Kind::NonDir)]
        );
    }

    #[test]
    fn passing_the_limit_drops_the_index() {
        let mut index = Index::new(2);
        index.apply(&change(Op::Create, "/s/a", None)).unwrap();
        index.apply(&change(Op::Create, "/s/b", None)).unwrap();
        assert_eq!(
            index.apply(&change(Op::Create, "/s/c", None)),
            Err(LimitReached(2))
        );
        assert!(index.entries().is_none());
        assert_eq!(index.apply(&change(Op::Create, "/s/d", None)), Ok(()));
    }
}
