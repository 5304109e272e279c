//! The tight write loop: one byte per `write(2)`, nothing else inside the timed region.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

pub fn run(path: &Path, count: u64) -> Result<(), String> {
    let mut file =
        File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let byte = [b'x'];
    let start = Instant::now();
    for _ in 0..count {
        // A short write of one byte cannot happen on a regular file; any error ends the run.
        let written = file
            .write(&byte)
            .map_err(|e| format!("write(2) to {} failed: {e}", path.display()))?;
        debug_assert_eq!(written, 1);
    }
    let ns = start.elapsed().as_nanos();
    println!("{{\"writes\":{count},\"ns\":{ns}}}");
    Ok(())
}
