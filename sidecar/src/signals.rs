//! SIGTERM/SIGINT become a message instead of killing the process, so the sidecar can detach
//! its probes and flush the journal before exiting.

use std::sync::mpsc::Sender;

use nix::sys::signal::{SigSet, Signal};

/// Blocks SIGTERM and SIGINT in the calling thread. Call it before any thread is spawned: new
/// threads inherit the mask, so the signals stay pending until [`forward`]'s thread takes them.
pub fn block_termination() -> nix::Result<SigSet> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()?;
    Ok(set)
}

/// Waits on a thread for the first signal of `set` and sends `on_signal(signal)` to `tx`.
pub fn forward<T: Send + 'static>(
    set: SigSet,
    tx: Sender<T>,
    on_signal: impl FnOnce(Signal) -> T + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || match set.wait() {
            Ok(signal) => {
                let _ = tx.send(on_signal(signal));
            }
            Err(e) => {
                log::error!("sigwait failed: {e}; SIGTERM/SIGINT will not stop the sidecar cleanly")
            }
        })?;
    Ok(())
}
