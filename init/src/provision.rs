//! The provisioning order: system BTF → cache → bundle → baked dir → mirror download → nothing.
//!
//! The cache is checked once without the lock (the common, read-only case) and again under it,
//! so when many inits start at once on one cache only the first one writes or downloads.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::identity::{self, KernelIdentity};
use diffkeeper_btf::cache::{BtfCache, CacheError, CacheLock};
use diffkeeper_btf::validate::{self as btf, BtfFileError};
use diffkeeper_btf::SYSTEM_BTF_PATH;

use crate::archive;
use crate::baked::{self, Shape};
use crate::bundle::{Bundle, Lookup};
use crate::config::Config;
use crate::download::{self, DownloadOptions};
use crate::errors::{Attempt, InstallError, ProvisionError};
use crate::status::{self, Digesting, Source, Status};

/// A BTF is available for the sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provided {
    /// The kernel's own BTF: nothing was written.
    System,
    /// `<cache>/<release>.btf`, from `source`.
    Cached { source: Source, path: PathBuf },
}

pub fn run(cfg: &Config) -> Result<Provided, ProvisionError> {
    let mut looked = Vec::new();
    if let Some(running) = other_running_kernel(cfg.kernel_release.as_deref()) {
        // Provisioning for another kernel (e.g. pre-populating a cache): this one's BTF won't do.
        log::info!(
            "--kernel-release differs from the running kernel {running}: {SYSTEM_BTF_PATH} \
             does not describe it, provisioning into the cache"
        );
        looked.push(Attempt::SystemDescribesOther { running });
        return provision_into_cache(cfg, looked);
    }
    match btf::check_file(Path::new(SYSTEM_BTF_PATH)) {
        Ok(_) => {
            log::info!(
                "system BTF {SYSTEM_BTF_PATH} is present and valid: nothing to provision, the \
                 cache is left untouched"
            );
            return Ok(Provided::System);
        }
        Err(BtfFileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            log::info!("no system BTF at {SYSTEM_BTF_PATH}: provisioning one");
            looked.push(Attempt::SystemAbsent);
        }
        Err(e) => {
            log::warn!("system BTF unusable: {e}; provisioning one");
            looked.push(Attempt::SystemInvalid(e));
        }
    }

    provision_into_cache(cfg, looked)
}

/// The running kernel's release when `requested` names a different one.
fn other_running_kernel(requested: Option<&str>) -> Option<String> {
    let running = nix::sys::utsname::uname().ok()?;
    let running = running.release().to_string_lossy().into_owned();
    (requested? != running).then_some(running)
}

/// Steps 2-6: cache, bundle, baked dir, mirror, nothing.
fn provision_into_cache(cfg: &Config, looked: Vec<Attempt>) -> Result<Provided, ProvisionError> {
    let id = identity::detect(
        &cfg.host_root,
        cfg.kernel_release.as_deref(),
        cfg.arch.as_deref(),
    )
    .map_err(ProvisionError::Identity)?;
    log::info!("{id}");
    let cache = BtfCache::new(&cfg.btf_cache_dir);
    let dest = cache
        .btf_path(&id.release)
        .map_err(ProvisionError::Release)?;
    let run = Run {
        cfg,
        cache,
        dest,
        id,
        looked,
    };
    run.provision()
}

struct Run<'a> {
    cfg: &'a Config,
    id: KernelIdentity,
    cache: BtfCache,
    dest: PathBuf,
    looked: Vec<Attempt>,
}

