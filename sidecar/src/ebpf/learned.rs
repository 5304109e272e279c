//! Which watched roots the kernel side has matched: bit `id` of `dk_learned` is set once a
//! program found root `id` by its (device, inode) key. In tracepoint mode the sidecar makes the
//! programs look at every root (an `fstatfs()` on each, see [`super::roots::RootTable::teach_kernel`]),
//! so a root whose bit stays clear is one the kernel filter does not match: its changes would
//! never be reported.
//!
//! The modern object keeps `dk_learned` in `.bss` (one array element holding the whole
//! section; the variable's offset comes from the object's symbol table), the compat object in
//! the ARRAY map `dk_learned` (key 0).

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::Map;
use aya::Ebpf;
use diffkeeper_ebpf::object::ObjectKind;
use object::{Object, ObjectSection, ObjectSymbol};

const VARIABLE: &str = "dk_learned";

/// Why the learned-root bitmask could not be read.
#[derive(Debug)]
pub enum LearnedError {
    /// The embedded object could not be parsed, or lacks `.bss` / the variable in it.
    Object(String),
    NoMap {
        map: &'static str,
    },
    NotArray {
        map: &'static str,
    },
    Syscall {
        call: &'static str,
        map: &'static str,
        errno: String,
    },
    OutOfBounds {
        map: &'static str,
        offset: usize,
        value_size: usize,
    },
}

impl std::fmt::Display for LearnedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Object(what) => write!(f, "the eBPF object: {what}"),
            Self::NoMap { map } => write!(f, "the object has no map {map}"),
            Self::NotArray { map } => write!(f, "the map {map} is not an array"),
            Self::Syscall { call, map, errno } => write!(f, "{call}({map}): {errno}"),
            Self::OutOfBounds {
                map,
                offset,
                value_size,
            } => write!(
                f,
                "{VARIABLE} at offset {offset} lies outside {map}'s {value_size} bytes"
            ),
        }
    }
}

impl std::error::Error for LearnedError {}

/// Reads the learned-root bitmask.
pub fn mask(ebpf: &Ebpf, object: ObjectKind) -> Result<u64, LearnedError> {
    let (map, offset) = match object {
        ObjectKind::Modern => (".bss", bss_offset(object.bytes())?),
        ObjectKind::Compat => (VARIABLE, 0),
    };
    let data = match ebpf.map(map) {
        Some(Map::Array(data)) => data,
        Some(_) => return Err(LearnedError::NotArray { map }),
        None => return Err(LearnedError::NoMap { map }),
    };
    let syscall = |call, errno: String| LearnedError::Syscall { call, map, errno };
    let value_size = data
        .info()
        .map_err(|e| syscall("bpf_obj_get_info_by_fd", e.to_string()))?
        .value_size() as usize;
    if offset + 8 > value_size {
        return Err(LearnedError::OutOfBounds {
            map,
            offset,
            value_size,
        });
    }
    let mut value = vec![0u8; value_size];
    lookup(data.fd().as_fd().as_raw_fd(), 0, &mut value)
        .map_err(|e| syscall("bpf(BPF_MAP_LOOKUP_ELEM)", e.to_string()))?;
    let mut word = [0u8; 8];
    word.copy_from_slice(&value[offset..offset + 8]);
    Ok(u64::from_ne_bytes(word))
}

/// `dk_learned`'s offset in the `.bss` section of the object.
fn bss_offset(elf: &[u8]) -> Result<usize, LearnedError> {
    let file = object::File::parse(elf).map_err(|e| LearnedError::Object(e.to_string()))?;
    let bss = file
        .section_by_name(".bss")
        .ok_or_else(|| LearnedError::Object("no .bss section".into()))?
        .index();
    file.symbols()
        .find(|s| s.name() == Ok(VARIABLE) && s.section_index() == Some(bss))
        .map(|s| s.address() as usize)
        .ok_or_else(|| LearnedError::Object(format!("no {VARIABLE} in .bss")))
}

/// BPF_MAP_LOOKUP_ELEM with a u32 key into `value` (exactly the map's value size).
fn lookup(map_fd: i32, key: u32, value: &mut [u8]) -> Result<(), nix::errno::Errno> {
    // union bpf_attr, the BPF_MAP_*_ELEM commands' part.
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_LOOKUP_ELEM: i64 = 1;
    let attr = Attr {
        map_fd: map_fd as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: value.as_mut_ptr() as u64,
        flags: 0,
    };
    // SAFETY: the kernel reads `attr` and the key, and writes value_size bytes into `value`,
    // which the caller sized to the map's value size.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_bpf,
            BPF_MAP_LOOKUP_ELEM,
            &attr as *const Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if rc < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// The roots (by id, below `count`) whose bit is clear in `mask`.
pub fn unmatched(mask: u64, count: usize) -> Vec<usize> {
    (0..count).filter(|id| mask & (1u64 << id) == 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_modern_object_has_dk_learned_in_bss() {
        // Its offset is read from the symbol table; 0 in today's object, but any is fine.
        let offset = bss_offset(ObjectKind::Modern.bytes()).unwrap();
        assert_eq!(offset % 8, 0, "{offset}");
    }

    #[test]
    fn unmatched_roots_are_listed() {
        assert_eq!(unmatched(0b101, 3), [1]);
        assert!(unmatched(u64::MAX, 64).is_empty());
    }
}
