//! Pruning to a size limit: the oldest file versions that are not the newest version of a live
//! path lose their content (their record stays, as "pruned"), then packs drop the chunks no
//! remaining version uses.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use crate::error::{Result, StoreError};
use crate::log::{read_all, LogWriter, LOG_NAME};
use crate::pack::Packs;
use crate::record::{Change, Hash};
use crate::tree::Tree;

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// (root, path, time in ns) of each version whose content was dropped.
    pub versions: Vec<(String, Vec<u8>, u64)>,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Prunes to 90 % of `max_bytes` (so the next few puts do not prune again).
pub fn prune(
    dir: &Path,
    log: &mut LogWriter,
    packs: &mut Packs,
    newest: &Tree,
    max_bytes: u64,
) -> Result<PruneReport> {
    let bytes_before = packs.total_bytes() + log.len();
    let target = max_bytes / 10 * 9;
    let log_path = dir.join(LOG_NAME);
    let mut file = File::open(&log_path).map_err(|e| StoreError::io(&log_path, e))?;
    let (mut records, _) = read_all(&mut file, &log_path)?;
    let live: HashSet<u64> = newest
        .entries
        .values()
        .filter_map(|e| e.node.link())
        .collect();
    let mut refs: HashMap<Hash, u32> = HashMap::new();
    for record in &records {
        if let Change::File { chunks, .. } = &record.change {
            for chunk in chunks {
                *refs.entry(chunk.hash).or_default() += 1;
            }
        }
    }
    // Chunks no version uses (left by a failed put) go first.
    let mut freed: u64 = packs
        .index
        .iter()
        .filter(|(h, _)| !refs.contains_key(*h))
        .map(|(_, l)| u64::from(l.stored_len))
        .sum();
    let mut report = PruneReport {
        bytes_before,
        ..PruneReport::default()
    };
    for (seq, record) in records.iter_mut().enumerate() {
        if bytes_before.saturating_sub(freed) <= target {
            break;
        }
        let Change::File { meta, chunks } = &record.change else {
            continue;
        };
        if live.contains(&(seq as u64)) {
            continue;
        }
        for chunk in chunks {
            if let Some(count) = refs.get_mut(&chunk.hash) {
                *count -= 1;
                if *count == 0 {
                    freed += packs
                        .index
                        .get(&chunk.hash)
                        .map_or(0, |l| u64::from(l.stored_len));
                }
            }
        }
        report
            .versions
            .push((record.root.clone(), record.path.clone(), record.ts_ns));
        record.change = Change::PrunedFile { meta: *meta };
    }
    if !report.versions.is_empty() {
        log.rewrite(dir, &records)?;
    }
    let keep = |h: &Hash| refs.get(h).is_some_and(|&c| c > 0);
    let dead_packs: HashSet<u32> = packs
        .index
        .iter()
        .filter(|(h, _)| !keep(h))
        .map(|(_, l)| l.pack)
        .collect();
    for number in dead_packs {
        packs.rewrite(number, &keep)?;
    }
    report.bytes_after = packs.total_bytes() + log.len();
    if report.bytes_after > max_bytes {
        log::warn!(
            "store: {}: still {} bytes after pruning, over the {max_bytes}-byte limit: the newest versions alone exceed it",
            dir.display(),
            report.bytes_after
        );
    }
    log::info!(
        "store: pruned the content of {} old versions: {} -> {} bytes",
        report.versions.len(),
        report.bytes_before,
        report.bytes_after
    );
    Ok(report)
}
