//! The compat object's per-CPU perf buffers as one stream in kernel-timestamp order: a k-way
//! merge of the CPUs' records within a bounded reorder window.
//!
//! Each CPU's buffer is in stamp order, but the buffers are read one after the other: a record
//! committed to a buffer the reader has just passed comes out of the next drain, after records
//! of other CPUs stamped later (a create on one CPU, then a write on another, journaled
//! write-first). So records are held here, per CPU, and the oldest is released only once every
//! CPU's buffer has been seen past its stamp (a record at or after it was read from each), or
//! once it is [`WINDOW`] old: nothing is held longer than that, and a CPU that commits a record
//! later than that after stamping it can still be out of order.

use std::collections::VecDeque;
use std::time::Duration;

/// How long a record is held at most, waiting for a CPU that has shown nothing newer. Far above
/// the time between a program's stamp and its commit (microseconds) plus one drain of the
/// reader (it polls every 10 ms), and short next to the journal's own batching.
pub const WINDOW: Duration = Duration::from_millis(30);

/// Records read from the CPUs' buffers and not yet released.
pub struct Reorder {
    window_ns: u64,
    /// Per CPU: (stamp, record) in stamp order.
    held: Vec<VecDeque<(u64, Vec<u8>)>>,
    /// Per CPU: the newest stamp read from its buffer.
    seen: Vec<u64>,
    /// Buffers of released records, reused for the next ones.
    spare: Vec<Vec<u8>>,
}

impl Reorder {
    pub fn new(cpus: usize, window: Duration) -> Self {
        Self {
            window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            held: (0..cpus).map(|_| VecDeque::new()).collect(),
            seen: vec![0; cpus],
            spare: Vec::new(),
        }
    }

    /// Records held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.iter().map(VecDeque::len).sum()
    }

    /// Holds a copy of `record`, read from `cpu`'s buffer with stamp `ts` (`parts` joined: a
    /// perf sample that wraps around its buffer comes in two).
    pub fn push(&mut self, cpu: usize, ts: u64, parts: [&[u8]; 2]) {
        let mut record = self.spare.pop().unwrap_or_default();
        record.clear();
        record.extend_from_slice(parts[0]);
        record.extend_from_slice(parts[1]);
        self.seen[cpu] = self.seen[cpu].max(ts);
        let queue = &mut self.held[cpu];
        // A CPU's records come in stamp order; one that does not is put in its place.
        let at = queue
            .iter()
            .rposition(|(t, _)| *t <= ts)
            .map_or(0, |i| i + 1);
        queue.insert(at, (ts, record));
    }

    /// Routes, oldest first, every held record that every CPU's buffer has been seen past, or
    /// that is [`WINDOW`] old at `now_ns` (CLOCK_MONOTONIC, the compat object's clock); with
    /// `flush`, every held record.
    pub fn release(&mut self, now_ns: u64, flush: bool, mut route: impl FnMut(&[u8])) {
        loop {
            let Some(cpu) = self.oldest() else {
                return;
            };
            let ts = self.held[cpu][0].0;
            let seen_everywhere = self.seen.iter().all(|&seen| seen >= ts);
            let expired = now_ns.saturating_sub(ts) >= self.window_ns;
            if !(flush || seen_everywhere || expired) {
                return;
            }
            let (_, record) = self.held[cpu].pop_front().expect("oldest() found it");
            route(&record);
            self.spare.push(record);
        }
    }

    /// The CPU whose first held record is the oldest (the lowest CPU among equal stamps).
    fn oldest(&self) -> Option<usize> {
        self.held
            .iter()
            .enumerate()
            .filter_map(|(cpu, q)| q.front().map(|(ts, _)| (*ts, cpu)))
            .min()
            .map(|(_, cpu)| cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn released(r: &mut Reorder, now: u64, flush: bool) -> Vec<u8> {
        let mut out = Vec::new();
        r.release(now, flush, |rec| out.push(rec[0]));
        out
    }

    /// The case one pass over the buffers got wrong: CPU 0's record stamped 10 is committed
    /// after the reader passed CPU 0, and CPU 1's record stamped 20 was read in that pass.
    #[test]
    fn a_late_commit_on_a_passed_cpu_still_comes_first() {
        let mut r = Reorder::new(2, Duration::from_nanos(1_000));
        r.push(1, 20, [b"w", &[]]);
        assert_eq!(released(&mut r, 25, false), b"", "CPU 0 not seen past 20");
        r.push(0, 10, [b"c", &[]]);
        assert_eq!(released(&mut r, 26, false), b"c", "CPU 0 still not past 20");
        r.push(0, 30, [b"x", &[]]);
        assert_eq!(
            released(&mut r, 31, false),
            b"w",
            "both CPUs past 20, not yet 30"
        );
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn the_window_bounds_the_wait_for_a_quiet_cpu() {
        let mut r = Reorder::new(3, Duration::from_nanos(100));
        r.push(0, 1_000, [b"a", &[]]);
        r.push(0, 1_050, [b"b", &[]]);
        assert_eq!(released(&mut r, 1_099, false), b"");
        assert_eq!(released(&mut r, 1_100, false), b"a");
        assert_eq!(released(&mut r, 1_149, false), b"");
        // Stopping: everything, in order.
        r.push(2, 1_020, [b"z", &[]]);
        assert_eq!(released(&mut r, 0, true), b"zb");
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn merges_many_cpus_in_stamp_order_and_joins_wrapped_samples() {
        let mut r = Reorder::new(4, Duration::from_secs(1));
        for (cpu, ts) in [
            (3, 7),
            (0, 2),
            (1, 5),
            (2, 1),
            (0, 8),
            (1, 6),
            (3, 9),
            (2, 9),
        ] {
            r.push(cpu, ts, [&[ts as u8], &[cpu as u8]]);
        }
        r.push(0, 3, [&[3], &[0]]); // out of order on its CPU: put in its place
        let mut out = Vec::new();
        r.release(0, true, |rec| out.push((rec[0], rec[1])));
        let stamps: Vec<u8> = out.iter().map(|(ts, _)| *ts).collect();
        assert_eq!(stamps, [1, 2, 3, 5, 6, 7, 8, 9, 9]);
        assert_eq!(out[7..], [(9, 2), (9, 3)], "equal stamps: lower CPU first");
    }
}
