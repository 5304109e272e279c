//! os-release files as the distributions ship them (under `init/testdata/os-release/`).

pub const UBUNTU_2004: &str = include_str!("../../testdata/os-release/ubuntu-2004");
pub const UBUNTU_2204: &str = include_str!("../../testdata/os-release/ubuntu-2204");
pub const DEBIAN_10: &str = include_str!("../../testdata/os-release/debian-10");
pub const DEBIAN_11: &str = include_str!("../../testdata/os-release/debian-11");
pub const DEBIAN_12: &str = include_str!("../../testdata/os-release/debian-12");
/// Debian testing/unstable ship no VERSION_ID.
pub const DEBIAN_SID: &str = include_str!("../../testdata/os-release/debian-sid");
pub const CENTOS_7: &str = include_str!("../../testdata/os-release/centos-7");
pub const CENTOS_8: &str = include_str!("../../testdata/os-release/centos-8");
pub const RHEL_89: &str = include_str!("../../testdata/os-release/rhel-89");
pub const RHEL_93: &str = include_str!("../../testdata/os-release/rhel-93");
pub const AMZN_2018: &str = include_str!("../../testdata/os-release/amzn-2018");
pub const AMZN_2: &str = include_str!("../../testdata/os-release/amzn-2");
pub const AMZN_2023: &str = include_str!("../../testdata/os-release/amzn-2023");
pub const OL_79: &str = include_str!("../../testdata/os-release/ol-79");
pub const OL_88: &str = include_str!("../../testdata/os-release/ol-88");
pub const FEDORA_39: &str = include_str!("../../testdata/os-release/fedora-39");
pub const SLES_15_GA: &str = include_str!("../../testdata/os-release/sles-15-ga");
pub const SLES_15_SP3: &str = include_str!("../../testdata/os-release/sles-15-sp3");
pub const SLES_15_SP5: &str = include_str!("../../testdata/os-release/sles-15-sp5");
pub const SLES_SAP_15_SP4: &str = include_str!("../../testdata/os-release/sles-sap-15-sp4");
pub const OPENSUSE_LEAP_155: &str = include_str!("../../testdata/os-release/opensuse-leap-155");
pub const ROCKY_89: &str = include_str!("../../testdata/os-release/rocky-89");
pub const ALMA_93: &str = include_str!("../../testdata/os-release/alma-93");
/// An EL rebuild BTFHub has no entry for: mapped to rhel through ID_LIKE.
pub const EUROLINUX_8: &str = include_str!("../../testdata/os-release/eurolinux-8");
pub const FLATCAR: &str = include_str!("../../testdata/os-release/flatcar");
/// An Ubuntu derivative whose versions do not follow Ubuntu's: kept as its own ID.
pub const LINUX_MINT_21: &str = include_str!("../../testdata/os-release/linux-mint-21");
