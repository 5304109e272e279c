//! btfgen on real inputs: archives made with `tar cJf` from this kernel's BTF (and from the VM
//! harness's Debian kernels when they are cached), the committed eBPF objects, the real bpftool.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use diffkeeper_btf::bundle::{parse_header, parse_index, HEADER_LEN};
use diffkeeper_btfgen::{generate, BtfgenError, ExtractError, Options, Report, SkipReason};
use diffkeeper_tests::btf::{kernel_release, system_btf};
use diffkeeper_tests::scratch::Scratch;
use diffkeeper_tests::tarball::{tar_cjf, tar_xz, Entry};

fn objects_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ebpf/obj")
}

fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// This kernel under two distros, plus the three kinds of broken entry.
fn archive(root: &Path) -> String {
    let release = kernel_release();
    let name = format!("{release}.btf");
    let good = tar_cjf(&[(&name, &system_btf())]);
    put(root, &format!("ubuntu/22.04/x86_64/{name}.tar.xz"), &good);
    put(root, &format!("debian/12/x86_64/{name}.tar.xz"), &good);
    put(
        root,
        "debian/12/x86_64/0.0.0-cut.btf.tar.xz",
        &good[..good.len() / 2],
    );
    put(
        root,
        "debian/12/x86_64/0.0.0-text.btf.tar.xz",
        &tar_cjf(&[("0.0.0-text.btf", b"hello, not BTF\n")]),
    );
    put(root, &format!("debian/12/amd64/{name}.tar.xz"), &good);
    put(root, "README.md", b"not a kernel\n");
    put(root, ".git/x/y/z/a.btf.tar.xz", b"hidden");
    release
}

fn run(archive: &Path, objects: &Path, out: &Path) -> Result<Report, BtfgenError> {
    generate(&Options {
        archive: archive.into(),
        objects: objects.into(),
        out: out.into(),
        bpftool: "bpftool".into(),
        jobs: 2,
    })
}

fn keys(bundle: &[u8]) -> Vec<(String, u64, u32)> {
    let (count, index_len) = parse_header(bundle, bundle.len() as u64).unwrap();
    let index = &bundle[HEADER_LEN..HEADER_LEN + index_len as usize];
    parse_index(index, count, bundle.len() as u64)
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.offset, e.btf_len))
        .collect()
}

#[test]
fn bundle_of_this_kernel_skips_broken_entries_and_is_reproducible() {
    let dir = Scratch::new("btfgen");
    let root = dir.dir("archive");
    let release = archive(&root);
    let out = dir.child("out/bundle.dkbtf");
    let report = run(&root, &objects_dir(), &out).unwrap();

    let made: Vec<&str> = report.made.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        made,
        [
            format!("debian/12/x86_64/{release}"),
            format!("ubuntu/22.04/x86_64/{release}")
        ]
    );
    assert_eq!(report.blobs, 1, "identical minimised BTFs share one blob");
    let skipped: Vec<String> = report
        .skipped
        .iter()
        .map(|s| format!("{} | {}", s.path.display(), s.reason))
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:#?}");
    for (needle, reason) in [
        ("0.0.0-cut", "truncated"),
        ("0.0.0-text", "not a BTF"),
        ("/amd64/", "arch dir \"amd64\""),
    ] {
        assert!(
            skipped
                .iter()
                .any(|s| s.contains(needle) && s.contains(reason)),
            "{needle}: {skipped:#?}"
        );
    }
    let reason_of = |needle: &str| {
        let s = report
            .skipped
            .iter()
            .find(|s| s.path.to_string_lossy().contains(needle));
        &s.unwrap().reason
    };
    assert!(
        matches!(
            reason_of("0.0.0-cut"),
            SkipReason::Extract(ExtractError::Corrupt(_))
        ),
        "{skipped:#?}"
    );
    assert!(
        matches!(reason_of("0.0.0-text"), SkipReason::KernelNotBtf(_)),
        "{skipped:#?}"
    );
    assert!(
        matches!(reason_of("/amd64/"), SkipReason::UnknownArch { arch } if arch == "amd64"),
        "{skipped:#?}"
    );

    let bytes = std::fs::read(&out).unwrap();
    let entries = keys(&bytes);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].1, entries[1].1, "one shared blob");
    // Nothing but the bundle is left next to it.
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["bundle.dkbtf"]);

    // Byte-identical on a re-run (and with another degree of parallelism).
    let again = dir.child("again.dkbtf");
    generate(&Options {
        archive: root.clone(),
        objects: objects_dir(),
        out: again.clone(),
        bpftool: "bpftool".into(),
        jobs: 1,
    })
    .unwrap();
    assert!(std::fs::read(&again).unwrap() == bytes, "re-run differs");
}

