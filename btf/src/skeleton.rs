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

use crate::records::{
    assemble, RecordError, Sections, KIND_FUNC, KIND_PTR, KIND_STRUCT, KIND_TYPEDEF,
};

/// The BTF kinds programs name kernel types by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    /// `BTF_KIND_TYPEDEF`: `btf_trace_<tracepoint>` for `tp_btf`.
    Typedef,
    /// `BTF_KIND_FUNC`: a kernel function for fentry/fexit, or a kfunc a program calls.
    Func,
    /// `BTF_KIND_STRUCT`: a type a program casts a pointer to (bpf_rdonly_cast).
    Struct,
}

impl TypeKind {
    fn code(self) -> u32 {
        match self {
            Self::Typedef => KIND_TYPEDEF,
            Self::Func => KIND_FUNC,
            Self::Struct => KIND_STRUCT,
        }
    }
}

/// Why no skeleton could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkeletonError {
    /// The BTF's records could not be read.
    Records(RecordError),
    /// A wanted type is not in the BTF.
    NotFound { name: String, kind: TypeKind },
}

impl fmt::Display for SkeletonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Records(e) => e.fmt(f),
            Self::NotFound { name, kind } => write!(f, "no {kind:?} named {name} in the BTF"),
        }
    }
}

impl std::error::Error for SkeletonError {}

impl From<RecordError> for SkeletonError {
    fn from(e: RecordError) -> Self {
        Self::Records(e)
    }
}

/// Builds the skeleton of `btf` (a whole BTF file) keeping each `(name, kind)` of `wanted` at
/// its id: the first type of that name and kind, as the loader's lookup picks it.
pub fn skeleton(btf: &[u8], wanted: &[(&str, TypeKind)]) -> Result<Vec<u8>, SkeletonError> {
    let ids = type_ids(btf, wanted)?;
    let ids = match ids.iter().position(Option::is_none) {
        Some(i) => {
            return Err(SkeletonError::NotFound {
                name: wanted[i].0.to_owned(),
                kind: wanted[i].1,
            })
        }
        None => ids.into_iter().flatten().collect::<Vec<_>>(),
    };
    Ok(skeleton_of_ids(wanted, &ids))
}

/// The id of each wanted type in `btf` (a whole BTF file), `None` where there is none: the first
/// type of that name and kind, as the kernel's lookups pick it. One scan of the type section,
/// stopping when all are found.
pub fn type_ids(btf: &[u8], wanted: &[(&str, TypeKind)]) -> Result<Vec<Option<u32>>, RecordError> {
    let sections = Sections::of(btf)?;
    let mut ids = vec![None; wanted.len()];
    let mut missing = wanted.len();
    let mut records = sections.records();
    while missing > 0 {
        let Some(record) = records.next() else { break };
        let record = record?;
        let kind = record.kind();
        if !wanted.iter().any(|(_, want)| want.code() == kind) {
            continue;
        }
        // Once per record, not once per wanted type: ~60,000 FUNCs are compared with ~20
        // wanted functions at start-up.
        let name = sections.name(record.name_off(), record.id)?;
        for (slot, (wanted_name, want)) in ids.iter_mut().zip(wanted) {
            if slot.is_none() && want.code() == kind && name == wanted_name.as_bytes() {
                *slot = Some(record.id);
                missing -= 1;
            }
        }
    }
    Ok(ids)
}

