//! `--store` and its companion flags (declared in the sidecar's flag table, `config::OPTIONS`),
//! read into what capture needs.

use std::path::PathBuf;
use std::time::Duration;

use diffkeeper_cli::{Args, UsageError};

use super::Excludes;

/// What `--store` and its companion flags ask for.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub store: PathBuf,
    pub sync: Duration,
    /// 0: no limit.
    pub max_store_bytes: u64,
    pub max_file_bytes: u64,
    pub interval: Duration,
    pub excludes: Excludes,
}

impl CaptureSettings {
    /// The settings `args` give, `None` without `--store` (or with `--store off`).
    pub fn from_args(args: &Args) -> Result<Option<CaptureSettings>, UsageError> {
        let store = match args.get("--store") {
            None => return Ok(None),
            Some(given) if given.value.eq_ignore_ascii_case("off") => return Ok(None),
            Some(given) => PathBuf::from(given.value),
        };
        let positive_ms = |name: &str| -> Result<Duration, UsageError> {
            let ms: u64 = args.number(name)?;
            if ms == 0 {
                return Err(UsageError(format!(
                    "{name}=0: give at least 1 (milliseconds)"
                )));
            }
            Ok(Duration::from_millis(ms))
        };
        let exclude: Vec<String> = match args.all("--exclude") {
            [] => args
                .env("--exclude")
                .map(|v| {
                    v.split(':')
                        .filter(|g| !g.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            flags => flags.to_vec(),
        };
        Ok(Some(CaptureSettings {
            store,
            sync: positive_ms("--store-sync-ms")?,
            max_store_bytes: args.number("--store-max-bytes")?,
            max_file_bytes: args.number("--capture-max-file-bytes")?,
            interval: positive_ms("--capture-interval-ms")?,
            excludes: Excludes::new(&exclude).map_err(|e| UsageError(e.to_string()))?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::run;

    #[test]
    fn off_unless_given() {
        let c = run(&["--state-dir", "/s", "--exclude", "*.tmp"], &[]).unwrap();
        assert!(c.capture.is_none() && c.command.is_empty());
        let c = run(&["--state-dir", "/s"], &[("DIFFKEEPER_STORE", "off")]).unwrap();
        assert!(c.capture.is_none());
    }

    #[test]
    fn flags_environment_and_defaults() {
        let c = run(&["--state-dir", "/s", "--store", "/st"], &[]).unwrap();
        let s = c.capture.unwrap();
        assert_eq!(s.store, PathBuf::from("/st"));
        assert_eq!(
            (s.sync, s.interval),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        assert_eq!((s.max_store_bytes, s.max_file_bytes), (0, 1 << 30));
        assert_eq!(s.excludes.matching(std::path::Path::new("/s/a.tmp")), None);
        let env = [
            ("DIFFKEEPER_STORE", "/env-store"),
            ("DIFFKEEPER_STORE_SYNC_MS", "50"),
            ("DIFFKEEPER_STORE_MAX_BYTES", "1000000"),
            ("DIFFKEEPER_CAPTURE_MAX_FILE_BYTES", "4096"),
            ("DIFFKEEPER_CAPTURE_INTERVAL_MS", "250"),
            ("DIFFKEEPER_EXCLUDE", "*.tmp:cache"),
        ];
        let s = run(&["--state-dir", "/s"], &env).unwrap().capture.unwrap();
        assert_eq!(s.store, PathBuf::from("/env-store"));
        assert_eq!(
            (s.sync, s.interval),
            (Duration::from_millis(50), Duration::from_millis(250))
        );
        assert_eq!((s.max_store_bytes, s.max_file_bytes), (1_000_000, 4096));
        assert_eq!(
            s.excludes.matching(std::path::Path::new("/s/cache/x")),
            Some("cache")
        );
        // Repeated flags replace the variable's list.
        let s = run(&["--state-dir", "/s", "--exclude", "*.log"], &env)
            .unwrap()
            .capture
            .unwrap();
        assert_eq!(
            (
                s.excludes.matching(std::path::Path::new("/s/a.log")),
                s.excludes.matching(std::path::Path::new("/s/a.tmp"))
            ),
            (Some("*.log"), None)
        );
    }

    #[test]
    fn everything_after_double_dash_is_the_command() {
        let c = run(
            &["--state-dir", "/s", "--", "make", "--store", "x", "--"],
            &[],
        )
        .unwrap();
        assert!(c.capture.is_none());
        assert_eq!(c.command, ["make", "--store", "x", "--"]);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, culprit) in [
            (
                &["--store", "/st", "--store-sync-ms", "0"][..],
                "--store-sync-ms=0",
            ),
            (
                &["--store", "/st", "--store-max-bytes", "lots"][..],
                "--store-max-bytes",
            ),
            (
                &["--store", "/st", "--exclude", "rel/path"][..],
                "--exclude \"rel/path\"",
            ),
        ] {
            let mut all = vec!["--state-dir", "/s"];
            all.extend_from_slice(args);
            let err = run(&all, &[]).unwrap_err();
            assert!(err.0.contains(culprit), "{args:?}: {err}");
        }
    }
}
