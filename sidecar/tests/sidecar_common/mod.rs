//! Shared by the sidecar/tests that run the diffkeeper-sidecar binary from the outside
//! (lifecycle.rs, start_paths.rs): the command, spawning it, and one eBPF sidecar at a time.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use diffkeeper_tests::sidecar::SidecarProcess;

pub const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One eBPF sidecar at a time: the canary allows about a second and this machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sidecar with `args`, its stdout discarded.
pub fn sidecar(args: &[&str]) -> Command {
    let mut cmd = Command::new(SIDECAR);
    cmd.args(args).stdout(Stdio::null());
    cmd
}

pub fn spawn(cmd: &mut Command) -> SidecarProcess {
    SidecarProcess::spawn(cmd).expect("run diffkeeper-sidecar")
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
