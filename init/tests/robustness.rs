//! Crash safety (kill -9 at any moment) and concurrency (many inits on one cache).

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{assert_cached, run, spawn, Env};
use diffkeeper_tests::btf::{system_btf, system_btf_archive};
use diffkeeper_tests::mirror::{Behaviour, Mirror};
use diffkeeper_tests::scratch::tree;

/// The cache holds nothing or a complete, valid BTF (and its status): never a partial file.
fn assert_cache_consistent(env: &Env, expected: &[u8]) {
    for name in tree(&env.cache) {
        let path = env.cache.join(&name);
        if name == format!("{}.btf", env.release) {
            assert_cached(&path, expected);
        } else if name == format!("{}.json", env.release) {
            let status: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
                .expect("complete status JSON");
            assert_eq!(status["size"], expected.len() as u64);
        } else {
            // A named temp can only exist in the instant between link and rename; the next
            // writer removes it under the lock. Anything else is a bug.
            assert!(
                name == ".lock" || name.starts_with(".tmp-"),
                "unexpected cache entry {name}"
            );
        }
    }
}

#[test]
fn kill_9_never_leaves_a_partial_file() {
    let env = Env::new("crash");
    let mirror = Mirror::https();
    let archive = system_btf_archive();
    let btf = system_btf();
    // About 1.2 s per download, so kills land before, during and after the transfer.
    let chunk = archive.len() / 24 + 1;
    mirror.route(
        &env.mirror_path(),
        Behaviour::Trickle {
            body: archive.clone(),
            chunk,
            delay: Duration::from_millis(50),
        },
    );
    let kills: usize = 14;
    let (mut finished_early, mut completed) = (0, 0);
    for i in 0..kills {
        // Spread the kill points over the whole run, including the extraction after the body.
        let delay = Duration::from_millis((100 + i * 1700 / kills) as u64);
        let mut child = spawn(env.init_for(&mirror).arg("--required"));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            finished_early += 1;
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        assert_cache_consistent(&env, &btf);
        if env.cached_btf().exists() {
            completed += 1;
            // A finished run: start from an empty cache again to keep killing mid-write.
            std::fs::remove_file(env.cached_btf()).unwrap();
            let _ = std::fs::remove_file(env.status_file());
        }
    }
    eprintln!("{kills} kills: {completed} found a complete cache, {finished_early} had exited");
    assert!(finished_early < kills, "no run was killed mid-way");

    run(env.init_for(&mirror).arg("--required")).expect(0, &["cached BTF"]);
    assert_cache_consistent(&env, &btf);
    assert_cached(&env.cached_btf(), &btf);
    let leftovers: Vec<String> = tree(&env.cache)
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "stale temp files survived a full run: {leftovers:?}"
    );
}

#[test]
fn sixteen_concurrent_inits_download_once() {
    let env = Env::new("concurrent");
    let mirror = Mirror::https();
    let archive = system_btf_archive();
    // Slow enough that all 16 are running while the first one downloads.
    mirror.route(
        &env.mirror_path(),
        Behaviour::Trickle {
            chunk: archive.len() / 10 + 1,
            body: archive,
            delay: Duration::from_millis(50),
        },
    );
    let started = Instant::now();
    let children: Vec<_> = (0..16)
        .map(|_| spawn(env.init_for(&mirror).arg("--required")))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(mirror.requests(), 1, "exactly one download for 16 inits");
    assert_cached(&env.cached_btf(), &system_btf());
    assert_eq!(env.status()["source"], "download");
    let mut names = tree(&env.cache);
    names.retain(|n| n != ".lock");
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
}
