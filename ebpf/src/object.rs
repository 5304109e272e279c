//! The two compiled CO-RE eBPF objects (`c/diffkeeper.bpf.c`), embedded in the binary: those
//! of the architecture the crate is compiled for ([`TARGET`]; each kind exists for x86_64 and
//! aarch64, see [`crate::arch`]).
//!
//! * [`ObjectKind::Modern`] (`diffkeeper.bpf.o`), Linux >= 5.17: ring buffer, `bpf_loop`,
//!   global data, fentry/fexit/`tp_btf` besides kprobe and raw tracepoint.
//! * [`ObjectKind::Compat`] (`diffkeeper-compat.bpf.o`), Linux 4.18-5.16: perf event array,
//!   unrolled walk, settings in [`maps::SETTINGS`] instead of globals, kprobe/kretprobe and
//!   raw tracepoint only, `CLOCK_MONOTONIC` timestamps. The differences are listed in
//!   `c/dk_compat.bpf.h`.
//!
//! build.rs recompiles all four when clang is present and otherwise falls back to the
//! committed `obj/<arch>/*.bpf.o`; [`ORIGIN`] says which happened.

use std::fmt;

pub use crate::arch::Arch;

/// The architecture whose objects [`ObjectKind::bytes`] returns: the crate's target.
#[cfg(target_arch = "x86_64")]
pub const TARGET: Arch = Arch::X86_64;
#[cfg(target_arch = "aarch64")]
pub const TARGET: Arch = Arch::Aarch64;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("diffkeeper's eBPF objects exist for x86_64 and aarch64 only");

/// Which of the two objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Modern,
    Compat,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 2] = [ObjectKind::Modern, ObjectKind::Compat];

    /// The object's bytes for the target architecture, as aya loads them.
    pub fn bytes(self) -> &'static [u8] {
        self.bytes_for(TARGET)
            .expect("the target architecture's objects are always embedded")
    }

    /// The object of `arch`: only the target's are embedded, except in this crate's tests.
    pub fn bytes_for(self, arch: Arch) -> Option<&'static [u8]> {
        let pair = match arch {
            Arch::X86_64 => X86_64,
            Arch::Aarch64 => AARCH64,
        };
        pair.map(|[modern, compat]| match self {
            Self::Modern => modern,
            Self::Compat => compat,
        })
    }

    /// `"modern"` or `"compat"` (as in logs and `--ebpf-object`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Modern => "modern",
            Self::Compat => "compat",
        }
    }

    /// The committed file under `ebpf/obj/<arch>/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Modern => "diffkeeper.bpf.o",
            Self::Compat => "diffkeeper-compat.bpf.o",
        }
    }

    /// The clock of `dk_event.ts_ns`: modern has `bpf_ktime_get_boot_ns` (5.8+), compat only
    /// `bpf_ktime_get_ns`.
    pub fn clock(self) -> Clock {
        match self {
            Self::Modern => Clock::Boottime,
            Self::Compat => Clock::Monotonic,
        }
    }

    /// Parses `"modern"` / `"compat"`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernel clock an object stamps events with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// `CLOCK_BOOTTIME`: keeps counting across suspend.
    Boottime,
    /// `CLOCK_MONOTONIC`: stops during suspend.
    Monotonic,
}

/// The modern object's bytes (what this function returned before there were two objects).
pub fn object() -> &'static [u8] {
    ObjectKind::Modern.bytes()
}

/// [modern, compat] of one architecture from OUT_DIR/<arch>/.
macro_rules! pair {
    ($arch:literal) => {
        Some([
            include_bytes!(concat!(env!("OUT_DIR"), "/", $arch, "/diffkeeper.bpf.o")),
            include_bytes!(concat!(
                env!("OUT_DIR"),
                "/",
                $arch,
                "/diffkeeper-compat.bpf.o"
            )),
        ])
    };
}

