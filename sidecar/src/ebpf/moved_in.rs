//! A directory moved into the roots from outside: the kernel side sees one rename whose source
//! lies outside (journaled as a `create`; tracepoint mode sends only the new name), which says
//! neither that it is a directory nor what it holds. A `create` whose path is a directory when
//! the event is read is therefore journaled as `mkdir`, followed by a `create`/`mkdir` line for
//! everything below it (parents first; nothing is followed through a symlink), as inotify does,
//! so a reader's replay holds what arrived. Any other `create` stays as it is.

use std::path::{Path, PathBuf};

use crate::change::{Change, Op};

/// The lines for `change`, the `create` a rename from outside the roots became.
pub(super) fn expand(change: Change) -> Vec<Change> {
    let is_dir = Path::new(&change.path)
        .symlink_metadata()
        .is_ok_and(|m| m.is_dir());
    if !is_dir {
        return vec![change];
    }
    let mut lines = vec![Change {
        op: Op::Mkdir,
        ..change.clone()
    }];
    let mut pending = vec![change.path.clone()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // gone meanwhile: its removal is an event of its own
        };
        let mut entries: Vec<(PathBuf, bool)> = entries
            .flatten()
            .filter_map(|entry| {
                let is_dir = entry.file_type().ok()?.is_dir();
                Some((entry.path(), is_dir))
            })
            .collect();
        entries.sort();
        for (path, is_dir) in entries {
            lines.push(Change {
                op: if is_dir { Op::Mkdir } else { Op::Create },
                path: path.clone(),
                bytes: None,
                ..change.clone()
            });
            if is_dir {
                pending.push(path);
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Backend, Family};

    #[test]
    fn a_directory_moved_in_is_a_mkdir_and_what_it_holds() {
        let root = std::env::temp_dir().join(format!("dk-moved-in-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("m/sub")).unwrap();
        std::fs::write(root.join("m/sub/f"), "x").unwrap();
        std::fs::write(root.join("file"), "x").unwrap();
        let moved = |path: &Path| Change {
            ts: std::time::SystemTime::now(),
            backend: Backend::Ebpf(Family::Kprobe),
            op: Op::Create,
            path: path.to_path_buf(),
            from: None,
            pid: Some(1),
            comm: Some("mv".into()),
            bytes: None,
            truncated: false,
        };
        let lines: Vec<String> = expand(moved(&root.join("m")))
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c.op.as_str(),
                    c.path.strip_prefix(&root).unwrap().display()
                )
            })
            .collect();
        assert_eq!(lines, ["mkdir m", "mkdir m/sub", "create m/sub/f"]);
        assert_eq!(expand(moved(&root.join("file"))).len(), 1);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
