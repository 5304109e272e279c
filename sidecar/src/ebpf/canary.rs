//! The canary self-check: aya relocates against a BTF with wrong member offsets without a
//! complaint, and the programs then read the wrong fields. So after attaching, write a known
//! number of bytes to a file in the private canary root and demand the event back, with the
//! right name and size, within a second. The pid is not compared: in a container's PID
//! namespace `getpid()` differs from the kernel-wide pid the programs report.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use diffkeeper_ebpf::event::{Event, Op};

use super::error::{CanaryDirError, CanaryError};

const PAYLOAD: &[u8] = b"diffkeeper canary: does the BTF fit this kernel?\n";
const WAIT: Duration = Duration::from_secs(1);

/// Writes the canary file in `dir` (watched as root `root_id`) and waits for its event.
pub fn check(dir: &Path, root_id: u32, events: &Receiver<Event>) -> Result<(), CanaryError> {
    while events.try_recv().is_ok() {}
    let name = format!("canary-{}", std::process::id());
    let file = dir.join(&name);
    std::fs::write(&file, PAYLOAD).map_err(|source| CanaryError::Write {
        path: file.clone(),
        source,
    })?;
    let result = wait(root_id, &name, events);
    if let Err(e) = std::fs::remove_file(&file) {
        log::debug!(
            "[eBPF] cannot remove the canary file {}: {e}",
            file.display()
        );
    }
    result
}

fn wait(root_id: u32, name: &str, events: &Receiver<Event>) -> Result<(), CanaryError> {
    let want = (Some((root_id, name.to_string())), PAYLOAD.len() as u64);
    let deadline = Instant::now() + WAIT;
    let mut seen = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ev) if ev.op != Op::Write => continue,
            Ok(ev) if (ev.path.clone(), ev.bytes) == want => return Ok(()),
            Ok(ev) => seen = Some(ev),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => return Err(CanaryError::ReaderStopped),
        }
    }
    Err(match seen {
        Some(ev) => CanaryError::Mismatch {
            bytes: want.1,
            name: name.to_string(),
            got_name: ev.path.map(|(_, p)| p).unwrap_or_default(),
            got_bytes: ev.bytes,
        },
        None => CanaryError::NoEvent {
            bytes: want.1,
            name: name.to_string(),
            wait: WAIT,
        },
    })
}

/// The private directory the canary writes into; removed when dropped.
///
/// It goes under the BTF cache first (in Kubernetes that volume is writable even with a
/// read-only root file system), else under $TMPDIR. The name is unique per start: several
/// pods can share a node-wide cache and all run as pid 1.
#[derive(Debug)]
pub struct CanaryDir(PathBuf);

impl CanaryDir {
    pub fn create(cache_dir: &Path) -> Result<Self, CanaryDirError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let name = format!(".diffkeeper-canary-{}-{nanos:08x}", std::process::id());
        let mut tried = Vec::new();
        for parent in [cache_dir.to_owned(), std::env::temp_dir()] {
            let dir = parent.join(&name);
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    log::debug!("canary directory {}", dir.display());
                    return Ok(Self(dir));
                }
                Err(e) => tried.push((dir, e)),
            }
        }
        Err(CanaryDirError { tried })
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for CanaryDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            log::warn!(
                "cannot remove the canary directory {}: {e}",
                self.0.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn write_event(path: &str, bytes: u64) -> Event {
        Event {
            op: Op::Write,
            bytes,
            ts_ns: 0,
            pid: std::process::id(),
            tid: 0,
            comm: String::new(),
            path: Some((3, path.to_string())),
            from: None,
            truncated: false,
        }
    }

    #[test]
    fn wrong_name_is_reported_and_right_one_passes() {
        let (tx, rx) = mpsc::channel();
        let name = format!("canary-{}", std::process::id());
        tx.send(write_event("\u{1}garbage", PAYLOAD.len() as u64))
            .unwrap();
        let err = wait(3, &name, &rx).unwrap_err();
        assert!(matches!(err, CanaryError::Mismatch { .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("garbage") && err.contains(&name), "{err}");
        tx.send(write_event(&name, PAYLOAD.len() as u64)).unwrap();
        wait(3, &name, &rx).unwrap();
    }
}
