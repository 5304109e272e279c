//! One eBPF session: the canary directory, the selected BTF, the root table, the attached
//! family and its reader, held together until [`EbpfSession::stop`].

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use aya::Ebpf;
use diffkeeper_ebpf::object::ObjectKind;

use super::btf_select::{self, BtfSource, SelectedBtf};
use super::canary::{self, CanaryDir};
use super::error::{Cause, EbpfUnavailable, Failure, FamilyFailure, Hint};
use super::features::{self, KernelFeatures};
use super::kretprobe::{KretprobeStats, Kretprobes};
use super::learned;
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
    /// kprobe mode's kretprobes (tracefs events), detached when dropped.
    kretprobes: Option<Kretprobes>,
    /// [`RootTable::pins`], declared after `ebpf`: they close only once the programs are gone.
    _pins: Vec<File>,
    /// Removed last, once nothing can write events for it any more.
    _canary: CanaryDir,
    /// Mount points below the watched directories, watched as roots of their own.
    covered_mounts: Vec<PathBuf>,
    /// The watched directories as they were when the programs attached.
    identities: Vec<RootIdentity>,
}

/// A watched directory and the (stat) device and inode it had when eBPF attached: a
/// directory at that path with another identity is a replacement eBPF does not see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootIdentity {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

/// Mount points below the watched directories (the programs' parent walk stops at a file
/// system's top, so each is watched as a root of its own, with its own path); logged.
fn nested_mounts(roots: &[PathBuf]) -> Vec<PathBuf> {
    let table = match crate::mounts::read() {
        Ok(table) => table,
        Err(e) => {
            log::warn!(
                "[eBPF] cannot read {}: {e}; file systems mounted below the watched \
                 directories are not covered",
                crate::mounts::MOUNTINFO
            );
            return Vec::new();
        }
    };
    let mut nested: Vec<PathBuf> = Vec::new();
    for root in roots {
        for m in crate::mounts::below(&table, root) {
            if !nested.contains(&m.mount_point) && !roots.contains(&m.mount_point) {
                log::info!(
                    "[eBPF] {} ({}) is mounted below watched directory {}: watched as a root \
                     of its own",
                    m.mount_point.display(),
                    m.fs_type,
                    root.display()
                );
                nested.push(m.mount_point.clone());
            }
        }
    }
    nested
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

    /// Mount points below the watched directories that are watched as roots of their own.
    pub fn covered_mounts(&self) -> &[PathBuf] {
        &self.covered_mounts
    }

    /// The watched directories' identities when the programs attached.
    pub fn root_identities(&self) -> &[RootIdentity] {
        &self.identities
    }

    /// Changes the kernel side did not report on purpose (refreshed every 250 ms).
    pub fn unreported(&self) -> Arc<super::reader::Unreported> {
        self.reader.unreported.clone()
    }

    /// kprobe mode: the kretprobes' maxactive and the returns the kernel missed.
    pub fn kretprobe_stats(&self) -> Option<Arc<KretprobeStats>> {
        self.kretprobes.as_ref().map(Kretprobes::stats)
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
            kretprobes,
            _pins,
            _canary,
            ..
        } = self;
        unload(ebpf);
        drop(kretprobes);
        reader.stop();
        drop(_pins);
        drop(_canary);
    }
}

