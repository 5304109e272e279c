//! From `--store` and its companion flags to a prepared capture: the store checked against the
//! watched directories, opened, and its counters shown by `/metrics`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::CaptureSettings;
use super::{prepare, CaptureError, CaptureStats, Feed, Prepared, Settings};
use crate::fatal::Fatal;
use crate::metrics::Metrics;

/// Checks the store's place, opens it, and registers capture's counters.
pub fn setup(
    settings: &CaptureSettings,
    roots: &[PathBuf],
    metrics: &Metrics,
) -> Result<(Prepared, Feed), Fatal> {
    refuse_overlap(&settings.store, roots)?;
    let roots = roots
        .iter()
        .map(|root| {
            root.to_str()
                .map(str::to_string)
                .ok_or_else(|| Fatal::Capture(CaptureError::RootNotUtf8 { root: root.clone() }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let stats = Arc::new(CaptureStats::default());
    metrics.set_capture(stats.clone());
    let worker_settings = Settings {
        max_file_bytes: settings.max_file_bytes,
        interval: settings.interval,
        sync_every: settings.sync,
        excludes: settings.excludes.clone(),
    };
    let max_store_bytes = (settings.max_store_bytes > 0).then_some(settings.max_store_bytes);
    prepare(
        settings.store.clone(),
        max_store_bytes,
        roots,
        worker_settings,
        stats,
    )
    .map_err(Fatal::Capture)
}

/// A store inside a watched directory would record its own writes, forever; a watched
/// directory inside the store would be changed by every record. Symlinks are resolved (the
/// store's, or its parent's when it does not exist yet).
fn refuse_overlap(store: &Path, roots: &[PathBuf]) -> Result<(), Fatal> {
    let resolved = store.canonicalize().ok().or_else(|| {
        let parent = match store.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Some(parent.canonicalize().ok()?.join(store.file_name()?))
    });
    let Some(resolved) = resolved else {
        // Its parent does not exist: creating the store fails next, with its own message.
        return Ok(());
    };
    match roots
        .iter()
        .find(|root| resolved.starts_with(root) || root.starts_with(&resolved))
    {
        Some(root) => Err(Fatal::StoreInStateDir {
            store: store.to_owned(),
            state_dir: root.clone(),
        }),
        None => Ok(()),
    }
}
