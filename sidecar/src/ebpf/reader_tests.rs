//! Tests of the reader's routing: how events become changes, held back and handed on.

use super::*;
use std::path::Path;

fn routing() -> (Routing, crate::change::ChangeQueue, Receiver<Event>) {
    let (routing, changes, canaries, _stop) = routing_with_queue(crate::change::QUEUE_CAPACITY);
    (routing, changes, canaries)
}

/// The routing, the journal's end of its queue, the canary events, and its stop flag.
fn routing_with_queue(
    capacity: usize,
) -> (
    Routing,
    crate::change::ChangeQueue,
    Receiver<Event>,
    Arc<AtomicBool>,
) {
    let (sink, changes) = crate::change::queue(capacity);
    let (canary, canaries) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let (admission, held) = Admission::new(Family::Tracepoint);
    admission.admit();
    let routing = Routing {
        backend: Backend::Ebpf(Family::Tracepoint),
        roots: vec!["/state".into(), "/canary".into()],
        canary_id: 1,
        delivery: Delivery::new(sink, stop.clone()),
        held,
        canary,
        clock: WallClock::new(diffkeeper_ebpf::object::Clock::Boottime),
        unreported: Arc::default(),
        spare_paths: Vec::new(),
    };
    (routing, changes, canaries, stop)
}

fn event(op: Op, path: Option<(u32, &str)>, from: Option<(u32, &str)>) -> Event {
    Event {
        op,
        bytes: 5,
        ts_ns: 0,
        pid: 9,
        tid: 9,
        comm: "app".into(),
        path: path.map(|(i, p)| (i, p.as_bytes().to_vec())),
        from: from.map(|(i, p)| (i, p.as_bytes().to_vec())),
        name: None,
        truncated: false,
    }
}

fn named(op: Op, dir: &str, name: &str, truncated: bool) -> Event {
    Event {
        name: Some(Names {
            path: (!truncated).then(|| name.as_bytes().to_vec()),
            ..Names::default()
        }),
        truncated,
        ..event(op, Some((0, dir)), None)
    }
}

#[test]
fn names_are_placed_below_their_directory_or_flagged() {
    let (mut r, changes, _) = routing();
    let mut placed = |op: Op, dir: &str, name: &str, truncated: bool| {
        r.dispatch(named(op, dir, name, truncated));
        changes.try_iter().next()
    };
    let c = placed(Op::Create, "a/b", "c.txt", false).unwrap();
    assert_eq!(
        (c.op, c.path.to_str().unwrap(), c.truncated),
        (Op::Create, "/state/a/b/c.txt", false)
    );
    assert_eq!(
        placed(Op::Mkdir, "", "top", false).unwrap().path,
        Path::new("/state/top")
    );
    assert_eq!(
        placed(Op::Delete, "a", ".//x", false).unwrap().path,
        Path::new("/state/a/x")
    );
    // Outside the directory: the directory, flagged, and counted.
    let c = placed(Op::Rmdir, "a", "../x", false).unwrap();
    assert_eq!(
        (c.op, c.path.to_str().unwrap(), c.truncated),
        (Op::Rmdir, "/state/a/", true)
    );
    // Cut by the kernel side: the directory, flagged, never a name it did not send.
    let c = placed(Op::Attrib, "a/b", "", true).unwrap();
    assert_eq!(
        (c.path.to_str().unwrap(), c.truncated),
        ("/state/a/b/", true)
    );
    // An absolute name below no root is not a change here.
    let abs = Event {
        name: Some(Names {
            path: Some(b"/elsewhere/x".to_vec()),
            ..Names::default()
        }),
        ..event(
            Op::Create,
            Some((diffkeeper_ebpf::event::DK_ROOT_ABS, "")),
            None,
        )
    };
    r.dispatch(abs);
    assert!(changes.try_iter().next().is_none());
    // Changed in memory during the call: the directory, flagged, and counted.
    let mut raced = named(Op::Create, "a", "x", false);
    raced.name.as_mut().unwrap().raced = true;
    r.dispatch(raced);
    let c = changes.try_iter().next().unwrap();
    assert_eq!((c.path.to_str().unwrap(), c.truncated), ("/state/a/", true));
    assert_eq!(r.unreported.unplaced_names(), 2);
    let counts = r.unreported.by_reason();
    assert_eq!(counts.last(), Some(&("unplaced_name", 2)));
}

