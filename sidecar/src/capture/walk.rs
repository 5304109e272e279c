//! Every path below a directory, depth first, without following symlinks.

use std::path::Path;

/// Calls `found` with each path below `dir` (not `dir` itself), parents before children.
/// A directory that cannot be listed is logged and skipped (its own entry was still given).
pub fn walk(dir: &Path, found: &mut dyn FnMut(&Path)) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // Gone meanwhile, or not a directory: nothing below it.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::ENOENT | nix::libc::ENOTDIR)
            ) =>
        {
            return
        }
        Err(e) => {
            log::warn!(
                "capture: cannot list {}: {e}; what is below it is not recorded",
                dir.display()
            );
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        found(&path);
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&path, found);
        }
    }
}
