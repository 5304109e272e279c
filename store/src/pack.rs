//! Pack files: append-only files of compressed chunks, named `packs/NNNNNNNN.pack`.
//!
//! Each chunk is one frame: `blake3 id (32) | raw length u32 | codec u8 | data`. The index
//! (id -> where) is rebuilt by scanning the packs on open; a pack is closed for appends once it
//! passes [`PACK_TARGET`] bytes, so pruning can rewrite packs one at a time.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Result, StoreError};
use crate::frame::{self, Check, End, FileKind, FRAME_HEADER_LEN};
use crate::record::Hash;

/// A pack takes appends until it reaches this size.
pub const PACK_TARGET: u64 = 64 << 20;
/// The largest chunk accepted (the chunker's maximum is below it).
pub const MAX_CHUNK: u32 = 1 << 20;
/// A chunk frame's payload starts with its id, raw length and codec.
const CHUNK_HEAD_LEN: usize = 37;
const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;
const ZSTD_LEVEL: i32 = 3;

/// Where a chunk lies.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLoc {
    pub pack: u32,
    /// Offset of the frame's payload.
    pub offset: u64,
    pub stored_len: u32,
}

/// Every pack of a store and the index of their chunks.
pub struct Packs {
    dir: PathBuf,
    pub index: HashMap<Hash, ChunkLoc>,
    /// Bytes of each pack (its good part).
    pub sizes: HashMap<u32, u64>,
    /// Chunk frames that failed their checksum (skipped; their content is lost).
    pub bad: Vec<StoreError>,
    /// The pack taking appends (writers only).
    current: Option<(u32, File)>,
    /// Packs opened for reading chunks, kept open.
    readers: Mutex<HashMap<u32, File>>,
}

/// How much of the packs [`Packs::open`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Each chunk's header only (and the last frame whole): quick; content is checked on read.
    Heads,
    /// Every byte and checksum; chunk frames that fail go to [`Packs::bad`] (for verify).
    Full,
}

pub fn pack_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:08}.pack"))
}

impl Packs {
    /// Scans every pack under `dir`. A writer truncates a torn tail; a reader ignores it.
    pub fn open(dir: &Path, writable: bool, scan: Scan) -> Result<Self> {
        let mut packs = Self {
            dir: dir.to_path_buf(),
            index: HashMap::new(),
            sizes: HashMap::new(),
            bad: Vec::new(),
            current: None,
            readers: Mutex::new(HashMap::new()),
        };
        for number in list(dir)? {
            packs.scan_one(number, writable, scan)?;
        }
        Ok(packs)
    }

    fn scan_one(&mut self, number: u32, writable: bool, scan: Scan) -> Result<()> {
        let path = pack_path(&self.dir, number);
        let mut file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        frame::check_header(&mut file, &path, FileKind::Pack)?;
        let index = &mut self.index;
        let check = match scan {
            Scan::Heads => Check::HeadsOnly(CHUNK_HEAD_LEN),
            Scan::Full => Check::SkipBad(&mut self.bad),
        };
        let end = frame::scan(&mut file, &path, FileKind::Pack, check, |f| {
            let (hash, _, _) = parse_head(&f.payload)
                .ok_or_else(|| StoreError::corrupt(&path, f.offset, "chunk header cut short"))?;
            index.entry(hash).or_insert(ChunkLoc {
                pack: number,
                offset: f.offset,
                stored_len: f.len,
            });
            Ok(())
        })?;
        let size = match end {
            End::Clean => file.metadata().map_err(|e| StoreError::io(&path, e))?.len(),
            End::TornTail { at, bytes } => {
                if writable {
                    log::warn!(
                        "store: {}: dropping a torn tail of {bytes} bytes at byte {at} (an append cut short by a crash)",
                        path.display()
                    );
                    file.set_len(at).map_err(|e| StoreError::io(&path, e))?;
                }
                at
            }
        };
        self.sizes.insert(number, size);
        Ok(())
    }

    pub fn total_bytes(&self) -> u64 {
        self.sizes.values().sum()
    }

