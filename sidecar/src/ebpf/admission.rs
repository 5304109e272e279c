//! Nothing a family reports reaches the journal before that family passed its canary: a BTF
//! with wrong member offsets loads and attaches, and until the canary has proved otherwise
//! every name the programs send may be garbage. The reader holds its changes back
//! ([`Held`]) until the session admits the family ([`Admission::admit`]); then it hands on
//! what it held, in order, and every later change directly. A family that fails its canary is
//! never admitted, and what it held is discarded (and counted in the log) with its reader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::change::{Family, Record};

/// Records held at most while a canary runs (normally a few milliseconds; a second when it
/// fails). Past this, changes are dropped and counted, and journaled as a gap once the family
/// is admitted: the reader must keep reading, or the canary's own events would stay stuck
/// behind the app's in the kernel buffer.
pub const HOLD_MAX: usize = 32 * 1024;

/// The session's side: says when the family passed its canary.
#[derive(Debug)]
pub struct Admission(Arc<AtomicBool>);

impl Admission {
    /// A closed admission and the reader's side of it.
    pub fn new(family: Family) -> (Self, Held) {
        let admitted = Arc::new(AtomicBool::new(false));
        let held = Held {
            admitted: admitted.clone(),
            family,
            records: Vec::new(),
            dropped: 0,
        };
        (Self(admitted), held)
    }

    /// The canary passed: the reader hands on what it held, then everything as it comes.
    pub fn admit(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The reader's side: the changes (and the losses among them) held until the family is
/// admitted. A loss is held like a change: a family that fails its canary reports neither.
#[derive(Debug)]
pub struct Held {
    admitted: Arc<AtomicBool>,
    family: Family,
    records: Vec<Record>,
    /// Changes dropped because [`HOLD_MAX`] records were already held.
    dropped: u64,
}

impl Held {
    /// Hands `record` on through `deliver` once admitted (after what was held), else holds it.
    pub fn pass(&mut self, record: Record, mut deliver: impl FnMut(Record)) {
        if self.release(&mut deliver) {
            deliver(record);
            return;
        }
        if self.records.len() < HOLD_MAX {
            self.records.push(record);
        } else {
            self.dropped += 1;
        }
    }

    /// Once admitted, hands on every held record; returns whether admitted, so that a record
    /// seen afterwards can be delivered directly.
    pub fn release(&mut self, mut deliver: impl FnMut(Record)) -> bool {
        if !self.admitted.load(Ordering::Acquire) {
            return false;
        }
        for record in self.records.drain(..) {
            deliver(record);
        }
        true
    }

    /// Once admitted: the changes dropped because the hold was full, counted once (the reader
    /// journals them as a gap after what was held).
    pub fn take_dropped(&mut self) -> u64 {
        if !self.admitted.load(Ordering::Acquire) {
            return 0;
        }
        std::mem::take(&mut self.dropped)
    }
}

impl Drop for Held {
    /// A family never admitted (its canary failed, or start-up ended): its changes are
    /// discarded, since their names cannot be trusted; the log says how many.
    fn drop(&mut self) {
        if self.admitted.load(Ordering::Acquire) {
            return;
        }
        let changes = self
            .records
            .iter()
            .filter(|r| matches!(r, Record::Change(_)))
            .count() as u64;
        let discarded = changes + self.dropped;
        if discarded > 0 {
            log::warn!(
                "[eBPF] {discarded} changes {} mode reported before its canary check were \
                 discarded, not journaled: their names cannot be trusted until the canary \
                 passes",
                self.family.as_str()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Backend, Change, Gap, GapReason, Op};

    fn change(path: &str) -> Record {
        Record::Change(Change {
            ts: std::time::SystemTime::UNIX_EPOCH,
            backend: Backend::Ebpf(Family::Tracepoint),
            op: Op::Write,
            path: path.into(),
            from: None,
            pid: Some(1),
            comm: Some("app".into()),
            bytes: Some(1),
            truncated: false,
        })
    }

    fn path(record: Record) -> String {
        match record {
            Record::Change(c) => c.path.to_string_lossy().into_owned(),
            Record::Gap(g) => format!("gap {}", g.reason.as_str()),
            Record::Fence(_) => "fence".into(),
        }
    }

    #[test]
    fn held_until_admitted_then_in_order() {
        let (admission, mut held) = Admission::new(Family::Tracepoint);
        let mut out = Vec::new();
        held.pass(change("/s/a"), |r| out.push(path(r)));
        held.pass(change("/s/b"), |r| out.push(path(r)));
        assert!(!held.release(|r| out.push(path(r))));
        assert!(out.is_empty(), "{out:?}");
        admission.admit();
        held.pass(change("/s/c"), |r| out.push(path(r)));
        assert_eq!(out, ["/s/a", "/s/b", "/s/c"]);
    }

    #[test]
    fn a_full_hold_counts_what_it_drops_and_hands_on_the_rest() {
        let (admission, mut held) = Admission::new(Family::Kprobe);
        let mut delivered = 0;
        for i in 0..HOLD_MAX + 3 {
            held.pass(change(&format!("/s/{i}")), |_| delivered += 1);
        }
        assert_eq!(
            (delivered, held.records.len(), held.dropped),
            (0, HOLD_MAX, 3)
        );
        admission.admit();
        assert!(held.release(|_| delivered += 1));
        assert_eq!(
            (delivered, held.take_dropped(), held.take_dropped()),
            (HOLD_MAX, 3, 0)
        );
    }

    #[test]
    fn a_loss_is_held_with_the_changes_and_discarded_with_them() {
        let gap = || {
            Record::Gap(Gap {
                ts: std::time::SystemTime::UNIX_EPOCH,
                backend: Backend::Ebpf(Family::Kprobe),
                roots: vec!["/s".into()],
                reason: GapReason::RingBufferFull,
                lost: Some(7),
            })
        };
        let mut out = Vec::new();
        let (_never, mut failed) = Admission::new(Family::Kprobe);
        failed.pass(change("/s/a"), |r| out.push(path(r)));
        failed.pass(gap(), |r| out.push(path(r)));
        drop(failed);
        assert!(
            out.is_empty(),
            "a failed family's loss reached the journal: {out:?}"
        );

        let (admission, mut held) = Admission::new(Family::Kprobe);
        held.pass(change("/s/a"), |r| out.push(path(r)));
        held.pass(gap(), |r| out.push(path(r)));
        admission.admit();
        held.pass(change("/s/b"), |r| out.push(path(r)));
        assert_eq!(out, ["/s/a", "gap ring buffer full", "/s/b"]);
    }
}
