//! The journal: one JSON line per change (schema: docs/sidecar.md, "Journal"), written by a single thread that
//! also coalesces bursts of writes to one path.
//!
//! This is the hot path (eBPF can deliver millions of events per second), so a line is built in
//! a reused buffer with hand-written JSON, the date part of the timestamp is cached per second,
//! and output goes through a large buffer that is flushed whenever the queue runs empty.

//!
//! * this file: the output (stdout or an appended file) and the thread that drives it;
//! * [`coalesce`]: holding back bursts of writes to one path;
//! * [`line`]: one change as one JSON line;
//! * [`placement`]: where the journal file really lands, checked against the watched roots.
//!
//! With `--store`, each line written is also handed to capture (after coalescing, so content
//! is read once the writes settled), and capture's notes come back as lines of their own.

mod coalesce;
mod line;
pub mod placement;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::Feed;
use crate::change::{Change, Op};
use crate::metrics::Metrics;
use coalesce::Coalescer;
use line::LineBuilder;

/// `--journal -`: the journal goes to stdout.
pub const STDOUT: &str = "-";

const OUTPUT_BUFFER_BYTES: usize = 64 * 1024;

/// Opens the journal target: stdout for `-`, else the file in append mode (created if absent).
pub fn open(target: &Path) -> io::Result<Box<dyn Write + Send>> {
    if target.as_os_str() == STDOUT {
        return Ok(Box::new(io::stdout()));
    }
    let file: File = OpenOptions::new().create(true).append(true).open(target)?;
    Ok(Box::new(file))
}

/// Writes every change received on `rx` until all senders are gone, then emits what is still
/// being coalesced and flushes. Events are counted in `metrics` before coalescing.
pub fn run(
    out: Box<dyn Write + Send>,
    coalesce: Duration,
    metrics: Arc<Metrics>,
    rx: Receiver<Change>,
    capture: Option<Feed>,
) -> io::Result<()> {
    let mut journal = Journal::new(out, coalesce);
    journal.capture = capture;
    loop {
        let change = match rx.try_recv() {
            Ok(change) => change,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                // Idle: emit what is due, flush, then sleep until a change or the next deadline.
                journal.emit_due(Instant::now())?;
                journal.write_notes()?;
                journal.out.flush()?;
                let deadline = match (journal.coalescer.next_deadline(), &journal.capture) {
                    (deadline, None) => deadline,
                    // Capture's notes are picked up at least this often.
                    (deadline, Some(_)) => {
                        let poll = Instant::now() + NOTE_POLL;
                        Some(deadline.map_or(poll, |d| d.min(poll)))
                    }
                };
                let received = match deadline {
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some(deadline) => {
                        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    }
                };
                journal.set_clock(Instant::now());
                match received {
                    Ok(change) => change,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        metrics.count_event(change.backend, change.op);
        journal.push(change)?;
    }
    journal.finish()
}

/// How often an idle journal looks for capture's notes.
const NOTE_POLL: Duration = Duration::from_millis(50);

/// Line formatting plus coalescing, independent of where changes come from (unit-testable).
pub struct Journal {
    out: BufWriter<Box<dyn Write + Send>>,
    line: LineBuilder,
    coalescer: Coalescer,
    /// Reading the clock costs as much as formatting a line, so a busy journal reads it only
    /// every [`CLOCK_EVERY`] changes (and [`run`] refreshes it whenever it wakes up).
    clock: Instant,
    since_clock: u32,
    /// `--store`: where each written line goes after the journal.
    capture: Option<Feed>,
}

const CLOCK_EVERY: u32 = 64;

impl Journal {
    pub fn new(out: Box<dyn Write + Send>, coalesce: Duration) -> Self {
        Self {
            out: BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, out),
            line: LineBuilder::default(),
            coalescer: Coalescer::new(coalesce),
            clock: Instant::now(),
            since_clock: 0,
            capture: None,
        }
    }

    /// Sets the time used for coalescing windows (after the caller waited, the cached one is old).
    pub fn set_clock(&mut self, now: Instant) {
        self.clock = now;
        self.since_clock = 0;
    }

    /// Takes one change: a write may be held back to be merged with the next ones to its path;
    /// anything else first releases what is held for the paths it touches, keeping their order.
    pub fn push(&mut self, change: Change) -> io::Result<()> {
        if self.coalescer.is_off() {
            return self.write(&change, 1);
        }
        self.since_clock += 1;
        if self.since_clock >= CLOCK_EVERY {
            self.set_clock(Instant::now());
            // A journal that is never idle still writes capture's notes.
            self.write_notes()?;
        }
        self.push_at(change, self.clock)
    }

    fn push_at(&mut self, change: Change, now: Instant) -> io::Result<()> {
        if self.coalescer.is_off() {
            return self.write(&change, 1);
        }
        if !self.coalescer.is_empty() {
            self.emit_due(now)?;
        }
        if change.op == Op::Write {
            if let Some((earlier, count)) = self.coalescer.add_write(change, now) {
                self.write(&earlier, count)?;
            }
            return Ok(());
        }
        // A rename or delete may be of a directory: what is held below it goes first (else a
        // held `write d/f` would follow `rename d -> e`, naming a path that no longer exists).
        // A create cannot have anything below it yet that is not already released by the
        // delete or rename before it.
        let subtree = matches!(change.op, Op::Rename | Op::Delete | Op::Rmdir);
        for path in std::iter::once(&change.path).chain(change.from.as_ref()) {
            if subtree {
                for (held, count) in self.coalescer.take_under(path) {
                    self.write(&held, count)?;
                }
            } else if let Some((held, count)) = self.coalescer.take(path) {
                self.write(&held, count)?;
            }
        }
        self.write(&change, 1)
    }

    /// Emits the coalesced writes whose window has closed by `now`.
    pub fn emit_due(&mut self, now: Instant) -> io::Result<()> {
        while let Some((change, count)) = self.coalescer.pop_due(now) {
            self.write(&change, count)?;
        }
        Ok(())
    }

    /// Emits everything still held and flushes.
    pub fn finish(mut self) -> io::Result<()> {
        while let Some((change, count)) = self.coalescer.pop_any() {
            self.write(&change, count)?;
        }
        self.write_notes()?;
        self.out.flush()
    }

    fn write(&mut self, change: &Change, count: u64) -> io::Result<()> {
        self.out.write_all(self.line.build(change, count))?;
        if let Some(feed) = &mut self.capture {
            if let Some(note) = feed.offer(change) {
                self.out.write_all(self.line.build_note(&note))?;
            }
        }
        Ok(())
    }

    /// Writes the notes capture sent since the last call.
    fn write_notes(&mut self) -> io::Result<()> {
        let Some(feed) = &self.capture else {
            return Ok(());
        };
        while let Ok(note) = feed.notes.try_recv() {
            self.out.write_all(self.line.build_note(&note))?;
        }
        Ok(())
    }
}
