//! One change as one JSON line, built in a reused buffer with hand-written JSON (the journal is
//! the hot path); the field order is the schema of docs/sidecar.md.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use diffkeeper_cli::name::printed;
use diffkeeper_cli::time::{format_second, put_padded};

use crate::capture::note::Note;
use crate::change::{Change, Gap};

/// Builds one journal line in a reused buffer.
#[derive(Default)]
pub(super) struct LineBuilder {
    buf: Vec<u8>,
    clock: TimestampCache,
}

impl LineBuilder {
    /// Starts every line the same way: `{"seq":N,"ts":"<ts>`, the time's quote left open.
    fn begin(&mut self, seq: u64, ts: SystemTime) -> &mut Vec<u8> {
        let buf = &mut self.buf;
        buf.clear();
        buf.extend_from_slice(b"{\"seq\":");
        push_decimal(buf, seq);
        buf.extend_from_slice(b",\"ts\":\"");
        self.clock.write(buf, ts);
        buf
    }

    /// A change; `repair` marks a line made by the rescan after a gap, not by a backend.
    pub(super) fn build(&mut self, seq: u64, c: &Change, count: u64, repair: bool) -> &[u8] {
        let buf = self.begin(seq, c.ts);
        buf.extend_from_slice(b"\",\"backend\":\"");
        buf.extend_from_slice(c.backend.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"op\":\"");
        buf.extend_from_slice(c.op.as_str().as_bytes());
        buf.extend_from_slice(b"\",");
        push_path(buf, "path", &c.path);
        if let Some(from) = &c.from {
            buf.push(b',');
            push_path(buf, "from", from);
        }
        if c.truncated {
            buf.extend_from_slice(b",\"truncated\":true");
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
        if repair {
            buf.extend_from_slice(b",\"repair\":true");
        }
        buf.extend_from_slice(b"}\n");
        buf
    }

    /// A `gap` line: changes under `roots` were lost here (`lost` omitted when unknown).
    pub(super) fn build_gap(&mut self, seq: u64, gap: &Gap) -> &[u8] {
        let buf = self.begin(seq, gap.ts);
        buf.extend_from_slice(b"\",\"op\":\"gap\",\"roots\":[");
        for (i, root) in gap.roots.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            push_json_string(buf, &printed(root.as_os_str().as_bytes()).text);
        }
        buf.push(b']');
        // Only when a root is not UTF-8: every root's exact bytes, in the same order.
        if gap
            .roots
            .iter()
            .any(|r| std::str::from_utf8(r.as_os_str().as_bytes()).is_err())
        {
            buf.extend_from_slice(b",\"roots_b64\":[");
            for (i, root) in gap.roots.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                let exact = diffkeeper_cli::name::encode_exact(root.as_os_str().as_bytes());
                push_json_string(buf, &exact);
            }
            buf.push(b']');
        }
        buf.extend_from_slice(b",\"reason\":");
        push_json_string(buf, gap.reason.as_str());
        if let Some(lost) = gap.lost {
            buf.extend_from_slice(b",\"lost\":");
            push_decimal(buf, lost);
        }
        buf.extend_from_slice(b"}\n");
        buf
    }
}

impl LineBuilder {
    /// A capture line: `{"seq":..,"ts":..,"op":"capture","path":..,"content":..,"reason":..}`,
    /// stamped `ts` (the journal passes the last journaled one, so `ts` never decreases).
    pub(super) fn build_note(&mut self, seq: u64, ts: SystemTime, note: &Note) -> &[u8] {
        let buf = self.begin(seq, ts);
        buf.extend_from_slice(b"\",\"op\":\"capture\"");
        if let Some(path) = &note.path {
            buf.push(b',');
            push_path(buf, "path", path);
        }
        buf.extend_from_slice(b",\"content\":\"");
        buf.extend_from_slice(note.content.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"reason\":");
        push_json_string(buf, &note.reason);
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

/// Appends `"key":"name"` for a path, and `,"key_b64":"..."` with its exact bytes when they
/// are not UTF-8 (the rule of [`diffkeeper_cli::name`]); a UTF-8 path allocates nothing.
pub(super) fn push_path(buf: &mut Vec<u8>, key: &str, path: &Path) {
    let name = printed(path.as_os_str().as_bytes());
    buf.push(b'"');
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    push_json_string(buf, &name.text);
    if let Some(exact) = name.exact_b64 {
        buf.push(b',');
        buf.push(b'"');
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(diffkeeper_cli::name::EXACT_SUFFIX.as_bytes());
        buf.extend_from_slice(b"\":\"");
        // Base64 needs no escaping.
        buf.extend_from_slice(exact.as_bytes());
        buf.push(b'"');
    }
}

/// Appends `s` as a JSON string; the common case (nothing to escape) is one copy.
pub(super) fn push_json_string(buf: &mut Vec<u8>, s: &str) {
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
