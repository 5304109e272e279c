//! The kernel contract shared by both diffkeeper binaries.
//!
//! * [`identity`]: who the node's kernel is (release, arch, host distro) in BTFHub's naming.
//! * [`btf`]: validation of BTF files before anyone trusts them.
//! * [`cache`]: the BTF cache layout (`<cache>/<release>.btf`) and its atomic, locked writes.
//! * [`cli`]: flag/env/default precedence and logging set-up used by both command lines.

pub mod btf;
pub mod cache;
pub mod check;
pub mod cli;
pub mod event;
pub mod identity;
pub mod object;

/// Where the running kernel exposes its own BTF.
pub const SYSTEM_BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
