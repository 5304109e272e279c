//! Which BTF the eBPF object is relocated against: the kernel's own (`/sys/kernel/btf/vmlinux`),
//! else `<cache>/<release>.btf` (full or minimised, put there by diffkeeper-init), else none.
//! The sidecar never downloads. Every file is checked with the shared header validation first,
//! because aya itself does not check the BTF magic.
//!
//! The system BTF is never parsed whole (13.5 MiB held, 18.5 MiB at the parse's peak): CO-RE
//! relocation gets the part of it the object reads ([`relocation_btf`], a few KB), and the
//! fentry/`tp_btf` attach gets the few kernel type ids it needs from an id skeleton
//! ([`kernel_ids`]), with the ids found in the same read of the file ([`KnownIds`]).

use std::cell::OnceCell;
use std::fmt;
use std::path::{Path, PathBuf};

use aya::{Btf, Endianness};
use diffkeeper_btf::cache::BtfCache;
use diffkeeper_btf::minimise::{minimise, MinimiseError};
use diffkeeper_btf::skeleton::{skeleton, skeleton_of_ids, type_ids, SkeletonError, TypeKind};
use diffkeeper_btf::validate::{check_file, BtfFileError};
use diffkeeper_btf::{RecordError, SYSTEM_BTF_PATH};
use object::{Object, ObjectSection};

/// Where the BTF came from; fentry needs [`BtfSource::System`] (the running kernel's type ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BtfSource {
    System,
    Cache,
}

impl BtfSource {
    /// The metrics/log label: `"system"` or `"cache"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Cache => "cache",
        }
    }
}

/// A validated BTF: the cached one parsed, the system one only checked (see the module
/// documentation).
pub struct SelectedBtf {
    pub source: BtfSource,
    pub path: PathBuf,
    /// `None` for the system BTF.
    pub parsed: Option<Btf>,
    /// System BTF: the attach targets' ids, once relocation has read the file.
    pub known_ids: KnownIds,
}

/// Kernel type ids found in the system BTF while it was read for relocation
/// ([`relocation_btf`]), so that attaching does not read the 5 MB file again.
#[derive(Debug, Default)]
pub struct KnownIds(OnceCell<Vec<(String, TypeKind, Option<u32>)>>);

impl KnownIds {
    /// Keeps the ids of `names` (`None`: not in the BTF); only the first call counts.
    pub fn remember(&self, names: &[(&str, TypeKind)], ids: &[Option<u32>]) {
        let known = names
            .iter()
            .zip(ids)
            .map(|((name, kind), id)| ((*name).to_owned(), *kind, *id))
            .collect();
        let _ = self.0.set(known);
    }

    /// The id of each of `wanted`, if every one is known and in the BTF.
    pub(super) fn get(&self, wanted: &[(&str, TypeKind)]) -> Option<Vec<u32>> {
        let known = self.0.get()?;
        wanted
            .iter()
            .map(|(name, kind)| {
                let (_, _, id) = known.iter().find(|(n, k, _)| n == name && k == kind)?;
                *id
            })
            .collect()
    }
}

impl SelectedBtf {
    /// The cached BTF to relocate against; `None` for the system BTF (see [`relocation_btf`]).
    pub fn for_relocation(&self) -> Option<&Btf> {
        self.parsed.as_ref()
    }
}

/// The system BTF's ids of the `wanted` types (names of kernel functions or `btf_trace_*`
/// typedefs) as a BTF the fentry/fexit/`tp_btf` loads can look them up in: from `known` when
/// it has them all, else read from the file.
pub fn kernel_ids(wanted: &[(&str, TypeKind)], known: &KnownIds) -> Result<Btf, SystemBtfError> {
    let skeleton = match known.get(wanted) {
        Some(ids) => skeleton_of_ids(wanted, &ids),
        None => {
            let full = std::fs::read(SYSTEM_BTF_PATH).map_err(SystemBtfError::Read)?;
            skeleton(&full, wanted).map_err(SystemBtfError::Skeleton)?
        }
    };
    Btf::parse(&skeleton, Endianness::default()).map_err(SystemBtfError::Parse)
}

