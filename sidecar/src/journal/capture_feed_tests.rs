//! With `--store`: what the journal hands to capture and how capture's notes are numbered.

use super::test_fixture::Shared;
use super::*;

use crate::capture::note::{Content, Note};
use crate::capture::test_feed;
use crate::change::Family;
use std::time::UNIX_EPOCH;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::new(1_795_654_920 + secs, 0)
}

fn change(op: Op, path: &str, secs: u64) -> Change {
    Change {
        ts: at(secs),
        backend: Backend::Ebpf(Family::Kprobe),
        op,
        path: path.into(),
        from: None,
        truncated: false,
        pid: None,
        comm: None,
        bytes: None,
    }
}

#[test]
fn notes_are_numbered_lines_that_never_move_ts_back_nor_enter_the_index() {
    let out = Shared::default();
    let (feed, jobs, notes, _stats) = test_feed(16);
    let mut j = Journal::new(Box::new(out.clone()), Duration::ZERO).starting_at(7);
    j.capture = Some(feed);
    j.push(change(Op::Create, "/s/a", 5)).unwrap();
    // Made "later" by capture's clock than the next change's ts: carries the journal's last ts.
    let mut note = Note::new(Some(Path::new("/s/a")), Content::Skipped, "too big");
    note.ts = at(100);
    notes.send(note).unwrap();
    j.write_notes().unwrap();
    j.push(change(Op::Write, "/s/a", 6)).unwrap();
    j.finish().unwrap();
    let lines = out.lines();
    let summary: Vec<String> = lines
        .iter()
        .map(|v| format!("{} {} {}", v["seq"], v["op"].as_str().unwrap(), v["ts"]))
        .collect();
    assert_eq!(
        summary,
        [
            "7 create \"2026-11-26T01:02:05.000000000Z\"",
            "8 capture \"2026-11-26T01:02:05.000000000Z\"",
            "9 write \"2026-11-26T01:02:06.000000000Z\"",
        ]
    );
    assert_eq!(lines[1]["content"], "skipped");
    assert_eq!(lines[1]["reason"], "too big");
    let fed: Vec<PathBuf> = jobs.try_iter().map(|job| job.path).collect();
    assert_eq!(
        fed,
        [Path::new("/s/a"); 2],
        "both changes fed, the note not"
    );
}

#[test]
fn a_gap_asks_capture_to_rescan_and_its_repair_lines_are_fed() {
    let root = std::env::temp_dir().join(format!("dk-journal-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a"), "a").unwrap();
    let (feed, jobs, _notes, stats) = test_feed(16);
    let metrics = Arc::new(Metrics::default());
    let out = Shared::default();
    let mut j = Journal::new(Box::new(out.clone()), Duration::ZERO).repairing(
        vec![root.clone()],
        DEFAULT_INDEX_LIMIT,
        metrics,
    );
    j.capture = Some(feed);
    j.baseline().unwrap();
    std::fs::remove_file(root.join("a")).unwrap();
    std::fs::write(root.join("b"), "b").unwrap();
    assert!(!stats.rescan_asked());
    j.gap(Gap {
        ts: at(1),
        backend: Backend::Ebpf(Family::Kprobe),
        roots: vec![root.clone()],
        reason: GapReason::RingBufferFull,
        lost: Some(2),
    })
    .unwrap();
    j.finish().unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    assert!(stats.rescan_asked(), "a gap must make capture rescan");
    let fed: Vec<String> = jobs
        .try_iter()
        .map(|job| format!("{} {}", job.op.as_str(), job.path.display()))
        .collect();
    let root = root.to_string_lossy();
    assert_eq!(
        fed,
        [format!("delete {root}/a"), format!("create {root}/b")]
    );
    let ops: Vec<String> = out
        .lines()
        .iter()
        .map(|v| format!("{} {}", v["seq"], v["op"].as_str().unwrap()))
        .collect();
    assert_eq!(ops, ["1 gap", "2 delete", "3 create"]);
}
