//! The BTF bundle as diffkeeper-init sees it: real bundles made by diffkeeper-btfgen (from this
//! kernel's BTF, `tar cJf`, the committed eBPF objects and bpftool), hostile ones written byte by
//! byte, and its place in the order: after the cache, before the baked files and the mirror.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run, sha256_hex, Env};
use diffkeeper_btf::bundle::{encode, PlannedEntry, HEADER_LEN};
use diffkeeper_btfgen::{generate, Options};
use diffkeeper_tests::btf::{system_btf, system_btf_archive};
use diffkeeper_tests::mirror::{Behaviour, Mirror};
use diffkeeper_tests::scratch::{tree, Scratch};
use diffkeeper_tests::tarball::{tar_cjf, xz};

/// A real bundle with this kernel under `distro/version/x86_64`; returns its path.
fn real_bundle(dir: &Scratch, keys: &[&str]) -> PathBuf {
    let archive = dir.dir("btfhub");
    let release = diffkeeper_tests::btf::kernel_release();
    let packed = tar_cjf(&[(&format!("{release}.btf"), &system_btf())]);
    for prefix in keys {
        let path = archive.join(format!("{prefix}/{release}.btf.tar.xz"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &packed).unwrap();
    }
    let out = dir.child("made/bundle.dkbtf");
    generate(&Options {
        archive,
        objects: Path::new(env!("CARGO_MANIFEST_DIR")).join("../ebpf/obj"),
        out: out.clone(),
        bpftool: "bpftool".into(),
        jobs: 2,
    })
    .unwrap();
    out
}

fn key(env: &Env) -> String {
    format!("ubuntu/22.04/x86_64/{}", env.release)
}

/// The minimised BTF the real bundle holds for this kernel.
fn min_btf(bundle: &[u8]) -> Vec<u8> {
    let key_len = u16::from_le_bytes([bundle[HEADER_LEN], bundle[HEADER_LEN + 1]]) as usize;
    let at = HEADER_LEN + 2 + key_len;
    let offset = u64::from_le_bytes(bundle[at..at + 8].try_into().unwrap()) as usize;
    let stored = u32::from_le_bytes(bundle[at + 8..at + 12].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    std::io::Read::read_to_end(
        &mut xz2::read::XzDecoder::new(&bundle[offset..offset + stored]),
        &mut out,
    )
    .unwrap();
    out
}

#[test]
fn bundle_beats_baked_and_mirror() {
    let env = Env::new("bundle-first");
    let made = real_bundle(&env.scratch, &["ubuntu/22.04/x86_64", "debian/12/x86_64"]);
    // The default --btf-bundle: <baked dir>/bundle.dkbtf, next to a baked file for this kernel.
    std::fs::copy(&made, env.baked.join("bundle.dkbtf")).unwrap();
    std::fs::write(
        env.baked.join(format!("{}.btf", env.release)),
        &*system_btf(),
    )
    .unwrap();
    let mirror = Mirror::https();
    mirror.route(&env.mirror_path(), Behaviour::Serve(system_btf_archive()));
    let before = env.snapshot();

    let r = run(env.init_for(&mirror).arg("--required"));
    r.expect(0, &["no system BTF", "cached BTF"]);
    assert_eq!(mirror.requests(), 0, "the bundle had it: no request");
    let min = min_btf(&std::fs::read(&made).unwrap());
    let cached = std::fs::read(env.cached_btf()).unwrap();
    assert!(cached == min, "cached file is not the bundle's entry");
    assert!(
        cached.len() < system_btf().len() / 100,
        "{} bytes",
        cached.len()
    );
    let status = env.status();
    assert_eq!(status["source"], "bundle");
    assert_eq!(status["entry"], key(&env).as_str());
    let origin = format!("{}#{}", env.baked.join("bundle.dkbtf").display(), key(&env));
    assert_eq!(status["origin"], origin.as_str());
    assert_eq!(status["sha256"], sha256_hex(&min).as_str());

    // bpftool reads what init cached.
    let dump = Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(env.cached_btf())
        .output()
        .unwrap();
    assert!(dump.status.success());
    assert!(String::from_utf8_lossy(&dump.stdout).contains("STRUCT 'dentry'"));

    // Only the cache's files appeared.
    let mut new: Vec<String> = env
        .snapshot()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    new.sort();
    let rel = |n: &str| format!("cache/btf/{}.{n}", env.release);
    assert_eq!(
        new,
        [
            "cache",
            "cache/btf",
            "cache/btf/.lock",
            &rel("btf"),
            &rel("json")
        ]
    );
}

#[test]
fn cache_hit_beats_bundle() {
    let env = Env::new("bundle-cache-hit");
    let made = real_bundle(&env.scratch, &["ubuntu/22.04/x86_64"]);
    std::fs::create_dir_all(&env.cache).unwrap();
    std::fs::write(env.cached_btf(), &*system_btf()).unwrap();
    let r = run(env
        .init()
        .arg("--btf-bundle")
        .arg(&made)
        .args(["--disable-btfhub-download", "--required"]));
    r.expect(0, &["is valid: nothing to download"]);
    assert!(std::fs::read(env.cached_btf()).unwrap() == *system_btf());
    assert_eq!(env.status()["source"], "cache");
}

#[test]
fn missing_entry_and_missing_bundle_are_listed() {
    let env = Env::new("bundle-missing");
    let made = real_bundle(&env.scratch, &["debian/12/x86_64"]);
    let r = run(env
        .init()
        .arg("--btf-bundle")
        .arg(&made)
        .args(["--disable-btfhub-download", "--required"]));
    let needle = format!("no entry {} among its 1", key(&env));
    r.expect(1, &[&needle, "no BTF found"]);
    let r = run(env
        .init()
        .args(["--btf-bundle", "/nonexistent/b.dkbtf"])
        .args(["--disable-btfhub-download", "--required"]));
    r.expect(1, &["bundle /nonexistent/b.dkbtf: absent"]);
    assert!(!env.cached_btf().exists());
}

/// One-entry bundle for this kernel holding `btf` (compressed as is), with `patch` applied to
/// the index record's fixed fields (offset, stored length, BTF length) before writing.
fn crafted(env: &Env, btf: &[u8], patch: impl Fn(&mut [u8], usize)) -> Vec<u8> {
    let entry = PlannedEntry {
        key: key(env),
        blob: 0,
        btf_len: btf.len() as u32,
        sha256: sha2_of(btf),
    };
    let mut bytes = encode(&[entry], &[xz(btf)]).unwrap();
    patch(&mut bytes, HEADER_LEN + 2 + key(env).len());
    bytes
}

fn sha2_of(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[test]
fn hostile_bundles_name_the_problem_and_provisioning_goes_on() {
    let env = Env::new("bundle-hostile");
    let good = std::fs::read(real_bundle(&env.scratch, &["ubuntu/22.04/x86_64"])).unwrap();
    let min = min_btf(&good);
    let entry = format!("entry {}", key(&env));
    let index_claim = format!(
        "{}-byte index but the file has 16 bytes",
        2 + key(&env).len() + 48
    );
    let past_claim = format!(
        "decompresses to more than {0} bytes, the index says {0}",
        min.len() - 1
    );
    let mut flipped = crafted(&env, &min, |_, _| {});
    let last = flipped.len() - 20;
    flipped[last] ^= 0xff;
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "truncated",
            good[..good.len() - 7].to_vec(),
            vec!["index record 0", "truncated"],
        ),
        (
            "header only",
            good[..HEADER_LEN].to_vec(),
            vec![&index_claim, "truncated"],
        ),
        (
            "empty",
            Vec::new(),
            vec!["shorter than the 16-byte bundle header"],
        ),
        (
            "not a bundle",
            b"PK\x03\x04 a zip, not a bundle".to_vec(),
            vec!["not a diffkeeper BTF bundle"],
        ),
        (
            "offset into the index",
            crafted(&env, &min, |b, at| {
                b[at..at + 8].copy_from_slice(&3u64.to_le_bytes())
            }),
            vec!["index record 0", "points at bytes 3.."],
        ),
        (
            "offset past the end",
            crafted(&env, &min, |b, at| {
                b[at..at + 8].copy_from_slice(&(u64::MAX - 1).to_le_bytes())
            }),
            vec!["index record 0", "truncated or corrupt"],
        ),
        (
            "entry not BTF",
            crafted(&env, b"a text file where a BTF should be", |_, _| {}),
            vec![&entry, "not a usable BTF", "bad magic"],
        ),
        (
            "length lies",
            crafted(&env, &min, |b, at| {
                let n = u32::from_le_bytes(b[at + 12..at + 16].try_into().unwrap()) + 1;
                b[at + 12..at + 16].copy_from_slice(&n.to_le_bytes());
            }),
            vec![&entry, "decompressed to"],
        ),
        (
            "inflates past its claimed length",
            crafted(&env, &min, |b, at| {
                b[at + 12..at + 16].copy_from_slice(&(min.len() as u32 - 1).to_le_bytes());
            }),
            vec![&entry, &past_claim],
        ),
        ("corrupt blob", flipped, vec![&entry, "corrupt"]),
        (
            "oversize claim",
            crafted(&env, &min, |b, at| {
                b[at + 12..at + 16].copy_from_slice(&u32::MAX.to_le_bytes())
            }),
            vec!["index record 0", "claims a 4294967295-byte BTF"],
        ),
    ];
    // A baked file for this kernel: provisioning must go on to it after the bundle fails.
    std::fs::write(
        env.baked.join(format!("{}.btf", env.release)),
        &*system_btf(),
    )
    .unwrap();
    let bundle = env.scratch.child("hostile/bundle.dkbtf");
    for (label, bytes, needles) in &cases {
        std::fs::write(&bundle, bytes).unwrap();
        let _ = std::fs::remove_dir_all(&env.cache);
        let r = run(env
            .init()
            .arg("--btf-bundle")
            .arg(&bundle)
            .args(["--disable-btfhub-download", "--required"]));
        let mut all = vec!["bundle", "trying the next source", "rebuild the bundle"];
        all.extend(needles.iter().copied());
        assert_eq!(r.code, 0, "{label}: {}", r.stderr);
        for needle in &all {
            assert!(
                r.stderr.contains(needle),
                "{label}: lacks {needle:?}:\n{}",
                r.stderr
            );
        }
        assert_eq!(env.status()["source"], "baked", "{label}");
        let left: Vec<String> = tree(&env.cache)
            .into_iter()
            .filter(|n| n != ".lock")
            .collect();
        assert_eq!(left.len(), 2, "{label}: {left:?}");
    }

    // A BTF over --max-btf-bytes is refused before it is decompressed.
    std::fs::write(&bundle, &good).unwrap();
    let _ = std::fs::remove_dir_all(&env.cache);
    let r = run(env.init().arg("--btf-bundle").arg(&bundle).args([
        "--max-btf-bytes",
        "100",
        "--disable-btfhub-download",
        "--required",
    ]));
    assert!(
        r.stderr.contains(&entry) && r.stderr.contains("over the 100-byte cap"),
        "{}",
        r.stderr
    );
}
