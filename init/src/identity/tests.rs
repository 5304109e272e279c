//! detect() against scratch host roots, and BTFHub paths from whole identities.

use super::fixtures::*;
use super::os_release::parse_os_release;
use super::*;
use diffkeeper_tests::scratch::Scratch;
use std::fs;
use std::os::unix::fs::symlink;

/// A scratch host root, removed on drop.
struct HostRoot(Scratch);

impl HostRoot {
    fn new(name: &str) -> Self {
        Self(Scratch::new(&format!("identity-{name}")))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn write(&self, rel: &str, text: &str) -> &Self {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        self
    }

    fn link(&self, rel: &str, target: &str) -> &Self {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        symlink(target, path).unwrap();
        self
    }

    fn detect(&self, release: &str) -> Result<KernelIdentity, IdentityError> {
        detect(self.path(), Some(release), Some("x86_64"))
    }
}

fn identity(
    release: &str,
    arch: &str,
    distro: Option<&str>,
    version: Option<&str>,
) -> KernelIdentity {
    KernelIdentity {
        release: release.into(),
        arch: arch.into(),
        distro: distro.map(String::from),
        version: version.map(String::from),
    }
}

#[test]
fn btfhub_path_building() {
    let seed = identity("5.15.0-92-generic", "x86_64", Some("ubuntu"), Some("22.04"));
    assert_eq!(
        seed.btfhub_path().as_deref(),
        Some("ubuntu/22.04/x86_64/5.15.0-92-generic.btf.tar.xz")
    );
    assert_eq!(seed.btfhub_dir().as_deref(), Some("ubuntu/22.04/x86_64"));
    assert!(seed.btfhub_arch_supported());

    let no_version = identity("5.15.0-92-generic", "x86_64", Some("ubuntu"), None);
    assert_eq!(no_version.btfhub_path(), None);
    let no_distro = identity("5.15.0-92-generic", "x86_64", None, Some("22.04"));
    assert_eq!(no_distro.btfhub_path(), None);
    let bad_release = identity("../../x", "x86_64", Some("ubuntu"), Some("22.04"));
    assert_eq!(bad_release.btfhub_path(), None);
    let bad_version = identity("5.15.0-92-generic", "x86_64", Some("ubuntu"), Some("../.."));
    assert_eq!(bad_version.btfhub_path(), None);

    // An arch BTFHub lacks still names a (baked) tree; only downloads need support.
    let riscv = identity("6.8.0-40-generic", "riscv64", Some("ubuntu"), Some("24.04"));
    assert!(!riscv.btfhub_arch_supported());
    assert_eq!(
        riscv.btfhub_path().as_deref(),
        Some("ubuntu/24.04/riscv64/6.8.0-40-generic.btf.tar.xz")
    );
}

/// Release hints alone (no os-release) lead to files that exist in aquasecurity/btfhub-archive.
#[test]
fn hints_reach_real_archive_paths() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "3.10.0-1160.el7.x86_64",
            "x86_64",
            "centos/7/x86_64/3.10.0-1160.el7.x86_64.btf.tar.xz",
        ),
        (
            "4.18.0-348.el8.x86_64",
            "x86_64",
            "centos/8/x86_64/4.18.0-348.el8.x86_64.btf.tar.xz",
        ),
        (
            "4.14.0-115.el7a.aarch64",
            "aarch64",
            "rhel/7/arm64/4.14.0-115.el7a.aarch64.btf.tar.xz",
        ),
        (
            "5.4.17-2011.0.7.el8uek.x86_64",
            "x86_64",
            "ol/8/x86_64/5.4.17-2011.0.7.el8uek.x86_64.btf.tar.xz",
        ),
        (
            "4.14.101-91.76.amzn2.aarch64",
            "aarch64",
            "amzn/2/arm64/4.14.101-91.76.amzn2.aarch64.btf.tar.xz",
        ),
        (
            "4.14.334-177.552.amzn1.x86_64",
            "x86_64",
            "amzn/2018/x86_64/4.14.334-177.552.amzn1.x86_64.btf.tar.xz",
        ),
        (
            "5.3.7-301.fc31.x86_64",
            "x86_64",
            "fedora/31/x86_64/5.3.7-301.fc31.x86_64.btf.tar.xz",
        ),
        (
            "4.19.0-26-amd64",
            "x86_64",
            "debian/10/x86_64/4.19.0-26-amd64.btf.tar.xz",
        ),
        (
            "5.10.0-0.deb10.17-cloud-arm64",
            "arm64",
            "debian/10/arm64/5.10.0-0.deb10.17-cloud-arm64.btf.tar.xz",
        ),
        (
            "5.10.0-10-cloud-amd64",
            "amd64",
            "debian/11/x86_64/5.10.0-10-cloud-amd64.btf.tar.xz",
        ),
    ];
    let empty = HostRoot::new("archive");
    for (release, arch, want) in cases {
        let id = detect(empty.path(), Some(release), Some(arch)).unwrap();
        assert_eq!(id.btfhub_path().as_deref(), Some(*want), "{release}");
    }
}

