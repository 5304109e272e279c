//! `--restore-from`: the state a diffkeeper store recorded, written into the (empty) state
//! directory before the app starts. The store's plan is checked whole before anything is
//! written: a hostile or damaged store is refused and leaves the directory as it was.

use diffkeeper_store::{ExportReport, StoreError, StoreReader};

use crate::config::Restore;

pub fn run(restore: &Restore) -> Result<ExportReport, StoreError> {
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
    Ok(report)
}
