//! Recovering from a kernel queue overflow (`IN_Q_OVERFLOW`: events were lost).
//!
//! The journal repairs a gap from a rescan. Events the kernel queued before that rescan would,
//! journaled after its repair lines, describe the tree as it was before them (a directory the
//! repair already moved, renamed again on top of a newer one of its name). So the events queued
//! when the overflow is read are discarded (the rescan covers them), the gap is handed over
//! with a fence (the translator waits until the journal has written the repair), and when
//! events were queued while it waited, those are older than the rescan's end too: discarded,
//! and one more gap and rescan covers them. Reading goes on once a rescan ends with nothing
//! queued, or after [`FENCED_ROUNDS_MAX`] rounds under a steady stream of changes (then the
//! events of the last round are kept: a reader may see a change twice).
//!
//! The watch map is rebuilt from a walk before each rescan (after the discard): renames and new
//! directories were among the lost events.

use std::time::Duration;

use super::translate::Translator;
use crate::change::GapReason;

/// Rescans in a row after one overflow, at most.
const FENCED_ROUNDS_MAX: usize = 8;
/// How long the translator waits for the journal to write a repair (a rescan of the roots).
const FENCE_WAIT: Duration = Duration::from_secs(10);

impl Translator {
    pub(super) fn recover_from_overflow(&mut self) {
        let total = self.metrics.count_inotify_overflow();
        log::warn!(
            "inotify event queue overflowed ({total} so far): changes were lost; journaled a \
             gap and the repair from a rescan (raise fs.inotify.max_queued_events to make this \
             rarer)"
        );
        if self.stopping() {
            // Only handing over what is queued: the journal's rescan at stop repairs the rest.
            self.gap(GapReason::InotifyOverflow, self.roots.clone(), None);
            return;
        }
        for _ in 0..FENCED_ROUNDS_MAX {
            // What waits for its pair goes first: the rescan tells where it went.
            self.expire_unpaired_moves(None);
            self.scanned.clear();
            // Discarded before the walk, not after: a directory moved in between the walk and
            // the discard would lose its event, be found by the rescan and stay unwatched.
            // What is queued after the discard is either seen by the walk and the rescan, and
            // still queued after the fence (one more round), or read as usual.
            self.discard_queued();
            if let Err(e) = self.watches.rebuild(&self.roots.clone()) {
                let root = self.roots.first().cloned().unwrap_or_default();
                self.watch_failed(&root, &e);
            }
            self.gap(GapReason::InotifyOverflow, self.roots.clone(), None);
            if self.stopping() {
                return;
            }
            if !self.delivery.fence(FENCE_WAIT) {
                log::warn!(
                    "inotify: the journal did not write the repair within {} s; reading on",
                    FENCE_WAIT.as_secs()
                );
                return;
            }
            if !self.readable(Duration::ZERO) {
                return;
            }
        }
        log::debug!(
            "inotify: changes went on through {FENCED_ROUNDS_MAX} rescans after an overflow; \
             reading on (a change may be journaled twice)"
        );
    }

    /// Reads and drops what the kernel queued up to now.
    fn discard_queued(&mut self) {
        while !self.read().is_empty() {}
    }
}