type Pair = Option<[&'static [u8]; 2]>;
#[cfg(any(test, target_arch = "x86_64"))]
const X86_64: Pair = pair!("x86_64");
#[cfg(not(any(test, target_arch = "x86_64")))]
const X86_64: Pair = None;
#[cfg(any(test, target_arch = "aarch64"))]
const AARCH64: Pair = pair!("aarch64");
#[cfg(not(any(test, target_arch = "aarch64")))]
const AARCH64: Pair = None;

/// `"compiled"` (from source by build.rs) or `"committed"` (clang was not found).
pub const ORIGIN: &str = env!("DIFFKEEPER_BPF_OBJECT_ORIGIN");

/// Program names, as the C file defines them, per attach family.
pub mod programs {
    /// fexit on a write function: (program, kernel function).
    pub const FEXIT_WRITES: [(&str, &str); 2] = [
        ("dk_fexit_vfs_write", "vfs_write"),
        ("dk_fexit_vfs_writev", "vfs_writev"),
    ];
    /// fentry on a security hook: (program, kernel function). A hook only records the
    /// operation; the return of the VFS call that performs it ([`FEXIT_RETURNS`]) reports it
    /// if it succeeded. The statfs hook reports nothing: it learns the roots' dentries.
    pub const FENTRY_HOOKS: [(&str, &str); 9] = [
        ("dk_fentry_inode_create", "security_inode_create"),
        ("dk_fentry_inode_unlink", "security_inode_unlink"),
        ("dk_fentry_inode_rename", "security_inode_rename"),
        ("dk_fentry_inode_link", "security_inode_link"),
        ("dk_fentry_inode_symlink", "security_inode_symlink"),
        ("dk_fentry_inode_mkdir", "security_inode_mkdir"),
        ("dk_fentry_inode_rmdir", "security_inode_rmdir"),
        ("dk_fentry_inode_setattr", "security_inode_setattr"),
        ("dk_fentry_sb_statfs", "security_sb_statfs"),
    ];
    /// fexit on the VFS calls whose success sends what a hook recorded.
    pub const FEXIT_RETURNS: [(&str, &str); 11] = [
        ("dk_fexit_vfs_create", "vfs_create"),
        ("dk_fexit_vfs_unlink", "vfs_unlink"),
        ("dk_fexit_vfs_rename", "vfs_rename"),
        ("dk_fexit_vfs_link", "vfs_link"),
        ("dk_fexit_vfs_symlink", "vfs_symlink"),
        ("dk_fexit_do_filp_open", "do_filp_open"),
        ("dk_fexit_vfs_mkdir", "vfs_mkdir"),
        ("dk_fexit_do_mkdirat", "do_mkdirat"),
        ("dk_fexit_vfs_rmdir", "vfs_rmdir"),
        ("dk_fexit_do_rmdir", "do_rmdir"),
        ("dk_fexit_notify_change", "notify_change"),
    ];
    /// The kprobe and kretprobe attached to every write function.
    pub const KPROBE_WRITE: &str = "dk_kprobe_write";
    pub const KRETPROBE_WRITE: &str = "dk_kretprobe_write";
    pub const WRITE_FUNCTIONS: [&str; 2] = ["vfs_write", "vfs_writev"];
    /// kprobe on a security hook: (program, kernel function).
    pub const KPROBE_HOOKS: [(&str, &str); 9] = [
        ("dk_kprobe_inode_create", "security_inode_create"),
        ("dk_kprobe_inode_unlink", "security_inode_unlink"),
        ("dk_kprobe_inode_rename", "security_inode_rename"),
        ("dk_kprobe_inode_link", "security_inode_link"),
        ("dk_kprobe_inode_symlink", "security_inode_symlink"),
        ("dk_kprobe_inode_mkdir", "security_inode_mkdir"),
        ("dk_kprobe_inode_rmdir", "security_inode_rmdir"),
        ("dk_kprobe_inode_setattr", "security_inode_setattr"),
        ("dk_kprobe_sb_statfs", "security_sb_statfs"),
    ];
    /// kretprobe on the VFS calls whose success sends what a hook recorded.
    pub const KRETPROBE_RETURNS: [(&str, &str); 11] = [
        ("dk_kretprobe_vfs_create", "vfs_create"),
        ("dk_kretprobe_vfs_unlink", "vfs_unlink"),
        ("dk_kretprobe_vfs_rename", "vfs_rename"),
        ("dk_kretprobe_vfs_link", "vfs_link"),
        ("dk_kretprobe_vfs_symlink", "vfs_symlink"),
        ("dk_kretprobe_do_filp_open", "do_filp_open"),
        ("dk_kretprobe_vfs_mkdir", "vfs_mkdir"),
        ("dk_kretprobe_do_mkdirat", "do_mkdirat"),
        ("dk_kretprobe_vfs_rmdir", "vfs_rmdir"),
        ("dk_kretprobe_do_rmdir", "do_rmdir"),
        ("dk_kretprobe_notify_change", "notify_change"),
    ];
    /// The raw tracepoint programs and the tracepoints they attach to by name (any BTF):
    /// sys_enter records what a call names in the thread's slot, sys_exit sends it if the
    /// call succeeded. Tracepoint mode attaches both.
    pub const SYS_ENTER: (&str, &str) = ("dk_sys_enter", "sys_enter");
    pub const SYS_EXIT: (&str, &str) = ("dk_sys_exit", "sys_exit");
    /// The same bodies as BTF-typed tracepoints (cheaper; need the running kernel's BTF ids).
    /// Compat only: what [`SYS_ENTER`] tail-calls, by index in [`super::maps::TP_TAIL`] (never
    /// attached).
    pub const SYS_ENTER_TAILS: [&str; 2] = ["dk_sys_enter_path", "dk_sys_enter_from"];
    /// Modern only.
    pub const SYS_ENTER_BTF: (&str, &str) = ("dk_sys_enter_btf", "sys_enter");
    pub const SYS_EXIT_BTF: (&str, &str) = ("dk_sys_exit_btf", "sys_exit");

    /// Every program of an object: the compat object has the kprobe, kretprobe and raw
    /// tracepoint programs, the modern one also the fentry/fexit and tp_btf ones.
    pub fn all(kind: super::ObjectKind) -> Vec<&'static str> {
        let mut names = vec![KPROBE_WRITE, KRETPROBE_WRITE];
        names.extend(KPROBE_HOOKS.map(|(p, _)| p));
        names.extend(KRETPROBE_RETURNS.map(|(p, _)| p));
        names.extend([SYS_ENTER.0, SYS_EXIT.0]);
        if kind == super::ObjectKind::Compat {
            names.extend(SYS_ENTER_TAILS);
        }
        if kind == super::ObjectKind::Modern {
            names.extend(FEXIT_WRITES.map(|(p, _)| p));
            names.extend(FENTRY_HOOKS.map(|(p, _)| p));
            names.extend(FEXIT_RETURNS.map(|(p, _)| p));
            names.extend([SYS_ENTER_BTF.0, SYS_EXIT_BTF.0]);
        }
        names
    }
}

