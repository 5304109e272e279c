//! Compiles the CO-RE object from `c/` into OUT_DIR when clang is available, so the object
//! always matches the source; without clang the committed `obj/diffkeeper.bpf.o` is used and
//! `cargo build` still works. `DIFFKEEPER_UPDATE_BPF_OBJ=1` (the `just ebpf` recipe) also
//! copies the fresh object over the committed one.
//!
//! The command runs in this crate's directory with relative paths and a debug prefix map, so
//! the bytes do not depend on where the checkout lives (the committed-object test relies on it).

use std::env;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "c/diffkeeper.bpf.c";
const COMMITTED: &str = "obj/diffkeeper.bpf.o";

fn main() {
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rerun-if-changed={COMMITTED}");
    println!("cargo:rerun-if-env-changed=DIFFKEEPER_CLANG");
    println!("cargo:rerun-if-env-changed=DIFFKEEPER_UPDATE_BPF_OBJ");

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("diffkeeper.bpf.o");
    let clang = env::var("DIFFKEEPER_CLANG").unwrap_or_else(|_| "clang".to_string());

    let origin = match compile(&clang, &manifest_dir, &out) {
        Ok(()) => "compiled",
        Err(CompileError::NoClang) => {
            println!("cargo:warning={clang} not found: using the committed {COMMITTED}");
            fs::copy(manifest_dir.join(COMMITTED), &out)
                .unwrap_or_else(|e| panic!("copy {COMMITTED} to {}: {e}", out.display()));
            "committed"
        }
        Err(CompileError::Failed(msg)) => panic!("compiling {SOURCE} failed: {msg}"),
    };
    println!("cargo:rustc-env=DIFFKEEPER_BPF_OBJECT_ORIGIN={origin}");

    if origin == "compiled" && env::var_os("DIFFKEEPER_UPDATE_BPF_OBJ").is_some() {
        fs::copy(&out, manifest_dir.join(COMMITTED))
            .unwrap_or_else(|e| panic!("update {COMMITTED}: {e}"));
    }
}

enum CompileError {
    NoClang,
    Failed(String),
}

fn compile(clang: &str, manifest_dir: &Path, out: &Path) -> Result<(), CompileError> {
    let prefix_map = format!("-fdebug-prefix-map={}=.", manifest_dir.display());
    let result = Command::new(clang)
        .current_dir(manifest_dir)
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86"])
        .args(["-I/usr/include/x86_64-linux-gnu", "-Ic", &prefix_map])
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
