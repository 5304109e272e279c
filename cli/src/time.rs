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
        }
    }
}
