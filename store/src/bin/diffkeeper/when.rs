//! Times on the command line: RFC 3339 (as the journal's `ts`) or a duration ago (`90s`, `5m`,
//! `2h`, `1d`, `1h30m`).

use std::time::SystemTime;

use diffkeeper_cli::time::{format_second, parse_moment};
use diffkeeper_cli::UsageError;

/// Nanoseconds since the epoch of `text`, read relative to `now_ns` when a duration.
pub fn parse(flag: &str, text: &str, now_ns: u64) -> Result<u64, UsageError> {
    parse_moment(text, now_ns).ok_or_else(|| {
        UsageError(format!(
            "{flag} {text:?} is neither an RFC 3339 time (2026-11-18T11:06:40Z, as in the journal's ts) nor a duration ago (30s, 5m, 2h, 1d)"
        ))
    })
}

pub fn now_ns() -> u64 {
    diffkeeper_store::ts_ns(SystemTime::now())
}

/// `2026-11-18T11:06:40.000000005Z`, the journal's form.
pub fn format(ns: u64) -> String {
    let second = format_second(ns / 1_000_000_000);
    format!(
        "{}.{:09}Z",
        String::from_utf8_lossy(&second),
        ns % 1_000_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_error_names_the_flag() {
        let err = parse("--at", "yesterday", 0).unwrap_err();
        assert!(err.0.contains("--at \"yesterday\""), "{err}");
        assert_eq!(format(1_000_000_005), "1970-01-01T00:00:01.000000005Z");
    }
}
