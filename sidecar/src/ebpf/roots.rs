//! Watched roots as the kernel side sees them: `dk_roots` maps (device, inode) to a root id
//! (the index into [`RootTable::paths`]), and `dk_devs` lists the root inodes per device, the
//! cheap first filter every write passes through.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use diffkeeper_ebpf::event::{kernel_dev, DkDevRoots, DkRootKey, DK_MAX_ROOTS_PER_DEV};
use nix::sys::stat::{major, minor};

pub struct RootTable {
    /// Root directories; a root's id is its index.
    pub paths: Vec<PathBuf>,
    pub keys: Vec<(DkRootKey, u32)>,
    pub devs: BTreeMap<u32, DkDevRoots>,
}

impl RootTable {
    pub fn build(paths: Vec<PathBuf>) -> Result<Self, String> {
        let mut keys = Vec::with_capacity(paths.len());
        let mut devs: BTreeMap<u32, DkDevRoots> = BTreeMap::new();
        for (id, path) in paths.iter().enumerate() {
            let meta = std::fs::metadata(path)
                .map_err(|e| format!("cannot stat watched directory {}: {e}", path.display()))?;
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
                return Err(format!(
                    "more than {DK_MAX_ROOTS_PER_DEV} watched directories on one file system \
                     (at {}): watch a common parent instead",
                    path.display()
                ));
            }
            roots.ino[slot] = meta.ino();
            roots.count += 1;
        }
        Ok(Self { paths, keys, devs })
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
    }

    #[test]
    fn missing_root_is_named() {
        let err = RootTable::build(vec![PathBuf::from("/nonexistent/dk")])
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent/dk"), "{err}");
    }
}
