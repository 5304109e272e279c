//! The flag tables of docs/init.md and docs/sidecar.md held against each binary's `--help`, so
//! the docs cannot drift from the flag table both are made from.

use std::collections::BTreeMap;

/// One flag as a document states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocFlag {
    /// The environment variable's first word (`NAME` or `NAME=1`), if any.
    pub env: Option<String>,
    /// The default as written, without backticks.
    pub default: String,
}

/// The flag table under the first line of `doc` that is exactly `heading` (e.g. `## Command
/// line`), by flag name.
pub fn doc_flags(doc: &str, heading: &str) -> BTreeMap<String, DocFlag> {
    let mut lines = doc
        .lines()
        .skip_while(|l| l.trim() != heading)
        .skip_while(|l| !l.starts_with('|'));
    let header = lines.next().unwrap_or_default();
    assert!(
        header.contains("flag") && header.contains("env") && header.contains("default"),
        "no flag table under {heading}"
    );
    lines
        .skip(1) // |---|---|
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            // `\|` inside a cell is a literal bar.
            let row = row.replace("\\|", "\u{0}");
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let name = first_word(&unquote(cells[1])).to_string();
            let env = cells[2]
                .split('`')
                .nth(1)
                .map(|var| first_word(var).to_string());
            (
                name,
                DocFlag {
                    env,
                    default: unquote(cells[3]),
                },
            )
        })
        .collect()
}

/// The flags `--help` documents (without `--help` and `--version`), by flag name.
pub fn help_flags(help: &str) -> BTreeMap<String, DocFlag> {
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    // Entries are indented by two spaces; the intro's lines are not.
    for line in help.lines().filter(|l| l.starts_with("  ")).map(str::trim) {
        if line.starts_with("--") {
            let name = line
                .split([' ', '='])
                .next()
                .unwrap_or_default()
                .to_string();
            flags.insert(
                name.clone(),
                DocFlag {
                    env: None,
                    default: String::new(),
                },
            );
            current = Some(name);
        } else if let (Some(details), Some(name)) = (
            line.strip_prefix('[').and_then(|l| l.strip_suffix(']')),
            &current,
        ) {
            if let Some(flag) = flags.get_mut(name) {
                for part in details.split("; ") {
                    if let Some(env) = part.strip_prefix("env ") {
                        flag.env = Some(first_word(env).to_string());
                    } else if let Some(default) = part.strip_prefix("default: ") {
                        flag.default = default.to_string();
                    }
                }
            }
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

/// Every way the documented table and `--help` disagree: a flag only in one of them, another
/// environment variable, or a documented default that does not start with `--help`'s (without its
/// parenthesised note: the docs may say more).
pub fn disagreements(
    documented: &BTreeMap<String, DocFlag>,
    help: &BTreeMap<String, DocFlag>,
) -> Vec<String> {
    let mut out = Vec::new();
    for name in help.keys().filter(|n| !documented.contains_key(*n)) {
        out.push(format!("{name} is in --help but not in the docs"));
    }
    for (name, doc) in documented {
        let Some(help) = help.get(name) else {
            out.push(format!("{name} is in the docs but not in --help"));
            continue;
        };
        if doc.env != help.env {
            out.push(format!(
                "{name}: docs env {:?}, --help env {:?}",
                doc.env, help.env
            ));
        }
        let value = help.default.split(" (").next().unwrap_or_default().trim();
        if !doc.default.starts_with(value) {
            out.push(format!(
                "{name}: docs default {:?} does not start with --help's {value:?}",
                doc.default
            ));
        }
    }
    out
}

fn unquote(cell: &str) -> String {
    cell.replace('`', "").replace('\u{0}', "|")
}

fn first_word(text: &str) -> &str {
    text.split(|c: char| c.is_whitespace() || c == '=')
        .next()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# tool\n\n## Command line\n\n\
        | flag | env | default |\n|---|---|---|\n\
        | `--a DIR` | `DK_A` | `/a` (the dir) |\n\
        | `--b=BOOL` | — | off |\n\
        | `--c x\\|y` | `DK_C=1` (or `true`) | x |\n\n## other\n";
    const HELP: &str =
        "intro, with\n--b in its text\n  --a DIR          the dir\n                   [env DK_A; default: /a]\n\
        \x20 --b=BOOL          b\n                   [default: off]\n\
        \x20 --c MODE          c\n                   [env DK_C=1; default: x (first)]\n\
        \x20 --help            print this help\n";

    #[test]
    fn tables_agree_and_drift_is_named() {
        let documented = doc_flags(DOC, "## Command line");
        let help = help_flags(HELP);
        assert_eq!(documented.len(), 3);
        assert_eq!(disagreements(&documented, &help), Vec::<String>::new());
        let drifted = HELP
            .replace("DK_A", "DK_AA")
            .replace("default: off", "default: on");
        let problems = disagreements(&documented, &help_flags(&drifted));
        assert_eq!(problems.len(), 2, "{problems:?}");
        let fewer = HELP.replace("--c MODE", "--d MODE");
        assert_eq!(disagreements(&documented, &help_flags(&fewer)).len(), 2);
    }
}
