//! Command-line plumbing shared by both binaries: flags win over environment, environment over
//! defaults; booleans are spelled the same way everywhere; logs go to stderr.

use std::ffi::OsString;
use std::fmt;

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

/// Reads an environment variable; unset and empty both count as "not given".
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A boolean environment variable read through `env` (tests inject their own environment), with
/// a usage error naming it when the value is not a boolean.
pub fn env_bool(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<bool>, UsageError> {
    env(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            parse_bool(&v).ok_or_else(|| {
                UsageError(format!(
                    "{name}={v:?} is not a boolean (use 1/0, true/false)"
                ))
            })
        })
        .transpose()
}

/// Parses a `--flag=BOOL` value.
pub fn flag_bool(flag: &str, value: &str) -> Result<bool, UsageError> {
    parse_bool(value).ok_or_else(|| {
        UsageError(format!(
            "{flag}={value:?} is not a boolean (use true/false)"
        ))
    })
}

/// Parses a number given by flag or environment, naming where it came from on error.
pub fn parse_number<T: std::str::FromStr>(origin: &str, value: &str) -> Result<T, UsageError> {
    value
        .trim()
        .parse()
        .map_err(|_| UsageError(format!("{origin}={value:?} is not a valid number")))
}

/// Fails on arguments pico-args did not consume, naming them.
pub fn reject_leftovers(rest: Vec<OsString>) -> Result<(), UsageError> {
    if rest.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = rest
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Err(UsageError(format!(
        "unexpected argument(s): {} (see --help)",
        names.join(" ")
    )))
}

/// One documented flag for `--help`: an empty `value`, `env` or `default` is left out.
pub struct FlagDoc {
    pub flag: &'static str,
    pub value: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Renders `intro` followed by one entry per flag, with its environment variable and default,
/// so `--help` is generated from the same table the parser documents.
pub fn render_help(intro: &str, flags: &[FlagDoc]) -> String {
    let mut out = String::from(intro);
    for f in flags {
        let sep = if f.value.is_empty() || f.value.starts_with('=') {
            ""
        } else {
            " "
        };
        let name = format!("{}{sep}{}", f.flag, f.value);
        out.push_str(&format!("  {name:<28} {}\n", f.help));
        let details: Vec<String> = [("env ", f.env), ("default: ", f.default)]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}{v}"))
            .collect();
        if !details.is_empty() {
            out.push_str(&format!("  {:<28} [{}]\n", "", details.join("; ")));
        }
    }
    out
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
        assert!(flag_bool("--x", "nah").unwrap_err().0.contains("--x"));
    }

    #[test]
    fn env_booleans_name_the_variable() {
        let env = |name: &str| (name == "X").then(|| "maybe".to_string());
        assert!(env_bool(&env, "X").unwrap_err().0.contains("X=\"maybe\""));
        assert_eq!(env_bool(&env, "Y"), Ok(None));
    }

    #[test]
    fn help_lists_env_and_default() {
        let flags = [FlagDoc {
            flag: "--cache",
            value: "DIR",
            env: "DK_CACHE",
            default: "/c",
            help: "cache dir",
        }];
        let text = render_help("intro\n", &flags);
        assert!(text.starts_with("intro\n"));
        assert!(text.contains("--cache DIR") && text.contains("[env DK_CACHE; default: /c]"));
    }

    #[test]
    fn numbers_and_leftovers() {
        assert_eq!(parse_number::<u64>("--n", " 42 "), Ok(42));
        assert!(parse_number::<u64>("--n", "x")
            .unwrap_err()
            .0
            .contains("--n"));
        assert!(reject_leftovers(vec![]).is_ok());
        assert!(reject_leftovers(vec!["--bogus".into()])
            .unwrap_err()
            .0
            .contains("--bogus"));
    }
}
