//! What the scenario runs share: fresh directories for one run, one sidecar started on them,
//! ready with the expected backend while the changes are made, then stopped; and the end
//! marker whose journal line says every change before it is in.

use std::fs;
use std::time::{Duration, Instant};

use super::{spawn_sidecar, Dirs, Options};

/// Runs `body` in fresh scenario directories, then removes them (with `--keep`, keeps them and
/// says where); `Err` when they could not be made.
pub(super) fn in_fresh_dirs<T>(opts: &Options, body: impl FnOnce(&Dirs) -> T) -> Result<T, String> {
    let dirs = Dirs::create(opts.workdir.as_deref())?;
    let value = body(&dirs);
    if opts.keep {
        eprintln!("scenario: kept {}", dirs.root.display());
    } else {
        let _ = fs::remove_dir_all(&dirs.root);
    }
    Ok(value)
}

/// One sidecar's run: see [`with_ready_sidecar`].
pub(super) struct SidecarRun<T> {
    /// The backend its ready line named (`None`: it never got ready).
    pub backend: Option<String>,
    /// What the changes returned, or why they were not made.
    pub made: Result<T, String>,
    /// The sidecar's stderr.
    pub log: String,
    /// Why its stop was not clean, if it was not.
    pub stop_problem: Option<String>,
}

/// Starts the sidecar on `dirs`, makes `changes` once it is ready with the expected backend,
/// then stops it with SIGTERM.
pub(super) fn with_ready_sidecar<T>(
    opts: &Options,
    dirs: &Dirs,
    changes: impl FnOnce() -> Result<T, String>,
) -> SidecarRun<T> {
    let mut sidecar = match spawn_sidecar(opts, dirs) {
        Ok(s) => s,
        Err(e) => {
            return SidecarRun {
                backend: None,
                made: Err(e),
                log: String::new(),
                stop_problem: None,
            }
        }
    };
    let ready = sidecar.wait_ready(opts.ready_timeout);
    let backend = ready.as_ref().ok().cloned();
    let made = match ready {
        Err(e) => Err(e),
        Ok(backend) if backend != opts.expect_backend => Err(format!(
            "the sidecar is ready with backend {backend}, expected {}",
            opts.expect_backend
        )),
        Ok(_) => changes(),
    };
    let (status, _) = sidecar.terminate();
    let stop_problem = (!status.is_some_and(|s| s.success()))
        .then(|| format!("the sidecar did not exit cleanly after SIGTERM: {status:?}"));
    SidecarRun {
        backend,
        made,
        log: sidecar.log(),
        stop_problem,
    }
}

/// Writes `name` in the state directory and waits (60 s at most) for its journal line: once it
/// is there, so is every change made before it.
pub(super) fn mark_end(dirs: &Dirs, name: &str) -> Result<(), String> {
    let marker = dirs.state.join(name);
    fs::write(&marker, "end").map_err(|e| format!("write {}: {e}", marker.display()))?;
    let needle = format!("\"path\":\"{}\"", marker.display());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fs::read_to_string(&dirs.journal).is_ok_and(|j| j.contains(&needle)) {
        if Instant::now() > deadline {
            return Err(format!(
                "no journal line for {} within 60 s",
                marker.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
