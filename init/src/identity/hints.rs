//! Kernel-release hints: the distro (and sometimes its version) a release string gives away,
//! for hosts without an os-release.

/// Ubuntu kernel flavours (the part after `<version>-<abi>-`), e.g. `5.15.0-92-generic`,
/// `5.4.0-1103-aws`, `5.15.0-1057-azure`, `5.15.0-1049-gcp`.
const UBUNTU_FLAVOURS: [&str; 14] = [
    "generic",
    "lowlatency",
    "aws",
    "azure",
    "gcp",
    "gke",
    "gkeop",
    "oracle",
    "kvm",
    "ibm",
    "oem",
    "raspi",
    "nvidia",
    "realtime",
];

/// Debian kernel flavours end in the Debian arch: `-amd64`, `-cloud-amd64`, `-rt-arm64`,
/// `-686-pae`, `-armmp-lpae`, ... (whole words: Ubuntu's `-generic-lpae` is not one of them).
const DEBIAN_FLAVOUR_SUFFIXES: [&str; 8] = [
    "-amd64",
    "-arm64",
    "-686",
    "-686-pae",
    "-armmp",
    "-armmp-lpae",
    "-powerpc64le",
    "-s390x",
];

/// Debian stable releases each pin one upstream kernel series (4.19 -> 10 buster,
/// 5.10 -> 11 bullseye, ...); BTFHub files debian/10 and debian/11 accordingly.
const DEBIAN_SERIES: [(&str, &str); 6] = [
    ("3.16", "8"),
    ("4.9", "9"),
    ("4.19", "10"),
    ("5.10", "11"),
    ("6.1", "12"),
    ("6.12", "13"),
];

/// SUSE kernel flavours, e.g. `5.3.18-150300.59.93-default`, `4.4.138-4.7-azure`.
const SUSE_FLAVOURS: [&str; 5] = ["default", "azure", "rt", "64kb", "kvmsmall"];

/// Guesses distro (and, where the release says it, version) from a kernel release string.
/// Used only when the host has no os-release. Versions are given only where the release
/// encodes them unambiguously; Ubuntu's are not (HWE kernels run on older releases).
pub fn hint_from_release(release: &str) -> Option<(String, Option<String>)> {
    let release = release.trim().to_ascii_lowercase();
    let (_, rest) = release.split_once('-')?;
    // Debian flavours end in the Debian arch, whatever comes before (`4.19.0-26-amd64`,
    // `5.10.0-0.deb10.17-cloud-arm64`, and since Debian 13 `6.12.41+deb13-amd64`).
    if DEBIAN_FLAVOUR_SUFFIXES
        .iter()
        .any(|suffix| release.ends_with(suffix))
    {
        return Some(("debian".into(), debian_version(&release)));
    }
    let (abi, flavour) = match rest.split_once('-') {
        Some((abi, flavour)) => (abi, Some(flavour)),
        None => (rest, None),
    };
    if let Some(hint) = rpm_dist_tag_hint(abi) {
        return Some(hint);
    }
    let first_flavour_word = flavour?.split('-').next()?;
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    // Ubuntu: a plain numeric ABI (`5.15.0-92-generic`); SUSE: a dotted one (`4.4.138-4.7-azure`).
    if digits(abi) && UBUNTU_FLAVOURS.contains(&first_flavour_word) {
        return Some(("ubuntu".into(), None));
    }
    if abi.contains('.')
        && abi.split('.').all(digits)
        && SUSE_FLAVOURS.contains(&first_flavour_word)
    {
        return Some(("sles".into(), sles_version_from_abi(abi)));
    }
    None
}

/// RPM kernels carry a dist tag: `.el7`, `.el8_9`, `.el7uek` (Oracle UEK), `.el7a` (RHEL for
/// ARM), `.amzn2`, `.fc39`.
fn rpm_dist_tag_hint(abi: &str) -> Option<(String, Option<String>)> {
    abi.split('.').find_map(|tag| {
        let (family, rest) = split_alpha_prefix(tag);
        let (number, suffix) = split_digit_prefix(rest);
        if number.is_empty() {
            return None;
        }
        let distro = match (family, suffix) {
            // UEK is Oracle's own kernel: only Oracle Linux runs it.
            ("el", "uek") => "ol",
            // el7a: the RHEL 7 "alt" kernel for aarch64, archived under rhel/7/arm64.
            ("el", "a") => "rhel",
            // el7, el8, el8_9: RHEL and its rebuilds share these; BTFHub builds CentOS by
            // default (RHEL repos are not public), so centos/<major> is the better-stocked dir.
            ("el", s) if s.is_empty() || s.starts_with('_') => "centos",
            ("amzn", "") => "amzn",
            ("fc", "") => "fedora",
            _ => return None,
        };
        let version = match (distro, number) {
            // Amazon Linux AMI kernels (*.amzn1.*) are archived under amzn/2018 (its
            // os-release VERSION_ID is 2018.03).
            ("amzn", "1") => "2018",
            (_, number) => number,
        };
        Some((distro.to_string(), Some(version.to_string())))
    })
}

fn split_alpha_prefix(s: &str) -> (&str, &str) {
    s.split_at(
        s.find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(s.len()),
    )
}

fn split_digit_prefix(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()))
}

