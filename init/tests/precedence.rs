//! The provisioning order with real components: the kernel's own BTF, a loopback HTTPS BTFHub
//! mirror, real `tar cJf` archives. Steps 2-5 run with `/sys/kernel/btf` hidden.

mod common;

use common::{assert_cached, run, sha256_hex, Env};
use diffkeeper_tests::btf::{system_btf, system_btf_archive, tiny_btf};
use diffkeeper_tests::mirror::{Behaviour, Mirror};
use diffkeeper_tests::scratch::tree;

#[test]
fn system_btf_present_writes_nothing() {
    let env = Env::new("system");
    let mirror = Mirror::https();
    let mut cmd = env.init_with_system_btf();
    cmd.arg("--btfhub-mirror")
        .arg(mirror.url())
        .arg("--required");
    run(&mut cmd).expect(
        0,
        &["system BTF /sys/kernel/btf/vmlinux is present and valid"],
    );
    assert!(
        !env.cache.exists(),
        "cache dir was created: {:?}",
        tree(&env.cache)
    );
    assert_eq!(mirror.requests(), 0);
}

#[test]
fn another_kernels_release_is_provisioned_despite_system_btf() {
    // Pre-populating a cache for other nodes: this kernel's BTF must not stand in for theirs.
    let env = Env::new("other-release");
    let other = "5.15.0-92-generic";
    let mirror = Mirror::https();
    let path = format!("/ubuntu/22.04/x86_64/{other}.btf.tar.xz");
    mirror.route(&path, Behaviour::Serve(system_btf_archive()));
    let mut cmd = env.init_with_system_btf();
    cmd.arg("--btfhub-mirror")
        .arg(mirror.url())
        .arg("--ca-file")
        .arg(mirror.ca_file())
        .args(["--kernel-release", other, "--required"]);
    run(&mut cmd).expect(0, &["differs from the running kernel"]);
    assert_cached(&env.cache.join(format!("{other}.btf")), &system_btf());
    assert_eq!(mirror.requests_to(&path), 1);
}

#[test]
fn download_and_cache_btf() {
    let env = Env::new("download");
    let mirror = Mirror::https();
    mirror.route(&env.mirror_path(), Behaviour::Serve(system_btf_archive()));
    let r = run(env.init_for(&mirror).arg("--required"));
    r.expect(0, &["no system BTF", "downloading", "cached BTF"]);
    let btf = system_btf();
    assert_cached(&env.cached_btf(), &btf);
    assert_eq!(mirror.requests_to(&env.mirror_path()), 1);

    let status = env.status();
    let url = format!("{}{}", mirror.url(), env.mirror_path());
    assert_eq!(status["source"], "download");
    assert_eq!(status["origin"], url.as_str());
    assert_eq!(status["sha256"], sha256_hex(&btf).as_str());
    assert_eq!(status["size"], btf.len() as u64);
    assert_eq!(status["kernel_release"], env.release.as_str());
    assert_eq!(status["distro"], "ubuntu");
    assert_eq!(status["version"], "22.04");
    assert_eq!(status["arch"], "x86_64");
    let time = status["time"].as_str().unwrap();
    assert!(
        time.starts_with("20") && time.ends_with('Z') && time.len() == 20,
        "{time}"
    );
    let mut names = tree(&env.cache);
    names.retain(|n| n != ".lock");
    assert_eq!(
        names,
        [
            format!("{}.btf", env.release),
            format!("{}.json", env.release)
        ]
    );
}

#[test]
fn cache_hit_makes_no_request() {
    let env = Env::new("cache-hit");
    let mirror = Mirror::https();
    mirror.route(&env.mirror_path(), Behaviour::Serve(system_btf_archive()));
    run(env.init_for(&mirror).arg("--required")).expect(0, &[]);
    assert_eq!(mirror.requests(), 1);
    let status_before = std::fs::read(env.status_file()).unwrap();

    // Second start (e.g. a pod restart on the same node): no network, nothing rewritten.
    run(env.init_for(&mirror).arg("--required")).expect(0, &["is valid: nothing to download"]);
    assert_eq!(mirror.requests(), 1, "cache hit must not touch the mirror");
    assert_eq!(std::fs::read(env.status_file()).unwrap(), status_before);

    // Even an architecture BTFHub lacks is fine when nothing needs downloading.
    run(env
        .init_for(&mirror)
        .args(["--arch", "riscv64", "--required"]))
    .expect(0, &[]);
    assert_eq!(mirror.requests(), 1);
}

#[test]
fn hand_placed_cache_file_gets_a_status() {
    let env = Env::new("cache-manual");
    std::fs::create_dir_all(&env.cache).unwrap();
    std::fs::write(env.cached_btf(), tiny_btf()).unwrap();
    run(env.init().args(["--disable-btfhub-download", "--required"])).expect(0, &[]);
    let status = env.status();
    assert_eq!(status["source"], "cache");
    assert_eq!(status["sha256"], sha256_hex(&tiny_btf()).as_str());
}

