//! Emulating a kernel without system BTF (needs root): a private mount namespace where an empty
//! tmpfs covers `/sys/kernel/btf`, for a child command or for the calling thread; and a
//! private bind mount for a child command.

use std::ffi::CStr;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Makes `cmd` run with `/sys/kernel/btf` hidden; the rest of the system is unchanged.
pub fn hide_system_btf(cmd: &mut Command) -> &mut Command {
    // SAFETY: between fork and exec only async-signal-safe syscalls run, with static strings.
    unsafe { cmd.pre_exec(|| Ok(cover_system_btf()?)) }
}

/// Makes `cmd` run with `/sys/kernel/btf` hidden and `dir` read-only (a read-only bind mount of
/// itself), as a directory baked into an image and mounted read-only would be.
pub fn hide_system_btf_with_read_only<'a>(
    cmd: &'a mut Command,
    dir: &std::path::Path,
) -> &'a mut Command {
    let dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .expect("a path without NUL bytes");
    // SAFETY: between fork and exec only async-signal-safe syscalls run; `dir` was allocated
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            cover_system_btf()?;
            mount(
                Some(dir.as_c_str()),
                dir.as_c_str(),
                None::<&CStr>,
                MsFlags::MS_BIND,
                None::<&CStr>,
            )?;
            mount(
                None::<&CStr>,
                dir.as_c_str(),
                None::<&CStr>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                None::<&CStr>,
            )?;
            Ok(())
        })
    }
}

/// Makes `cmd` run in a private mount namespace where `dir` is also reachable at `alias` (a
/// bind mount); the rest of the system is unchanged.
pub fn bind_mount<'a>(
    cmd: &'a mut Command,
    dir: &std::path::Path,
    alias: &std::path::Path,
) -> &'a mut Command {
    let c_path = |p: &std::path::Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("a path without NUL bytes")
    };
    let (dir, alias) = (c_path(dir), c_path(alias));
    // SAFETY: between fork and exec only async-signal-safe syscalls run; the paths were
    // allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            private_mount_namespace()?;
            mount(
                Some(dir.as_c_str()),
                alias.as_c_str(),
                None::<&CStr>,
                MsFlags::MS_BIND,
                None::<&CStr>,
            )?;
            Ok(())
        })
    }
}

/// Hides `/sys/kernel/btf` from the calling thread (and threads it starts); other threads keep
/// the real view, since unshare(CLONE_NEWNS) is per thread.
pub fn hide_system_btf_in_this_thread() {
    cover_system_btf().expect("a private mount namespace over /sys/kernel/btf (needs root)");
    assert!(!std::path::Path::new(crate::btf::SYSTEM_BTF).exists());
}

/// unshare(CLONE_NEWNS), make `/` private, mount an empty tmpfs on `/sys/kernel/btf`.
fn cover_system_btf() -> nix::Result<()> {
    private_mount_namespace()?;
    mount(
        Some(c"tmpfs"),
        c"/sys/kernel/btf",
        Some(c"tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&CStr>,
    )
}

/// unshare(CLONE_NEWNS) for the calling thread and make `/` private in it, so mounts made from
/// now on are seen by this thread and its children only.
pub fn private_mount_namespace() -> nix::Result<()> {
    unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&CStr>,
        c"/",
        None::<&CStr>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&CStr>,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_btf_is_hidden_inside_only() {
        let out = hide_system_btf(Command::new("ls").arg("-A").arg("/sys/kernel/btf"))
            .output()
            .expect("run ls");
        assert!(out.status.success(), "{out:?}");
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(std::path::Path::new(crate::btf::SYSTEM_BTF).exists());
    }
}