/// A Debian tag names the release (`0.deb10.17` is a backport for Debian 10, `+deb13` is
/// Debian 13); otherwise the upstream series tells it (`4.19.0-26-amd64` is Debian 10), except
/// for backports without a release number (`0.bpo.9`, `+bpo`), which run on an older release.
fn debian_version(release: &str) -> Option<String> {
    let parts: Vec<&str> = release.split(['.', '+', '-']).collect();
    let tagged = parts
        .iter()
        .filter_map(|part| part.strip_prefix("deb"))
        .find(|number| !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()));
    if let Some(number) = tagged {
        return Some(number.to_string());
    }
    if parts.contains(&"bpo") {
        return None;
    }
    let series = format!("{}.{}", parts.first()?, parts.get(1)?);
    DEBIAN_SERIES
        .iter()
        .find(|(s, _)| *s == series)
        .map(|(_, version)| version.to_string())
}

/// SLE 15 SP2+ kernels start their release with `15SS00` (`150300.59.93` is 15 SP3 -> "15.3").
fn sles_version_from_abi(abi: &str) -> Option<String> {
    let first = abi.split('.').next()?;
    if first.len() != 6 || !first.ends_with("00") {
        return None;
    }
    let major: u32 = first[..2].parse().ok()?;
    let service_pack: u32 = first[2..4].parse().ok()?;
    Some(format!("{major}.{service_pack}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (kernel release, expected (distro, version) hint).
    type HintCase<'a> = (&'a str, Option<(&'a str, Option<&'a str>)>);

    #[test]
    fn release_hints() {
        let cases: &[HintCase] = &[
            // Ubuntu: GA, cloud and HWE kernels share names, so no version.
            ("5.15.0-92-generic", Some(("ubuntu", None))),
            ("4.15.0-213-generic", Some(("ubuntu", None))),
            ("5.4.0-1103-aws", Some(("ubuntu", None))),
            ("5.15.0-1057-azure", Some(("ubuntu", None))),
            ("5.15.0-1049-gcp", Some(("ubuntu", None))),
            ("5.15.0-1048-gke", Some(("ubuntu", None))),
            ("5.15.0-1053-raspi", Some(("ubuntu", None))),
            ("6.8.0-40-generic-64k", Some(("ubuntu", None))),
            ("5.15.0-92-generic-lpae", Some(("ubuntu", None))),
            // EL: centos is BTFHub's default-built EL family.
            ("4.18.0-513.el8.x86_64", Some(("centos", Some("8")))),
            ("4.18.0-513.24.1.el8_9.x86_64", Some(("centos", Some("8")))),
            ("3.10.0-1160.el7.x86_64", Some(("centos", Some("7")))),
            ("3.10.0-1062.1.2.el7", Some(("centos", Some("7")))),
            ("5.14.0-362.8.1.el9_3.x86_64", Some(("centos", Some("9")))),
            ("4.14.0-115.el7a.aarch64", Some(("rhel", Some("7")))),
            ("5.4.17-2136.327.2.el7uek.x86_64", Some(("ol", Some("7")))),
            ("5.4.17-2011.0.7.el8uek.aarch64", Some(("ol", Some("8")))),
            // Amazon Linux.
            ("4.14.336-257.562.amzn2.x86_64", Some(("amzn", Some("2")))),
            ("5.10.205-195.807.amzn2.x86_64", Some(("amzn", Some("2")))),
            ("4.14.101-91.76.amzn2.aarch64", Some(("amzn", Some("2")))),
            (
                "6.1.72-96.166.amzn2023.x86_64",
                Some(("amzn", Some("2023"))),
            ),
            (
                "4.14.334-177.552.amzn1.x86_64",
                Some(("amzn", Some("2018"))),
            ),
            // Fedora.
            ("6.5.6-300.fc39.x86_64", Some(("fedora", Some("39")))),
            ("5.3.7-301.fc31.x86_64", Some(("fedora", Some("31")))),
            // Debian: the tag or the pinned upstream series gives the release.
            ("6.1.0-18-cloud-amd64", Some(("debian", Some("12")))),
            ("5.10.0-28-amd64", Some(("debian", Some("11")))),
            ("4.19.0-26-amd64", Some(("debian", Some("10")))),
            ("4.19.0-17-rt-amd64", Some(("debian", Some("10")))),
            ("4.9.0-19-amd64", Some(("debian", Some("9")))),
            (
                "5.10.0-0.deb10.17-cloud-arm64",
                Some(("debian", Some("10"))),
            ),
            ("6.1.0-0.deb11.13-amd64", Some(("debian", Some("11")))),
            ("6.12.41+deb13-amd64", Some(("debian", Some("13")))),
            ("6.12.41+deb13-cloud-amd64", Some(("debian", Some("13")))),
            ("6.5.0-4-amd64", Some(("debian", None))),
            ("4.19.0-0.bpo.9-amd64", Some(("debian", None))),
            ("6.12.12+bpo-amd64", Some(("debian", None))),
            ("6.1.0-18-armmp-lpae", Some(("debian", Some("12")))),
            ("6.1.0-18-686-pae", Some(("debian", Some("12")))),
            // SUSE: SLE 15 SP2+ releases start with 15SS00.
            ("5.3.18-150300.59.93-default", Some(("sles", Some("15.3")))),
            ("5.14.21-150500.55.39-default", Some(("sles", Some("15.5")))),
            ("4.12.14-122.37-default", Some(("sles", None))),
            ("4.4.138-4.7-azure", Some(("sles", None))),
            // Nothing to go on.
            ("6.18.44-fc-v669", None),
            ("6.6.87.2-microsoft-standard-WSL2", None),
            ("6.6.1-1-default", None),
            ("6.7.0", None),
            ("", None),
        ];
        for (release, want) in cases {
            let want = want.map(|(d, v)| (d.to_string(), v.map(String::from)));
            assert_eq!(hint_from_release(release), want, "{release}");
        }
    }
}
