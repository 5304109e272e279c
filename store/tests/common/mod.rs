//! Helpers of the store's integration tests: mirror real files into a writer, describe a real
//! tree for comparison.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use diffkeeper_store::{Meta, StoreWriter};

/// Records the current state of `root_dir/rel` (file, directory or symlink) with `writer`.
pub fn put_path(writer: &mut StoreWriter, root: &str, root_dir: &Path, rel: &str) {
    let path = root_dir.join(rel);
    let md = fs::symlink_metadata(&path).expect("lstat");
    let meta = Meta::from_metadata(&md);
    let now = SystemTime::now();
    if md.file_type().is_symlink() {
        let target = fs::read_link(&path).expect("readlink");
        writer
            .put_symlink(
                now,
                root,
                rel.as_bytes(),
                &meta,
                target.as_os_str().as_bytes(),
            )
            .expect("put_symlink");
    } else if md.is_dir() {
        writer
            .put_dir(now, root, rel.as_bytes(), &meta)
            .expect("put_dir");
    } else {
        let mut file = fs::File::open(&path).expect("open");
        writer
            .put_file(now, root, rel.as_bytes(), &meta, &mut file)
            .expect("put_file");
    }
}

/// Records every entry below `root_dir` (parents first), as a baseline does.
pub fn put_all(writer: &mut StoreWriter, root: &str, root_dir: &Path) {
    for rel in walk(root_dir) {
        put_path(writer, root, root_dir, &rel);
    }
}

/// Every path below `dir`, relative, parents first, sorted.
pub fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn go(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry"))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(base)
                .expect("below base")
                .to_string_lossy()
                .into_owned();
            out.push(rel);
            if e.file_type().expect("type").is_dir() {
                go(base, &p, out);
            }
        }
    }
    go(dir, dir, &mut out);
    out
}

/// What a tree holds, comparable across copies: per path its type, mode, owner, content hash,
/// link target, file mtime, and for hard links the first path of its inode.
pub fn describe(dir: &Path) -> BTreeMap<String, String> {
    let mut inode_first: HashMap<(u64, u64), String> = HashMap::new();
    let mut out = BTreeMap::new();
    for rel in walk(dir) {
        let path = dir.join(&rel);
        let md = fs::symlink_metadata(&path).expect("lstat");
        let mode = md.mode() & 0o7777;
        let owner = format!("{}:{}", md.uid(), md.gid());
        let desc = if md.file_type().is_symlink() {
            format!(
                "symlink -> {}",
                fs::read_link(&path).expect("readlink").display()
            )
        } else if md.is_dir() {
            format!("dir {mode:o} {owner}")
        } else {
            let content = fs::read(&path).expect("read");
            let first = inode_first
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone())
                .clone();
            let mtime = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
            format!(
                "file {mode:o} {owner} {} bytes {} mtime {mtime} inode-of {first}",
                content.len(),
                blake3::hash(&content).to_hex()
            )
        };
        out.insert(rel, desc);
    }
    out
}

/// Copies `from` to `to` with `cp -a`, the reference snapshot.
pub fn snapshot(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp runs");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// A time strictly after every record so far, and before every later one.
pub fn mark() -> u64 {
    std::thread::sleep(Duration::from_millis(3));
    let t = diffkeeper_store::ts_ns(SystemTime::now());
    std::thread::sleep(Duration::from_millis(3));
    t
}

/// Deterministic pseudo-random bytes (xorshift), incompressible like real binary data.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_diffkeeper"))
}

/// The real `diffkeeper` binary run with `args` (names may be bytes that are not UTF-8).
pub fn run(args: &[impl AsRef<std::ffi::OsStr>]) -> std::process::Output {
    std::process::Command::new(bin())
        .args(args)
        .output()
        .expect("diffkeeper runs")
}

/// Output bytes as text, for assertions and messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
