//! `record SRC STORE ROOT`: records SRC's current state into the content store STORE under
//! ROOT, as the sidecar's capture would after a burst of changes: entries whose size, mtime,
//! mode and owner are unchanged are skipped (restic's change detection, its peer in the bench),
//! paths gone since the last run become deletes. Prints what it did as one JSON line.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use diffkeeper_store::{Meta, Node, Store, StoreOptions, StoreWriter};

pub fn run(src: &Path, store: &Path, root: &str) -> Result<(), String> {
    let mut writer = Store::create_or_open(store, StoreOptions::default())
        .map_err(|e| format!("opening the store: {e}"))?;
    let mut seen = HashSet::new();
    let mut inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut counts = [0u64; 3]; // recorded, unchanged, deleted
    let mut bytes_read = 0u64;
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let rel = path
                .strip_prefix(src)
                .map_err(|e| e.to_string())?
                .as_os_str()
                .as_bytes()
                .to_vec();
            let md = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            seen.insert(rel.clone());
            if md.is_dir() {
                stack.push(path.clone());
            }
            let recorded = record_one(&mut writer, root, &path, &rel, &md, &mut inodes)?;
            match recorded {
                Some(read) => {
                    counts[0] += 1;
                    bytes_read += read;
                }
                None => counts[1] += 1,
            }
        }
    }
    let gone: Vec<Vec<u8>> = writer
        .tree()
        .entries
        .keys()
        .filter(|(r, p)| r == root && !seen.contains(p))
        .map(|(_, p)| p.clone())
        .collect();
    for path in gone {
        // A deleted directory's subtree went with it.
        if writer.tree().get(root, &path).is_some() {
            writer
                .delete(SystemTime::now(), root, &path)
                .map_err(|e| e.to_string())?;
            counts[2] += 1;
        }
    }
    writer.sync().map_err(|e| e.to_string())?;
    let stats = writer.stats();
    println!(
        "{{\"recorded\":{},\"unchanged\":{},\"deleted\":{},\"bytes_read\":{bytes_read},\"store_bytes\":{}}}",
        counts[0], counts[1], counts[2], stats.store_bytes
    );
    Ok(())
}

/// Records one entry unless unchanged; returns the content bytes read, `None` when skipped.
fn record_one(
    writer: &mut StoreWriter,
    root: &str,
    path: &Path,
    rel: &[u8],
    md: &fs::Metadata,
    inodes: &mut HashMap<(u64, u64), Vec<u8>>,
) -> Result<Option<u64>, String> {
    let meta = Meta::from_metadata(md);
    let now = SystemTime::now();
    let err = |e: diffkeeper_store::StoreError| e.to_string();
    let unchanged = writer.tree().get(root, rel).is_some_and(|e| {
        let old = e.node.meta();
        old.mode == meta.mode
            && old.uid == meta.uid
            && old.gid == meta.gid
            && (matches!(e.node, Node::Dir { .. })
                || (old.size == meta.size && old.mtime_ns == meta.mtime_ns))
    });
    if md.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(|e| e.to_string())?;
        let same = matches!(writer.tree().get(root, rel).map(|e| &e.node),
            Some(Node::Symlink { target: t, .. }) if t.as_slice() == target.as_os_str().as_bytes());
        if same {
            return Ok(None);
        }
        writer
            .put_symlink(now, root, rel, &meta, target.as_os_str().as_bytes())
            .map_err(err)?;
        return Ok(Some(0));
    }
    if md.is_dir() {
        if unchanged {
            return Ok(None);
        }
        writer.put_dir(now, root, rel, &meta).map_err(err)?;
        return Ok(Some(0));
    }
    if md.nlink() > 1 {
        if let Some(first) = inodes.get(&(md.dev(), md.ino())) {
            writer.put_hardlink(now, root, rel, first).map_err(err)?;
            return Ok(Some(0));
        }
        inodes.insert((md.dev(), md.ino()), rel.to_vec());
    }
    if unchanged {
        return Ok(None);
    }
    let mut file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let outcome = writer
        .put_file(now, root, rel, &meta, &mut file)
        .map_err(err)?;
    Ok(Some(outcome.bytes_read))
}
