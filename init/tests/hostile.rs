//! Hostile mirrors and archives. Each case must end in a clear error (exit 1 with --required),
//! leave no file in the cache (only the lock) and write nothing outside it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{run, Env, Run};
use diffkeeper_tests::btf::{system_btf_archive, tiny_btf};
use diffkeeper_tests::mirror::{Behaviour, Mirror};
use diffkeeper_tests::tarball::{tar_xz, xz, Entry};

/// Serves `behaviour` for this kernel's archive, runs init (with `extra` flags) and checks
/// that the run failed with `needles` in its log and left nothing behind.
fn expect_failure(
    label: &str,
    behaviour: Behaviour,
    extra: &[&str],
    needles: &[&str],
) -> (Env, Mirror) {
    let env = Env::new(label);
    let mirror = Mirror::https();
    mirror.route(&env.mirror_path(), behaviour);
    let before = env.snapshot();
    let r = run(env.init_for(&mirror).arg("--required").args(extra));
    eprintln!("--- {label}:\n{}", r.stderr); // shown with --nocapture or on failure
    r.expect(1, &["ERROR", "no BTF found"]).expect(1, needles);
    env.assert_nothing_left(&before);
    (env, mirror)
}

fn archive_case(label: &str, archive: Vec<u8>, needles: &[&str]) -> Env {
    expect_failure(label, Behaviour::Serve(Arc::new(archive)), &[], needles).0
}

fn btf_named(release: &str) -> String {
    format!("{release}.btf")
}

#[test]
fn mirror_404() {
    let env = Env::new("404-url");
    let (_, mirror) = expect_failure(
        "404",
        Behaviour::NotFound,
        &[],
        &[
            "btfhub download failed",
            "404",
            &env.mirror_path(),
            "--baked-btf-dir",
            "--disable-btfhub-download",
        ],
    );
    assert_eq!(mirror.requests(), 1, "a 404 is never retried");
    let (_, mirror) = expect_failure(
        "404-retries",
        Behaviour::NotFound,
        &["--retries", "3"],
        &["404"],
    );
    assert_eq!(
        mirror.requests(),
        1,
        "a 404 is never retried, whatever --retries says"
    );
}

#[test]
fn server_error_then_success_is_retried() {
    let env = Env::new("500-then-ok");
    let mirror = Mirror::https();
    let body = system_btf_archive();
    mirror.route(
        &env.mirror_path(),
        Behaviour::FailThenServe { failures: 2, body },
    );
    run(env.init_for(&mirror).args(["--required", "--retries", "2"]))
        .expect(0, &["HTTP 500", "retry 1/2", "retry 2/2", "cached BTF"]);
    assert_eq!(mirror.requests_to(&env.mirror_path()), 3);
}

#[test]
fn server_error_forever() {
    let (_, mirror) = expect_failure(
        "500-forever",
        Behaviour::AlwaysFail(503),
        &["--retries", "2"],
        &["btfhub download failed", "HTTP 503", "after 3 attempt(s)"],
    );
    assert_eq!(mirror.requests(), 3);
}

#[test]
fn redirect_loop() {
    expect_failure(
        "redirect",
        Behaviour::RedirectLoop,
        &["--retries", "2"],
        &["too many redirects"],
    );
}

#[test]
fn connection_reset_mid_body() {
    let (_, mirror) = expect_failure(
        "reset",
        Behaviour::ResetMidBody(system_btf_archive()),
        &["--retries", "1"],
        &["btfhub download failed", "after 2 attempt(s)"],
    );
    assert_eq!(mirror.requests(), 2, "a reset is transient: retried");
}

