//! The architectures the eBPF objects are built for: each object kind is compiled once per
//! architecture from the same C source, with `c/dk_arch.bpf.h` holding every difference
//! (syscall numbers, how the programs read registers). build.rs includes this file too.

use std::fmt;

/// An architecture with its own pair of eBPF objects (`obj/<name>/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// Rust's `target_arch`, `uname -m`, and the directory under `obj/`.
    pub fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }

    /// The clang arguments that select the architecture, relative to the crate directory:
    /// `__TARGET_ARCH_*` (bpf_tracing.h and dk_arch.bpf.h) and where `<asm/…>` UAPI headers
    /// come from. arm64's few are copied under `c/uapi/aarch64`, so no arm64 package is
    /// needed on the build machine.
    pub fn clang_args(self) -> &'static [&'static str] {
        match self {
            Self::X86_64 => &["-D__TARGET_ARCH_x86", "-I/usr/include/x86_64-linux-gnu"],
            Self::Aarch64 => &["-D__TARGET_ARCH_arm64", "-Ic/uapi/aarch64"],
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The per-architecture syscall tables of `c/dk_arch.bpf.h` against the kernel's own UAPI
/// headers (from linux-libc-dev): both are run through clang's preprocessor, so the numbers
/// compared are what the compiler sees, e.g. asm-generic's `__NR3264_fstatfs` for fstatfs.
#[cfg(test)]
mod tests {
    use super::Arch;
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// The header with the architecture's syscall numbers, as arm64's own `asm/unistd.h` and
    /// x86_64's `asm/unistd.h` (for 64-bit user space) include it.
    fn kernel_header(arch: Arch) -> &'static str {
        match arch {
            Arch::X86_64 => "asm/unistd_64.h",
            // arm64's uapi asm/unistd.h asks for renameat before including the generic table.
            Arch::Aarch64 => "asm-generic/unistd.h",
        }
    }

    /// What the architecture's own asm/unistd.h defines before the generic table.
    fn kernel_prelude(arch: Arch) -> &'static str {
        match arch {
            Arch::X86_64 => "",
            Arch::Aarch64 => "#define __ARCH_WANT_RENAMEAT\n",
        }
    }

    /// Every syscall the tracepoint programs can report, with what they do with it; an
    /// architecture's table must list exactly those its kernel has.
    const FAMILY: [(&str, &str); 32] = [
        ("write", "WRITE"),
        ("pwrite64", "WRITE"),
        ("writev", "WRITE"),
        ("pwritev", "WRITE"),
        ("pwritev2", "WRITE"),
        ("open", "OPEN_ARG1"),
        ("creat", "CREAT"),
        ("openat", "OPEN_ARG2"),
        ("openat2", "OPENAT2"),
        ("fstatfs", "FSTATFS"),
        ("link", "LINK"),
        ("symlink", "LINK"),
        ("linkat", "LINKAT"),
        ("symlinkat", "SYMLINKAT"),
        ("unlink", "UNLINK"),
        ("unlinkat", "UNLINKAT"),
        ("rmdir", "RMDIR"),
        ("mkdir", "MKDIR"),
        ("mkdirat", "MKDIRAT"),
        ("rename", "RENAME"),
        ("renameat", "RENAMEAT"),
        ("renameat2", "RENAMEAT2"),
        ("chmod", "ATTRIB"),
        ("chown", "ATTRIB"),
        ("lchown", "ATTRIB"),
        ("fchmod", "FATTRIB"),
        ("fchown", "FATTRIB"),
        ("fchmodat", "ATTRIBAT"),
        ("fchownat", "ATTRIBAT"),
        ("fchmodat2", "ATTRIBAT"),
        ("truncate", "TRUNCATE"),
        ("ftruncate", "FTRUNCATE"),
    ];

    /// Syscalls newer than the build machine's UAPI headers (linux-libc-dev 6.1 has no
    /// fchmodat2, Linux 6.6): their number, the same on both architectures (the unified
    /// table from 424 on), is checked here instead.
    const NEWER_THAN_HEADERS: [(&str, &str); 1] = [("fchmodat2", "452")];

    /// `body` through `clang -E` with the architecture's flags, from the crate directory.
    fn preprocess(arch: Arch, body: &str) -> String {
        let mut child = Command::new("clang")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["-E", "-P", "-target", "bpf", "-Ic"])
            .args(arch.clang_args())
            .args(["-x", "c", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run clang -E (install clang and linux-libc-dev: scripts/setup.sh)");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(body.as_bytes())
            .expect("write to clang");
        let out = child.wait_with_output().expect("clang -E");
        assert!(
            out.status.success(),
            "clang -E for {arch} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// The words after each `marker` in `text`, `n` at a time.
    fn rows(text: &str, marker: &str, n: usize) -> Vec<Vec<String>> {
        text.split(marker)
            .skip(1)
            .map(|row| row.split_whitespace().take(n).map(str::to_string).collect())
            .collect()
    }

    /// name -> (our number, our kind, the kernel's `__NR_<name>` after preprocessing).
    fn our_table(arch: Arch) -> BTreeMap<String, (String, String, String)> {
        let body = format!(
            "#include \"dk_arch.bpf.h\"\n{}#include <{}>\n\
             #define DK_ROW(name, nr, kind) DKROW name nr kind __NR_##name\n\
             DK_SYSCALLS(DK_ROW)\n",
            kernel_prelude(arch),
            kernel_header(arch)
        );
        rows(&preprocess(arch, &body), "DKROW", 4)
            .into_iter()
            .map(|r| (r[0].clone(), (r[1].clone(), r[2].clone(), r[3].clone())))
            .collect()
    }

    /// The family's syscalls the kernel's header defines: name -> number.
    fn kernel_table(arch: Arch) -> BTreeMap<String, String> {
        let mut body = format!(
            "{}#include <{}>\n",
            kernel_prelude(arch),
            kernel_header(arch)
        );
        for (name, _) in FAMILY {
            body += &format!("DKNR {name} __NR_{name}\n");
        }
        rows(&preprocess(arch, &body), "DKNR", 2)
            .into_iter()
            .filter(|r| r[1].parse::<u32>().is_ok()) // undefined: the token stays __NR_<name>
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect()
    }

    #[test]
    fn syscall_numbers_match_the_kernel_headers() {
        for arch in Arch::ALL {
            let ours = our_table(arch);
            assert!(!ours.is_empty(), "{arch}: no DK_SYSCALLS rows");
            for (name, (nr, _, kernel)) in &ours {
                if let Some((_, want)) = NEWER_THAN_HEADERS.iter().find(|(n, _)| n == name) {
                    if kernel.starts_with("__NR_") {
                        assert_eq!(nr, want, "{arch}: {name}");
                        continue;
                    }
                }
                assert_eq!(
                    nr,
                    kernel,
                    "{arch}: dk_arch.bpf.h has {name} = {nr}, {} says __NR_{name} = {kernel}",
                    kernel_header(arch)
                );
            }
        }
    }

    #[test]
    fn every_reported_syscall_the_kernel_has_is_in_the_table() {
        for arch in Arch::ALL {
            let ours = our_table(arch);
            let kernel = kernel_table(arch);
            let newer = |name: &&String| NEWER_THAN_HEADERS.iter().any(|(n, _)| n == name);
            let ours_names: Vec<_> = ours.keys().filter(|n| !newer(n)).collect();
            let kernel_names: Vec<_> = kernel.keys().filter(|n| !newer(n)).collect();
            assert_eq!(
                ours_names,
                kernel_names,
                "{arch}: the syscalls of dk_arch.bpf.h differ from those {} defines",
                kernel_header(arch)
            );
            for (name, kind) in FAMILY {
                if let Some((_, ours_kind, _)) = ours.get(name) {
                    assert_eq!(ours_kind, kind, "{arch}: {name}");
                }
            }
        }
    }

    /// What the tables above must come to: arm64 has only the *at forms (asm-generic: no open,
    /// creat, link, symlink, unlink, rmdir, mkdir, rename, chmod, chown; renameat because
    /// arm64 asks for it, and musl's rename() uses it), and its pwrite64 is 68 (67 is pread64).
    #[test]
    fn the_tables_are_the_expected_ones() {
        let names = |arch| {
            our_table(arch)
                .into_iter()
                .map(|(n, (nr, _, _))| format!("{n}={nr}"))
        };
        assert_eq!(
            names(Arch::X86_64).collect::<Vec<_>>().join(" "),
            "chmod=90 chown=92 creat=85 fchmod=91 fchmodat=268 fchmodat2=452 fchown=93 \
             fchownat=260 fstatfs=138 ftruncate=77 lchown=94 link=86 linkat=265 mkdir=83 \
             mkdirat=258 open=2 openat=257 openat2=437 pwrite64=18 pwritev=296 pwritev2=328 \
             rename=82 renameat=264 renameat2=316 rmdir=84 symlink=88 symlinkat=266 \
             truncate=76 unlink=87 unlinkat=263 write=1 writev=20"
        );
        assert_eq!(
            names(Arch::Aarch64).collect::<Vec<_>>().join(" "),
            "fchmod=52 fchmodat=53 fchmodat2=452 fchown=55 fchownat=54 fstatfs=44 \
             ftruncate=46 linkat=37 mkdirat=34 openat=56 openat2=437 pwrite64=68 pwritev=70 \
             pwritev2=287 renameat=38 renameat2=276 symlinkat=36 truncate=45 unlinkat=35 \
             write=64 writev=66"
        );
    }
}
