//! Command-line plumbing shared by both binaries.
//!
//! Each binary defines every flag once, in one table of [`Flag`]s (name, environment variable,
//! default, help, kind). From that table [`parse`] reads the command line (with pico-args) and
//! the environment, [`render_help`] writes `--help`, and a test holds the README's flag tables
//! against that `--help`. One precedence rule, in [`Args::get`]: a flag wins over its
//! environment variable, which wins over the default. Logs go to stderr.

mod args;
mod flag;
pub mod name;
pub mod ready;
pub mod time;

use std::fmt;

pub use args::{parse, Args, Given, Origin, Parsed};
pub use flag::{render_help, Flag, Kind};

/// A usage mistake (exit code 2): names the flag or variable and the value that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses `1/0`, `true/false`, `yes/no`, `on/off` (any case).
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// An environment given as `(name, value)` pairs, for callers that must not read the process's
/// own (tests, and anything that builds a command line for another process).
pub fn env_from_pairs(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Reads an environment variable; unset and empty both count as "not given".
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Logs to stderr with timestamps; `debug` turns on debug records. `quiet_modules` are
/// dependencies whose INFO records are noise for operators: only their warnings are shown.
pub fn init_logging(debug: bool, quiet_modules: &[&str]) {
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let logger = quiet_modules.iter().fold(
        simple_logger::SimpleLogger::new()
            .with_level(level)
            .with_utc_timestamps(),
        |logger, module| logger.with_module_level(module, log::LevelFilter::Warn),
    );
    // A second initialisation (e.g. in tests) is harmless; keep the first.
    let _ = logger.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for t in ["1", "true", "TRUE", "yes", "on"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "false", "False", "no", "off"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }
}
