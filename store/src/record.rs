//! The log's records and their binary encoding.
//!
//! A record is one change at one time: a file version (its chunk list), a symlink, a directory,
//! a hard link, a delete, a rename, an attribute change, or a file version whose content was
//! pruned. Decoding bounds every length by what is left of the payload and checks every path,
//! so a forged record is an error, never a panic or a huge allocation.

use crate::error::{Result, StoreError};
use crate::path::{check_rel, check_root, MAX_PATH};

/// A BLAKE3 chunk id.
pub type Hash = [u8; 32];

/// File attributes recorded with each version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// Permission bits and set-id/sticky bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

impl Meta {
    /// The attributes of a file as `lstat` reports them.
    pub fn from_metadata(md: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            mtime_ns: md.mtime().saturating_mul(1_000_000_000) + md.mtime_nsec(),
        }
    }
}

/// One chunk of a file version: its id and its raw length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub hash: Hash,
    pub len: u32,
}

/// What a record says happened to `path` under `root` at `ts_ns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    File {
        meta: Meta,
        chunks: Vec<ChunkRef>,
    },
    Symlink {
        meta: Meta,
        target: Vec<u8>,
    },
    Dir {
        meta: Meta,
    },
    /// `path` is a new name of the file `existing` (same content, same attributes).
    Hardlink {
        existing: Vec<u8>,
    },
    /// `path` (and everything below it) is gone.
    Delete,
    /// `path` (and everything below it) moved to `to`, replacing what was there.
    Rename {
        to: Vec<u8>,
    },
    Attrib {
        meta: Meta,
    },
    /// A file version whose content was pruned: the path existed, its bytes are gone.
    PrunedFile {
        meta: Meta,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub root: String,
    pub path: Vec<u8>,
    pub change: Change,
}

