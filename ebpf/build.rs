//! Compiles the two CO-RE objects from `c/`, for each architecture (`src/arch.rs`: x86_64
//! and aarch64), into OUT_DIR/<arch>/ when clang is available, so they always match the
//! source; without clang the committed `obj/<arch>/*.bpf.o` are used and `cargo build` still
//! works. `DIFFKEEPER_UPDATE_BPF_OBJ=1` (the `just ebpf` recipe) also copies the fresh objects
//! over the committed ones. All four are built whatever the crate's target: the tests check
//! every one, and a cross build needs no second clang run.
//!
//! * modern (`diffkeeper.bpf.o`): ring buffer, bpf_loop, global data, BTF-typed programs.
//! * compat (`diffkeeper-compat.bpf.o`): `-DDK_COMPAT`, for kernels 4.18-5.16 (see
//!   `c/dk_compat.bpf.h`). Built with `-mcpu=v1` (no JMP32/ALU32: 5.1+), and with block
//!   placement and tail merging off: they lay blocks out of order and merge tails into
//!   earlier code, which gives backward jumps in loop-free code; the compat object must have
//!   none (the static checks in `src/check.rs` hold it to that).
//!
//! The command runs in this crate's directory with relative paths and a debug prefix map, so
//! the bytes do not depend on where the checkout lives (the committed-object test relies on it).

use std::env;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/arch.rs"]
mod arch;
use arch::Arch;

const SOURCE: &str = "c/diffkeeper.bpf.c";

/// (file name in OUT_DIR/<arch>/ and obj/<arch>/, extra clang arguments)
const OBJECTS: [(&str, &[&str]); 2] = [
    ("diffkeeper.bpf.o", &[]),
    (
        "diffkeeper-compat.bpf.o",
        &[
            "-DDK_COMPAT",
            "-mcpu=v1",
            "-mllvm",
            "-disable-block-placement",
            "-mllvm",
            "-enable-tail-merge=false",
        ],
    ),
];

/// Every (architecture, file name, extra clang arguments) build.rs makes.
fn objects() -> impl Iterator<Item = (Arch, &'static str, &'static [&'static str])> {
    Arch::ALL
        .into_iter()
        .flat_map(|arch| OBJECTS.map(|(name, extra)| (arch, name, extra)))
}

fn main() {
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rerun-if-changed=obj");
    println!("cargo:rerun-if-env-changed=DIFFKEEPER_CLANG");
    println!("cargo:rerun-if-env-changed=DIFFKEEPER_UPDATE_BPF_OBJ");

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it"));
    let clang = env::var("DIFFKEEPER_CLANG").unwrap_or_else(|_| "clang".to_string());

    let mut origin = "compiled";
    for (arch, name, extra) in objects() {
        let committed = Path::new("obj").join(arch.name()).join(name);
        let dir = out_dir.join(arch.name());
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let out = dir.join(name);
        match compile(&clang, &manifest_dir, arch, extra, &out) {
            Ok(()) => {}
            Err(CompileError::NoClang) => {
                println!(
                    "cargo:warning={clang} not found: using the committed {}",
                    committed.display()
                );
                fs::copy(manifest_dir.join(&committed), &out).unwrap_or_else(|e| {
                    panic!("copy {} to {}: {e}", committed.display(), out.display())
                });
                origin = "committed";
            }
            Err(CompileError::Failed(msg)) => {
                panic!("compiling {SOURCE} ({arch} {name}) failed: {msg}")
            }
        }
    }
    println!("cargo:rustc-env=DIFFKEEPER_BPF_OBJECT_ORIGIN={origin}");

    if origin == "compiled" && env::var_os("DIFFKEEPER_UPDATE_BPF_OBJ").is_some() {
        for (arch, name, _) in objects() {
            let committed = manifest_dir.join("obj").join(arch.name()).join(name);
            fs::create_dir_all(committed.parent().expect("obj/<arch>"))
                .unwrap_or_else(|e| panic!("create {}: {e}", committed.display()));
            fs::copy(out_dir.join(arch.name()).join(name), &committed)
                .unwrap_or_else(|e| panic!("update {}: {e}", committed.display()));
        }
    }
}

enum CompileError {
    NoClang,
    Failed(String),
}

fn compile(
    clang: &str,
    manifest_dir: &Path,
    arch: Arch,
    extra: &[&str],
    out: &Path,
) -> Result<(), CompileError> {
    let prefix_map = format!("-fdebug-prefix-map={}=.", manifest_dir.display());
    let result = Command::new(clang)
        .current_dir(manifest_dir)
        .args(["-O2", "-g", "-target", "bpf"])
        .args(arch.clang_args())
        .args(["-Ic", &prefix_map])
        .args(extra)
        .args(["-c", SOURCE, "-o"])
        .arg(out)
        .output();
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Err(CompileError::NoClang),
        Err(e) => Err(CompileError::Failed(format!("cannot run {clang}: {e}"))),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(CompileError::Failed(format!(
            "{clang} exited with {}:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ))),
    }
}
