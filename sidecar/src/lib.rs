//! diffkeeper-sidecar: streams file changes under state directories as JSON lines, from a
//! CO-RE eBPF object loaded with system or cached BTF, or from inotify.
//!
//! The binary is a thin wrapper around [`app::main`]; the modules are public so integration
//! tests can reach them.

pub mod app;
pub mod capture;
pub mod change;
pub mod command;
pub mod config;
pub mod coverage;
pub mod delivery;
pub mod ebpf;
pub mod fatal;
pub mod inotify;
pub mod journal;
pub mod metrics;
pub mod mounts;
pub mod short_copy;
pub mod signals;
