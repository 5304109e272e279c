//! A full disk: the writer returns NoSpace, records nothing of the failed change, the store
//! stays valid, and writing resumes once space returns. Needs root (mounts a small tmpfs).

mod common;

use std::fs;
use std::time::SystemTime;

use common::*;
use diffkeeper_store::{Meta, Store, StoreError, StoreOptions, StoreReader};
use nix::mount::{mount, umount, MsFlags};

#[test]
fn no_space_is_typed_and_recoverable() {
    let tmp = tempdir();
    let mnt = tmp.path().join("small");
    fs::create_dir(&mnt).unwrap();
    mount(
        Some("tmpfs"),
        &mnt,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=2m"),
    )
    .expect("mount a 2 MiB tmpfs (run as root)");
    let result = std::panic::catch_unwind(|| {
        let store = mnt.join("store");
        let filler = mnt.join("filler");
        fs::write(&filler, noise(0, 1 << 20)).unwrap();
        let mut w = Store::create_or_open(&store, StoreOptions::default()).unwrap();
        let meta = Meta {
            mode: 0o644,
            ..Meta::default()
        };
        let mut stored = Vec::new();
        let mut err = None;
        for i in 0..40u64 {
            let data = noise(i + 1, 100_000);
            let name = format!("f{i}");
            match w.put_file(
                SystemTime::now(),
                "/state",
                name.as_bytes(),
                &meta,
                &mut &data[..],
            ) {
                Ok(_) => stored.push((name, data)),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let err = err.expect("the 2 MiB file system filled up");
        assert!(matches!(err, StoreError::NoSpace { .. }), "{err}");
        assert!(err.to_string().contains("no space left"), "{err}");
        w.sync().unwrap();
        let report = StoreReader::verify(&store).unwrap();
        assert!(
            report.problems.is_empty() && report.torn_tails.is_empty(),
            "{report:?}"
        );
        let reader = StoreReader::open(&store).unwrap();
        assert_eq!(
            reader.records().len(),
            stored.len(),
            "the failed put left a record"
        );
        // Space returns: the writer carries on.
        fs::remove_file(&filler).unwrap();
        w.put_file(
            SystemTime::now(),
            "/state",
            b"after",
            &meta,
            &mut &b"resumed"[..],
        )
        .unwrap();
        drop(w);
        let reader = StoreReader::open(&store).unwrap();
        for (name, data) in stored
            .iter()
            .chain([&("after".to_string(), b"resumed".to_vec())])
        {
            let mut got = Vec::new();
            reader.cat(name.as_bytes(), u64::MAX, &mut got).unwrap();
            assert!(&got == data, "{name}");
        }
    });
    umount(&mnt).unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