impl Record {
    pub fn op_name(&self) -> &'static str {
        match self.change {
            Change::File { .. } => "file",
            Change::Symlink { .. } => "symlink",
            Change::Dir { .. } => "dir",
            Change::Hardlink { .. } => "hardlink",
            Change::Delete => "delete",
            Change::Rename { .. } => "rename",
            Change::Attrib { .. } => "attrib",
            Change::PrunedFile { .. } => "file (pruned)",
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.path.len());
        let kind = match &self.change {
            Change::File { .. } => 1u8,
            Change::Symlink { .. } => 2,
            Change::Dir { .. } => 3,
            Change::Hardlink { .. } => 4,
            Change::Delete => 5,
            Change::Rename { .. } => 6,
            Change::Attrib { .. } => 7,
            Change::PrunedFile { .. } => 8,
        };
        out.push(kind);
        out.extend_from_slice(&self.ts_ns.to_le_bytes());
        put_bytes(&mut out, self.root.as_bytes());
        put_bytes(&mut out, &self.path);
        match &self.change {
            Change::File { meta, chunks } => {
                put_meta(&mut out, meta);
                out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
                for chunk in chunks {
                    out.extend_from_slice(&chunk.hash);
                    out.extend_from_slice(&chunk.len.to_le_bytes());
                }
            }
            Change::Symlink { meta, target } => {
                put_meta(&mut out, meta);
                put_bytes(&mut out, target);
            }
            Change::Dir { meta } | Change::Attrib { meta } | Change::PrunedFile { meta } => {
                put_meta(&mut out, meta)
            }
            Change::Hardlink { existing: other } | Change::Rename { to: other } => {
                put_bytes(&mut out, other)
            }
            Change::Delete => {}
        }
        out
    }

    /// Decodes and validates one record; `at` names where it lies for errors.
    pub fn decode(payload: &[u8], at: &dyn Fn(&str) -> StoreError) -> Result<Self> {
        let mut cur = Cursor { buf: payload };
        let kind = cur.u8().ok_or_else(|| at("empty record"))?;
        let ts_ns = cur.u64().ok_or_else(|| at("record cut short"))?;
        let root = cur.bytes(MAX_PATH).ok_or_else(|| at("root cut short"))?;
        let root = String::from_utf8(root.to_vec()).map_err(|_| at("root is not UTF-8"))?;
        check_root(&root).map_err(|e| at(&e.to_string()))?;
        let path = cur
            .bytes(MAX_PATH)
            .ok_or_else(|| at("path cut short or longer than 4096 bytes"))?
            .to_vec();
        check_rel(&path).map_err(|e| at(&e.to_string()))?;
        let short = || at("record cut short");
        let change = match kind {
            1 => {
                let meta = cur.meta().ok_or_else(short)?;
                let count = cur.u32().ok_or_else(short)? as usize;
                // Bounded by the bytes left before allocating: 36 bytes a chunk.
                if count > cur.buf.len() / 36 {
                    return Err(at("chunk count larger than the record"));
                }
                let mut chunks = Vec::with_capacity(count);
                for _ in 0..count {
                    let hash = cur.take(32).ok_or_else(short)?;
                    let len = cur.u32().ok_or_else(short)?;
                    let mut h = [0u8; 32];
                    h.copy_from_slice(hash);
                    chunks.push(ChunkRef { hash: h, len });
                }
                let total: u64 = chunks.iter().map(|c| u64::from(c.len)).sum();
                if total != meta.size {
                    return Err(at("chunk lengths do not add up to the file's size"));
                }
                Change::File { meta, chunks }
            }
            2 => {
                let meta = cur.meta().ok_or_else(short)?;
                let target = cur.bytes(MAX_PATH).ok_or_else(short)?.to_vec();
                if target.is_empty() || target.contains(&0) {
                    return Err(at("symlink target empty or with a NUL byte"));
                }
                Change::Symlink { meta, target }
            }
            3 => Change::Dir {
                meta: cur.meta().ok_or_else(short)?,
            },
            4 | 6 => {
                let other = cur.bytes(MAX_PATH).ok_or_else(short)?.to_vec();
                check_rel(&other).map_err(|e| at(&e.to_string()))?;
                if kind == 4 {
                    Change::Hardlink { existing: other }
                } else {
                    Change::Rename { to: other }
                }
            }
            5 => Change::Delete,
            7 => Change::Attrib {
                meta: cur.meta().ok_or_else(short)?,
            },
            8 => Change::PrunedFile {
                meta: cur.meta().ok_or_else(short)?,
            },
            other => return Err(at(&format!("unknown record kind {other}"))),
        };
        if !cur.buf.is_empty() {
            return Err(at("trailing bytes after the record"));
        }
        Ok(Self {
            ts_ns,
            root,
            path,
            change,
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_meta(out: &mut Vec<u8>, meta: &Meta) {
    out.extend_from_slice(&meta.mode.to_le_bytes());
    out.extend_from_slice(&meta.uid.to_le_bytes());
    out.extend_from_slice(&meta.gid.to_le_bytes());
    out.extend_from_slice(&meta.size.to_le_bytes());
    out.extend_from_slice(&meta.mtime_ns.to_le_bytes());
}

/// Reads little-endian fields off a payload; `None` once it runs out.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }

    /// A length-prefixed byte string of at most `max` bytes.
    fn bytes(&mut self, max: usize) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > max {
            return None;
        }
        self.take(len)
    }

    fn meta(&mut self) -> Option<Meta> {
        Some(Meta {
            mode: self.u32()?,
            uid: self.u32()?,
            gid: self.u32()?,
            size: self.u64()?,
            mtime_ns: self.u64()? as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(reason: &str) -> StoreError {
        StoreError::corrupt("log", 0, reason)
    }

    #[test]
    fn round_trip_and_refusals() {
        let meta = Meta {
            mode: 0o644,
            uid: 1,
            gid: 2,
            size: 5,
            mtime_ns: -3,
        };
        let rec = Record {
            ts_ns: 7,
            root: "/state".into(),
            path: b"a/b".to_vec(),
            change: Change::File {
                meta,
                chunks: vec![ChunkRef {
                    hash: [9; 32],
                    len: 5,
                }],
            },
        };
        let bytes = rec.encode();
        assert_eq!(Record::decode(&bytes, &at).expect("decodes"), rec);
        for cut in 0..bytes.len() {
            assert!(Record::decode(&bytes[..cut], &at).is_err(), "cut at {cut}");
        }
        let forged = Record {
            path: b"../etc/passwd".to_vec(),
            ..rec.clone()
        };
        let err = Record::decode(&forged.encode(), &at).expect_err("refused");
        assert!(err.to_string().contains(".."), "{err}");
        // A chunk count claiming far more than the record holds is refused before allocating.
        let mut huge = rec.encode();
        let count_at = huge.len() - 36 - 4;
        huge[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Record::decode(&huge, &at).is_err());
    }
}
