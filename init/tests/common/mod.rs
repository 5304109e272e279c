//! Running the real diffkeeper-init binary against a scratch layout:
//!
//! ```text
//! <scratch>/cache/btf    --btf-cache-dir (created by init)
//! <scratch>/baked        --baked-btf-dir
//! <scratch>/host         --host-root (etc/os-release says Ubuntu 22.04)
//! <scratch>/work         the working directory (where a '../x.btf' would land)
//! ```
//!
//! Unless told otherwise, init runs with `/sys/kernel/btf` hidden, as on a kernel without BTF.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use diffkeeper_tests::btf::kernel_release;
use diffkeeper_tests::mirror::Mirror;
use diffkeeper_tests::mountns::hide_system_btf;
use diffkeeper_tests::scratch::{tree, Scratch};

pub const BIN: &str = env!("CARGO_BIN_EXE_diffkeeper-init");

pub struct Env {
    pub scratch: Scratch,
    pub cache: PathBuf,
    pub baked: PathBuf,
    pub host: PathBuf,
    pub work: PathBuf,
    pub release: String,
}

pub struct Run {
    pub code: i32,
    pub stderr: String,
    pub stdout: String,
}

impl Run {
    /// Asserts the exit code and that stderr mentions every needle.
    pub fn expect(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(self.code, code, "exit code; stderr:\n{}", self.stderr);
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr lacks {needle:?}:\n{}",
                self.stderr
            );
        }
        self
    }
}

impl Env {
    pub fn new(label: &str) -> Env {
        let scratch = Scratch::new(label);
        let host = scratch.dir("host");
        std::fs::create_dir_all(host.join("etc")).unwrap();
        std::fs::write(
            host.join("etc/os-release"),
            "NAME=\"Ubuntu\"\nID=ubuntu\nVERSION_ID=\"22.04\"\nPRETTY_NAME=\"Ubuntu 22.04.3 LTS\"\n",
        )
        .unwrap();
        Env {
            cache: scratch.path().join("cache/btf"),
            baked: scratch.dir("baked"),
            work: scratch.dir("work"),
            host,
            release: kernel_release(),
            scratch,
        }
    }

    /// `/ubuntu/22.04/x86_64/<release>.btf.tar.xz`: where the mirror must serve this kernel.
    pub fn mirror_path(&self) -> String {
        format!("/ubuntu/22.04/x86_64/{}.btf.tar.xz", self.release)
    }

    pub fn cached_btf(&self) -> PathBuf {
        self.cache.join(format!("{}.btf", self.release))
    }

    pub fn status_file(&self) -> PathBuf {
        self.cache.join(format!("{}.json", self.release))
    }

    pub fn status(&self) -> serde_json::Value {
        let bytes = std::fs::read(self.status_file()).expect("status file");
        serde_json::from_slice(&bytes).expect("status file is JSON")
    }

    /// The init command with this layout, short timeouts, no retries, no DIFFKEEPER_* from the
    /// test's own environment, and the system BTF hidden.
    pub fn init(&self) -> Command {
        let mut cmd = self.init_with_system_btf();
        hide_system_btf(&mut cmd);
        cmd
    }

    pub fn init_with_system_btf(&self) -> Command {
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars() {
            // The loopback mirror must be reached directly, whatever proxy the host uses.
            if key.starts_with("DIFFKEEPER_") || key.to_ascii_lowercase().ends_with("_proxy") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(&self.work)
            .arg("--btf-cache-dir")
            .arg(&self.cache)
            .arg("--baked-btf-dir")
            .arg(&self.baked)
            .arg("--host-root")
            .arg(&self.host)
            // Through the environment, so a test's own --timeout/--retries flag wins.
            .env("DIFFKEEPER_BTF_TIMEOUT", "5")
            .env("DIFFKEEPER_BTF_RETRIES", "0");
        cmd
    }

    /// The init command pointed at `mirror` (trusting its CA).
    pub fn init_for(&self, mirror: &Mirror) -> Command {
        let mut cmd = self.init();
        cmd.arg("--btfhub-mirror")
            .arg(mirror.url())
            .arg("--ca-file")
            .arg(mirror.ca_file());
        cmd
    }

    /// What exists under the scratch dir, for "nothing written outside the cache" checks.
    pub fn snapshot(&self) -> Vec<String> {
        tree(self.scratch.path())
    }

    /// Only the lock (and the cache dirs) may have appeared since `before`; no BTF, no temp,
    /// no status, nothing next to the cache.
    pub fn assert_nothing_left(&self, before: &[String]) {
        let allowed = ["cache", "cache/btf", "cache/btf/.lock"];
        let new: Vec<String> = self
            .snapshot()
            .into_iter()
            .filter(|p| !before.contains(p) && !allowed.contains(&p.as_str()))
            .collect();
        assert!(new.is_empty(), "left behind: {new:?}");
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run diffkeeper-init");
    Run {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

pub fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn diffkeeper-init")
}

/// The cached file exists, is a valid BTF and equals `expected` byte for byte.
pub fn assert_cached(path: &Path, expected: &[u8]) {
    diffkeeper_btf::validate::check_file(path).expect("cached BTF is valid");
    let got = std::fs::read(path).unwrap();
    assert!(
        got == expected,
        "cached BTF differs from the source ({} vs {} bytes)",
        got.len(),
        expected.len()
    );
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
