//! The mount table as the kernel shows it (`/proc/self/mountinfo`): which mount holds a path,
//! with the device number the kernel's `super_block.s_dev` carries. `stat(2)` may report
//! another one: btrfs gives every subvolume an anonymous device of its own, while its files'
//! `d_sb->s_dev` (what the eBPF programs compare) is the file system's, the mountinfo one.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    pub parent: u64,
    /// `major:minor` of the file system: the kernel's `s_dev`.
    pub major: u64,
    pub minor: u64,
    /// The mount's root within its file system (`/` or a subdirectory, a btrfs subvolume...).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// Reads and parses `/proc/self/mountinfo`.
pub fn read() -> io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string(MOUNTINFO)?))
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let (before, after) = line.split_once(" - ")?;
    let mut f = before.split(' ');
    let id = f.next()?.parse().ok()?;
    let parent = f.next()?.parse().ok()?;
    let (major, minor) = f.next()?.split_once(':')?;
    let root = unescape(f.next()?);
    let mount_point = unescape(f.next()?);
    let fs_type = after.split(' ').next()?.to_string();
    Some(Mount {
        id,
        parent,
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root,
        mount_point,
        fs_type,
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// The id of the mount holding `path` (statx `STATX_MNT_ID`, Linux 5.8+), without following a
/// final symlink; `None` where the kernel does not say.
pub fn mount_id(path: &Path) -> Option<u64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut buf: nix::libc::statx = unsafe { std::mem::zeroed() };
    // The raw system call: not every libc the sidecar is linked with has the wrapper.
    // SAFETY: the path is NUL-terminated and `buf` is a statx the kernel may fill.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_statx,
            nix::libc::AT_FDCWD,
            c_path.as_ptr(),
            nix::libc::AT_SYMLINK_NOFOLLOW,
            nix::libc::STATX_MNT_ID,
            &mut buf as *mut nix::libc::statx,
        )
    };
    (rc == 0 && buf.stx_mask & nix::libc::STATX_MNT_ID != 0).then_some(buf.stx_mnt_id)
}

/// The mount holding the canonical `path`: the one with `id` when given and listed, else the
/// one with the longest mount point that is a prefix of `path` (of several on the same mount
/// point the last listed, which is the one on top).
pub fn containing<'a>(mounts: &'a [Mount], path: &Path, id: Option<u64>) -> Option<&'a Mount> {
    if let Some(m) = id.and_then(|id| mounts.iter().find(|m| m.id == id)) {
        return Some(m);
    }
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
        .and_then(|longest| {
            mounts
                .iter()
                .rev()
                .find(|m| m.mount_point == longest.mount_point)
        })
}

/// Mounts whose mount point lies strictly below `dir` (canonical).
pub fn below<'a>(mounts: &'a [Mount], dir: &'a Path) -> impl Iterator<Item = &'a Mount> {
    mounts
        .iter()
        .filter(move |m| m.mount_point != dir && m.mount_point.starts_with(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
70 22 0:42 / /tmp/dkb/mnt rw,relatime - btrfs /dev/loop0 rw,subvolid=5,subvol=/
71 22 0:42 /sub /srv/with\\040space rw,relatime - btrfs /dev/loop0 rw,subvolid=256,subvol=/sub
72 70 0:50 / /tmp/dkb/mnt/t rw - tmpfs tmpfs rw
73 70 0:51 / /tmp/dkb/mnt/t rw - tmpfs tmpfs rw
garbage line
";

    #[test]
    fn parses_fields_and_escapes() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 5);
        assert_eq!(
            mounts[2],
            Mount {
                id: 71,
                parent: 22,
                major: 0,
                minor: 42,
                root: "/sub".into(),
                mount_point: "/srv/with space".into(),
                fs_type: "btrfs".into(),
            }
        );
    }

    #[test]
    fn finds_the_mount_holding_a_path() {
        let mounts = parse(SAMPLE);
        let at = |p: &str, id| containing(&mounts, Path::new(p), id).map(|m| m.id);
        assert_eq!(at("/tmp/dkb/mnt/sub/inner", None), Some(70));
        assert_eq!(at("/tmp/dkb/mntx", None), Some(22));
        assert_eq!(at("/srv/with space/a", None), Some(71));
        // Stacked on one mount point: the top one (listed last).
        assert_eq!(at("/tmp/dkb/mnt/t/x", None), Some(73));
        // The mount id wins when listed.
        assert_eq!(at("/tmp/dkb/mnt/t/x", Some(72)), Some(72));
        assert_eq!(at("/tmp/dkb/mnt/t/x", Some(999)), Some(73));
        let nested: Vec<u64> = below(&mounts, Path::new("/tmp/dkb"))
            .map(|m| m.id)
            .collect();
        assert_eq!(nested, [70, 72, 73]);
    }

    #[test]
    fn statx_names_a_listed_mount() {
        let mounts = read().unwrap();
        let id = mount_id(Path::new("/")).expect("statx STATX_MNT_ID (Linux 5.8+)");
        assert!(mounts.iter().any(|m| m.id == id), "{id} not in {MOUNTINFO}");
    }
}
