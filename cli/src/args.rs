//! Reading a command line and the environment through a flag table.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::str::FromStr;

use crate::flag::{Flag, Kind};
use crate::{parse_bool, UsageError};

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Help,
    Version,
    Run(Args),
}

/// Where a value came from: named in usage errors, so they say what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    Env(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(name) | Self::Env(name) => f.write_str(name),
        }
    }
}

/// A value given by flag or environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub origin: Origin,
    pub value: String,
}

impl Given {
    pub fn number<T: FromStr>(&self) -> Result<T, UsageError> {
        number(&self.origin.to_string(), &self.value)
    }

    pub fn boolean(&self) -> Result<bool, UsageError> {
        let (origin, spellings) = match self.origin {
            Origin::Flag(name) => (name, "true/false"),
            Origin::Env(name) => (name, "1/0, true/false"),
        };
        parse_bool(&self.value).ok_or_else(|| {
            UsageError(format!(
                "{origin}={:?} is not a boolean (use {spellings})",
                self.value
            ))
        })
    }
}

fn number<T: FromStr>(origin: &str, value: &str) -> Result<T, UsageError> {
    value
        .trim()
        .parse()
        .map_err(|_| UsageError(format!("{origin}={value:?} is not a valid number")))
}

/// The flags and variables given, read through their table.
#[derive(Debug)]
pub struct Args {
    table: &'static [Flag],
    flags: HashMap<&'static str, Vec<String>>,
    env: HashMap<&'static str, String>,
}

impl Args {
    fn flag(&self, name: &str) -> &'static Flag {
        self.table
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the flag table"))
    }

    /// The precedence rule: the flag's (first) value, else its environment variable's.
    pub fn get(&self, name: &str) -> Option<Given> {
        let flag = self.flag(name);
        if let Some(value) = self.flags.get(flag.name).and_then(|v| v.first()) {
            return Some(Given {
                origin: Origin::Flag(flag.name),
                value: value.clone(),
            });
        }
        let var = flag.env_var()?;
        self.env.get(var).map(|value| Given {
            origin: Origin::Env(var),
            value: value.clone(),
        })
    }

    /// Every value of a repeatable flag, in order (the environment is not consulted).
    pub fn all(&self, name: &str) -> &[String] {
        self.flags
            .get(self.flag(name).name)
            .map_or(&[], Vec::as_slice)
    }

    /// The flag's environment variable alone.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(self.flag(name).env_var()?).map(String::as_str)
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(|given| given.value)
    }

    /// The value, else the table's default.
    pub fn text_or_default(&self, name: &str) -> String {
        self.text(name)
            .unwrap_or_else(|| self.flag(name).default.to_string())
    }

    /// A number, else the table's default (which a test of each table proves to be one).
    pub fn number<T: FromStr>(&self, name: &str) -> Result<T, UsageError> {
        match self.get(name) {
            Some(given) => given.number(),
            None => number(name, self.flag(name).default),
        }
    }

    /// A boolean, else the table's default; a default that describes a behaviour rather than
    /// naming a boolean (`http:// refused`) means off.
    pub fn boolean(&self, name: &str) -> Result<bool, UsageError> {
        match self.get(name) {
            Some(given) => given.boolean(),
            None => Ok(parse_bool(self.flag(name).default).unwrap_or(false)),
        }
    }
}

/// Reads `args` (without the program name) by `table`; `env` looks up environment variables
/// (unset and empty both mean "not given").
pub fn parse(
    table: &'static [Flag],
    args: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, UsageError> {
    let mut args = pico_args::Arguments::from_vec(spell_out_booleans(table, args));
    if args.contains(["-h", "--help"]) {
        return Ok(Parsed::Help);
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Parsed::Version);
    }
    let mut flags = HashMap::new();
    for flag in table {
        let mut values = Vec::new();
        match flag.kind {
            Kind::Action => {}
            Kind::Value | Kind::Bool => values.extend(value(&mut args, flag.name)?),
            Kind::Repeated => {
                while let Some(v) = value(&mut args, flag.name)? {
                    values.push(v);
                }
            }
            Kind::Switch if args.contains(flag.name) => values.push("true".into()),
            Kind::Switch => values.extend(value(&mut args, flag.name)?),
            Kind::Bare if args.contains(flag.name) => values.push("true".into()),
            Kind::Bare => {}
        }
        if !values.is_empty() {
            flags.insert(flag.name, values);
        }
    }
    reject_leftovers(args.finish())?;
    let env = table
        .iter()
        .filter_map(Flag::env_var)
        .filter_map(|var| Some((var, env(var).filter(|v| !v.is_empty())?)))
        .collect();
    Ok(Parsed::Run(Args { table, flags, env }))
}

