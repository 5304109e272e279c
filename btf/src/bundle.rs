//! The BTF bundle: many kernels' minimised BTFs in one file, each compressed on its own so one
//! kernel's BTF is read without decompressing the others.
//!
//! ```text
//! offset  size  field (all integers little-endian)
//! 0       8     magic "DKBTFB\0" + format version (1)
//! 8       4     entry count N
//! 12      4     index length L in bytes
//! 16      L     N index records, keys strictly ascending:
//!                 u16 key length K, K bytes key "<distro>/<version>/<arch>/<release>",
//!                 u64 blob offset, u32 blob length, u32 BTF length, 32 bytes sha256 of the BTF
//! 16+L    ...   blobs: one xz stream per distinct BTF (kernels with identical minimised BTFs
//!               share one blob)
//! ```
//!
//! This module is the layout only (encode and a strict, bounds-checked decode); compression is the
//! writer's and the reader's business. Nothing in a bundle is trusted: every count, length and
//! offset is checked against the file size and the caps below before it is used.

use std::fmt;

mod encode;
pub use encode::{encode, EncodeError, PlannedEntry};

/// Magic and format version.
pub const MAGIC: [u8; 8] = *b"DKBTFB\x00\x01";
pub const HEADER_LEN: usize = 16;
/// File name of the bundle in the baked dir, and its extension.
pub const DEFAULT_FILE_NAME: &str = "bundle.dkbtf";
/// Caps on what a bundle may claim: far above any real bundle (BTFHub has ~5,000 kernels, a
/// minimised BTF is ~1 KiB), far below what would exhaust memory.
pub const MAX_ENTRIES: u32 = 1 << 20;
pub const MAX_INDEX_BYTES: u32 = 64 << 20;
pub const MAX_KEY_LEN: usize = 512;
/// A minimised BTF is a few KiB; a full kernel BTF is ~5 MiB. Anything beyond is not ours.
pub const MAX_BLOB_BYTES: u32 = 64 << 20;

/// One kernel's entry in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// `<distro>/<version>/<arch>/<release>`, as in the BTFHub archive.
    pub key: String,
    /// Absolute offset of the compressed blob in the bundle file.
    pub offset: u64,
    /// Compressed length.
    pub stored_len: u32,
    /// The BTF's length once decompressed.
    pub btf_len: u32,
    pub sha256: [u8; 32],
}

impl IndexEntry {
    /// The blob's byte range in the file, for messages (saturating: a hostile offset may be
    /// anything).
    pub fn extent(&self) -> String {
        format!(
            "bytes {}..{}",
            self.offset,
            self.offset.saturating_add(u64::from(self.stored_len))
        )
    }
}

/// Why a bundle's header or index cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    TooShort {
        len: u64,
    },
    BadMagic {
        found: Vec<u8>,
    },
    TooManyEntries {
        count: u32,
    },
    IndexTooLarge {
        index_len: u32,
        file_len: u64,
    },
    /// Record `record` (0-based) at byte `at` of the file is malformed.
    Record {
        record: u32,
        at: u64,
        reason: String,
    },
    TrailingIndexBytes {
        extra: u64,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "{len} bytes is shorter than the {HEADER_LEN}-byte bundle header: truncated"
            ),
            Self::BadMagic { found } => write!(
                f,
                "not a diffkeeper BTF bundle (starts with {}; want \"DKBTFB\\0\\x01\"); make it \
                 with `just btfgen`",
                found
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Self::TooManyEntries { count } => write!(
                f,
                "header claims {count} entries (the cap is {MAX_ENTRIES}): corrupt header"
            ),
            Self::IndexTooLarge {
                index_len,
                file_len,
            } => write!(
                f,
                "header claims a {index_len}-byte index but the file has {file_len} bytes (cap \
                 {MAX_INDEX_BYTES}): truncated or corrupt"
            ),
            Self::Record { record, at, reason } => {
                write!(f, "index record {record} (file offset {at}): {reason}")
            }
            Self::TrailingIndexBytes { extra } => write!(
                f,
                "{extra} bytes after the last index record: corrupt index length"
            ),
        }
    }
}

impl std::error::Error for FormatError {}

/// Entry count and index length from the first [`HEADER_LEN`] bytes of a `file_len`-byte file.
pub fn parse_header(head: &[u8], file_len: u64) -> Result<(u32, u32), FormatError> {
    if head.len() < HEADER_LEN || file_len < HEADER_LEN as u64 {
        return Err(FormatError::TooShort {
            len: file_len.min(head.len() as u64),
        });
    }
    if head[..8] != MAGIC {
        return Err(FormatError::BadMagic {
            found: head[..8].to_vec(),
        });
    }
    let count = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let index_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    if count > MAX_ENTRIES {
        return Err(FormatError::TooManyEntries { count });
    }
    if index_len > MAX_INDEX_BYTES || u64::from(index_len) > file_len - HEADER_LEN as u64 {
        return Err(FormatError::IndexTooLarge {
            index_len,
            file_len,
        });
    }
    Ok((count, index_len))
}

