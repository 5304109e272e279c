//! btfgen: one bundle of minimised BTFs for every kernel of a BTFHub-shaped archive.
//!
//! For each `<distro>/<version>/<arch>/<release>.btf.tar.xz`: extract the one `*.btf` (capped,
//! links and odd entries refused), check it is a BTF, run `bpftool gen min_core_btf` against every
//! eBPF object that serves `<arch>`, check the result, xz it. Identical minimised BTFs share one
//! blob. Kernels are processed in parallel but written in key order with fixed compression
//! settings and no timestamps, so the same inputs give the same bytes. A broken kernel is
//! reported and skipped; the run fails only when no kernel at all could be used.

pub mod errors;
pub mod inputs;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use diffkeeper_btf::bundle::{self, PlannedEntry};
use diffkeeper_btf::validate;
use sha2::{Digest, Sha256};

pub use errors::{BtfgenError, ExtractError, SkipReason};
pub use inputs::{Kernel, Objects, Skipped};

/// Cap on an extracted kernel BTF (a full one is ~5 MiB).
pub const MAX_KERNEL_BTF: u64 = 512 << 20;
/// xz preset 9 with the "extreme" flag; CRC32 as the stream check (the index has sha256).
const XZ_PRESET: u32 = 9 | 0x8000_0000;

pub struct Options {
    pub archive: PathBuf,
    pub objects: PathBuf,
    pub out: PathBuf,
    pub bpftool: String,
    pub jobs: usize,
}

/// One kernel that made it into the bundle.
#[derive(Debug, Clone)]
pub struct Made {
    pub key: String,
    pub kernel_btf_len: u64,
    pub min_btf_len: usize,
    pub stored_len: usize,
    pub objects: usize,
}

#[derive(Debug, Default)]
pub struct Report {
    pub made: Vec<Made>,
    pub skipped: Vec<Skipped>,
    pub blobs: usize,
    pub bundle_len: u64,
}

/// One kernel's outcome: what was made and the minimised BTF, or why it was skipped.
type Minimised = Result<(Made, Vec<u8>), SkipReason>;

/// Builds the bundle at `opts.out` (written through a temp file, renamed into place).
pub fn generate(opts: &Options) -> Result<Report, BtfgenError> {
    let objects = inputs::objects(&opts.objects)?;
    let (kernels, mut skipped) = inputs::kernels(&opts.archive)?;
    let out_dir = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&out_dir).map_err(|error| BtfgenError::Mkdir {
        path: out_dir.clone(),
        error,
    })?;
    let work = WorkDir::new(&out_dir)?;

    let results: Vec<Mutex<Option<Minimised>>> = kernels.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for worker in 0..opts.jobs.max(1) {
            let (kernels, results, next, objects, work) =
                (&kernels, &results, &next, &objects, &work);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(kernel) = kernels.get(i) else { break };
                let dir = work.0.join(format!("w{worker}"));
                let result = minimise(kernel, objects, &opts.bpftool, &dir);
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(result);
                }
            });
        }
    });

    let mut report = Report::default();
    let mut entries = Vec::new();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let mut blob_of: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    for (kernel, slot) in kernels.iter().zip(results) {
        let result = slot
            .into_inner()
            .ok()
            .flatten()
            .unwrap_or(Err(SkipReason::WorkerDidNotFinish));
        match result {
            Ok((mut made, min_btf)) => {
                let sha256: [u8; 32] = Sha256::digest(&min_btf).into();
                let blob = match blob_of.get(&sha256) {
                    Some(&b) => b,
                    None => {
                        blobs.push(xz(&min_btf).map_err(|e| e.of(&kernel.key))?);
                        blob_of.insert(sha256, blobs.len() - 1);
                        blobs.len() - 1
                    }
                };
                made.stored_len = blobs[blob].len();
                entries.push(PlannedEntry {
                    key: kernel.key.clone(),
                    blob,
                    btf_len: u32::try_from(min_btf.len()).map_err(|_| BtfgenError::HugeBtf {
                        key: kernel.key.clone(),
                        len: min_btf.len(),
                    })?,
                    sha256,
                });
                report.made.push(made);
            }
            Err(reason) => skipped.push(Skipped {
                path: kernel.archive.clone(),
                reason,
            }),
        }
    }
    if entries.is_empty() {
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        return Err(BtfgenError::NoKernel {
            archive: opts.archive.clone(),
            skipped,
        });
    }
    let bytes = bundle::encode(&entries, &blobs).map_err(BtfgenError::Encode)?;
    let temp = work.0.join("bundle.tmp");
    fs::write(&temp, &bytes).map_err(|error| BtfgenError::Write {
        path: temp.clone(),
        error,
    })?;
    fs::rename(&temp, &opts.out).map_err(|error| BtfgenError::Rename {
        from: temp.clone(),
        to: opts.out.clone(),
        error,
    })?;
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    report.skipped = skipped;
    report.blobs = blobs.len();
    report.bundle_len = bytes.len() as u64;
    Ok(report)
}