    /// Appends `raw` under `hash` unless present; returns the bytes written.
    pub fn put(&mut self, hash: Hash, raw: &[u8]) -> Result<u64> {
        if self.index.contains_key(&hash) {
            return Ok(0);
        }
        let compressed =
            zstd::bulk::compress(raw, ZSTD_LEVEL).map_err(|e| StoreError::io(&self.dir, e))?;
        let (codec, data) = if compressed.len() < raw.len() {
            (CODEC_ZSTD, compressed.as_slice())
        } else {
            (CODEC_RAW, raw)
        };
        let mut payload = Vec::with_capacity(CHUNK_HEAD_LEN + data.len());
        payload.extend_from_slice(&hash);
        payload.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        payload.push(codec);
        payload.extend_from_slice(data);
        let bytes = frame::encode(&payload);
        let (number, size) = self.writable_pack()?;
        let path = pack_path(&self.dir, number);
        let file = &mut self.current.as_mut().expect("writable_pack sets it").1;
        if let Err(e) = file.write_all(&bytes) {
            // Leave no partial frame behind: the next append starts clean.
            let _ = file.set_len(size);
            let _ = file.seek(SeekFrom::Start(size));
            return Err(StoreError::io(&path, e));
        }
        self.index.insert(
            hash,
            ChunkLoc {
                pack: number,
                offset: size + FRAME_HEADER_LEN,
                stored_len: payload.len() as u32,
            },
        );
        self.sizes.insert(number, size + bytes.len() as u64);
        Ok(bytes.len() as u64)
    }

    /// The pack to append to (opened or created on first use), and its size.
    fn writable_pack(&mut self) -> Result<(u32, u64)> {
        if let Some((number, _)) = &self.current {
            let size = self.sizes[number];
            if size < PACK_TARGET {
                return Ok((*number, size));
            }
        }
        let last = self.sizes.keys().max().copied();
        let number = match last {
            Some(n) if self.sizes[&n] < PACK_TARGET => n,
            Some(n) => n + 1,
            None => 1,
        };
        let path = pack_path(&self.dir, number);
        if let std::collections::hash_map::Entry::Vacant(new) = self.sizes.entry(number) {
            // A new pack appears with its header or not at all: written beside it and renamed.
            // Created in place, a kill -9 between creating it and writing the header left an
            // empty pack that no reader could open.
            let head = frame::header(FileKind::Pack);
            write_atomically(&path.with_extension("pack.tmp"), &path, &head)?;
            new.insert(head.len() as u64);
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        self.current = Some((number, file));
        Ok((number, self.sizes[&number]))
    }

    /// Flushes the pack taking appends to disk.
    pub fn sync(&mut self) -> Result<()> {
        if let Some((number, file)) = &self.current {
            file.sync_data()
                .map_err(|e| StoreError::io(pack_path(&self.dir, *number), e))?;
        }
        Ok(())
    }

    /// Reads a chunk back into `buf` (see [`ChunkBuf::content`]), checking its id.
    pub fn read_with(
        &self,
        hash: &Hash,
        decoder: &mut ChunkDecoder,
        buf: &mut ChunkBuf,
    ) -> Result<()> {
        let loc = self
            .index
            .get(hash)
            .ok_or_else(|| StoreError::MissingChunk { hash: hex(hash) })?;
        let path = pack_path(&self.dir, loc.pack);
        let stored_len = loc.stored_len as usize;
        (buf.len, buf.stored_raw) = (0, false);
        if buf.payload.len() < stored_len {
            buf.payload.resize(stored_len, 0);
        }
        {
            let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            let file = match readers.entry(loc.pack) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(File::open(&path).map_err(|e| StoreError::io(&path, e))?)
                }
            };
            file.read_exact_at(&mut buf.payload[..stored_len], loc.offset)
                .map_err(|e| StoreError::io(&path, e))?;
        }
        decode_chunk(decoder, buf, stored_len, hash)
            .map_err(|reason| StoreError::corrupt(&path, loc.offset, reason))
    }

    /// Rewrites pack `number` keeping only the chunks `keep` accepts (a prune), or removes it
    /// when none is kept. Returns the bytes freed.
    pub fn rewrite(&mut self, number: u32, keep: &dyn Fn(&Hash) -> bool) -> Result<u64> {
        if self.current.as_ref().is_some_and(|(n, _)| *n == number) {
            self.current = None;
        }
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&number);
        let old_size = self.sizes.get(&number).copied().unwrap_or(0);
        let path = pack_path(&self.dir, number);
        let tmp = path.with_extension("pack.tmp");
        let mut kept: Vec<(Hash, Vec<u8>)> = Vec::new();
        let mut file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        let mut skipped = Vec::new();
        frame::scan(
            &mut file,
            &path,
            FileKind::Pack,
            Check::SkipBad(&mut skipped),
            |f| {
                if let Some((hash, _, _)) = parse_head(&f.payload) {
                    if keep(&hash) && self.index.get(&hash).is_some_and(|l| l.pack == number) {
                        kept.push((hash, f.payload));
                    }
                }
                Ok(())
            },
        )?;
        let hashes_here: Vec<Hash> = self
            .index
            .iter()
            .filter(|(_, l)| l.pack == number)
            .map(|(h, _)| *h)
            .collect();
        for hash in hashes_here {
            self.index.remove(&hash);
        }
        if kept.is_empty() {
            fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            self.sizes.remove(&number);
            return Ok(old_size);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&frame::header(FileKind::Pack));
        for (hash, payload) in &kept {
            let offset = out.len() as u64 + FRAME_HEADER_LEN;
            out.extend_from_slice(&frame::encode(payload));
            self.index.insert(
                *hash,
                ChunkLoc {
                    pack: number,
                    offset,
                    stored_len: payload.len() as u32,
                },
            );
        }
        write_atomically(&tmp, &path, &out)?;
        self.sizes.insert(number, out.len() as u64);
        Ok(old_size.saturating_sub(out.len() as u64))
    }
}

