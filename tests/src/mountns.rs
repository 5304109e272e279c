//! Emulating a kernel without system BTF (needs root): the command runs in a private mount
//! namespace where an empty tmpfs covers `/sys/kernel/btf`.

use std::ffi::CStr;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Makes `cmd` run with `/sys/kernel/btf` hidden; the rest of the system is unchanged.
pub fn hide_system_btf(cmd: &mut Command) -> &mut Command {
    // SAFETY: between fork and exec only async-signal-safe syscalls run, with static strings.
    unsafe {
        cmd.pre_exec(|| {
            unshare(CloneFlags::CLONE_NEWNS)?;
            mount(
                None::<&CStr>,
                c"/",
                None::<&CStr>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&CStr>,
            )?;
            mount(
                Some(c"tmpfs"),
                c"/sys/kernel/btf",
                Some(c"tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&CStr>,
            )?;
            Ok(())
        })
    }
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
