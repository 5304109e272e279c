//! `--restore-from`: the state a diffkeeper store recorded, written into the (empty) state
//! directory before the app starts. The store's plan is checked whole before anything is
//! written: a hostile or damaged store is refused and leaves the directory as it was.

use diffkeeper_store::{ExportReport, StoreError, StoreReader};

use crate::config::Restore;

pub fn run(restore: &Restore) -> Result<ExportReport, StoreError> {
    if never_written(&restore.store) {
        // A pod's first start: its new volume holds no store yet, so there is nothing to bring
        // back (a directory with anything else in it is still opened, and refused if foreign).
        log::info!(
            "restore: {} holds no store yet (nothing recorded so far): nothing to restore",
            restore.store.display()
        );
        return Ok(ExportReport::default());
    }
    let reader = StoreReader::open(&restore.store)?;
    if let Some(bytes) = reader.torn_tail {
        log::info!(
            "restore: {}: an unfinished last record ({bytes} bytes) is ignored",
            restore.store.display()
        );
    }
    let at = restore.at_ns.unwrap_or(u64::MAX);
    let report = reader.restore_into(at, &restore.target, restore.overwrite)?;
    log::info!(
        "restore: {} files ({} bytes), {} hard links, {} symlinks, {} directories from {} into {}",
        report.files,
        report.bytes,
        report.hardlinks,
        report.symlinks,
        report.dirs,
        restore.store.display(),
        restore.target.display()
    );
    if report.shadowed > 0 {
        log::info!(
            "restore: left out {} entries an outer root recorded where a root inside it lies \
             (that root's own entries are restored there)",
            report.shadowed
        );
    }
    Ok(report)
}

/// A directory with nothing in it but a file system's `lost+found` (a new volume's root).
fn never_written(store: &std::path::Path) -> bool {
    std::fs::read_dir(store).is_ok_and(|entries| {
        entries
            .flatten()
            .all(|entry| entry.file_name() == "lost+found")
    })
}