#[test]
fn objects_are_grouped_by_arch_dir_and_checked() {
    let dir = Scratch::new("btfgen-arch");
    let root = dir.dir("archive");
    let release = kernel_release();
    let name = format!("{release}.btf");
    let good = tar_cjf(&[(&name, &system_btf())]);
    put(&root, &format!("debian/12/x86_64/{name}.tar.xz"), &good);
    put(&root, &format!("debian/12/arm64/{name}.tar.xz"), &good);
    let objects = dir.dir("objects");
    let modern = std::fs::read(objects_dir().join("x86_64/diffkeeper.bpf.o"))
        .or_else(|_| std::fs::read(objects_dir().join("diffkeeper.bpf.o")))
        .unwrap();
    put(&objects, "x86_64/diffkeeper.bpf.o", &modern);
    put(&objects, "x86_64/diffkeeper-compat.bpf.o", &modern);
    put(&objects, "aarch64/diffkeeper.bpf.o", &modern);
    let report = run(&root, &objects, &dir.child("b.dkbtf")).unwrap();
    let per_key: Vec<(String, usize)> = report
        .made
        .iter()
        .map(|m| (m.key.clone(), m.objects))
        .collect();
    assert_eq!(
        per_key,
        [
            (format!("debian/12/arm64/{release}"), 1),
            (format!("debian/12/x86_64/{release}"), 2)
        ]
    );

    // A kernel whose arch has no object is skipped, not minimised with the wrong ones.
    std::fs::remove_dir_all(objects.join("aarch64")).unwrap();
    let report = run(&root, &objects, &dir.child("c.dkbtf")).unwrap();
    assert_eq!(report.made.len(), 1);
    assert!(
        matches!(&report.skipped[0].reason, SkipReason::NoObjectForArch { arch } if arch == "arm64"),
        "{:?}",
        report.skipped
    );
    assert_eq!(
        report.skipped[0].reason.to_string(),
        "no eBPF object serves arch arm64"
    );

    // Something named *.bpf.o that is not an eBPF ELF stops the run: the bundle would be wrong.
    // Too short for an ELF header:
    put(&objects, "x86_64/bogus.bpf.o", b"\x7fELF not really");
    let err = run(&root, &objects, &dir.child("d.dkbtf")).unwrap_err();
    assert!(
        matches!(&err, BtfgenError::ObjectUnreadable { path, .. } if path.ends_with("x86_64/bogus.bpf.o")),
        "{err}"
    );
    assert!(err.to_string().contains("bogus.bpf.o"), "{err}");
    // A whole ELF header, for x86-64 (e_machine 62) rather than BPF:
    let mut x86 = modern[..20].to_vec();
    x86[18..20].copy_from_slice(&62u16.to_le_bytes());
    put(&objects, "x86_64/bogus.bpf.o", &x86);
    let err = run(&root, &objects, &dir.child("d.dkbtf")).unwrap_err();
    assert!(
        matches!(&err, BtfgenError::NotBpfObject { path, machine: 62 } if path.ends_with("x86_64/bogus.bpf.o")),
        "{err}"
    );
    assert!(!dir.path().join("d.dkbtf").exists());
}

