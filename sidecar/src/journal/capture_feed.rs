//! `--store`: the journal's side of capture. Each change line written (backend or repair) is
//! handed to capture after coalescing, so content is read once the writes settled; a gap asks
//! capture to rescan what it may have missed; capture's notes come back as `"op":"capture"`
//! lines. A note is numbered like any other line but is not a change to the tree: it never
//! enters the repair index or the consistency check.

use std::io;
use std::time::{Duration, Instant};

use super::Journal;
use crate::change::Change;

/// How often an idle journal looks for capture's notes.
const NOTE_POLL: Duration = Duration::from_millis(50);

impl Journal {
    /// Queues a written change for capture; a full queue is said as a note line right after.
    pub(super) fn offer_to_capture(&mut self, change: &Change) -> io::Result<()> {
        let Some(feed) = &mut self.capture else {
            return Ok(());
        };
        match feed.offer(change) {
            Some(note) => self.write_note(&note),
            None => Ok(()),
        }
    }

    /// Changes were lost: capture records the watched directories again (what it already
    /// holds unchanged is skipped by its fingerprint).
    pub(super) fn capture_rescan(&self) {
        if let Some(feed) = &self.capture {
            feed.rescan();
        }
    }

    /// Writes the notes capture sent since the last call.
    pub(super) fn write_notes(&mut self) -> io::Result<()> {
        let Some(feed) = &self.capture else {
            return Ok(());
        };
        let notes: Vec<_> = feed.notes.try_iter().collect();
        for note in &notes {
            self.write_note(note)?;
        }
        Ok(())
    }

    /// When an idle journal must wake up to look for notes (`None` without capture).
    pub(super) fn next_note_poll(&self, now: Instant) -> Option<Instant> {
        self.capture.as_ref().map(|_| now + NOTE_POLL)
    }

    /// One note line. It carries the last journaled `ts` (like gap and repair lines: it stands
    /// where it was journaled, and `ts` never decreases); the time capture noticed is logged.
    fn write_note(&mut self, note: &crate::capture::note::Note) -> io::Result<()> {
        let ts = *self.last_ts.get_or_insert(note.ts);
        let seq = self.take_seq();
        self.line.build_note(seq, ts, note);
        self.spill()
    }
}
