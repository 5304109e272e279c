//! The event reader thread: decodes records from the [`EventSource`] (ring or perf buffers),
//! keeps canary events apart, turns the rest into [`Change`]s with absolute paths (placing
//! tracepoint mode's new names, [`super::names`]), and keeps the kernel's lost-event count
//! current.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::maps::{MapData, PerCpuArray};
use aya::Ebpf;
use diffkeeper_ebpf::event::{Event, EventRef, Names, Stat};
use diffkeeper_ebpf::object::{maps, ObjectKind};

use super::admission::{Admission, Held, HOLD_MAX};
use super::clock::WallClock;
use super::error::{Cause, Failure, Hint};
use super::explain::explain;
use super::kretprobe::MissWatch;
use super::source::EventSource;
use super::{moved_in, names};
use crate::change::{
    Backend, Change, ChangeSink, Delivery, Family, Gap, GapReason, Op, Record, STOP_GRACE,
};
use crate::short_copy;

/// The kernel wakes the reader only when an eighth of the ring is full, so poll(2) also times
/// out after this long: the most an event waits before it is read.
const POLL_MS: u16 = 10;
/// Until the start-up canary is back, poll(2) times out this soon instead: its few events never
/// wake the reader, and start -> ready waits on them (half of [`POLL_MS`] on average otherwise).
const CANARY_POLL_MS: u16 = 1;
/// How often the lost-event count and the wall-clock offset are re-read.
const REFRESH: Duration = Duration::from_millis(250);

pub struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Events under the canary root (never forwarded to the sink).
    pub canary: Receiver<Event>,
    /// Changes are held back until [`Reader::admit`].
    admission: Admission,
    pub lost: Arc<AtomicU64>,
    /// The kernel side's `dk_stats`: changes it did not report on purpose, by [`Stat`].
    pub unreported: Arc<Unreported>,
    /// Set until [`Reader::canary_back`]: the reader polls every [`CANARY_POLL_MS`].
    awaiting_canary: Arc<AtomicBool>,
}

/// Changes seen but not journaled because they could not be named truly: the kernel side's
/// `dk_stats` (refreshed with the lost count), by [`Stat::index`], and the new names the reader
/// could not place ([`names::Unplaced`]).
#[derive(Debug, Default)]
pub struct Unreported {
    kernel: [AtomicU64; Stat::ALL.len()],
    unplaced_names: AtomicU64,
}

impl Unreported {
    /// The `reason` label of the reader's own count, after the kernel's ([`Stat::as_str`]).
    pub const UNPLACED_NAME: &'static str = "unplaced_name";

    pub fn get(&self, stat: Stat) -> u64 {
        self.kernel[stat.index() as usize].load(Ordering::Relaxed)
    }

    pub fn unplaced_names(&self) -> u64 {
        self.unplaced_names.load(Ordering::Relaxed)
    }

