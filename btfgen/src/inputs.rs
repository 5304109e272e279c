//! What btfgen reads: the kernels of a BTFHub-shaped archive and the eBPF objects.
//!
//! Archive: `<distro>/<version>/<arch>/<release>.btf.tar.xz`, `<arch>` one of BTFHub's `x86_64`
//! and `arm64`. Hidden entries (`.git`) and files that do not end in `.btf.tar.xz` (READMEs) are
//! ignored; an archive file anywhere else, under an unknown arch dir, or with an unsafe name is
//! reported and skipped.
//!
//! Objects: every `*.bpf.o` under the objects dir, at any depth. Every eBPF ELF has
//! `e_machine = EM_BPF` whatever kernel architecture it was compiled for (`-D__TARGET_ARCH_*`), so
//! the architecture comes from the directory: `<objects>/{x86_64,aarch64,arm64}/...` serve that
//! architecture's kernels; objects outside an architecture dir serve every architecture.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use diffkeeper_btf::bundle::check_key;

use crate::errors::{BtfgenError, SkipReason};

/// BTFHub's architecture dirs.
pub const ARCHES: [&str; 2] = ["x86_64", "arm64"];
pub(crate) const SUFFIX: &str = ".btf.tar.xz";
pub(crate) const EM_BPF: u16 = 247;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// `<distro>/<version>/<arch>/<release>`: the bundle key.
    pub key: String,
    pub arch: String,
    pub archive: PathBuf,
}

/// A file of the archive that is not used, and why.
#[derive(Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: SkipReason,
}

/// Every kernel archive under `root`, sorted by key, and the archive files that cannot be used.
pub fn kernels(root: &Path) -> Result<(Vec<Kernel>, Vec<Skipped>), BtfgenError> {
    let mut files = Vec::new();
    walk(root, root, &mut files).map_err(|error| BtfgenError::ListArchive {
        root: root.to_path_buf(),
        error,
    })?;
    files.sort();
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for rel in files {
        let path = root.join(&rel);
        let parts: Vec<&str> = rel.split('/').collect();
        let skip = |reason: SkipReason| Skipped {
            path: path.clone(),
            reason,
        };
        let [distro, version, arch, file] = parts[..] else {
            skipped.push(skip(SkipReason::NotBtfhubPath { depth: parts.len() }));
            continue;
        };
        if !ARCHES.contains(&arch) {
            skipped.push(skip(SkipReason::UnknownArch {
                arch: arch.to_string(),
            }));
            continue;
        }
        let release = &file[..file.len() - SUFFIX.len()];
        let key = format!("{distro}/{version}/{arch}/{release}");
        if let Err(reason) = check_key(&key) {
            skipped.push(skip(SkipReason::BadKey { key, reason }));
            continue;
        }
        found.push(Kernel {
            key,
            arch: arch.to_string(),
            archive: path,
        });
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((found, skipped))
}

/// Relative paths (with `/`) of the `*.btf.tar.xz` files under `dir`, hidden entries left out.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &entry.path(), out)?;
        } else if name.ends_with(SUFFIX) {
            let rel = entry
                .path()
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(rel);
        }
    }
    Ok(())
}

/// The eBPF objects, by the architecture they serve (`None`: every architecture).
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub by_arch: Vec<(Option<String>, PathBuf)>,
}

impl Objects {
    /// The objects a kernel of `arch` must be minimised for.
    pub fn for_arch(&self, arch: &str) -> Vec<&Path> {
        self.by_arch
            .iter()
            .filter(|(a, _)| a.as_deref().is_none_or(|a| a == arch))
            .map(|(_, p)| p.as_path())
            .collect()
    }
}

/// Every `*.bpf.o` under `dir`, each checked to be an eBPF ELF, sorted by path.
pub fn objects(dir: &Path) -> Result<Objects, BtfgenError> {
    let mut files = Vec::new();
    find_objects(dir, &mut files).map_err(|error| BtfgenError::ListObjects {
        dir: dir.to_path_buf(),
        error,
    })?;
    files.sort();
    if files.is_empty() {
        return Err(BtfgenError::NoObjects {
            dir: dir.to_path_buf(),
        });
    }
    let mut by_arch = Vec::new();
    for path in files {
        check_bpf_elf(&path)?;
        let arch = path
            .strip_prefix(dir)
            .ok()
            .and_then(|rel| rel.components().next())
            .and_then(|c| c.as_os_str().to_str())
            .and_then(|first| match first {
                "x86_64" => Some("x86_64"),
                "aarch64" | "arm64" => Some("arm64"),
                _ => None,
            })
            .map(str::to_string);
        by_arch.push((arch, path));
    }
    Ok(Objects { by_arch })
}

fn find_objects(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            find_objects(&path, out)?;
        } else if path.to_string_lossy().ends_with(".bpf.o") {
            out.push(path);
        }
    }
    Ok(())
}

fn check_bpf_elf(path: &Path) -> Result<(), BtfgenError> {
    let mut head = [0u8; 20];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|error| BtfgenError::ObjectUnreadable {
            path: path.to_path_buf(),
            error,
        })?;
    let machine = match head[5] {
        1 => u16::from_le_bytes([head[18], head[19]]),
        _ => u16::from_be_bytes([head[18], head[19]]),
    };
    if &head[..4] != b"\x7fELF" || machine != EM_BPF {
        return Err(BtfgenError::NotBpfObject {
            path: path.to_path_buf(),
            machine,
        });
    }
    Ok(())
}
