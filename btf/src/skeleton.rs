//! An id skeleton of a kernel BTF: a small BTF in which a few named types keep the type ids they
//! have in the kernel's BTF and every other id up to the highest of them is an anonymous
//! placeholder.
//!
//! fentry/fexit and `tp_btf` programs are attached by the kernel's own type id of their target
//! (a `FUNC`, or the `btf_trace_<tracepoint>` `TYPEDEF`), and the loader finds that id by name
//! and kind in the BTF it is given. Parsing the whole 5 MB kernel BTF for that holds 13.5 MiB
//! (18.5 MiB at its peak); the skeleton holds only what the lookup reads: each wanted type's name and kind
//! at its true id. It is useless for CO-RE relocation, which needs the real types.

use std::fmt;

use crate::validate::{check_bytes, BtfError, ByteOrder, HEADER_LEN};

/// The BTF kinds a program is attached by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachKind {
    /// `BTF_KIND_TYPEDEF`: `btf_trace_<tracepoint>` for `tp_btf`.
    Typedef,
    /// `BTF_KIND_FUNC`: a kernel function for fentry/fexit.
    Func,
}

impl AttachKind {
    fn code(self) -> u32 {
        match self {
            Self::Typedef => KIND_TYPEDEF,
            Self::Func => KIND_FUNC,
        }
    }
}

const KIND_PTR: u32 = 2;
const KIND_TYPEDEF: u32 = 8;
const KIND_FUNC: u32 = 12;

/// Why no skeleton could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkeletonError {
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
    /// A wanted type is not in the BTF.
    NotFound {
        name: String,
        kind: AttachKind,
    },
}

impl fmt::Display for SkeletonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(e) => e.fmt(f),
            Self::ForeignByteOrder => f.write_str("BTF is not in this machine's byte order"),
            Self::UnknownKind { id, kind } => {
                write!(f, "type {id} has unknown BTF kind {kind}")
            }
            Self::Truncated { id } => write!(f, "type {id} runs past the end of its section"),
            Self::NotFound { name, kind } => write!(f, "no {kind:?} named {name} in the BTF"),
        }
    }
}

impl std::error::Error for SkeletonError {}

/// Builds the skeleton of `btf` (a whole BTF file) keeping each `(name, kind)` of `wanted` at
/// its id: the first type of that name and kind, as the loader's lookup picks it.
pub fn skeleton(btf: &[u8], wanted: &[(&str, AttachKind)]) -> Result<Vec<u8>, SkeletonError> {
    let header = check_bytes(btf).map_err(SkeletonError::Invalid)?;
    let native = if cfg!(target_endian = "little") {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };
    if header.byte_order != native {
        return Err(SkeletonError::ForeignByteOrder);
    }
    let hdr_len = header.hdr_len as usize;
    let types = &btf[hdr_len + header.type_off as usize..][..header.type_len as usize];
    let strings = &btf[hdr_len + header.str_off as usize..][..header.str_len as usize];
    let ids = find_ids(types, strings, wanted)?;
    Ok(write_skeleton(wanted, &ids))
}

/// The id of each wanted type, scanning the type section once and stopping when all are found.
fn find_ids(
    types: &[u8],
    strings: &[u8],
    wanted: &[(&str, AttachKind)],
) -> Result<Vec<u32>, SkeletonError> {
    let mut ids = vec![0u32; wanted.len()];
    let mut missing = wanted.len();
    let mut at = 0;
    // Type ids start at 1; id 0 is `void`.
    let mut id = 1u32;
    while at < types.len() && missing > 0 {
        let record = types
            .get(at..at + 12)
            .ok_or(SkeletonError::Truncated { id })?;
        let name_off = word(record, 0) as usize;
        let info = word(record, 4);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        for (slot, (name, want)) in ids.iter_mut().zip(wanted) {
            if *slot == 0
                && want.code() == kind
                && name_at(strings, name_off, id)? == name.as_bytes()
            {
                *slot = id;
                missing -= 1;
            }
        }
        at += 12 + extra_len(kind, vlen).ok_or(SkeletonError::UnknownKind { id, kind })?;
        id += 1;
    }
    match ids.iter().position(|&id| id == 0) {
        Some(i) => Err(SkeletonError::NotFound {
            name: wanted[i].0.to_owned(),
            kind: wanted[i].1,
        }),
        None => Ok(ids),
    }
}

