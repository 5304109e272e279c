//! The journal: one JSON line per change (schema: the README's "Journal" section), written by a single thread that
//! also coalesces bursts of writes to one path.
//!
//! This is the hot path (eBPF can deliver millions of events per second), so a line is built in
//! a reused buffer with hand-written JSON, the date part of the timestamp is cached per second,
//! and output goes through a large buffer that is flushed whenever the queue runs empty.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diffkeeper_cli::time::{format_second, put_padded};

use crate::change::{Change, Op};
use crate::metrics::Metrics;

/// `--journal -`: the journal goes to stdout.
pub const STDOUT: &str = "-";

const OUTPUT_BUFFER_BYTES: usize = 64 * 1024;

/// Opens the journal target: stdout for `-`, else the file in append mode (created if absent).
pub fn open(target: &Path) -> io::Result<Box<dyn Write + Send>> {
    if target.as_os_str() == STDOUT {
        return Ok(Box::new(io::stdout()));
    }
    let file: File = OpenOptions::new().create(true).append(true).open(target)?;
    Ok(Box::new(file))
}

/// Writes every change received on `rx` until all senders are gone, then emits what is still
/// being coalesced and flushes. Events are counted in `metrics` before coalescing.
pub fn run(
    out: Box<dyn Write + Send>,
    coalesce: Duration,
    metrics: Arc<Metrics>,
    rx: Receiver<Change>,
) -> io::Result<()> {
    let mut journal = Journal::new(out, coalesce);
    loop {
        let change = match rx.try_recv() {
            Ok(change) => change,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                // Idle: emit what is due, flush, then sleep until a change or the next deadline.
                journal.emit_due(Instant::now())?;
                journal.out.flush()?;
                let received = match journal.coalescer.next_deadline() {
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some(deadline) => {
                        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    }
                };
                journal.set_clock(Instant::now());
                match received {
                    Ok(change) => change,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        metrics.count_event(change.backend, change.op);
        journal.push(change)?;
    }
    journal.finish()
}

/// Line formatting plus coalescing, independent of where changes come from (unit-testable).
pub struct Journal {
    out: BufWriter<Box<dyn Write + Send>>,
    line: LineBuilder,
    coalescer: Coalescer,
    /// Reading the clock costs as much as formatting a line, so a busy journal reads it only
    /// every [`CLOCK_EVERY`] changes (and [`run`] refreshes it whenever it wakes up).
    clock: Instant,
    since_clock: u32,
}

const CLOCK_EVERY: u32 = 64;

impl Journal {
    pub fn new(out: Box<dyn Write + Send>, coalesce: Duration) -> Self {
        Self {
            out: BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, out),
            line: LineBuilder::default(),
            coalescer: Coalescer::new(coalesce),
            clock: Instant::now(),
            since_clock: 0,
        }
    }

    /// Sets the time used for coalescing windows (after the caller waited, the cached one is old).
    pub fn set_clock(&mut self, now: Instant) {
        self.clock = now;
        self.since_clock = 0;
    }

    /// Takes one change: a write may be held back to be merged with the next ones to its path;
    /// anything else first releases what is held for the paths it touches, keeping their order.
    pub fn push(&mut self, change: Change) -> io::Result<()> {
        if self.coalescer.is_off() {
            return self.write(&change, 1);
        }
        self.since_clock += 1;
        if self.since_clock >= CLOCK_EVERY {
            self.set_clock(Instant::now());
        }
        self.push_at(change, self.clock)
    }

    fn push_at(&mut self, change: Change, now: Instant) -> io::Result<()> {
        if self.coalescer.is_off() {
            return self.write(&change, 1);
        }
        if !self.coalescer.is_empty() {
            self.emit_due(now)?;
        }
        if change.op == Op::Write {
            if let Some((earlier, count)) = self.coalescer.add_write(change, now) {
                self.write(&earlier, count)?;
            }
            return Ok(());
        }
        for path in std::iter::once(&change.path).chain(change.from.as_ref()) {
            if let Some((held, count)) = self.coalescer.take(path) {
                self.write(&held, count)?;
            }
        }
        self.write(&change, 1)
    }

    /// Emits the coalesced writes whose window has closed by `now`.
    pub fn emit_due(&mut self, now: Instant) -> io::Result<()> {
        while let Some((change, count)) = self.coalescer.pop_due(now) {
            self.write(&change, count)?;
        }
        Ok(())
    }

    /// Emits everything still held and flushes.
    pub fn finish(mut self) -> io::Result<()> {
        while let Some((change, count)) = self.coalescer.pop_any() {
            self.write(&change, count)?;
        }
        self.out.flush()
    }

    fn write(&mut self, change: &Change, count: u64) -> io::Result<()> {
        self.out.write_all(self.line.build(change, count))
    }
}

/// Held-back writes, one per path, released when their window closes (in the order their
/// windows opened) or when the path sees another kind of change.
struct Coalescer {
    window: Duration,
    /// Keyed by path; the held change's own `path` is empty meanwhile (moved into the key).
    held: HashMap<String, Held>,
    /// Window deadlines in opening order (the window length is fixed, so this is also deadline
    /// order). Entries whose `seq` no longer matches `held` were released early: skipped.
    deadlines: VecDeque<(Instant, u64, String)>,
    next_seq: u64,
}

struct Held {
    change: Change,
    count: u64,
    seq: u64,
}

impl Coalescer {
    fn new(window: Duration) -> Self {
        Self {
            window,
            held: HashMap::new(),
            deadlines: VecDeque::new(),
            next_seq: 0,
        }
    }

    fn is_off(&self) -> bool {
        self.window.is_zero()
    }

    fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Merges a write into the one held for its path, or holds it. Returns a held write that
    /// had to be released first (same path, different writer).
    fn add_write(&mut self, mut change: Change, now: Instant) -> Option<(Change, u64)> {
        let seq = self.next_seq;
        let deadline = now + self.window;
        // Look up by reference first: merging, the common case, allocates nothing.
        let released = match self.held.get_mut(&change.path) {
            Some(held) if held.change.pid == change.pid => {
                held.count += 1;
                held.change.bytes = match (held.change.bytes, change.bytes) {
                    (Some(a), Some(b)) => Some(a.saturating_add(b)),
                    (a, b) => a.or(b),
                };
                return None;
            }
            // Another process wrote: keep pid/comm truthful by starting a new window.
            Some(held) => {
                let path = std::mem::take(&mut change.path);
                let mut old = std::mem::replace(
                    held,
                    Held {
                        change,
                        count: 1,
                        seq,
                    },
                );
                self.deadlines.push_back((deadline, seq, path.clone()));
                old.change.path = path;
                Some((old.change, old.count))
            }
            None => {
                // The path moves into the key; `take` puts it back.
                let path = std::mem::take(&mut change.path);
                self.deadlines.push_back((deadline, seq, path.clone()));
                self.held.insert(
                    path,
                    Held {
                        change,
                        count: 1,
                        seq,
                    },
                );
                None
            }
        };
        self.next_seq += 1;
        released
    }

    fn take(&mut self, path: &str) -> Option<(Change, u64)> {
        self.held.remove_entry(path).map(|(path, mut held)| {
            held.change.path = path;
            (held.change, held.count)
        })
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_released();
        self.deadlines.front().map(|(deadline, _, _)| *deadline)
    }

    fn pop_due(&mut self, now: Instant) -> Option<(Change, u64)> {
        match self.next_deadline() {
            Some(deadline) if deadline <= now => self.pop_any(),
            _ => None,
        }
    }

    fn pop_any(&mut self) -> Option<(Change, u64)> {
        self.skip_released();
        let (_, _, path) = self.deadlines.pop_front()?;
        self.take(&path)
    }

    fn skip_released(&mut self) {
        while let Some((_, seq, path)) = self.deadlines.front() {
            if self.held.get(path).is_some_and(|h| h.seq == *seq) {
                return;
            }
            self.deadlines.pop_front();
        }
    }
}

/// Builds one journal line in a reused buffer.
#[derive(Default)]
struct LineBuilder {
    buf: Vec<u8>,
    clock: TimestampCache,
}

impl LineBuilder {
    fn build(&mut self, c: &Change, count: u64) -> &[u8] {
        let buf = &mut self.buf;
        buf.clear();
        buf.extend_from_slice(b"{\"ts\":\"");
        self.clock.write(buf, c.ts);
        buf.extend_from_slice(b"\",\"backend\":\"");
        buf.extend_from_slice(c.backend.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"op\":\"");
        buf.extend_from_slice(c.op.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"path\":");
        push_json_string(buf, &c.path);
        if let Some(from) = &c.from {
            buf.extend_from_slice(b",\"from\":");
            push_json_string(buf, from);
        }
        if let Some(pid) = c.pid {
            buf.extend_from_slice(b",\"pid\":");
            push_decimal(buf, pid.into());
        }
        if let Some(comm) = &c.comm {
            buf.extend_from_slice(b",\"comm\":");
            push_json_string(buf, comm);
        }
        if let Some(bytes) = c.bytes {
            buf.extend_from_slice(b",\"bytes\":");
            push_decimal(buf, bytes);
        }
        if count > 1 {
            buf.extend_from_slice(b",\"count\":");
            push_decimal(buf, count);
        }
        buf.extend_from_slice(b"}\n");
        buf
    }
}

/// Formats `ts` as RFC 3339 UTC with nanoseconds, reusing the `YYYY-MM-DDTHH:MM:SS` part while
/// the second does not change.
#[derive(Default)]
struct TimestampCache {
    second: Option<u64>,
    prefix: [u8; 19],
}

impl TimestampCache {
    fn write(&mut self, buf: &mut Vec<u8>, ts: SystemTime) {
        // Times before 1970 do not occur for events; clamp rather than fail.
        let since_epoch = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since_epoch.as_secs();
        if self.second != Some(secs) {
            self.prefix = format_second(secs);
            self.second = Some(secs);
        }
        buf.extend_from_slice(&self.prefix);
        buf.push(b'.');
        push_padded(buf, since_epoch.subsec_nanos().into(), 9);
        buf.push(b'Z');
    }
}

fn push_padded(buf: &mut Vec<u8>, value: u64, width: usize) {
    let start = buf.len();
    buf.resize(start + width, b'0');
    put_padded(&mut buf[start..], value);
}

fn push_decimal(buf: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Appends `s` as a JSON string; the common case (nothing to escape) is one copy.
fn push_json_string(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[plain_from..i]);
        if escape.is_empty() {
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xf)]);
        } else {
            buf.extend_from_slice(escape);
        }
        plain_from = i + 1;
    }
    buf.extend_from_slice(&bytes[plain_from..]);
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Backend, Family};
    use std::sync::Mutex;

    /// A `Write` whose contents the test can read after the journal is done.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
                .collect()
        }
    }

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
    fn line_matches_the_design_schema() {
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
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "{\"ts\":\"2026-11-26T01:02:03.123456789Z\",\"backend\":\"kprobe\",\"op\":\"write\",\
             \"path\":\"/state/a/b.txt\",\"pid\":123,\"comm\":\"nginx\",\"bytes\":42}\n\
             {\"ts\":\"2026-11-18T11:06:40.000000005Z\",\"backend\":\"tracepoint\",\"op\":\"rename\",\
             \"path\":\"/s/new\",\"from\":\"/s/old\"}\n"
        );
    }

    #[test]
    fn a_journal_file_is_appended_to() {
        let path = std::env::temp_dir().join(format!("dk-journal-append-{}", std::process::id()));
        std::fs::write(&path, "earlier\n").unwrap();
        for _ in 0..2 {
            let mut j = Journal::new(open(&path).unwrap(), Duration::ZERO);
            j.push(change(Op::Create, "/s/f", 1, 0)).unwrap();
            j.finish().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "earlier");
        assert!(
            lines[1..].iter().all(|l| l.contains("\"op\":\"create\"")),
            "{text}"
        );
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
        let mut buf = Vec::new();
        push_json_string(&mut buf, path);
        let back: String = serde_json::from_slice(&buf).unwrap();
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
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            tx.send(change(Op::Write, "/s/f", 1, 2)).unwrap();
        }
        tx.send(change(Op::Create, "/s/g", 1, 0)).unwrap();
        drop(tx);
        run(
            Box::new(out.clone()),
            Duration::from_secs(60),
            metrics.clone(),
            rx,
        )
        .unwrap();
        // Another path's change is not held back; the held write comes out at the end.
        assert_eq!(
            summary(&out.lines()),
            ["create /s/g null null", "write /s/f 8 4"]
        );
        let text = metrics.render();
        assert!(text.contains("diffkeeper_events_total{backend=\"tracepoint\",op=\"write\"} 4"));
        assert!(text.contains("diffkeeper_events_total{backend=\"tracepoint\",op=\"create\"} 1"));
    }
}
