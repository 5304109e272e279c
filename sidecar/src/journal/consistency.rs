//! Every journaled line must apply to the tree the lines before it describe: a create's parent
//! is a directory the journal reported, a write, delete or rename names a path it reported. A
//! backend can miss a change (inotify sees nothing in a directory before its watch exists, and
//! a file made and moved on in that moment is never named to it); the next line that depends
//! on it shows the loss. Then the journal writes a gap (`unreported change`) and repair lines
//! for the smallest subtree that explains it, then the line itself. Only a `delete` or `rmdir`
//! of a path the journal never reported, with nothing reported below it, is left out: it
//! removes nothing a reader knows of; so is a `mkdir` of a directory already reported.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::index::{below, Entry, Kind};
use super::repair;
use crate::change::{Backend, Change, Gap, GapReason, Op};

/// The index's keys are a path's bytes.
fn key(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// The top-most path the journal has not reported that `change` depends on, to be repaired
/// before it (`None`: nothing is missing, or nothing can be repaired).
pub(super) fn unknown_scope(
    entries: &BTreeMap<Vec<u8>, Entry>,
    roots: &[PathBuf],
    change: &Change,
) -> Option<PathBuf> {
    let path = key(&change.path);
    let scope = match change.op {
        Op::Create | Op::Mkdir => top_unknown(entries, roots, path, false),
        Op::Write | Op::Attrib => top_unknown(entries, roots, path, true),
        Op::Delete | Op::Rmdir => None,
        Op::Rename => {
            let from_known = change
                .from
                .as_deref()
                .is_some_and(|from| entries.contains_key(key(from)));
            // With its source unknown the rename says nothing a reader can use: what arrived
            // at `path` is repaired instead.
            top_unknown(entries, roots, path, false)
                .or_else(|| (!from_known && root_of(roots, path).is_some()).then_some(path))
        }
    };
    scope.map(|s| PathBuf::from(OsStr::from_bytes(s)))
}

/// A delete or rmdir of a path the journal never reported, with nothing reported below it.
pub(super) fn removes_nothing_reported(
    entries: &BTreeMap<Vec<u8>, Entry>,
    change: &Change,
) -> bool {
    let path = key(&change.path);
    matches!(change.op, Op::Delete | Op::Rmdir)
        && !entries.contains_key(path)
        && entries.range(below(path)).next().is_none()
}

/// A `mkdir` of a directory the journal already reported (a listing of a new directory, by
/// inotify's catch-up or an eBPF move-in, found it before its own event came): a reader has it.
/// So is a `create` there, unless a file stands there now: an eBPF reader journals a move-in
/// as a `create` when the directory has moved on again before the event is read, after the
/// listing of the directory it arrived in had already reported it.
pub(super) fn adds_nothing_new(entries: &BTreeMap<Vec<u8>, Entry>, change: &Change) -> bool {
    let reported_dir = || {
        entries
            .get(key(&change.path))
            .is_some_and(|e| e.kind == Kind::Dir)
    };
    match change.op {
        Op::Mkdir => reported_dir(),
        Op::Create => {
            reported_dir()
                && change
                    .path
                    .symlink_metadata()
                    .map_or(true, |meta| meta.is_dir())
        }
        _ => false,
    }
}

/// The root `path` lies strictly below.
pub(super) fn root_of<'a>(roots: &'a [PathBuf], path: &[u8]) -> Option<&'a PathBuf> {
    roots.iter().find(|root| {
        let root = key(root);
        path.len() > root.len() && path.starts_with(root) && path[root.len()] == b'/'
    })
}

fn is_known_dir(entries: &BTreeMap<Vec<u8>, Entry>, roots: &[PathBuf], path: &[u8]) -> bool {
    roots.iter().any(|r| key(r) == path) || entries.get(path).is_some_and(|e| e.kind == Kind::Dir)
}

/// The first of `path`'s ancestors below its root (and `path` itself, `with_self`) that is not
/// a reported directory (for `path` itself: not reported at all).
fn top_unknown<'p>(
    entries: &BTreeMap<Vec<u8>, Entry>,
    roots: &[PathBuf],
    path: &'p [u8],
    with_self: bool,
) -> Option<&'p [u8]> {
    let root = root_of(roots, path)?;
    let start = key(root).len() + 1;
    for (i, _) in path[start..].iter().enumerate().filter(|(_, &b)| b == b'/') {
        let ancestor = &path[..start + i];
        if !is_known_dir(entries, roots, ancestor) {
            return Some(ancestor);
        }
    }
    (with_self && !entries.contains_key(path)).then_some(path)
}