#[test]
fn content_and_exchange_make_a_second_line() {
    let (mut r, changes, _) = routing();
    let mut tmpfile = named(Op::Create, "", "final.txt", false);
    tmpfile.bytes = 6;
    tmpfile.name.as_mut().unwrap().content = true;
    r.dispatch(tmpfile);
    let (create, write) = (
        changes.try_iter().next().unwrap(),
        changes.try_iter().next().unwrap(),
    );
    assert_eq!((create.op, create.bytes), (Op::Create, None));
    assert_eq!(
        (write.op, write.path.to_str().unwrap(), write.bytes),
        (Op::Write, "/state/final.txt", Some(6))
    );
    let swap = Event {
        name: Some(Names {
            path: Some("b".into()),
            from: Some("a".into()),
            exchange: true,
            ..Names::default()
        }),
        ..event(Op::Rename, Some((0, "")), Some((0, "")))
    };
    r.dispatch(swap);
    let (one, two) = (
        changes.try_iter().next().unwrap(),
        changes.try_iter().next().unwrap(),
    );
    assert_eq!(
        (one.path.to_str().unwrap(), one.from.as_deref()),
        ("/state/b", Some(Path::new("/state/a")))
    );
    assert_eq!(
        (two.path.to_str().unwrap(), two.from.as_deref()),
        ("/state/a", Some(Path::new("/state/b")))
    );
}

#[test]
fn an_unplaced_name_is_a_flagged_line_or_else_a_gap_where_it_happened() {
    let (mut r, changes, _) = routing();
    r.dispatch(named(Op::Create, "a", "c.txt", false));
    r.dispatch(named(Op::Create, "a", "../x", false));
    // Relative to a root's own directory: no directory left to name, so a gap.
    let mut rootless = named(Op::Create, "", "../y", false);
    rootless.path = Some((diffkeeper_ebpf::event::DK_ROOT_ABS, Vec::new()));
    rootless.name.as_mut().unwrap().path = Some(b"/state/../y".to_vec());
    r.dispatch(rootless);
    r.dispatch(named(Op::Create, "a", "d.txt", false));
    let got: Vec<String> = changes
        .rx
        .try_iter()
        .flatten()
        .map(|record| match record {
            crate::change::Record::Gap(gap) => {
                format!("gap {} {:?}", gap.reason.as_str(), gap.lost)
            }
            crate::change::Record::Change(c) => {
                format!("{} {} {}", c.op.as_str(), c.path.display(), c.truncated)
            }
            crate::change::Record::Fence(_) => "fence".into(),
        })
        .collect();
    assert_eq!(
        got,
        [
            "create /state/a/c.txt false",
            "create /state/a/ true",
            "gap unplaced name Some(1)",
            "create /state/a/d.txt false"
        ]
    );
}

#[test]
fn paths_join_on_any_root_including_slash() {
    let (mut r, _, _) = routing();
    assert_eq!(
        r.absolute(Some((0, b"a/b"))).as_deref(),
        Some(Path::new("/state/a/b"))
    );
    assert_eq!(r.absolute(Some((7, b"a"))), None);
    let mut top = Routing {
        roots: vec!["/".into()],
        ..r
    };
    assert_eq!(
        top.absolute(Some((0, b"a/b"))).as_deref(),
        Some(Path::new("/a/b"))
    );
}

#[test]
fn renames_across_the_boundary_become_create_or_delete() {
    let (mut r, _, _) = routing();
    let c = r
        .change_of(&event(Op::Rename, Some((0, "a/b")), Some((0, "c"))).as_ref())
        .unwrap();
    assert_eq!(
        (c.op, c.path.to_str().unwrap(), c.from.as_deref()),
        (Op::Rename, "/state/a/b", Some(Path::new("/state/c")))
    );
    let c = r
        .change_of(&event(Op::Rename, Some((0, "in")), None).as_ref())
        .unwrap();
    assert_eq!(
        (c.op, c.path.to_str().unwrap(), c.bytes),
        (Op::Create, "/state/in", None)
    );
    let c = r
        .change_of(&event(Op::Rename, None, Some((0, "out"))).as_ref())
        .unwrap();
    assert_eq!((c.op, c.path.to_str().unwrap()), (Op::Delete, "/state/out"));
    let c = r
        .change_of(&event(Op::Write, Some((0, "f")), None).as_ref())
        .unwrap();
    assert_eq!(
        (c.bytes, c.pid, c.comm),
        (Some(5), Some(9), Some("app".into()))
    );
}

