//! The canary self-check: aya relocates against a BTF with wrong member offsets without a
//! complaint, and the programs then read the wrong fields. So after attaching, the sidecar
//! runs one short script in the private canary root that makes a change of every op kind
//! ([`script`]: mkdir, create and write, chmod, rename, delete, rmdir), and demands back, within
//! a second, the event of every step whose op the attached family reports
//! ([`Backend::reports`]), with the right names (and size, for the write). A family that learns
//! an op is checked for it with no change here.
//!
//! The pid is not compared: in a container's PID namespace `getpid()` differs from the
//! kernel-wide pid the programs report. What the canary cannot prove: anything about the
//! state directories' own file systems (the start-up root check does that in tracepoint mode),
//! and writes through paths the programs do not hook at all (the coverage table of docs/how-it-works.md).

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
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
    fn new(op: Op, name: &str) -> Self {
        Self {
            op,
            name: name.to_string(),
            from: None,
            bytes: None,
        }
    }

    fn matches(&self, root_id: u32, ev: &Event) -> bool {
        let at = |name: &str| Some((root_id, name.as_bytes().to_vec()));
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

/// One change the canary makes, relative to its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Mkdir,
    /// Creates the file with `open(O_CREAT)` and writes [`PAYLOAD`].
    CreateAndWrite,
    Chmod,
    Rename,
    Delete,
    Rmdir,
}

/// A step of the script: the change, and the events it causes in a backend that reports all.
struct Step {
    action: Action,
    events: Vec<Expected>,
}

/// The canary's script for the names `name` (file) and `dir` (directory), in order; every op
/// of [`Op::ALL`] is caused by one of its steps.
fn script(name: &str) -> Vec<Step> {
    let (dir, renamed) = (format!("{name}.dir"), format!("{name}.renamed"));
    let step = |action, events| Step { action, events };
    vec![
        step(Action::Mkdir, vec![Expected::new(Op::Mkdir, &dir)]),
        step(
            Action::CreateAndWrite,
            vec![
                Expected::new(Op::Create, name),
                Expected {
                    bytes: Some(PAYLOAD.len() as u64),
                    ..Expected::new(Op::Write, name)
                },
            ],
        ),
        step(Action::Chmod, vec![Expected::new(Op::Attrib, name)]),
        step(
            Action::Rename,
            vec![Expected {
                from: Some(name.to_string()),
                ..Expected::new(Op::Rename, &renamed)
            }],
        ),
        step(Action::Delete, vec![Expected::new(Op::Delete, &renamed)]),
        step(Action::Rmdir, vec![Expected::new(Op::Rmdir, &dir)]),
    ]
}

/// The events of `script` that `family` must send back: those of the ops it reports.
fn expected(family: Family, script: &[Step]) -> Vec<Expected> {
    script
        .iter()
        .flat_map(|step| &step.events)
        .filter(|e| Backend::Ebpf(family).reports(e.op))
        .cloned()
        .collect()
}

