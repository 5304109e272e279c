//! The ring buffer reader thread: decodes records, keeps canary events apart, turns the rest
//! into [`Change`]s with absolute paths, and keeps the kernel's lost-event count current.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::Ebpf;
use diffkeeper_ebpf::event::{Event, EventOp};
use diffkeeper_ebpf::object::maps;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::load::{explain, Failure};
use crate::change::{Backend, Change, ChangeSink, Op};

/// The kernel wakes the reader only when an eighth of the ring is full, so poll(2) also times
/// out after this long: the most an event waits before it is read.
const POLL_MS: u16 = 10;
const LOST_REFRESH: Duration = Duration::from_millis(250);

pub struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Events under the canary root (never forwarded to the sink).
    pub canary: Receiver<Event>,
    pub lost: Arc<AtomicU64>,
}

struct Routing {
    backend: Backend,
    /// Root directories by id, as text: every event's path is built on one of them.
    roots: Vec<String>,
    canary_id: u32,
    sink: ChangeSink,
    canary: Sender<Event>,
}

impl Reader {
    /// Takes the ring buffer and lost-counter maps out of `ebpf` and starts the thread.
    pub fn spawn(
        ebpf: &mut Ebpf,
        backend: Backend,
        roots: Vec<PathBuf>,
        canary_id: u32,
        sink: ChangeSink,
    ) -> Result<Self, Failure> {
        let ring = RingBuf::try_from(ebpf.take_map(maps::EVENTS).expect("object has dk_events"))
            .map_err(|e| explain("opening the dk_events ring buffer", &e))?;
        let lost_map: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(ebpf.take_map(maps::LOST).expect("object has dk_lost"))
                .map_err(|e| explain("opening the dk_lost counter", &e))?;
        let (canary_tx, canary) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicU64::new(0));
        let routing = Routing {
            backend,
            roots: roots
                .iter()
                .map(|root| root.to_string_lossy().into_owned())
                .collect(),
            canary_id,
            sink,
            canary: canary_tx,
        };
        let thread = {
            let (stop, lost) = (stop.clone(), lost.clone());
            std::thread::Builder::new()
                .name("ebpf-events".into())
                .spawn(move || run(ring, lost_map, routing, &stop, &lost))
                .map_err(|e| {
                    Failure::new(format!("cannot start the event reader thread: {e}"), "")
                })?
        };
        Ok(Self {
            stop,
            thread: Some(thread),
            canary,
            lost,
        })
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

fn run(
    mut ring: RingBuf<MapData>,
    lost_map: PerCpuArray<MapData, u64>,
    routing: Routing,
    stop: &AtomicBool,
    lost: &AtomicU64,
) {
    let mut lost_checked = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if !stopping {
            let mut fds = [PollFd::new(ring.as_fd(), PollFlags::POLLIN)];
            if let Err(e) = poll(&mut fds, PollTimeout::from(POLL_MS)) {
                if e != nix::errno::Errno::EINTR {
                    log::error!("[eBPF] poll on the ring buffer failed: {e}");
                    std::thread::sleep(Duration::from_millis(u64::from(POLL_MS)));
                }
            }
        }
        while let Some(record) = ring.next() {
            routing.route(&record);
        }
        if stopping || lost_checked.elapsed() >= LOST_REFRESH {
            if let Ok(per_cpu) = lost_map.get(&0, 0) {
                lost.store(per_cpu.iter().sum(), Ordering::Relaxed);
            }
            lost_checked = Instant::now();
        }
        if stopping {
            return;
        }
    }
}

impl Routing {
    fn route(&self, record: &[u8]) {
        match Event::parse(record) {
            Ok(event) => self.dispatch(event),
            Err(e) => log::warn!("[eBPF] dropping a malformed event: {e}"),
        }
    }

    fn dispatch(&self, event: Event) {
        let is_canary =
            |end: &Option<(u32, String)>| end.as_ref().is_some_and(|(id, _)| *id == self.canary_id);
        if is_canary(&event.path) || is_canary(&event.from) {
            let _ = self.canary.send(event);
            return;
        }
        if let Some(change) = self.to_change(event) {
            // A closed sink means the sidecar is shutting down; keep draining quietly.
            let _ = self.sink.send(change);
        }
    }