/// Map names, as the C file defines them.
pub mod maps {
    pub const ROOTS: &str = "dk_roots";
    pub const DEVS: &str = "dk_devs";
    /// Modern: a `RINGBUF`. Compat: a `PERF_EVENT_ARRAY` (one perf buffer per CPU; a sample's
    /// raw data is the same record as modern's, followed by up to 7 bytes of perf padding).
    pub const EVENTS: &str = "dk_events";
    pub const LOST: &str = "dk_lost";
    /// `PERCPU_ARRAY` of `u64` indexed by [`Stat`](crate::event::Stat): changes the kernel
    /// side did not report on purpose (it could not name them truly).
    pub const STATS: &str = "dk_stats";
    /// Compat only: `ARRAY`, 1 entry, key `0u32`, value
    /// [`DkSettings`](crate::event::DkSettings), written by the loader after load and before
    /// attach (modern takes the same values as [`super::globals`]).
    pub const SETTINGS: &str = "dk_settings";
    /// `ARRAY`, 1 entry, key `0u32`, value [`DkAbsRoot`](crate::event::DkAbsRoot): which
    /// absolute names the tracepoint programs send; written by the loader before attach.
    pub const ABS: &str = "dk_abs";
    /// Compat only: `PROG_ARRAY` of [`super::programs::SYS_ENTER_TAILS`], filled by the loader
    /// before `dk_sys_enter` is attached.
    pub const TP_TAIL: &str = "dk_tp_tail";
}

