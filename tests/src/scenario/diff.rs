//! Comparing a journal with the expected one: `ts` checked and dropped, then a line diff.

use serde_json::{Map, Value};

/// The journal without `seq` (checked to go up by one) and `ts` (checked for format), one
/// canonical JSON per line. The journal's own lines (`gap`, and `"repair":true` lines: what a
/// backend did not report, found by a rescan) are left out: the scenario is about what the
/// backend reports; the replay tests check the repairs.
pub(super) fn normalise_journal(journal: &str) -> Result<Vec<String>, String> {
    let mut last_seq: Option<u64> = None;
    let normalised: Result<Vec<Option<String>>, String> = journal
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut value: Map<String, Value> = serde_json::from_str(line).map_err(|e| {
                format!("journal line {} is not a JSON object ({e}): {line}", i + 1)
            })?;
            let seq = value.remove("seq").and_then(|s| s.as_u64());
            match (seq, last_seq) {
                (Some(seq), Some(last)) if seq != last + 1 => {
                    return Err(format!(
                        "journal line {} has seq {seq} after {last}: {line}",
                        i + 1
                    ))
                }
                (None, _) => return Err(format!("journal line {} has no `seq`: {line}", i + 1)),
                _ => last_seq = seq,
            }
            let ts = value.remove("ts");
            let journal_made =
                value.get("op") == Some(&Value::from("gap")) || value.contains_key("repair");
            match ts.as_ref().and_then(Value::as_str) {
                Some(_) if journal_made => Ok(None),
                Some(ts) if is_rfc3339_nanos_utc(ts) => Ok(Some(Value::Object(value).to_string())),
                _ => Err(format!(
                    "journal line {} has no RFC 3339 UTC `ts` with nanoseconds: {line}",
                    i + 1
                )),
            }
        })
        .collect();
    Ok(normalised?.into_iter().flatten().collect())
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
pub(super) fn is_rfc3339_nanos_utc(ts: &str) -> bool {
    let pattern = b"dddd-dd-ddTdd:dd:dd.dddddddddZ";
    ts.len() == pattern.len()
        && ts.bytes().zip(pattern.iter()).all(|(c, p)| {
            if *p == b'd' {
                c.is_ascii_digit()
            } else {
                c == *p
            }
        })
}

/// A minimal line diff (longest common subsequence): `-` expected but missing, `+` unexpected.
pub(super) fn diff(expected: &[String], actual: &[String]) -> Vec<String> {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            (i, j) = (i + 1, j + 1);
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+{}", actual[j]));
            j += 1;
        } else {
            out.push(format!("-{}", expected[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_checked_strictly() {
        assert!(is_rfc3339_nanos_utc("2026-11-26T01:02:03.123456789Z"));
        for bad in [
            "2026-11-26T01:02:03Z",
            "2026-11-26T01:02:03.123456789+00:00",
            "2026-11-26 01:02:03.123456789Z",
            "2026-11-26T01:02:03.12345678xZ",
        ] {
            assert!(!is_rfc3339_nanos_utc(bad), "{bad}");
        }
    }

    #[test]
    fn diff_names_missing_and_unexpected_lines() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(diff(&s(&["a", "b"]), &s(&["a", "b"])).is_empty());
        assert_eq!(
            diff(&s(&["a", "b", "c"]), &s(&["a", "x", "c"])),
            ["+x", "-b"]
        );
        assert_eq!(diff(&s(&["a"]), &s(&[])), ["-a"]);
        assert_eq!(diff(&s(&[]), &s(&["z"])), ["+z"]);
    }

    #[test]
    fn journal_lines_lose_seq_and_ts_and_must_have_them() {
        let ok = r#"{"seq":4,"ts":"2026-11-26T01:02:03.123456789Z","op":"write","path":"/p"}"#;
        assert_eq!(
            normalise_journal(ok).unwrap(),
            [r#"{"op":"write","path":"/p"}"#]
        );
        assert!(normalise_journal(r#"{"seq":1,"op":"write"}"#).is_err());
        assert!(normalise_journal(r#"{"ts":"2026-11-26T01:02:03.123456789Z"}"#).is_err());
        let skipped = format!("{ok}\n{}", ok.replace("\"seq\":4", "\"seq\":6"));
        assert!(normalise_journal(&skipped)
            .unwrap_err()
            .contains("seq 6 after 4"));
        assert!(normalise_journal("not json").is_err());
        let gap = r#"{"seq":5,"ts":"2026-11-26T01:02:03.123456789Z","op":"gap","roots":["/s"],"reason":"r"}"#;
        let repair = r#"{"seq":6,"ts":"2026-11-26T01:02:03.123456789Z","op":"mkdir","path":"/s/d","repair":true}"#;
        assert_eq!(
            normalise_journal(&[ok, gap, repair].join("\n")).unwrap(),
            [r#"{"op":"write","path":"/p"}"#]
        );
    }
}