#[test]
fn detect_reads_etc_os_release() {
    let root = HostRoot::new("etc");
    root.write("etc/os-release", UBUNTU_2204)
        .write("usr/lib/os-release", RHEL_89);
    let id = root.detect("5.15.0-92-generic").unwrap();
    assert_eq!(
        id,
        identity("5.15.0-92-generic", "x86_64", Some("ubuntu"), Some("22.04"))
    );
    assert_eq!(
        id.btfhub_path().as_deref(),
        Some("ubuntu/22.04/x86_64/5.15.0-92-generic.btf.tar.xz")
    );
}

#[test]
fn detect_falls_back_to_usr_lib_os_release() {
    let root = HostRoot::new("usrlib");
    root.write("usr/lib/os-release", RHEL_89);
    let id = root.detect("4.18.0-513.el8.x86_64").unwrap();
    assert_eq!(
        id.distro.as_deref(),
        Some("rhel"),
        "os-release beats the .el8 hint"
    );
    assert_eq!(id.version.as_deref(), Some("8"));
}

#[test]
fn detect_without_os_release_uses_hints() {
    let root = HostRoot::new("none");
    let amzn = root.detect("4.14.336-257.562.amzn2.x86_64").unwrap();
    assert_eq!(
        amzn.btfhub_path().as_deref(),
        Some("amzn/2/x86_64/4.14.336-257.562.amzn2.x86_64.btf.tar.xz")
    );
    let ubuntu = root.detect("5.15.0-92-generic").unwrap();
    assert_eq!(ubuntu.distro.as_deref(), Some("ubuntu"));
    assert_eq!(ubuntu.version, None);
    assert_eq!(ubuntu.btfhub_path(), None);
    let unknown = root.detect("6.18.44-fc-v669").unwrap();
    assert_eq!((unknown.distro, unknown.version), (None, None));
}

#[test]
fn detect_takes_missing_version_from_a_matching_hint() {
    let root = HostRoot::new("sid");
    root.write("etc/os-release", DEBIAN_SID);
    let id = root.detect("6.1.0-18-amd64").unwrap();
    assert_eq!(
        (id.distro.as_deref(), id.version.as_deref()),
        (Some("debian"), Some("12"))
    );
    // A hint for another distro is not mixed in.
    let id = root.detect("5.15.0-92-generic").unwrap();
    assert_eq!((id.distro.as_deref(), id.version), (Some("debian"), None));
}