/// Read-only globals (`const volatile`) user space sets at load: modern object only (compat
/// has no global data; its `all_roots` is a field of [`maps::SETTINGS`], and it has no ring
/// size).
pub mod globals {
    /// `u32`: the size of [`super::maps::EVENTS`] in bytes (its max_entries).
    pub const RING_BYTES: &str = "dk_ring_bytes";
    /// `u64`: bit `id` set for every root id in [`super::maps::ROOTS`].
    pub const ALL_ROOTS: &str = "dk_all_roots";
    /// `u32`: 1 when the tp_btf programs may load kernel pointers directly (the loader placed
    /// the kernel's `bpf_rdonly_cast` id in their casts), else 0.
    pub const DIRECT: &str = "dk_direct";
    /// `u32`: the running kernel's BTF id of `struct dentry` (0 without direct loads).
    pub const BTF_DENTRY: &str = "dk_btf_dentry";
    /// `u32`: the running kernel's BTF id of `struct file` (0 without direct loads).
    pub const BTF_FILE: &str = "dk_btf_file";
    /// `u32`: the running kernel's BTF id of `struct task_struct` (0 without direct loads).
    pub const BTF_TASK: &str = "dk_btf_task";
    /// `u32`: the running kernel's BTF id of `struct kiocb`, through which a slot of an fd
    /// array is read (0 without direct loads).
    pub const BTF_KIOCB: &str = "dk_btf_kiocb";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// The committed objects must be exactly what the source compiles to, so `cargo build`
    /// without clang ships the same programs. Regenerate with `just ebpf`.
    #[test]
    fn committed_objects_match_source() {
        assert_eq!(
            ORIGIN, "compiled",
            "build.rs did not find clang, so the committed objects could not be checked: \
             install clang and libbpf-dev (scripts/setup.sh)"
        );
        for arch in Arch::ALL {
            for kind in ObjectKind::ALL {
                let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("obj")
                    .join(arch.name())
                    .join(kind.file_name());
                let committed =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                let built = kind
                    .bytes_for(arch)
                    .expect("tests embed every architecture");
                assert!(
                    committed == built,
                    "ebpf/obj/{arch}/{} ({} bytes) differs from what ebpf/c compiles to ({} \
                     bytes) with {}: run `just ebpf` and commit the result",
                    kind.file_name(),
                    committed.len(),
                    built.len(),
                    clang_version()
                );
            }
        }
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
    fn objects_are_ebpf_elfs_and_differ() {
        let mut all = Vec::new();
        for arch in Arch::ALL {
            for kind in ObjectKind::ALL {
                let b = kind
                    .bytes_for(arch)
                    .expect("tests embed every architecture");
                assert_eq!(&b[..4], b"\x7fELF", "{arch} {kind}");
                // e_machine 247 = EM_BPF.
                assert_eq!(u16::from_le_bytes([b[18], b[19]]), 247, "{arch} {kind}");
                assert_eq!(ObjectKind::from_name(kind.name()), Some(kind));
                assert!(
                    !all.contains(&b),
                    "{arch} {kind} is the same as another object"
                );
                all.push(b);
            }
        }
        assert_eq!(object(), ObjectKind::Modern.bytes());
    }

    /// `bytes()` is the target's object, so an aarch64 sidecar embeds the arm64 programs.
    #[test]
    fn bytes_are_the_target_architectures() {
        for kind in ObjectKind::ALL {
            assert_eq!(Some(kind.bytes()), kind.bytes_for(TARGET));
        }
        assert_eq!(TARGET.name(), std::env::consts::ARCH);
    }

    /// The arm64 programs read arm64 registers: their raw sys_exit reads pt_regs at
    /// orig_x0/syscallno (272, 280: one read from pstate at 264), the x86_64 ones at rdx (96).
    #[test]
    fn each_architecture_reads_its_own_registers() {
        let disasm = |arch: Arch| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("obj")
                .join(arch.name())
                .join(ObjectKind::Modern.file_name());
            let out = Command::new("llvm-objdump")
                .args(["-d", "--section=raw_tracepoint/sys_exit"])
                .arg(&path)
                .output()
                .expect("run llvm-objdump (llvm, with clang: scripts/setup.sh)");
            assert!(out.status.success(), "llvm-objdump {}", path.display());
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let x86 = disasm(Arch::X86_64);
        let arm = disasm(Arch::Aarch64);
        assert!(
            x86.contains("+= 96\n"),
            "x86_64 sys_exit does not read from rdx:\n{x86}"
        );
        assert!(
            arm.contains("+= 264\n"),
            "aarch64 sys_exit does not read from pstate:\n{arm}"
        );
    }
}