    /// Every count with its `reason` label, in the order `/metrics` lists them.
    pub fn by_reason(&self) -> [(&'static str, u64); Stat::ALL.len() + 1] {
        let mut all = [(Self::UNPLACED_NAME, self.unplaced_names()); Stat::ALL.len() + 1];
        for (slot, stat) in all.iter_mut().zip(Stat::ALL) {
            *slot = (stat.as_str(), self.get(stat));
        }
        all
    }

    /// Counts one more unplaced name; returns the new total.
    pub(super) fn count_unplaced_name(&self) -> u64 {
        self.unplaced_names.fetch_add(1, Ordering::Relaxed) + 1
    }
}

struct Routing {
    backend: Backend,
    /// Root directories by id: every event's path is built on one of them.
    roots: Vec<PathBuf>,
    canary_id: u32,
    /// Hands changes to the journal (bounded waits once stopping).
    delivery: Delivery,
    /// Changes held back until the family passed its canary.
    held: Held,
    canary: Sender<Event>,
    clock: WallClock,
    /// Where unplaced new names are counted.
    unreported: Arc<Unreported>,
    /// Paths the journal is done with: new ones are built in them.
    spare_paths: Vec<PathBuf>,
}

impl Reader {
    /// Takes the event and lost-counter maps out of `ebpf` and starts the thread.
    /// `buffer_bytes` sizes the compat object's perf buffers (the ring is sized at load);
    /// `misses` counts the kernel's missed kretprobe returns (kprobe mode).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        ebpf: &mut Ebpf,
        object: ObjectKind,
        family: Family,
        roots: Vec<PathBuf>,
        canary_id: u32,
        sink: ChangeSink,
        buffer_bytes: u32,
        misses: Option<MissWatch>,
    ) -> Result<Self, Failure> {
        let source = EventSource::open(ebpf, object, buffer_bytes)?;
        let lost_map: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(ebpf.take_map(maps::LOST).expect("object has dk_lost"))
                .map_err(|e| explain("opening the dk_lost counter", &e))?;
        let stats_map: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(ebpf.take_map(maps::STATS).expect("object has dk_stats"))
                .map_err(|e| explain("opening the dk_stats counters", &e))?;
        let (canary_tx, canary) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let awaiting_canary = Arc::new(AtomicBool::new(true));
        let lost = Arc::new(AtomicU64::new(0));
        let unreported = Arc::new(Unreported::default());
        let (admission, held) = Admission::new(family);
        let routing = Routing {
            backend: Backend::Ebpf(family),
            roots,
            canary_id,
            delivery: Delivery::new(sink, stop.clone()),
            held,
            canary: canary_tx,
            clock: WallClock::new(object.clock()),
            unreported: unreported.clone(),
            spare_paths: Vec::new(),
        };
        let thread = {
            let lost = lost.clone();
            let unreported = unreported.clone();
            let awaiting_canary = awaiting_canary.clone();
            let counters = Counters {
                lost_map,
                stats_map,
                lost,
                unreported,
                misses,
            };
            std::thread::Builder::new()
                .name("ebpf-events".into())
                .spawn(move || run(source, counters, routing, &awaiting_canary))
                .map_err(|source| {
                    let cause = Cause::Syscall {
                        call: "clone",
                        source,
                    };
                    Failure::new("starting the event reader thread", cause, Hint::None)
                })?
        };
        Ok(Self {
            stop,
            thread: Some(thread),
            canary,
            admission,
            lost,
            unreported,
            awaiting_canary,
        })
    }

    /// The family passed its canary: its changes go to the journal from now on, starting with
    /// those held so far. A reader never admitted discards them when it stops.
    pub fn admit(&self) {
        self.admission.admit();
    }

    /// The canary passed: from now on the reader polls at its normal pace.
    pub fn canary_back(&self) {
        self.awaiting_canary.store(false, Ordering::Relaxed);
    }

    /// Drains what is left and ends the thread (dropping the reader does the same).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("[eBPF] the event reader thread panicked");
            }
        }
    }
}

/// The kernel's counters and where the reader publishes them.
struct Counters {
    lost_map: PerCpuArray<MapData, u64>,
    stats_map: PerCpuArray<MapData, u64>,
    lost: Arc<AtomicU64>,
    unreported: Arc<Unreported>,
    misses: Option<MissWatch>,
}

impl Counters {
    /// Re-reads `dk_stats` and warns once per refresh about each counter that grew.
    fn refresh_unreported(&self) {
        for stat in Stat::ALL {
            let total: u64 = self
                .stats_map
                .get(&stat.index(), 0)
                .map_or(0, |per_cpu| per_cpu.iter().sum());
            let before =
                self.unreported.kernel[stat.index() as usize].swap(total, Ordering::Relaxed);
            if total > before {
                log::warn!(
                    "[eBPF] {} changes not journaled: {} ({total} in all; \
                     diffkeeper_unreported_changes_total{{reason=\"{}\"}})",
                    total - before,
                    match stat {
                        Stat::TooDeep =>
                            "files too deep below their file system's top for \
                                          the kernel walk to place them",
                        Stat::Unlinked =>
                            "changes through files without a name (O_TMPFILE, \
                                           deleted while open)",
                        Stat::MissedReturn =>
                            "kretprobes that never ran (maxactive \
                                               exhausted): those changes were lost",
                    },
                    stat.as_str()
                );
            }
        }
    }
}

