//! Kernel identity (issue 2): release, arch, host distro/version in BTFHub naming.
