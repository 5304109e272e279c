//! The compiled CO-RE eBPF object (`c/diffkeeper.bpf.c`), embedded in the binary.
//!
//! build.rs recompiles it when clang is present and otherwise falls back to the committed
//! `obj/diffkeeper.bpf.o`; [`ORIGIN`] says which happened.

/// The object's bytes as aya loads them.
pub fn object() -> &'static [u8] {
    OBJECT
}

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/diffkeeper.bpf.o"));

/// `"compiled"` (from source by build.rs) or `"committed"` (clang was not found).
pub const ORIGIN: &str = env!("DIFFKEEPER_BPF_OBJECT_ORIGIN");

/// Program names, as the C file defines them, per attach family.
pub mod programs {
    /// fexit on a write function: (program, kernel function).
    pub const FEXIT_WRITES: [(&str, &str); 2] = [
        ("dk_fexit_vfs_write", "vfs_write"),
        ("dk_fexit_vfs_writev", "vfs_writev"),
    ];
    /// fentry on a security hook: (program, kernel function).
    pub const FENTRY_HOOKS: [(&str, &str); 3] = [
        ("dk_fentry_inode_create", "security_inode_create"),
        ("dk_fentry_inode_unlink", "security_inode_unlink"),
        ("dk_fentry_inode_rename", "security_inode_rename"),
    ];
    /// The kprobe and kretprobe attached to every write function.
    pub const KPROBE_WRITE: &str = "dk_kprobe_write";
    pub const KRETPROBE_WRITE: &str = "dk_kretprobe_write";
    pub const WRITE_FUNCTIONS: [&str; 2] = ["vfs_write", "vfs_writev"];
    /// kprobe on a security hook: (program, kernel function).
    pub const KPROBE_HOOKS: [(&str, &str); 3] = [
        ("dk_kprobe_inode_create", "security_inode_create"),
        ("dk_kprobe_inode_unlink", "security_inode_unlink"),
        ("dk_kprobe_inode_rename", "security_inode_rename"),
    ];
    /// The raw tracepoint program and the tracepoint it attaches to by name (any BTF).
    pub const SYS_EXIT: (&str, &str) = ("dk_sys_exit", "sys_exit");
    /// The same body as a BTF-typed tracepoint (cheaper; needs the running kernel's BTF ids).
    pub const SYS_EXIT_BTF: (&str, &str) = ("dk_sys_exit_btf", "sys_exit");
}

/// Map names, as the C file defines them.
pub mod maps {
    pub const ROOTS: &str = "dk_roots";
    pub const DEVS: &str = "dk_devs";
    pub const EVENTS: &str = "dk_events";
    pub const LOST: &str = "dk_lost";
}

/// Read-only globals (`const volatile`) user space sets at load.
pub mod globals {
    /// `u32`: the size of [`super::maps::EVENTS`] in bytes (its max_entries).
    pub const RING_BYTES: &str = "dk_ring_bytes";
    /// `u64`: bit `id` set for every root id in [`super::maps::ROOTS`].
    pub const ALL_ROOTS: &str = "dk_all_roots";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// The committed object must be exactly what the source compiles to, so `cargo build`
    /// without clang ships the same programs. Regenerate with `just ebpf`.
    #[test]
    fn committed_object_matches_source() {
        assert_eq!(
            ORIGIN, "compiled",
            "build.rs did not find clang, so the committed object could not be checked: \
             install clang and libbpf-dev (scripts/setup.sh)"
        );
        let committed =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("obj/diffkeeper.bpf.o"))
                .expect("read ebpf/obj/diffkeeper.bpf.o");
        assert!(
            committed == OBJECT,
            "ebpf/obj/diffkeeper.bpf.o ({} bytes) differs from what ebpf/c compiles to ({} bytes) \
             with {}: run `just ebpf` and commit the result",
            committed.len(),
            OBJECT.len(),
            clang_version()
        );
    }

    fn clang_version() -> String {
        Command::new("clang")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_else(|| "clang".to_string())
    }

    #[test]
    fn object_is_an_ebpf_elf() {
        assert_eq!(&OBJECT[..4], b"\x7fELF");
        // e_machine 247 = EM_BPF.
        assert_eq!(u16::from_le_bytes([OBJECT[18], OBJECT[19]]), 247);
    }
}