fn run(
    mut source: EventSource,
    mut counters: Counters,
    mut routing: Routing,
    awaiting_canary: &AtomicBool,
) {
    let Counters {
        ref lost_map,
        ref lost,
        ..
    } = counters;
    let mut refreshed = Instant::now();
    let mut reported_lost = 0;
    let mut reported_missed = 0;
    loop {
        let stopping = routing.stopping();
        if !stopping {
            let timeout = if awaiting_canary.load(Ordering::Relaxed) {
                CANARY_POLL_MS
            } else {
                POLL_MS
            };
            if let Err(e) = source.wait(timeout) {
                if e != nix::errno::Errno::EINTR {
                    log::error!("[eBPF] poll on the event buffers failed: {e}");
                    std::thread::sleep(Duration::from_millis(u64::from(POLL_MS)));
                }
            }
        }
        routing.delivery.gather();
        source.drain(stopping, |record| routing.route(record));
        routing.release_held();
        routing.delivery.flush();
        if stopping || refreshed.elapsed() >= REFRESH {
            // Counted by the programs whenever an output fails (ring or perf buffer full).
            let total: u64 = lost_map
                .get(&0, 0)
                .map_or(0, |per_cpu| per_cpu.iter().sum());
            lost.store(total, Ordering::Relaxed);
            if total > reported_lost {
                log::warn!(
                    "[eBPF] the kernel dropped {} events (buffers full; {total} in all): \
                     the journal missed changes; raise --ringbuf-bytes",
                    total - reported_lost
                );
                routing.report_gap(GapReason::RingBufferFull, total - reported_lost);
                reported_lost = total;
            }
            counters.refresh_unreported();
            if let Some(misses) = &mut counters.misses {
                misses.refresh();
            }
            // The kernel side's count and tracefs' count see the same misses: the larger one.
            let missed = counters
                .unreported
                .get(Stat::MissedReturn)
                .max(counters.misses.as_ref().map_or(0, MissWatch::missed));
            if missed > reported_missed {
                routing.report_gap(GapReason::KretprobeMissed, missed - reported_missed);
                reported_missed = missed;
            }
            routing.clock.refresh();
            refreshed = Instant::now();
        }
        if stopping {
            routing.report_dropped();
            return;
        }
    }
}

impl Routing {
    fn route(&mut self, record: &[u8]) {
        match EventRef::parse(record) {
            // Most events (every write) have nothing to place: no copy of their paths is made.
            Ok(event) if !event.named() => {
                self.dispatch_placed(&event, &Names::default());
            }
            Ok(event) => self.dispatch(event.to_owned()),
            Err(e) => log::warn!("[eBPF] dropping a malformed event: {e}"),
        }
    }

    fn dispatch(&mut self, event: Event) {
        let unplaced_before = self.unreported.unplaced_names();
        let journaled = self.place_and_dispatch(event);
        let unplaced = self.unreported.unplaced_names() - unplaced_before;
        if unplaced > 0 && !journaled {
            // A change under a name that cannot be placed, with no line at all (not even its
            // directory, flagged): a gap here, repaired by a rescan. A flagged line is its own
            // sign (`truncated`), and a rescan would rewrite the lines after it.
            self.report_gap(GapReason::UnplacedName, unplaced);
        }
    }

    /// Returns whether a line was journaled (the canary's events count as one).
    fn place_and_dispatch(&mut self, event: Event) -> bool {
        // Tracepoint mode's names: placed first, so that the canary and the journal get the
        // form every family sends.
        let Some(names) = event.name.clone() else {
            return self.dispatch_placed(&event.as_ref(), &Names::default());
        };
        match names::place_event(event, &self.roots, &self.unreported) {
            Some(placed) => self.dispatch_placed(&placed.as_ref(), &names),
            None => false,
        }
    }

    /// An event whose paths are placed (below a root), with the names it came with.
    fn dispatch_placed(&mut self, event: &EventRef, names: &Names) -> bool {
        let is_canary = |end: Option<(u32, &[u8])>| end.is_some_and(|(id, _)| id == self.canary_id);
        if is_canary(event.path) || is_canary(event.from) {
            let _ = self.canary.send(event.to_owned());
            return true;
        }
        let renamed = event.op == Op::Rename;
        let Some(change) = self.change_of(event) else {
            return false;
        };
        let follow_up = follow_up(&change, names, event.bytes);
        // Only a rename from outside the roots can bring a directory as a `create` (see
        // moved_in): other creates are never looked at on disk. A truncated line names the
        // directory a name could not be placed in, not a new one.
        if renamed && change.op == Op::Create && !change.truncated {
            for line in moved_in::expand(change) {
                self.deliver(line);
            }
        } else {
            self.deliver(change);
        }
        if let Some(next) = follow_up {
            self.deliver(next);
        }
        true
    }

    fn stopping(&self) -> bool {
        self.delivery.stopping()
    }