#[test]
fn stalled_server_times_out() {
    let started = Instant::now();
    expect_failure(
        "stall",
        Behaviour::Stall,
        &["--timeout", "1"],
        &["timed out"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn body_over_download_cap() {
    let cap = ["--max-download-bytes", "1048576"];
    expect_failure(
        "oversized",
        Behaviour::Oversized { len: 8 << 20 },
        &cap,
        &["--max-download-bytes"],
    );
    // Without a Content-Length the cap is enforced while reading.
    expect_failure(
        "endless",
        Behaviour::Endless,
        &cap,
        &["--max-download-bytes"],
    );
}

#[test]
fn xz_bomb_over_extraction_cap() {
    let env = Env::new("bomb-name");
    let bomb = tar_xz(&[Entry::file(&btf_named(&env.release), &vec![0u8; 24 << 20])]);
    assert!(bomb.len() < 64 * 1024, "a bomb is small: {}", bomb.len());
    expect_failure(
        "bomb",
        Behaviour::Serve(Arc::new(bomb)),
        &["--max-btf-bytes", "4194304"],
        &["exceeds the 4194304-byte cap", "--max-btf-bytes"],
    );
}

#[test]
fn truncated_xz() {
    let full = system_btf_archive();
    archive_case(
        "truncated-xz",
        full[..full.len() / 2].to_vec(),
        &["corrupt or truncated"],
    );
    // Cut just before the xz footer: the tar data is complete, only the stream check is missing.
    archive_case(
        "truncated-xz-tail",
        full[..full.len() - 8].to_vec(),
        &["corrupt or truncated"],
    );
}

#[test]
fn not_xz_at_all() {
    archive_case(
        "not-xz",
        b"<html>This is not the archive you want</html>".to_vec(),
        &["not an xz archive"],
    );
}

#[test]
fn tar_without_btf() {
    archive_case(
        "no-btf",
        tar_xz(&[Entry::file("README.md", b"no BTF here\n")]),
        &["no regular *.btf file"],
    );
}

#[test]
fn tar_with_two_btf() {
    let btf = tiny_btf();
    archive_case(
        "two-btf",
        tar_xz(&[
            Entry::file("a/one.btf", &btf),
            Entry::file("b/two.btf", &btf),
        ]),
        &["more than one *.btf", "one.btf", "two.btf"],
    );
}

#[test]
fn dotdot_path() {
    let env = archive_case(
        "dotdot",
        tar_xz(&[Entry::file("../../x.btf", &tiny_btf())]),
        &["../../x.btf", "climbs out"],
    );
    assert!(!env.scratch.path().join("x.btf").exists());
    assert!(!env.cache.parent().unwrap().join("x.btf").exists());
}

#[test]
fn absolute_path() {
    let target = format!(
        "/tmp/diffkeeper-hostile-absolute-{}.btf",
        std::process::id()
    );
    archive_case(
        "absolute",
        tar_xz(&[Entry::file(&target, &tiny_btf())]),
        &["absolute path"],
    );
    assert!(!std::path::Path::new(&target).exists());
}

#[test]
fn symlink_named_btf() {
    archive_case(
        "symlink",
        tar_xz(&[Entry::Symlink {
            path: "x.btf".into(),
            target: "/sys/kernel/btf/vmlinux".into(),
        }]),
        &["\"x.btf\" is a symbolic link"],
    );
}

#[test]
fn symlink_dir_then_file_through_it() {
    let outside = format!("/tmp/diffkeeper-hostile-symdir-{}", std::process::id());
    std::fs::create_dir_all(&outside).unwrap();
    archive_case(
        "symlink-dir",
        tar_xz(&[
            Entry::Symlink {
                path: "d".into(),
                target: outside.clone(),
            },
            Entry::file("d/x.btf", &tiny_btf()),
        ]),
        &["\"d\" is a symbolic link"],
    );
    let leaked: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    std::fs::remove_dir(&outside).unwrap();
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[test]
fn hardlink_entry() {
    archive_case(
        "hardlink",
        tar_xz(&[Entry::Hardlink {
            path: "x.btf".into(),
            target: "/etc/passwd".into(),
        }]),
        &["is a hard link"],
    );
}

#[test]
fn device_node_entry() {
    archive_case(
        "device",
        tar_xz(&[Entry::CharDevice {
            path: "x.btf".into(),
        }]),
        &["is a character device"],
    );
    archive_case(
        "fifo",
        tar_xz(&[Entry::Fifo {
            path: "x.btf".into(),
        }]),
        &["is a fifo"],
    );
}

#[test]
fn btf_that_is_not_btf() {
    let env = Env::new("elf-name");
    archive_case(
        "not-btf",
        tar_xz(&[Entry::file(
            &btf_named(&env.release),
            b"\x7fELF\x02\x01\x01\0 this is an ELF header, not BTF",
        )]),
        &["not a usable BTF", "bad magic"],
    );
}

#[test]
fn truncated_btf() {
    let btf = tiny_btf();
    archive_case(
        "truncated-btf",
        tar_xz(&[Entry::file("x.btf", &btf[..btf.len() - 3])]),
        &["not a usable BTF", "truncated"],
    );
}

#[test]
fn untrusted_tls_certificate() {
    let env = Env::new("untrusted");
    let mirror = Mirror::https();
    mirror.route(&env.mirror_path(), Behaviour::Serve(system_btf_archive()));
    let before = env.snapshot();
    // Same mirror, but its CA is not given: the bundled web roots must not trust it.
    run(env.init().args([
        "--btfhub-mirror",
        &mirror.url(),
        "--required",
        "--retries",
        "2",
    ]))
    .expect(
        1,
        &[
            "btfhub download failed",
            "certificate",
            "--ca-file",
            "after 1 attempt(s)",
        ],
    );
    env.assert_nothing_left(&before);
}

#[test]
fn ca_file_that_is_not_pem() {
    let env = Env::new("bad-ca");
    let mirror = Mirror::https();
    let bad_ca = env.scratch.child("bad-ca.pem");
    std::fs::write(&bad_ca, "not a certificate\n").unwrap();
    let before = env.snapshot();
    run(env
        .init()
        .args(["--btfhub-mirror", &mirror.url(), "--required", "--ca-file"])
        .arg(&bad_ca))
    .expect(
        1,
        &["holds no PEM certificate", &bad_ca.display().to_string()],
    );
    env.assert_nothing_left(&before);
    assert_eq!(mirror.requests(), 0);
}

#[test]
fn http_mirror_without_allow_http() {
    let env = Env::new("http-refused");
    let mirror = Mirror::http();
    let before = env.snapshot();
    let r: Run = run(env
        .init()
        .args(["--btfhub-mirror", &mirror.url(), "--required"]));
    r.expect(2, &["plain http:// mirror", "refused", "--allow-http"]);
    assert_eq!(mirror.requests(), 0);
    env.assert_nothing_left(&before);
    assert!(!env.cache.exists());
}

#[test]
fn unsupported_arch() {
    let (_, mirror) = expect_failure(
        "arch",
        Behaviour::Serve(system_btf_archive()),
        &["--arch", "riscv64"],
        &["unsupported architecture for BTFHub: riscv64"],
    );
    assert_eq!(mirror.requests(), 0);
}

#[test]
fn hostile_release_name() {
    let env = Env::new("release");
    let before = env.snapshot();
    run(env
        .init()
        .args(["--kernel-release", "../../etc/passwd", "--required"]))
    .expect(1, &["not usable as a file name", "--kernel-release"]);
    env.assert_nothing_left(&before);
}

#[test]
fn xz_of_garbage_tar() {
    archive_case(
        "garbage-tar",
        xz(&[0x55u8; 3000]),
        &["corrupt or truncated"],
    );
}
