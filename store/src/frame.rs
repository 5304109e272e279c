//! The framing shared by the log and the packs: a file header carrying the format version,
//! then frames `magic | len u32 | crc32 u32 | payload`, all little-endian.
//!
//! The CRC covers the length and the payload, so a torn write, a flipped byte or a forged length
//! is caught before the payload is believed. Lengths are bounded (per file kind, and by what is
//! left of the file) before anything is allocated.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Result, StoreError};

/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: u64 = 16;
const FILE_MAGIC: &[u8; 8] = b"DKSTORE\0";
const FRAME_MAGIC: &[u8; 4] = b"DKF1";
pub const FRAME_HEADER_LEN: u64 = 12;

/// Which kind of store file a header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Log,
    Pack,
}

impl FileKind {
    fn tag(self) -> &'static [u8; 4] {
        match self {
            Self::Log => b"LOG\0",
            Self::Pack => b"PACK",
        }
    }

    /// The largest payload a frame of this kind may claim.
    pub fn max_payload(self) -> u32 {
        match self {
            // One record: a file version's chunk list (36 bytes a chunk, ~1.8 M chunks).
            Self::Log => 64 << 20,
            // One chunk (at most 1 MiB raw; stored raw when zstd does not shrink it).
            Self::Pack => (1 << 20) + 64,
        }
    }
}

pub fn header(kind: FileKind) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[..8].copy_from_slice(FILE_MAGIC);
    out[8..12].copy_from_slice(kind.tag());
    out[12..16].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out
}

/// Reads and checks a file's header: a store file of `kind`, of a version this build reads.
pub fn check_header(file: &mut File, path: &Path, kind: FileKind) -> Result<()> {
    let mut buf = [0u8; HEADER_LEN as usize];
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_exact(&mut buf))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => StoreError::NotAStore {
                path: path.to_path_buf(),
                reason: "shorter than its 16-byte header".into(),
            },
            _ => StoreError::io(path, e),
        })?;
    if &buf[..8] != FILE_MAGIC || &buf[8..12] != kind.tag() {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
            reason: format!("no diffkeeper {kind:?} header"),
        });
    }
    let version = u32::from_le_bytes([buf[12], buf[13], buf[14], buf[15]]);
    if version > FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Encodes one frame around `payload`.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(payload.len() + FRAME_HEADER_LEN as usize);
    out.extend_from_slice(FRAME_MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn crc(len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// How a scan of a file's frames ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every byte belongs to a good frame.
    Clean,
    /// An incomplete last frame, as an interrupted append leaves it: the file's good part ends
    /// at `at`; a writer truncates the rest.
    TornTail { at: u64, bytes: u64 },
}

/// One frame read by [`scan`]: where its payload starts, its length, and the payload (or its
/// first bytes, under [`Check::HeadsOnly`]).
pub struct Frame {
    pub offset: u64,
    pub len: u32,
    pub payload: Vec<u8>,
}

/// How much of each frame [`scan`] reads and checks.
pub enum Check<'a> {
    /// Every payload, every checksum; a bad frame before the end is an error.
    Strict,
    /// Every payload, every checksum; a frame whose checksum fails (but whose length fits) is
    /// pushed here and skipped, so one flipped byte costs one chunk, not a whole pack.
    SkipBad(&'a mut Vec<StoreError>),
    /// Only the first N bytes of each payload (what an index needs), and the checksum of the
    /// last frame only (to find a torn tail): opening a large store does not read all of it.
    /// Content is checked when read (chunks carry their BLAKE3 id) and by `verify`.
    HeadsOnly(usize),
}

/// Reads every frame after the header, calling `visit` for each. Stops at a torn tail (reported
/// in the result); a bad frame followed by more data is corruption (see [`Check`]).
pub fn scan(
    file: &mut File,
    path: &Path,
    kind: FileKind,
    mut check: Check<'_>,
    mut visit: impl FnMut(Frame) -> Result<()>,
) -> Result<End> {
    let file_len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    // Reading heads only, a small buffer makes each skip a seek: a large one would read (copy)
    // nearly every byte of the file, as most frames are shorter than it.
    let capacity = match check {
        Check::HeadsOnly(_) => 4 << 10,
        _ => 1 << 20,
    };
    let mut reader = std::io::BufReader::with_capacity(capacity, &mut *file);
    reader
        .seek(SeekFrom::Start(HEADER_LEN))
        .map_err(|e| StoreError::io(path, e))?;
    let mut pos = HEADER_LEN;
    while pos < file_len {
        let left = file_len - pos;
        let torn = End::TornTail {
            at: pos,
            bytes: left,
        };
        if left < FRAME_HEADER_LEN {
            return Ok(torn);
        }
        let mut head = [0u8; FRAME_HEADER_LEN as usize];
        reader
            .read_exact(&mut head)
            .map_err(|e| StoreError::io(path, e))?;
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let want_crc = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if &head[..4] != FRAME_MAGIC {
            return bad_frame(file_len, pos, path, &head, &mut reader);
        }
        if len > kind.max_payload() {
            return Err(StoreError::corrupt(
                path,
                pos,
                format!(
                    "frame claims {len} bytes, over the {} limit",
                    kind.max_payload()
                ),
            ));
        }
        if u64::from(len) > left - FRAME_HEADER_LEN {
            // Claims more than the file holds: an append cut short.
            return Ok(torn);
        }
        let next = pos + FRAME_HEADER_LEN + u64::from(len);
        let last = next == file_len;
        let read_len = match check {
            Check::HeadsOnly(n) if !last => n.min(len as usize),
            _ => len as usize,
        };
        let mut payload = vec![0u8; read_len];
        reader
            .read_exact(&mut payload)
            .map_err(|e| StoreError::io(path, e))?;
        if read_len < len as usize {
            reader
                .seek_relative(i64::from(len) - read_len as i64)
                .map_err(|e| StoreError::io(path, e))?;
        } else if crc(len, &payload) != want_crc {
            if last {
                // The last frame, complete in length but not in content: a torn append.
                return Ok(torn);
            }
            let err = StoreError::corrupt(path, pos, "frame checksum mismatch");
            match &mut check {
                Check::SkipBad(list) => list.push(err),
                _ => return Err(err),
            }
            pos = next;
            continue;
        }
        visit(Frame {
            offset: pos + FRAME_HEADER_LEN,
            len,
            payload,
        })?;
        pos = next;
    }
    Ok(End::Clean)
}

/// A frame without its magic: a torn tail when only zeros follow (what a crash leaves in a
/// file's last, unwritten block), corruption otherwise.
fn bad_frame(
    file_len: u64,
    pos: u64,
    path: &Path,
    head: &[u8],
    reader: &mut impl Read,
) -> Result<End> {
    let mut rest = [0u8; 8192];
    let mut all_zero = head.iter().all(|&b| b == 0);
    loop {
        let n = reader
            .read(&mut rest)
            .map_err(|e| StoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        if rest[..n].iter().any(|&b| b != 0) {
            all_zero = false;
            break;
        }
    }
    if all_zero {
        return Ok(End::TornTail {
            at: pos,
            bytes: file_len - pos,
        });
    }
    Err(StoreError::corrupt(path, pos, "bad frame magic"))
}
