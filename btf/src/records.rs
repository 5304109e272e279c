//! The raw type records of a BTF in this machine's byte order: walking them one by one (each
//! record's length follows from its kind), their names, and writing a new BTF from records.
//! Shared by the id skeleton and the relocation minimiser, which read the kernel's BTF without
//! parsing it into one value per type.

use std::fmt;

use crate::validate::{check_bytes, BtfError, ByteOrder, HEADER_LEN};

pub(crate) const KIND_INT: u32 = 1;
pub(crate) const KIND_PTR: u32 = 2;
pub(crate) const KIND_ARRAY: u32 = 3;
pub(crate) const KIND_STRUCT: u32 = 4;
pub(crate) const KIND_UNION: u32 = 5;
pub(crate) const KIND_ENUM: u32 = 6;
pub(crate) const KIND_FWD: u32 = 7;
pub(crate) const KIND_TYPEDEF: u32 = 8;
pub(crate) const KIND_FUNC: u32 = 12;
pub(crate) const KIND_FLOAT: u32 = 16;
pub(crate) const KIND_ENUM64: u32 = 19;

/// Why the records of a BTF could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    Invalid(BtfError),
    /// The BTF is not in this machine's byte order (a kernel's own BTF always is).
    ForeignByteOrder,
    /// A type record of a kind this reader does not know, so its length is unknown.
    UnknownKind {
        id: u32,
        kind: u32,
    },
    /// The type section ends inside a record, or a name lies outside the string section.
    Truncated {
        id: u32,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(e) => e.fmt(f),
            Self::ForeignByteOrder => f.write_str("BTF is not in this machine's byte order"),
            Self::UnknownKind { id, kind } => write!(f, "type {id} has unknown BTF kind {kind}"),
            Self::Truncated { id } => write!(f, "type {id} runs past the end of its section"),
        }
    }
}

impl std::error::Error for RecordError {}

/// The type and string sections of a checked, native-order BTF.
pub(crate) struct Sections<'a> {
    pub types: &'a [u8],
    pub strings: &'a [u8],
}

impl<'a> Sections<'a> {
    pub fn of(btf: &'a [u8]) -> Result<Self, RecordError> {
        let header = check_bytes(btf).map_err(RecordError::Invalid)?;
        let native = if cfg!(target_endian = "little") {
            ByteOrder::Little
        } else {
            ByteOrder::Big
        };
        if header.byte_order != native {
            return Err(RecordError::ForeignByteOrder);
        }
        let hdr_len = header.hdr_len as usize;
        Ok(Self {
            types: &btf[hdr_len + header.type_off as usize..][..header.type_len as usize],
            strings: &btf[hdr_len + header.str_off as usize..][..header.str_len as usize],
        })
    }

    /// The records in id order, from id 1 (id 0 is `void`).
    pub fn records(&self) -> Records<'a> {
        Records {
            types: self.types,
            at: 0,
            id: 1,
        }
    }

    /// The records from the one at byte `offset` of the type section, whose id is `id`.
    pub fn records_from(&self, offset: usize, id: u32) -> Records<'a> {
        Records {
            types: self.types,
            at: offset,
            id,
        }
    }

    /// The name at `offset` of the string section (`id` names the record, for the error).
    pub fn name(&self, offset: u32, id: u32) -> Result<&'a [u8], RecordError> {
        let rest = self
            .strings
            .get(offset as usize..)
            .ok_or(RecordError::Truncated { id })?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(RecordError::Truncated { id })?;
        Ok(&rest[..end])
    }
}

/// One type record: the 12-byte common part and the kind's extra bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub id: u32,
    /// Where the record starts in the type section.
    pub offset: usize,
    pub bytes: &'a [u8],
}

impl Record<'_> {
    pub fn name_off(&self) -> u32 {
        word(self.bytes, 0)
    }
    pub fn info(&self) -> u32 {
        word(self.bytes, 4)
    }
    pub fn kind(&self) -> u32 {
        (self.info() >> 24) & 0x1f
    }
    /// The third word: a size (INT, STRUCT, UNION, ENUM...) or a type id (PTR, TYPEDEF...).
    pub fn size_or_type(&self) -> u32 {
        word(self.bytes, 8)
    }
}

/// Iterator over the records of a type section.
pub(crate) struct Records<'a> {
    types: &'a [u8],
    at: usize,
    id: u32,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.types.len() {
            return None;
        }
        let id = self.id;
        let record = (|| {
            let head = self
                .types
                .get(self.at..self.at + 12)
                .ok_or(RecordError::Truncated { id })?;
            let info = word(head, 4);
            let kind = (info >> 24) & 0x1f;
            let extra = extra_len(kind, (info & 0xffff) as usize)
                .ok_or(RecordError::UnknownKind { id, kind })?;
            let bytes = self
                .types
                .get(self.at..self.at + 12 + extra)
                .ok_or(RecordError::Truncated { id })?;
            Ok(Record {
                id,
                offset: self.at,
                bytes,
            })
        })();
        match &record {
            Ok(r) => {
                self.at += r.bytes.len();
                self.id += 1;
            }
            // Nothing after a bad record can be read.
            Err(_) => self.at = self.types.len(),
        }
        Some(record)
    }
}

/// Bytes after the 12-byte common part of a type record of `kind` with `vlen` entries.
pub(crate) fn extra_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        // INT, VAR, DECL_TAG: one u32.
        1 | 14 | 17 => 4,
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG: nothing.
        2 | 7..=12 | 16 | 18 => 0,
        // ARRAY: type, index type, count.
        3 => 12,
        // STRUCT, UNION (members), DATASEC (var, offset, size), ENUM64 (name, lo, hi).
        4 | 5 | 15 | 19 => 12 * vlen,
        // ENUM (name, value), FUNC_PROTO (name, type).
        6 | 13 => 8 * vlen,
        _ => return None,
    })
}

/// The native-order u32 at `at`.
pub(crate) fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// A whole BTF (native byte order) from its type and string sections.
pub(crate) fn assemble(types: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + types.len() + strings.len());
    out.extend_from_slice(&0xEB9Fu16.to_ne_bytes());
    out.extend_from_slice(&[1, 0]);
    let type_len = types.len() as u32;
    for value in [
        HEADER_LEN as u32,
        0,
        type_len,
        type_len,
        strings.len() as u32,
    ] {
        out.extend_from_slice(&value.to_ne_bytes());
    }
    out.extend_from_slice(types);
    out.extend_from_slice(strings);
    out
}

/// Builds BTFs record by record for tests.
#[cfg(test)]
pub(crate) struct TestBtf {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
}

#[cfg(test)]
impl TestBtf {
    pub fn new() -> Self {
        Self {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
        }
    }

    /// The string offset of `name` (added to the string section).
    pub fn name(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        let offset = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        offset
    }

    /// Adds a record of `kind` named `name` with `vlen` entries: the third word, then the
    /// kind's extra words; returns its id.
    pub fn record(&mut self, kind: u32, name: &str, vlen: u32, words: &[u32]) -> u32 {
        let name_off = self.name(name);
        for value in [name_off, kind << 24 | vlen].iter().chain(words) {
            self.types.extend_from_slice(&value.to_ne_bytes());
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn bytes(&self) -> Vec<u8> {
        assemble(&self.types, &self.strings)
    }
}
