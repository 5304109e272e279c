//! TLS for ureq with the bundled web roots *plus* the operator's `--ca-file` anchors.
//!
//! ureq's own rustls connector takes either the web roots or a specific list, not both, so this
//! small connector builds the rustls client config itself and wraps ureq's TCP transport.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// Why the TLS client could not be set up: names `--ca-file` where the file is at fault.
#[derive(Debug)]
pub enum TlsError {
    ReadCaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    NotPem {
        path: PathBuf,
        detail: String,
    },
    BadCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    NoCertificate {
        path: PathBuf,
    },
    Setup(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadCaFile { path, source } => {
                write!(f, "cannot read --ca-file {}: {source}", path.display())
            }
            Self::NotPem { path, detail } => {
                write!(f, "--ca-file {} is not valid PEM: {detail}", path.display())
            }
            Self::BadCertificate { path, source } => write!(
                f,
                "--ca-file {}: unusable certificate: {source}",
                path.display()
            ),
            Self::NoCertificate { path } => write!(
                f,
                "--ca-file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
            Self::Setup(e) => write!(f, "TLS set-up failed: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// Loads the trust anchors: webpki roots, then every certificate of `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|source| TlsError::ReadCaFile {
            path: path.to_path_buf(),
            source,
        })?;
        let mut added = 0;
        for item in ureq::tls::parse_pem(&pem) {
            let item = item.map_err(|e| TlsError::NotPem {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
            if let ureq::tls::PemItem::Certificate(cert) = item {
                roots
                    .add(CertificateDer::from(cert.der().to_vec()))
                    .map_err(|source| TlsError::BadCertificate {
                        path: path.to_path_buf(),
                        source,
                    })?;
                added += 1;
            }
        }
        if added == 0 {
            return Err(TlsError::NoCertificate {
                path: path.to_path_buf(),
            });
        }
        log::debug!(
            "trusting {added} extra CA certificate(s) from {}",
            path.display()
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// ureq connector that wraps https connections in rustls with our own config.
pub struct RustlsWithAnchors {
    pub config: Arc<ClientConfig>,
}

impl fmt::Debug for RustlsWithAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RustlsWithAnchors")
    }
}

impl<In: Transport> Connector<In> for RustlsWithAnchors {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .host()
            .ok_or(ureq::Error::Tls("URL without a host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| ureq::Error::Tls("host is not a valid TLS server name"))?;
        let mut conn = ClientConnection::new(self.config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        Ok(Some(Either::B(TlsTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: StreamOwned { conn, sock },
        })))
    }
}

pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        self.stream.write_all(&self.buffers.output()[..amount])?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let amount = self.stream.read(self.buffers.input_append_buf())?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}
