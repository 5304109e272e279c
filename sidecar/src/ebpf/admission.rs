//! Nothing a family reports reaches the journal before that family passed its canary: a BTF
//! with wrong member offsets loads and attaches, and until the canary has proved otherwise
//! every name the programs send may be garbage. The reader holds its changes back
//! ([`Held`]) until the session admits the family ([`Admission::admit`]); then it hands on
//! what it held, in order, and every later change directly. A family that fails its canary is
//! never admitted, and what it held is discarded (and counted in the log) with its reader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::change::{Change, Family};

/// Changes held at most while a canary runs (normally a few milliseconds; a second when it
/// fails). Past this, changes are dropped and counted: the reader must keep reading, or the
/// canary's own events would stay stuck behind the app's in the kernel buffer.
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
            changes: Vec::new(),
            dropped: 0,
        };
        (Self(admitted), held)
    }

    /// The canary passed: the reader hands on what it held, then everything as it comes.
    pub fn admit(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The reader's side: the changes held until the family is admitted.
#[derive(Debug)]
pub struct Held {
    admitted: Arc<AtomicBool>,
    family: Family,
    changes: Vec<Change>,
    /// Changes dropped because [`HOLD_MAX`] were already held.
    dropped: u64,
}

impl Held {
    /// Hands `change` on through `deliver` once admitted (after what was held), else holds it.
    pub fn pass(&mut self, change: Change, mut deliver: impl FnMut(Change)) {
        if self.release(&mut deliver) {
            deliver(change);
            return;
        }
        if self.changes.len() < HOLD_MAX {
            self.changes.push(change);
        } else {
            self.dropped += 1;
        }
    }

    /// Once admitted, hands on every held change; returns whether admitted, so that a change
    /// seen afterwards can be delivered directly.
    pub fn release(&mut self, mut deliver: impl FnMut(Change)) -> bool {
        if !self.admitted.load(Ordering::Acquire) {
            return false;
        }
        if self.dropped > 0 {
            log::warn!(
                "[eBPF] {} changes made while the {} canary ran were not journaled: more \
                 than {HOLD_MAX} came before it passed",
                self.dropped,
                self.family.as_str()
            );
            self.dropped = 0;
        }
        for change in self.changes.drain(..) {
            deliver(change);
        }
        true
    }
}

impl Drop for Held {
    /// A family never admitted (its canary failed, or start-up ended): its changes are
    /// discarded, since their names cannot be trusted; the log says how many.
    fn drop(&mut self) {
        if self.admitted.load(Ordering::Acquire) {
            return;
        }
        let discarded = self.changes.len() as u64 + self.dropped;
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
    use crate::change::{Backend, Op};

    fn change(path: &str) -> Change {
        Change {
            ts: std::time::SystemTime::UNIX_EPOCH,
            backend: Backend::Ebpf(Family::Tracepoint),
            op: Op::Write,
            path: path.into(),
            from: None,
            pid: Some(1),
            comm: Some("app".into()),
            bytes: Some(1),
            truncated: false,
        }
    }

    #[test]
    fn held_until_admitted_then_in_order() {
        let (admission, mut held) = Admission::new(Family::Tracepoint);
        let mut out = Vec::new();
        held.pass(change("/s/a"), |c| out.push(c.path));
        held.pass(change("/s/b"), |c| out.push(c.path));
        assert!(!held.release(|c| out.push(c.path)));
        assert!(out.is_empty(), "{out:?}");
        admission.admit();
        held.pass(change("/s/c"), |c| out.push(c.path));
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
            (delivered, held.changes.len(), held.dropped),
            (0, HOLD_MAX, 3)
        );
        admission.admit();
        assert!(held.release(|_| delivered += 1));
        assert_eq!((delivered, held.dropped), (HOLD_MAX, 0));
    }
}