#[test]
fn directories_and_attribute_changes_are_journaled_as_their_own_ops() {
    let (mut r, _, _) = routing();
    for op in [Op::Mkdir, Op::Rmdir, Op::Attrib, Op::Delete] {
        let c = r
            .change_of(&event(op, Some((0, "d")), None).as_ref())
            .unwrap();
        assert_eq!(
            (c.op, c.path.to_str().unwrap(), c.from, c.bytes),
            (op, "/state/d", None, None)
        );
    }
}

#[test]
fn canary_events_never_reach_the_sink() {
    let (mut r, changes, canaries) = routing();
    let ev = event(Op::Write, Some((1, "canary")), None);
    r.dispatch(ev.clone());
    r.route(&[]); // malformed: dropped
    assert!(changes.try_iter().next().is_none());
    assert_eq!(canaries.try_recv().unwrap(), ev);
    r.dispatch(event(Op::Write, Some((0, "f")), None));
    assert_eq!(
        changes.try_iter().next().unwrap().path,
        Path::new("/state/f")
    );
}

#[test]
fn a_full_queue_holds_the_reader_until_the_journal_takes_a_change() {
    let (mut r, changes, _, _) = routing_with_queue(1);
    r.dispatch(event(Op::Write, Some((0, "first")), None));
    let journal = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let first = changes.iter().next().unwrap();
        (first, changes.iter().next().unwrap())
    });
    // Blocks until the "journal" above takes the first change: nothing is dropped.
    r.dispatch(event(Op::Write, Some((0, "second")), None));
    let (first, second) = journal.join().unwrap();
    assert_eq!(
        (first.path.to_str().unwrap(), second.path.to_str().unwrap()),
        ("/state/first", "/state/second")
    );
    assert_eq!(r.delivery.dropped(), 0);
}

#[test]
fn stopping_with_a_stuck_journal_drops_and_counts_instead_of_hanging() {
    let (mut r, changes, _, stop) = routing_with_queue(1);
    r.dispatch(event(Op::Write, Some((0, "queued")), None));
    // The journal never reads again (its output is stuck); the reader is blocked in
    // deliver() when stop arrives, and must come back with its changes counted.
    let (done_tx, done) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        r.dispatch(event(Op::Write, Some((0, "waiting")), None));
        r.dispatch(event(Op::Write, Some((0, "after")), None));
        done_tx.send(()).unwrap();
        r
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        done.try_recv().is_err(),
        "the reader must wait while running"
    );
    stop.store(true, Ordering::Release);
    done.recv_timeout(Duration::from_secs(5))
        .expect("the reader came back after stop");
    let r = reader.join().unwrap();
    assert_eq!(r.delivery.dropped(), 2);
    assert_eq!(
        changes.try_iter().next().unwrap().path,
        Path::new("/state/queued")
    );
}

#[test]
fn change_time_is_the_kernel_stamp_on_the_wall_clock() {
    let (mut r, _, _) = routing();
    let boot_ns =
        |t: nix::sys::time::TimeSpec| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64;
    let now = boot_ns(nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).unwrap());
    let mut early = event(Op::Write, Some((0, "f")), None);
    early.ts_ns = now - 2_000_000_000;
    let mut late = early.clone();
    late.ts_ns = now - 1_000_000_000;
    let (early, late) = (
        r.change_of(&early.as_ref()).unwrap().ts,
        r.change_of(&late.as_ref()).unwrap().ts,
    );
    assert_eq!(late.duration_since(early).unwrap(), Duration::from_secs(1));
    let age = std::time::SystemTime::now().duration_since(late).unwrap();
    assert!(
        age >= Duration::from_secs(1) && age < Duration::from_millis(1100),
        "{age:?}"
    );
}
