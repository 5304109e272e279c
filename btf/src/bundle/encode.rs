//! Laying out a bundle ([`super`] has the format): the writer's half, used by btfgen and by
//! tests that craft bundles.

use std::fmt;

use super::{check_key, HEADER_LEN, MAGIC, MAX_BLOB_BYTES, MAX_ENTRIES, MAX_INDEX_BYTES};

/// One kernel for [`encode`]: its key and the blob (index into `blobs`) holding its BTF.
#[derive(Debug, Clone)]
pub struct PlannedEntry {
    pub key: String,
    pub blob: usize,
    pub btf_len: u32,
    pub sha256: [u8; 32],
}

/// Why [`encode`] cannot lay out a bundle: the plan it was given is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// A key [`check_key`] refuses, and why.
    BadKey {
        key: String,
        reason: &'static str,
    },
    /// Keys must be strictly ascending; `key` is not greater than the one before it.
    OutOfOrder {
        key: String,
    },
    /// The entry names a blob that is not in the list.
    NoSuchBlob {
        key: String,
        blob: usize,
        blobs: usize,
    },
    /// A blob that is empty or over [`MAX_BLOB_BYTES`].
    BlobSize {
        key: String,
        len: usize,
    },
    TooManyEntries {
        count: usize,
    },
    IndexTooLarge {
        len: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadKey { key, reason } => write!(f, "key {key:?} {reason}"),
            Self::OutOfOrder { key } => {
                write!(f, "keys out of order or duplicated at {key:?}")
            }
            Self::NoSuchBlob { key, blob, blobs } => {
                write!(f, "{key:?} names blob {blob}, but there are {blobs} blobs")
            }
            Self::BlobSize { key, len } => write!(
                f,
                "{key:?}: a blob of {len} bytes (must be 1 to {MAX_BLOB_BYTES})"
            ),
            Self::TooManyEntries { count } => {
                write!(f, "{count} entries (the cap is {MAX_ENTRIES})")
            }
            Self::IndexTooLarge { len } => {
                write!(f, "a {len}-byte index (the cap is {MAX_INDEX_BYTES} bytes)")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Lays out a bundle: `entries` must be sorted by key without duplicates (checked), `blobs` are
/// the compressed BTFs in the order they are written.
pub fn encode(entries: &[PlannedEntry], blobs: &[Vec<u8>]) -> Result<Vec<u8>, EncodeError> {
    let mut index = Vec::new();
    let record_len = |e: &PlannedEntry| 2 + e.key.len() + 48;
    let index_len: usize = entries.iter().map(record_len).sum();
    let data_start = (HEADER_LEN + index_len) as u64;
    let mut offsets = Vec::with_capacity(blobs.len());
    let mut next = data_start;
    for blob in blobs {
        offsets.push(next);
        next += blob.len() as u64;
    }
    for (i, e) in entries.iter().enumerate() {
        let key = || e.key.clone();
        check_key(&e.key).map_err(|reason| EncodeError::BadKey { key: key(), reason })?;
        if i > 0 && entries[i - 1].key >= e.key {
            return Err(EncodeError::OutOfOrder { key: key() });
        }
        let blob = blobs.get(e.blob).ok_or_else(|| EncodeError::NoSuchBlob {
            key: key(),
            blob: e.blob,
            blobs: blobs.len(),
        })?;
        let stored_len = u32::try_from(blob.len())
            .ok()
            .filter(|&n| n > 0 && n <= MAX_BLOB_BYTES)
            .ok_or_else(|| EncodeError::BlobSize {
                key: key(),
                len: blob.len(),
            })?;
        index.extend_from_slice(&(e.key.len() as u16).to_le_bytes());
        index.extend_from_slice(e.key.as_bytes());
        index.extend_from_slice(&offsets[e.blob].to_le_bytes());
        index.extend_from_slice(&stored_len.to_le_bytes());
        index.extend_from_slice(&e.btf_len.to_le_bytes());
        index.extend_from_slice(&e.sha256);
    }
    let count = u32::try_from(entries.len())
        .ok()
        .filter(|&n| n <= MAX_ENTRIES)
        .ok_or(EncodeError::TooManyEntries {
            count: entries.len(),
        })?;
    let index_len = u32::try_from(index.len())
        .ok()
        .filter(|&n| n <= MAX_INDEX_BYTES)
        .ok_or(EncodeError::IndexTooLarge { len: index.len() })?;
    let mut out = Vec::with_capacity(next as usize);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&index_len.to_le_bytes());
    out.extend_from_slice(&index);
    for blob in blobs {
        out.extend_from_slice(blob);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inconsistent_plans_are_refused_with_what_is_wrong() {
        let entry = |key: &str, blob| PlannedEntry {
            key: key.into(),
            blob,
            btf_len: 100,
            sha256: [1; 32],
        };
        let (a, b) = ("debian/11/x86_64/5.10", "debian/12/x86_64/6.1");
        let blob = vec![7u8; 10];
        let cases = [
            (
                vec![entry("debian/../x/y", 0)],
                vec![blob.clone()],
                EncodeError::BadKey {
                    key: "debian/../x/y".into(),
                    reason: "has an empty segment or characters outside [A-Za-z0-9._+~-]",
                },
            ),
            (
                vec![entry(b, 0), entry(a, 0)],
                vec![blob.clone()],
                EncodeError::OutOfOrder { key: a.into() },
            ),
            (
                vec![entry(a, 0), entry(a, 0)],
                vec![blob.clone()],
                EncodeError::OutOfOrder { key: a.into() },
            ),
            (
                vec![entry(a, 1)],
                vec![blob.clone()],
                EncodeError::NoSuchBlob {
                    key: a.into(),
                    blob: 1,
                    blobs: 1,
                },
            ),
            (
                vec![entry(a, 0)],
                vec![Vec::new()],
                EncodeError::BlobSize {
                    key: a.into(),
                    len: 0,
                },
            ),
        ];
        for (entries, blobs, want) in cases {
            assert_eq!(encode(&entries, &blobs).unwrap_err(), want);
        }
        let err = encode(&[entry(a, 3)], &[blob]).unwrap_err().to_string();
        assert_eq!(err, format!("{a:?} names blob 3, but there are 1 blobs"));
    }
}
