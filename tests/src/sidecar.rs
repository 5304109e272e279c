//! Process control for a diffkeeper-sidecar under test: spawn it, read its log as it comes,
//! wait for a line, stop it with a signal.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diffkeeper_cli::ready::READY_PREFIX;

/// A running sidecar whose stderr is collected (and scanned for lines) on a thread.
pub struct SidecarProcess {
    child: Child,
    log: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

impl SidecarProcess {
    /// The address the sidecar serves /metrics on (given port 0, it logs the real one).
    pub fn metrics_addr(&mut self, timeout: Duration) -> Result<std::net::SocketAddr, String> {
        let line = self.wait_for("serving http://", timeout)?;
        let rest = line
            .split_once("http://")
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let addr = rest.split('/').next().unwrap_or_default();
        addr.parse()
            .map_err(|e| format!("no IP:PORT in the log line {line:?}: {e}"))
    }

    /// Spawns `cmd` with stdin closed and stderr captured (stdout is left as configured).
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        let mut child = cmd.stdin(Stdio::null()).stderr(Stdio::piped()).spawn()?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        Ok(Self { child, log, lines })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next log line containing `needle`, or why none came: timeout or exit.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!(
                        "the sidecar ended ({status}) without logging {needle:?}"
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the sidecar did not log {needle:?} within {} s",
                        timeout.as_secs()
                    ))
                }
            }
        }
    }

    /// Waits for the ready line and returns the backend it names.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<String, String> {
        let line = self.wait_for(READY_PREFIX, timeout)?;
        let rest = line.split_once(READY_PREFIX).map_or("", |(_, rest)| rest);
        Ok(rest.split_whitespace().next().unwrap_or("").to_string())
    }

    /// SIGTERM, then the exit status and how long the exit took; killed after 10 s (`None`).
    pub fn terminate(&mut self) -> (Option<ExitStatus>, Option<Duration>) {
        if let Ok(Some(status)) = self.child.try_wait() {
            return (Some(status), None);
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (Some(status), Some(start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        (None, None)
    }

    /// Waits for the exit (no signal), up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Everything logged so far (after an exit: everything).
    pub fn log(&self) -> String {
        // Give the reader thread a moment to take the last lines after an exit.
        std::thread::sleep(Duration::from_millis(50));
        self.log.lock().unwrap().clone()
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