/// Writes `bytes` to `tmp`, syncs, and renames it over `path`.
pub fn write_atomically(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let result = (|| {
        let mut file = File::create(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(tmp);
        return Err(StoreError::io(path, e));
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// The pack numbers present under `dir`, ascending.
fn list(dir: &Path) -> Result<Vec<u32>> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(number) = name.strip_suffix(".pack").and_then(|n| n.parse().ok()) {
            numbers.push(number);
        } else if name.ends_with(".pack.tmp") {
            // A rewrite cut short: the original is intact.
            let _ = fs::remove_file(entry.path());
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn parse_head(payload: &[u8]) -> Option<(Hash, u32, u8)> {
    if payload.len() < CHUNK_HEAD_LEN {
        return None;
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&payload[..32]);
    let raw_len = u32::from_le_bytes([payload[32], payload[33], payload[34], payload[35]]);
    Some((hash, raw_len, payload[36]))
}

/// The buffers a chunk is read and decompressed into, reused from chunk to chunk: fresh ones per
/// chunk (musl maps and unmaps every allocation over 128 KiB, and each page is then faulted in)
/// cost an export more time than the decompression itself.
#[derive(Default)]
pub struct ChunkBuf {
    /// The last chunk frame's payload, read from its pack to the front (this only grows).
    payload: Vec<u8>,
    /// Decompressed content (its first `len` bytes).
    raw: Vec<u8>,
    /// Where the last chunk read lies: after the head in `payload` (stored raw) or in `raw`.
    stored_raw: bool,
    len: usize,
}

impl ChunkBuf {
    /// The content of the chunk last read into this buffer (empty after a failed read).
    pub fn content(&self) -> &[u8] {
        match self.stored_raw {
            true => &self.payload[CHUNK_HEAD_LEN..][..self.len],
            false => &self.raw[..self.len],
        }
    }
}

/// A zstd decompression context, kept: creating one per chunk was ~4 % of an export's time.
pub struct ChunkDecoder(zstd::bulk::Decompressor<'static>);

impl ChunkDecoder {
    pub fn new() -> std::io::Result<Self> {
        zstd::bulk::Decompressor::new().map(Self)
    }
}

/// Decompresses the chunk frame payload in `buf` and checks it against `want`.
fn decode_chunk(
    decoder: &mut ChunkDecoder,
    buf: &mut ChunkBuf,
    stored_len: usize,
    want: &Hash,
) -> std::result::Result<(), String> {
    let payload = &buf.payload[..stored_len];
    let (hash, raw_len, codec) = parse_head(payload).ok_or("chunk header cut short")?;
    if &hash != want {
        return Err(format!(
            "holds chunk {} where {} was expected",
            hex(&hash),
            hex(want)
        ));
    }
    if raw_len > MAX_CHUNK {
        return Err(format!(
            "chunk claims {raw_len} bytes, over the {MAX_CHUNK} limit"
        ));
    }
    let raw_len = raw_len as usize;
    let data = &payload[CHUNK_HEAD_LEN..];
    let raw: &[u8] = match codec {
        CODEC_RAW => data,
        CODEC_ZSTD => {
            if buf.raw.len() < raw_len {
                buf.raw.resize(raw_len, 0);
            }
            // Exactly raw_len bytes of room: a frame that inflates to more fails here.
            let n = decoder
                .0
                .decompress_to_buffer(data, &mut buf.raw[..raw_len])
                .map_err(|e| format!("chunk {} does not decompress: {e}", hex(want)))?;
            &buf.raw[..n]
        }
        other => return Err(format!("unknown chunk codec {other}")),
    };
    if raw.len() != raw_len || blake3::hash(raw).as_bytes() != want {
        return Err(format!("chunk {} fails its hash check", hex(want)));
    }
    buf.stored_raw = codec == CODEC_RAW;
    buf.len = raw_len;
    Ok(())
}

pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
