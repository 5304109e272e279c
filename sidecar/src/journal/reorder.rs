//! The reorder window: records are held for a short while after they arrive and released in
//! timestamp order, so that changes from more than one source (two backends around a
//! coverage fallback, CPUs whose events reach the reader late) come out with `ts` never
//! decreasing. A record that arrives after a later one was already released (more than the
//! window late) cannot be put back: its `ts` is raised to the last released one, and counted.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use crate::change::Record;

/// How long a record is held: far above the reader's batching (10 ms polls), far below
/// anything a reader of the journal would notice.
pub const WINDOW: Duration = Duration::from_millis(20);

pub(super) struct Reorder {
    window: Duration,
    /// In `ts` order, equal times in arrival order. A sorted queue, not a heap: records nearly always arrive in
    /// time order, so each is put at or near the back and taken from the front, moved about
    /// once; a heap moved every record through all its levels (most of the journal's CPU).
    held: VecDeque<Held>,
    last_released: Option<SystemTime>,
    /// Records released with their `ts` raised (they came more than the window late).
    pub(super) late: u64,
}

struct Held {
    ts: SystemTime,
    due: Instant,
    record: Record,
}

/// A fence never waits here (the journal answers it on arrival): it has no time of its own.
fn ts_of(record: &Record) -> SystemTime {
    match record {
        Record::Change(c) => c.ts,
        Record::Gap(g) => g.ts,
        Record::Fence(_) => SystemTime::UNIX_EPOCH,
    }
}

fn set_ts(record: &mut Record, ts: SystemTime) {
    match record {
        Record::Change(c) => c.ts = ts,
        Record::Gap(g) => g.ts = ts,
        Record::Fence(_) => {}
    }
}

impl Reorder {
    pub(super) fn new(window: Duration) -> Self {
        Self {
            window,
            held: VecDeque::new(),
            last_released: None,
            late: 0,
        }
    }

    pub(super) fn push(&mut self, record: Record, now: Instant) {
        let ts = ts_of(&record);
        let held = Held {
            ts,
            due: now + self.window,
            record,
        };
        // After every held record of the same or an earlier time (they arrived before it). The
        // back is checked first: a search of the whole window for every record was 8 % of the
        // sidecar's CPU at full rate, where records nearly always come in order.
        if self.held.back().is_none_or(|last| last.ts <= ts) {
            self.held.push_back(held);
        } else {
            let at = self.held.partition_point(|h| h.ts <= ts);
            self.held.insert(at, held);
        }
    }

    /// When the earliest held record is due (to wake up for it).
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.held.front().map(|h| h.due)
    }

    /// The earliest record if it has been held for the window (`None` for `now`: any).
    pub(super) fn pop_due(&mut self, now: Option<Instant>) -> Option<Record> {
        let due = self.held.front()?.due;
        if now.is_some_and(|now| due > now) {
            return None;
        }
        let held = self.held.pop_front()?;
        let mut record = held.record;
        match self.last_released {
            Some(last) if held.ts < last => {
                set_ts(&mut record, last);
                self.late += 1;
            }
            _ => self.last_released = Some(held.ts),
        }
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Backend, Change, Op};
    use std::time::UNIX_EPOCH;

    fn at(ns: u64, path: &str) -> Record {
        Record::Change(Change {
            ts: UNIX_EPOCH + Duration::from_nanos(ns),
            backend: Backend::Inotify,
            op: Op::Write,
            path: path.into(),
            from: None,
            pid: None,
            comm: None,
            bytes: None,
            truncated: false,
        })
    }

    fn path(record: Record) -> (String, SystemTime) {
        match record {
            Record::Change(c) => (c.path.to_string_lossy().into_owned(), c.ts),
            Record::Gap(_) | Record::Fence(_) => panic!("not a change"),
        }
    }

    #[test]
    fn records_within_the_window_come_out_in_ts_order_and_late_ones_are_raised() {
        let start = Instant::now();
        let mut r = Reorder::new(Duration::from_millis(20));
        r.push(at(30, "c"), start);
        r.push(at(10, "a"), start + Duration::from_millis(1));
        r.push(at(20, "b"), start + Duration::from_millis(2));
        assert!(r.pop_due(Some(start + Duration::from_millis(5))).is_none());
        let later = start + Duration::from_millis(30);
        let out: Vec<String> = std::iter::from_fn(|| r.pop_due(Some(later)))
            .map(|rec| path(rec).0)
            .collect();
        assert_eq!(out, ["a", "b", "c"]);
        // More than the window late: released with the last ts, counted.
        r.push(at(5, "late"), later);
        let (name, ts) = path(r.pop_due(None).unwrap());
        assert_eq!(
            (name.as_str(), ts),
            ("late", UNIX_EPOCH + Duration::from_nanos(30))
        );
        assert_eq!(r.late, 1);
    }
}
