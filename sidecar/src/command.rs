//! `diffkeeper-sidecar ... -- CMD ARGS...`: the command run once the sidecar is ready, whose
//! exit stops the sidecar and becomes its exit code (so a CI job can record a test run).

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ExitStatus};

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use crate::fatal::Fatal;

/// The running command.
pub struct Command {
    pid: Pid,
}

impl Command {
    /// Starts `program args` with the sidecar's stdin/stdout/stderr, SIGTERM and SIGINT
    /// unblocked (the sidecar blocks them in every thread of its own); `exited` is called
    /// with its exit code when it ends.
    pub fn spawn(
        program: &OsString,
        args: &[OsString],
        exited: impl FnOnce(u8) + Send + 'static,
    ) -> Result<Command, Fatal> {
        let mut command = std::process::Command::new(program);
        command.args(args);
        // SAFETY: between fork and exec only pthread_sigmask runs, which is async-signal-safe
        // and allocates nothing.
        unsafe {
            command.pre_exec(|| {
                let mut set = SigSet::empty();
                set.add(Signal::SIGTERM);
                set.add(Signal::SIGINT);
                set.thread_unblock().map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().map_err(|source| Fatal::Command {
            program: program.clone(),
            source,
        })?;
        let pid = Pid::from_raw(child.id() as i32);
        log::info!("started the command {program:?} (pid {pid}); the sidecar stops when it exits");
        std::thread::Builder::new()
            .name("command".into())
            .spawn(move || exited(wait(child)))
            .map_err(|source| Fatal::Thread {
                name: "command",
                source,
            })?;
        Ok(Command { pid })
    }

    /// Passes a SIGTERM/SIGINT the sidecar received on to the command, whose exit ends both.
    pub fn forward(&self, signal: Signal) {
        log::info!(
            "received {signal}: passing it to the command (pid {})",
            self.pid
        );
        if let Err(e) = nix::sys::signal::kill(self.pid, signal) {
            log::warn!(
                "cannot pass {signal} to the command (pid {}): {e}",
                self.pid
            );
        }
    }
}

fn wait(mut child: Child) -> u8 {
    match child.wait() {
        Ok(status) => exit_code(status),
        Err(e) => {
            log::error!("cannot wait for the command: {e}");
            1
        }
    }
}

/// The exit code a shell would report: the status, or 128+N for a signal N.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_a_shells() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }
}
