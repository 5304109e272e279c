//! `<cache>/<release>.json`: where the cached BTF came from, so operators (and the sidecar's
//! logs) can tell a baked file from a download without guessing.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How the BTF got into the cache (or why none was needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    System,
    Cache,
    Baked,
    /// An entry of the BTF bundle (`--btf-bundle`).
    Bundle,
    Download,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub source: Source,
    /// The path or URL the BTF was taken from.
    pub origin: String,
    pub sha256: String,
    pub size: u64,
    pub kernel_release: String,
    pub distro: Option<String>,
    pub version: Option<String>,
    pub arch: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// With `source: bundle`: the bundle entry, `<distro>/<version>/<arch>/<release>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
}

impl Status {
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("status serialises");
        bytes.push(b'\n');
        bytes
    }
}

/// Writer that passes bytes through while hashing them and keeping the first `N` (the BTF
/// header), so the written file can be checked without reading it back.
pub struct Digesting<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
    head: Vec<u8>,
}

impl<W: Write> Digesting<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
            head: Vec::new(),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn sha256_hex(&self) -> String {
        hex(&self.hasher.clone().finalize(), "")
    }
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        let want = diffkeeper_btf::validate::HEADER_LEN.saturating_sub(self.head.len());
        self.head.extend_from_slice(&buf[..n.min(want)]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// sha256 and size of a file already on disk.
pub fn digest_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut digest = Digesting::new(io::sink());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => digest.write_all(&buf[..n])?,
        }
    }
    Ok((digest.sha256_hex(), digest.len()))
}

/// Reads an existing status file; a missing or unreadable one is simply `None`.
pub fn read(path: &Path) -> Option<Status> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Bytes as lower-case hex, `separator` between them.
pub fn hex(bytes: &[u8], separator: &str) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(separator)
}

/// Now as RFC 3339 UTC (`2026-11-26T01:02:03Z`), without a date crate.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(unix_secs: u64) -> String {
    let second = diffkeeper_cli::time::format_second(unix_secs);
    format!("{}Z", String::from_utf8_lossy(&second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_654_923), "2026-11-26T01:02:03Z");
    }

    #[test]
    fn digest_matches_known_sha256() {
        let mut d = Digesting::new(Vec::new());
        d.write_all(b"abc").unwrap();
        assert_eq!(
            d.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!((d.len(), d.head()), (3, &b"abc"[..]));
    }

    #[test]
    fn json_shape() {
        let s = Status {
            source: Source::Download,
            origin: "https://m/ubuntu/22.04/x86_64/5.15.0-92-generic.btf.tar.xz".into(),
            sha256: "00".into(),
            size: 1,
            kernel_release: "5.15.0-92-generic".into(),
            distro: Some("ubuntu".into()),
            version: Some("22.04".into()),
            arch: "x86_64".into(),
            time: "2026-11-26T01:02:03Z".into(),
            entry: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(v["source"], "download");
        assert_eq!(v["kernel_release"], "5.15.0-92-generic");
        assert!(v.get("entry").is_none(), "entry only with source bundle");
        let from_bundle = Status {
            source: Source::Bundle,
            entry: Some("ubuntu/22.04/x86_64/5.15.0-92-generic".into()),
            ..s
        };
        let v: serde_json::Value = serde_json::from_slice(&from_bundle.to_json()).unwrap();
        assert_eq!(
            (v["source"].as_str(), v["entry"].as_str()),
            (
                Some("bundle"),
                Some("ubuntu/22.04/x86_64/5.15.0-92-generic")
            )
        );
    }
}
