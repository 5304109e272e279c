//! BTF file validation.
//!
//! aya does not check the BTF magic, and a truncated or foreign file would only fail deep inside
//! relocation (or worse, not at all). Both binaries therefore check every BTF they write or use
//! here first: the magic 0xEB9F in either byte order, version 1, and a header whose type and
//! string sections lie inside the file.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// `struct btf_header` is 24 bytes in every BTF version the kernel emits.
pub const HEADER_LEN: usize = 24;
const MAGIC: u16 = 0xEB9F;

/// Byte order the BTF was written in (BTF files follow the target's endianness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

/// The parsed, checked BTF header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtfHeader {
    pub byte_order: ByteOrder,
    pub version: u8,
    pub hdr_len: u32,
    pub type_off: u32,
    pub type_len: u32,
    pub str_off: u32,
    pub str_len: u32,
}

impl BtfHeader {
    /// Bytes the header says the file needs: header plus the furthest section end.
    pub fn required_len(&self) -> u64 {
        let types_end = u64::from(self.type_off) + u64::from(self.type_len);
        let strings_end = u64::from(self.str_off) + u64::from(self.str_len);
        u64::from(self.hdr_len) + types_end.max(strings_end)
    }
}

/// Why some bytes are not a usable BTF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BtfError {
    TooShort { len: u64 },
    BadMagic { found: [u8; 2] },
    UnsupportedVersion { version: u8 },
    BadHeaderLength { hdr_len: u32 },
    SectionOutOfBounds { required: u64, len: u64 },
    EmptySection { section: &'static str },
}

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "{len} bytes is shorter than a BTF header ({HEADER_LEN} bytes)"
            ),
            Self::BadMagic { found } => write!(
                f,
                "bad magic {:02x}{:02x} (want 0xEB9F): not a BTF file",
                found[0], found[1]
            ),
            Self::UnsupportedVersion { version } => {
                write!(f, "unsupported BTF version {version} (want 1)")
            }
            Self::BadHeaderLength { hdr_len } => {
                write!(f, "header length {hdr_len} is smaller than {HEADER_LEN}")
            }
            Self::SectionOutOfBounds { required, len } => write!(
                f,
                "header needs {required} bytes but the file has {len}: truncated"
            ),
            Self::EmptySection { section } => write!(f, "empty {section} section"),
        }
    }
}

impl std::error::Error for BtfError {}

/// Checks a BTF header against the total length of the file it came from.
///
/// `prefix` must hold at least the first [`HEADER_LEN`] bytes; `file_len` is the whole length.
pub fn check_header(prefix: &[u8], file_len: u64) -> Result<BtfHeader, BtfError> {
    if prefix.len() < HEADER_LEN || file_len < HEADER_LEN as u64 {
        return Err(BtfError::TooShort {
            len: file_len.min(prefix.len() as u64),
        });
    }
    let byte_order = match [prefix[0], prefix[1]] {
        m if u16::from_le_bytes(m) == MAGIC => ByteOrder::Little,
        m if u16::from_be_bytes(m) == MAGIC => ByteOrder::Big,
        found => return Err(BtfError::BadMagic { found }),
    };
    let word = |at: usize| {
        let bytes = [prefix[at], prefix[at + 1], prefix[at + 2], prefix[at + 3]];
        match byte_order {
            ByteOrder::Little => u32::from_le_bytes(bytes),
            ByteOrder::Big => u32::from_be_bytes(bytes),
        }
    };
    let header = BtfHeader {
        byte_order,
        version: prefix[2],
        hdr_len: word(4),
        type_off: word(8),
        type_len: word(12),
        str_off: word(16),
        str_len: word(20),
    };
    if header.version != 1 {
        return Err(BtfError::UnsupportedVersion {
            version: header.version,
        });
    }
    if (header.hdr_len as usize) < HEADER_LEN {
        return Err(BtfError::BadHeaderLength {
            hdr_len: header.hdr_len,
        });
    }
    let required = header.required_len();
    if required > file_len {
        return Err(BtfError::SectionOutOfBounds {
            required,
            len: file_len,
        });
    }
    if header.type_len == 0 {
        return Err(BtfError::EmptySection { section: "type" });
    }
    if header.str_len == 0 {
        return Err(BtfError::EmptySection { section: "string" });
    }
    Ok(header)
}

