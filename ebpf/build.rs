//! Compiles the two CO-RE objects from `c/` into OUT_DIR when clang is available, so they
//! always match the source; without clang the committed `obj/*.bpf.o` are used and
//! `cargo build` still works. `DIFFKEEPER_UPDATE_BPF_OBJ=1` (the `just ebpf` recipe) also
//! copies the fresh objects over the committed ones.
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

const SOURCE: &str = "c/diffkeeper.bpf.c";

/// (file name in OUT_DIR and obj/, extra clang arguments)
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

fn main() {
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rerun-if-changed=obj");
    println!("cargo:rerun-if-env-changed=DIFFKEEPER_CLANG");
    println!("cargo:rerun-if-env-changed=DIFFKEEPER_UPDATE_BPF_OBJ");

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it"));
    let clang = env::var("DIFFKEEPER_CLANG").unwrap_or_else(|_| "clang".to_string());

    let mut origin = "compiled";
    for (name, extra) in OBJECTS {
        let committed = Path::new("obj").join(name);
        let out = out_dir.join(name);
        match compile(&clang, &manifest_dir, extra, &out) {
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
            Err(CompileError::Failed(msg)) => panic!("compiling {SOURCE} ({name}) failed: {msg}"),
        }
    }
    println!("cargo:rustc-env=DIFFKEEPER_BPF_OBJECT_ORIGIN={origin}");

    if origin == "compiled" && env::var_os("DIFFKEEPER_UPDATE_BPF_OBJ").is_some() {
        for (name, _) in OBJECTS {
            let committed = Path::new("obj").join(name);
            fs::copy(out_dir.join(name), manifest_dir.join(&committed))
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
    extra: &[&str],
    out: &Path,
) -> Result<(), CompileError> {
    let prefix_map = format!("-fdebug-prefix-map={}=.", manifest_dir.display());
    let result = Command::new(clang)
        .current_dir(manifest_dir)
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
        .args(["-I/usr/include/x86_64-linux-gnu", "-Ic", &prefix_map])
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
