//! Counters and state for `/metrics`, and a tiny HTTP/1.1 server for `/metrics` and `/healthz`
//! on std::net (the sidecar links no HTTP crate).
//!
//! Each connection gets its own thread, up to [`MAX_CONNECTIONS`], and [`REQUEST_DEADLINE`] to
//! send its request: a slow or idle client can never delay kubelet's probes.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::change::{Backend, GapReason, Op};

const OPS: [Op; Op::ALL.len()] = Op::ALL;

/// Shared between the journal (event counts), the backends (loss counters) and the server.
#[derive(Default)]
pub struct Metrics {
    /// Indexed `[backend][op]` in the order of `Backend::ALL` and `OPS`.
    events: [[AtomicU64; OPS.len()]; 4],
    inotify_overflows: AtomicU64,
    inotify_dropped: AtomicU64,
    coverage_fallbacks: AtomicU64,
    /// Indexed in the order of `GapReason::ALL`.
    gaps: [AtomicU64; GapReason::ALL.len()],
    repair_lines: AtomicU64,
    active: RwLock<Option<Active>>,
}

/// What is running, set when the sidecar becomes ready (and again if it switches backends).
pub struct Active {
    pub backend: Backend,
    /// "system" | "cache", or `None` for inotify.
    pub btf_source: Option<&'static str>,
    /// Events the kernel dropped (ring buffer full); `None` for inotify.
    pub lost_events: Option<Arc<AtomicU64>>,
    /// Changes the eBPF kernel side did not report on purpose; `None` for inotify.
    pub unreported: Option<Arc<crate::ebpf::Unreported>>,
    /// The kretprobes' maxactive and misses; `None` but in kprobe mode.
    pub kretprobes: Option<Arc<crate::ebpf::KretprobeStats>>,
}

