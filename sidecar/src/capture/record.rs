//! Recording one path, as the capture thread does for each job: its type from lstat, a file's
//! content once it settled (read again if it changed while read, deferred if it keeps
//! changing), tombstones, moves, hard links, and the rescan that follows any loss.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::note::{tell, Content, Note};
use super::read::{look, Found, Skip};
use super::state::{is_within, moved_to, Fingerprint};
use super::walk::walk;
use super::worker::{changed_while_read, place, Worker};

/// Reads of a file that changed while read (or is being written), before it is deferred by
/// the capture interval.
const READ_ATTEMPTS: u32 = 4;
/// Pause between two reads of a changing file: a short write burst ends meanwhile.
const REREAD_PAUSE: Duration = Duration::from_millis(5);

impl Worker {
    pub(super) fn delete(&mut self, path: &Path) {
        self.deferred.retain(|p, _| !is_within(p, path));
        self.told_deferred.retain(|p| !is_within(p, path));
        self.told_skipped.retain(|p| !is_within(p, path));
        if self.known.get(path).is_none() && self.known.paths_under(path).is_empty() {
            return;
        }
        let ts = self.now();
        let Some((root, rel)) = place(&self.roots, path) else {
            return;
        };
        let result = self.store.delete(ts, root, rel);
        if self.check(result, Some(path)) {
            self.known.remove_under(path);
        }
    }