/// Checks BTF bytes held in memory.
pub fn check_bytes(bytes: &[u8]) -> Result<BtfHeader, BtfError> {
    check_header(bytes, bytes.len() as u64)
}

/// A BTF file that could not be used, with the path it concerns.
#[derive(Debug)]
pub enum BtfFileError {
    Io { path: PathBuf, source: io::Error },
    Invalid { path: PathBuf, source: BtfError },
}

impl fmt::Display for BtfFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "cannot read BTF {}: {source}", path.display()),
            Self::Invalid { path, source } => {
                write!(f, "invalid BTF {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for BtfFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Invalid { source, .. } => Some(source),
        }
    }
}

/// Checks a BTF file on disk by its header and size, without reading the (megabytes of) types.
pub fn check_file(path: &Path) -> Result<BtfHeader, BtfFileError> {
    let io_err = |source| BtfFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    // sysfs reports size 0 for some attributes; fall back to reading when metadata lies.
    let mut len = file.metadata().map_err(io_err)?.len();
    let mut prefix = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match file.read(&mut prefix[got..]).map_err(io_err)? {
            0 => break,
            n => got += n,
        }
    }
    if len == 0 && got == HEADER_LEN {
        len = HEADER_LEN as u64 + io::copy(&mut file, &mut io::sink()).map_err(io_err)?;
    }
    check_header(&prefix[..got], len).map_err(|source| BtfFileError::Invalid {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: [u8; 2], hdr_len: u32, type_len: u32, str_off: u32, str_len: u32) -> Vec<u8> {
        let mut h = vec![magic[0], magic[1], 1, 0];
        for w in [hdr_len, 0, type_len, str_off, str_len] {
            h.extend_from_slice(&w.to_le_bytes());
        }
        h
    }

    #[test]
    fn accepts_well_formed_little_endian() {
        let mut b = header([0x9f, 0xeb], 24, 16, 16, 8);
        b.resize(24 + 24, 0);
        let h = check_bytes(&b).unwrap();
        assert_eq!(h.byte_order, ByteOrder::Little);
        assert_eq!(h.required_len(), 48);
    }

    #[test]
    fn accepts_big_endian() {
        let mut b = vec![0xeb, 0x9f, 1, 0];
        for w in [24u32, 0, 16, 16, 8] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b.resize(48, 0);
        assert_eq!(check_bytes(&b).unwrap().byte_order, ByteOrder::Big);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            check_bytes(b"short"),
            Err(BtfError::TooShort { .. })
        ));
        let mut b = header([0x7f, b'E'], 24, 16, 16, 8);
        b.resize(48, 0);
        assert!(matches!(check_bytes(&b), Err(BtfError::BadMagic { .. })));
        let mut b = header([0x9f, 0xeb], 24, 16, 16, 8);
        b.resize(47, 0);
        assert_eq!(
            check_bytes(&b),
            Err(BtfError::SectionOutOfBounds {
                required: 48,
                len: 47
            })
        );
        let mut b = header([0x9f, 0xeb], 8, 16, 16, 8);
        b.resize(48, 0);
        assert!(matches!(
            check_bytes(&b),
            Err(BtfError::BadHeaderLength { .. })
        ));
        let mut b = header([0x9f, 0xeb], 24, 0, 0, 8);
        b.resize(48, 0);
        assert!(matches!(
            check_bytes(&b),
            Err(BtfError::EmptySection { .. })
        ));
    }

    #[test]
    fn system_btf_is_valid_when_present() {
        let path = Path::new(crate::SYSTEM_BTF_PATH);
        if path.exists() {
            let h = check_file(path).unwrap();
            assert!(h.required_len() > 1_000_000, "{h:?}");
        }
    }
}
