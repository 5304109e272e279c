//! One eBPF session: the canary directory, the selected BTF, the root table, the attached
//! family and its reader, held together until [`EbpfSession::stop`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use aya::Ebpf;
use diffkeeper_ebpf::object::ObjectKind;

use super::btf_select::{self, BtfSource, SelectedBtf};
use super::canary::{self, CanaryDir};
use super::error::{Cause, EbpfUnavailable, Failure, FamilyFailure, Hint};
use super::features::{self, KernelFeatures};
use super::load;
use super::reader::Reader;
use super::roots::RootTable;
use super::EbpfConfig;
use crate::change::{Backend, ChangeSink, Family};

/// Attached programs and their reader; [`EbpfSession::stop`] (or drop) unloads everything.
pub struct EbpfSession {
    family: Family,
    object: ObjectKind,
    btf_source: BtfSource,
    btf_path: PathBuf,
    reader: Reader,
    ebpf: Ebpf,
    /// [`RootTable::pins`], declared after `ebpf`: they close only once the programs are gone.
    _pins: Vec<File>,
    /// Removed last, once nothing can write events for it any more.
    _canary: CanaryDir,
}

impl EbpfSession {
    pub fn backend(&self) -> Backend {
        Backend::Ebpf(self.family)
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

    /// Changes the kernel side did not report on purpose (refreshed every 250 ms).
    pub fn unreported(&self) -> Arc<super::reader::Unreported> {
        self.reader.unreported.clone()
    }

    /// Kernel ids of the loaded programs (diagnostics; tests check they are gone after stop).
    pub fn program_ids(&self) -> Vec<u32> {
        self.ebpf
            .programs()
            .filter_map(|(_, p)| p.info().ok().map(|info| info.id()))
            .collect()
    }

    /// Detaches and unloads every program, then drains and joins the reader, then removes the
    /// canary directory. Dropping the session does the same.
    pub fn stop(self) {
        let Self {
            reader,
            ebpf,
            _pins,
            _canary,
            ..
        } = self;
        drop(ebpf);
        reader.stop();
        drop(_pins);
        drop(_canary);
    }
}

/// Makes the canary directory, selects BTF, then tries the families `cfg.attach` allows in
/// order until one attaches and passes the canary. Each failure is logged once, with its
/// cause and a hint.
pub fn start(cfg: &EbpfConfig, sink: ChangeSink) -> Result<EbpfSession, EbpfUnavailable> {
    let unavailable = |reason: EbpfUnavailable| {
        log::warn!("[eBPF] {reason}");
        reason
    };
    // Not logged here: the caller says why it falls back.
    let canary_dir = CanaryDir::create(&cfg.btf_cache_dir).map_err(EbpfUnavailable::CanaryDir)?;
    let btf = btf_select::select(&cfg.btf_cache_dir, &cfg.kernel_release)
        .map_err(|e| unavailable(EbpfUnavailable::Btf(e)))?;
    let mut paths = cfg.roots.clone();
    paths.push(canary_dir.path().to_owned());
    let canary_id = (paths.len() - 1) as u32;
    let roots = RootTable::build(paths).map_err(|e| unavailable(EbpfUnavailable::Roots(e)))?;

    let features = KernelFeatures::probe();
    let (object, why) = features.pick(cfg.object);
    log::info!("[eBPF] object {object}: {why} ({})", cfg.kernel_release);
    if let Some(memlock) = features::raise_memlock(&features) {
        log::warn!("[eBPF] {memlock}");
    }

    let mut failures = Vec::new();
    let mut spare = None;
    for family in cfg.attach.plan(btf.source) {
        let attempt = if family == Family::Fentry && btf.source != BtfSource::System {
            Err(Failure::new(
                "",
                Cause::CachedBtf {
                    path: btf.path.clone(),
                },
                Hint::FentryNeedsSystemBtf,
            ))
        } else {
            let canary = (canary_dir.path(), canary_id);
            try_family(object, family, &btf, &roots, canary, cfg, &sink, &mut spare)
        };
        match attempt {
            Ok((reader, ebpf)) => {
                return Ok(EbpfSession {
                    family,
                    object,
                    btf_source: btf.source,
                    btf_path: btf.path,
                    reader,
                    ebpf,
                    _pins: roots.pins,
                    _canary: canary_dir,
                })
            }
            Err(failure) => {
                let failure = FamilyFailure { family, failure };
                log::warn!("[eBPF] {failure}");
                failures.push(failure);
            }
        }
    }
    Err(EbpfUnavailable::Families(failures))
}

#[allow(clippy::too_many_arguments)]
fn try_family(
    object: ObjectKind,
    family: Family,
    btf: &SelectedBtf,
    roots: &RootTable,
    (canary_dir, canary_id): (&Path, u32),
    cfg: &EbpfConfig,
    sink: &ChangeSink,
    spare: &mut Option<Ebpf>,
) -> Result<(Reader, Ebpf), Failure> {
    // `spare`: the object of a family that failed to attach, maps intact and programs unloaded.
    let mut ebpf = match spare.take() {
        Some(ebpf) => ebpf,
        None => load::load(object, btf, roots, cfg.ringbuf_bytes)?,
    };
    if let Err(failure) = load::attach(&mut ebpf, object, family, btf) {
        load::unload_programs(&mut ebpf);
        *spare = Some(ebpf);
        return Err(failure);
    }
    roots.teach_kernel();
    let reader = Reader::spawn(
        &mut ebpf,
        object,
        family,
        roots.paths.clone(),
        canary_id,
        sink.clone(),
        cfg.ringbuf_bytes,
    )?;
    if let Err(e) = canary::check(canary_dir, canary_id, &reader.canary) {
        drop(ebpf);
        reader.stop();
        log::warn!(
            "[eBPF] the BTF {} does not match this kernel: {e}",
            btf.path.display()
        );
        return Err(Failure::new("", Cause::Canary(e), Hint::CanaryMismatch));
    }
    log::debug!(
        "[eBPF] {} attached and the canary came back",
        family.as_str()
    );
    Ok((reader, ebpf))
}
