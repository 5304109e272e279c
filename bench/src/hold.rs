//! The helpers' life cycle as the harness sees it: print `ready prog_id=N[,M...]`, keep the
//! programs attached until the harness closes our stdin, then print `events=N` and exit.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// `poll` consumes pending work and says whether there was any; while idle we sleep 1 ms.
pub fn until_stdin_closes(prog_ids: &[u32], mut poll: impl FnMut() -> bool) -> u64 {
    let ids: Vec<String> = prog_ids.iter().map(u32::to_string).collect();
    println!("ready prog_id={}", ids.join(","));
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stop_flag.store(true, Ordering::Relaxed);
    });
    let mut events: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if poll() {
            events += 1;
        } else {
            thread::sleep(Duration::from_millis(1));
        }
    }
    println!("events={events}");
    events
}