/// Makes `action` in `dir` for the canary file `name`.
fn run(dir: &Path, name: &str, action: Action) -> Result<(), CanaryError> {
    let (file, renamed) = (dir.join(name), dir.join(format!("{name}.renamed")));
    let subdir = dir.join(format!("{name}.dir"));
    let (path, result) = match action {
        Action::Mkdir => (&subdir, std::fs::create_dir(&subdir)),
        Action::CreateAndWrite => (&file, std::fs::write(&file, PAYLOAD)),
        Action::Chmod => {
            let mode = std::fs::Permissions::from_mode(0o600);
            (&file, std::fs::set_permissions(&file, mode))
        }
        Action::Rename => (&renamed, std::fs::rename(&file, &renamed)),
        Action::Delete => (&renamed, std::fs::remove_file(&renamed)),
        Action::Rmdir => (&subdir, std::fs::remove_dir(&subdir)),
    };
    result.map_err(|source| CanaryError::Write {
        path: path.clone(),
        source,
    })
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
    let script = script(&name);
    for step in &script {
        run(dir, &name, step.action)?;
    }
    wait(root_id, expected(family, &script), events)
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
            got_name: ev
                .path
                .as_ref()
                .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default(),
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
    use diffkeeper_ebpf::event::Comm;
    use std::sync::mpsc;

    fn event(op: Op, path: &str, from: Option<&str>, bytes: u64) -> Event {
        Event {
            op,
            bytes,
            ts_ns: 0,
            pid: std::process::id(),
            tid: 0,
            comm: Comm::default(),
            path: Some((3, path.as_bytes().to_vec())),
            from: from.map(|f| (3, f.as_bytes().to_vec())),
            name: None,
            truncated: false,
        }
    }

    fn expected(family: Family, name: &str) -> Vec<Expected> {
        super::expected(family, &script(name))
    }

    /// The event kinds `family` reports, and so the canary checks.
    fn checked_ops(family: Family) -> Vec<Op> {
        Op::ALL
            .into_iter()
            .filter(|op| Backend::Ebpf(family).reports(*op))
            .collect()
    }

    #[test]
    fn wrong_name_is_reported_and_right_one_passes() {
        let (tx, rx) = mpsc::channel();
        let name = format!("canary-{}", std::process::id());
        let (dir, renamed) = (format!("{name}.dir"), format!("{name}.renamed"));
        let len = PAYLOAD.len() as u64;
        let run = |written: &str| {
            [
                event(Op::Mkdir, &dir, None, 0),
                event(Op::Create, &name, None, 0),
                event(Op::Write, written, None, len),
                event(Op::Attrib, &name, None, 0),
                event(Op::Rename, &renamed, Some(&name), 0),
                event(Op::Delete, &renamed, None, 0),
                event(Op::Rmdir, &dir, None, 0),
            ]
        };
        for ev in run("\u{1}garbage") {
            tx.send(ev).unwrap();
        }
        let err = wait(3, expected(Family::Tracepoint, &name), &rx).unwrap_err();
        assert!(matches!(err, CanaryError::Mismatch { .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("garbage") && err.contains(&name), "{err}");
        // In any order (the compat object's perf buffers are per CPU).
        for ev in run(&name).into_iter().rev() {
            tx.send(ev).unwrap();
        }
        wait(3, expected(Family::Tracepoint, &name), &rx).unwrap();
    }

    #[test]
    fn each_kind_the_family_reports_must_come_back() {
        let (tx, rx) = mpsc::channel();
        let name = "canary-7";
        let renamed = "canary-7.renamed";
        let len = PAYLOAD.len() as u64;
        let dir = format!("{name}.dir");
        // Tracepoint: a write alone is not enough (every kind is checked, the mkdir first).
        tx.send(event(Op::Write, name, None, len)).unwrap();
        let err = wait(3, expected(Family::Tracepoint, name), &rx).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no event for the canary's mkdir of {dir:?} within 1s")
        );
        // kprobe: create and write are not enough; the rename must name both ends.
        let all = |rename_from| {
            [
                event(Op::Mkdir, &dir, None, 0),
                event(Op::Create, name, None, 0),
                event(Op::Write, name, None, len),
                event(Op::Attrib, name, None, 0),
                event(Op::Rename, renamed, rename_from, 0),
                event(Op::Delete, renamed, None, 0),
                event(Op::Rmdir, &dir, None, 0),
            ]
        };
        for ev in all(None) {
            tx.send(ev).unwrap();
        }
        let err = wait(3, expected(Family::Kprobe, name), &rx).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "the canary's rename of {name:?} to {renamed:?} came back as"
            )),
            "{err}"
        );
        // fentry: every kind, the rmdir included.
        for ev in all(Some(name)).into_iter().take(6) {
            tx.send(ev).unwrap();
        }
        let err = wait(3, expected(Family::Fentry, name), &rx).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no event for the canary's rmdir of {dir:?} within 1s")
        );
        for ev in all(Some(name)) {
            tx.send(ev).unwrap();
        }
        wait(3, expected(Family::Fentry, name), &rx).unwrap();
    }

    /// Every op kind is made by a step of the script, so a family is checked for every op
    /// [`Backend::reports`] says it reports: kprobe and fentry for all of them.
    #[test]
    fn the_script_makes_every_op_and_the_family_decides_which_are_checked() {
        let script = script("c");
        for op in Op::ALL {
            assert!(
                script.iter().any(|s| s.events.iter().any(|e| e.op == op)),
                "{op:?}"
            );
        }
        for family in [Family::Kprobe, Family::Fentry, Family::Tracepoint] {
            let ops: Vec<Op> = expected(family, "c").iter().map(|e| e.op).collect();
            let checked = checked_ops(family);
            assert!(ops.iter().all(|op| checked.contains(op)), "{family:?}");
            assert!(checked.iter().all(|op| ops.contains(op)), "{family:?}");
        }
        assert_eq!(checked_ops(Family::Kprobe), Op::ALL.to_vec());
        assert_eq!(checked_ops(Family::Tracepoint), Op::ALL.to_vec());
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