/// The skeleton of the `wanted` types at `ids` (their ids, found earlier with [`type_ids`]):
/// placeholders (`PTR` to `void`, no name: no lookup by name matches them) up to the highest
/// id, each wanted type (name and kind, pointing at `void`) at its id.
pub fn skeleton_of_ids(wanted: &[(&str, TypeKind)], ids: &[u32]) -> Vec<u8> {
    let mut strings = vec![0u8];
    let mut name_offs = Vec::with_capacity(wanted.len());
    for (name, _) in wanted {
        name_offs.push(strings.len() as u32);
        strings.extend_from_slice(name.as_bytes());
        strings.push(0);
    }
    let last = ids.iter().copied().max().unwrap_or(0);
    let mut types = Vec::with_capacity(last as usize * 12);
    for id in 1..=last {
        let (name_off, kind) = match ids.iter().position(|&wanted_id| wanted_id == id) {
            Some(i) => (name_offs[i], wanted[i].1.code()),
            None => (0, KIND_PTR),
        };
        for value in [name_off, kind << 24, 0] {
            types.extend_from_slice(&value.to_ne_bytes());
        }
    }
    assemble(&types, &strings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{word, TestBtf, KIND_ENUM, KIND_INT, KIND_STRUCT};
    use crate::validate::check_bytes;

    #[test]
    fn wanted_types_keep_their_ids_and_nothing_else_is_named() {
        let mut btf = TestBtf::new();
        btf.record(KIND_INT, "int", 0, &[4, 32]);
        btf.record(KIND_STRUCT, "task_struct", 0, &[8]);
        btf.record(KIND_FUNC, "vfs_write", 0, &[0]);
        btf.record(KIND_ENUM, "state", 0, &[4]);
        btf.record(KIND_TYPEDEF, "btf_trace_sys_exit", 0, &[0]);
        btf.record(13, "", 0, &[0]);
        btf.record(KIND_FUNC, "vfs_write", 0, &[0]);
        btf.record(KIND_FUNC, "vfs_unlink", 0, &[0]);
        let full = btf.bytes();
        let wanted = [
            ("btf_trace_sys_exit", TypeKind::Typedef),
            ("vfs_write", TypeKind::Func),
            ("vfs_unlink", TypeKind::Func),
        ];
        let ids = type_ids(&full, &wanted).unwrap();
        // The first vfs_write wins, as in the loader's own lookup.
        assert_eq!(ids, [Some(5), Some(3), Some(8)]);
        let skel = skeleton(&full, &wanted).unwrap();
        let header = check_bytes(&skel).unwrap();
        assert_eq!(header.type_len, 8 * 12);
        let sections = Sections::of(&skel).unwrap();
        let records: Vec<_> = sections.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 8);
        for record in records {
            let name = sections.name(record.name_off(), record.id).unwrap();
            let kind = word(record.bytes, 4) >> 24;
            match record.id {
                3 => assert_eq!((name, kind), (&b"vfs_write"[..], KIND_FUNC)),
                5 => assert_eq!((name, kind), (&b"btf_trace_sys_exit"[..], KIND_TYPEDEF)),
                8 => assert_eq!((name, kind), (&b"vfs_unlink"[..], KIND_FUNC)),
                _ => assert_eq!((name, kind), (&b""[..], KIND_PTR)),
            }
        }
    }

    #[test]
    fn a_missing_type_is_named() {
        let mut btf = TestBtf::new();
        btf.record(KIND_FUNC, "vfs_write", 0, &[0]);
        let err = skeleton(&btf.bytes(), &[("vfs_write", TypeKind::Typedef)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no Typedef named vfs_write in the BTF",
            "{err:?}"
        );
    }

    #[test]
    fn type_ids_match_name_and_kind_and_say_what_is_missing() {
        let mut btf = TestBtf::new();
        btf.record(KIND_FUNC, "dentry", 0, &[0]);
        btf.record(KIND_STRUCT, "dentry", 1, &[192, 0, 0, 0]);
        btf.record(KIND_FUNC, "bpf_rdonly_cast", 0, &[0]);
        let wanted = [
            ("dentry", TypeKind::Struct),
            ("bpf_rdonly_cast", TypeKind::Func),
            ("file", TypeKind::Struct),
        ];
        assert_eq!(
            type_ids(&btf.bytes(), &wanted).unwrap(),
            [Some(2), Some(3), None]
        );
    }

    #[test]
    fn an_unknown_kind_stops_the_scan() {
        let mut btf = TestBtf::new();
        // Kind 31 does not exist: its record length cannot be known.
        btf.record(31, "f", 0, &[0]);
        let err = skeleton(&btf.bytes(), &[("g", TypeKind::Func)]).unwrap_err();
        assert_eq!(
            err,
            SkeletonError::Records(RecordError::UnknownKind { id: 1, kind: 31 })
        );
    }
}
