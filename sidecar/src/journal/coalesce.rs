//! Coalescing: writes by one process to one path within the window become one line with a
//! count; any other change to that path first releases what is held, so order per path is kept.
//! A rename or delete also releases what is held below the path (it may be a directory).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::change::Change;

/// Held-back writes, one per path, released when their window closes (in the order their
/// windows opened) or when the path sees another kind of change.
pub(super) struct Coalescer {
    window: Duration,
    /// Keyed by path; the held change's own `path` is empty meanwhile (moved into the key).
    held: HashMap<PathBuf, Held>,
    /// Window deadlines in opening order (the window length is fixed, so this is also deadline
    /// order). Entries whose `seq` no longer matches `held` were released early: skipped.
    deadlines: VecDeque<(Instant, u64, PathBuf)>,
    next_seq: u64,
}

struct Held {
    change: Change,
    count: u64,
    seq: u64,
}

impl Coalescer {
    pub(super) fn new(window: Duration) -> Self {
        Self {
            window,
            held: HashMap::new(),
            deadlines: VecDeque::new(),
            next_seq: 0,
        }
    }

    pub(super) fn is_off(&self) -> bool {
        self.window.is_zero()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Merges a write into the one held for its path, or holds it. Returns a held write that
    /// had to be released first (same path, different writer).
    pub(super) fn add_write(&mut self, mut change: Change, now: Instant) -> Option<(Change, u64)> {
        let seq = self.next_seq;
        let deadline = now + self.window;
        // Look up by reference first: merging, the common case, allocates nothing.
        let released = match self.held.get_mut(&change.path) {
            Some(held) if held.change.pid == change.pid => {
                held.count += 1;
                held.change.bytes = match (held.change.bytes, change.bytes) {
                    (Some(a), Some(b)) => Some(a.saturating_add(b)),
                    (a, b) => a.or(b),
                };
                return None;
            }
            // Another process wrote: keep pid/comm truthful by starting a new window.
            Some(held) => {
                let path = std::mem::take(&mut change.path);
                let mut old = std::mem::replace(
                    held,
                    Held {
                        change,
                        count: 1,
                        seq,
                    },
                );
                self.deadlines.push_back((deadline, seq, path.clone()));
                old.change.path = path;
                Some((old.change, old.count))
            }
            None => {
                // The path moves into the key; `take` puts it back.
                let path = std::mem::take(&mut change.path);
                self.deadlines.push_back((deadline, seq, path.clone()));
                self.held.insert(
                    path,
                    Held {
                        change,
                        count: 1,
                        seq,
                    },
                );
                None
            }
        };
        self.next_seq += 1;
        released
    }

    /// Takes what is held for `dir` itself and for every path below it (`dir/...`), in the
    /// order their windows opened: a rename or delete of a directory must come after the
    /// writes to files under it, as it did in the kernel.
    pub(super) fn take_under(&mut self, dir: &Path) -> Vec<(Change, u64)> {
        // Path::starts_with compares whole components: `dir` itself or `dir/...`.
        let mut under: Vec<(u64, PathBuf)> = self
            .held
            .iter()
            .filter(|(path, _)| path.starts_with(dir))
            .map(|(path, held)| (held.seq, path.clone()))
            .collect();
        under.sort_unstable();
        under
            .into_iter()
            .filter_map(|(_, path)| self.take(&path))
            .collect()
    }

    pub(super) fn take(&mut self, path: &Path) -> Option<(Change, u64)> {
        self.held.remove_entry(path).map(|(path, mut held)| {
            held.change.path = path;
            (held.change, held.count)
        })
    }

    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_released();
        self.deadlines.front().map(|(deadline, _, _)| *deadline)
    }

    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Change, u64)> {
        match self.next_deadline() {
            Some(deadline) if deadline <= now => self.pop_any(),
            _ => None,
        }
    }

    pub(super) fn pop_any(&mut self) -> Option<(Change, u64)> {
        self.skip_released();
        let (_, _, path) = self.deadlines.pop_front()?;
        self.take(&path)
    }

    fn skip_released(&mut self) {
        while let Some((_, seq, path)) = self.deadlines.front() {
            if self.held.get(path).is_some_and(|h| h.seq == *seq) {
                return;
            }
            self.deadlines.pop_front();
        }
    }
}
