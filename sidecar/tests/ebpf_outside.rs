//! Writes on the watched file system but outside the watched directory are refused by the
//! kernel side before any path is assembled (a walk up to the file system's top that meets no
//! root), while everything below a root, at any depth, and a directory moved in or out between
//! two writes through the same open file, is judged by where the file is at the time of the
//! write. Real eBPF (root), tracepoint mode, both objects.

// Test set-up: a step that fails should panic on the spot.
#![allow(clippy::unwrap_used)]

mod ebpf_common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use diffkeeper_ebpf::object::ObjectKind;
use diffkeeper_sidecar::change::{self, Change, Op};
use diffkeeper_sidecar::ebpf::{self, AttachMode, ObjectChoice};
use ebpf_common::*;

/// `levels` directories below `top`, each named after its depth.
fn nested(top: &Path, levels: usize) -> PathBuf {
    let dir = (1..=levels).fold(top.to_path_buf(), |p, i| p.join(format!("l{i}")));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn writes(got: &[Change]) -> Vec<&Path> {
    got.iter()
        .filter(|c| c.op == Op::Write)
        .map(|c| c.path.as_path())
        .collect()
}

fn refuses_outside_and_follows_moves(object: ObjectKind) {
    capture_logs();
    let scratch = Scratch::new(&format!("outside-{object}"));
    let root = scratch.dir("state");
    let outside = scratch.dir("elsewhere");
    let mut cfg = config(AttachMode::Tracepoint, &scratch, vec![root.clone()]);
    cfg.object = ObjectChoice::Forced(object);
    let (tx, rx) = change::queue(change::QUEUE_CAPACITY);
    let session = ebpf::start(&cfg, tx).unwrap_or_else(|e| panic!("eBPF did not start: {e}"));
    assert_eq!((session.object(), session.backend()), (object, TRACEPOINT));

    // On both sides of the depth the quick refusal looks at (8 parents) and far below it.
    let depths = [0, 1, 6, 7, 8, 9, 12];
    let mut want = Vec::new();
    for levels in depths {
        fs::write(nested(&outside, levels).join("out"), b"o").unwrap();
        let inside = nested(&root, levels).join("in");
        fs::write(&inside, b"i").unwrap();
        want.push(inside);
    }
    // A directory holding an open file, moved in and out between its writes.
    let movable = nested(&outside, 3);
    let mut file = File::create(movable.join("moved")).unwrap();
    file.write_all(b"outside, before").unwrap();
    fs::rename(outside.join("l1"), root.join("came-in")).unwrap();
    file.write_all(b"inside").unwrap();
    want.push(root.join("came-in/l2/l3/moved"));
    fs::rename(root.join("came-in"), outside.join("went-out")).unwrap();
    file.write_all(b"outside, after").unwrap();
    drop(file);
    let marker = root.join("zz-marker");
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&marker)
        .unwrap()
        .write_all(b"m")
        .unwrap();
    want.push(marker.clone());

    let got = collect_until(&rx, &marker);
    let want: Vec<&Path> = want.iter().map(PathBuf::as_path).collect();
    assert_eq!(writes(&got), want, "{object}: every change: {got:#?}");
    assert!(
        got.iter().all(|c| c.path.starts_with(&root)),
        "{object}: a change outside the root: {got:#?}"
    );
    stop_and_check_unloaded(session);
}

#[test]
fn modern_object_refuses_outside_writes_and_follows_moves() {
    refuses_outside_and_follows_moves(ObjectKind::Modern);
}

#[test]
fn compat_object_refuses_outside_writes_and_follows_moves() {
    refuses_outside_and_follows_moves(ObjectKind::Compat);
}
