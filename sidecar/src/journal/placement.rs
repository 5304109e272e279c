//! Where the journal file will really be, checked before it is opened: a journal under a
//! watched directory would report its own lines, each of which is a new change to report.
//!
//! The path is resolved the way `open(O_CREAT)` will: symbolic links are followed, chains and
//! relative targets included, and a link whose target does not exist yet (a dangling link)
//! leads to the file open would create there. The directory the file lands in, and each of its
//! ancestors, are then compared with the watched roots by device and inode, so another path to
//! a watched directory (a bind mount) is caught as well as a link.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Links followed at most, as the kernel does (`MAXSYMLINKS`): past this, open fails (ELOOP).
const MAX_LINKS: usize = 40;

/// A journal that would land inside a watched directory.
#[derive(Debug, PartialEq, Eq)]
pub struct InsideRoot {
    /// Where the file is (or would be created), every link resolved.
    pub resolved: PathBuf,
    /// The watched directory it is under, as given in `roots`.
    pub root: PathBuf,
}

/// `Err` when `journal` resolves to a file below one of `roots`. A path that cannot be
/// resolved (a missing directory, a link loop) passes: opening it fails next, with its own
/// message.
pub fn check(journal: &Path, roots: &[PathBuf]) -> Result<(), InsideRoot> {
    let Some(resolved) = resolve_like_open(journal) else {
        return Ok(());
    };
    let identity = |path: &Path| fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let root_ids: Vec<_> = roots.iter().map(|root| identity(root)).collect();
    // The file's own directory first, then up to `/`.
    for dir in resolved.ancestors().skip(1) {
        let Some(id) = identity(dir) else { continue };
        if let Some(i) = root_ids.iter().position(|root| *root == Some(id)) {
            return Err(InsideRoot {
                resolved,
                root: roots[i].clone(),
            });
        }
    }
    Ok(())
}

/// The canonical path of the file `open(path, O_CREAT)` would open or create; `None` when open
/// would fail (a directory on the way is missing, too many links).
pub fn resolve_like_open(path: &Path) -> Option<PathBuf> {
    let mut path = path.to_owned();
    for _ in 0..=MAX_LINKS {
        if let Ok(existing) = path.canonicalize() {
            return Some(existing);
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        match fs::read_link(&path) {
            // A dangling link: open follows it (a relative target is relative to the link's
            // directory; an absolute one replaces the path).
            Ok(target) => path = parent.join(target),
            // Not a link, so the file open would create.
            Err(_) => return Some(parent.canonicalize().ok()?.join(path.file_name()?)),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn scratch(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dk-placement-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("state/sub")).unwrap();
        dir.canonicalize().unwrap()
    }

    #[test]
    fn dangling_links_chains_and_relative_targets_resolve_as_open_would() {
        let dir = scratch("resolve");
        let state = dir.join("state");
        let roots = [state.clone()];
        // Absolute, dangling.
        symlink(state.join("journal.jsonl"), dir.join("abs")).unwrap();
        // A chain of relative links ending in a dangling one below the root.
        symlink("state/sub/../j2", dir.join("rel")).unwrap();
        symlink("rel", dir.join("chain")).unwrap();
        // A loop: open fails with ELOOP, nothing to refuse.
        symlink("loop-b", dir.join("loop-a")).unwrap();
        symlink("loop-a", dir.join("loop-b")).unwrap();
        let inside = |name: &str, file: &str| {
            assert_eq!(
                check(&dir.join(name), &roots),
                Err(InsideRoot {
                    resolved: state.join(file),
                    root: state.clone()
                }),
                "{name}"
            );
        };
        inside("abs", "journal.jsonl");
        inside("rel", "j2");
        inside("chain", "j2");
        inside("state/sub/new.jsonl", "sub/new.jsonl");
        assert_eq!(resolve_like_open(&dir.join("loop-a")), None);
        assert_eq!(check(&dir.join("loop-a"), &roots), Ok(()));
        assert_eq!(check(&dir.join("outside.jsonl"), &roots), Ok(()));
        assert_eq!(check(&dir.join("missing/j.jsonl"), &roots), Ok(()));
        // A dangling link out of the root: fine.
        symlink(dir.join("elsewhere.jsonl"), state.join("out")).unwrap();
        assert_eq!(check(&state.join("out"), &roots), Ok(()));
        fs::remove_dir_all(&dir).unwrap();
    }
}
