//! The deployment guide's air-gapped command line, end to end: the sidecar gets the same
//! download flags and variables as diffkeeper-init, the node has no system BTF (hidden in a
//! private mount namespace), and the BTF comes from a read-only directory of baked `.btf` files
//! used directly as `--btf-cache-dir`. Real eBPF on this kernel; needs root.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diffkeeper_tests::btf::{kernel_release, system_btf};
use diffkeeper_tests::mountns::hide_system_btf_with_read_only;
use diffkeeper_tests::scratch::Scratch;
use diffkeeper_tests::sidecar::SidecarProcess;

const SIDECAR: &str = env!("CARGO_BIN_EXE_diffkeeper-sidecar");

#[test]
fn air_gapped_command_line_attaches_ebpf_from_a_read_only_baked_dir() {
    let scratch = Scratch::new("air-gapped");
    let baked = scratch.dir("opt/diffkeeper/btf");
    let baked_file = baked.join(format!("{}.btf", kernel_release()));
    std::fs::write(&baked_file, system_btf().as_slice()).unwrap();
    let state = scratch.dir("state");
    let tmp = scratch.dir("tmp");
    let journal = scratch.path().join("journal.jsonl");

    let mut cmd = Command::new(SIDECAR);
    cmd.arg("--state-dir")
        .arg(&state)
        .arg(format!("--btf-cache-dir={}", baked.display()))
        .arg("--disable-btfhub-download")
        .arg("--btfhub-mirror")
        .arg("https://btf-mirror.internal.example/btfhub-archive")
        .arg("--journal")
        .arg(&journal)
        .arg("--coalesce-ms=0")
        .env("DIFFKEEPER_BTF_ALLOW_DOWNLOAD", "0")
        .env("DIFFKEEPER_BTF_MIRROR", "https://other.example/")
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null());
    hide_system_btf_with_read_only(&mut cmd, &baked);
    let mut sidecar = SidecarProcess::spawn(&mut cmd).unwrap();
    let backend = sidecar
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", sidecar.log()));
    // This kernel has no kprobes; auto with a cached BTF skips fentry: tracepoint remains.
    assert_eq!(backend, "tracepoint", "{}", sidecar.log());
    let log = sidecar.log();
    assert!(
        log.contains(&format!("BTF from cache ({})", baked_file.display())),
        "{log}"
    );
    assert!(
        log.contains(
            "--btfhub-mirror, --disable-btfhub-download given: ignored, the sidecar never downloads BTF"
        ),
        "{log}"
    );
    // The baked dir is read-only: the canary directory went to $TMPDIR.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 1, "{log}");

    std::fs::write(state.join("offline.txt"), b"written on an air-gapped node").unwrap();
    let want = format!("\"path\":\"{}\"", state.join("offline.txt").display());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .contains(&want)
    {
        assert!(Instant::now() < deadline, "no journal line with {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = sidecar.terminate();
    assert!(status.is_some_and(|s| s.success()), "{}", sidecar.log());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(&baked).unwrap().count(), 1);
}
