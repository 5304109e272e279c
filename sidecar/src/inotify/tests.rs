//! The translator on real directories with a real inotify instance: the file-system calls are
//! made first (their events queue up in the kernel, as under a storm), then read in one go.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::describe;
use super::translate::{Translator, RENAME_PAIR_WAIT};
use super::watches::Watches;
use crate::change::{Backend, ChangeQueue, Record};
use crate::metrics::Metrics;

fn scratch_root(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("dk-inotify-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    root
}

fn translator(root: &Path) -> (Translator, ChangeQueue, Arc<Metrics>) {
    let (tx, rx) = crate::change::queue(crate::change::QUEUE_CAPACITY);
    let metrics = Arc::new(Metrics::default());
    let mut watches = Watches::new(inotify::Inotify::init().unwrap());
    watches.watch_tree(root, &mut Vec::new()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let t = Translator::new(watches, vec![root.to_owned()], tx, metrics.clone(), stop);
    (t, rx, metrics)
}

/// Reads and translates everything queued now.
fn pump(t: &mut Translator) {
    while t.readable(Duration::ZERO) {
        let events = t.read();
        t.handle_all(events);
    }
}

/// The changes handed to the journal, relative to `root`.
fn lines(rx: &ChangeQueue, root: &Path) -> Vec<String> {
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    rx.try_iter()
        .map(|c| {
            assert_eq!(
                (c.backend, c.pid, &c.comm, c.bytes),
                (Backend::Inotify, None, &None, None)
            );
            match c.from {
                Some(from) => format!("{} {} -> {}", c.op.as_str(), rel(&from), rel(&c.path)),
                None => format!("{} {}", c.op.as_str(), rel(&c.path)),
            }
        })
        .collect()
}

#[test]
fn inotify_events_map_to_journal_ops_and_renames_pair_up() {
    let root = scratch_root("ops");
    let outside = root.with_extension("out");
    fs::create_dir_all(&outside).unwrap();
    let (mut t, rx, _) = translator(&root);
    fs::write(root.join("f"), "1").unwrap();
    fs::set_permissions(
        root.join("f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    fs::rename(root.join("f"), root.join("g")).unwrap();
    fs::write(outside.join("in"), "2").unwrap();
    fs::rename(outside.join("in"), root.join("in")).unwrap();
    fs::rename(root.join("in"), outside.join("gone")).unwrap();
    fs::create_dir(root.join("d")).unwrap();
    fs::remove_dir(root.join("d")).unwrap();
    fs::remove_file(root.join("g")).unwrap();
    pump(&mut t);
    assert_eq!(
        lines(&rx, &root),
        [
            "create f",
            "write f",
            "attrib f",
            "rename f -> g",
            "create in"
        ],
        "nothing passes the move out while it waits for a partner"
    );
    t.expire_unpaired_moves(Some(Instant::now() + RENAME_PAIR_WAIT));
    assert_eq!(
        lines(&rx, &root),
        ["delete in", "mkdir d", "rmdir d", "delete g"]
    );
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&outside).unwrap();
}

/// The case a watcher that re-adds watches after a rename loses: everything happens before
/// the first event is read, and the events from the renamed directory's watches name it by
/// its new path; a new directory under the old name has events of its own.
#[test]
fn events_from_a_renamed_directorys_watches_get_its_new_path() {
    let root = scratch_root("moved");
    fs::create_dir_all(root.join("d/sub")).unwrap();
    let (mut t, rx, _) = translator(&root);
    fs::rename(root.join("d"), root.join("e")).unwrap();
    fs::write(root.join("e/sub/g"), "x").unwrap();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/new"), "y").unwrap();
    fs::rename(root.join("e/sub"), root.join("d/sub2")).unwrap();
    fs::write(root.join("d/sub2/h"), "z").unwrap();
    pump(&mut t);
    // `d` is listed when its create is read: it holds `new` and `sub2` by then (whose events
    // came before its watch); `sub2` is e/sub renamed, and its own watch's events follow it.
    t.expire_unpaired_moves(Some(Instant::now() + RENAME_PAIR_WAIT));
    let mut got = lines(&rx, &root);
    got[4..6].sort(); // the listing's order is the directory's
    assert_eq!(
        got,
        [
            "rename d -> e",
            "create e/sub/g",
            "write e/sub/g",
            "mkdir d",
            "create d/new",
            "rename e/sub -> d/sub2",
            "create d/sub2/h",
            "write d/sub2/h",
        ]
    );
    fs::remove_dir_all(&root).unwrap();
}

/// Made before its watch: found by the catch-up listing; made after: reported by inotify;
/// made in between: once.
#[test]
fn a_new_directory_is_caught_up_without_duplicates() {
    let root = scratch_root("new");
    let (mut t, rx, _) = translator(&root);
    fs::create_dir_all(root.join("new/sub")).unwrap();
    fs::write(root.join("new/sub/early"), "x").unwrap();
    pump(&mut t);
    assert_eq!(
        lines(&rx, &root),
        ["mkdir new", "mkdir new/sub", "create new/sub/early"]
    );
    fs::write(root.join("new/sub/later"), "y").unwrap();
    pump(&mut t);
    assert_eq!(
        lines(&rx, &root),
        ["create new/sub/later", "write new/sub/later"]
    );
    fs::remove_dir_all(&root).unwrap();
}

/// An overflow: what the kernel had queued is older than the rescan, so it is dropped (the
/// journal's repair covers it), and the gap is fenced: the translator goes on once the
/// journal has answered.
#[test]
fn an_overflow_drops_the_queued_events_and_fences_the_gap() {
    let root = scratch_root("overflow");
    let (mut t, rx, metrics) = translator(&root);
    fs::write(root.join("before"), "x").unwrap();
    fs::create_dir(root.join("dir")).unwrap();
    // The journal's side: answers fences, keeps the rest.
    let journal = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while let Ok(batch) = rx.rx.recv_timeout(Duration::from_secs(5)) {
            for record in batch {
                match record {
                    Record::Fence(fence) => {
                        fence.pass();
                        return seen;
                    }
                    other => seen.push(other),
                }
            }
        }
        seen
    });
    t.recover_from_overflow();
    let seen = journal.join().unwrap();
    assert!(
        matches!(&seen[..], [Record::Gap(gap)] if gap.reason == crate::change::GapReason::InotifyOverflow),
        "{seen:?}"
    );
    assert!(metrics
        .render()
        .lines()
        .any(|l| l == "diffkeeper_inotify_overflows_total 1"));
    // The directory made before the overflow is watched (the map is rebuilt from a walk).
    let (tx2, rx2) = crate::change::queue(16);
    t.delivery = crate::change::Delivery::new(tx2, Arc::new(AtomicBool::new(false)));
    fs::write(root.join("dir/after"), "y").unwrap();
    pump(&mut t);
    assert_eq!(lines(&rx2, &root), ["create dir/after", "write dir/after"]);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn limit_errors_name_the_sysctl() {
    let text = describe(&std::io::Error::from_raw_os_error(nix::libc::ENOSPC));
    assert!(text.contains("fs.inotify.max_user_watches"), "{text}");
    let text = describe(&std::io::Error::from_raw_os_error(nix::libc::EMFILE));
    assert!(text.contains("fs.inotify.max_user_instances"), "{text}");
}

/// `echo a>a; mv a $out/a; echo b>a`: the delete (a move out, known only once its partner
/// did not come) stands before the new file's create and write, where it happened.
#[test]
fn a_move_out_is_journaled_before_the_changes_that_follow_it() {
    let root = scratch_root("moveout");
    let outside = root.with_extension("out");
    fs::create_dir_all(&outside).unwrap();
    fs::write(root.join("a"), "a").unwrap();
    let (mut t, rx, _) = translator(&root);
    fs::rename(root.join("a"), outside.join("a")).unwrap();
    fs::write(root.join("a"), "b").unwrap();
    pump(&mut t);
    t.expire_unpaired_moves(Some(Instant::now()));
    assert!(
        lines(&rx, &root).is_empty(),
        "nothing passes a waiting move"
    );
    t.expire_unpaired_moves(Some(Instant::now() + RENAME_PAIR_WAIT));
    assert_eq!(lines(&rx, &root), ["delete a", "create a", "write a"]);
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&outside).unwrap();
}

/// A file found by a catch-up listing, then replaced by a file moved in from outside: the
/// move-in is a new file under that name (another inode), journaled.
#[test]
fn a_file_moved_onto_a_scanned_path_is_journaled() {
    let root = scratch_root("replaced");
    let outside = root.with_extension("out");
    fs::create_dir_all(&outside).unwrap();
    let (mut t, rx, _) = translator(&root);
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/f"), "1").unwrap();
    pump(&mut t);
    fs::write(outside.join("x"), "2").unwrap();
    fs::rename(outside.join("x"), root.join("d/f")).unwrap();
    pump(&mut t);
    assert_eq!(lines(&rx, &root), ["mkdir d", "create d/f", "create d/f"]);
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&outside).unwrap();
}

