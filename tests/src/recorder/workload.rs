//! The round-trip workload: a tree made before the sidecar starts (the baseline), then phases
//! of the changes an application makes. Each phase names the paths it changes through an
//! operation some backends do not report, so a difference there is explained, not hidden.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One step of the workload.
pub struct Phase {
    pub name: &'static str,
    pub run: fn(&Path),
    /// (journal op, paths it changes): if the backend does not report that op, differences
    /// at these paths (and below them) are expected from this phase on.
    pub through: &'static [(&'static str, &'static [&'static str])],
}

pub const BLOB_BYTES: usize = 8 << 20;

/// Pseudo-random bytes (xorshift): incompressible, reproducible.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The tree before the sidecar starts.
pub fn initial(root: &Path) {
    fs::write(root.join("notes.txt"), "first line\n").unwrap();
    fs::write(root.join("config.ini"), "[main]\nport = 80\n").unwrap();
    fs::write(root.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    fs::write(root.join("dir/sub/a.txt"), "a in sub\n").unwrap();
    fs::write(root.join("dir/b.txt"), "b in dir\n").unwrap();
    fs::create_dir(root.join("old")).unwrap();
    fs::write(root.join("old/x.txt"), "to be removed\n").unwrap();
    fs::write(root.join("blob.bin"), noise(BLOB_BYTES, 7)).unwrap();
    fs::write(root.join("my file ü.txt"), "spaces and UTF-8\n").unwrap();
    fs::create_dir(root.join("répertoire")).unwrap();
    fs::write(root.join("répertoire/naïve.txt"), "accents\n").unwrap();
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// truncate(2): a size change by name, with no open file.
fn truncate_by_name(path: &Path, len: i64) {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated name that outlives the call.
    let rc = unsafe { nix::libc::truncate(name.as_ptr(), len) };
    assert_eq!(
        rc,
        0,
        "truncate {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

pub const PHASES: &[Phase] = &[
    Phase {
        name: "text edits",
        run: |root| {
            fs::write(root.join("notes.txt"), "first line, edited\nsecond line\n").unwrap();
            let mut f = OpenOptions::new()
                .write(true)
                .open(root.join("config.ini"))
                .unwrap();
            f.write_all(b"[main]\nport = 81\n").unwrap();
        },
        through: &[],
    },
    Phase {
        name: "appends",
        run: |root| {
            for i in 0..3 {
                append(&root.join("notes.txt"), &format!("appended {i}\n"));
            }
            for i in 0..50 {
                append(&root.join("log.txt"), &format!("log line {i}\n"));
            }
        },
        through: &[],
    },
    Phase {
        name: "atomic save (tmp + rename over)",
        run: |root| {
            fs::write(
                root.join(".config.ini.swp"),
                "[main]\nport = 8080\nsaved = yes\n",
            )
            .unwrap();
            fs::rename(root.join(".config.ini.swp"), root.join("config.ini")).unwrap();
        },
        through: &[("rename", &[".config.ini.swp", "config.ini"])],
    },
    Phase {
        name: "chmod +x",
        run: |root| {
            fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        },
        through: &[("attrib", &["run.sh"])],
    },
    Phase {
        name: "truncations (ftruncate, truncate, O_TRUNC open), nothing written after",
        run: |root| {
            let f = OpenOptions::new()
                .write(true)
                .open(root.join("log.txt"))
                .unwrap();
            f.set_len(12).unwrap();
            truncate_by_name(&root.join("dir/b.txt"), 3);
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(root.join("répertoire/naïve.txt"))
                .unwrap();
        },
        // Every backend reports a truncation as a write.
        through: &[],
    },
    Phase {
        name: "directory renamed with files inside",
        run: |root| fs::rename(root.join("dir"), root.join("dir2")).unwrap(),
        through: &[("rename", &["dir", "dir2"])],
    },
    Phase {
        name: "deletes",
        run: |root| {
            fs::remove_file(root.join("notes.txt")).unwrap();
            fs::remove_dir_all(root.join("old")).unwrap();
        },
        through: &[("delete", &["notes.txt", "old"])],
    },
    Phase {
        name: "empty directory",
        run: |root| fs::create_dir(root.join("empty")).unwrap(),
        through: &[("mkdir", &["empty"])],
    },
    Phase {
        name: "symlink",
        run: |root| std::os::unix::fs::symlink("config.ini", root.join("cfg.link")).unwrap(),
        through: &[("link by absolute path", &["cfg.link"])],
    },
    Phase {
        name: "hard link",
        run: |root| fs::hard_link(root.join("log.txt"), root.join("log.hard")).unwrap(),
        through: &[("link by absolute path", &["log.hard"])],
    },
    Phase {
        name: "8 MiB binary, 4 KiB changed in the middle",
        run: |root| {
            let mut f = OpenOptions::new()
                .write(true)
                .open(root.join("blob.bin"))
                .unwrap();
            f.seek(SeekFrom::Start((BLOB_BYTES / 2) as u64)).unwrap();
            f.write_all(&noise(4096, 99)).unwrap();
        },
        through: &[],
    },
    Phase {
        name: "names with spaces and UTF-8",
        run: |root| {
            fs::write(root.join("my file ü.txt"), "spaces and UTF-8, edited\n").unwrap();
            fs::write(root.join("répertoire/ça va.txt"), "oui\n").unwrap();
        },
        through: &[],
    },
];
