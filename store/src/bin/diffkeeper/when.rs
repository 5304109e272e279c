//! Times on the command line: RFC 3339 (as the journal's `ts`) or a duration ago (`90s`, `5m`,
//! `2h`, `1d`, `1h30m`).

use std::time::SystemTime;

use diffkeeper_cli::time::{format_second, parse_rfc3339};
use diffkeeper_cli::UsageError;

/// Nanoseconds since the epoch of `text`, read relative to `now_ns` when a duration.
pub fn parse(flag: &str, text: &str, now_ns: u64) -> Result<u64, UsageError> {
    if let Some(ns) = parse_rfc3339(text.trim()) {
        return Ok(ns);
    }
    if let Some(ago) = parse_duration_ns(text.trim()) {
        return Ok(now_ns.saturating_sub(ago));
    }
    Err(UsageError(format!(
        "{flag} {text:?} is neither an RFC 3339 time (2026-11-18T11:06:40Z, as in the journal's ts) nor a duration ago (30s, 5m, 2h, 1d)"
    )))
}

fn parse_duration_ns(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit_len = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || unit_len == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        let unit: u64 = match &rest[digits..digits + unit_len] {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return None,
        };
        total = total.checked_add(value.checked_mul(unit)?)?;
        rest = &rest[digits + unit_len..];
    }
    Some(total)
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
    fn times_and_durations() {
        let now = 10_000 * 1_000_000_000;
        assert_eq!(parse("--at", "5m", now), Ok(now - 300_000_000_000));
        assert_eq!(parse("--at", "1h30m", now), Ok(now - 5_400_000_000_000));
        assert_eq!(
            parse("--at", "1970-01-01T00:00:01Z", now),
            Ok(1_000_000_000)
        );
        assert!(parse("--at", "yesterday", now).is_err());
        assert!(parse("--at", "5", now).is_err());
        assert_eq!(format(1_000_000_005), "1970-01-01T00:00:01.000000005Z");
    }
}