impl Metrics {
    pub fn count_event(&self, backend: Backend, op: Op) {
        self.events[backend.index()][op as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_inotify_overflow(&self) -> u64 {
        self.inotify_overflows.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds `n` events the inotify backend dropped because the journal did not take them;
    /// returns the new total.
    pub fn count_inotify_dropped(&self, n: u64) -> u64 {
        self.inotify_dropped.fetch_add(n, Ordering::Relaxed) + n
    }

    /// Counts one `gap` line journaled for `reason`.
    pub fn count_gap(&self, reason: GapReason) {
        self.gaps[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts lines journaled by repairs after gaps.
    pub fn count_repair_lines(&self, n: u64) {
        self.repair_lines.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one switch from eBPF to inotify while running (a watched directory replaced, or
    /// a mount made below one); returns the new total.
    pub fn count_coverage_fallback(&self) -> u64 {
        self.coverage_fallbacks.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Marks the sidecar ready with `active`: from now on `/healthz` answers 200. Called again
    /// when the backend changes.
    pub fn set_ready(&self, active: Active) {
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = Some(active);
    }

    pub fn is_ready(&self) -> bool {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The Prometheus text exposition of everything above.
    pub fn render(&self) -> String {
        let guard = self.active.read().unwrap_or_else(|e| e.into_inner());
        let active = guard.as_ref();
        let mut out = String::with_capacity(2048);
        family(
            &mut out,
            "diffkeeper_events_total",
            "counter",
            "File changes seen under the state directories, by backend and operation (before coalescing).",
        );
        for backend in Backend::ALL {
            let counts = &self.events[backend.index()];
            let in_use = active.is_some_and(|a| a.backend == backend);
            if !in_use && counts.iter().all(|c| c.load(Ordering::Relaxed) == 0) {
                continue;
            }
            for op in OPS {
                let _ = writeln!(
                    out,
                    "diffkeeper_events_total{{backend=\"{}\",op=\"{}\"}} {}",
                    backend.as_str(),
                    op.as_str(),
                    counts[op as usize].load(Ordering::Relaxed)
                );
            }
        }
        let lost = active
            .and_then(|a| a.lost_events.as_ref())
            .map_or(0, |c| c.load(Ordering::Relaxed));
        single(
            &mut out,
            "diffkeeper_lost_events_total",
            "counter",
            "Events the kernel dropped because the eBPF ring buffer was full (raise --ringbuf-bytes).",
            lost,
        );
        family(
            &mut out,
            "diffkeeper_unreported_changes_total",
            "counter",
            "Changes the eBPF programs saw but did not journal because they could not name them truly: too_deep (more than 32 directories below anything the walk could place), unlinked (a file without a name: O_TMPFILE, deleted while open), missed_return (kprobe mode: a kretprobe that never ran), unplaced_name (tracepoint mode: a new name from link/symlink that cannot be placed below its directory: absolute, with `..`, or through a symlink).",
        );
        let unreported = active.and_then(|a| a.unreported.as_ref()).map_or_else(
            || crate::ebpf::Unreported::default().by_reason(),
            |u| u.by_reason(),
        );
        for (reason, n) in unreported {
            let _ = writeln!(
                out,
                "diffkeeper_unreported_changes_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let kretprobes = active.and_then(|a| a.kretprobes.as_ref());
        single(
            &mut out,
            "diffkeeper_kretprobe_missed_total",
            "counter",
            "kprobe mode: returns the kernel missed on the kretprobes because all their maxactive instances were taken (tracefs kprobe_profile); those changes are not journaled.",
            kretprobes.map_or(0, |k| k.missed.load(Ordering::Relaxed)),
        );
        if let Some(k) = kretprobes {
            single(
                &mut out,
                "diffkeeper_kretprobe_maxactive",
                "gauge",
                "kprobe mode: calls in flight per probed function whose return the kretprobes can see; 0: the kernel's default, max(10, 2 x possible CPUs) (tracefs unusable: the log says why).",
                k.maxactive.load(Ordering::Relaxed),
            );
        }
        single(
            &mut out,
            "diffkeeper_inotify_overflows_total",
            "counter",
            "inotify queue overflows (events were lost; the watches were re-scanned).",
            self.inotify_overflows.load(Ordering::Relaxed),
        );
        single(
            &mut out,
            "diffkeeper_inotify_dropped_events_total",
            "counter",
            "inotify events dropped because the journal did not keep up (its output blocked or too slow).",
            self.inotify_dropped.load(Ordering::Relaxed),
        );
        family(
            &mut out,
            "diffkeeper_gaps_total",
            "counter",
            "`gap` lines journaled (changes were lost there; a rescan repaired them), by reason.",
        );
        for reason in GapReason::ALL {
            let _ = writeln!(
                out,
                "diffkeeper_gaps_total{{reason=\"{}\"}} {}",
                reason.label(),
                self.gaps[reason.index()].load(Ordering::Relaxed)
            );
        }
        single(
            &mut out,
            "diffkeeper_repair_lines_total",
            "counter",
            "Journal lines marked \"repair\":true: differences a rescan found after a gap.",
            self.repair_lines.load(Ordering::Relaxed),
        );
        single(
            &mut out,
            "diffkeeper_ebpf_coverage_fallbacks_total",
            "counter",
            "Switches from eBPF to inotify while running: a watched directory was replaced, or a file system mounted below one.",
            self.coverage_fallbacks.load(Ordering::Relaxed),
        );
        family(
            &mut out,
            "diffkeeper_ready",
            "gauge",
            "1 once the backend is attached (and its canary passed) or inotify watches are in place.",
        );
        let _ = writeln!(out, "diffkeeper_ready {}", u8::from(active.is_some()));
        if let Some(a) = active {
            family(
                &mut out,
                "diffkeeper_backend_info",
                "gauge",
                "The backend that reports changes (always 1).",
            );
            let _ = writeln!(
                out,
                "diffkeeper_backend_info{{backend=\"{}\"}} 1",
                a.backend.as_str()
            );
            family(
                &mut out,
                "diffkeeper_btf_source_info",
                "gauge",
                "Where the BTF in use came from: system, cache, or none (inotify) (always 1).",
            );
            let _ = writeln!(
                out,
                "diffkeeper_btf_source_info{{source=\"{}\"}} 1",
                a.btf_source.unwrap_or("none")
            );
            family(
                &mut out,
                "diffkeeper_op_reported",
                "gauge",
                "1 if the active backend reports this kind of change at all, 0 if it never does (tracepoint mode: delete, rename).",
            );
            for op in OPS {
                let _ = writeln!(
                    out,
                    "diffkeeper_op_reported{{op=\"{}\"}} {}",
                    op.as_str(),
                    u8::from(a.backend.reports(op))
                );
            }
        }
        out
    }
}

/// Writes the `# HELP` and `# TYPE` lines of one metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Binds `addr` and answers requests on background threads. Returns the bound address (useful
/// with port 0).
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => dispatch(stream, &metrics, &open),
                    Err(e) => {
                        // E.g. out of file descriptors: do not spin on it.
                        log::debug!("metrics: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })?;
    Ok(bound)
}

/// Connections served at once; kubelet and Prometheus need a few.
const MAX_CONNECTIONS: usize = 32;
/// How long a client has, from its connection, to send its request; then it is cut off.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_REQUEST_HEAD_BYTES: u64 = 8 * 1024;
/// The answers are small and built on the heap.
const CONNECTION_STACK_BYTES: usize = 64 * 1024;

/// A connection slot, given back when the connection's thread ends (or never starts).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn dispatch(stream: TcpStream, metrics: &Arc<Metrics>, open: &Arc<AtomicUsize>) {
    if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        open.fetch_sub(1, Ordering::AcqRel);
        turn_away(stream);
        return;
    }
    let slot = Slot(open.clone());
    let metrics = metrics.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-conn".into())
        .stack_size(CONNECTION_STACK_BYTES)
        .spawn(move || {
            let _slot = slot;
            if let Err(e) = answer(stream, &metrics, Instant::now() + REQUEST_DEADLINE) {
                log::debug!("metrics: request failed: {e}");
            }
        });
    if let Err(e) = spawned {
        log::warn!("metrics: cannot start a connection thread: {e}");
    }
}

/// Every slot is taken: a short 503 without waiting on the client, then a clean close.
fn turn_away(stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    // What the client already sent is read first, so that the close is a FIN, not a reset.
    let mut request = [0u8; 1024];
    let _ = (&stream).read(&mut request);
    let body = "busy: too many connections\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = (&stream).write_all(response.as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
    log::debug!("metrics: {MAX_CONNECTIONS} connections open: turned one away");
}

/// Reads from a stream until a deadline: each read waits at most for what is left of it, so a
/// client sending a byte at a time cannot stretch the request.
struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no complete request within {REQUEST_DEADLINE:?}"),
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

fn answer(stream: TcpStream, metrics: &Metrics, deadline: Instant) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let within = DeadlineReader {
        stream: &stream,
        deadline,
    };
    let mut reader = BufReader::new(within.take(MAX_REQUEST_HEAD_BYTES));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(()); // connected and closed without a request
    }
    // Read (and ignore) the headers up to the blank line so the client sees a clean close.
    let mut header = String::new();
    loop {
        header.clear();
        if reader.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
            break;
        }
    }
    let (status, content_type, body) = if reader.get_ref().limit() == 0 {
        (
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            format!("the request head is limited to {MAX_REQUEST_HEAD_BYTES} bytes\n"),
        )
    } else {
        route(&request_line, metrics)
    };
    let head_only = request_line.starts_with("HEAD ");
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(&body);
    }
    (&stream).write_all(response.as_bytes())?;
    (&stream).flush()
}

fn route(request_line: &str, metrics: &Metrics) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "only GET and HEAD\n".into());
    }
    match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" if metrics.is_ready() => ("200 OK", TEXT, "ok\n".into()),
        "/healthz" => ("503 Service Unavailable", TEXT, "starting\n".into()),
        _ => ("404 Not Found", TEXT, "try /metrics or /healthz\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Family;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn healthz_turns_200_when_ready_and_metrics_show_state() {
        let metrics = Arc::new(Metrics::default());
        let addr = serve("127.0.0.1:0".parse().unwrap(), metrics.clone()).unwrap();
        let health = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(get(addr, health).starts_with("HTTP/1.1 503 "));
        let lost = Arc::new(AtomicU64::new(7));
        metrics.set_ready(Active {
            backend: Backend::Ebpf(Family::Tracepoint),
            btf_source: Some("cache"),
            lost_events: Some(lost.clone()),
            unreported: None,
            kretprobes: None,
        });
        metrics.count_event(Backend::Ebpf(Family::Tracepoint), Op::Rename);
        lost.fetch_add(1, Ordering::Relaxed);
        assert!(get(addr, health).starts_with("HTTP/1.1 200 OK\r\n"));
        let response = get(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        for line in [
            "diffkeeper_events_total{backend=\"tracepoint\",op=\"rename\"} 1",
            "diffkeeper_events_total{backend=\"tracepoint\",op=\"write\"} 0",
            "diffkeeper_lost_events_total 8",
            "diffkeeper_kretprobe_missed_total 0",
            "diffkeeper_backend_info{backend=\"tracepoint\"} 1",
            "diffkeeper_btf_source_info{source=\"cache\"} 1",
            "diffkeeper_ready 1",
            "diffkeeper_unreported_changes_total{reason=\"unlinked\"} 0",
            "diffkeeper_unreported_changes_total{reason=\"unplaced_name\"} 0",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "missing {line:?} in\n{body}"
            );
        }
        assert!(!body.contains("backend=\"inotify\""), "{body}");
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        let head = get(addr, "HEAD /healthz HTTP/1.1\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head:?}");
    }
}
