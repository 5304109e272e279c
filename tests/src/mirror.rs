//! A BTFHub-shaped mirror on loopback (HTTPS with a test CA, or plain HTTP), whose paths can be
//! told to misbehave the ways real networks and servers do. Every request is counted.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::pki::TestPki;
use crate::scratch::Scratch;

/// What the mirror does for one path.
#[derive(Clone)]
pub enum Behaviour {
    /// 200 with this body.
    Serve(Arc<Vec<u8>>),
    /// 404 (the default for unknown paths too).
    NotFound,
    /// `failures` times 500, then 200 with the body.
    FailThenServe { failures: usize, body: Arc<Vec<u8>> },
    /// This status, every time.
    AlwaysFail(u16),
    /// 302 to itself, forever.
    RedirectLoop,
    /// Headers with the full length, half the body, then a TCP reset.
    ResetMidBody(Arc<Vec<u8>>),
    /// Reads the request and never answers.
    Stall,
    /// 200 with the body sent `chunk` bytes at a time, `delay` apart.
    Trickle {
        body: Arc<Vec<u8>>,
        chunk: usize,
        delay: Duration,
    },
    /// 200 with a declared length of `len` bytes (and that many bytes if the client reads on).
    Oversized { len: u64 },
    /// 200 without a length, zeros until the client hangs up.
    Endless,
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Behaviour>>,
    hits: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
    stop: AtomicBool,
}

pub struct Mirror {
    addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
    ca_file: PathBuf,
    _dir: Scratch,
}

impl Mirror {
    /// An HTTPS mirror; its CA certificate is at [`Mirror::ca_file`].
    pub fn https() -> Mirror {
        let pki = TestPki::generate();
        Self::start(Some(pki.server_config), pki.ca_pem)
    }

    /// A plain-HTTP mirror (for `--allow-http`).
    pub fn http() -> Mirror {
        Self::start(None, String::new())
    }

    fn start(tls: Option<Arc<ServerConfig>>, ca_pem: String) -> Mirror {
        let dir = Scratch::new("mirror-ca");
        let ca_file = dir.child("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = accept_state.clone();
                let tls = tls.clone();
                thread::spawn(move || {
                    let _ = serve_connection(stream, tls, &state);
                });
            }
        });
        Mirror {
            addr,
            scheme,
            state,
            ca_file,
            _dir: dir,
        }
    }

    /// The mirror root, e.g. `https://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn ca_file(&self) -> &std::path::Path {
        &self.ca_file
    }

    /// Sets what `path` (e.g. `/ubuntu/22.04/x86_64/<release>.btf.tar.xz`) does.
    pub fn route(&self, path: &str, behaviour: Behaviour) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), behaviour);
    }

    /// Requests received so far, on any path.
    pub fn requests(&self) -> usize {
        self.state.total.load(Ordering::SeqCst)
    }

    /// Requests received so far for `path`.
    pub fn requests_to(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect(self.addr);
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    tls: Option<Arc<ServerConfig>>,
    state: &State,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut conn = match tls {
        Some(config) => {
            let server = ServerConnection::new(config).map_err(io::Error::other)?;
            Conn::Tls(Box::new(StreamOwned::new(server, stream)))
        }
        None => Conn::Plain(stream),
    };
    let path = read_request_path(&mut conn)?;
    state.total.fetch_add(1, Ordering::SeqCst);
    let hit = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let behaviour = state.routes.lock().unwrap().get(&path).cloned();
    match behaviour.unwrap_or(Behaviour::NotFound) {
        Behaviour::Serve(body) => respond(&mut conn, "200 OK", &body),
        Behaviour::NotFound => respond(&mut conn, "404 Not Found", b"not found\n"),
        Behaviour::FailThenServe { failures, body } if hit > failures => {
            respond(&mut conn, "200 OK", &body)
        }
        Behaviour::FailThenServe { .. } => {
            respond(&mut conn, "500 Internal Server Error", b"try again\n")
        }
        Behaviour::AlwaysFail(status) => {
            respond(&mut conn, &format!("{status} Failing"), b"failing\n")
        }
        Behaviour::RedirectLoop => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            conn.write_all(head.as_bytes())?;
            conn.flush()
        }
        Behaviour::ResetMidBody(body) => {
            write_head(&mut conn, "200 OK", Some(body.len() as u64))?;
            conn.write_all(&body[..body.len() / 2])?;
            conn.flush()?;
            thread::sleep(Duration::from_millis(50));
            reset(conn.tcp());
            Ok(()) // dropping `conn` closes the socket: RST
        }
        Behaviour::Stall => {
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until && !state.stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
        Behaviour::Trickle { body, chunk, delay } => {
            write_head(&mut conn, "200 OK", Some(body.len() as u64))?;
            for piece in body.chunks(chunk.max(1)) {
                if state.stop.load(Ordering::SeqCst) {
                    break;
                }
                conn.write_all(piece)?;
                conn.flush()?;
                thread::sleep(delay);
            }
            Ok(())
        }
        Behaviour::Oversized { len } => {
            write_head(&mut conn, "200 OK", Some(len))?;
            stream_zeros(&mut conn, len, state)
        }
        Behaviour::Endless => {
            write_head(&mut conn, "200 OK", None)?;
            stream_zeros(&mut conn, u64::MAX, state)
        }
    }
}

fn read_request_path(conn: &mut Conn) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 || head.len() > 16 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad request"));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let path = text
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    Ok(path)
}

fn write_head(conn: &mut Conn, status: &str, len: Option<u64>) -> io::Result<()> {
    let length = len.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
    let head = format!(
        "HTTP/1.1 {status}\r\n{length}Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes())
}

fn respond(conn: &mut Conn, status: &str, body: &[u8]) -> io::Result<()> {
    write_head(conn, status, Some(body.len() as u64))?;
    conn.write_all(body)?;
    conn.flush()?;
    if let Conn::Tls(tls) = conn {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
    Ok(())
}

fn stream_zeros(conn: &mut Conn, len: u64, state: &State) -> io::Result<()> {
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < len && !state.stop.load(Ordering::SeqCst) {
        let n = chunk.len().min((len - sent) as usize);
        conn.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    conn.flush()
}

/// Sets SO_LINGER 0, so closing the socket sends a RST instead of a clean end of stream.
fn reset(stream: &TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ =
        nix::sys::socket::setsockopt(&stream.as_fd(), nix::sys::socket::sockopt::Linger, &linger);
}