/// `mv x/a b; rmdir x; mv y x; echo hi>x/a/f` with x/a, y/a and an empty b there at start:
/// the file is x/a/f (y's a), not b/f (the name x/a once had).
#[test]
fn a_reused_directory_name_is_not_followed_to_its_old_directory() {
    let root = scratch_root("reused");
    for dir in ["b", "x/a", "y/a"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    let (mut t, rx, _) = translator(&root);
    fs::rename(root.join("x/a"), root.join("b")).unwrap();
    fs::remove_dir(root.join("x")).unwrap();
    fs::rename(root.join("y"), root.join("x")).unwrap();
    fs::write(root.join("x/a/f"), "hi").unwrap();
    fs::write(root.join("b/g"), "ho").unwrap();
    pump(&mut t);
    assert_eq!(
        lines(&rx, &root),
        [
            "rename x/a -> b",
            "rmdir x",
            "rename y -> x",
            "create x/a/f",
            "write x/a/f",
            "create b/g",
            "write b/g",
        ]
    );
    fs::remove_dir_all(&root).unwrap();
}

/// `mv $out/m2 d1/m2; mv $out/m5 m5; mv d1 m5/d0; echo>m5/d0/m2/f`, all before a read: m2's
/// move-in is read once d1 has left its path (m2 cannot be watched there: remembered as
/// unwatched), then m5's listing finds d1 at m5/d0 and journals that rename itself. The
/// unwatched m2 went with d1: it is caught up under its new path, with what was made in it.
#[test]
fn a_directory_moved_in_under_a_directory_a_listing_finds_renamed_is_caught_up() {
    let root = scratch_root("listedunwatched");
    let outside = root.with_extension("out");
    fs::create_dir_all(outside.join("m2")).unwrap();
    fs::create_dir_all(outside.join("m5")).unwrap();
    fs::write(outside.join("m2/inner"), "in").unwrap();
    fs::create_dir(root.join("d1")).unwrap();
    let (mut t, rx, _) = translator(&root);
    fs::rename(outside.join("m2"), root.join("d1/m2")).unwrap();
    fs::rename(outside.join("m5"), root.join("m5")).unwrap();
    fs::rename(root.join("d1"), root.join("m5/d0")).unwrap();
    fs::write(root.join("m5/d0/m2/f"), "x").unwrap();
    pump(&mut t);
    let mut got = lines(&rx, &root);
    got[3..].sort(); // the listing's order is the directory's
    assert_eq!(
        got,
        [
            "mkdir d1/m2",
            "mkdir m5",
            "rename d1 -> m5/d0",
            "create m5/d0/m2/f",
            "create m5/d0/m2/inner",
        ]
    );
    // And m2 is watched from now on.
    fs::write(root.join("m5/d0/m2/g"), "y").unwrap();
    pump(&mut t);
    assert_eq!(lines(&rx, &root), ["create m5/d0/m2/g", "write m5/d0/m2/g"]);
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&outside).unwrap();
}

