//! Fetching an archive from a BTFHub mirror (https, opt-in http, or file://) into memory, capped,
//! with retries and backoff on transient failures (timeouts, connection errors, 5xx) and never
//! on a definite answer (404, other 4xx, TLS verification failures, redirect loops).

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector};

use crate::tls;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
const WHAT_TO_DO: &str = "bake a BTF for this kernel into the image (--baked-btf-dir), mirror it \
     internally (--btfhub-mirror), or disable downloads (--disable-btfhub-download) so the \
     sidecar falls back";

pub struct DownloadOptions<'a> {
    pub timeout: Duration,
    pub retries: u32,
    pub max_bytes: u64,
    pub allow_http: bool,
    pub ca_file: Option<&'a Path>,
}

#[derive(Debug)]
pub enum DownloadError {
    NotFound {
        url: String,
    },
    Status {
        url: String,
        status: u16,
        attempts: u32,
    },
    Transfer {
        url: String,
        detail: String,
        attempts: u32,
        hint: Option<&'static str>,
    },
    TooLarge {
        url: String,
        limit: u64,
    },
    Tls(tls::TlsError),
    File {
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "btfhub download failed: ")?;
        match self {
            Self::NotFound { url } => write!(
                f,
                "HTTP 404 Not Found for {url}: the mirror has no BTF for this kernel; {WHAT_TO_DO}"
            ),
            Self::Status {
                url,
                status,
                attempts,
            } => write!(
                f,
                "HTTP {status} for {url} (after {attempts} attempt(s)); check the mirror, or \
                 {WHAT_TO_DO}"
            ),
            Self::Transfer {
                url,
                detail,
                attempts,
                hint,
            } => {
                write!(f, "{detail} for {url} (after {attempts} attempt(s))")?;
                match hint {
                    Some(hint) => write!(f, "; {hint}"),
                    None => write!(f, "; check the network path to the mirror, or {WHAT_TO_DO}"),
                }
            }
            Self::TooLarge { url, limit } => write!(
                f,
                "{url} is larger than the {limit}-byte cap (--max-download-bytes); raise the cap \
                 if the mirror is trusted"
            ),
            Self::Tls(e) => e.fmt(f),
            Self::File { path, source } if source.kind() == io::ErrorKind::NotFound => write!(
                f,
                "{} does not exist: the file:// mirror has no BTF for this kernel; {WHAT_TO_DO}",
                path.display()
            ),
            Self::File { path, source } => write!(f, "cannot read {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for DownloadError {}

/// `<mirror>/<relative>`, tolerating a trailing slash on the mirror.
pub fn join_url(mirror: &str, relative: &str) -> String {
    format!("{}/{}", mirror.trim_end_matches('/'), relative)
}

/// Fetches `url` into memory, at most `max_bytes`.
pub fn fetch(url: &str, opts: &DownloadOptions) -> Result<Vec<u8>, DownloadError> {
    if let Some(path) = url.strip_prefix("file://") {
        return read_file(Path::new(path), opts.max_bytes, url);
    }
    let agent = agent(opts)?;
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match get_once(&agent, url, opts.max_bytes) {
            Ok(bytes) => return Ok(bytes),
            Err(failure) if attempt <= opts.retries && failure.is_transient() => {
                let detail = failure.describe();
                log::warn!(
                    "download of {url} failed ({detail}); retry {attempt}/{} in {backoff:?}",
                    opts.retries
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
            Err(failure) => return Err(failure.into_error(url, attempt)),
        }
    }
}

fn agent(opts: &DownloadOptions) -> Result<ureq::Agent, DownloadError> {
    let tls_config = tls::client_config(opts.ca_file).map_err(DownloadError::Tls)?;
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(opts.timeout))
        .http_status_as_error(false)
        .https_only(!opts.allow_http)
        .max_redirects(5)
        .user_agent(concat!("diffkeeper-init/", env!("CARGO_PKG_VERSION")))
        .build();
    let connector =
        ().chain(ConnectProxyConnector::default())
            .chain(TcpConnector::default())
            .chain(tls::RustlsWithAnchors { config: tls_config });
    Ok(ureq::Agent::with_parts(
        config,
        connector,
        DefaultResolver::default(),
    ))
}

/// Why one attempt failed, and whether another attempt could help.
enum Failure {
    Transient(String),
    /// 5xx: retried like a transport failure, reported with its status when retries run out.
    ServerError(u16),
    NotFound,
    Status(u16),
    TooLarge(u64),
    Fatal(String, Option<&'static str>),
}

impl Failure {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_) | Self::ServerError(_))
    }

    fn describe(&self) -> String {
        match self {
            Self::Transient(detail) | Self::Fatal(detail, _) => detail.clone(),
            Self::ServerError(status) | Self::Status(status) => format!("HTTP {status}"),
            Self::NotFound => "HTTP 404".into(),
            Self::TooLarge(limit) => format!("over the {limit}-byte cap"),
        }
    }

    fn into_error(self, url: &str, attempts: u32) -> DownloadError {
        let url = url.to_string();
        match self {
            Self::NotFound => DownloadError::NotFound { url },
            Self::Status(status) | Self::ServerError(status) => DownloadError::Status {
                url,
                status,
                attempts,
            },
            Self::TooLarge(limit) => DownloadError::TooLarge { url, limit },
            Self::Transient(detail) => DownloadError::Transfer {
                url,
                detail,
                attempts,
                hint: None,
            },
            Self::Fatal(detail, hint) => DownloadError::Transfer {
                url,
                detail,
                attempts,
                hint,
            },
        }
    }
}

fn get_once(agent: &ureq::Agent, url: &str, max_bytes: u64) -> Result<Vec<u8>, Failure> {
    let response = agent.get(url).call().map_err(classify)?;
    let status = response.status().as_u16();
    match status {
        200 => {}
        404 => return Err(Failure::NotFound),
        500..=599 => return Err(Failure::ServerError(status)),
        _ => return Err(Failure::Status(status)),
    }
    let declared = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_bytes) {
        return Err(Failure::TooLarge(max_bytes));
    }
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| classify_io(&e, format!("reading the body failed: {e}")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Failure::TooLarge(max_bytes));
    }
    Ok(bytes)
}