impl Run<'_> {
    fn provision(mut self) -> Result<Provided, ProvisionError> {
        if btf::check_file(&self.dest).is_ok() {
            return Ok(self.cache_hit(None));
        }
        let lock = self.cache.lock()?;
        // Another init may have provisioned it while this one waited for the lock.
        match btf::check_file(&self.dest) {
            Ok(_) => return Ok(self.cache_hit(Some(&lock))),
            Err(BtfFileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                self.looked.push(Attempt::CacheAbsent(self.dest.clone()));
            }
            Err(e) => {
                log::warn!("cached BTF is unusable ({e}): replacing it");
                lock.remove(&self.dest)?;
                self.looked.push(Attempt::CacheInvalid(e));
            }
        }
        if let Some(provided) = self.try_bundle(&lock) {
            return Ok(provided);
        }
        if let Some(provided) = self.try_baked(&lock) {
            return Ok(provided);
        }
        if let Some(provided) = self.try_mirror(&lock) {
            return Ok(provided);
        }
        Err(ProvisionError::NotFound {
            release: self.id.release,
            looked: self.looked,
        })
    }

    /// A valid cached BTF: nothing to fetch. The status file is (re)written only when it does
    /// not describe this file (e.g. the cache was filled by hand), which needs the lock.
    fn cache_hit(&self, lock: Option<&CacheLock>) -> Provided {
        log::info!(
            "cached BTF {} is valid: nothing to download",
            self.dest.display()
        );
        let provided = Provided::Cached {
            source: Source::Cache,
            path: self.dest.clone(),
        };
        let status_path = match self.cache.status_path(&self.id.release) {
            Ok(path) => path,
            Err(_) => return provided,
        };
        let Ok((sha256, size)) = status::digest_file(&self.dest) else {
            return provided;
        };
        if let Some(existing) = status::read(&status_path) {
            if existing.sha256 == sha256 && existing.size == size {
                log::info!("it came from {} ({:?})", existing.origin, existing.source);
                return provided;
            }
        }
        let status = self.status(
            Source::Cache,
            &self.dest.display().to_string(),
            sha256,
            size,
        );
        let written = match lock {
            Some(lock) => write_status(lock, &status_path, &status),
            None => self
                .cache
                .lock()
                .and_then(|lock| write_status(&lock, &status_path, &status)),
        };
        match written {
            Ok(()) => {}
            // Pods that share a node cache mount it read-only: only the writer records status.
            Err(e) if e.source.raw_os_error() == Some(nix::libc::EROFS) => {
                log::info!("cache is read-only: status of the cached BTF not recorded ({e})")
            }
            Err(e) => log::warn!("cannot record the status of the cached BTF: {e}"),
        }
        provided
    }

    /// This kernel's entry of the bundle. A corrupt bundle or entry is reported (naming the
    /// entry) and the next source is tried.
    fn try_bundle(&mut self, lock: &CacheLock) -> Option<Provided> {
        let path = self.cfg.btf_bundle.clone();
        let unusable = |error| Attempt::BundleUnusable {
            path: path.clone(),
            error: InstallError::Bundle(error),
        };
        let mut bundle = match Bundle::open(&path) {
            Ok(Some(bundle)) => bundle,
            Ok(None) => {
                self.looked.push(Attempt::BundleAbsent(path));
                return None;
            }
            Err(e) => {
                let attempt = unusable(e);
                log::warn!("{attempt}; trying the next source");
                self.looked.push(attempt);
                return None;
            }
        };
        let (looked_for, ambiguous) = match bundle.find(&self.id) {
            Lookup::Found(entry) => (entry.key.clone(), None),
            Lookup::Missing(key) => (key, Some(false)),
            Lookup::Ambiguous(pattern) => (pattern, Some(true)),
        };
        let entry = match (ambiguous, bundle.entry(&looked_for)) {
            (None, Some(entry)) => entry.clone(),
            (ambiguous, _) => {
                let ambiguous = ambiguous.unwrap_or(false);
                let attempt = Attempt::BundleNoEntry {
                    path: path.clone(),
                    looked_for,
                    entries: bundle.len(),
                    ambiguous,
                };
                log::info!("{attempt}");
                self.looked.push(attempt);
                return None;
            }
        };
        let origin = format!("{}#{}", bundle.path().display(), entry.key);
        let max_bytes = self.cfg.max_btf_bytes;
        let installed = self.install(lock, Source::Bundle, &origin, Some(&entry.key), |out| {
            let bytes = bundle
                .extract(&entry, max_bytes)
                .map_err(InstallError::Bundle)?;
            out.write_all(&bytes).map_err(InstallError::Copy)
        });
        match installed {
            Ok(provided) => Some(provided),
            Err(e) => {
                log::warn!("bundle {}: {e}; trying the next source", path.display());
                self.looked.push(Attempt::BundleUnusable { path, error: e });
                None
            }
        }
    }

    fn try_baked(&mut self, lock: &CacheLock) -> Option<Provided> {
        for candidate in baked::candidates(&self.cfg.baked_dir, &self.id) {
            let path = &candidate.path;
            if !path.exists() {
                self.looked.push(Attempt::BakedAbsent(path.clone()));
                continue;
            }
            let origin = path.display().to_string();
            let installed = match candidate.shape {
                Shape::Btf => self.install(lock, Source::Baked, &origin, None, |out| {
                    copy_btf_file(path, self.cfg.max_btf_bytes, out)
                }),
                Shape::Archive => self.install(lock, Source::Baked, &origin, None, |out| {
                    let file = File::open(path).map_err(InstallError::Open)?;
                    archive::extract_single_btf(file, self.cfg.max_btf_bytes, out)
                        .map(drop)
                        .map_err(InstallError::Archive)
                }),
            };
            match installed {
                Ok(provided) => return Some(provided),
                Err(e) => {
                    log::warn!("baked BTF {origin} not used: {e}");
                    self.looked.push(Attempt::BakedUnusable {
                        path: path.clone(),
                        error: e,
                    });
                }
            }
        }
        None
    }

    fn try_mirror(&mut self, lock: &CacheLock) -> Option<Provided> {
        if !self.cfg.download {
            self.looked.push(Attempt::DownloadDisabled);
            return None;
        }
        if !self.id.btfhub_arch_supported() {
            self.skip_mirror(Attempt::UnsupportedArch {
                arch: self.id.arch.clone(),
            });
            return None;
        }
        let Some(relative) = self.id.btfhub_path() else {
            self.skip_mirror(Attempt::UnknownDistro {
                host_root: self.cfg.host_root.clone(),
                release: self.id.release.clone(),
            });
            return None;
        };
        let url = download::join_url(&self.cfg.mirror, &relative);
        log::info!("downloading {url}");
        let opts = DownloadOptions {
            timeout: self.cfg.timeout,
            retries: self.cfg.retries,
            max_bytes: self.cfg.max_download_bytes,
            allow_http: self.cfg.allow_http,
            ca_file: self.cfg.ca_file.as_deref(),
        };
        let result = download::fetch(&url, &opts)
            .map_err(InstallError::Download)
            .and_then(|bytes| {
                self.install(lock, Source::Download, &url, None, |out| {
                    archive::extract_single_btf(&bytes[..], self.cfg.max_btf_bytes, out)
                        .map(drop)
                        .map_err(|source| InstallError::DownloadedArchive {
                            url: url.clone(),
                            source,
                        })
                })
            });
        match result {
            Ok(provided) => Some(provided),
            Err(e) => {
                log::error!("{e}");
                self.looked.push(Attempt::Mirror { url, error: e });
                None
            }
        }
    }

    /// Writes a BTF into the cache through a temp file: `fill` produces the bytes, which must
    /// form a valid BTF before the file replaces `<cache>/<release>.btf`; then the status file.
    fn install(
        &self,
        lock: &CacheLock,
        source: Source,
        origin: &str,
        entry: Option<&str>,
        fill: impl FnOnce(&mut dyn Write) -> Result<(), InstallError>,
    ) -> Result<Provided, InstallError> {
        let mut temp = lock.create_temp()?;
        let mut out = Digesting::new(temp.file());
        fill(&mut out)?;
        btf::check_header(out.head(), out.len()).map_err(|source| InstallError::InvalidData {
            origin: origin.to_string(),
            source,
        })?;
        let (sha256, size) = (out.sha256_hex(), out.len());
        temp.commit(&self.dest)?;
        log::info!(
            "cached BTF {} ({size} bytes, sha256 {sha256}) from {origin}",
            self.dest.display()
        );
        let status = Status {
            entry: entry.map(str::to_string),
            ..self.status(source, origin, sha256, size)
        };
        let status_path = self
            .cache
            .status_path(&self.id.release)
            .map_err(InstallError::Release)?;
        if let Err(e) = write_status(lock, &status_path, &status) {
            log::warn!("BTF cached, but its status file was not written: {e}");
        }
        Ok(Provided::Cached {
            source,
            path: self.dest.clone(),
        })
    }

    /// The mirror cannot be asked at all: said loudly (a download was expected) and recorded.
    fn skip_mirror(&mut self, attempt: Attempt) {
        match attempt {
            Attempt::UnsupportedArch { .. } => log::error!("{attempt}"),
            _ => log::warn!("{attempt}"),
        }
        self.looked.push(attempt);
    }

    fn status(&self, source: Source, origin: &str, sha256: String, size: u64) -> Status {
        Status {
            source,
            origin: origin.to_string(),
            sha256,
            size,
            kernel_release: self.id.release.clone(),
            distro: self.id.distro.clone(),
            version: self.id.version.clone(),
            arch: self.id.arch.clone(),
            time: status::now_rfc3339(),
            entry: None,
        }
    }
}

fn write_status(lock: &CacheLock, path: &Path, status: &Status) -> Result<(), CacheError> {
    let mut temp = lock.create_temp()?;
    temp.file()
        .write_all(&status.to_json())
        .map_err(|source| CacheError {
            action: "write status file",
            path: path.to_path_buf(),
            source,
        })?;
    temp.commit(path)
}

/// Copies a plain BTF file, refusing files over the cap (checked while reading, not trusted
/// from metadata).
fn copy_btf_file(path: &Path, max_bytes: u64, out: &mut dyn Write) -> Result<(), InstallError> {
    btf::check_file(path).map_err(InstallError::NotBtf)?;
    let file = File::open(path).map_err(InstallError::Open)?;
    let copied = io::copy(&mut file.take(max_bytes + 1), out).map_err(InstallError::Copy)?;
    if copied > max_bytes {
        return Err(InstallError::TooLarge { max_bytes });
    }
    Ok(())
}
