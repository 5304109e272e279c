//! Real `.tar.xz` archives for tests: well-formed ones made by the `tar` command (the way BTFHub
//! makes them), and hostile ones whose headers are written raw, because the tar crate's builder
//! (rightly) refuses `..`, absolute paths and the like.

use std::io::Write;
use std::process::Command;

use crate::scratch::Scratch;

/// One archive member; names and link targets are written exactly as given.
pub enum Entry {
    File { path: String, data: Vec<u8> },
    Dir { path: String },
    Symlink { path: String, target: String },
    Hardlink { path: String, target: String },
    CharDevice { path: String },
    Fifo { path: String },
}

impl Entry {
    pub fn file(path: &str, data: &[u8]) -> Entry {
        Entry::File {
            path: path.into(),
            data: data.to_vec(),
        }
    }
}

/// An uncompressed tar of `entries`, names unchecked.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_old();
        let (path, kind, data, link): (&str, tar::EntryType, &[u8], Option<&str>) = match entry {
            Entry::File { path, data } => (path, tar::EntryType::Regular, data, None),
            Entry::Dir { path } => (path, tar::EntryType::Directory, &[], None),
            Entry::Symlink { path, target } => (path, tar::EntryType::Symlink, &[], Some(target)),
            Entry::Hardlink { path, target } => (path, tar::EntryType::Link, &[], Some(target)),
            Entry::CharDevice { path } => (path, tar::EntryType::Char, &[], None),
            Entry::Fifo { path } => (path, tar::EntryType::Fifo, &[], None),
        };
        let old = header.as_old_mut();
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, data).expect("append tar entry");
    }
    builder.into_inner().expect("finish tar")
}

/// xz-compresses `data` (fast preset: the tests care about format, not ratio).
pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut enc = xz2::write::XzEncoder::new(Vec::new(), 1);
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn tar_xz(entries: &[Entry]) -> Vec<u8> {
    xz(&tar(entries))
}

/// `tar cJf` of the given files (name, content), as BTFHub packs its archives.
pub fn tar_cjf(files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = Scratch::new("tar-cjf");
    let src = dir.dir("src");
    for (name, data) in files {
        std::fs::write(src.join(name), data).unwrap();
    }
    let out = dir.child("out.tar.xz");
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    let status = Command::new("tar")
        .arg("cJf")
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .args(&names)
        .status()
        .expect("run tar (apt-get install tar xz-utils)");
    assert!(status.success(), "tar cJf failed: {status}");
    std::fs::read(out).unwrap()
}
