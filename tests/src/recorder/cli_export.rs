//! The round trip's export through the real `diffkeeper` binary (`diffkeeper export --at T`),
//! as the VM guests run it: T in the journal's RFC 3339 form, to the nanosecond.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// An [`super::Export`] that runs `diffkeeper export --store S --at T --out O`.
pub fn export_with_cli(
    diffkeeper: &Path,
) -> impl Fn(&Path, SystemTime, &Path) -> Result<(), String> + '_ {
    move |store, at, out| {
        let at = rfc3339(at);
        let output = Command::new(diffkeeper)
            .arg("export")
            .arg("--store")
            .arg(store)
            .args(["--at", &at, "--out"])
            .arg(out)
            .output()
            .map_err(|e| format!("running {}: {e}", diffkeeper.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "diffkeeper export --at {at} exited {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ`.
pub fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let second = diffkeeper_cli::time::format_second(since.as_secs());
    format!(
        "{}.{:09}Z",
        String::from_utf8_lossy(&second),
        since.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_parses_back_to_the_same_nanosecond() {
        let at = UNIX_EPOCH + Duration::new(1_796_000_000, 5);
        let text = rfc3339(at);
        assert_eq!(text, "2026-11-30T00:53:20.000000005Z");
        assert_eq!(
            diffkeeper_cli::time::parse_rfc3339(&text),
            Some(1_796_000_000_000_000_005)
        );
    }
}
