//! One flag's definition, and `--help` rendered from a table of them.

/// How a flag is spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--flag VALUE` or `--flag=VALUE`.
    Value,
    /// `--flag VALUE`, any number of times.
    Repeated,
    /// `--flag` alone means true; `--flag=BOOL` says it.
    Switch,
    /// `--flag` alone only.
    Bare,
    /// `--flag=BOOL`; also `--flag BOOL`, and `--flag` alone means true.
    Bool,
    /// `--help`, `--version`: answered before anything else is parsed.
    Action,
}

/// One flag, defined once: parsing, `--help` and the README check all read this.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// `--btf-cache-dir`
    pub name: &'static str,
    /// The value's placeholder in `--help` (`DIR`, `=BOOL`); empty for switches.
    pub value: &'static str,
    /// The environment variable as documented: `NAME`, `NAME=1` for a switch, or
    /// `NAME (how)`; empty when there is none. The variable's name is the first word.
    pub env: &'static str,
    /// The value used when neither flag nor variable is given, or, where the default is a
    /// behaviour rather than a value, its description.
    pub default: &'static str,
    /// Shown after the default in `--help`, e.g. `(1 MiB)`.
    pub note: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

impl Flag {
    /// The environment variable's name, if the flag has one.
    pub fn env_var(&self) -> Option<&'static str> {
        self.env
            .split([' ', '='])
            .next()
            .filter(|name| !name.is_empty())
    }
}

/// Renders `intro` followed by one entry per flag, with its environment variable and default.
pub fn render_help(intro: &str, flags: &[Flag]) -> String {
    let mut out = String::from(intro);
    for f in flags {
        let sep = if f.value.is_empty() || f.value.starts_with('=') {
            ""
        } else {
            " "
        };
        let name = format!("{}{sep}{}", f.name, f.value);
        out.push_str(&format!("  {name:<28} {}\n", f.help));
        let default = [f.default, f.note]
            .iter()
            .filter(|v| !v.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let details: Vec<String> = [("env ", f.env), ("default: ", default.as_str())]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_env_and_default() {
        let flags = [Flag {
            name: "--cache",
            value: "DIR",
            env: "DK_CACHE",
            default: "/c",
            note: "",
            help: "cache dir",
            kind: Kind::Value,
        }];
        let text = render_help("intro\n", &flags);
        assert!(text.starts_with("intro\n"));
        assert!(text.contains("--cache DIR") && text.contains("[env DK_CACHE; default: /c]"));
    }

    #[test]
    fn env_var_is_the_first_word() {
        let mut flag = Flag {
            name: "--x",
            value: "",
            env: "DK_X=1",
            default: "off",
            note: "",
            help: "",
            kind: Kind::Switch,
        };
        assert_eq!(flag.env_var(), Some("DK_X"));
        flag.env = "DK_DIRS (colon-separated)";
        assert_eq!(flag.env_var(), Some("DK_DIRS"));
        flag.env = "";
        assert_eq!(flag.env_var(), None);
    }
}