    fn deliver(&mut self, change: Change) {
        self.pass(Record::Change(change));
    }

    /// Everything, losses included, goes through the hold: nothing of a family reaches the
    /// journal before its canary passed.
    fn pass(&mut self, record: Record) {
        let Self { held, delivery, .. } = self;
        held.pass(record, |record| delivery.send(record));
        self.report_hold_overflow();
    }

    /// Hands on what was held as soon as the family is admitted, even with no new event.
    fn release_held(&mut self) {
        let Self { held, delivery, .. } = self;
        held.release(|record| delivery.send(record));
        self.report_hold_overflow();
    }

    /// What the hold could not keep while the canary ran is a loss like any other.
    fn report_hold_overflow(&mut self) {
        let dropped = self.held.take_dropped();
        if dropped > 0 {
            log::warn!(
                "[eBPF] {dropped} changes made while the {} canary ran were not journaled: \
                 more than {HOLD_MAX} came before it passed (journaled as a gap)",
                self.backend.as_str()
            );
            self.report_gap(GapReason::CanaryHoldFull, dropped);
        }
    }

    /// Changes were lost in the kernel since the last refresh: a gap in every root (the kernel
    /// cannot say whose events it dropped), placed after everything read so far.
    fn report_gap(&mut self, reason: GapReason, lost: u64) {
        let gap = Gap {
            ts: std::time::SystemTime::now(),
            backend: self.backend,
            roots: self.roots.clone(),
            reason,
            lost: Some(lost),
        };
        self.pass(Record::Gap(gap));
    }

    fn report_dropped(&self) {
        if self.delivery.dropped() > 0 {
            log::warn!(
                "[eBPF] stopping: dropped {} changes the journal did not take within {} ms \
                 (is its output blocked, e.g. a stalled stdout pipe?)",
                self.delivery.dropped(),
                STOP_GRACE.as_millis()
            );
        }
    }

    /// `root/relative`, built in a path the journal gave back when there is one (this runs for
    /// every event at full write rate); bytes, not text: Linux names need not be UTF-8.
    fn absolute(&mut self, end: Option<(u32, &[u8])>) -> Option<PathBuf> {
        let (id, relative) = end?;
        let root = self.roots.get(id as usize)?.as_os_str().as_bytes();
        let root = &root[..root.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1)];
        if self.spare_paths.is_empty() {
            self.spare_paths = self.delivery.spare_paths();
        }
        let mut path = self
            .spare_paths
            .pop()
            .unwrap_or_default()
            .into_os_string()
            .into_vec();
        short_copy::join_into(&mut path, &[root, b"/", relative]);
        Some(PathBuf::from(OsString::from_vec(path)))
    }

    fn change_of(&mut self, event: &EventRef) -> Option<Change> {
        let path = self.absolute(event.path);
        let from = self.absolute(event.from);
        let (op, path, from) = match (event.op, path, from) {
            (Op::Rename, Some(p), Some(f)) => (Op::Rename, p, Some(f)),
            // Moved in from outside the watched roots: a new file here.
            (Op::Rename, Some(p), None) => (Op::Create, p, None),
            // Moved out: gone from here.
            (Op::Rename, None, Some(f)) => (Op::Delete, f, None),
            (op, Some(p), _) => (op, p, None),
            _ => return None,
        };
        Some(Change {
            ts: self.clock.wall_time(event.ts_ns),
            backend: self.backend,
            op,
            path,
            from,
            pid: Some(event.pid),
            comm: Some(event.comm),
            bytes: (op == Op::Write).then_some(event.bytes),
            truncated: event.truncated(),
        })
    }
}

/// The second line some tracepoint reports make: a new name given to an unnamed (O_TMPFILE)
/// file brings the write of its content (made while it had no name, so not reported then); a
/// RENAME_EXCHANGE is two renames, the second the other way (both at the same time: the two
/// files swapped places, which replaying them in order would not do).
fn follow_up(change: &Change, names: &Names, bytes: u64) -> Option<Change> {
    if names.content && change.op == Op::Create && !change.truncated {
        return Some(Change {
            op: Op::Write,
            bytes: Some(bytes),
            ..change.clone()
        });
    }
    if names.exchange && change.op == Op::Rename {
        return Some(Change {
            path: change.from.clone()?,
            from: Some(change.path.clone()),
            ..change.clone()
        });
    }
    None
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
