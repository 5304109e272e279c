//! UTC timestamps as both binaries print them (init's status file, the sidecar's journal),
//! without a date crate.

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the Unix epoch (proleptic Gregorian, UTC).
pub fn format_second(secs: u64) -> [u8; 19] {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let in_day = secs % 86_400;
    let mut out = [b'0'; 19];
    put_padded(&mut out[0..4], year);
    out[4] = b'-';
    put_padded(&mut out[5..7], month);
    out[7] = b'-';
    put_padded(&mut out[8..10], day);
    out[10] = b'T';
    put_padded(&mut out[11..13], in_day / 3600);
    out[13] = b':';
    put_padded(&mut out[14..16], in_day % 3600 / 60);
    out[16] = b':';
    put_padded(&mut out[17..19], in_day % 60);
    out
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date; Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 time (`2026-11-18T11:06:40.000000005Z`, `...+02:00`; a space may stand
/// for the `T`) to nanoseconds since the Unix epoch. `None` when it is not one, or before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos: i64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = frac[..digits].parse::<i64>().ok()? * 10i64.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = rest.as_bytes();
            if o.len() != 6 || o[3] != b':' {
                return None;
            }
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos as u64)
}

/// Parses a duration (`500ms`, `90s`, `5m`, `2h`, `1d`, or a sum such as `1h30m`) to
/// nanoseconds. `None` when it is not one.
pub fn parse_duration_ns(text: &str) -> Option<u64> {
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

/// A moment given on a command line: an RFC 3339 time (as the journal's `ts`) or a duration
/// ago, relative to `now_ns`. Nanoseconds since the epoch.
pub fn parse_moment(text: &str, now_ns: u64) -> Option<u64> {
    let text = text.trim();
    parse_rfc3339(text).or_else(|| parse_duration_ns(text).map(|ago| now_ns.saturating_sub(ago)))
}

/// Writes `value` in decimal into all of `slot`, zero-padded on the left.
pub fn put_padded(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_795_654_923, "2026-11-26T01:02:03"),
        ] {
            assert_eq!(&format_second(secs), want.as_bytes(), "{secs}");
            let text = format!("{want}Z");
            assert_eq!(parse_rfc3339(&text), Some(secs * 1_000_000_000), "{text}");
        }
    }

    #[test]
    fn moments() {
        let now = 10_000 * 1_000_000_000;
        assert_eq!(parse_moment("5m", now), Some(now - 300_000_000_000));
        assert_eq!(parse_moment("1h30m", now), Some(now - 5_400_000_000_000));
        assert_eq!(
            parse_moment("1970-01-01T00:00:01Z", now),
            Some(1_000_000_000)
        );
        for bad in ["yesterday", "5", "m5", "5x", ""] {
            assert_eq!(parse_moment(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339() {
        let base = 1_795_654_923 * 1_000_000_000;
        assert_eq!(
            parse_rfc3339("2026-11-26T01:02:03.000000005Z"),
            Some(base + 5)
        );
        assert_eq!(
            parse_rfc3339("2026-11-26T01:02:03.5Z"),
            Some(base + 500_000_000)
        );
        assert_eq!(parse_rfc3339("2026-11-26T03:02:03+02:00"), Some(base));
        assert_eq!(parse_rfc3339("2026-11-26 01:02:03Z"), Some(base));
        for bad in [
            "",
            "2026-11-26",
            "2026-13-26T01:02:03Z",
            "2026-11-26T01:02:03",
            "2026-11-26T01:02:03.Z",
            "x026-11-26T01:02:03Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
