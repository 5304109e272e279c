//! The journal: one JSON line per change (schema: docs/journal.md), written by a single thread
//! that also numbers the lines (`seq`), coalesces bursts of writes to one path, journals losses
//! as `gap` lines and repairs them from a rescan.
//!
//! This is the hot path (eBPF can deliver millions of events per second), so a line is built in
//! a reused buffer with hand-written JSON, the date part of the timestamp is cached per second,
//! and lines are built in place in a large output buffer that is written out when full and
//! whenever the queue runs empty.

//!
//! * this file: the output (stdout or an appended file) and the thread that drives it;
//! * [`resume`]: continuing a reopened file's `seq`;
//! * [`reorder`]: the window that puts records in timestamp order;
//! * [`coalesce`]: holding back bursts of writes to one path;
//! * [`line`]: one change (or gap) as one JSON line;
//! * [`index`] and [`repair`]: what the journal reported, and the rescan after a gap;
//! * [`consistency`]: a line that names what the journal never reported is repaired first.
//! * [`placement`]: where the journal file really lands, checked against the watched roots;
//! * [`capture_feed`]: with `--store`, each change line written (repair lines too) is handed to
//!   capture after coalescing, a gap asks capture to rescan, and capture's notes come back as
//!   `"op":"capture"` lines, numbered like any other.

mod capture_feed;
#[cfg(test)]
mod capture_feed_tests;
mod coalesce;
mod consistency;
#[cfg(test)]
mod gap_tests;
mod index;
mod line;
mod line_buf;
pub mod placement;
mod reorder;
mod repair;
mod resume;
#[cfg(test)]
mod test_fixture;
#[cfg(test)]
mod tests;

pub use index::DEFAULT_LIMIT as DEFAULT_INDEX_LIMIT;

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::capture::Feed;
use crate::change::{Backend, Change, ChangeQueue, Gap, GapReason, Op, Record};
use crate::delivery::PathReturn;
use crate::metrics::Metrics;
use coalesce::Coalescer;
use index::{Index, LimitReached};
use line::LineBuilder;
use reorder::Reorder;

/// `--journal -`: the journal goes to stdout.
pub const STDOUT: &str = "-";

/// Pending lines are written out once they reach this size (or when the journal idles).
const OUTPUT_BUFFER_BYTES: usize = 64 * 1024;

/// An opened journal target and the `seq` its next line gets.
pub struct Output {
    pub out: Box<dyn Write + Send>,
    pub next_seq: u64,
}

/// Opens the journal target: stdout for `-` (numbered from 1), else the file in append mode
/// (created if absent), numbered on from its last whole line (a torn last line is cut off); a
/// FIFO or device is numbered from 1.
pub fn open(target: &Path) -> io::Result<Output> {
    if target.as_os_str() == STDOUT {
        return Ok(Output {
            out: Box::new(io::stdout()),
            next_seq: 1,
        });
    }
    if target.metadata().is_ok_and(|m| !m.is_file()) {
        // A FIFO or a device: nothing to continue from (and reading it would take lines).
        let file = OpenOptions::new().append(true).open(target)?;
        return Ok(Output {
            out: Box::new(file),
            next_seq: 1,
        });
    }
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(target)?;
    let resumed = resume::resume(&mut file)?;
    if resumed.torn_bytes > 0 {
        log::warn!(
            "journal {}: cut off a torn last line ({} bytes, written when a previous run was \
             killed); continuing at seq {}",
            target.display(),
            resumed.torn_bytes,
            resumed.next_seq
        );
    }
    Ok(Output {
        out: Box::new(file),
        next_seq: resumed.next_seq,
    })
}

/// How the journal thread works.
pub struct Options {
    pub coalesce: Duration,
    /// The watched roots: scanned at start into the repair index, rescanned after a gap.
    pub roots: Vec<PathBuf>,
    /// The most entries the repair index holds (see [`index`]).
    pub index_limit: usize,
}