/// The part of the system BTF that relocating `object` (an eBPF ELF object) reads: the
/// kernel's types named like the object's own, cut down to the members it declares; and, from
/// the same read, the kernel's ids of the types `also` names (`None`: not there).
pub fn relocation_btf(
    object: &[u8],
    also: &[(&str, TypeKind)],
) -> Result<(Btf, Vec<Option<u32>>), SystemBtfError> {
    let elf = object::File::parse(object).map_err(SystemBtfError::Object)?;
    let section = elf
        .section_by_name(".BTF")
        .ok_or(SystemBtfError::NoObjectBtf)?;
    let local = section.data().map_err(SystemBtfError::Object)?;
    let full = std::fs::read(SYSTEM_BTF_PATH).map_err(SystemBtfError::Read)?;
    let minimised = minimise(&full, local).map_err(SystemBtfError::Minimise)?;
    let ids = type_ids(&full, also).map_err(SystemBtfError::Ids)?;
    drop(full);
    let part = Btf::parse(&minimised, Endianness::default()).map_err(SystemBtfError::Parse)?;
    Ok((part, ids))
}

/// Why the part of the system BTF a step needs could not be had.
#[derive(Debug)]
pub enum SystemBtfError {
    Read(std::io::Error),
    Skeleton(SkeletonError),
    Object(object::Error),
    NoObjectBtf,
    Minimise(MinimiseError),
    Ids(RecordError),
    Parse(aya::BtfError),
}

impl fmt::Display for SystemBtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "reading {SYSTEM_BTF_PATH}: {e}"),
            Self::Skeleton(e) => write!(f, "finding type ids in {SYSTEM_BTF_PATH}: {e}"),
            Self::Object(e) => write!(f, "reading the eBPF object's ELF sections: {e}"),
            Self::NoObjectBtf => f.write_str("the eBPF object has no .BTF section"),
            Self::Minimise(e) => {
                write!(
                    f,
                    "cutting {SYSTEM_BTF_PATH} down to the object's types: {e}"
                )
            }
            Self::Ids(e) => write!(f, "finding type ids in {SYSTEM_BTF_PATH}: {e}"),
            Self::Parse(e) => write!(f, "parsing the part of {SYSTEM_BTF_PATH} kept: {e}"),
        }
    }
}

impl std::error::Error for SystemBtfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read(e) => Some(e),
            Self::Skeleton(e) => Some(e),
            Self::Object(e) => Some(e),
            Self::NoObjectBtf => None,
            Self::Minimise(e) => Some(e),
            Self::Ids(e) => Some(e),
            Self::Parse(e) => Some(e),
        }
    }
}

/// No usable BTF: each candidate and why it was not used.
#[derive(Debug)]
pub struct NoBtf {
    pub tried: Vec<Unusable>,
    pub cache_file: PathBuf,
}

impl fmt::Display for NoBtf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no usable BTF (")?;
        for (i, why) in self.tried.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            why.fmt(f)?;
        }
        write!(
            f,
            ") (provide {}: run diffkeeper-init)",
            self.cache_file.display()
        )
    }
}