/// Detaches and unloads the programs, then closes the maps: in that order. The kernel empties a
/// tail-call table (PROG_ARRAY) as soon as its last descriptor in user space closes, and the
/// compat object's `dk_sys_enter` counts every call it cannot hand on as lost: closed first, the
/// maps would leave it running for a moment with an empty table, counting writes of every
/// process on the host into `dk_lost`, which the reader reads once more when it stops.
fn unload(mut ebpf: Ebpf) {
    load::unload_programs(&mut ebpf);
    drop(ebpf);
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
    let nested = nested_mounts(&cfg.roots);
    let mut paths = cfg.roots.clone();
    paths.extend(nested.iter().cloned());
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
            Ok(Attached {
                reader,
                ebpf,
                kretprobes,
            }) => {
                let identities = cfg
                    .roots
                    .iter()
                    .zip(&roots.pins)
                    .filter_map(|(path, pin)| {
                        let meta = pin.metadata().ok()?;
                        Some(RootIdentity {
                            path: path.clone(),
                            dev: meta.dev(),
                            ino: meta.ino(),
                        })
                    })
                    .collect();
                return Ok(EbpfSession {
                    covered_mounts: nested,
                    identities,
                    family,
                    object,
                    btf_source: btf.source,
                    btf_path: btf.path,
                    reader,
                    ebpf,
                    kretprobes,
                    _pins: roots.pins,
                    _canary: canary_dir,
                });
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

/// One family attached, its reader running and its canary back.
struct Attached {
    reader: Reader,
    ebpf: Ebpf,
    kretprobes: Option<Kretprobes>,
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
) -> Result<Attached, Failure> {
    // `spare`: the object of a family that failed to attach, maps intact and programs unloaded.
    let mut ebpf = match spare.take() {
        Some(ebpf) => ebpf,
        None => load::load(object, btf, roots, cfg.ringbuf_bytes)?,
    };
    let kretprobes = match load::attach(
        &mut ebpf,
        object,
        family,
        btf,
        cfg.kretprobe_maxactive,
        cfg.tracefs_dir.as_deref(),
    ) {
        Ok(kretprobes) => kretprobes,
        Err(failure) => {
            load::unload_programs(&mut ebpf);
            *spare = Some(ebpf);
            return Err(failure);
        }
    };
    roots.teach_kernel();
    if verify_roots_matched(&ebpf, object, roots).is_err() {
        // Once more before giving the family up: a root the kernel filter really does not match
        // stays unmatched, and a start that missed its lookup once (seen once on a loaded arm64
        // guest, not reproduced) does not cost the node its eBPF mode.
        log::info!(
            "[eBPF] not every watched directory was matched by the kernel filter: asking again"
        );
        roots.teach_kernel();
        verify_roots_matched(&ebpf, object, roots)?;
    }
    let reader = Reader::spawn(
        &mut ebpf,
        object,
        family,
        roots.paths.clone(),
        canary_id,
        sink.clone(),
        cfg.ringbuf_bytes,
        kretprobes.as_ref().and_then(Kretprobes::miss_watch),
    )?;
    if let Err(e) = canary::check(canary_dir, canary_id, family, &reader.canary) {
        unload(ebpf);
        drop(kretprobes);
        reader.stop();
        log::warn!(
            "[eBPF] the BTF {} does not match this kernel: {e}",
            btf.path.display()
        );
        return Err(Failure::new("", Cause::Canary(e), Hint::CanaryMismatch));
    }
    reader.canary_back();
    // Only now may the family's changes reach the journal (held back until here).
    reader.admit();
    log::debug!(
        "[eBPF] {} attached and the canary came back",
        family.as_str()
    );
    Ok(Attached {
        reader,
        ebpf,
        kretprobes,
    })
}

/// The fstatfs() on each root ([`RootTable::teach_kernel`]) made the programs look each one up
/// by (device, inode) and learn its dentry (the only way they learn one: a walk could take a
/// btrfs subvolume's look-alike top for it); every root must have been matched, else its
/// changes would never be reported (a device or inode the kernel sees differently).
fn verify_roots_matched(ebpf: &Ebpf, object: ObjectKind, roots: &RootTable) -> Result<(), Failure> {
    let mask = learned::mask(ebpf, object).map_err(|e| {
        Failure::new(
            "reading dk_learned",
            Cause::Aya {
                chain: e.to_string(),
            },
            Hint::None,
        )
    })?;
    let unmatched: Vec<PathBuf> = learned::unmatched(mask, roots.paths.len())
        .into_iter()
        .map(|id| roots.paths[id].clone())
        .collect();
    if unmatched.is_empty() {
        log::debug!(
            "[eBPF] all {} watched directories matched by the kernel filter",
            roots.paths.len()
        );
        return Ok(());
    }
    Err(Failure::new(
        "",
        Cause::RootsNotMatched { paths: unmatched },
        Hint::None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::{AttachMode, ObjectChoice};

    fn system_btf() -> SelectedBtf {
        SelectedBtf {
            source: BtfSource::System,
            path: PathBuf::from(diffkeeper_btf::SYSTEM_BTF_PATH),
            // The loader parses the system BTF itself.
            parsed: None,
            known_ids: Default::default(),
        }
    }

    /// Real eBPF (tracepoint mode, root): a root whose (device, inode) the kernel does not see
    /// as the table says (here: the inode number is off by one, as the device was for btrfs
    /// when it came from stat) fails the start-up check, naming the root; both objects.
    #[test]
    fn a_root_the_kernel_filter_does_not_match_fails_the_family() {
        let base = std::env::temp_dir().join(format!("dk-unmatched-{}", std::process::id()));
        let (state, canary) = (base.join("state"), base.join("canary"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&canary).unwrap();
        let cfg = EbpfConfig {
            attach: AttachMode::Tracepoint,
            object: ObjectChoice::Auto,
            btf_cache_dir: base.clone(),
            kernel_release: String::new(),
            roots: vec![state.clone()],
            ringbuf_bytes: 1 << 16,
            kretprobe_maxactive: crate::ebpf::KRETPROBE_MAXACTIVE_MAX,
            tracefs_dir: None,
        };
        let (sink, _rx) = crate::change::queue(16);
        for object in ObjectKind::ALL {
            for tamper in [false, true] {
                let mut roots = RootTable::build(vec![state.clone(), canary.clone()]).unwrap();
                if tamper {
                    let (key, _) = &mut roots.keys[0];
                    let dev = roots.devs.get_mut(&key.dev).unwrap();
                    let slot = dev.ino.iter().position(|&i| i == key.ino).unwrap();
                    key.ino += 1_000_000;
                    dev.ino[slot] = key.ino;
                }
                let result = try_family(
                    object,
                    Family::Tracepoint,
                    &system_btf(),
                    &roots,
                    (&canary, 1),
                    &cfg,
                    &sink,
                    &mut None,
                );
                match (tamper, result) {
                    (false, Ok(Attached { reader, ebpf, .. })) => {
                        drop(ebpf);
                        reader.stop();
                    }
                    (false, Err(e)) => panic!("{object}: {e}"),
                    (true, Ok(_)) => panic!("{object}: an unmatched root passed"),
                    (true, Err(e)) => {
                        assert!(
                            matches!(&e.cause, Cause::RootsNotMatched { paths } if paths == std::slice::from_ref(&state)),
                            "{object}: {e}"
                        );
                        assert!(e.to_string().contains(&format!(
                            "the kernel filter does not match watched directory {}",
                            state.display()
                        )));
                    }
                }
            }
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
