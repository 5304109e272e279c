//! Writing the state at a time T to a directory: `diffkeeper export` and init's restore.
//!
//! Layout: a store with one root exports that root's contents directly into the target; with
//! several roots, each goes to `TARGET/<root without its leading />`. A root inside another
//! (`/srv/db` in `/srv`) owns its directory: what the outer root recorded at, below or on the way
//! to it is left out (and counted), so no root's files land in, overwrite or pass through another
//! root's (capture places every path in its deepest root). The whole plan is checked
//! before anything is written (clean paths, no entry below a symlink or a file, no pruned
//! content, every chunk present), so a hostile or damaged store is refused whole.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::error::{Result, StoreError};
use crate::path::{check_rel, check_root, parent};
use crate::prefetch::{self, FileChunks, Prefetched};
use crate::reader::{root_prefix, StoreReader};
use crate::record::Meta;
use crate::tree::{Node, Tree};

/// What an export wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub files: u64,
    pub hardlinks: u64,
    pub symlinks: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Entries of a root at, below or on the way to a root inside it (which owns that
    /// directory in the export): left out.
    pub shadowed: u64,
}

impl StoreReader {
    /// Exports the state at `ts_ns` to `out`, which must not exist or be an empty directory.
    /// Everything is written into a temporary directory beside `out`, then renamed into place,
    /// so `out` never holds a partial tree.
    pub fn export(&self, ts_ns: u64, out: &Path) -> Result<ExportReport> {
        let tree = self.tree_at(ts_ns);
        let (plan, shadowed) = plan(&tree, self)?;
        let target_err = |reason: &str| StoreError::Target {
            path: out.to_path_buf(),
            reason: reason.to_string(),
        };
        match fs::symlink_metadata(out) {
            Ok(md) if !md.is_dir() => return Err(target_err("exists and is not a directory")),
            Ok(_) => {
                let mut it = fs::read_dir(out).map_err(|e| StoreError::io(out, e))?;
                if it.next().is_some() {
                    return Err(target_err("is not empty; give a new or empty directory"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(out, e)),
        }
        let name = out
            .file_name()
            .ok_or_else(|| target_err("has no final component"))?;
        let parent_dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".dk-export-{}", std::process::id()));
        let tmp = parent_dir.join(tmp_name);
        fs::create_dir(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let result = write_plan(&plan, self, &tmp).and_then(|report| {
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
                .and_then(|_| fs::rename(&tmp, out))
                .map_err(|e| StoreError::io(out, e))?;
            Ok(ExportReport { shadowed, ..report })
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Restores the state at `ts_ns` into the existing directory `dir` (a mounted volume, which
    /// cannot be renamed over). `dir` must be empty unless `overwrite`. The tree is written into
    /// a staging directory inside `dir` first and its entries renamed into place only once all
    /// of it is written, so a damaged store leaves `dir` as it was.
    pub fn restore_into(&self, ts_ns: u64, dir: &Path, overwrite: bool) -> Result<ExportReport> {
        let tree = self.tree_at(ts_ns);
        let (plan, shadowed) = plan(&tree, self)?;
        let md = fs::symlink_metadata(dir).map_err(|e| StoreError::io(dir, e))?;
        if !md.is_dir() {
            return Err(StoreError::Target {
                path: dir.to_path_buf(),
                reason: "is not a directory".into(),
            });
        }
        let existing = children(dir)?;
        if !existing.is_empty() && !overwrite {
            return Err(StoreError::Target {
                path: dir.to_path_buf(),
                reason: format!(
                    "is not empty ({} entries); restore refuses to mix states (use --restore-overwrite to replace them)",
                    existing.len()
                ),
            });
        }
        let staging = dir.join(format!(".dk-restore-{}", std::process::id()));
        fs::create_dir(&staging).map_err(|e| StoreError::io(&staging, e))?;
        let report = match write_plan(&plan, self, &staging) {
            Ok(report) => ExportReport { shadowed, ..report },
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        for path in existing {
            let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            let removed = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(|e| StoreError::io(&path, e))?;
        }
        for path in children(&staging)? {
            let name = path.file_name().unwrap_or_default();
            fs::rename(&path, dir.join(name)).map_err(|e| StoreError::io(&path, e))?;
        }
        fs::remove_dir(&staging).map_err(|e| StoreError::io(&staging, e))?;
        Ok(report)
    }
}

/// The entries of a directory, as paths.
fn children(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::read_dir(dir)
        .and_then(|it| it.map(|e| e.map(|e| e.path())).collect())
        .map_err(|e| StoreError::io(dir, e))
}

/// One entry to write, at its path relative to the target.
struct Item<'a> {
    rel: PathBuf,
    node: &'a Node,
    /// The path as the store names it (root and path), for errors.
    what: String,
}

/// Checks the tree at T and orders it for writing: parents before children.
/// The items to write, and how many entries were left out as shadowed by a nested root.
fn plan<'a>(tree: &'a Tree, reader: &StoreReader) -> Result<(Vec<Item<'a>>, u64)> {
    let roots = tree.roots();
    let single = roots.len() == 1;
    let mut items = Vec::with_capacity(tree.entries.len());
    let mut shadowed = 0;
    for ((root, path), entry) in &tree.entries {
        check_root(root)?;
        check_rel(path)?;
        let is_dir = matches!(entry.node, Node::Dir { .. });
        if shadowed_by_nested_root(&roots, root, path, is_dir) {
            shadowed += 1;
            continue;
        }
        let what = || format!("{}{}", root_prefix(root), String::from_utf8_lossy(path));
        // Every recorded ancestor must be a directory: never write through a symlink or a file.
        let mut up = parent(path);
        while let Some(p) = up {
            if let Some(anc) = tree.get(root, p) {
                if !matches!(anc.node, Node::Dir { .. }) {
                    return Err(StoreError::Target {
                        path: PathBuf::from(what()),
                        reason: format!(
                            "lies below {}, a {}: the store is inconsistent or forged, refused whole",
                            String::from_utf8_lossy(p),
                            anc.node.kind()
                        ),
                    });
                }
            }
            up = parent(p);
        }
        match &entry.node {
            Node::PrunedFile { .. } => return Err(StoreError::Pruned { what: what() }),
            Node::File { chunks, .. } => {
                for chunk in chunks.iter() {
                    if !reader_has(reader, &chunk.hash) {
                        return Err(StoreError::MissingChunk {
                            hash: format!("{} (of {})", crate::pack::hex(&chunk.hash), what()),
                        });
                    }
                }
            }
            _ => {}
        }
        let mut rel = PathBuf::new();
        if !single && root != "/" {
            rel.push(&root[1..]);
        }
        rel.push(OsStr::from_bytes(path));
        items.push(Item {
            rel,
            node: &entry.node,
            what: what(),
        });
    }
    Ok((items, shadowed))
}

/// Whether `path` of `root` is at or below another root that lies inside `root`, or is a
/// non-directory on the way to one (that root's files would be written through it).
fn shadowed_by_nested_root(roots: &[String], root: &str, path: &[u8], is_dir: bool) -> bool {
    roots
        .iter()
        .filter_map(|other| nested_rel(root, other))
        .any(|inner| path == inner || is_below(path, inner) || (!is_dir && is_below(inner, path)))
}

/// `inner` relative to `outer` when it lies strictly inside it (`/srv/db` in `/srv`: `db`).
fn nested_rel<'a>(outer: &str, inner: &'a str) -> Option<&'a [u8]> {
    let rest = match outer {
        "/" => inner.strip_prefix('/')?,
        _ => inner.strip_prefix(outer)?.strip_prefix('/')?,
    };
    (!rest.is_empty()).then_some(rest.as_bytes())
}

/// Whether `path` lies strictly below `dir` (both relative).
fn is_below(path: &[u8], dir: &[u8]) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.first() == Some(&b'/'))
}

fn reader_has(reader: &StoreReader, hash: &crate::record::Hash) -> bool {
    reader.has_chunk(hash)
}

fn write_plan(plan: &[Item<'_>], reader: &StoreReader, base: &Path) -> Result<ExportReport> {
    // The files whose content is written: the first name of each hard-linked set (write_items
    // links the others to it), in plan order.
    let mut seen = HashSet::new();
    let files = plan
        .iter()
        .filter_map(|item| match item.node {
            Node::File { chunks, link, .. } if seen.insert(*link) => Some(FileChunks {
                chunks,
                what: &item.what,
            }),
            _ => None,
        })
        .collect();
    prefetch::run(reader, files, |content| write_items(plan, content, base))
}

fn write_items(plan: &[Item<'_>], content: &mut Prefetched, base: &Path) -> Result<ExportReport> {
    let mut report = ExportReport::default();
    let as_root = nix::unistd::geteuid().is_root();
    let mut first_of_link: HashMap<u64, PathBuf> = HashMap::new();
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    for item in plan {
        let target = base.join(&item.rel);
        if let Some(p) = target.parent() {
            fs::create_dir_all(p).map_err(|e| StoreError::io(p, e))?;
        }
        match item.node {
            Node::Dir { meta } => {
                match fs::create_dir(&target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && target.is_dir() => {}
                    Err(e) => return Err(StoreError::io(&target, e)),
                }
                dirs.push((target, *meta));
                report.dirs += 1;
            }
            Node::Symlink { meta, target: to } => {
                symlink(OsStr::from_bytes(to), &target).map_err(|e| StoreError::io(&target, e))?;
                set_owner_times(&target, meta, as_root, false)?;
                report.symlinks += 1;
            }
            Node::File { meta, chunks, link } => {
                if let Some(first) = first_of_link.get(link) {
                    fs::hard_link(first, &target).map_err(|e| StoreError::io(&target, e))?;
                    report.hardlinks += 1;
                    continue;
                }
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| StoreError::io(&target, e))?;
                report.bytes += content.write_file(chunks.len(), &mut file, &item.what)?;
                drop(file);
                fs::set_permissions(&target, fs::Permissions::from_mode(meta.mode))
                    .map_err(|e| StoreError::io(&target, e))?;
                set_owner_times(&target, meta, as_root, true)?;
                first_of_link.insert(*link, target);
                report.files += 1;
            }
            Node::PrunedFile { .. } => unreachable!("plan refuses pruned files"),
        }
    }
    // Directories last, deepest first: a read-only directory must not block its children.
    for (dir, meta) in dirs.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(meta.mode))
            .map_err(|e| StoreError::io(dir, e))?;
        set_owner_times(dir, meta, as_root, true)?;
    }
    Ok(report)
}

