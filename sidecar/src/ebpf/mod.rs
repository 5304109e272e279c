//! The eBPF backend: select BTF, load the CO-RE object, attach one family (fentry, kprobe or
//! raw syscall tracepoint), prove it with the canary, and stream changes from the ring buffer.
//!
//! The rest of the sidecar sees only this file: [`EbpfConfig`] in, [`start`] →
//! [`EbpfSession`] or [`EbpfUnavailable`] (why, as data) out.
//!
//! * [`mode`]: `--attach` and the order in which families are tried.
//! * [`session`]: one attempt from canary directory to attached reader, and its teardown.
//! * [`btf_select`]: system BTF, else the cached `<release>.btf`.
//! * [`roots`]: watched roots as (device, inode) map entries.
//! * [`load`]: loading with BTF, attaching each family, failure causes and hints.
//! * [`tail_calls`]: the compat object's sys_enter programs joined by tail calls.
//! * [`kretprobe`]: kprobe mode's kretprobes with an explicit maxactive, made through
//!   [`tracefs`], and the kernel's count of their misses.
//! * [`features`]: what this kernel's BPF can do (probed), and so which object loads.
//! * [`source`]: where events arrive: the ring buffer (modern) or per-CPU perf buffers (compat).
//! * [`reader`]: the event reader thread.
//! * [`moved_in`]: a directory moved in from outside the roots, and what it holds.
//! * [`admission`]: the reader holds a family's changes back until its canary passed.
//! * [`names`]: placing tracepoint mode's new names (link calls) below their directory.
//! * [`canary`]: the private canary directory and the self-check that catches a BTF that does
//!   not match the kernel.
//! * [`clock`]: kernel event time (boot or monotonic clock) to wall-clock time.
//! * [`error`]: every way this can fail, with step, cause and hint as data.

mod absolute;
mod admission;
mod btf_select;
mod canary;
mod clock;
mod direct;
mod error;
mod explain;
mod features;
mod kretprobe;
mod learned;
mod load;
mod mode;
mod moved_in;
mod names;
mod reader;
mod reorder;
mod roots;
mod session;
mod source;
mod tail_calls;
mod tracefs;

use std::path::PathBuf;

pub use btf_select::{BtfSource, NoBtf, Unusable};
pub use error::{
    CanaryDirError, CanaryError, Cause, EbpfUnavailable, Failure, FamilyFailure, Hint, RootsError,
};
pub use features::{ObjectChoice, UnknownObject};
pub use kretprobe::{KretprobeStats, MAXACTIVE_MAX as KRETPROBE_MAXACTIVE_MAX};
pub use mode::{AttachMode, UnknownAttachMode};
pub use reader::Unreported;
pub use session::{start, EbpfSession, RootIdentity};

/// What [`start`] needs.
pub struct EbpfConfig {
    pub attach: AttachMode,
    /// `--ebpf-object`: modern, compat, or by the kernel's features.
    pub object: ObjectChoice,
    /// `--btf-cache-dir`: where `<release>.btf` is looked for and the canary directory made.
    pub btf_cache_dir: PathBuf,
    /// `uname -r`: names the cache file.
    pub kernel_release: String,
    /// Canonical watched state directories.
    pub roots: Vec<PathBuf>,
    /// Ring buffer size: a power of two, at least a page.
    pub ringbuf_bytes: u32,
    /// kprobe mode: returns in flight per kretprobe, 1..=[`KRETPROBE_MAXACTIVE_MAX`].
    pub kretprobe_maxactive: u32,
    /// kprobe mode: `--tracefs-dir`, the tracefs the kretprobes are made in; `None`: looked
    /// for (and mounted if need be).
    pub tracefs_dir: Option<PathBuf>,
}
