//! Gap lines and the repair that follows them, on a real directory.

use super::test_fixture::Shared;
use super::*;

use crate::change::{Backend, Family};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::UNIX_EPOCH;

fn gap(root: &str, lost: Option<u64>) -> Gap {
    Gap {
        ts: UNIX_EPOCH + Duration::new(1_795_654_923, 0),
        backend: Backend::Ebpf(Family::Kprobe),
        roots: vec![root.into()],
        reason: GapReason::RingBufferFull,
        lost,
    }
}

#[test]
fn a_gap_line_names_roots_reason_and_lost() {
    let out = Shared::default();
    let mut j = Journal::new(Box::new(out.clone()), Duration::ZERO).starting_at(41);
    j.gap(gap("/s", Some(1234))).unwrap();
    j.gap(gap("/s", None)).unwrap();
    j.finish().unwrap();
    assert_eq!(
        out.text(),
        "{\"seq\":41,\"ts\":\"2026-11-26T01:02:03.000000000Z\",\"op\":\"gap\",\"roots\":[\"/s\"],\
         \"reason\":\"ring buffer full\",\"lost\":1234}\n\
         {\"seq\":42,\"ts\":\"2026-11-26T01:02:03.000000000Z\",\"op\":\"gap\",\"roots\":[\"/s\"],\
         \"reason\":\"ring buffer full\"}\n"
    );
}

#[test]
fn a_gap_is_followed_by_the_differences_a_rescan_finds() {
    let root = std::env::temp_dir().join(format!("dk-journal-repair-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("d/sub")).unwrap();
    std::fs::write(root.join("a"), "a").unwrap();
    std::fs::write(root.join("d/sub/b"), "b").unwrap();
    let out = Shared::default();
    let metrics = Arc::new(Metrics::default());
    let mut j = Journal::new(Box::new(out.clone()), Duration::ZERO).repairing(
        vec![root.clone()],
        DEFAULT_INDEX_LIMIT,
        metrics.clone(),
    );
    j.baseline().unwrap();
    // Changes nobody reported: a file and a directory tree go, others come.
    std::fs::remove_file(root.join("a")).unwrap();
    std::fs::remove_dir_all(root.join("d/sub")).unwrap();
    std::fs::write(root.join("c"), "c").unwrap();
    std::fs::create_dir(root.join("e")).unwrap();
    j.gap(gap(&root.to_string_lossy(), Some(3))).unwrap();
    j.finish().unwrap();
    let text = out.text();
    std::fs::remove_dir_all(&root).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let rel = v["path"]
                .as_str()
                .map(|p| p.trim_start_matches(&*root.to_string_lossy()).to_string());
            format!(
                "{} {} {} {}",
                v["seq"],
                v["op"].as_str().unwrap(),
                rel.unwrap_or_default(),
                v["repair"]
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            "1 gap  null",
            "2 delete /a true",
            "3 rmdir /d/sub true",
            "4 create /c true",
            "5 mkdir /e true",
        ]
    );
    let rendered = metrics.render();
    assert!(rendered.contains("diffkeeper_gaps_total{reason=\"ring_buffer_full\"} 1"));
    assert!(rendered.contains("diffkeeper_repair_lines_total 4"));
}

/// A path from bytes that need not be UTF-8.
fn bytes_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[test]
fn a_root_that_is_not_utf8_adds_every_roots_exact_bytes() {
    let out = Shared::default();
    let mut j = Journal::new(Box::new(out.clone()), Duration::ZERO);
    let mut lost = gap("/s", None);
    lost.roots.push(bytes_path(b"/r\xff"));
    j.gap(lost).unwrap();
    j.finish().unwrap();
    assert_eq!(
        out.text(),
        "{\"seq\":1,\"ts\":\"2026-11-26T01:02:03.000000000Z\",\"op\":\"gap\",\
         \"roots\":[\"/s\",\"/r\u{fffd}\"],\"roots_b64\":[\"L3M=\",\"L3L/\"],\
         \"reason\":\"ring buffer full\"}\n"
    );
}

#[test]
fn repair_lines_keep_names_that_differ_only_in_an_invalid_byte_apart() {
    let root = std::env::temp_dir().join(format!("dk-journal-names-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let name = |invalid: u8| {
        let mut bytes = root.as_os_str().as_bytes().to_vec();
        bytes.extend_from_slice(b"/bad");
        bytes.push(invalid);
        bytes_path(&bytes)
    };
    std::fs::write(name(0xff), "ff").unwrap();
    let out = Shared::default();
    let mut j = Journal::new(Box::new(out.clone()), Duration::ZERO).repairing(
        vec![root.clone()],
        DEFAULT_INDEX_LIMIT,
        Arc::new(Metrics::default()),
    );
    j.baseline().unwrap();
    // Unreported: the indexed name goes, its look-alike comes.
    std::fs::remove_file(name(0xff)).unwrap();
    std::fs::write(name(0xfe), "fe").unwrap();
    j.gap(gap(&root.to_string_lossy(), None)).unwrap();
    j.finish().unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    let lines: Vec<(String, Vec<u8>)> = out
        .lines()
        .iter()
        .skip(1)
        .map(|v| {
            let exact = v["path_b64"].as_str().expect("path_b64 on a lossy name");
            let bytes = diffkeeper_cli::name::decode_exact(exact).unwrap();
            (v["op"].as_str().unwrap().to_string(), bytes)
        })
        .collect();
    let exact = |invalid| name(invalid).into_os_string().into_vec();
    assert_eq!(
        lines,
        [
            ("delete".to_string(), exact(0xff)),
            ("create".to_string(), exact(0xfe))
        ]
    );
}

/// A backend that fences a gap goes on only once the journal has written the gap and its
/// repair (without waiting out the reorder window), so nothing it reads after the fence can
/// come before the repair.
#[test]
fn a_fence_returns_once_the_gap_and_its_repair_are_written() {
    let root = std::env::temp_dir().join(format!("dk-journal-fence-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let out = Shared::default();
    let (sink, queue) = crate::change::queue(16);
    let options = Options {
        coalesce: Duration::ZERO,
        roots: vec![root.clone()],
        index_limit: DEFAULT_INDEX_LIMIT,
    };
    let output = Output {
        out: Box::new(out.clone()),
        next_seq: 1,
    };
    let metrics = Arc::new(Metrics::default());
    let journal = std::thread::spawn(move || run(output, options, metrics, queue, None));
    assert!(
        sink.fence(Duration::from_secs(5)),
        "the start-up scan is done"
    );
    std::fs::write(root.join("unseen"), "x").unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut delivery = crate::change::Delivery::new(sink.clone(), stop);
    delivery.report_gap(gap(&root.to_string_lossy(), None));
    assert!(
        delivery.fence(Duration::from_secs(5)),
        "the journal answers"
    );
    let ops: Vec<String> = out
        .lines()
        .iter()
        .map(|l| format!("{} {}", l["op"].as_str().unwrap(), l["repair"]))
        .collect();
    assert_eq!(ops, ["gap null", "create true"]);
    drop((sink, delivery));
    journal.join().unwrap().unwrap();
    std::fs::remove_dir_all(&root).unwrap();
}
