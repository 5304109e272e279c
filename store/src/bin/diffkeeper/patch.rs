//! `diff --patch`: a unified diff of a text file between two times.

use diffkeeper_store::{DiffEntry, DiffKind, Node, StoreReader, Tree};

use crate::Failure;

/// Text files larger than this are summarised, not diffed.
const MAX_PATCH_BYTES: u64 = 8 << 20;

/// The unified diff of `entry` between the states `from` and `to` (replayed once by the caller).
pub fn unified(
    reader: &StoreReader,
    entry: &DiffEntry,
    from: &Tree,
    to: &Tree,
    full: &str,
) -> Result<String, Failure> {
    if entry.kind == DiffKind::Attributes {
        return Ok(String::new());
    }
    let old = content(reader, entry, from)?;
    let new = content(reader, entry, to)?;
    let (Some(old), Some(new)) = (text(old), text(new)) else {
        return Ok(format!("Binary files (or over 8 MiB) differ: {full}\n"));
    };
    let diff = similar::TextDiff::from_lines(&old, &new);
    Ok(diff
        .unified_diff()
        .header(&format!("a{full}"), &format!("b{full}"))
        .to_string())
}

/// The file's bytes at `at`; empty when it was absent or not a file (so adds and deletes diff
/// against nothing). `None` when it is too big to diff.
fn content(
    reader: &StoreReader,
    entry: &DiffEntry,
    tree: &Tree,
) -> Result<Option<Vec<u8>>, Failure> {
    match tree.get(&entry.root, &entry.path).map(|e| &e.node) {
        Some(Node::File { meta, chunks, .. }) => {
            if meta.size > MAX_PATCH_BYTES {
                return Ok(None);
            }
            let mut bytes = Vec::new();
            reader.write_content(chunks, &mut bytes, &String::from_utf8_lossy(&entry.path))?;
            Ok(Some(bytes))
        }
        _ => Ok(Some(Vec::new())),
    }
}

fn text(bytes: Option<Vec<u8>>) -> Option<String> {
    let bytes = bytes?;
    if bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}
