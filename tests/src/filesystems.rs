//! State directories on real file systems (needs root): loop-mounted btrfs (with a subvolume),
//! ext4 and XFS images, tmpfs and overlayfs, mounted in the calling thread's private mount
//! namespace so nothing outside the test sees them (they go away with the thread).

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, MsFlags};

/// The kinds of file system a state directory is tried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    Btrfs,
    Ext4,
    Xfs,
    Tmpfs,
    Overlay,
}

impl Fs {
    pub const ALL: [Fs; 5] = [Fs::Btrfs, Fs::Ext4, Fs::Xfs, Fs::Tmpfs, Fs::Overlay];

    pub fn name(self) -> &'static str {
        match self {
            Fs::Btrfs => "btrfs",
            Fs::Ext4 => "ext4",
            Fs::Xfs => "xfs",
            Fs::Tmpfs => "tmpfs",
            Fs::Overlay => "overlay",
        }
    }
}

/// Gives the calling thread (and the processes it starts) a private mount namespace with `/`
/// private, so mounts made from now on are seen by this thread and its children only.
pub fn private_mounts_in_this_thread() {
    crate::mountns::private_mount_namespace()
        .expect("unshare(CLONE_NEWNS) and a private / (needs root)");
}

/// A mounted file system, unmounted (lazily) when dropped: drop it before the scratch directory
/// that holds its image and mount point.
pub struct Mounted {
    path: PathBuf,
}

impl Mounted {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Makes a file system of kind `fs` under `work` and mounts it on `work/mnt` (in the calling
/// thread's mount namespace: call [`private_mounts_in_this_thread`] first). A btrfs also gets
/// a subvolume `sub`.
pub fn make_and_mount(fs: Fs, work: &Path) -> Mounted {
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let image = work.join(format!("{}.img", fs.name()));
    let image_of = |bytes: u64| {
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(bytes).unwrap();
    };
    match fs {
        Fs::Btrfs => {
            image_of(256 << 20);
            run(Command::new("mkfs.btrfs").arg("-q").arg("-f").arg(&image));
            run(Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(&mnt));
            run(Command::new("btrfs")
                .args(["-q", "subvolume", "create"])
                .arg(mnt.join("sub")));
        }
        Fs::Ext4 => {
            image_of(64 << 20);
            run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
            run(Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(&mnt));
        }
        Fs::Xfs => {
            image_of(320 << 20);
            run(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&image));
            run(Command::new("mount")
                .arg("-o")
                .arg("loop")
                .arg(&image)
                .arg(&mnt));
        }
        Fs::Tmpfs => {
            run(Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
                .arg(&mnt));
        }
        Fs::Overlay => {
            let (lower, upper, wd) = (
                work.join("lower"),
                work.join("upper"),
                work.join("ovl-work"),
            );
            for d in [&lower, &upper, &wd] {
                std::fs::create_dir_all(d).unwrap();
            }
            std::fs::create_dir_all(lower.join("from-lower")).unwrap();
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                wd.display()
            );
            run(Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &options])
                .arg(&mnt));
        }
    }
    Mounted { path: mnt }
}

/// Mounts a small tmpfs on `dir` (created if missing), in the calling thread's mount namespace.
pub fn mount_tmpfs(dir: &Path) -> Mounted {
    std::fs::create_dir_all(dir).unwrap();
    mount(
        Some(c"tmpfs"),
        dir,
        Some(c"tmpfs"),
        MsFlags::empty(),
        Some(c"size=4m"),
    )
    .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", dir.display()));
    Mounted {
        path: dir.to_owned(),
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (see scripts/setup.sh for the packages)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