fn classify(e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Timeout(what) => Failure::Transient(format!("timed out ({what})")),
        ureq::Error::Io(io) => classify_io(&io, format!("connection failed: {io}")),
        ureq::Error::ConnectionFailed => Failure::Transient("connection failed".into()),
        ureq::Error::TooManyRedirects => Failure::Fatal(
            "too many redirects (redirect loop?)".into(),
            Some("point --btfhub-mirror at the final location"),
        ),
        ureq::Error::RequireHttpsOnly(to) => Failure::Fatal(
            format!("the mirror redirected to plain http ({to})"),
            Some("use an https mirror, or pass --allow-http for a trusted network"),
        ),
        ureq::Error::Rustls(e) => Failure::Fatal(format!("TLS failed: {e}"), tls_hint(&e)),
        other => Failure::Fatal(other.to_string(), None),
    }
}

fn classify_io(e: &io::Error, detail: String) -> Failure {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Failure::Fatal(format!("TLS failed: {tls}"), tls_hint(tls));
    }
    match e.kind() {
        io::ErrorKind::InvalidData
        | io::ErrorKind::InvalidInput
        | io::ErrorKind::PermissionDenied => Failure::Fatal(detail, None),
        _ => Failure::Transient(detail),
    }
}

fn tls_hint(e: &rustls::Error) -> Option<&'static str> {
    matches!(e, rustls::Error::InvalidCertificate(_)).then_some(
        "the mirror's certificate is not trusted: if it is an internal mirror, pass its CA \
         certificate with --ca-file (DIFFKEEPER_BTF_CA_FILE)",
    )
}

fn read_file(path: &Path, max_bytes: u64, url: &str) -> Result<Vec<u8>, DownloadError> {
    let file_err = |source| DownloadError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max_bytes + 1).read_to_end(&mut bytes))
        .map_err(file_err)?;
    if bytes.len() as u64 > max_bytes {
        return Err(DownloadError::TooLarge {
            url: url.to_string(),
            limit: max_bytes,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::KernelIdentity;

    #[test]
    fn url_for_the_seed_example() {
        let id = KernelIdentity {
            release: "5.15.0-92-generic".into(),
            arch: "x86_64".into(),
            distro: Some("ubuntu".into()),
            version: Some("22.04".into()),
        };
        let rel = id.btfhub_path().unwrap();
        assert_eq!(rel, "ubuntu/22.04/x86_64/5.15.0-92-generic.btf.tar.xz");
        for mirror in [
            "https://github.com/aquasecurity/btfhub-archive/raw/main",
            "https://github.com/aquasecurity/btfhub-archive/raw/main/",
        ] {
            assert_eq!(
                join_url(mirror, &rel),
                "https://github.com/aquasecurity/btfhub-archive/raw/main/ubuntu/22.04/x86_64/5.15.0-92-generic.btf.tar.xz"
            );
        }
    }

    #[test]
    fn not_found_message_says_what_to_do() {
        let msg = DownloadError::NotFound {
            url: "https://m/x.btf.tar.xz".into(),
        }
        .to_string();
        for needle in [
            "btfhub download failed",
            "404",
            "https://m/x.btf.tar.xz",
            "--baked-btf-dir",
            "--disable-btfhub-download",
        ] {
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
    }
}