/// Ownership (only as root: others cannot give files away) and the mtime, never through a
/// symlink.
fn set_owner_times(path: &Path, meta: &Meta, as_root: bool, follow: bool) -> Result<()> {
    if as_root {
        std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))
            .map_err(|e| StoreError::io(path, e))?;
        if follow {
            // chown clears set-id bits: put the mode back.
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
                .map_err(|e| StoreError::io(path, e))?;
        }
    }
    let mtime = TimeSpec::new(
        meta.mtime_ns.div_euclid(1_000_000_000),
        meta.mtime_ns.rem_euclid(1_000_000_000),
    );
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::UTIME_OMIT,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| StoreError::io(path, e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_root_shadows_what_its_outer_root_holds_there() {
        let roots = ["/".to_string(), "/srv".to_string(), "/srv/db".to_string()];
        assert_eq!(nested_rel("/srv", "/srv/db"), Some(&b"db"[..]));
        assert_eq!(nested_rel("/", "/srv"), Some(&b"srv"[..]));
        assert_eq!(nested_rel("/srv", "/srv"), None);
        assert_eq!(nested_rel("/srv", "/srvx/db"), None, "not a path boundary");
        let shadowed =
            |root, path: &[u8], is_dir| shadowed_by_nested_root(&roots, root, path, is_dir);
        assert!(shadowed("/srv", b"db", true));
        assert!(shadowed("/srv", b"db/x", false));
        assert!(!shadowed("/srv", b"dbx", false));
        assert!(!shadowed("/srv", b"top", false));
        assert!(!shadowed("/srv/db", b"x", false));
        // Under "/": both /srv and /srv/db nest.
        assert!(shadowed("/", b"srv/top", false));
        // On the way to a nested root: a directory stays, a symlink or file is left out.
        assert!(!shadowed("/", b"etc", true));
        let roots = ["/a".to_string(), "/a/b/c".to_string()];
        assert!(shadowed_by_nested_root(&roots, "/a", b"b", false));
        assert!(!shadowed_by_nested_root(&roots, "/a", b"b", true));
    }
}
