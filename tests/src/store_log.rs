//! Forged store logs, written byte by byte as the store format says (not through the store's
//! own writer), for tests that hand a reader what no writer would write.

use std::fs;
use std::path::Path;

/// One log frame: magic, payload length, CRC-32 of length and payload, payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(payload);
    let mut out = b"DKF1".to_vec();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A format-1 log file's bytes holding exactly `payloads` (encoded records), one frame each.
pub fn log_of(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut log = b"DKSTORE\0LOG\0".to_vec();
    log.extend_from_slice(&1u32.to_le_bytes());
    for payload in payloads {
        log.extend_from_slice(&frame(payload));
    }
    log
}

/// A store in `dir` whose log holds exactly `payloads`, and no packs.
pub fn forged_store(dir: &Path, payloads: &[Vec<u8>]) {
    fs::create_dir_all(dir.join("packs")).unwrap();
    fs::write(dir.join("log"), log_of(payloads)).unwrap();
}
