//! The canary self-check: aya relocates against a BTF with wrong member offsets without a
//! complaint, and the programs then read the wrong fields. So after attaching, the sidecar
//! makes one change of each kind the attached family reports, on a file in the private canary
//! root, and demands every event back, with the right name (and size, for the write), within a
//! second:
//!
//! * every family: create the file (`open(O_CREAT)`; tracepoint mode decides by the file's
//!   `f_mode`, the others by `security_inode_create`) and write a known number of bytes;
//! * every family also: rename it (`security_inode_rename`, both names; tracepoint mode: the
//!   `rename` syscall's names) and delete it (`security_inode_unlink`; tracepoint: `unlink`).
//!
//! The pid is not compared: in a container's PID namespace `getpid()` differs from the
//! kernel-wide pid the programs report. What the canary cannot prove: anything about the
//! state directories' own file systems (the start-up root check does that in tracepoint mode),
//! and writes through paths the programs do not hook at all (the README's coverage table).

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use diffkeeper_ebpf::event::{Event, Op};

use super::error::{CanaryDirError, CanaryError};
use crate::change::{Backend, Family};

const PAYLOAD: &[u8] = b"diffkeeper canary: does the BTF fit this kernel?\n";
const WAIT: Duration = Duration::from_secs(1);

/// One event the canary waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    op: Op,
    name: String,
    from: Option<String>,
    bytes: Option<u64>,
}

impl Expected {
    fn matches(&self, root_id: u32, ev: &Event) -> bool {
        let at = |name: &str| Some((root_id, name.to_string()));
        ev.op == self.op
            && ev.path == at(&self.name)
            && ev.from == self.from.as_deref().and_then(at)
            && self.bytes.is_none_or(|b| b == ev.bytes)
    }

    fn describe(&self) -> String {
        match (&self.from, self.bytes) {
            (Some(from), _) => format!("rename of {from:?} to {:?}", self.name),
            (None, Some(bytes)) => format!("write of {bytes} bytes to {:?}", self.name),
            (None, None) => format!("{} of {:?}", self.op.as_str(), self.name),
        }
    }
}

/// The event kinds `family` reports, and so the canary checks.
pub fn checked_ops(family: Family) -> Vec<Op> {
    [Op::Create, Op::Write, Op::Rename, Op::Delete]
        .into_iter()
        .filter(|op| Backend::Ebpf(family).reports(*op))
        .collect()
}

/// Makes the canary changes in `dir` (watched as root `root_id`) and waits for their events.
pub fn check(
    dir: &Path,
    root_id: u32,
    family: Family,
    events: &Receiver<Event>,
) -> Result<(), CanaryError> {
    while events.try_recv().is_ok() {}
    let name = format!("canary-{}", std::process::id());
    let renamed = format!("{name}.renamed");
    let (file, moved) = (dir.join(&name), dir.join(&renamed));
    let ops = checked_ops(family);
    let mut expected = vec![
        Expected {
            op: Op::Create,
            name: name.clone(),
            from: None,
            bytes: None,
        },
        Expected {
            op: Op::Write,
            name: name.clone(),
            from: None,
            bytes: Some(PAYLOAD.len() as u64),
        },
    ];
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| CanaryError::Write { path, source }
    };
    std::fs::write(&file, PAYLOAD).map_err(io_err(&file))?;
    let mut last = file.clone();
    if ops.contains(&Op::Rename) {
        std::fs::rename(&file, &moved).map_err(io_err(&moved))?;
        last = moved;
        expected.push(Expected {
            op: Op::Rename,
            name: renamed.clone(),
            from: Some(name.clone()),
            bytes: None,
        });
    }
    let removed = std::fs::remove_file(&last);
    if ops.contains(&Op::Delete) {
        removed.map_err(io_err(&last))?;
        expected.push(Expected {
            op: Op::Delete,
            name: renamed,
            from: None,
            bytes: None,
        });
    } else if let Err(e) = removed {
        log::debug!(
            "[eBPF] cannot remove the canary file {}: {e}",
            last.display()
        );
    }
    wait(root_id, expected, events)
}

