//! The command line of the real binary: help, version, usage errors (exit 2), and flag >
//! environment > default precedence as seen from outside.

mod common;

use common::{assert_cached, run, Env, BIN};
use diffkeeper_tests::btf::tiny_btf;
use diffkeeper_tests::doc_flags;
use std::process::Command;

/// Arguments, environment, and what the usage error must mention.
type UsageCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn help_lists_every_flag_with_env_and_default() {
    let r = run(Command::new(BIN).arg("--help"));
    assert_eq!(r.code, 0);
    for needle in [
        "--btf-cache-dir",
        "DIFFKEEPER_BTF_CACHE_DIR",
        "/var/cache/diffkeeper/btf",
        "--baked-btf-dir",
        "DIFFKEEPER_BTF_BAKED_DIR",
        "/opt/diffkeeper/btf",
        "--btfhub-mirror",
        "DIFFKEEPER_BTF_MIRROR",
        "https://github.com/aquasecurity/btfhub-archive/raw/main",
        "--disable-btfhub-download",
        "DIFFKEEPER_BTF_ALLOW_DOWNLOAD=0",
        "--ca-file",
        "DIFFKEEPER_BTF_CA_FILE",
        "--allow-http",
        "DIFFKEEPER_BTF_ALLOW_HTTP=1",
        "--host-root",
        "DIFFKEEPER_HOST_ROOT",
        "--kernel-release",
        "DIFFKEEPER_KERNEL_RELEASE",
        "--arch",
        "DIFFKEEPER_ARCH",
        "--timeout",
        "DIFFKEEPER_BTF_TIMEOUT",
        "--max-download-bytes",
        "--max-btf-bytes",
        "--required",
        "DIFFKEEPER_BTF_REQUIRED=1",
        "--debug",
        "DIFFKEEPER_DEBUG=1",
        "--version",
    ] {
        assert!(
            r.stdout.contains(needle),
            "--help lacks {needle}:\n{}",
            r.stdout
        );
    }
}

#[test]
fn docs_flag_table_matches_help() {
    let r = run(Command::new(BIN).arg("--help"));
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/init.md"))
        .expect("read docs/init.md");
    let problems = doc_flags::disagreements(
        &doc_flags::doc_flags(&doc, "## Command line"),
        &doc_flags::help_flags(&r.stdout),
    );
    assert!(problems.is_empty(), "docs/init.md vs --help: {problems:#?}");
}

#[test]
fn version() {
    let r = run(Command::new(BIN).arg("--version"));
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout.trim(),
        format!("diffkeeper-init {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_usage_exits_2_naming_the_culprit() {
    let cases: &[UsageCase] = &[
        (&["--no-such-flag"], &[], "--no-such-flag"),
        (&["--timeout", "soon"], &[], "--timeout"),
        (&["--btfhub-mirror"], &[], "--btfhub-mirror"),
        (
            &[],
            &[("DIFFKEEPER_BTF_REQUIRED", "sometimes")],
            "DIFFKEEPER_BTF_REQUIRED",
        ),
        (
            &[],
            &[("DIFFKEEPER_BTF_MIRROR", "ftp://mirror.example/btfhub")],
            "ftp://",
        ),
    ];
    for (args, env, needle) in cases {
        let mut cmd = Command::new(BIN);
        cmd.args(*args).env_remove("DIFFKEEPER_BTF_REQUIRED");
        for (k, v) in *env {
            cmd.env(k, v);
        }
        let r = run(&mut cmd);
        assert_eq!(r.code, 2, "{args:?} {env:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn flag_beats_env_for_the_cache_dir() {
    let env = Env::new("cli-precedence");
    std::fs::write(env.baked.join(format!("{}.btf", env.release)), tiny_btf()).unwrap();
    let env_cache = env.scratch.path().join("env-cache");
    // The cache dir from the environment is used when no flag is given...
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&env.work)
        .env("DIFFKEEPER_BTF_CACHE_DIR", &env_cache)
        .env("DIFFKEEPER_BTF_BAKED_DIR", &env.baked)
        .env("DIFFKEEPER_HOST_ROOT", &env.host)
        .env("DIFFKEEPER_BTF_ALLOW_DOWNLOAD", "false")
        .env("DIFFKEEPER_BTF_REQUIRED", "1");
    diffkeeper_tests::mountns::hide_system_btf(&mut cmd);
    run(&mut cmd).expect(0, &[]);
    assert_cached(&env_cache.join(format!("{}.btf", env.release)), &tiny_btf());
    // ...and the flag wins over it.
    run(cmd.arg("--btf-cache-dir").arg(&env.cache)).expect(0, &[]);
    assert_cached(&env.cached_btf(), &tiny_btf());
}

#[test]
fn env_disables_download_and_required_turns_nothing_into_exit_1() {
    let env = Env::new("cli-env");
    let mut cmd = env.init();
    cmd.env("DIFFKEEPER_BTF_ALLOW_DOWNLOAD", "0")
        .env("DIFFKEEPER_BTF_REQUIRED", "true");
    run(&mut cmd).expect(1, &["BTFHub download: disabled"]);
    // --required=false on the command line beats the environment.
    run(cmd.arg("--required=false")).expect(0, &["continuing without a BTF"]);
}
