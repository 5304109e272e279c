//! Watched roots as the kernel side sees them: `dk_roots` maps (device, inode) to a root id
//! (the index into [`RootTable::paths`]), and `dk_devs` lists the root inodes per device, the
//! cheap first filter every write passes through.
//!
//! Each root is also held open ([`RootTable::pins`]): the kernel side learns root dentry
//! addresses to walk parents by pointer, which is only sound while those dentries are pinned.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use diffkeeper_ebpf::event::{
    kernel_dev, DkDevRoots, DkRootKey, DK_MAX_ROOTS, DK_MAX_ROOTS_PER_DEV,
};
use nix::fcntl::OFlag;

use super::error::RootsError;
use nix::sys::stat::{major, minor};

pub struct RootTable {
    /// Root directories; a root's id is its index.
    pub paths: Vec<PathBuf>,
    pub keys: Vec<(DkRootKey, u32)>,
    pub devs: BTreeMap<u32, DkDevRoots>,
    /// An O_PATH descriptor per root, kept open as long as programs may compare its dentry.
    pub pins: Vec<File>,
}

impl RootTable {
    pub fn build(paths: Vec<PathBuf>) -> Result<Self, RootsError> {
        if paths.len() > DK_MAX_ROOTS {
            return Err(RootsError::TooMany {
                count: paths.len(),
                max: DK_MAX_ROOTS,
            });
        }
        let mut keys = Vec::with_capacity(paths.len());
        let mut devs: BTreeMap<u32, DkDevRoots> = BTreeMap::new();
        let mut pins = Vec::with_capacity(paths.len());
        for (id, path) in paths.iter().enumerate() {
            let pin = OpenOptions::new()
                .read(true)
                .custom_flags((OFlag::O_PATH | OFlag::O_DIRECTORY).bits())
                .open(path)
                .map_err(|source| RootsError::Open {
                    path: path.clone(),
                    source,
                })?;
            let meta = pin.metadata().map_err(|source| RootsError::Stat {
                path: path.clone(),
                source,
            })?;
            let dev = kernel_dev(major(meta.dev()), minor(meta.dev()));
            keys.push((
                DkRootKey {
                    dev,
                    pad: 0,
                    ino: meta.ino(),
                },
                id as u32,
            ));
            let roots = devs.entry(dev).or_default();
            let slot = roots.count as usize;
            if slot == DK_MAX_ROOTS_PER_DEV {
                return Err(RootsError::TooManyOnOneDevice {
                    path: path.clone(),
                    max: DK_MAX_ROOTS_PER_DEV,
                });
            }
            roots.ino[slot] = meta.ino();
            roots.count += 1;
            pins.push(pin);
        }
        Ok(Self {
            paths,
            keys,
            devs,
            pins,
        })
    }

    /// dk_all_roots: bit `id` set for every root id.
    pub fn id_mask(&self) -> u64 {
        let unused = (DK_MAX_ROOTS - self.paths.len()) as u32;
        u64::MAX.checked_shr(unused).unwrap_or(0)
    }

    /// Lets the tracepoint program learn each root's dentry now (it watches fstatfs() for
    /// that), so walks compare pointers from the first write on. Failure only costs speed.
    pub fn teach_kernel(&self) {
        for (pin, path) in self.pins.iter().zip(&self.paths) {
            if let Err(e) = nix::sys::statfs::fstatfs(pin) {
                log::debug!("[eBPF] fstatfs {}: {e}", path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_roots_by_device() {
        let tmp = std::env::temp_dir();
        let table = RootTable::build(vec![tmp.clone(), tmp.join("."), PathBuf::from("/")]).unwrap();
        assert_eq!(table.keys.len(), 3);
        assert_eq!(table.keys[0].0, table.keys[1].0);
        assert_eq!(table.keys[2].1, 2);
        let total: u32 = table.devs.values().map(|d| d.count).sum();
        assert_eq!(total, 3);
        assert_eq!((table.pins.len(), table.id_mask()), (3, 0b111));
    }

    #[test]
    fn missing_root_is_named() {
        let err = RootTable::build(vec![PathBuf::from("/nonexistent/dk")])
            .err()
            .unwrap();
        assert!(matches!(err, RootsError::Open { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/dk"), "{err}");
    }
}