fn wait(
    root_id: u32,
    mut expected: Vec<Expected>,
    events: &Receiver<Event>,
) -> Result<(), CanaryError> {
    let deadline = Instant::now() + WAIT;
    // The last event of an awaited kind that matched nothing: what a wrong BTF looks like.
    let mut seen: Vec<Event> = Vec::new();
    while !expected.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ev) => match expected.iter().position(|e| e.matches(root_id, &ev)) {
                Some(i) => {
                    expected.remove(i);
                }
                None => {
                    seen.retain(|s| s.op != ev.op);
                    seen.push(ev);
                }
            },
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => return Err(CanaryError::ReaderStopped),
        }
    }
    let Some(missing) = expected.first() else {
        return Ok(());
    };
    Err(match seen.iter().find(|ev| ev.op == missing.op) {
        Some(ev) => CanaryError::Mismatch {
            expected: missing.describe(),
            got_name: ev.path.as_ref().map(|(_, p)| p.clone()).unwrap_or_default(),
            got_bytes: ev.bytes,
        },
        None => CanaryError::NoEvent {
            expected: missing.describe(),
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

    fn event(op: Op, path: &str, from: Option<&str>, bytes: u64) -> Event {
        Event {
            op,
            bytes,
            ts_ns: 0,
            pid: std::process::id(),
            tid: 0,
            comm: String::new(),
            path: Some((3, path.to_string())),
            from: from.map(|f| (3, f.to_string())),
            name: None,
            truncated: false,
        }
    }

    fn expected(family: Family, name: &str) -> Vec<Expected> {
        let renamed = format!("{name}.renamed");
        let all = [
            (Op::Create, name, None, None),
            (Op::Write, name, None, Some(PAYLOAD.len() as u64)),
            (Op::Rename, &renamed, Some(name), None),
            (Op::Delete, &renamed, None, None),
        ];
        all.iter()
            .filter(|(op, ..)| checked_ops(family).contains(op))
            .map(|(op, n, from, bytes)| Expected {
                op: *op,
                name: n.to_string(),
                from: from.map(str::to_string),
                bytes: *bytes,
            })
            .collect()
    }

    #[test]
    fn wrong_name_is_reported_and_right_one_passes() {
        let (tx, rx) = mpsc::channel();
        let name = format!("canary-{}", std::process::id());
        let len = PAYLOAD.len() as u64;
        tx.send(event(Op::Create, &name, None, 0)).unwrap();
        tx.send(event(Op::Write, "\u{1}garbage", None, len))
            .unwrap();
        let err = wait(3, expected(Family::Tracepoint, &name), &rx).unwrap_err();
        assert!(matches!(err, CanaryError::Mismatch { .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("garbage") && err.contains(&name), "{err}");
        // In any order (the compat object's perf buffers are per CPU).
        let renamed = format!("{name}.renamed");
        tx.send(event(Op::Write, &name, None, len)).unwrap();
        tx.send(event(Op::Create, &name, None, 0)).unwrap();
        tx.send(event(Op::Rename, &renamed, Some(&name), 0))
            .unwrap();
        tx.send(event(Op::Delete, &renamed, None, 0)).unwrap();
        wait(3, expected(Family::Tracepoint, &name), &rx).unwrap();
    }

    #[test]
    fn each_kind_the_family_reports_must_come_back() {
        let (tx, rx) = mpsc::channel();
        let name = "canary-7";
        let renamed = "canary-7.renamed";
        let len = PAYLOAD.len() as u64;
        // Tracepoint: a missing create fails (its f_mode read is its own), however good the
        // write is.
        tx.send(event(Op::Write, name, None, len)).unwrap();
        let err = wait(3, expected(Family::Tracepoint, name), &rx).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no event for the canary's create of {name:?} within 1s")
        );
        // kprobe: create and write are not enough; the rename must name both ends.
        for ev in [
            event(Op::Create, name, None, 0),
            event(Op::Write, name, None, len),
            event(Op::Rename, renamed, None, 0),
            event(Op::Delete, renamed, None, 0),
        ] {
            tx.send(ev).unwrap();
        }
        let err = wait(3, expected(Family::Kprobe, name), &rx).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "the canary's rename of {name:?} to {renamed:?} came back as"
            )),
            "{err}"
        );
        for ev in [
            event(Op::Create, name, None, 0),
            event(Op::Write, name, None, len),
            event(Op::Rename, renamed, Some(name), 0),
            event(Op::Delete, renamed, None, 0),
        ] {
            tx.send(ev).unwrap();
        }
        wait(3, expected(Family::Fentry, name), &rx).unwrap();
    }

    /// The real thing on a real directory, without programs: nothing comes back.
    #[test]
    fn the_canary_makes_and_removes_its_file() {
        let dir = std::env::temp_dir().join(format!("dk-canary-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (_tx, rx) = mpsc::channel();
        let err = check(&dir, 3, Family::Kprobe, &rx).unwrap_err();
        assert!(matches!(err, CanaryError::NoEvent { .. }), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