/// Bytes after the 12-byte common part of a type record of `kind` with `vlen` entries.
fn extra_len(kind: u32, vlen: usize) -> Option<usize> {
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

fn name_at(strings: &[u8], offset: usize, id: u32) -> Result<&[u8], SkeletonError> {
    let rest = strings
        .get(offset..)
        .ok_or(SkeletonError::Truncated { id })?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(SkeletonError::Truncated { id })?;
    Ok(&rest[..end])
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Placeholders (`PTR` to `void`, no name: no lookup by name matches them) up to the highest
/// id, each wanted type (name and kind, pointing at `void`) at its id.
fn write_skeleton(wanted: &[(&str, AttachKind)], ids: &[u32]) -> Vec<u8> {
    let mut strings = vec![0u8];
    let mut name_offs = Vec::with_capacity(wanted.len());
    for (name, _) in wanted {
        name_offs.push(strings.len() as u32);
        strings.extend_from_slice(name.as_bytes());
        strings.push(0);
    }
    let last = ids.iter().copied().max().unwrap_or(0);
    let type_len = last as usize * 12;
    let mut out = Vec::with_capacity(HEADER_LEN + type_len + strings.len());
    out.extend_from_slice(&0xEB9Fu16.to_ne_bytes());
    out.extend_from_slice(&[1, 0]);
    for value in [HEADER_LEN as u32, 0, type_len as u32, type_len as u32] {
        out.extend_from_slice(&value.to_ne_bytes());
    }
    out.extend_from_slice(&(strings.len() as u32).to_ne_bytes());
    for id in 1..=last {
        let (name_off, kind) = match ids.iter().position(|&wanted_id| wanted_id == id) {
            Some(i) => (name_offs[i], wanted[i].1.code()),
            None => (0, KIND_PTR),
        };
        for value in [name_off, kind << 24, 0] {
            out.extend_from_slice(&value.to_ne_bytes());
        }
    }
    out.extend_from_slice(&strings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF of `records` (kind, name, extra bytes) with their names in the string section.
    fn btf(records: &[(u32, &str, usize)]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut types = Vec::new();
        for &(kind, name, vlen) in records {
            let name_off = strings.len() as u32;
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
            for value in [name_off, kind << 24 | vlen as u32, 0] {
                types.extend_from_slice(&value.to_ne_bytes());
            }
            types.resize(types.len() + extra_len(kind, vlen).unwrap(), 0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&0xEB9Fu16.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        let (types_len, strings_len) = (types.len() as u32, strings.len() as u32);
        for value in [24, 0, types_len, types_len, strings_len] {
            out.extend_from_slice(&value.to_ne_bytes());
        }
        out.extend(types);
        out.extend(strings);
        out
    }

    #[test]
    fn wanted_types_keep_their_ids_and_nothing_else_is_named() {
        let full = btf(&[
            (1, "int", 0),
            (4, "task_struct", 3),
            (12, "vfs_write", 0),
            (6, "state", 2),
            (8, "btf_trace_sys_exit", 0),
            (13, "", 4),
            (12, "vfs_write", 0),
            (12, "vfs_unlink", 0),
        ]);
        let wanted = [
            ("btf_trace_sys_exit", AttachKind::Typedef),
            ("vfs_write", AttachKind::Func),
            ("vfs_unlink", AttachKind::Func),
        ];
        let ids = find_ids(
            &full[24..24 + word(&full, 12) as usize],
            &full[24 + word(&full, 16) as usize..],
            &wanted,
        )
        .unwrap();
        // The first vfs_write wins, as in the loader's own lookup.
        assert_eq!(ids, [5, 3, 8]);
        let skel = skeleton(&full, &wanted).unwrap();
        let header = check_bytes(&skel).unwrap();
        assert_eq!(header.type_len, 8 * 12);
        let types = &skel[24..24 + 96];
        let strings = &skel[24 + 96..];
        for id in 1..=8u32 {
            let record = &types[(id as usize - 1) * 12..][..12];
            let name = name_at(strings, word(record, 0) as usize, id).unwrap();
            let kind = word(record, 4) >> 24;
            match id {
                3 => assert_eq!((name, kind), (&b"vfs_write"[..], KIND_FUNC)),
                5 => assert_eq!((name, kind), (&b"btf_trace_sys_exit"[..], KIND_TYPEDEF)),
                8 => assert_eq!((name, kind), (&b"vfs_unlink"[..], KIND_FUNC)),
                _ => assert_eq!((name, kind), (&b""[..], KIND_PTR)),
            }
        }
    }

    #[test]
    fn a_missing_type_is_named() {
        let full = btf(&[(12, "vfs_write", 0)]);
        let err = skeleton(&full, &[("vfs_write", AttachKind::Typedef)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no Typedef named vfs_write in the BTF",
            "{err:?}"
        );
    }

    #[test]
    fn an_unknown_kind_stops_the_scan() {
        let mut full = btf(&[(12, "f", 0)]);
        // Kind 31 does not exist: its record length cannot be known.
        full[24 + 7] = 31;
        let err = skeleton(&full, &[("g", AttachKind::Func)]).unwrap_err();
        assert_eq!(err, SkeletonError::UnknownKind { id: 1, kind: 31 });
    }
}
