//! notify's side: runs on notify's thread, queues the events the journal needs, never waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{EventKind, ModifyKind};
use notify::{Event, EventHandler};

use super::Msg;
use crate::metrics::Metrics;

/// The most often a full queue is logged while running (every drop is counted in /metrics).
const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Runs on notify's thread: queues the events the journal needs and never waits, so that
/// notify keeps reading inotify (and answering our watch requests) whatever the journal does.
pub(super) struct Handler {
    pub(super) events: SyncSender<Msg>,
    pub(super) metrics: Arc<Metrics>,
    /// Dropped events the translator has not journaled as a gap yet.
    pub(super) behind: Arc<AtomicU64>,
    pub(super) warned_at: Option<Instant>,
}

impl EventHandler for Handler {
    fn handle_event(&mut self, event: notify::Result<Event>) {
        if event.as_ref().is_ok_and(|e| !journaled(e)) {
            return;
        }
        match self.events.try_send(Msg::Notify(event)) {
            // Disconnected: the translator has stopped; nothing wants events any more.
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                let total = self.metrics.count_inotify_dropped(1);
                self.behind.fetch_add(1, Ordering::Relaxed);
                if self
                    .warned_at
                    .is_none_or(|at| at.elapsed() >= DROP_WARNING_EVERY)
                {
                    self.warned_at = Some(Instant::now());
                    log::warn!(
                        "inotify: dropped an event ({total} so far): the translator is behind \
                         (scanning new directories, or the journal does not keep up); \
                         journaled as a gap and repaired from a rescan"
                    );
                }
            }
        }
    }
}

/// Whether the translator does anything with `event` (opens and closes are most of inotify's
/// traffic and are not part of the journal).
fn journaled(event: &Event) -> bool {
    match event.kind {
        EventKind::Create(_)
        | EventKind::Remove(_)
        | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Metadata(_)) => {
            true
        }
        EventKind::Other => event.attrs.flag() == Some(notify::event::Flag::Rescan),
        _ => false,
    }
}