/// Extract, check, minimise, check: the minimised BTF of one kernel.
fn minimise(kernel: &Kernel, objects: &Objects, bpftool: &str, dir: &Path) -> Minimised {
    let objs = objects.for_arch(&kernel.arch);
    if objs.is_empty() {
        return Err(SkipReason::NoObjectForArch {
            arch: kernel.arch.clone(),
        });
    }
    fs::create_dir_all(dir).map_err(|error| SkipReason::Mkdir {
        path: dir.to_path_buf(),
        error,
    })?;
    let full = dir.join("kernel.btf");
    let min = dir.join("min.btf");
    let _ = fs::remove_file(&min);
    let archive = fs::File::open(&kernel.archive).map_err(|error| SkipReason::Open {
        path: kernel.archive.clone(),
        error,
    })?;
    let mut out = fs::File::create(&full).map_err(|error| SkipReason::Create {
        path: full.clone(),
        error,
    })?;
    let kernel_btf_len = extract_single_btf(archive, MAX_KERNEL_BTF, &mut out)?;
    drop(out);
    let head = fs::read(&full).map_err(|error| SkipReason::Read {
        path: full.clone(),
        error,
    })?;
    validate::check_bytes(&head).map_err(SkipReason::KernelNotBtf)?;
    drop(head);
    let output = Command::new(bpftool)
        .args(["gen", "min_core_btf"])
        .arg(&full)
        .arg(&min)
        .args(&objs)
        .output()
        .map_err(|error| SkipReason::RunBpftool {
            program: bpftool.to_string(),
            error,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(SkipReason::BpftoolFailed {
            program: bpftool.to_string(),
            status: output.status,
            message: stderr.trim().lines().last().map(str::to_string),
        });
    }
    let min_btf = fs::read(&min).map_err(|error| SkipReason::Read {
        path: min.clone(),
        error,
    })?;
    validate::check_bytes(&min_btf).map_err(SkipReason::MinimisedNotBtf)?;
    let made = Made {
        key: kernel.key.clone(),
        kernel_btf_len,
        min_btf_len: min_btf.len(),
        stored_len: 0,
        objects: objs.len(),
    };
    Ok((made, min_btf))
}

/// Why [`xz`] failed, before the caller names the kernel.
enum XzFailure {
    Encoder(xz2::stream::Error),
    Write(io::Error),
}

impl XzFailure {
    fn of(self, key: &str) -> BtfgenError {
        match self {
            Self::Encoder(e) => BtfgenError::XzEncoder(e),
            Self::Write(error) => BtfgenError::Xz {
                key: key.to_string(),
                error,
            },
        }
    }
}

fn xz(data: &[u8]) -> Result<Vec<u8>, XzFailure> {
    let stream = xz2::stream::Stream::new_easy_encoder(XZ_PRESET, xz2::stream::Check::Crc32)
        .map_err(XzFailure::Encoder)?;
    let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
    enc.write_all(data)
        .and_then(|_| enc.finish())
        .map_err(XzFailure::Write)
}

/// The single regular `*.btf` of an xz tar into `out`, at most `cap` decompressed bytes in all;
/// links, devices, absolute or `..` paths refuse the archive.
pub fn extract_single_btf(
    archive: impl Read,
    cap: u64,
    out: &mut dyn Write,
) -> Result<u64, ExtractError> {
    let mut head = [0u8; 6];
    let mut archive = io::BufReader::new(archive);
    archive
        .read_exact(&mut head)
        .map_err(ExtractError::ShortHead)?;
    if head != [0xFD, b'7', b'z', b'X', b'Z', 0x00] {
        return Err(ExtractError::NotXz { head });
    }
    let stream = io::Cursor::new(head).chain(archive);
    let capped = xz2::read::XzDecoder::new(stream).take(cap + 1);
    let mut tar = tar::Archive::new(capped);
    let mut taken: Option<(String, u64)> = None;
    let corrupt = ExtractError::Corrupt;
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if path.starts_with('/') || path.split('/').any(|c| c == "..") {
            return Err(ExtractError::Escapes { entry: path });
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory | tar::EntryType::XGlobalHeader => continue,
            kind => return Err(ExtractError::Kind { entry: path, kind }),
        }
        if !path.ends_with(".btf") {
            continue;
        }
        if let Some((first, _)) = taken {
            return Err(ExtractError::TwoBtf {
                first,
                second: path,
            });
        }
        let n = io::copy(&mut entry, out).map_err(corrupt)?;
        taken = Some((path, n));
    }
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(corrupt)?;
    if rest.limit() == 0 {
        return Err(ExtractError::TooLarge { cap });
    }
    taken.map(|(_, n)| n).ok_or(ExtractError::NoBtf)
}

/// `<out dir>/.btfgen.<pid>`, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(parent: &Path) -> Result<WorkDir, BtfgenError> {
        let path = parent.join(format!(".btfgen.{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        if let Err(error) = fs::create_dir_all(&path) {
            return Err(BtfgenError::Mkdir { path, error });
        }
        Ok(WorkDir(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