impl super::Journal {
    /// A change depends on `scope`, which the journal never reported: a gap, then `scope` as it
    /// is on disk now. Gone meanwhile, there is nothing to repair (its removal, if reported,
    /// follows), but the gap still says that the line after it may not apply to what a reader
    /// has (a directory moved in and on before an eBPF reader could see it was one).
    pub(super) fn repair_unreported(&mut self, scope: &Path, backend: Backend) -> io::Result<()> {
        let lines = if scope.symlink_metadata().is_ok() {
            match repair::repair_scope(&mut self.index, scope, true, backend) {
                Ok(lines) => lines,
                Err(limit) => return self.index_over(limit),
            }
        } else {
            Vec::new()
        };
        let root = root_of(&self.roots, scope.as_os_str().as_bytes())
            .cloned()
            .into_iter()
            .collect();
        let ts = self.last_ts.unwrap_or_else(SystemTime::now);
        let gap = Gap {
            ts,
            backend,
            roots: root,
            reason: GapReason::UnreportedChange,
            lost: None,
        };
        if let Some(metrics) = &self.metrics {
            metrics.count_gap(gap.reason);
            metrics.count_repair_lines(lines.len() as u64);
        }
        let seq = self.take_seq();
        self.line.build_gap(seq, &gap);
        self.spill()?;
        // Only `scope` was missed, and its repair lines below are fed: no rescan needed.
        for mut change in lines {
            change.ts = ts;
            let seq = self.take_seq();
            self.line.build(seq, &change, 1, true);
            self.spill()?;
            self.offer_to_capture(&change)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_fixture::inotify_change as change;
    use super::*;

    #[test]
    fn the_top_most_missing_directory_is_the_scope() {
        let roots = [PathBuf::from("/s")];
        let mut entries = BTreeMap::new();
        let dir = Entry {
            kind: Kind::Dir,
            scanned: None,
            touched_ns: 0,
        };
        entries.insert(b"/s/a".to_vec(), dir);
        let create = change(Op::Create, "/s/a/b/c/f", None);
        assert_eq!(
            unknown_scope(&entries, &roots, &create).as_deref(),
            Some(Path::new("/s/a/b"))
        );
        assert_eq!(
            unknown_scope(&entries, &roots, &change(Op::Create, "/s/a/f", None)),
            None
        );
        let write = change(Op::Write, "/s/a/f", None);
        assert_eq!(
            unknown_scope(&entries, &roots, &write).as_deref(),
            Some(Path::new("/s/a/f"))
        );
        let rename = change(Op::Rename, "/s/a/g", Some("/s/gone"));
        assert_eq!(
            unknown_scope(&entries, &roots, &rename).as_deref(),
            Some(Path::new("/s/a/g"))
        );
        assert_eq!(
            unknown_scope(&entries, &roots, &change(Op::Delete, "/s/x", None)),
            None
        );
        assert_eq!(
            unknown_scope(&entries, &roots, &change(Op::Write, "/elsewhere/f", None)),
            None
        );
        assert!(adds_nothing_new(&entries, &change(Op::Mkdir, "/s/a", None)));
        assert!(!adds_nothing_new(
            &entries,
            &change(Op::Mkdir, "/s/b", None)
        ));
        // A move-in read after the directory moved on: /s/a is not on this disk.
        assert!(adds_nothing_new(
            &entries,
            &change(Op::Create, "/s/a", None)
        ));
        assert!(!adds_nothing_new(
            &entries,
            &change(Op::Create, "/s/b", None)
        ));
    }

    #[test]
    fn a_create_over_a_reported_directory_stands_when_a_file_is_there_now() {
        let dir = std::env::temp_dir().join(format!("dk-create-over-dir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("still-a-dir")).unwrap();
        std::fs::write(dir.join("now-a-file"), b"x").unwrap();
        let reported = Entry {
            kind: Kind::Dir,
            scanned: None,
            touched_ns: 0,
        };
        let mut entries = BTreeMap::new();
        for name in ["still-a-dir", "now-a-file"] {
            entries.insert(key(&dir.join(name)).to_vec(), reported);
        }
        let create = |name: &str| change(Op::Create, dir.join(name).to_str().unwrap(), None);
        assert!(adds_nothing_new(&entries, &create("still-a-dir")));
        assert!(!adds_nothing_new(&entries, &create("now-a-file")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
