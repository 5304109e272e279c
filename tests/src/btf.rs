//! BTF fixtures: the running kernel's own BTF (the real thing) and a tiny well-formed one.

use std::sync::{Arc, OnceLock};

use crate::tarball;

pub use diffkeeper_btf::SYSTEM_BTF_PATH as SYSTEM_BTF;

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .expect("uname")
        .release()
        .to_string_lossy()
        .into_owned()
}

/// A copy of `/sys/kernel/btf/vmlinux`, read once.
pub fn system_btf() -> Arc<Vec<u8>> {
    static BYTES: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            Arc::new(std::fs::read(SYSTEM_BTF).unwrap_or_else(|e| {
                panic!("{SYSTEM_BTF}: {e} (these tests need a kernel with CONFIG_DEBUG_INFO_BTF)")
            }))
        })
        .clone()
}

/// The system BTF packed the way BTFHub packs it: `tar cJf <release>.btf.tar.xz <release>.btf`.
pub fn system_btf_archive() -> Arc<Vec<u8>> {
    static ARCHIVE: OnceLock<Arc<Vec<u8>>> = OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            let name = format!("{}.btf", kernel_release());
            Arc::new(tarball::tar_cjf(&[(&name, &system_btf())]))
        })
        .clone()
}

/// A small BTF that passes header validation: one `int` type and its name.
pub fn tiny_btf() -> Vec<u8> {
    // type: name_off=1, info=BTF_KIND_INT<<24, size=4, then the int encoding (32 bits).
    let mut types = Vec::new();
    for word in [1u32, 1 << 24, 4, 32] {
        types.extend_from_slice(&word.to_le_bytes());
    }
    let strings = b"\0int\0";
    let mut out = vec![0x9f, 0xeb, 1, 0];
    for word in [
        24u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&types);
    out.extend_from_slice(strings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_btf_is_valid() {
        diffkeeper_btf::validate::check_bytes(&tiny_btf()).unwrap();
    }
}
