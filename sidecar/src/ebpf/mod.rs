//! The eBPF backend: select BTF, load the CO-RE object, attach one family (fentry, kprobe or
//! raw syscall tracepoint), prove it with the canary, and stream changes from the ring buffer.
//!
//! * [`roots`]: watched roots as (device, inode) map entries.
//! * [`load`]: loading with BTF, attaching each family, failure causes and hints.
//! * [`reader`]: the ring buffer reader thread.
//! * [`canary`]: the self-check that catches a BTF that does not match the kernel.
//! * [`clock`]: kernel event time (boot clock) to wall-clock time.

mod canary;
mod clock;
mod features;
mod load;
mod reader;
mod roots;
mod source;

pub use features::ObjectChoice;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use aya::Ebpf;
use diffkeeper_ebpf::object::ObjectKind;
use features::KernelFeatures;

use crate::btf_select::{self, BtfSource};
use crate::change::{Backend, ChangeSink};
use load::Failure;
use reader::Reader;
use roots::RootTable;

/// `--attach`: which family to try first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Auto,
    Fentry,
    Kprobe,
    Tracepoint,
}

impl FromStr for AttachMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "fentry" => Ok(Self::Fentry),
            "kprobe" => Ok(Self::Kprobe),
            "tracepoint" => Ok(Self::Tracepoint),
            other => Err(format!(
                "unknown attach mode {other:?} (use auto, fentry, kprobe or tracepoint)"
            )),
        }
    }
}

pub struct EbpfConfig {
    pub attach: AttachMode,
    /// `--ebpf-object`: modern, compat, or by the kernel's features.
    pub object: ObjectChoice,
    /// `--btf-cache-dir`
    pub cache_dir: PathBuf,
    /// `uname -r`: names the cache file.
    pub kernel_release: String,
    /// Canonical watched state directories.
    pub roots: Vec<PathBuf>,
    /// Ring buffer size: a power of two, at least a page.
    pub ringbuf_bytes: u32,
    /// Private directory for the canary write; watched too, its events never leave this module.
    pub canary_dir: PathBuf,
}

/// eBPF cannot be used; each reason is "mode: cause (hint)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbpfUnavailable {
    pub reasons: Vec<String>,
}

impl fmt::Display for EbpfUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reasons.join("; "))
    }
}

impl std::error::Error for EbpfUnavailable {}

/// Attached programs and their reader; [`EbpfSession::stop`] (or drop) unloads everything.
pub struct EbpfSession {
    backend: Backend,
    object: ObjectKind,
    btf_source: BtfSource,
    btf_path: PathBuf,
    reader: Reader,
    ebpf: Ebpf,
    /// [`RootTable::pins`], declared after `ebpf`: they close only once the programs are gone.
    _pins: Vec<File>,
}

impl EbpfSession {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Which compiled object is loaded.
    pub fn object(&self) -> ObjectKind {
        self.object
    }

    /// `"system"` or `"cache"`.
    pub fn btf_source(&self) -> &'static str {
        self.btf_source.as_str()
    }

    pub fn btf_path(&self) -> &Path {
        &self.btf_path
    }

    /// Events the kernel dropped because the ring buffer was full (refreshed every 250 ms).
    pub fn lost_counter(&self) -> Arc<AtomicU64> {
        self.reader.lost.clone()
    }

    /// Kernel ids of the loaded programs (diagnostics; tests check they are gone after stop).
    pub fn program_ids(&self) -> Vec<u32> {
        self.ebpf
            .programs()
            .filter_map(|(_, p)| p.info().ok().map(|info| info.id()))
            .collect()
    }

    /// Detaches and unloads every program, then drains and joins the reader. Dropping the
    /// session does the same.
    pub fn stop(self) {
        let Self { reader, ebpf, .. } = self;
        drop(ebpf);
        reader.stop();
    }
}