    /// `root/relative` in one allocation (this runs for every event at full write rate).
    fn absolute(&self, end: Option<(u32, String)>) -> Option<String> {
        let (id, relative) = end?;
        let root = self.roots.get(id as usize)?.trim_end_matches('/');
        let mut path = String::with_capacity(root.len() + 1 + relative.len());
        path.push_str(root);
        path.push('/');
        path.push_str(&relative);
        Some(path)
    }

    fn to_change(&self, event: Event) -> Option<Change> {
        let path = self.absolute(event.path);
        let from = self.absolute(event.from);
        let (op, path, from) = match (event.op, path, from) {
            (EventOp::Write, Some(p), _) => (Op::Write, p, None),
            (EventOp::Create, Some(p), _) => (Op::Create, p, None),
            (EventOp::Delete, Some(p), _) => (Op::Delete, p, None),
            (EventOp::Rename, Some(p), Some(f)) => (Op::Rename, p, Some(f)),
            // Moved in from outside the watched roots: a new file here.
            (EventOp::Rename, Some(p), None) => (Op::Create, p, None),
            // Moved out: gone from here.
            (EventOp::Rename, None, Some(f)) => (Op::Delete, f, None),
            _ => return None,
        };
        Some(Change {
            ts: SystemTime::now(),
            backend: self.backend,
            op,
            path,
            from,
            pid: Some(event.pid),
            comm: Some(event.comm),
            bytes: (op == Op::Write).then_some(event.bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> (Routing, Receiver<Change>, Receiver<Event>) {
        let (sink, changes) = crate::change::queue(crate::change::QUEUE_CAPACITY);
        let (canary, canaries) = mpsc::channel();
        let routing = Routing {
            backend: Backend::Tracepoint,
            roots: vec!["/state".into(), "/canary".into()],
            canary_id: 1,
            sink,
            canary,
        };
        (routing, changes, canaries)
    }

    fn event(op: EventOp, path: Option<(u32, &str)>, from: Option<(u32, &str)>) -> Event {
        Event {
            op,
            bytes: 5,
            pid: 9,
            tid: 9,
            comm: "app".into(),
            path: path.map(|(i, p)| (i, p.to_string())),
            from: from.map(|(i, p)| (i, p.to_string())),
            truncated: false,
        }
    }

    #[test]
    fn paths_join_on_any_root_including_slash() {
        let (r, _, _) = routing();
        assert_eq!(
            r.absolute(Some((0, "a/b".into()))).as_deref(),
            Some("/state/a/b")
        );
        assert_eq!(r.absolute(Some((7, "a".into()))), None);
        let top = Routing {
            roots: vec!["/".into()],
            ..r
        };
        assert_eq!(
            top.absolute(Some((0, "a/b".into()))).as_deref(),
            Some("/a/b")
        );
    }

    #[test]
    fn renames_across_the_boundary_become_create_or_delete() {
        let (r, _, _) = routing();
        let c = r
            .to_change(event(EventOp::Rename, Some((0, "a/b")), Some((0, "c"))))
            .unwrap();
        assert_eq!(
            (c.op, c.path.as_str(), c.from.as_deref()),
            (Op::Rename, "/state/a/b", Some("/state/c"))
        );
        let c = r
            .to_change(event(EventOp::Rename, Some((0, "in")), None))
            .unwrap();
        assert_eq!(
            (c.op, c.path.as_str(), c.bytes),
            (Op::Create, "/state/in", None)
        );
        let c = r
            .to_change(event(EventOp::Rename, None, Some((0, "out"))))
            .unwrap();
        assert_eq!((c.op, c.path.as_str()), (Op::Delete, "/state/out"));
        let c = r
            .to_change(event(EventOp::Write, Some((0, "f")), None))
            .unwrap();
        assert_eq!(
            (c.bytes, c.pid, c.comm.as_deref()),
            (Some(5), Some(9), Some("app"))
        );
    }

    #[test]
    fn canary_events_never_reach_the_sink() {
        let (r, changes, canaries) = routing();
        let ev = event(EventOp::Write, Some((1, "canary")), None);
        r.dispatch(ev.clone());
        r.route(&[]); // malformed: dropped
        assert!(changes.try_recv().is_err());
        assert_eq!(canaries.try_recv().unwrap(), ev);
        r.dispatch(event(EventOp::Write, Some((0, "f")), None));
        assert_eq!(changes.try_recv().unwrap().path, "/state/f");
    }
}
