//! The `/metrics` and `/healthz` server against slow, idle and too many clients (real sockets,
//! the real sidecar binary): probes are answered at once whatever the other clients do.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diffkeeper_tests::scratch::Scratch;
use diffkeeper_tests::sidecar::SidecarProcess;

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The documented limits (docs/sidecar.md): connections served at once, and how long one may take to send its request.
const MAX_CONNECTIONS: usize = 32;
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// What a probe may take here (kubelet's default timeout is 1 s).
const PROBE_BOUND: Duration = Duration::from_millis(100);

/// One request on a fresh connection: status line and how long it took (read timeout 1 s, so a
/// server that does not answer fails the test instead of hanging it).
fn probe(addr: SocketAddr) -> (String, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    if let Err(e) = stream.read_to_string(&mut response) {
        panic!("no answer to /healthz within 1 s ({e}); got {response:?}");
    }
    let status = response.lines().next().unwrap_or("").to_string();
    (status, start.elapsed())
}

/// Reads until the server closes `stream`; returns how long after `since` that was.
fn closed_after(mut stream: TcpStream, since: Instant) -> Duration {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
    since.elapsed()
}

#[test]
fn probes_are_answered_at_once_beside_slow_idle_and_surplus_clients() {
    let scratch = Scratch::new("metrics-clients");
    let state = scratch.dir("state");
    let mut cmd = Command::new(SIDECAR);
    cmd.args(["--enable-ebpf=false", "--metrics-addr", "127.0.0.1:0"])
        .args(["--state-dir", state.to_str().unwrap(), "--journal"])
        .arg(scratch.path().join("journal.jsonl"))
        .stdout(Stdio::null());
    let mut sidecar = SidecarProcess::spawn(&mut cmd).expect("run diffkeeper-sidecar");
    let addr = sidecar.metrics_addr(READY_TIMEOUT).unwrap();
    assert_eq!(sidecar.wait_ready(READY_TIMEOUT).unwrap(), "inotify");

    // A client that trickles a never-ending request, one byte every 200 ms.
    let connected = Instant::now();
    let mut trickler = TcpStream::connect(addr).unwrap();
    let trickler_closed = {
        let stream = trickler.try_clone().unwrap();
        std::thread::spawn(move || closed_after(stream, connected))
    };
    std::thread::spawn(move || {
        let _ = trickler.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ");
        for _ in 0..100 {
            if trickler.write_all(b"a").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    // And a few that connect and say nothing.
    let idle: Vec<_> = (0..8)
        .map(|_| {
            let stream = TcpStream::connect(addr).unwrap();
            std::thread::spawn(move || closed_after(stream, connected))
        })
        .collect();

    // Probes all along, until the trickler is cut off.
    let mut probes = 0;
    while !trickler_closed.is_finished() {
        assert!(
            connected.elapsed() < Duration::from_secs(10),
            "the trickler is never cut off"
        );
        let (status, took) = probe(addr);
        assert_eq!(status, "HTTP/1.1 200 OK", "probe {probes}");
        assert!(took < PROBE_BOUND, "probe {probes} took {took:?}");
        probes += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(probes >= 20, "only {probes} probes");
    let bound = REQUEST_DEADLINE + Duration::from_millis(500);
    let took = trickler_closed.join().unwrap();
    assert!(
        took >= REQUEST_DEADLINE / 2 && took < bound,
        "trickler cut off after {took:?}"
    );
    for client in idle {
        let took = client.join().unwrap();
        assert!(took < bound, "idle client cut off after {took:?}");
    }

    // The cap: MAX_CONNECTIONS idle clients hold every slot; the next one is turned away at
    // once with a 503 and a clean close, not left waiting.
    let held: Vec<_> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let (status, took) = probe(addr);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(took < PROBE_BOUND, "the surplus client waited {took:?}");
    // Their slots come back as soon as they go.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (status, took) = probe(addr);
        if status == "HTTP/1.1 200 OK" {
            assert!(took < PROBE_BOUND, "{took:?}");
            break;
        }
        assert!(Instant::now() < deadline, "slots not freed: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let (status, _) = sidecar.terminate();
    assert!(status.is_some_and(|s| s.success()), "{}", sidecar.log());
}