/// Selects BTF, then tries the modes `cfg.attach` allows in order until one attaches and
/// passes the canary. Each failure is logged once, with its cause and a hint.
pub fn start(cfg: &EbpfConfig, sink: ChangeSink) -> Result<EbpfSession, EbpfUnavailable> {
    let unavailable = |reason: String| {
        log::warn!("[eBPF] {reason}");
        EbpfUnavailable {
            reasons: vec![reason],
        }
    };
    let btf = btf_select::select(&cfg.cache_dir, &cfg.kernel_release)
        .map_err(|e| unavailable(format!("btf: {e}")))?;
    let mut paths = cfg.roots.clone();
    paths.push(cfg.canary_dir.clone());
    let canary_id = (paths.len() - 1) as u32;
    let roots = RootTable::build(paths).map_err(|e| unavailable(format!("roots: {e}")))?;

    let features = KernelFeatures::probe();
    let (object, why) = features.pick(cfg.object);
    log::info!("[eBPF] object {object}: {why} ({})", cfg.kernel_release);
    if let Some(memlock) = features::raise_memlock(&features) {
        log::warn!("[eBPF] {memlock}");
    }

    let mut reasons = Vec::new();
    let mut spare = None;
    for backend in plan(cfg.attach, btf.source) {
        let attempt = if backend == Backend::Fentry && btf.source != BtfSource::System {
            Err(Failure::new(
                format!(
                    "needs the running kernel's own BTF type ids, but the BTF is the cached {}",
                    btf.path.display()
                ),
                "fentry works only with /sys/kernel/btf/vmlinux; kprobe and tracepoint work with cached BTF",
            ))
        } else {
            try_mode(
                object, backend, &btf, &roots, canary_id, cfg, &sink, &mut spare,
            )
        };
        match attempt {
            Ok((reader, ebpf)) => {
                return Ok(EbpfSession {
                    backend,
                    object,
                    btf_source: btf.source,
                    btf_path: btf.path,
                    reader,
                    ebpf,
                    _pins: roots.pins,
                })
            }
            Err(failure) => {
                let reason = format!("{}: {failure}", backend.as_str());
                log::warn!("[eBPF] {reason}");
                reasons.push(reason);
            }
        }
    }
    Err(EbpfUnavailable { reasons })
}

/// Modes to try, best first. `auto` starts with fentry only when the BTF is the system one.
fn plan(attach: AttachMode, source: BtfSource) -> Vec<Backend> {
    let all = [Backend::Fentry, Backend::Kprobe, Backend::Tracepoint];
    let first = match attach {
        AttachMode::Auto if source == BtfSource::System => 0,
        AttachMode::Auto => 1,
        AttachMode::Fentry => 0,
        AttachMode::Kprobe => 1,
        AttachMode::Tracepoint => 2,
    };
    all[first..].to_vec()
}

#[allow(clippy::too_many_arguments)]
fn try_mode(
    object: ObjectKind,
    backend: Backend,
    btf: &btf_select::SelectedBtf,
    roots: &RootTable,
    canary_id: u32,
    cfg: &EbpfConfig,
    sink: &ChangeSink,
    spare: &mut Option<Ebpf>,
) -> Result<(Reader, Ebpf), Failure> {
    // `spare`: the object of a mode that failed to attach, maps intact and programs unloaded.
    let mut ebpf = match spare.take() {
        Some(ebpf) => ebpf,
        None => load::load(object, btf, roots, cfg.ringbuf_bytes)?,
    };
    if let Err(failure) = load::attach(&mut ebpf, object, backend, btf) {
        load::unload_programs(&mut ebpf);
        *spare = Some(ebpf);
        return Err(failure);
    }
    roots.teach_kernel();
    let reader = Reader::spawn(
        &mut ebpf,
        object,
        backend,
        roots.paths.clone(),
        canary_id,
        sink.clone(),
        cfg.ringbuf_bytes,
    )?;
    if let Err(e) = canary::check(&cfg.canary_dir, canary_id, &reader.canary) {
        drop(ebpf);
        reader.stop();
        log::warn!(
            "[eBPF] the BTF {} does not match this kernel: {e}",
            btf.path.display()
        );
        return Err(Failure::new(
            format!("canary check failed: {e}"),
            "the BTF does not match this kernel: provide the kernel's own BTF as <cache>/<release>.btf",
        ));
    }
    log::debug!(
        "[eBPF] {} attached and the canary came back",
        backend.as_str()
    );
    Ok((reader, ebpf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_contract() {
        use Backend::*;
        let cases: [(AttachMode, BtfSource, &[Backend]); 5] = [
            (
                AttachMode::Auto,
                BtfSource::System,
                &[Fentry, Kprobe, Tracepoint],
            ),
            (AttachMode::Auto, BtfSource::Cache, &[Kprobe, Tracepoint]),
            (
                AttachMode::Fentry,
                BtfSource::Cache,
                &[Fentry, Kprobe, Tracepoint],
            ),
            (AttachMode::Kprobe, BtfSource::System, &[Kprobe, Tracepoint]),
            (AttachMode::Tracepoint, BtfSource::System, &[Tracepoint]),
        ];
        for (attach, source, want) in cases {
            assert_eq!(plan(attach, source), want, "{attach:?} with {source:?} BTF");
        }
    }

    #[test]
    fn attach_modes_parse() {
        assert_eq!("kprobe".parse::<AttachMode>(), Ok(AttachMode::Kprobe));
        assert!("kprobes"
            .parse::<AttachMode>()
            .unwrap_err()
            .contains("kprobes"));
    }
}
