//! Direct loads in the modern object's tp_btf programs (`ebpf/c/dk_direct.bpf.h`): they read
//! kernel pointers with plain loads through `bpf_rdonly_cast()` (kernels 6.2+) instead of a
//! probe-read helper call per pointer. The call must carry the kernel's own type id of the
//! kfunc, and the casts the ids of the types they cast to; the object is relocated against a
//! cut-down BTF whose ids are not the kernel's, so these are found here, in the system BTF,
//! and written into the object's placeholder instructions before aya reads it.

use std::fmt;

use diffkeeper_btf::skeleton::TypeKind;
use object::{Object, ObjectSection, SectionKind};

/// The placeholder (`DK_CAST_INSN`): call (0x85), src_reg 2 (a kfunc call), imm 0x7dca57ed.
const CAST_PLACEHOLDER: u64 = 0x7dca_57ed_0000_2085;
/// A kfunc call's instruction without its imm (the kfunc's type id).
const KFUNC_CALL: u64 = 0x2085;
/// `r0 = r1`, which is what the cast does at run time: where the kfunc is not available the
/// placeholder becomes this, so no program carries a call the kernel cannot resolve (the
/// branches using it are dead: dk_direct stays 0).
const MOVE_R1_TO_R0: u64 = 0x10bf;

/// The running kernel's type ids the direct loads need (all 0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectIds {
    /// `FUNC bpf_rdonly_cast`
    pub cast: u32,
    /// `STRUCT dentry`
    pub dentry: u32,
    /// `STRUCT file`
    pub file: u32,
    /// `STRUCT task_struct`
    pub task: u32,
    /// `STRUCT kiocb`: its first member is a `struct file *`, the type of an fd array's slot
    pub kiocb: u32,
}

impl DirectIds {
    /// The kernel types they are the ids of, in the order [`DirectIds::of`] takes them.
    pub const WANTED: [(&str, TypeKind); 5] = [
        ("bpf_rdonly_cast", TypeKind::Func),
        ("dentry", TypeKind::Struct),
        ("file", TypeKind::Struct),
        ("task_struct", TypeKind::Struct),
        ("kiocb", TypeKind::Struct),
    ];

    /// From the ids of [`DirectIds::WANTED`] in the system BTF; `None` when it has no
    /// `bpf_rdonly_cast` (before 6.2) or lacks a type.
    pub fn of(ids: &[Option<u32>]) -> Option<Self> {
        match *ids {
            [Some(cast), Some(dentry), Some(file), Some(task), Some(kiocb)] => Some(Self {
                cast,
                dentry,
                file,
                task,
                kiocb,
            }),
            _ => None,
        }
    }
}

/// The object's code could not be read to place the ids.
#[derive(Debug)]
pub struct PatchError(object::Error);

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "finding the code sections of the eBPF object: {}",
            self.0
        )
    }
}

impl std::error::Error for PatchError {}

/// A copy of `object` (an eBPF ELF object) with every placeholder cast made the kfunc call
/// with `ids` or, without them, `r0 = r1`; returns it and how many there were.
pub fn patch(object: &[u8], ids: Option<DirectIds>) -> Result<(Vec<u8>, usize), PatchError> {
    let replacement = match ids {
        Some(ids) => u64::from(ids.cast) << 32 | KFUNC_CALL,
        None => MOVE_R1_TO_R0,
    };
    let elf = object::File::parse(object).map_err(PatchError)?;
    let mut code = Vec::new();
    for section in elf.sections().filter(|s| s.kind() == SectionKind::Text) {
        if let Some((offset, size)) = section.file_range() {
            code.push(offset as usize..(offset + size) as usize);
        }
    }
    let mut patched = object.to_vec();
    let mut count = 0;
    for range in code {
        // eBPF instructions are 8 bytes, little-endian on both targets (bpfel).
        for insn in patched[range].as_chunks_mut::<8>().0 {
            if u64::from_le_bytes(*insn) == CAST_PLACEHOLDER {
                insn.copy_from_slice(&replacement.to_le_bytes());
                count += 1;
            }
        }
    }
    Ok((patched, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffkeeper_ebpf::object::ObjectKind;

    fn placeholders(object: &[u8]) -> usize {
        patch(object, None).unwrap().1
    }

    /// Only the modern object has the casts, and patching leaves none behind.
    #[test]
    fn the_modern_objects_placeholders_are_all_replaced() {
        let modern = ObjectKind::Modern.bytes();
        assert!(placeholders(modern) > 0);
        assert_eq!(placeholders(ObjectKind::Compat.bytes()), 0);
        let ids = DirectIds {
            cast: 0x1234,
            dentry: 1,
            file: 2,
            task: 3,
            kiocb: 4,
        };
        let (with_ids, count) = patch(modern, Some(ids)).unwrap();
        assert_eq!(count, placeholders(modern));
        assert_eq!(placeholders(&with_ids), 0);
        assert_eq!(with_ids.len(), modern.len());
        let call = (0x1234u64 << 32 | KFUNC_CALL).to_le_bytes();
        let calls = with_ids.windows(8).filter(|w| *w == call).count();
        assert_eq!(calls, count);
    }

    /// The running kernel's BTF has the kfunc and the types from 6.2 on (Debian 12's own
    /// 6.1 has not: the programs then keep their probe reads).
    #[test]
    fn the_system_btf_has_the_ids_from_6_2_on() {
        use aya::util::KernelVersion;
        let btf = std::fs::read(diffkeeper_btf::SYSTEM_BTF_PATH).unwrap();
        let ids = diffkeeper_btf::skeleton::type_ids(&btf, &DirectIds::WANTED).unwrap();
        let has_kfunc = KernelVersion::current().unwrap() >= KernelVersion::new(6, 2, 0);
        match DirectIds::of(&ids) {
            Some(ids) => {
                let types = [ids.dentry, ids.file, ids.task, ids.kiocb];
                assert!(has_kfunc && ids.cast > 0 && types.iter().all(|&id| id > 0))
            }
            None => assert!(
                !has_kfunc,
                "no bpf_rdonly_cast in a 6.2+ system BTF: {ids:?}"
            ),
        }
        assert_eq!(
            DirectIds::of(&[Some(1), None, Some(2), Some(3), Some(4)]),
            None
        );
    }
}