    pub(super) fn rename(&mut self, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, Instant)> = self
            .deferred
            .iter()
            .filter(|(p, _)| is_within(p, from))
            .map(|(p, due)| (moved_to(p, from, to), *due))
            .collect();
        self.deferred.retain(|p, _| !is_within(p, from));
        self.deferred.extend(moved);
        let ts = self.now();
        let from_at = place(&self.roots, from).filter(|_| self.known.get(from).is_some());
        match (from_at, place(&self.roots, to)) {
            // Both names in one root and the old one recorded: a move in the store.
            (Some((from_root, from_rel)), Some((to_root, to_rel))) if from_root == to_root => {
                let result = self.store.rename(ts, from_root, from_rel, to_rel);
                if self.check(result, Some(to)) {
                    self.known.rename(from, to);
                }
            }
            // From another root, from outside, or from a name never recorded: what arrived.
            (_, Some(_)) => {
                self.delete(from);
                self.capture_tree(to);
            }
            // Moved out of every watched directory: gone from here.
            (_, None) => self.delete(from),
        }
    }

    pub(super) fn attrib(&mut self, path: &Path) {
        let Ok(metadata) = std::fs::symlink_metadata(path) else {
            return self.capture(path);
        };
        let now = Fingerprint::of(&metadata);
        match self.known.get(path) {
            Some(recorded) if recorded.same_content(&now) => {
                let ts = self.now();
                let meta = diffkeeper_store::Meta::from_metadata(&metadata);
                let Some((root, rel)) = place(&self.roots, path) else {
                    return;
                };
                let result = self.store.attrib(ts, root, rel, &meta);
                if self.check(result, Some(path)) {
                    self.known.insert(path, now);
                }
            }
            _ => self.capture(path),
        }
    }

    /// `path` and everything below it.
    fn capture_tree(&mut self, path: &Path) {
        let mut paths = vec![path.to_path_buf()];
        walk(path, &mut |p| paths.push(p.to_path_buf()));
        for p in paths {
            self.capture(&p);
        }
    }

    /// Records `path` as it is now, at most once per `--capture-interval-ms`.
    pub(super) fn capture(&mut self, path: &Path) {
        if place(&self.roots, path).is_none() || self.halted() {
            return;
        }
        if let Some(glob) = self.settings.excludes.matching(path) {
            let skip = Skip::Excluded {
                glob: glob.to_string(),
            };
            return self.skipped(path, skip);
        }
        let now = Instant::now();
        if let Some(last) = self.last_read.get(path) {
            let due = *last + self.settings.interval;
            if now < due {
                if self.deferred.insert(path.to_path_buf(), due).is_none() {
                    self.stats.deferred();
                    log::debug!(
                        "capture: {} changes faster than --capture-interval-ms={}: recorded again at most once per interval",
                        path.display(),
                        self.settings.interval.as_millis()
                    );
                }
                return;
            }
        }
        self.last_read.insert(path.to_path_buf(), now);
        for _ in 0..READ_ATTEMPTS {
            match self.record(path) {
                Ok(()) => return,
                Err(Retry(pause)) => std::thread::sleep(pause),
            }
        }
        // Changed during every read: never stored torn; read again after the interval.
        let due = Instant::now() + self.settings.interval;
        if self.deferred.insert(path.to_path_buf(), due).is_none() {
            self.stats.deferred();
        }
        // Said once per run of put-offs (a file always being written would say it each time).
        if self.told_deferred.insert(path.to_path_buf()) {
            tell(
                &self.notes,
                Note::new(
                    Some(path),
                    Content::Deferred,
                    format!(
                        "it was being written at each of {READ_ATTEMPTS} attempts to read it; read again in {} ms (--capture-interval-ms)",
                        self.settings.interval.as_millis()
                    ),
                ),
            );
        }
    }

    /// One attempt at recording `path`; `Err(Retry)` when it changed while being read.
    fn record(&mut self, path: &Path) -> Result<(), Retry> {
        // Put off before as never quiet: read it without waiting for a pause this time.
        let quiet = !self.told_deferred.contains(path);
        let found = match look(path, self.settings.max_file_bytes, quiet) {
            Ok(found) => found,
            Err(e) => {
                self.stats.failed();
                tell(
                    &self.notes,
                    Note::new(Some(path), Content::Lost, format!("cannot read it: {e}")),
                );
                return Ok(());
            }
        };
        let ts = self.now();
        let Some((root, rel)) = place(&self.roots, path) else {
            return Ok(());
        };
        let was_known = self.known.get(path).copied();
        let (result, fingerprint) = match found {
            Found::File {
                meta,
                fingerprint,
                mut reader,
            } => {
                // A new name of a recorded inode (`ln`): the same content, nothing to read.
                let linked = (was_known.is_none() && fingerprint.nlink > 1)
                    .then(|| self.known.other_links(path, &fingerprint))
                    .and_then(|others| {
                        others.into_iter().find(|o| {
                            self.known
                                .get(o)
                                .is_some_and(|f| f.same_content(&fingerprint))
                                && place(&self.roots, o).is_some_and(|(r, _)| r == root)
                        })
                    });
                let result = match &linked {
                    Some(existing) => {
                        let existing_rel =
                            place(&self.roots, existing).map_or(&b""[..], |(_, r)| r);
                        self.store.put_hardlink(ts, root, rel, existing_rel)
                    }
                    None => self.store.put_file(ts, root, rel, &meta, &mut reader),
                };
                if let Err(e) = &result {
                    if changed_while_read(e) {
                        return Err(Retry(REREAD_PAUSE));
                    }
                }
                (result, fingerprint)
            }
            Found::Dir { meta, fingerprint } => {
                (self.store.put_dir(ts, root, rel, &meta), fingerprint)
            }
            Found::Symlink {
                meta,
                fingerprint,
                target,
            } => {
                use std::os::unix::ffi::OsStrExt;
                let target = target.as_os_str().as_bytes();
                (
                    self.store.put_symlink(ts, root, rel, &meta, target),
                    fingerprint,
                )
            }
            // Deleted or renamed away, reported or not: no longer here.
            Found::Gone => {
                self.delete(path);
                return Ok(());
            }
            Found::Skipped(skip) => {
                self.skipped(path, skip);
                return Ok(());
            }
            Found::Replaced => return Err(Retry(REREAD_PAUSE)),
            Found::Busy(wait) => return Err(Retry(wait)),
        };
        if !self.check(result, Some(path)) {
            return Ok(());
        }
        if quiet {
            // Quiet again: a later run of put-offs is said again.
            self.told_deferred.remove(path);
        }
        self.stats.recorded();
        self.known.insert(path, fingerprint);
        if fingerprint.is_file() && fingerprint.nlink > 1 {
            self.relink(path, &fingerprint);
        }
        if fingerprint.is_dir() && was_known.is_none() {
            // A directory may arrive with content (moved in, `cp -r`) reported only once.
            let mut below = Vec::new();
            walk(path, &mut |p| below.push(p.to_path_buf()));
            for p in below {
                if self.known.get(&p).is_none() {
                    self.capture(&p);
                }
            }
        }
        Ok(())
    }

    /// A write goes through one name of a hard-linked file: its other recorded names (in the
    /// same root) now hold the same content.
    fn relink(&mut self, path: &Path, fingerprint: &Fingerprint) {
        let Some((root, rel)) = place(&self.roots, path) else {
            return;
        };
        let (root, rel) = (root.to_string(), rel.to_vec());
        let ts = self.now();
        for other in self.known.other_links(path, fingerprint) {
            if self.known.get(&other) == Some(fingerprint) {
                continue;
            }
            let Some((other_root, other_rel)) = place(&self.roots, &other) else {
                continue;
            };
            if other_root != root {
                continue;
            }
            let result = self.store.put_hardlink(ts, &root, other_rel, &rel);
            if self.check(result, Some(&other)) {
                self.known.insert(&other, *fingerprint);
            }
        }
    }

    fn skipped(&mut self, path: &Path, skip: Skip) {
        self.stats.skipped();
        if self.told_skipped.insert(path.to_path_buf()) {
            tell(
                &self.notes,
                Note::new(Some(path), Content::Skipped, skip.to_string()),
            );
        }
    }

    /// Records every watched path not recorded as it is now, and a tombstone for every
    /// recorded path that is gone. Returns how many paths were recorded.
    pub(super) fn rescan(&mut self) -> usize {
        self.stats.rescan();
        let mut recorded = 0;
        for root in self.roots.clone() {
            let mut seen = HashSet::new();
            let mut paths = Vec::new();
            walk(Path::new(&root), &mut |p| paths.push(p.to_path_buf()));
            for path in paths {
                let unchanged = std::fs::symlink_metadata(&path)
                    .is_ok_and(|m| self.known.get(&path) == Some(&Fingerprint::of(&m)));
                if !unchanged {
                    self.last_read.remove(&path);
                    self.capture(&path);
                    recorded += 1;
                    if self.halted() {
                        return recorded;
                    }
                }
                seen.insert(path);
            }
            for gone in self.known.paths_under(Path::new(&root)) {
                if !seen.contains(&gone) {
                    self.delete(&gone);
                }
            }
        }
        recorded
    }
}

/// The file changed while it was read, or is being written: read it again after this pause.
struct Retry(Duration);
