//! The sidecar never downloads anything: no HTTP client may be in its dependency tree.

use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "ureq",
    "ureq-proto",
    "reqwest",
    "hyper",
    "hyper-util",
    "curl",
    "curl-sys",
    "http",
    "http-body",
    "h2",
    "isahc",
    "attohttpc",
    "minreq",
    "surf",
    "ehttp",
];

#[test]
fn the_sidecar_links_no_http_client() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "tree",
            "--locked",
            "-p",
            "diffkeeper-sidecar",
            "-e",
            "normal",
        ])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} tree: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // The listing is real: the sidecar's own dependencies are in it.
    for expected in ["diffkeeper-sidecar", "aya", "inotify"] {
        assert!(
            crates.contains(&expected),
            "{expected} missing from:\n{tree}"
        );
    }
    let found: Vec<&&str> = crates.iter().filter(|c| FORBIDDEN.contains(c)).collect();
    assert!(
        found.is_empty(),
        "HTTP client crates in the sidecar: {found:?}\n{tree}"
    );
}