fn value(
    args: &mut pico_args::Arguments,
    name: &'static str,
) -> Result<Option<String>, UsageError> {
    args.opt_value_from_str::<_, String>(name)
        .map_err(|e| UsageError(format!("{e} (see --help)")))
}

/// Fails on arguments pico-args did not consume, naming them.
fn reject_leftovers(rest: Vec<OsString>) -> Result<(), UsageError> {
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

/// [`Kind::Bool`] flags take `--flag=BOOL`; a bare `--flag` (true) and `--flag BOOL` are
/// rewritten to that form before pico-args sees them.
fn spell_out_booleans(table: &[Flag], args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let boolean = table.iter().find(|f| f.kind == Kind::Bool && arg == f.name);
        match boolean {
            Some(flag) => {
                let next_is_bool = args
                    .peek()
                    .and_then(|v| v.to_str())
                    .is_some_and(|v| parse_bool(v).is_some());
                let value = if next_is_bool {
                    args.next().unwrap_or_default()
                } else {
                    "true".into()
                };
                out.push(format!("{}={}", flag.name, value.to_string_lossy()).into());
            }
            None => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const TABLE: &[Flag] = &[
        Flag { name: "--dir", value: "DIR", env: "DK_DIR", default: "/d", note: "", help: "", kind: Kind::Value },
        Flag { name: "--n", value: "N", env: "DK_N", default: "7", note: "", help: "", kind: Kind::Value },
        Flag { name: "--each", value: "X", env: "DK_EACH (colon-separated)", default: "", note: "", help: "", kind: Kind::Repeated },
        Flag { name: "--on", value: "=BOOL", env: "DK_ON", default: "true", note: "", help: "", kind: Kind::Bool },
        Flag { name: "--sw", value: "", env: "DK_SW=1", default: "off", note: "", help: "", kind: Kind::Switch },
        Flag { name: "--bare", value: "", env: "", default: "off", note: "", help: "", kind: Kind::Bare },
    ];

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Args, UsageError> {
        let lookup = crate::env_from_pairs(env);
        match parse(TABLE, args.iter().map(OsString::from).collect(), &lookup)? {
            Parsed::Run(args) => Ok(args),
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn flag_beats_env_beats_default() {
        let a = run(&["--dir=/f"], &[("DK_DIR", "/e"), ("DK_N", "3")]).unwrap();
        assert_eq!(a.text_or_default("--dir"), "/f");
        assert_eq!(a.get("--n").unwrap().origin, Origin::Env("DK_N"));
        assert_eq!(a.number::<u32>("--n"), Ok(3));
        let a = run(&[], &[("DK_DIR", "")]).unwrap();
        assert_eq!(a.text_or_default("--dir"), "/d");
        assert_eq!(a.number::<u32>("--n"), Ok(7));
        assert!(a.boolean("--on").unwrap() && !a.boolean("--sw").unwrap());
    }

    #[test]
    fn spellings_of_each_kind() {
        let a = run(
            &["--each", "a", "--each=b", "--on", "no", "--sw", "--bare"],
            &[],
        )
        .unwrap();
        assert_eq!(a.all("--each"), ["a", "b"]);
        assert!(!a.boolean("--on").unwrap());
        assert!(a.boolean("--sw").unwrap() && a.boolean("--bare").unwrap());
        let a = run(&["--on", "--sw=false"], &[("DK_EACH", "x:y")]).unwrap();
        assert!(a.boolean("--on").unwrap() && !a.boolean("--sw").unwrap());
        assert_eq!(a.env("--each"), Some("x:y"));
        assert!(run(&["--bare=true"], &[]).is_err());
    }

    #[test]
    fn errors_name_the_origin() {
        let e = run(&["--n", "x"], &[]).unwrap().number::<u32>("--n");
        assert!(e.unwrap_err().0.contains("--n=\"x\""));
        let e = run(&[], &[("DK_ON", "maybe")]).unwrap().boolean("--on");
        assert!(e.unwrap_err().0.contains("DK_ON=\"maybe\""));
        let e = run(&["--sw=nah"], &[]).unwrap().boolean("--sw");
        assert!(e.unwrap_err().0.contains("--sw"));
        assert!(run(&["--bogus"], &[]).unwrap_err().0.contains("--bogus"));
    }
}
