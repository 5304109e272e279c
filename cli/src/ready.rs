//! The sidecar's readiness signal: the one log line its supervisors wait for.
//!
//! `diffkeeper-sidecar ready: backend=<fentry|kprobe|tracepoint|inotify>` is logged once the
//! backend is attached and proven (from then on `/healthz` answers 200). The sidecar prints it
//! and the test kit waits for it through this constant; it lives here, beside the other
//! command-line contracts, because the test kit that drives the sidecar must not link the
//! sidecar itself. Scripts that cannot import it define it once each (tests/packaging/lib.sh,
//! tests/vm/guest/lib.sh, tests/vm/harness/matrix.py, bench/dkbench/procs.py,
//! scripts/demo.sh), naming this file.

/// Everything of the ready line up to the backend's name.
pub const READY_PREFIX: &str = "diffkeeper-sidecar ready: backend=";

/// The ready line for `backend`.
pub fn ready_line(backend: &str) -> String {
    format!("{READY_PREFIX}{backend}")
}
