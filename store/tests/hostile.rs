//! Hostile and damaged stores: a clear error naming what is wrong, nothing written outside the
//! target, no panic, no allocation sized by a forged length.
#![allow(clippy::unwrap_used)] // helpers of tests, not #[test] functions

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::*;
use diffkeeper_store::{Change, Meta, Record, Store, StoreError, StoreOptions, StoreReader};
use diffkeeper_tests::store_log;

const ROOT: &str = "/state";

/// A store whose log holds exactly `records` (encoded as given, unchecked), and no packs.
fn forged_store(dir: &Path, records: &[Record]) {
    let payloads: Vec<Vec<u8>> = records.iter().map(Record::encode).collect();
    store_log::forged_store(dir, &payloads);
}

fn rec(path: &[u8], change: Change) -> Record {
    Record {
        ts_ns: 1,
        root: ROOT.into(),
        path: path.to_vec(),
        change,
    }
}

fn dir_meta() -> Meta {
    Meta {
        mode: 0o755,
        ..Meta::default()
    }
}

/// A [`good_store`] in a new temporary directory, with its log's path and bytes.
fn good_store_log() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let tmp = tempdir();
    good_store(tmp.path());
    let log = tmp.path().join("log");
    let bytes = fs::read(&log).unwrap();
    (tmp, log, bytes)
}

/// A real store with a few files, synced and closed.
fn good_store(dir: &Path) {
    record_files(
        dir,
        &[(b"a", &noise(1, 300_000)[..]), (b"b", &b"small"[..])],
    );
}

/// Opens (or creates) the store in `dir`, records `files` (path, content) with mode 0644 and
/// closes it.
fn record_files(dir: &Path, files: &[(&[u8], &[u8])]) {
    let mut w = Store::create_or_open(dir, StoreOptions::default()).unwrap();
    let meta = Meta {
        mode: 0o644,
        ..Meta::default()
    };
    for (path, content) in files {
        w.put_file(SystemTime::now(), ROOT, path, &meta, &mut &content[..])
            .unwrap();
    }
}

#[test]
fn forged_dotdot_and_absolute_paths_are_refused_whole() {
    let tmp = tempdir();
    for (i, bad) in [&b"../escape"[..], b"/etc/evil", b"a/../../escape", b"a\0b"]
        .iter()
        .enumerate()
    {
        let store = tmp.path().join(format!("store{i}"));
        let records = [
            rec(b"ok", Change::Dir { meta: dir_meta() }),
            rec(bad, Change::Dir { meta: dir_meta() }),
        ];
        forged_store(&store, &records);
        let err = StoreReader::open(&store).err().expect("refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("refused"), "{err}");
        let report = StoreReader::verify(&store).unwrap();
        assert_eq!(report.problems.len(), 1, "{report:?}");
    }
    // Forged roots and rename targets too.
    let store = tmp.path().join("root");
    let forged = Record {
        root: "/state/../etc".into(),
        ..rec(b"x", Change::Dir { meta: dir_meta() })
    };
    forged_store(&store, &[forged]);
    assert!(StoreReader::open(&store).is_err());
    let store = tmp.path().join("rename");
    forged_store(
        &store,
        &[rec(
            b"x",
            Change::Rename {
                to: b"../../x".to_vec(),
            },
        )],
    );
    assert!(StoreReader::open(&store).is_err());
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        6,
        "nothing but the stores was written"
    );
}

#[test]
fn a_symlinked_parent_is_refused_before_anything_is_written() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = outside.to_string_lossy().into_owned().into_bytes();
    forged_store(
        &store,
        &[
            rec(b"first", Change::Dir { meta: dir_meta() }),
            rec(
                b"link",
                Change::Symlink {
                    meta: Meta::default(),
                    target,
                },
            ),
            rec(b"link/planted", Change::Dir { meta: dir_meta() }),
        ],
    );
    let reader = StoreReader::open(&store).unwrap();
    let out = tmp.path().join("out");
    let err = reader.export(u64::MAX, &out).unwrap_err();
    assert!(err.to_string().contains("below link, a symlink"), "{err}");
    assert!(!out.exists(), "export left a partial tree");
    let restore_to = tmp.path().join("restore");
    fs::create_dir(&restore_to).unwrap();
    assert!(reader.restore_into(u64::MAX, &restore_to, false).is_err());
    assert_eq!(
        fs::read_dir(&restore_to).unwrap().count(),
        0,
        "restore wrote before refusing"
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "something was written outside"
    );
    assert!(tmp.path().read_dir().unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("dk-export")));
}

#[test]
fn truncated_log_reads_what_is_whole() {
    let (tmp, log, bytes) = good_store_log();
    // Cut inside the last record: the earlier one reads, the cut one is a torn tail.
    fs::write(&log, &bytes[..bytes.len() - 5]).unwrap();
    let reader = StoreReader::open(tmp.path()).unwrap();
    assert_eq!(reader.records().len(), 1);
    assert!(reader.torn_tail.is_some());
    let report = StoreReader::verify(tmp.path()).unwrap();
    assert!(
        report.problems.is_empty() && report.torn_tails.len() == 1,
        "{report:?}"
    );
    // Cut inside the header: not a store.
    fs::write(&log, &bytes[..10]).unwrap();
    let err = StoreReader::open(tmp.path()).err().unwrap();
    assert!(err.to_string().contains("header"), "{err}");
}

