//! Seeded random storms of file-system operations on a watched root (and an outside directory
//! things are moved in from and out to), for the journal's replay property: every op kind a
//! backend may have to report, with colliding names so renames replace and directories move.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One kind of operation a storm can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StormOp {
    Create,
    Write,
    Delete,
    Mkdir,
    Rmdir,
    /// A file renamed within the root (replacing one of the same name).
    RenameFile,
    /// A directory (with its subtree) renamed within the root.
    RenameDir,
    /// A file or directory moved from the root to the outside.
    MoveOut,
    /// A file or a directory with a file in it moved in from outside.
    MoveIn,
    /// Write a temporary file, then rename it over the target.
    AtomicSave,
    Chmod,
    HardLink,
    Symlink,
}

impl StormOp {
    pub const ALL: [StormOp; 13] = [
        Self::Create,
        Self::Write,
        Self::Delete,
        Self::Mkdir,
        Self::Rmdir,
        Self::RenameFile,
        Self::RenameDir,
        Self::MoveOut,
        Self::MoveIn,
        Self::AtomicSave,
        Self::Chmod,
        Self::HardLink,
        Self::Symlink,
    ];
}

/// xorshift64*: small, seeded, good enough to pick ops and names.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// A storm over `root`, moving things to and from `outside`.
pub struct Storm {
    pub root: PathBuf,
    pub outside: PathBuf,
    pub ops: Vec<StormOp>,
    rng: Rng,
    /// What was done, for the failure message.
    pub log: Vec<String>,
    counter: u64,
}

impl fmt::Display for Storm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.log {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl Storm {
    pub fn new(root: &Path, outside: &Path, seed: u64, ops: &[StormOp]) -> Storm {
        Storm {
            root: root.to_owned(),
            outside: outside.to_owned(),
            ops: ops.to_vec(),
            rng: Rng::new(seed),
            log: Vec::new(),
            counter: 0,
        }
    }

    /// A starting tree: a few directories and files.
    pub fn populate(&mut self) {
        for dir in ["d0", "d1", "d1/d2"] {
            fs::create_dir_all(self.root.join(dir)).expect("populate");
        }
        for file in ["f0", "d0/f1", "d1/f2", "d1/d2/f3"] {
            fs::write(self.root.join(file), "start").expect("populate");
        }
    }

    /// Makes `steps` operations (skipping those that find nothing to work on), `pause` apart.
    pub fn run(&mut self, steps: usize, pause: std::time::Duration) {
        for _ in 0..steps {
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
            let op = self.ops[self.rng.below(self.ops.len())];
            if let Some(done) = self.step(op) {
                self.log.push(done);
            }
        }
    }

    fn entries(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let (mut files, mut dirs) = (Vec::new(), Vec::new());
        let mut pending = vec![self.root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                match path.symlink_metadata() {
                    Ok(m) if m.is_dir() => {
                        pending.push(path.clone());
                        dirs.push(path);
                    }
                    Ok(_) => files.push(path),
                    Err(_) => {}
                }
            }
        }
        files.sort();
        dirs.sort();
        (files, dirs)
    }

    /// A new path under a random directory of the root, with a name that may collide.
    fn new_path(&mut self, dirs: &[PathBuf], prefix: &str) -> PathBuf {
        let parent = if self.rng.below(3) == 0 {
            self.root.clone()
        } else {
            self.rng
                .pick(dirs)
                .cloned()
                .unwrap_or_else(|| self.root.clone())
        };
        parent.join(format!("{prefix}{}", self.rng.below(6)))
    }

    fn unique(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn step(&mut self, op: StormOp) -> Option<String> {
        let (files, dirs) = self.entries();
        let rel = |p: &Path, root: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
        let root = self.root.clone();
        let result = match op {
            StormOp::Create => {
                let path = self.new_path(&dirs, "f");
                fs::write(&path, "new").map(|()| format!("create {}", rel(&path, &root)))
            }
            StormOp::Write => {
                let path = self.rng.pick(&files)?.clone();
                fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, b"more"))
                    .map(|()| format!("write {}", rel(&path, &root)))
            }
            StormOp::Delete => {
                let path = self.rng.pick(&files)?.clone();
                fs::remove_file(&path).map(|()| format!("delete {}", rel(&path, &root)))
            }
            StormOp::Mkdir => {
                let path = self.new_path(&dirs, "d");
                fs::create_dir(&path).map(|()| format!("mkdir {}", rel(&path, &root)))
            }
            StormOp::Rmdir => {
                let path = self.rng.pick(&dirs)?.clone();
                fs::remove_dir(&path).map(|()| format!("rmdir {}", rel(&path, &root)))
            }
            StormOp::RenameFile => {
                let from = self.rng.pick(&files)?.clone();
                let to = self.new_path(&dirs, "f");
                fs::rename(&from, &to)
                    .map(|()| format!("rename {} -> {}", rel(&from, &root), rel(&to, &root)))
            }
            StormOp::RenameDir => {
                let from = self.rng.pick(&dirs)?.clone();
                let to = self.new_path(&dirs, "d");
                fs::rename(&from, &to)
                    .map(|()| format!("rename {} -> {}", rel(&from, &root), rel(&to, &root)))
            }
            StormOp::MoveOut => {
                let all: Vec<PathBuf> = files.iter().chain(&dirs).cloned().collect();
                let from = self.rng.pick(&all)?.clone();
                let n = self.unique();
                let to = self.outside.join(format!("out{n}"));
                fs::rename(&from, &to).map(|()| format!("move out {}", rel(&from, &root)))
            }
            StormOp::MoveIn => {
                let n = self.unique();
                let staged = self.outside.join(format!("in{n}"));
                let made = if self.rng.below(2) == 0 {
                    fs::write(&staged, "in")
                } else {
                    fs::create_dir(&staged).and_then(|()| fs::write(staged.join("inner"), "in"))
                };
                let to = self.new_path(&dirs, "m");
                made.and_then(|()| fs::rename(&staged, &to))
                    .map(|()| format!("move in {}", rel(&to, &root)))
            }
            StormOp::AtomicSave => {
                let target = match self.rng.pick(&files) {
                    Some(f) if self.rng.below(2) == 0 => f.clone(),
                    _ => self.new_path(&dirs, "f"),
                };
                let tmp = target.with_file_name(format!(".tmp{}", self.unique()));
                fs::write(&tmp, "saved")
                    .and_then(|()| fs::rename(&tmp, &target))
                    .map(|()| format!("atomic save {}", rel(&target, &root)))
            }
            StormOp::Chmod => {
                let path = self.rng.pick(&files)?.clone();
                let mode = if self.rng.below(2) == 0 { 0o600 } else { 0o644 };
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map(|()| format!("chmod {:o} {}", mode, rel(&path, &root)))
            }
            StormOp::HardLink => {
                let from = self.rng.pick(&files)?.clone();
                if from
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    return None;
                }
                let to = self.new_path(&dirs, "l");
                fs::hard_link(&from, &to)
                    .map(|()| format!("link {} -> {}", rel(&to, &root), rel(&from, &root)))
            }
            StormOp::Symlink => {
                let to = self.new_path(&dirs, "s");
                std::os::unix::fs::symlink("target-need-not-exist", &to)
                    .map(|()| format!("symlink {}", rel(&to, &root)))
            }
        };
        // Collisions (a name taken, a directory not empty) are part of the storm: skipped.
        result.ok()
    }
}
