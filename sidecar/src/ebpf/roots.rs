//! Watched roots as the kernel side sees them: `dk_roots` maps (device, inode) to a root id
//! (the index into [`RootTable::paths`]), and `dk_devs` lists the root inodes per device, the
//! cheap first filter every write passes through.
//!
//! The device is the one the programs compare, `d_sb->s_dev`: the `major:minor` of the mount
//! holding the root in `/proc/self/mountinfo`, not `stat(2)`'s (btrfs reports a device per
//! subvolume there). Two roots the kernel cannot tell apart, and roots with a btrfs subvolume
//! below them, are refused (the sidecar then uses inotify): inode numbers start afresh in each
//! subvolume, so a directory in a nested subvolume can carry a watched root's (device, inode).
//!
//! Each root is also held open ([`RootTable::pins`]): the kernel side learns root dentry
//! addresses to walk parents by pointer, which is only sound while those dentries are pinned.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use diffkeeper_ebpf::event::{
    kernel_dev, DkDevRoots, DkRootKey, DK_MAX_ROOTS, DK_MAX_ROOTS_PER_DEV,
};
use nix::fcntl::OFlag;

use super::error::RootsError;
use crate::mounts::{self, Mount};
use nix::sys::stat::{major, minor};

/// Directories looked at below btrfs roots for nested subvolumes before giving up (logged).
const SUBVOLUME_SCAN_LIMIT: usize = 100_000;

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
        let mount_table = match mounts::read() {
            Ok(table) => table,
            Err(e) => {
                log::warn!(
                    "[eBPF] cannot read {}: {e}; root devices are taken from stat(2), which \
                     is wrong for btrfs subvolumes",
                    mounts::MOUNTINFO
                );
                Vec::new()
            }
        };
        let mut btrfs_roots = Vec::new();
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
            let mount = mounts::containing(&mount_table, path, mounts::mount_id(path));
            let dev = match mount {
                Some(m) => kernel_dev(m.major, m.minor),
                None => kernel_dev(major(meta.dev()), minor(meta.dev())),
            };
            let key = DkRootKey {
                dev,
                pad: 0,
                ino: meta.ino(),
            };
            if let Some((_, other)) = keys.iter().find(|(k, _): &&(DkRootKey, u32)| *k == key) {
                return Err(RootsError::SameIdentity {
                    first: paths[*other as usize].clone(),
                    second: path.clone(),
                    dev: (dev >> 20, dev & 0xf_ffff),
                    ino: meta.ino(),
                    fs_type: mount.map(|m| m.fs_type.clone()).unwrap_or_default(),
                });
            }
            if mount.is_some_and(|m| m.fs_type == "btrfs") {
                btrfs_roots.push((path.clone(), meta.dev()));
            }
            keys.push((key, id as u32));
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
        for (root, stat_dev) in &btrfs_roots {
            check_subvolumes(root, *stat_dev, &mount_table)?;
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

    /// Lets the programs learn each root's dentry now (they watch fstatfs() for that, and learn
    /// a root only so), so walks compare pointers from the first write on. A failure is found
    /// by the check that follows (every root learned).
    pub fn teach_kernel(&self) {
        for (pin, path) in self.pins.iter().zip(&self.paths) {
            if let Err(e) = nix::sys::statfs::fstatfs(pin) {
                log::debug!("[eBPF] fstatfs {}: {e}", path.display());
            }
        }
    }
}

/// Walks the directories below the btrfs root `root` (not into other mounts) for nested
/// subvolumes. All subvolumes share one superblock and each numbers its inodes from 256 on, so
/// until the programs have learned the root's dentry ([`RootTable::teach_kernel`]), a
/// directory in a nested subvolume with a watched root's inode number is taken for that root.
/// (A sibling subvolume elsewhere on the device is harmless: roots are learned only from
/// the root directory itself, and the sidecar journals nothing before they are.)
fn check_subvolumes(
    root: &Path,
    root_stat_dev: u64,
    mount_table: &[Mount],
) -> Result<(), RootsError> {
    let mut pending = vec![(root.to_owned(), root_stat_dev)];
    let mut seen = 0usize;
    while let Some((dir, dir_dev)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // file_type() does not follow symlinks.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.dev() != dir_dev {
                if mount_table.iter().any(|m| m.mount_point == path) {
                    continue; // another mount: not this file system's walk
                }
                return Err(RootsError::NestedSubvolume {
                    root: root.to_owned(),
                    subvolume: path,
                });
            }
            seen += 1;
            if seen == SUBVOLUME_SCAN_LIMIT {
                log::warn!(
                    "[eBPF] stopped looking for btrfs subvolumes below {} after {seen} \
                     directories: files in a nested subvolume further down could be reported \
                     under a wrong path",
                    root.display()
                );
                return Ok(());
            }
            pending.push((path, meta.dev()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_roots_by_device() {
        let base = std::env::temp_dir().join(format!("dk-roots-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let table = RootTable::build(vec![a.clone(), b.clone(), PathBuf::from("/")]).unwrap();
        assert_eq!(table.keys.len(), 3);
        assert_eq!(table.keys[0].0.dev, table.keys[1].0.dev);
        assert_eq!(table.keys[2].1, 2);
        let total: u32 = table.devs.values().map(|d| d.count).sum();
        assert_eq!(total, 3);
        assert_eq!((table.pins.len(), table.id_mask()), (3, 0b111));
        // The same directory twice (however spelled) is one key: refused, both named.
        let err = RootTable::build(vec![a.clone(), a.join(".")])
            .err()
            .unwrap();
        let RootsError::SameIdentity { fs_type, .. } = &err else {
            panic!("{err}");
        };
        // Only btrfs is blamed on btrfs: elsewhere the pair is one directory.
        let text = err.to_string();
        assert_eq!(text.contains("btrfs"), fs_type == "btrfs", "{text}");
        if fs_type != "btrfs" {
            assert!(text.contains("are one directory"), "{text}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_device_is_the_mounts_as_in_mountinfo() {
        let table = RootTable::build(vec![PathBuf::from("/proc")]).unwrap();
        let mounts = mounts::read().unwrap();
        let proc_mount = mounts
            .iter()
            .find(|m| m.mount_point == Path::new("/proc"))
            .unwrap();
        assert_eq!(
            table.keys[0].0.dev,
            kernel_dev(proc_mount.major, proc_mount.minor)
        );
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