/// Writes every record received on `queue` until all senders are gone, then emits what is
/// still being coalesced, journals the changes dropped at stop as a last gap, and flushes.
/// Events are counted in `metrics` before coalescing.
pub fn run(
    output: Output,
    options: Options,
    metrics: Arc<Metrics>,
    queue: ChangeQueue,
    capture: Option<Feed>,
) -> io::Result<()> {
    let mut journal = Journal::new(output.out, options.coalesce)
        .starting_at(output.next_seq)
        .repairing(options.roots, options.index_limit, metrics.clone());
    journal.capture = capture;
    journal.path_return = Some(queue.path_return());
    journal.baseline()?;
    let rx = &queue.rx;
    let mut reorder = Reorder::new(reorder::WINDOW);
    let mut received: u64 = 0;
    loop {
        let mut batch = match rx.try_recv() {
            Ok(batch) => batch,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                // Idle: emit what is due, flush, then sleep until a change or the next deadline.
                let now = Instant::now();
                journal.emit_due(now)?;
                journal.release(&mut reorder, Some(now), &metrics)?;
                journal.write_notes()?;
                journal.flush()?;
                let deadline = [
                    journal.coalescer.next_deadline(),
                    reorder.next_deadline(),
                    journal.next_note_poll(now),
                ]
                .into_iter()
                .flatten()
                .min();
                let received = match deadline {
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some(deadline) => {
                        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    }
                };
                journal.set_clock(Instant::now());
                match received {
                    Ok(batch) => batch,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        for record in batch.drain(..) {
            // A busy journal never idles: the window's clock is read every CLOCK_EVERY records.
            received += 1;
            if received.is_multiple_of(u64::from(CLOCK_EVERY)) {
                journal.set_clock(Instant::now());
                // A journal that is never idle still writes capture's notes.
                journal.write_notes()?;
            }
            if let Record::Fence(fence) = record {
                // A backend waits for what it sent before (a gap's repair): all of it is
                // written now, without waiting out the reorder window.
                journal.release(&mut reorder, None, &metrics)?;
                journal.flush()?;
                fence.pass();
                continue;
            }
            reorder.push(record, journal.clock);
            journal.release(&mut reorder, Some(journal.clock), &metrics)?;
        }
        queue.recycle(batch);
    }
    journal.release(&mut reorder, None, &metrics)?;
    let dropped = queue.dropped_at_stop();
    if dropped > 0 {
        journal.gap(Gap {
            ts: SystemTime::now(),
            backend: journal.last_backend,
            roots: journal.root_names(),
            reason: GapReason::StopDropped,
            lost: Some(dropped),
        })?;
    }
    journal.finish()
}

/// Line formatting, numbering, coalescing and repair, independent of where changes come from
/// (unit-testable).
pub struct Journal {
    out: Box<dyn Write + Send>,
    /// The lines not yet written to `out`.
    line: LineBuilder,
    next_seq: u64,
    coalescer: Coalescer,
    /// Reading the clock costs as much as formatting a line, so a busy journal reads it only
    /// every [`CLOCK_EVERY`] changes (and [`run`] refreshes it whenever it wakes up).
    clock: Instant,
    since_clock: u32,
    roots: Vec<PathBuf>,
    index: Index,
    metrics: Option<Arc<Metrics>>,
    /// Names the backend on the lines of a repair at stop.
    last_backend: Backend,
    /// The newest `ts` written: the journal's own lines (gap, repair) carry it, so they stand
    /// where the loss was noticed without putting `ts` out of order.
    last_ts: Option<SystemTime>,
    /// `--store`: where each change line written goes after the journal.
    capture: Option<Feed>,
    /// Where the paths of written changes go back to the backends, to be built in again.
    path_return: Option<PathReturn>,
}

const CLOCK_EVERY: u32 = 64;

impl Journal {
    pub fn new(out: Box<dyn Write + Send>, coalesce: Duration) -> Self {
        Self {
            out,
            line: LineBuilder::with_capacity(OUTPUT_BUFFER_BYTES),
            next_seq: 1,
            coalescer: Coalescer::new(coalesce),
            clock: Instant::now(),
            since_clock: 0,
            roots: Vec::new(),
            index: Index::new(index::DEFAULT_LIMIT),
            metrics: None,
            last_backend: Backend::Inotify,
            last_ts: None,
            capture: None,
            path_return: None,
        }
    }

    /// Numbers lines from `seq` on (a reopened file continues its last line's).
    pub fn starting_at(mut self, seq: u64) -> Self {
        self.next_seq = seq;
        self
    }

    /// Repairs gaps under `roots` with an index of at most `limit` entries; gaps and repair
    /// lines are counted in `metrics`.
    pub fn repairing(mut self, roots: Vec<PathBuf>, limit: usize, metrics: Arc<Metrics>) -> Self {
        self.roots = roots;
        self.index = Index::new(limit);
        self.metrics = Some(metrics);
        self
    }

    /// Scans the roots into the index: the tree the journal's lines start from.
    pub fn baseline(&mut self) -> io::Result<()> {
        let started = Instant::now();
        if let Err(limit) = repair::baseline(&mut self.index, &self.roots) {
            return self.index_over(limit);
        }
        log::debug!(
            "journal: indexed {} entries under the watched directories in {} ms",
            self.index.len(),
            started.elapsed().as_millis()
        );
        Ok(())
    }

    fn root_names(&self) -> Vec<PathBuf> {
        self.roots.clone()
    }
    /// Journals the records the reorder window releases by `now` (`None`: all of them).
    fn release(
        &mut self,
        reorder: &mut Reorder,
        now: Option<Instant>,
        metrics: &Metrics,
    ) -> io::Result<()> {
        let late_before = reorder.late;
        while let Some(record) = reorder.pop_due(now) {
            match record {
                Record::Change(change) => {
                    metrics.count_event(change.backend, change.op);
                    self.push(change)?;
                }
                Record::Gap(gap) => self.gap(gap)?,
                // Answered on arrival (see `run`): none waits in the window.
                Record::Fence(fence) => fence.pass(),
            }
        }
        if reorder.late > late_before && (late_before == 0 || reorder.late.is_power_of_two()) {
            log::warn!(
                "journal: {} changes came more than {} ms after later ones and carry the last \
                 journaled ts instead of their own (so ts never decreases)",
                reorder.late,
                reorder::WINDOW.as_millis()
            );
        }
        Ok(())
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
            self.write(&change, 1)?;
            if let Some(path_return) = &mut self.path_return {
                path_return.give(change.path);
            }
            return Ok(());
        }
        self.since_clock += 1;
        if self.since_clock >= CLOCK_EVERY {
            self.set_clock(Instant::now());
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
        self.release_held()?;
        self.write_notes()?;
        self.flush()
    }

    /// Writes every pending line out.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(self.line.pending())?;
        self.line.clear();
        self.out.flush()
    }

    /// Writes the pending lines out once they fill the output buffer.
    fn spill(&mut self) -> io::Result<()> {
        if self.line.pending().len() >= OUTPUT_BUFFER_BYTES {
            self.out.write_all(self.line.pending())?;
            self.line.clear();
        }
        Ok(())
    }

    fn release_held(&mut self) -> io::Result<()> {
        while let Some((change, count)) = self.coalescer.pop_any() {
            self.write(&change, count)?;
        }
        Ok(())
    }

    /// Changes were lost here: what is held goes first, then the `gap` line, then the repair
    /// lines from a rescan of its roots (none once the index is over its limit: said once).
    pub fn gap(&mut self, mut gap: Gap) -> io::Result<()> {
        if let Some(metrics) = &self.metrics {
            metrics.count_gap(gap.reason);
        }
        self.release_held()?;
        let ts = *self.last_ts.get_or_insert(gap.ts);
        gap.ts = ts;
        let seq = self.take_seq();
        self.line.build_gap(seq, &gap);
        self.spill()?;
        self.capture_rescan();
        if self.index.entries().is_none() {
            return Ok(());
        }
        for root in &gap.roots {
            let mut repaired = match repair::repair(&mut self.index, Path::new(root), gap.backend) {
                Ok(repaired) => repaired,
                Err(limit) => return self.index_over(limit),
            };
            if let Some(metrics) = &self.metrics {
                metrics.count_repair_lines(repaired.len() as u64);
            }
            for change in &mut repaired {
                change.ts = ts;
                let seq = self.take_seq();
                self.line.build(seq, change, 1, true);
                self.spill()?;
                self.offer_to_capture(change)?;
            }
        }
        Ok(())
    }

    /// The index passed its limit and is gone: said in the log and as a gap line (whatever is
    /// lost from now on cannot be repaired).
    fn index_over(&mut self, limit: LimitReached) -> io::Result<()> {
        log::error!(
            "journal: the repair index passed its limit of {} files and directories under the \
             watched directories and was dropped (to bound memory): gaps from now on are \
             journaled but not repaired; watch fewer files per sidecar",
            limit.0
        );
        let gap = Gap {
            ts: SystemTime::now(),
            backend: self.last_backend,
            roots: self.root_names(),
            reason: GapReason::IndexLimit,
            lost: None,
        };
        self.gap(gap)
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn write(&mut self, change: &Change, count: u64) -> io::Result<()> {
        self.last_backend = change.backend;
        self.last_ts = Some(self.last_ts.map_or(change.ts, |last| last.max(change.ts)));
        if let Some(entries) = self.index.entries().filter(|_| !self.roots.is_empty()) {
            if consistency::removes_nothing_reported(entries, change)
                || consistency::adds_nothing_new(entries, change)
            {
                // Nothing a reader has heard of goes away, or what it has comes again: the line
                // would only puzzle it.
                log::debug!(
                    "journal: not journaled (nothing new for a reader): {} {}",
                    change.op.as_str(),
                    change.path.display()
                );
                return Ok(());
            }
            if let Some(scope) = consistency::unknown_scope(entries, &self.roots, change) {
                self.repair_unreported(&scope, change.backend)?;
            }
        }
        let seq = self.take_seq();
        self.line.build(seq, change, count, false);
        self.spill()?;
        self.offer_to_capture(change)?;
        if let Err(limit) = self.index.apply(change) {
            return self.index_over(limit);
        }
        Ok(())
    }
}