/// Decodes the index (the `index_len` bytes after the header) of a `file_len`-byte bundle:
/// every record complete, keys well-formed and strictly ascending, every blob inside the file
/// after the index, every length under the caps.
pub fn parse_index(
    index: &[u8],
    count: u32,
    file_len: u64,
) -> Result<Vec<IndexEntry>, FormatError> {
    let data_start = (HEADER_LEN + index.len()) as u64;
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(count.min(4096) as usize);
    let mut pos = 0usize;
    for record in 0..count {
        let at = (HEADER_LEN + pos) as u64;
        let fail = |reason: String| FormatError::Record { record, at, reason };
        let mut take = |n: usize| -> Result<&[u8], FormatError> {
            let end = pos
                .checked_add(n)
                .filter(|&end| end <= index.len())
                .ok_or_else(|| fail(format!("needs {n} more bytes than the index holds")))?;
            let bytes = &index[pos..end];
            pos = end;
            Ok(bytes)
        };
        let key_len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| fail("short".into()))?);
        let key_len = usize::from(key_len);
        let key = take(key_len)?;
        let fixed = take(8 + 4 + 4 + 32)?;
        let key = std::str::from_utf8(key)
            .map_err(|_| fail("key is not UTF-8".into()))?
            .to_string();
        let word64 = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&fixed[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let word32 = |at: usize| {
            u32::from_le_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]])
        };
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&fixed[16..48]);
        let entry = IndexEntry {
            key,
            offset: word64(0),
            stored_len: word32(8),
            btf_len: word32(12),
            sha256,
        };
        check_key(&entry.key).map_err(|reason| fail(format!("key {:?} {reason}", entry.key)))?;
        if let Some(previous) = entries.last() {
            if previous.key >= entry.key {
                return Err(fail(format!(
                    "key {:?} is not after {:?}: the index must be sorted without duplicates",
                    entry.key, previous.key
                )));
            }
        }
        let end = entry.offset.checked_add(u64::from(entry.stored_len));
        if entry.offset < data_start || end.is_none_or(|end| end > file_len) {
            return Err(fail(format!(
                "entry {:?} points at {} but blobs lie in bytes {data_start}..{file_len}: \
                 truncated or corrupt bundle",
                entry.key,
                entry.extent()
            )));
        }
        if entry.stored_len == 0 || entry.stored_len > MAX_BLOB_BYTES {
            return Err(fail(format!(
                "entry {:?} has a {}-byte blob (want 1..={MAX_BLOB_BYTES})",
                entry.key, entry.stored_len
            )));
        }
        if entry.btf_len == 0 || entry.btf_len > MAX_BLOB_BYTES {
            return Err(fail(format!(
                "entry {:?} claims a {}-byte BTF (want 1..={MAX_BLOB_BYTES})",
                entry.key, entry.btf_len
            )));
        }
        entries.push(entry);
    }
    if pos != index.len() {
        return Err(FormatError::TrailingIndexBytes {
            extra: (index.len() - pos) as u64,
        });
    }
    Ok(entries)
}

/// A key is `<distro>/<version>/<arch>/<release>`: four non-empty segments of safe characters.
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err("has a bad length");
    }
    let segments: Vec<&str> = key.split('/').collect();
    if segments.len() != 4 {
        return Err("is not <distro>/<version>/<arch>/<release>");
    }
    let safe = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-~".contains(&b))
    };
    if segments.iter().all(|s| safe(s)) {
        Ok(())
    } else {
        Err("has an empty segment or characters outside [A-Za-z0-9._+~-]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let entries = [
            PlannedEntry {
                key: "debian/11/x86_64/5.10.0-46-cloud-amd64".into(),
                blob: 0,
                btf_len: 100,
                sha256: [1; 32],
            },
            PlannedEntry {
                key: "debian/12/arm64/6.1.0-57-cloud-arm64".into(),
                blob: 0,
                btf_len: 100,
                sha256: [1; 32],
            },
        ];
        encode(&entries, &[vec![7u8; 10]]).unwrap()
    }

    fn decode(bytes: &[u8]) -> Result<Vec<IndexEntry>, FormatError> {
        let (count, index_len) = parse_header(bytes, bytes.len() as u64)?;
        let index = &bytes[HEADER_LEN..HEADER_LEN + index_len as usize];
        parse_index(index, count, bytes.len() as u64)
    }

    #[test]
    fn round_trip_shares_blobs() {
        let bytes = sample();
        let entries = decode(&bytes).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].offset, entries[1].offset);
        assert_eq!(entries[0].offset as usize + 10, bytes.len());
    }

    #[test]
    fn hostile_headers_and_records() {
        let good = sample();
        assert!(matches!(
            decode(&good[..10]),
            Err(FormatError::TooShort { .. })
        ));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(decode(&bad), Err(FormatError::BadMagic { .. })));
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&bad),
            Err(FormatError::TooManyEntries { .. })
        ));
        let mut bad = good.clone();
        bad[12..16].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(matches!(
            decode(&bad),
            Err(FormatError::IndexTooLarge { .. })
        ));
        // First record's offset pointed past the end of the file.
        let off_at = HEADER_LEN + 2 + "debian/11/x86_64/5.10.0-46-cloud-amd64".len();
        let mut bad = good.clone();
        bad[off_at..off_at + 8].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
        let err = decode(&bad).unwrap_err().to_string();
        assert!(
            err.contains("record 0") && err.contains("5.10.0-46"),
            "{err}"
        );
        // Offset into the index itself.
        let mut bad = good.clone();
        bad[off_at..off_at + 8].copy_from_slice(&3u64.to_le_bytes());
        assert!(decode(&bad).is_err());
        // Truncated blob area.
        let err = decode(&good[..good.len() - 1]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // One more record claimed than written.
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(
            decode(&bad),
            Err(FormatError::Record { record: 2, .. })
        ));
    }

    #[test]
    fn keys_are_four_safe_segments() {
        assert!(check_key("ubuntu/20.04/x86_64/5.4.0-91-generic").is_ok());
        assert!(check_key("debian/12/x86_64/6.12.117+deb12-cloud-amd64").is_ok());
        for bad in [
            "",
            "a/b/c",
            "a/b/c/d/e",
            "a/../c/d",
            "a//c/d",
            "a/b/c/d\n",
            "/b/c/d",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
