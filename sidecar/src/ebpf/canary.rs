//! The canary self-check: aya relocates against a BTF with wrong member offsets without a
//! complaint, and the programs then read the wrong fields. So after attaching, write a known
//! number of bytes to a file in the private canary root and demand the event back, with the
//! right name and size, within a second. The pid is not compared: in a container's PID
//! namespace `getpid()` differs from the kernel-wide pid the programs report.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use diffkeeper_ebpf::event::{Event, EventOp};

const PAYLOAD: &[u8] = b"diffkeeper canary: does the BTF fit this kernel?\n";
const WAIT: Duration = Duration::from_secs(1);

/// Writes the canary file in `dir` (watched as root `root_id`) and waits for its event.
pub fn check(dir: &Path, root_id: u32, events: &Receiver<Event>) -> Result<(), String> {
    while events.try_recv().is_ok() {}
    let name = format!("canary-{}", std::process::id());
    let file = dir.join(&name);
    std::fs::write(&file, PAYLOAD)
        .map_err(|e| format!("cannot write the canary file {}: {e}", file.display()))?;
    let result = wait(root_id, &name, events);
    if let Err(e) = std::fs::remove_file(&file) {
        log::debug!(
            "[eBPF] cannot remove the canary file {}: {e}",
            file.display()
        );
    }
    result
}

fn wait(root_id: u32, name: &str, events: &Receiver<Event>) -> Result<(), String> {
    let want = (Some((root_id, name.to_string())), PAYLOAD.len() as u64);
    let deadline = Instant::now() + WAIT;
    let mut seen = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ev) if ev.op != EventOp::Write => continue,
            Ok(ev) if (ev.path.clone(), ev.bytes) == want => return Ok(()),
            Ok(ev) => seen = Some(ev),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => return Err("the event reader stopped".into()),
        }
    }
    Err(match seen {
        Some(ev) => format!(
            "the canary write of {} bytes to {name:?} came back as {:?}, {} bytes",
            want.1,
            ev.path.map(|(_, p)| p).unwrap_or_default(),
            ev.bytes,
        ),
        None => format!(
            "no event for the canary write of {} bytes to {name:?} within {WAIT:?}",
            want.1
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn write_event(path: &str, bytes: u64) -> Event {
        Event {
            op: EventOp::Write,
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
        assert!(err.contains("garbage") && err.contains(&name), "{err}");
        tx.send(write_event(&name, PAYLOAD.len() as u64)).unwrap();
        wait(3, &name, &rx).unwrap();
    }
}