/// `mkdir d; mv d $out/gone; mkdir d; echo>d/g`, all before a read: the first `d`'s create is
/// read when the second stands there, so its listing reports `d/g`; the move out of the first
/// takes `d/g` with it in the journal, and the second `d`'s listing reports `d/g` again.
#[test]
fn a_listing_under_a_name_that_moved_away_is_not_taken_for_the_next_directory_there() {
    let root = scratch_root("nameagain");
    let outside = root.with_extension("out");
    fs::create_dir_all(&outside).unwrap();
    let (mut t, rx, _) = translator(&root);
    fs::create_dir(root.join("d")).unwrap();
    fs::rename(root.join("d"), outside.join("gone")).unwrap();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/g"), "x").unwrap();
    pump(&mut t);
    t.expire_unpaired_moves(Some(Instant::now() + RENAME_PAIR_WAIT));
    assert_eq!(
        lines(&rx, &root),
        ["mkdir d", "create d/g", "delete d", "mkdir d", "create d/g"]
    );
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&outside).unwrap();
}

/// `mkdir d; echo>d/x; mv d e; mkdir d`, all before a read, then `echo>d/y`: the first `d`'s
/// late listing watches the newer `d`, and the rename must not take that watch to `e` (it
/// would name `d/y` as `e/y`, and `e` would never be listed). The directory at `e` is not the
/// one watched: it is journaled as moved out of `d` and in at `e`, and listed there.
#[test]
fn a_rename_does_not_carry_the_watch_of_a_newer_directory_of_the_same_name() {
    let root = scratch_root("newerwatch");
    let (mut t, rx, _) = translator(&root);
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/x"), "x").unwrap();
    fs::rename(root.join("d"), root.join("e")).unwrap();
    fs::create_dir(root.join("d")).unwrap();
    pump(&mut t);
    fs::write(root.join("d/y"), "y").unwrap();
    pump(&mut t);
    assert_eq!(
        lines(&rx, &root),
        [
            "mkdir d",
            "delete d",
            "mkdir e",
            "create e/x",
            "mkdir d",
            "create d/y",
            "write d/y",
        ]
    );
    // And `e` is watched as itself.
    fs::write(root.join("e/z"), "z").unwrap();
    pump(&mut t);
    assert_eq!(lines(&rx, &root), ["create e/z", "write e/z"]);
    fs::remove_dir_all(&root).unwrap();
}

/// `mv d e; mv e d` before a read, `d` watched from the start: `d` is where its watch is when
/// the first rename is read, but the watch is older than the rename, so it is that directory's
/// and goes with it (both renames journaled, not a move out and in).
#[test]
fn a_directory_renamed_and_back_keeps_its_renames() {
    let root = scratch_root("andback");
    fs::create_dir_all(root.join("d")).unwrap();
    let (mut t, rx, _) = translator(&root);
    fs::rename(root.join("d"), root.join("e")).unwrap();
    fs::rename(root.join("e"), root.join("d")).unwrap();
    fs::write(root.join("d/f"), "f").unwrap();
    pump(&mut t);
    assert_eq!(
        lines(&rx, &root),
        ["rename d -> e", "rename e -> d", "create d/f", "write d/f"]
    );
    fs::remove_dir_all(&root).unwrap();
}
