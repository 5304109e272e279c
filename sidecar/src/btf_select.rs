//! Which BTF the eBPF object is relocated against: the kernel's own (`/sys/kernel/btf/vmlinux`),
//! else `<cache>/<release>.btf` (full or minimised, put there by diffkeeper-init), else none.
//! The sidecar never downloads. Every file is checked with the shared header validation first,
//! because aya itself does not check the BTF magic.

use std::fmt;
use std::path::{Path, PathBuf};

use aya::{Btf, Endianness};
use diffkeeper_btf::cache::BtfCache;
use diffkeeper_btf::validate::check_file;
use diffkeeper_btf::SYSTEM_BTF_PATH;

/// Where the BTF came from; fentry needs [`BtfSource::System`] (the running kernel's type ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BtfSource {
    System,
    Cache,
}

impl BtfSource {
    /// The metrics/log label: `"system"` or `"cache"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Cache => "cache",
        }
    }
}

/// A validated, parsed BTF.
pub struct SelectedBtf {
    pub source: BtfSource,
    pub path: PathBuf,
    pub btf: Btf,
}

/// No usable BTF: each candidate and why it was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoBtf {
    pub tried: Vec<String>,
    pub cache_file: PathBuf,
}

impl fmt::Display for NoBtf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no usable BTF ({}) (provide {}: run diffkeeper-init)",
            self.tried.join("; "),
            self.cache_file.display()
        )
    }
}

impl std::error::Error for NoBtf {}

/// Picks system BTF, then the cache file for `release`; logs `[eBPF] Loaded BTF spec from <path>`.
pub fn select(cache_dir: &Path, release: &str) -> Result<SelectedBtf, NoBtf> {
    let cache_file = BtfCache::new(cache_dir)
        .btf_path(release)
        .unwrap_or_else(|_| cache_dir.join(format!("{release}.btf")));
    let candidates = [
        (BtfSource::System, PathBuf::from(SYSTEM_BTF_PATH)),
        (BtfSource::Cache, cache_file.clone()),
    ];
    let mut tried = Vec::new();
    for (source, path) in candidates {
        match load(&path) {
            Ok(btf) => {
                log::info!("[eBPF] Loaded BTF spec from {}", path.display());
                return Ok(SelectedBtf { source, path, btf });
            }
            Err(why) => {
                log::debug!("[eBPF] {} BTF not used: {why}", source.as_str());
                tried.push(why);
            }
        }
    }
    Err(NoBtf { tried, cache_file })
}

fn load(path: &Path) -> Result<Btf, String> {
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    check_file(path).map_err(|e| e.to_string())?;
    Btf::parse_file(path, Endianness::default())
        .map_err(|e| format!("cannot parse BTF {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_everything_names_the_cache_file() {
        let dir = std::env::temp_dir().join(format!("dk-btf-select-{}", std::process::id()));
        let err = load(&dir.join("x.btf")).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        let no = NoBtf {
            tried: vec!["a".into(), "b".into()],
            cache_file: dir.join("6.1.0.btf"),
        };
        let text = no.to_string();
        assert!(
            text.contains("6.1.0.btf") && text.contains("run diffkeeper-init"),
            "{text}"
        );
    }

    #[test]
    fn rejects_a_file_that_is_not_btf() {
        let path = std::env::temp_dir().join(format!("dk-not-btf-{}.btf", std::process::id()));
        std::fs::write(&path, vec![0x7f; 64]).unwrap();
        let err = load(&path).unwrap_err();
        std::fs::remove_file(&path).ok();
        assert!(err.contains("bad magic"), "{err}");
    }
}