/// Why one BTF candidate was not used.
#[derive(Debug)]
pub enum Unusable {
    Missing(PathBuf),
    Invalid(BtfFileError),
    Unparsable {
        path: PathBuf,
        source: aya::BtfError,
    },
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(path) => write!(f, "{} does not exist", path.display()),
            Self::Invalid(e) => e.fmt(f),
            Self::Unparsable { path, source } => {
                write!(f, "cannot parse BTF {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for NoBtf {}

/// Picks system BTF, then the cache file for `release`; logs `[eBPF] Loaded BTF spec from <path>`.
pub fn select(cache_dir: &Path, release: &str) -> Result<SelectedBtf, NoBtf> {
    let cache_file = BtfCache::new(cache_dir)
        .btf_path(release)
        .unwrap_or_else(|_| cache_dir.join(format!("{release}.btf")));
    let candidates = [
        (BtfSource::System, PathBuf::from(SYSTEM_BTF_PATH)),
        (BtfSource::Cache, cache_file.clone()),
    ];
    let mut tried = Vec::new();
    for (source, path) in candidates {
        match load(&path, source) {
            Ok(parsed) => {
                log::info!("[eBPF] Loaded BTF spec from {}", path.display());
                return Ok(SelectedBtf {
                    source,
                    path,
                    parsed,
                    known_ids: KnownIds::default(),
                });
            }
            Err(why) => {
                log::debug!("[eBPF] {} BTF not used: {why}", source.as_str());
                tried.push(why);
            }
        }
    }
    Err(NoBtf { tried, cache_file })
}

/// Checks the file; parses it unless it is the system BTF (never parsed whole).
fn load(path: &Path, source: BtfSource) -> Result<Option<Btf>, Unusable> {
    if !path.exists() {
        return Err(Unusable::Missing(path.to_owned()));
    }
    check_file(path).map_err(Unusable::Invalid)?;
    if source == BtfSource::System {
        return Ok(None);
    }
    Btf::parse_file(path, Endianness::default())
        .map(Some)
        .map_err(|source| Unusable::Unparsable {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_everything_names_the_cache_file() {
        let dir = std::env::temp_dir().join(format!("dk-btf-select-{}", std::process::id()));
        let err = load(&dir.join("x.btf"), BtfSource::Cache).unwrap_err();
        assert!(matches!(err, Unusable::Missing(_)), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
        let no = NoBtf {
            tried: vec![Unusable::Missing("a".into()), Unusable::Missing("b".into())],
            cache_file: dir.join("6.1.0.btf"),
        };
        let text = no.to_string();
        assert!(
            text.contains("6.1.0.btf") && text.contains("run diffkeeper-init"),
            "{text}"
        );
    }

    #[test]
    fn rejects_a_file_that_is_not_btf() {
        let path = std::env::temp_dir().join(format!("dk-not-btf-{}.btf", std::process::id()));
        std::fs::write(&path, vec![0x7f; 64]).unwrap();
        let err = load(&path, BtfSource::Cache).unwrap_err().to_string();
        std::fs::remove_file(&path).ok();
        assert!(err.contains("bad magic"), "{err}");
    }

    /// Relocating against the part of the system BTF kept for an object gives every program
    /// of both objects exactly the instructions the whole system BTF gives.
    #[test]
    fn the_kept_part_relocates_as_the_whole_system_btf_does() {
        let Ok(full) = Btf::from_sys_fs() else {
            eprintln!("no system BTF: skipped");
            return;
        };
        for object in diffkeeper_ebpf::object::ObjectKind::ALL {
            let (part, _) = relocation_btf(object.bytes(), &[]).unwrap();
            let relocated = |target: &Btf| {
                let mut obj = aya_obj::Object::parse(object.bytes()).unwrap();
                obj.relocate_btf(target)
                    .unwrap_or_else(|e| panic!("{object}: {e}"));
                obj.functions
                    .values()
                    .map(|f| (f.name.clone(), format!("{:?}", f.instructions)))
                    .collect::<Vec<_>>()
            };
            let (with_part, with_full) = (relocated(&part), relocated(&full));
            let unrelocated = relocated(&Btf::new());
            assert_eq!(with_part.len(), with_full.len());
            assert!(
                with_full != unrelocated,
                "{object}: relocation changed nothing"
            );
            for ((name, part), (_, full)) in with_part.iter().zip(&with_full) {
                assert!(part == full, "{object} {name}: relocated differently");
            }
            let part_bytes = part.to_bytes().len();
            let full_bytes = std::fs::metadata(SYSTEM_BTF_PATH).unwrap().len() as usize;
            eprintln!("{object}: {part_bytes} of {full_bytes} bytes kept");
            assert!(
                part_bytes * 100 < full_bytes,
                "{object}: {part_bytes} bytes kept"
            );
        }
    }

    /// The skeleton's ids are the ones a parse of the whole system BTF gives.
    #[test]
    fn kernel_ids_match_the_full_system_btf() {
        let Ok(full) = Btf::from_sys_fs() else {
            eprintln!("no system BTF: skipped");
            return;
        };
        let wanted = [
            ("btf_trace_sys_exit", TypeKind::Typedef),
            ("vfs_write", TypeKind::Func),
            ("security_inode_rename", TypeKind::Func),
        ];
        let known = KnownIds::default();
        let ids = kernel_ids(&wanted, &known).unwrap();
        // Again from ids kept from an earlier read, as after relocation.
        let system = std::fs::read(SYSTEM_BTF_PATH).unwrap();
        known.remember(&wanted, &type_ids(&system, &wanted).unwrap());
        let remembered = kernel_ids(&wanted, &known).unwrap();
        for (name, kind) in wanted {
            let kind = match kind {
                TypeKind::Typedef => aya_obj::btf::BtfKind::Typedef,
                TypeKind::Func => aya_obj::btf::BtfKind::Func,
                TypeKind::Struct => aya_obj::btf::BtfKind::Struct,
            };
            let id = full.id_by_type_name_kind(name, kind).unwrap();
            assert_eq!(ids.id_by_type_name_kind(name, kind).unwrap(), id, "{name}");
            assert_eq!(
                remembered.id_by_type_name_kind(name, kind).unwrap(),
                id,
                "{name}"
            );
        }
    }
}