#[test]
fn a_flipped_byte_in_a_chunk_is_named_and_refused() {
    let tmp = tempdir();
    let store = tmp.path().join("store");
    good_store(&store);
    let pack = store.join("packs/00000001.pack");
    let mut bytes = fs::read(&pack).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x40;
    fs::write(&pack, &bytes).unwrap();
    let report = StoreReader::verify(&store).unwrap();
    assert!(!report.problems.is_empty());
    let all = report.problems.join("\n");
    assert!(
        all.contains("00000001.pack") && all.contains("checksum"),
        "{all}"
    );
    assert!(
        all.contains("/state/a: chunk") && all.contains("missing"),
        "{all}"
    );
    let reader = StoreReader::open(&store).unwrap();
    let out = tmp.path().join("out");
    let err = reader.export(u64::MAX, &out).unwrap_err();
    assert!(err.to_string().contains("/state/a"), "{err}");
    assert!(!out.exists());
    // A restore finds the damage only while writing: it is staged, so the target stays empty.
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    let err = reader.restore_into(u64::MAX, &target, false).unwrap_err();
    assert!(err.to_string().contains("/state/a"), "{err}");
    assert_eq!(
        fs::read_dir(&target).unwrap().count(),
        0,
        "restore left a partial tree"
    );
    // The untouched file still reads.
    let mut got = Vec::new();
    reader.cat(b"b", u64::MAX, &mut got).unwrap();
    assert_eq!(got, b"small");
}

#[test]
fn a_huge_claimed_length_is_refused_without_allocating_it() {
    let (tmp, log, mut bytes) = good_store_log();
    // The first frame's length field, after the 16-byte header and the 4-byte magic.
    bytes[20..24].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    fs::write(&log, &bytes).unwrap();
    let err = StoreReader::open(tmp.path()).err().unwrap();
    assert!(err.to_string().contains("over the"), "{err}");
    let report = StoreReader::verify(tmp.path()).unwrap();
    assert!(!report.problems.is_empty());
    // A plausible length that runs past the end of the file is a torn tail, not an allocation.
    bytes[20..24].copy_from_slice(&(60u32 << 20).to_le_bytes());
    fs::write(&log, &bytes).unwrap();
    let reader = StoreReader::open(tmp.path()).unwrap();
    assert_eq!(reader.records().len(), 0);
    // A record whose chunk count is forged huge, inside a valid frame.
    let mut payload = rec(
        b"f",
        Change::File {
            meta: Meta::default(),
            chunks: vec![],
        },
    )
    .encode();
    let n = payload.len();
    payload[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&log, store_log::log_of(&[payload])).unwrap();
    let err = StoreReader::open(tmp.path()).err().unwrap();
    assert!(err.to_string().contains("chunk count"), "{err}");
}

#[test]
fn a_newer_format_is_refused_by_readers_and_writers() {
    let (tmp, log, mut bytes) = good_store_log();
    bytes[12..16].copy_from_slice(&2u32.to_le_bytes());
    fs::write(&log, &bytes).unwrap();
    for err in [
        StoreReader::open(tmp.path()).err().unwrap(),
        StoreReader::verify(tmp.path()).err().unwrap(),
        Store::create_or_open(tmp.path(), StoreOptions::default())
            .err()
            .unwrap(),
    ] {
        assert!(
            matches!(
                err,
                StoreError::NewerFormat {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("newer"), "{err}");
    }
}

#[test]
fn a_writer_refuses_a_log_corrupt_in_the_middle() {
    let (tmp, log, mut bytes) = good_store_log();
    bytes[40] ^= 1; // inside the first record, which is followed by the second
    fs::write(&log, &bytes).unwrap();
    let err = Store::create_or_open(tmp.path(), StoreOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert_eq!(
        fs::read(&log).unwrap(),
        bytes,
        "the writer changed a corrupt log"
    );
}

#[test]
fn a_torn_tail_is_cut_by_the_next_writer() {
    let tmp = tempdir();
    good_store(tmp.path());
    // What a crash mid-append leaves: a frame header claiming more than was written.
    for file in ["log", "packs/00000001.pack"] {
        let path = tmp.path().join(file);
        let mut bytes = fs::read(&path).unwrap();
        let whole = store_log::frame(&noise(3, 5000));
        bytes.extend_from_slice(&whole[..1000]);
        fs::write(&path, &bytes).unwrap();
    }
    assert_eq!(StoreReader::verify(tmp.path()).unwrap().torn_tails.len(), 2);
    record_files(tmp.path(), &[(b"c", &noise(4, 70_000)[..])]);
    let report = StoreReader::verify(tmp.path()).unwrap();
    assert!(
        report.problems.is_empty() && report.torn_tails.is_empty(),
        "{report:?}"
    );
    let reader = StoreReader::open(tmp.path()).unwrap();
    assert_eq!(reader.records().len(), 3);
    let mut got = Vec::new();
    reader.cat(b"c", u64::MAX, &mut got).unwrap();
    assert_eq!(got, noise(4, 70_000));
}
