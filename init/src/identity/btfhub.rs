//! BTFHub's naming: its architecture and distro directories, and how os-release values map
//! onto them.

/// The architecture directories BTFHub has.
pub const BTFHUB_ARCHES: [&str; 2] = ["x86_64", "arm64"];

/// The distro directories at the top of the BTFHub archive.
pub const BTFHUB_DISTROS: [&str; 8] = [
    "amzn", "centos", "debian", "fedora", "ol", "rhel", "sles", "ubuntu",
];

/// Maps `uname -m` (or a user's `--arch`) to BTFHub's architecture directory name.
pub fn btfhub_arch(uname_machine: &str) -> Option<&'static str> {
    let machine = uname_machine.trim().to_ascii_lowercase();
    match machine.as_str() {
        "x86_64" | "amd64" => Some("x86_64"),
        "aarch64" | "arm64" => Some("arm64"),
        _ => None,
    }
}

/// The BTFHub distro directory for an os-release `ID` (lower-cased; unknown IDs kept).
pub(super) fn btfhub_distro(id: &str) -> String {
    let id = id.trim().to_ascii_lowercase();
    match id.as_str() {
        // EL rebuilds: BTFHub has no rocky/almalinux dirs; their kernels carry the same
        // release strings as RHEL's (e.g. 4.18.0-513.5.1.el8_9), so RHEL's directory is the match.
        "rocky" | "almalinux" => "rhel".into(),
        // SLES for SAP runs the SLES kernels.
        "sles_sap" => "sles".into(),
        _ => id,
    }
}

/// Normalises os-release `ID` and `VERSION_ID` to BTFHub directory names.
/// `None` when either is empty or would not be a single safe path segment.
pub fn normalise(id: &str, version_id: &str) -> Option<(String, String)> {
    let distro = btfhub_distro(id);
    let version = version_id.trim().to_ascii_lowercase();
    let version = match distro.as_str() {
        // Ubuntu dirs are the full VERSION_ID: ubuntu/18.04, ubuntu/20.04.
        "ubuntu" => version,
        // These families use the major version only: rhel/8 (VERSION_ID 8.9), ol/7 (7.9),
        // centos/7, debian/11, fedora/34, and amzn/2018 for Amazon Linux AMI "2018.03".
        "rhel" | "centos" | "ol" | "debian" | "fedora" | "amzn" => major(&version).to_string(),
        // SLES dirs are VERSION_ID (15.3 for 15-SP3); BTFHub names a GA release 15.0/12.0,
        // while its os-release says just "15".
        "sles" if !version.is_empty() && !version.contains('.') => format!("{version}.0"),
        // Unknown distros (and sles/opensuse-leap with dotted versions): as is.
        _ => version,
    };
    (is_path_segment(&distro) && is_path_segment(&version)).then_some((distro, version))
}

fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// A single path segment that cannot escape or hide: non-empty, no leading '.', only
/// `[A-Za-z0-9._-]`. Distro, version and arch all become URL and file path components.
pub(super) fn is_path_segment(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with('.')
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (os-release ID, VERSION_ID, expected BTFHub (distro, version)).
    type NormaliseCase<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

    #[test]
    fn normalise_to_btfhub_names() {
        let cases: &[NormaliseCase] = &[
            ("ubuntu", "22.04", Some(("ubuntu", "22.04"))),
            ("Ubuntu", " 20.04 ", Some(("ubuntu", "20.04"))),
            ("debian", "11", Some(("debian", "11"))),
            ("centos", "7", Some(("centos", "7"))),
            ("rhel", "8.9", Some(("rhel", "8"))),
            ("RHEL", "9.3", Some(("rhel", "9"))),
            ("ol", "7.9", Some(("ol", "7"))),
            ("ol", "8.8", Some(("ol", "8"))),
            ("fedora", "39", Some(("fedora", "39"))),
            ("amzn", "2", Some(("amzn", "2"))),
            ("amzn", "2018.03", Some(("amzn", "2018"))),
            ("amzn", "2023", Some(("amzn", "2023"))),
            ("sles", "15.3", Some(("sles", "15.3"))),
            ("sles", "12.5", Some(("sles", "12.5"))),
            ("sles", "15", Some(("sles", "15.0"))),
            ("sles_sap", "15.4", Some(("sles", "15.4"))),
            ("opensuse-leap", "15.5", Some(("opensuse-leap", "15.5"))),
            ("rocky", "8.9", Some(("rhel", "8"))),
            ("almalinux", "9.3", Some(("rhel", "9"))),
            ("Flatcar", "3760.2.0", Some(("flatcar", "3760.2.0"))),
            ("", "1", None),
            ("ubuntu", "", None),
            ("ubuntu", "../../etc", None),
            ("ubuntu", ".hidden", None),
            ("a/b", "1", None),
            ("ubuntu", "22.04 lts", None),
        ];
        for (id, version, want) in cases {
            let want = want.map(|(d, v)| (d.to_string(), v.to_string()));
            assert_eq!(normalise(id, version), want, "{id:?} {version:?}");
        }
    }

    #[test]
    fn arch_mapping() {
        let cases: &[(&str, Option<&str>)] = &[
            ("x86_64", Some("x86_64")),
            ("amd64", Some("x86_64")),
            ("aarch64", Some("arm64")),
            ("arm64", Some("arm64")),
            ("AARCH64", Some("arm64")),
            ("riscv64", None),
            ("s390x", None),
            ("ppc64le", None),
            ("i686", None),
            ("armv7l", None),
            ("", None),
        ];
        for (machine, want) in cases {
            assert_eq!(btfhub_arch(machine), *want, "{machine}");
        }
    }
}