#[test]
fn detect_follows_absolute_symlinks_inside_the_host_root() {
    // This machine's own /usr/lib/os-release is not CentOS, so reading through the link
    // outside the host root would give a different answer.
    let root = HostRoot::new("abslink");
    root.write("usr/lib/os-release", CENTOS_7)
        .link("etc/os-release", "/usr/lib/os-release");
    let id = root.detect("3.10.0-1160.el7.x86_64").unwrap();
    assert_eq!(
        (id.distro.as_deref(), id.version.as_deref()),
        (Some("centos"), Some("7"))
    );

    let relative = HostRoot::new("rellink");
    relative
        .write("usr/lib/os-release", SLES_15_SP3)
        .link("etc/os-release", "../usr/lib/os-release");
    let id = relative.detect("5.3.18-150300.59.93-default").unwrap();
    assert_eq!(
        (id.distro.as_deref(), id.version.as_deref()),
        (Some("sles"), Some("15.3"))
    );

    // `..` beyond the host root stays at the host root, as `/..` does on the host.
    let climbing = HostRoot::new("dotdot");
    climbing
        .write("usr/lib/os-release", AMZN_2)
        .link("etc/os-release", "../../../../usr/lib/./os-release");
    let id = climbing.detect("5.10.205-195.807.amzn2.x86_64").unwrap();
    assert_eq!(
        (id.distro.as_deref(), id.version.as_deref()),
        (Some("amzn"), Some("2"))
    );
}

#[test]
fn detect_reports_unreadable_os_release() {
    let looped = HostRoot::new("loop");
    looped.link("etc/os-release", "os-release");
    let err = looped.detect("5.15.0-92-generic").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, IdentityError::ReadOsRelease { .. }), "{text}");
    assert!(
        text.contains("etc/os-release") && text.contains("os error 40"),
        "{text}"
    );
    assert!(text.contains("--host-root"), "{text}");

    let dir = HostRoot::new("dir");
    fs::create_dir_all(dir.path().join("etc/os-release")).unwrap();
    let text = dir.detect("5.15.0-92-generic").unwrap_err().to_string();
    assert!(text.contains("not a regular file"), "{text}");
}

#[test]
fn detect_rejects_a_bad_host_root() {
    let missing = std::env::temp_dir().join("dk-identity-no-such-root");
    let err = detect(&missing, Some("5.15.0-92-generic"), Some("x86_64")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, IdentityError::HostRoot { .. }), "{text}");
    assert!(
        text.contains("dk-identity-no-such-root") && text.contains("os error 2"),
        "{text}"
    );

    let root = HostRoot::new("file");
    root.write("not-a-dir", "x");
    let err = detect(
        &root.path().join("not-a-dir"),
        Some("5.15.0-92-generic"),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("os error 20"), "{err}");
}

#[test]
fn detect_rejects_bad_overrides() {
    let root = HostRoot::new("overrides");
    for release in ["", "  ", "../../etc/passwd", "a/b", ".hidden"] {
        let err = detect(root.path(), Some(release), Some("x86_64")).unwrap_err();
        assert!(
            matches!(err, IdentityError::InvalidRelease { .. }),
            "{release:?}: {err}"
        );
        assert!(err.to_string().contains("--kernel-release"), "{err}");
    }
    for arch in ["", "x86/64", "..", "x 86"] {
        let err = detect(root.path(), Some("5.15.0-92-generic"), Some(arch)).unwrap_err();
        assert!(
            matches!(err, IdentityError::InvalidArch { .. }),
            "{arch:?}: {err}"
        );
        assert!(err.to_string().contains("--arch"), "{err}");
    }
    let riscv = detect(root.path(), Some("6.8.0-40-generic"), Some("riscv64")).unwrap();
    assert_eq!(
        riscv.arch, "riscv64",
        "an arch BTFHub lacks is kept, not an error"
    );
    assert!(!riscv.btfhub_arch_supported());
}

#[test]
fn detect_on_this_machine_matches_the_kernel() {
    let id = detect(Path::new("/"), None, None).unwrap();
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(id.release, release.trim());
    let machine = nix::sys::utsname::uname().unwrap();
    let machine = machine.machine().to_string_lossy();
    assert_eq!(
        Some(id.arch.as_str()),
        btfhub_arch(&machine).or(Some(&machine))
    );
    if let Ok(text) = fs::read_to_string("/etc/os-release") {
        let (distro, _) = parse_os_release(&text).btfhub_distro_version();
        assert_eq!(id.distro, distro);
    }
}
