//! Kernel BTF files as both diffkeeper binaries see them.
//!
//! * [`validate`]: the header checks a BTF file passes before anyone trusts it.
//! * [`cache`]: the cache layout (`<cache>/<release>.btf`) and its atomic, locked writes.
//! * [`bundle`]: the layout of a bundle of many kernels' minimised BTFs (`just btfgen`).
//! * [`skeleton`]: the few kernel type ids fentry and `tp_btf` attach by, without the rest.
//! * [`minimise`]: the part of the kernel's BTF one object's CO-RE relocation reads.
//!
//! diffkeeper-init writes the cache, diffkeeper-sidecar reads it; neither needs the other's
//! dependencies (HTTP for init, aya and the eBPF object for the sidecar), hence this crate.

pub mod bundle;
pub mod cache;
pub mod minimise;
mod records;
pub use records::RecordError;
pub mod skeleton;
pub mod validate;

/// Where the running kernel exposes its own BTF.
pub const SYSTEM_BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// The default `--btf-cache-dir` of both binaries: init writes there, the sidecar reads there.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/diffkeeper/btf";