#[test]
fn invalid_cache_file_is_replaced() {
    let env = Env::new("cache-invalid");
    std::fs::create_dir_all(&env.cache).unwrap();
    std::fs::write(
        env.cached_btf(),
        b"garbage that is long enough, but not BTF",
    )
    .unwrap();
    let mirror = Mirror::https();
    mirror.route(&env.mirror_path(), Behaviour::Serve(system_btf_archive()));
    run(env.init_for(&mirror).arg("--required"))
        .expect(0, &["cached BTF is unusable", "bad magic", "replacing it"]);
    assert_cached(&env.cached_btf(), &system_btf());
    assert_eq!(env.status()["source"], "download");
}

#[test]
fn baked_btf_file() {
    let env = Env::new("baked-btf");
    let mirror = Mirror::https();
    let baked = env.baked.join(format!("{}.btf", env.release));
    std::fs::write(&baked, &*system_btf()).unwrap();
    run(env.init_for(&mirror).arg("--required")).expect(0, &["cached BTF"]);
    assert_cached(&env.cached_btf(), &system_btf());
    assert_eq!(mirror.requests(), 0, "a baked BTF wins over the download");
    let status = env.status();
    assert_eq!(status["source"], "baked");
    assert_eq!(status["origin"], baked.display().to_string().as_str());
}

#[test]
fn baked_archive() {
    let env = Env::new("baked-archive");
    let baked = env.baked.join(format!("{}.btf.tar.xz", env.release));
    std::fs::write(&baked, &*system_btf_archive()).unwrap();
    run(env.init().args(["--disable-btfhub-download", "--required"])).expect(0, &[]);
    assert_cached(&env.cached_btf(), &system_btf());
    assert_eq!(env.status()["origin"], baked.display().to_string().as_str());
}

#[test]
fn baked_btfhub_tree() {
    let env = Env::new("baked-tree");
    let baked = env.baked.join(env.mirror_path().trim_start_matches('/'));
    std::fs::create_dir_all(baked.parent().unwrap()).unwrap();
    std::fs::write(&baked, &*system_btf_archive()).unwrap();
    run(env.init().args(["--disable-btfhub-download", "--required"])).expect(0, &[]);
    assert_cached(&env.cached_btf(), &system_btf());
    let status = env.status();
    assert_eq!(status["source"], "baked");
    assert_eq!(status["origin"], baked.display().to_string().as_str());
}

#[test]
fn invalid_baked_file_falls_through_to_download() {
    let env = Env::new("baked-invalid");
    std::fs::write(
        env.baked.join(format!("{}.btf", env.release)),
        b"not a BTF at all, though long enough for a header",
    )
    .unwrap();
    let mirror = Mirror::https();
    mirror.route(&env.mirror_path(), Behaviour::Serve(system_btf_archive()));
    run(env.init_for(&mirror).arg("--required")).expect(0, &["not used", "bad magic"]);
    assert_eq!(env.status()["source"], "download");
}

#[test]
fn file_mirror() {
    let env = Env::new("file-mirror");
    let root = env.scratch.dir("mirror");
    let archive = root.join(env.mirror_path().trim_start_matches('/'));
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    std::fs::write(&archive, &*system_btf_archive()).unwrap();
    let url = format!("file://{}", root.display());
    run(env.init().args(["--btfhub-mirror", &url, "--required"])).expect(0, &[]);
    assert_cached(&env.cached_btf(), &system_btf());
    assert_eq!(
        env.status()["origin"],
        format!("{url}{}", env.mirror_path()).as_str()
    );
}

#[test]
fn plain_http_mirror_with_allow_http() {
    let env = Env::new("http-allowed");
    let mirror = Mirror::http();
    mirror.route(&env.mirror_path(), Behaviour::Serve(system_btf_archive()));
    run(env.init().args([
        "--btfhub-mirror",
        &mirror.url(),
        "--allow-http",
        "--required",
    ]))
    .expect(0, &[]);
    assert_cached(&env.cached_btf(), &system_btf());
}

#[test]
fn nothing_found_warns_naming_every_place_and_exits_0() {
    let env = Env::new("nothing");
    let mirror = Mirror::https();
    let r = run(&mut env.init_for(&mirror));
    let baked = env.baked.display().to_string();
    r.expect(
        0,
        &[
            "no BTF found for kernel",
            "system BTF /sys/kernel/btf/vmlinux: absent",
            &format!("cache {}: absent", env.cached_btf().display()),
            &format!("baked {baked}/{}.btf: absent", env.release),
            &format!("baked {baked}/{}.btf.tar.xz: absent", env.release),
            &format!(
                "baked {baked}/ubuntu/22.04/x86_64/{}.btf: absent",
                env.release
            ),
            &format!("BTFHub mirror {}{}", mirror.url(), env.mirror_path()),
            "btfhub download failed",
            "WARN",
        ],
    );
    assert!(!env.cached_btf().exists());
}

#[test]
fn nothing_found_with_required_exits_1() {
    let env = Env::new("nothing-required");
    run(env.init().args(["--disable-btfhub-download", "--required"]))
        .expect(1, &["no BTF found", "BTFHub download: disabled", "ERROR"]);
}

#[test]
fn unknown_distro_skips_the_download_and_says_why() {
    let env = Env::new("no-distro");
    std::fs::remove_file(env.host.join("etc/os-release")).unwrap();
    let mirror = Mirror::https();
    run(env
        .init_for(&mirror)
        .args(["--kernel-release", "6.99.0-custom", "--required"]))
    .expect(1, &["host distro/version is unknown", "--host-root"]);
    assert_eq!(mirror.requests(), 0);
}
