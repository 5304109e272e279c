//! One change as one JSON line, built in place in the journal's pending output with
//! hand-written JSON (the journal is the hot path); the field order is the schema of
//! docs/sidecar.md.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use diffkeeper_cli::name::printed;
use diffkeeper_cli::time::format_second;

use super::line_buf::LineBuf;
use crate::capture::note::Note;
use crate::change::{Backend, Change, Comm, Gap, Op};

/// Builds journal lines one after another into the pending output ([`LineBuilder::pending`]).
pub(super) struct LineBuilder {
    buf: LineBuf,
    clock: TimestampCache,
    /// Where the line being built starts.
    start: usize,
    /// What follows the time in a change's line, by backend and op, up to its path's value:
    /// `Z","backend":"B","op":"O","path":"` (one copy instead of eight).
    heads: Vec<Vec<u8>>,
}

/// The end of every head in [`LineBuilder::heads`].
const PATH_KEY: &[u8] = b"\"path\":\"";

impl LineBuilder {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        let mut heads = Vec::with_capacity(Backend::ALL.len() * Op::ALL.len());
        for backend in Backend::ALL {
            for op in Op::ALL {
                let head = format!(
                    "Z\",\"backend\":\"{}\",\"op\":\"{}\",",
                    backend.as_str(),
                    op.as_str()
                );
                heads.push([head.as_bytes(), PATH_KEY].concat());
            }
        }
        Self {
            buf: LineBuf::with_capacity(capacity),
            clock: TimestampCache::default(),
            start: 0,
            heads,
        }
    }

    /// Every line built since the last [`LineBuilder::clear`].
    pub(super) fn pending(&self) -> &[u8] {
        self.buf.as_slice()
    }

    pub(super) fn clear(&mut self) {
        self.buf.clear();
    }

    /// The line just built.
    fn finish(&mut self) -> &[u8] {
        self.buf.push(b"}\n");
        &self.buf.as_slice()[self.start..]
    }
}

impl LineBuilder {
    /// Starts every line the same way: `{"seq":N,"ts":"<ts>`, the time's `Z` and quote left
    /// to the caller.
    fn begin(&mut self, seq: u64, ts: SystemTime) -> &mut LineBuf {
        self.start = self.buf.len();
        let buf = &mut self.buf;
        buf.push(b"{\"seq\":");
        buf.push_decimal(seq);
        self.clock.write(buf, ts);
        buf
    }

    /// A change; `repair` marks a line made by the rescan after a gap, not by a backend.
    pub(super) fn build(&mut self, seq: u64, c: &Change, count: u64, repair: bool) -> &[u8] {
        self.begin(seq, c.ts);
        // `Op::ALL` is in declaration order, so an op's discriminant is its place there.
        let head = &self.heads[c.backend.index() * Op::ALL.len() + c.op as usize];
        let buf = &mut self.buf;
        let path = c.path.as_os_str().as_bytes();
        if is_plain(path) {
            buf.push(head);
            buf.push(path);
            buf.push_byte(b'"');
        } else {
            buf.push(&head[..head.len() - PATH_KEY.len()]);
            push_path(buf, "path", &c.path);
        }
        if let Some(from) = &c.from {
            buf.push_byte(b',');
            push_path(buf, "from", from);
        }
        if c.truncated {
            buf.push(b",\"truncated\":true");
        }
        if let Some(pid) = c.pid {
            buf.push(b",\"pid\":");
            buf.push_decimal(pid.into());
        }
        if let Some(comm) = &c.comm {
            buf.push(b",\"comm\":");
            push_comm(buf, comm);
        }
        if let Some(bytes) = c.bytes {
            buf.push(b",\"bytes\":");
            buf.push_decimal(bytes);
        }
        if count > 1 {
            buf.push(b",\"count\":");
            buf.push_decimal(count);
        }
        if repair {
            buf.push(b",\"repair\":true");
        }
        self.finish()
    }

    /// A `gap` line: changes under `roots` were lost here (`lost` omitted when unknown).
    pub(super) fn build_gap(&mut self, seq: u64, gap: &Gap) -> &[u8] {
        let buf = self.begin(seq, gap.ts);
        buf.push(b"Z\",\"op\":\"gap\",\"roots\":[");
        for (i, root) in gap.roots.iter().enumerate() {
            if i > 0 {
                buf.push_byte(b',');
            }
            push_json_string(buf, &printed(root.as_os_str().as_bytes()).text);
        }
        buf.push_byte(b']');
        // Only when a root is not UTF-8: every root's exact bytes, in the same order.
        if gap
            .roots
            .iter()
            .any(|r| std::str::from_utf8(r.as_os_str().as_bytes()).is_err())
        {
            buf.push(b",\"roots_b64\":[");
            for (i, root) in gap.roots.iter().enumerate() {
                if i > 0 {
                    buf.push_byte(b',');
                }
                let exact = diffkeeper_cli::name::encode_exact(root.as_os_str().as_bytes());
                push_json_string(buf, &exact);
            }
            buf.push_byte(b']');
        }
        buf.push(b",\"reason\":");
        push_json_string(buf, gap.reason.as_str());
        if let Some(lost) = gap.lost {
            buf.push(b",\"lost\":");
            buf.push_decimal(lost);
        }
        self.finish()
    }
}

