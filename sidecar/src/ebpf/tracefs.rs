//! Where tracefs is, for the kretprobes made through `kprobe_events` ([`super::kretprobe`]):
//! the directory `--tracefs-dir` names, else the places aya looks too, else a tracefs mounted by
//! the sidecar (in a container, in its own mount namespace).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

/// Where tracefs usually is, in aya's order; the first is where the sidecar mounts it.
const PLACES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// A tracefs with kprobe events.
#[derive(Debug, Clone)]
pub struct Tracefs {
    root: PathBuf,
}

/// No tracefs with kprobe events.
#[derive(Debug)]
pub enum TracefsError {
    /// tracefs is there, but without `kprobe_events` (CONFIG_KPROBE_EVENTS off).
    NoKprobeEvents { root: PathBuf },
    /// The directory `--tracefs-dir` names is empty or missing: no tracefs there.
    GivenEmpty { root: PathBuf },
    /// Neither place holds a tracefs, and mounting one failed.
    Mount { target: PathBuf, errno: Errno },
}

impl fmt::Display for TracefsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKprobeEvents { root } => write!(
                f,
                "{} has no kprobe_events (not a tracefs, or a kernel without CONFIG_KPROBE_EVENTS)",
                root.display()
            ),
            Self::GivenEmpty { root } => write!(
                f,
                "--tracefs-dir {} holds no tracefs (missing or empty): in Kubernetes, the node has \
                 no tracefs mounted at the hostPath's /sys/kernel/tracing (mount it there on the \
                 node: mount -t tracefs tracefs /sys/kernel/tracing)",
                root.display()
            ),
            Self::Mount { target, errno } => write!(
                f,
                "no tracefs at {} or {}, and mount(\"tracefs\", {}) failed: {errno}; mount tracefs into \
                 the sidecar's container, or grant CAP_SYS_ADMIN",
                PLACES[0],
                PLACES[1],
                target.display(),
            ),
        }
    }
}

impl std::error::Error for TracefsError {}

impl Tracefs {
    /// `given` (`--tracefs-dir`) as it is, never mounted on. Else the first place that holds a
    /// tracefs; if none does, tracefs mounted at the first place (logged). A tracefs without
    /// kprobe events is an error, never mounted over.
    pub fn locate(given: Option<&Path>) -> Result<Self, TracefsError> {
        if let Some(root) = given {
            if !is_mounted(root) {
                return Err(TracefsError::GivenEmpty {
                    root: root.to_owned(),
                });
            }
            return Self::with_kprobe_events(root);
        }
        if let Some(root) = PLACES.iter().map(Path::new).find(|p| is_mounted(p)) {
            return Self::with_kprobe_events(root);
        }
        let target = Path::new(PLACES[0]);
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        nix::mount::mount(
            Some("tracefs"),
            target,
            Some("tracefs"),
            flags,
            None::<&str>,
        )
        .map_err(|errno| TracefsError::Mount {
            target: target.to_owned(),
            errno,
        })?;
        log::info!(
            "[eBPF] mounted tracefs at {} (none was mounted here) for the kretprobes' maxactive",
            target.display()
        );
        Self::with_kprobe_events(target)
    }

    fn with_kprobe_events(root: &Path) -> Result<Self, TracefsError> {
        let tracefs = Self {
            root: root.to_owned(),
        };
        if tracefs.kprobe_events().exists() {
            Ok(tracefs)
        } else {
            Err(TracefsError::NoKprobeEvents {
                root: root.to_owned(),
            })
        }
    }

    /// A tracefs at `root`, as it is (tests).
    #[cfg(test)]
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// Kprobe events are made and removed by appending lines here.
    pub fn kprobe_events(&self) -> PathBuf {
        self.root.join("kprobe_events")
    }

    /// `name hits nmissed` per kprobe event.
    pub fn kprobe_profile(&self) -> PathBuf {
        self.root.join("kprobe_profile")
    }

    /// The tracepoint id of an event, for perf_event_open(2).
    pub fn event_id(&self, group: &str, event: &str) -> PathBuf {
        self.root.join("events").join(group).join(event).join("id")
    }
}

/// A directory with entries: something is mounted there (an unmounted tracefs mount point is
/// an empty directory, as aya also assumes).
fn is_mounted(path: &Path) -> bool {
    path.read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
}

/// `io::Error` → errno, for the typed errors of the callers.
pub fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// `--tracefs-dir` is taken as it is: an empty or missing directory is an error naming it
    /// (never mounted on, never replaced by the usual places), one with `kprobe_events` is used.
    #[test]
    fn a_given_directory_is_used_as_it_is() {
        let root = std::env::temp_dir().join(format!("dk-tracefs-given-{}", std::process::id()));
        let missing = root.join("missing");
        let err = Tracefs::locate(Some(&missing)).unwrap_err();
        assert!(matches!(&err, TracefsError::GivenEmpty { root } if *root == missing));
        assert!(err.to_string().contains("/sys/kernel/tracing"), "{err}");
        fs::create_dir_all(&root).unwrap();
        assert!(matches!(
            Tracefs::locate(Some(&root)),
            Err(TracefsError::GivenEmpty { .. })
        ));
        fs::write(root.join("README"), "").unwrap();
        assert!(matches!(
            Tracefs::locate(Some(&root)),
            Err(TracefsError::NoKprobeEvents { .. })
        ));
        fs::write(root.join("kprobe_events"), "").unwrap();
        let tracefs = Tracefs::locate(Some(&root)).unwrap();
        assert_eq!(tracefs.kprobe_events(), root.join("kprobe_events"));
        fs::remove_dir_all(&root).unwrap();
    }
}
