//! After a gap: rescan the affected roots and turn the differences between the disk and the
//! [`Index`] into journal lines (marked `"repair":true`), then make the index match the disk.
//!
//! Removals come first (a vanished directory is one `rmdir`, which removes its subtree for a
//! reader, as a directory moved out of the roots does), then additions parents first, then
//! the changed entries: `create` for an entry replaced by another (new inode), `write` for one
//! modified after the journal last reported it, `attrib` for a changed mode or owner.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::index::{below, walk, Entry, Index, Kind, LimitReached, Stat};
use crate::change::{Backend, Change, Op};

/// The repair lines for everything below `root`, in journal order; the index is brought up to
/// the disk.
pub(super) fn repair(
    index: &mut Index,
    root: &Path,
    backend: Backend,
) -> Result<Vec<Change>, LimitReached> {
    repair_scope(index, root, false, backend)
}

/// The repair lines for `scope` (itself too when `with_top`) and everything below it.
pub(super) fn repair_scope(
    index: &mut Index,
    scope: &Path,
    with_top: bool,
    backend: Backend,
) -> Result<Vec<Change>, LimitReached> {
    let Some(indexed) = index.entries() else {
        return Ok(Vec::new());
    };
    let scope_key = scope.as_os_str().as_bytes();
    let mut on_disk: BTreeMap<Vec<u8>, (Kind, Stat)> = BTreeMap::new();
    let top_on_disk = scope.symlink_metadata().ok();
    if let (true, Some(meta)) = (with_top, &top_on_disk) {
        let kind = if meta.is_dir() {
            Kind::Dir
        } else {
            Kind::NonDir
        };
        on_disk.insert(scope_key.to_vec(), (kind, Stat::of(meta)));
    }
    if top_on_disk.is_some_and(|m| m.is_dir()) {
        walk(scope, &mut |path, kind, stat| {
            on_disk.insert(path, (kind, stat));
        });
    }
    let top = with_top.then(|| indexed.get_key_value(scope_key)).flatten();
    let now = SystemTime::now();
    let line = |op: Op, path: &[u8]| Change {
        ts: now,
        backend,
        op,
        path: PathBuf::from(OsStr::from_bytes(path)),
        from: None,
        pid: None,
        comm: None,
        bytes: None,
        truncated: false,
    };
    let mut changes = Vec::new();
    // A removal takes everything below it for a reader (a file can have entries below it in
    // the index when a backend reported a directory as a file).
    let mut removed: Vec<&[u8]> = Vec::new();
    let inside =
        |dir: &[u8], path: &[u8]| path.starts_with(dir) && path[dir.len()..].starts_with(b"/");
    for (path, entry) in top.into_iter().chain(indexed.range(below(scope_key))) {
        if removed.iter().any(|dir| inside(dir, path)) {
            continue; // inside something already removed
        }
        let same_kind = on_disk
            .get(path)
            .is_some_and(|(kind, _)| *kind == entry.kind);
        if !same_kind {
            removed.push(path);
            changes.push(line(
                if entry.kind == Kind::Dir {
                    Op::Rmdir
                } else {
                    Op::Delete
                },
                path,
            ));
        }
    }
    let mut updates = Vec::new();
    for (path, (kind, stat)) in &on_disk {
        let known = indexed
            .get(path)
            .filter(|_| !removed.iter().any(|dir| inside(dir, path)));
        match known {
            Some(entry) if entry.kind == *kind => {
                if let Some(op) = difference(entry, stat) {
                    updates.push(line(op, path));
                }
            }
            _ => changes.push(line(
                if *kind == Kind::Dir {
                    Op::Mkdir
                } else {
                    Op::Create
                },
                path,
            )),
        }
    }
    changes.extend(updates);
    // The index now describes the disk: drop the scope's old entries, then record the scan.
    for change in changes
        .iter()
        .filter(|c| matches!(c.op, Op::Delete | Op::Rmdir))
    {
        index.apply(change)?;
    }
    for (path, (kind, stat)) in on_disk {
        index.set(path, Entry::scanned(kind, stat))?;
    }
    Ok(changes)
}

/// What a reader has to learn about an entry that is still of the same kind.
fn difference(entry: &Entry, disk: &Stat) -> Option<Op> {
    let modified_since_reported = disk.mtime_ns > entry.touched_ns;
    let owner_or_mode = |seen: &Stat| (seen.mode, seen.uid, seen.gid);
    if entry.kind == Kind::Dir {
        // A directory's content is its entries (repaired one by one); only its own mode or
        // owner is news.
        return entry
            .scanned
            .filter(|seen| owner_or_mode(seen) != owner_or_mode(disk))
            .map(|_| Op::Attrib);
    }
    match entry.scanned {
        Some(seen) if seen == *disk => None,
        Some(seen) if seen.ino != disk.ino => Some(Op::Create),
        Some(seen)
            if (seen.size != disk.size || seen.mtime_ns != disk.mtime_ns)
                && modified_since_reported =>
        {
            Some(Op::Write)
        }
        Some(seen) if owner_or_mode(&seen) != owner_or_mode(disk) => Some(Op::Attrib),
        Some(_) => None,
        // Created (or written) through the journal since the last scan: only a later
        // modification is news.
        None if modified_since_reported => Some(Op::Write),
        None => None,
    }
}

/// Scans every root into the index: the tree the journal starts from.
pub(super) fn baseline(index: &mut Index, roots: &[PathBuf]) -> Result<(), LimitReached> {
    let mut result = Ok(());
    for root in roots {
        walk(root, &mut |path, kind, stat| {
            if result.is_ok() {
                result = index.set(path, Entry::scanned(kind, stat));
            }
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Family;

    /// A directory the index holds as a file (a backend reported it so), with an entry below
    /// it: the repair removes the file, makes the directory, and creates what is in it (a
    /// reader's delete took the entry below too).
    #[test]
    fn entries_below_a_removed_file_are_created_again() {
        let root = std::env::temp_dir().join(format!("dk-repair-below-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("m")).unwrap();
        std::fs::write(root.join("m/f"), "x").unwrap();
        let at = |rel: &str| root.join(rel);
        let mut index = Index::new(100);
        let reported = |op, path: PathBuf| Change {
            ts: SystemTime::now(),
            backend: Backend::Ebpf(Family::Kprobe),
            op,
            path,
            from: None,
            pid: None,
            comm: None,
            bytes: None,
            truncated: false,
        };
        index.apply(&reported(Op::Create, at("m"))).unwrap();
        index.apply(&reported(Op::Create, at("m/f"))).unwrap();
        let lines: Vec<String> = repair_scope(&mut index, &root.join("m"), true, Backend::Inotify)
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c.op.as_str(),
                    c.path.strip_prefix(&root).unwrap().display()
                )
            })
            .collect();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(lines, ["delete m", "mkdir m", "create m/f"]);
    }
}
