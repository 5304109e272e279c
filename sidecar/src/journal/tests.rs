//! The journal from its inputs to its bytes: schema, escaping, coalescing, the thread.

use super::line::push_json_string;
use super::line_buf::LineBuf;
use super::test_fixture::Shared;
use super::*;

use crate::change::{Backend, Family};
use diffkeeper_cli::time::format_second;
use std::time::UNIX_EPOCH;

fn change(op: Op, path: &str, pid: u32, bytes: u64) -> Change {
    Change {
        ts: UNIX_EPOCH + Duration::new(1_795_000_000, 5),
        backend: Backend::Ebpf(Family::Tracepoint),
        op,
        path: path.into(),
        from: None,
        pid: Some(pid),
        comm: Some("app".into()),
        bytes: (op == Op::Write).then_some(bytes),
        truncated: false,
    }
}

fn journal(window_ms: u64) -> (Journal, Shared) {
    let out = Shared::default();
    (
        Journal::new(Box::new(out.clone()), Duration::from_millis(window_ms)),
        out,
    )
}

fn summary(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            format!(
                "{} {} {} {}",
                l["op"].as_str().unwrap(),
                l["path"].as_str().unwrap(),
                l["bytes"],
                l["count"]
            )
        })
        .collect()
}

#[test]
fn line_matches_the_readme_schema() {
    let (mut j, out) = journal(0);
    let mut c = change(Op::Write, "/state/a/b.txt", 123, 42);
    c.comm = Some("nginx".into());
    c.backend = Backend::Ebpf(Family::Kprobe);
    c.ts = UNIX_EPOCH + Duration::new(1_795_654_923, 123_456_789);
    j.push(c).unwrap();
    let mut r = change(Op::Rename, "/s/new", 7, 0);
    r.from = Some("/s/old".into());
    r.pid = None;
    r.comm = None;
    j.push(r).unwrap();
    j.finish().unwrap();
    let text = out.text();
    assert_eq!(
        text,
        "{\"seq\":1,\"ts\":\"2026-11-26T01:02:03.123456789Z\",\"backend\":\"kprobe\",\"op\":\"write\",\
         \"path\":\"/state/a/b.txt\",\"pid\":123,\"comm\":\"nginx\",\"bytes\":42}\n\
         {\"seq\":2,\"ts\":\"2026-11-18T11:06:40.000000005Z\",\"backend\":\"tracepoint\",\"op\":\"rename\",\
         \"path\":\"/s/new\",\"from\":\"/s/old\"}\n"
    );
}

#[test]
fn names_that_are_not_utf8_carry_their_exact_bytes_and_coalesce_apart() {
    use std::os::unix::ffi::OsStrExt;
    let path = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
    let (mut j, out) = journal(1000);
    for (name, bytes) in [
        (&b"/s/bad\xff"[..], 1),
        (b"/s/bad\xfe", 2),
        (b"/s/bad\xff", 4),
    ] {
        let mut w = change(Op::Write, "", 7, bytes);
        w.path = path(name);
        j.push(w).unwrap();
    }
    let mut r = change(Op::Rename, "", 7, 0);
    (r.path, r.from) = (path(b"/s/new\xfe"), Some(path(b"/s/bad\xff")));
    r.comm = None;
    j.push(r).unwrap();
    j.finish().unwrap();
    let lines: Vec<String> = out
        .text()
        .lines()
        .map(|l| l.split_once(",\"backend\"").unwrap().1.to_string())
        .collect();
    assert_eq!(
        lines,
        [
            ":\"tracepoint\",\"op\":\"write\",\"path\":\"/s/bad\u{fffd}\",\"path_b64\":\"L3MvYmFk/w==\",\
             \"pid\":7,\"comm\":\"app\",\"bytes\":5,\"count\":2}",
            ":\"tracepoint\",\"op\":\"rename\",\"path\":\"/s/new\u{fffd}\",\"path_b64\":\"L3MvbmV3/g==\",\
             \"from\":\"/s/bad\u{fffd}\",\"from_b64\":\"L3MvYmFk/w==\",\"pid\":7}",
            ":\"tracepoint\",\"op\":\"write\",\"path\":\"/s/bad\u{fffd}\",\"path_b64\":\"L3MvYmFk/g==\",\
             \"pid\":7,\"comm\":\"app\",\"bytes\":2}",
        ]
    );
}

