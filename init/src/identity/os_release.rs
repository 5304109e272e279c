//! os-release(5): the fields that identify the host's distro, and their BTFHub names.

use super::btfhub::{btfhub_distro, is_path_segment, normalise, BTFHUB_DISTROS};

/// The fields of an os-release file that identify the distro.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`, e.g. `ubuntu`, `rhel`, `sles`.
    pub id: Option<String>,
    /// `ID_LIKE`, split on whitespace, e.g. `["rhel", "centos", "fedora"]`.
    pub id_like: Vec<String>,
    /// `VERSION_ID`, e.g. `22.04`, `8.9`, `15.3`.
    pub version_id: Option<String>,
}

impl OsRelease {
    /// BTFHub distro and version for this os-release. An ID BTFHub does not know whose
    /// `ID_LIKE` names `rhel` is an EL rebuild (same kernels, same major versions as RHEL), so
    /// it maps to `rhel`; any other unknown ID is kept (lower-cased) with its version as is.
    pub fn btfhub_distro_version(&self) -> (Option<String>, Option<String>) {
        let Some(id) = self
            .id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
        else {
            return (None, None);
        };
        let el_rebuild = self.id_like.iter().any(|like| like == "rhel");
        let distro = match btfhub_distro(id) {
            unknown if !BTFHUB_DISTROS.contains(&unknown.as_str()) && el_rebuild => "rhel".into(),
            distro => distro,
        };
        if !is_path_segment(&distro) {
            return (None, None);
        }
        let version = self
            .version_id
            .as_deref()
            .and_then(|version| normalise(&distro, version))
            .map(|(_, version)| version);
        (Some(distro), version)
    }
}

/// Parses os-release(5) text: `KEY=value` lines, values optionally in single or double quotes
/// (double quotes honour the shell escapes `\"`, `\\`, `\$`, `` \` ``), `#` comments and blank
/// lines ignored. Unknown keys are ignored; the last assignment of a key wins.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw.trim());
        match key.trim() {
            "ID" => os.id = Some(value.to_ascii_lowercase()),
            "ID_LIKE" => {
                os.id_like = value
                    .split_whitespace()
                    .map(str::to_ascii_lowercase)
                    .collect()
            }
            "VERSION_ID" => os.version_id = Some(value),
            _ => {}
        }
    }
    os
}

/// Shell-style unquoting of one os-release value.
fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => out.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => out.push(e),
                            Some(other) => out.extend(['\\', other]),
                            None => out.push('\\'),
                        },
                        _ => out.push(c),
                    }
                }
            }
            '\\' => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn os_release_files_map_to_btfhub_dirs() {
        let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
            ("ubuntu 20.04", UBUNTU_2004, Some("ubuntu"), Some("20.04")),
            ("ubuntu 22.04", UBUNTU_2204, Some("ubuntu"), Some("22.04")),
            ("debian 10", DEBIAN_10, Some("debian"), Some("10")),
            ("debian 11", DEBIAN_11, Some("debian"), Some("11")),
            ("debian 12", DEBIAN_12, Some("debian"), Some("12")),
            ("debian sid", DEBIAN_SID, Some("debian"), None),
            ("centos 7", CENTOS_7, Some("centos"), Some("7")),
            ("centos 8", CENTOS_8, Some("centos"), Some("8")),
            ("rhel 8.9", RHEL_89, Some("rhel"), Some("8")),
            ("rhel 9.3", RHEL_93, Some("rhel"), Some("9")),
            ("amzn 2018.03", AMZN_2018, Some("amzn"), Some("2018")),
            ("amzn 2", AMZN_2, Some("amzn"), Some("2")),
            ("amzn 2023", AMZN_2023, Some("amzn"), Some("2023")),
            ("ol 7.9", OL_79, Some("ol"), Some("7")),
            ("ol 8.8", OL_88, Some("ol"), Some("8")),
            ("fedora 39", FEDORA_39, Some("fedora"), Some("39")),
            ("sles 15", SLES_15_GA, Some("sles"), Some("15.0")),
            ("sles 15-SP3", SLES_15_SP3, Some("sles"), Some("15.3")),
            ("sles 15-SP5", SLES_15_SP5, Some("sles"), Some("15.5")),
            (
                "sles_sap 15-SP4",
                SLES_SAP_15_SP4,
                Some("sles"),
                Some("15.4"),
            ),
            (
                "opensuse-leap 15.5",
                OPENSUSE_LEAP_155,
                Some("opensuse-leap"),
                Some("15.5"),
            ),
            ("rocky 8.9", ROCKY_89, Some("rhel"), Some("8")),
            ("almalinux 9.3", ALMA_93, Some("rhel"), Some("9")),
            ("eurolinux 8.6", EUROLINUX_8, Some("rhel"), Some("8")),
            ("flatcar", FLATCAR, Some("flatcar"), Some("3760.2.0")),
            (
                "linux mint 21.2",
                LINUX_MINT_21,
                Some("linuxmint"),
                Some("21.2"),
            ),
            ("empty file", "", None, None),
        ];
        for (name, text, distro, version) in cases {
            let got = parse_os_release(text).btfhub_distro_version();
            let want = (distro.map(String::from), version.map(String::from));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn os_release_fields_are_parsed() {
        let os = parse_os_release(ROCKY_89);
        assert_eq!(os.id.as_deref(), Some("rocky"));
        assert_eq!(os.id_like, ["rhel", "centos", "fedora"]);
        assert_eq!(os.version_id.as_deref(), Some("8.9"));
    }

    #[test]
    fn os_release_quoting_comments_and_blank_lines() {
        let text = "# written by hand\n\
                    \n\
                    ID='ol'\n\
                    \x20  VERSION_ID=\"7.9\"  \r\n\
                    ID_LIKE=\"rhel  fedora\"\n\
                    PRETTY_NAME=\"Say \\\"hi\\\" for \\$5 \\\\ \\`x\\` \\n\"\n\
                    not a key value line\n\
                    #ID=ubuntu\n";
        let os = parse_os_release(text);
        assert_eq!(os.id.as_deref(), Some("ol"));
        assert_eq!(os.version_id.as_deref(), Some("7.9"));
        assert_eq!(os.id_like, ["rhel", "fedora"]);
        // Inside double quotes only \" \\ \$ \` are escapes; any other backslash stays.
        assert_eq!(
            unquote(r#""Say \"hi\" for \$5 \\ \`x\` \n""#),
            r#"Say "hi" for $5 \ `x` \n"#
        );
    }

    #[test]
    fn os_release_value_forms() {
        let cases: &[(&str, &str)] = &[
            ("VERSION_ID=15.3", "15.3"),
            ("VERSION_ID=\"15.3\"", "15.3"),
            ("VERSION_ID='15.3'", "15.3"),
            ("VERSION_ID='a \"b\" \\c'", "a \"b\" \\c"),
            ("VERSION_ID=\"it's\"", "it's"),
            ("VERSION_ID=a\\ b", "a b"),
            ("VERSION_ID=\"a\"'b'c", "abc"),
            ("VERSION_ID=\"unterminated", "unterminated"),
            ("VERSION_ID=", ""),
        ];
        for (line, want) in cases {
            let os = parse_os_release(line);
            assert_eq!(os.version_id.as_deref(), Some(*want), "{line}");
        }
        let os = parse_os_release("ID=Ubuntu\nID=\"RHEL\"\n");
        assert_eq!(
            os.id.as_deref(),
            Some("rhel"),
            "last assignment wins, lower-cased"
        );
    }
}