impl LineBuilder {
    /// A capture line: `{"seq":..,"ts":..,"op":"capture","path":..,"content":..,"reason":..}`,
    /// stamped `ts` (the journal passes the last journaled one, so `ts` never decreases).
    pub(super) fn build_note(&mut self, seq: u64, ts: SystemTime, note: &Note) -> &[u8] {
        let buf = self.begin(seq, ts);
        buf.push(b"Z\",\"op\":\"capture\"");
        if let Some(path) = &note.path {
            buf.push_byte(b',');
            push_path(buf, "path", path);
        }
        buf.push(b",\"content\":\"");
        buf.push(note.content.as_str().as_bytes());
        buf.push(b"\",\"reason\":");
        push_json_string(buf, &note.reason);
        self.finish()
    }
}

/// Writes the `ts` key and its time as RFC 3339 UTC with nanoseconds, all but the `Z`, reusing
/// the part up to the second while the second does not change.
#[derive(Default)]
struct TimestampCache {
    second: Option<u64>,
    /// `,"ts":"YYYY-MM-DDTHH:MM:SS.`
    prefix: [u8; 27],
}

impl TimestampCache {
    fn write(&mut self, buf: &mut LineBuf, ts: SystemTime) {
        // Times before 1970 do not occur for events; clamp rather than fail.
        let since_epoch = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since_epoch.as_secs();
        if self.second != Some(secs) {
            self.prefix[..7].copy_from_slice(b",\"ts\":\"");
            self.prefix[7..26].copy_from_slice(&format_second(secs));
            self.prefix[26] = b'.';
            self.second = Some(secs);
        }
        buf.push(&self.prefix);
        buf.push_nanos(since_epoch.subsec_nanos());
    }
}

/// Appends `"key":"name"` for a path, and `,"key_b64":"..."` with its exact bytes when they
/// are not UTF-8 (the rule of [`diffkeeper_cli::name`]); a UTF-8 path allocates nothing.
pub(super) fn push_path(buf: &mut LineBuf, key: &str, path: &Path) {
    let bytes = path.as_os_str().as_bytes();
    if is_plain(bytes) {
        // The common case, in one pass: printable ASCII is UTF-8 and needs no escaping.
        buf.push_byte(b'"');
        buf.push(key.as_bytes());
        buf.push(b"\":\"");
        buf.push(bytes);
        buf.push_byte(b'"');
        return;
    }
    let name = printed(bytes);
    buf.push_byte(b'"');
    buf.push(key.as_bytes());
    buf.push(b"\":");
    push_json_string(buf, &name.text);
    if let Some(exact) = name.exact_b64 {
        buf.push_byte(b',');
        buf.push_byte(b'"');
        buf.push(key.as_bytes());
        buf.push(diffkeeper_cli::name::EXACT_SUFFIX.as_bytes());
        buf.push(b"\":\"");
        // Base64 needs no escaping.
        buf.push(exact.as_bytes());
        buf.push_byte(b'"');
    }
}

/// A task's name: its bytes when plain, else as text (the kernel's bytes need not be UTF-8).
fn push_comm(buf: &mut LineBuf, comm: &Comm) {
    if is_plain(comm.as_bytes()) {
        buf.push_byte(b'"');
        buf.push(comm.as_bytes());
        buf.push_byte(b'"');
    } else {
        push_json_string(buf, &comm.to_str());
    }
}

/// Printable ASCII without `"` or `\`: written into a JSON string as it is.
fn is_plain(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// Appends `s` as a JSON string; the common case (nothing to escape) is one copy.
pub(super) fn push_json_string(buf: &mut LineBuf, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push_byte(b'"');
    let bytes = s.as_bytes();
    if is_plain(bytes) {
        buf.push(bytes);
        buf.push_byte(b'"');
        return;
    }
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
        buf.push(&bytes[plain_from..i]);
        if escape.is_empty() {
            buf.push(b"\\u00");
            buf.push_byte(HEX[usize::from(b >> 4)]);
            buf.push_byte(HEX[usize::from(b & 0xf)]);
        } else {
            buf.push(escape);
        }
        plain_from = i + 1;
    }
    buf.push(&bytes[plain_from..]);
    buf.push_byte(b'"');
}