#[test]
fn a_reopened_journal_file_continues_its_seq_after_a_torn_line() {
    let path = std::env::temp_dir().join(format!("dk-journal-append-{}", std::process::id()));
    // A previous run's last whole line, then one torn by a crash.
    std::fs::write(
        &path,
        "{\"seq\":41,\"op\":\"create\"}\n{\"seq\":42,\"op\":\"wri",
    )
    .unwrap();
    for _ in 0..2 {
        let output = open(&path).unwrap();
        let mut j = Journal::new(output.out, Duration::ZERO).starting_at(output.next_seq);
        j.push(change(Op::Create, "/s/f", 1, 0)).unwrap();
        j.finish().unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            v["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seqs, [41, 42, 43], "{text}");
}

#[test]
fn timestamps_across_dates() {
    // Leap day, end of year, the epoch, and a date after 2100 (not a leap year).
    for (secs, want) in [
        (0, "1970-01-01T00:00:00"),
        (951_782_400, "2000-02-29T00:00:00"),
        (1_704_067_199, "2023-12-31T23:59:59"),
        (4_107_542_400, "2100-03-01T00:00:00"),
    ] {
        assert_eq!(std::str::from_utf8(&format_second(secs)).unwrap(), want);
    }
}

#[test]
fn strings_are_escaped_so_any_path_stays_valid_json() {
    let path = "/s/q\"uo\\te\nnl\ttab\u{1}ctl/ünï";
    let mut buf = LineBuf::with_capacity(0);
    push_json_string(&mut buf, path);
    let back: String = serde_json::from_slice(buf.as_slice()).unwrap();
    assert_eq!(back, path);
}

#[test]
fn zero_window_writes_every_event() {
    let (mut j, out) = journal(0);
    for _ in 0..3 {
        j.push(change(Op::Write, "/s/f", 1, 10)).unwrap();
    }
    j.finish().unwrap();
    assert_eq!(summary(&out.lines()), vec!["write /s/f 10 null"; 3]);
}

#[test]
fn writes_to_one_path_are_summed_within_the_window() {
    let (mut j, out) = journal(50);
    let t0 = Instant::now();
    j.push_at(change(Op::Write, "/s/f", 1, 10), t0).unwrap();
    j.push_at(change(Op::Write, "/s/g", 1, 1), t0).unwrap();
    j.push_at(
        change(Op::Write, "/s/f", 1, 5),
        t0 + Duration::from_millis(10),
    )
    .unwrap();
    j.push_at(
        change(Op::Write, "/s/f", 1, 7),
        t0 + Duration::from_millis(49),
    )
    .unwrap();
    j.emit_due(t0 + Duration::from_millis(49)).unwrap();
    assert!(
        out.lines().is_empty(),
        "nothing is due before the window ends"
    );
    // The window closed: both held writes come out in opening order; a later write to the
    // same path opens a new window.
    j.push_at(
        change(Op::Write, "/s/f", 1, 3),
        t0 + Duration::from_millis(51),
    )
    .unwrap();
    j.finish().unwrap();
    let lines = out.lines();
    assert_eq!(
        summary(&lines),
        ["write /s/f 22 3", "write /s/g 1 null", "write /s/f 3 null"]
    );
    // The merged line keeps the first event's timestamp and writer.
    assert_eq!(lines[0]["ts"], "2026-11-18T11:06:40.000000005Z");
    assert_eq!(lines[0]["pid"], 1);
}

#[test]
fn other_changes_release_held_writes_first_so_order_is_kept() {
    let (mut j, out) = journal(1000);
    let t0 = Instant::now();
    j.push_at(change(Op::Write, "/s/a", 1, 4), t0).unwrap();
    j.push_at(change(Op::Write, "/s/a", 1, 4), t0).unwrap();
    j.push_at(change(Op::Write, "/s/other", 1, 9), t0).unwrap();
    let mut rename = change(Op::Rename, "/s/b", 1, 0);
    rename.from = Some("/s/a".into());
    j.push_at(rename, t0).unwrap();
    j.push_at(change(Op::Write, "/s/b", 1, 1), t0).unwrap();
    j.push_at(change(Op::Delete, "/s/b", 1, 0), t0).unwrap();
    j.finish().unwrap();
    assert_eq!(
        summary(&out.lines()),
        [
            "write /s/a 8 2",
            "rename /s/b null null",
            "write /s/b 1 null",
            "delete /s/b null null",
            "write /s/other 9 null"
        ]
    );
}

#[test]
fn a_rename_or_delete_of_a_directory_releases_what_is_held_below_it_first() {
    let (mut j, out) = journal(1000);
    let t0 = Instant::now();
    j.push_at(change(Op::Write, "/s/d/f", 1, 1), t0).unwrap();
    j.push_at(change(Op::Write, "/s/dd/f", 1, 2), t0).unwrap();
    j.push_at(change(Op::Write, "/s/d/sub/g", 1, 3), t0)
        .unwrap();
    j.push_at(change(Op::Write, "/s/d/f", 1, 1), t0).unwrap();
    let mut rename = change(Op::Rename, "/s/e", 1, 0);
    rename.from = Some("/s/d".into());
    j.push_at(rename, t0).unwrap();
    j.push_at(change(Op::Write, "/s/e/f", 1, 4), t0).unwrap();
    j.push_at(change(Op::Write, "/s/e/sub/g", 1, 5), t0)
        .unwrap();
    j.push_at(change(Op::Delete, "/s/e/sub", 1, 0), t0).unwrap();
    // A sibling whose name only starts the same ("/s/dd" vs "/s/d") stays held.
    j.push_at(change(Op::Delete, "/s/e", 1, 0), t0).unwrap();
    j.finish().unwrap();
    assert_eq!(
        summary(&out.lines()),
        [
            // In the order their windows opened, then the rename.
            "write /s/d/f 2 2",
            "write /s/d/sub/g 3 null",
            "rename /s/e null null",
            "write /s/e/sub/g 5 null",
            "delete /s/e/sub null null",
            "write /s/e/f 4 null",
            "delete /s/e null null",
            "write /s/dd/f 2 null",
        ]
    );
}

#[test]
fn a_different_writer_starts_a_new_line() {
    let (mut j, out) = journal(1000);
    let t0 = Instant::now();
    j.push_at(change(Op::Write, "/s/f", 1, 1), t0).unwrap();
    j.push_at(change(Op::Write, "/s/f", 1, 1), t0).unwrap();
    j.push_at(change(Op::Write, "/s/f", 2, 5), t0).unwrap();
    j.finish().unwrap();
    let lines = out.lines();
    assert_eq!(summary(&lines), ["write /s/f 2 2", "write /s/f 5 null"]);
    assert_eq!(
        (lines[0]["pid"].clone(), lines[1]["pid"].clone()),
        (1.into(), 2.into())
    );
}

#[test]
fn run_counts_events_and_flushes_held_writes_at_disconnect() {
    let out = Shared::default();
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = crate::change::queue(16);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut delivery = crate::change::Delivery::new(tx, stop);
    for _ in 0..4 {
        delivery.deliver(change(Op::Write, "/s/f", 1, 2));
    }
    delivery.deliver(change(Op::Create, "/s/g", 1, 0));
    drop(delivery);
    let output = Output {
        out: Box::new(out.clone()),
        next_seq: 1,
    };
    let options = Options {
        coalesce: Duration::from_secs(60),
        roots: Vec::new(),
        index_limit: DEFAULT_INDEX_LIMIT,
    };
    run(output, options, metrics.clone(), rx, None).unwrap();
    // Another path's change is not held back; the held write comes out at the end.
    assert_eq!(
        summary(&out.lines()),
        ["create /s/g null null", "write /s/f 8 4"]
    );
    let text = metrics.render();
    assert!(text.contains("diffkeeper_events_total{backend=\"tracepoint\",op=\"write\"} 4"));
    assert!(text.contains("diffkeeper_events_total{backend=\"tracepoint\",op=\"create\"} 1"));
}