#[test]
fn hostile_archives_are_skipped() {
    let dir = Scratch::new("btfgen-hostile");
    let root = dir.dir("archive");
    let btf = system_btf();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "link",
            tar_xz(&[Entry::Symlink {
                path: "x.btf".into(),
                target: "/etc/shadow".into(),
            }]),
        ),
        ("dotdot", tar_xz(&[Entry::file("../x.btf", &btf)])),
        (
            "two",
            tar_xz(&[Entry::file("a.btf", &btf), Entry::file("b.btf", &btf)]),
        ),
        ("none", tar_xz(&[Entry::file("README", b"x")])),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in &cases {
        put(
            &root,
            &format!("debian/12/x86_64/0.0.0-{name}.btf.tar.xz"),
            bytes,
        );
    }
    let err = run(&root, &objects_dir(), &dir.child("b.dkbtf")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no kernel") && text.contains("5 skipped"),
        "{text}"
    );
    let BtfgenError::NoKernel { skipped, .. } = err else {
        panic!("{text}")
    };
    let reasons: Vec<(String, &SkipReason)> = skipped
        .iter()
        .map(|s| {
            (
                s.path.file_name().unwrap().to_string_lossy().into_owned(),
                &s.reason,
            )
        })
        .collect();
    let reason = |name: &str| {
        let file = format!("0.0.0-{name}.btf.tar.xz");
        reasons
            .iter()
            .find(|(f, _)| *f == file)
            .map(|(_, r)| *r)
            .unwrap()
    };
    assert!(
        matches!(
            reason("link"),
            SkipReason::Extract(ExtractError::Kind {
                kind: tar::EntryType::Symlink,
                ..
            })
        ),
        "{reasons:?}"
    );
    assert!(
        matches!(reason("dotdot"), SkipReason::Extract(ExtractError::Escapes { entry }) if entry == "../x.btf"),
        "{reasons:?}"
    );
    assert!(
        matches!(
            reason("two"),
            SkipReason::Extract(ExtractError::TwoBtf { .. })
        ),
        "{reasons:?}"
    );
    assert!(
        matches!(reason("none"), SkipReason::Extract(ExtractError::NoBtf)),
        "{reasons:?}"
    );
    assert!(
        matches!(
            reason("empty"),
            SkipReason::Extract(ExtractError::ShortHead(_))
        ),
        "{reasons:?}"
    );
    assert!(!dir.path().join("b.dkbtf").exists());
}

/// Every real kernel the VM harness has cached (Debian 5.10, 6.1, 6.12 amd64, 6.1 arm64), through
/// tests/bundle/make-archive.sh and the `diffkeeper-btfgen` binary; each entry is dumped with
/// `bpftool btf dump`. Skipped (with a note) when the cache is empty.
#[test]
fn real_debian_kernels_every_entry_dumps() {
    let cache = std::env::var("DIFFKEEPER_VM_CACHE").unwrap_or("/var/cache/diffkeeper-vm".into());
    if !Path::new(&cache).join("kernels").is_dir() {
        eprintln!("SKIP: no VM kernel cache at {cache} (`just vm-test` fills it)");
        return;
    }
    let dir = Scratch::new("btfgen-debian");
    let root = dir.path().join("archive");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(repo.join("tests/bundle/make-archive.sh"))
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    let out = dir.child("bundle.dkbtf");
    let report = run(&root, &objects_dir(), &out).unwrap();
    assert!(report.made.len() >= 3, "{:?}", report.made);
    assert_eq!(report.skipped.len(), 3, "{:?}", report.skipped);
    let bytes = std::fs::read(&out).unwrap();
    let (count, index_len) = parse_header(&bytes, bytes.len() as u64).unwrap();
    let index = &bytes[HEADER_LEN..HEADER_LEN + index_len as usize];
    for entry in parse_index(index, count, bytes.len() as u64).unwrap() {
        let (key, btf_len) = (entry.key, entry.btf_len);
        let start = entry.offset as usize;
        let mut btf = Vec::new();
        std::io::Read::read_to_end(
            &mut xz2::read::XzDecoder::new(&bytes[start..start + entry.stored_len as usize]),
            &mut btf,
        )
        .unwrap();
        assert_eq!(btf.len() as u32, btf_len, "{key}");
        let file = dir.child(&format!("dump/{}.btf", key.replace('/', "_")));
        std::fs::write(&file, &btf).unwrap();
        let dump = Command::new("bpftool")
            .args(["btf", "dump", "file"])
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&dump.stdout);
        assert!(
            dump.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&dump.stderr)
        );
        for needle in [
            "STRUCT 'dentry'",
            "STRUCT 'task_struct'",
            "STRUCT 'super_block'",
        ] {
            assert!(text.contains(needle), "{key} lacks {needle}:\n{text}");
        }
    }
}
