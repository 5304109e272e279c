//! The translator with synthetic notify events (and real directories for the scans).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use notify::event::{CreateKind, DataChange, EventKind, Flag, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, INotifyWatcher, Watcher};

use super::translate::{Translator, RENAME_PAIR_WAIT};
use super::{describe, watcher_config};
use crate::change::{Backend, ChangeQueue};
use crate::metrics::Metrics;

fn translator(root: &Path) -> (Translator, ChangeQueue, Arc<Metrics>) {
    let (tx, rx) = crate::change::queue(crate::change::QUEUE_CAPACITY);
    let metrics = Arc::new(Metrics::default());
    let watcher = INotifyWatcher::new(|_| {}, watcher_config()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let t = Translator::new(watcher, vec![root.to_owned()], tx, metrics.clone(), stop);
    (t, rx, metrics)
}

fn lines(rx: &ChangeQueue) -> Vec<String> {
    rx.try_iter()
        .map(|c| {
            assert_eq!(
                (c.backend, c.pid, &c.comm, c.bytes),
                (Backend::Inotify, None, &None, None)
            );
            match c.from {
                Some(from) => format!(
                    "{} {} -> {}",
                    c.op.as_str(),
                    from.display(),
                    c.path.display()
                ),
                None => format!("{} {}", c.op.as_str(), c.path.display()),
            }
        })
        .collect()
}

fn rename(mode: RenameMode, cookie: usize, paths: &[&str]) -> Event {
    let mut ev = Event::new(EventKind::Modify(ModifyKind::Name(mode))).set_tracker(cookie);
    for p in paths {
        ev = ev.add_path(PathBuf::from(p));
    }
    ev
}

#[test]
fn notify_kinds_map_to_journal_ops_and_renames_pair_up() {
    let dir = std::env::temp_dir();
    let (mut t, rx, _) = translator(&dir);
    let ev = |kind| Event::new(kind).add_path(PathBuf::from("/s/f"));
    t.handle(ev(EventKind::Create(CreateKind::File)));
    t.handle(ev(EventKind::Access(notify::event::AccessKind::Open(
        notify::event::AccessMode::Any,
    ))));
    t.handle(ev(EventKind::Modify(ModifyKind::Data(DataChange::Any))));
    t.handle(ev(EventKind::Modify(ModifyKind::Metadata(
        notify::event::MetadataKind::Any,
    ))));
    t.handle(rename(RenameMode::From, 7, &["/s/f"]));
    t.handle(rename(RenameMode::To, 7, &["/s/g"]));
    t.handle(rename(RenameMode::Both, 7, &["/s/f", "/s/g"]));
    // Moved in from outside: only the `To` half exists.
    t.handle(rename(RenameMode::To, 8, &["/s/in"]));
    // Moved out: only the `From` half; it becomes a delete once the pair wait is over.
    t.handle(rename(RenameMode::From, 9, &["/s/out"]));
    t.expire_unpaired_moves(Some(Instant::now()));
    assert_eq!(
        lines(&rx),
        [
            "create /s/f",
            "write /s/f",
            "attrib /s/f",
            "rename /s/f -> /s/g",
            "create /s/in"
        ]
    );
    t.expire_unpaired_moves(Some(Instant::now() + RENAME_PAIR_WAIT));
    t.handle(ev(EventKind::Remove(RemoveKind::File)));
    assert_eq!(lines(&rx), ["delete /s/out", "delete /s/f"]);
}

#[test]
fn events_from_a_renamed_directorys_old_watches_get_its_new_path() {
    let root = std::env::temp_dir().join(format!("dk-inotify-moved-{}", std::process::id()));
    let (d, e) = (root.join("d"), root.join("e"));
    std::fs::create_dir_all(e.join("sub")).unwrap();
    let (mut t, rx, _) = translator(&root);
    let at = |p: &Path, rel: &str| p.join(rel).display().to_string();
    let write = |p: String| {
        Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any))).add_path(p.into())
    };
    t.handle(rename(RenameMode::From, 3, &[&at(&d, "")]));
    t.handle(rename(RenameMode::To, 3, &[&at(&e, "")]));
    t.handle(rename(RenameMode::Both, 3, &[&at(&d, ""), &at(&e, "")]));
    // Still named by the old watch: the file is e/sub/g now.
    t.handle(write(at(&d, "sub/g")));
    // `d` made again: its own events are its own.
    std::fs::create_dir(&d).unwrap();
    t.handle(Event::new(EventKind::Create(CreateKind::Folder)).add_path(d.clone()));
    t.handle(write(at(&d, "new")));
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(
        lines(&rx),
        [
            format!("rename {} -> {}", at(&d, ""), at(&e, "")),
            format!("write {}", at(&e, "sub/g")),
            format!("mkdir {}", d.display()),
            format!("write {}", at(&d, "new")),
        ]
    );
}

#[test]
fn a_new_directory_is_caught_up_without_duplicates() {
    let root = std::env::temp_dir().join(format!("dk-inotify-unit-{}", std::process::id()));
    let new_dir = root.join("new");
    std::fs::create_dir_all(new_dir.join("sub")).unwrap();
    std::fs::write(new_dir.join("sub/early.txt"), b"x").unwrap();
    let (mut t, rx, _) = translator(&root);
    t.handle(Event::new(EventKind::Create(CreateKind::Folder)).add_path(new_dir.clone()));
    // inotify may also report what the scan found: it must not appear twice.
    t.handle(Event::new(EventKind::Create(CreateKind::Folder)).add_path(new_dir.join("sub")));
    let mut got = lines(&rx);
    std::fs::remove_dir_all(&root).unwrap();
    got.sort();
    let n = new_dir.display();
    assert_eq!(
        got,
        [
            format!("create {n}/sub/early.txt"),
            format!("mkdir {n}"),
            format!("mkdir {n}/sub"),
        ]
    );
}

#[test]
fn queue_overflow_is_counted_and_rescanned() {
    let root = std::env::temp_dir().join(format!("dk-inotify-overflow-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let (mut t, rx, metrics) = translator(&root);
    t.handle(Event::new(EventKind::Other).set_flag(Flag::Rescan));
    t.handle(Event::new(EventKind::Other).set_flag(Flag::Rescan));
    assert!(lines(&rx).is_empty());
    assert!(metrics
        .render()
        .lines()
        .any(|l| l == "diffkeeper_inotify_overflows_total 2"));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn watch_limit_error_names_the_sysctl() {
    let text = describe(&notify::Error::new(notify::ErrorKind::MaxFilesWatch));
    assert!(text.contains("fs.inotify.max_user_watches"), "{text}");
}

fn scratch_root(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("dk-inotify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

/// `echo a>a; mv a $out/a; echo b>a`: the delete (a move out, known only once its partner
/// did not come) stands before the new file's create and write, where it happened.
#[test]
fn a_move_out_is_journaled_before_the_changes_that_follow_it() {
    let (mut t, rx, _) = translator(Path::new("/s"));
    t.handle(rename(RenameMode::From, 5, &["/s/a"]));
    t.handle(Event::new(EventKind::Create(CreateKind::File)).add_path("/s/a".into()));
    t.handle(
        Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any))).add_path("/s/a".into()),
    );
    t.expire_unpaired_moves(Some(Instant::now()));
    assert!(lines(&rx).is_empty(), "nothing passes a waiting move");
    t.expire_unpaired_moves(Some(Instant::now() + RENAME_PAIR_WAIT));
    assert_eq!(lines(&rx), ["delete /s/a", "create /s/a", "write /s/a"]);
}

/// A file found by a catch-up scan, later replaced by a file moved in from outside: the
/// move-in is a new file under that name (another inode), journaled.
#[test]
fn a_file_moved_onto_a_scanned_path_is_journaled() {
    let root = scratch_root("replaced");
    let (d, outside) = (root.join("d"), root.with_extension("out"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(d.join("f"), "1").unwrap();
    let (mut t, rx, _) = translator(&root);
    t.handle(Event::new(EventKind::Create(CreateKind::Folder)).add_path(d.clone()));
    t.catch_up_pending();
    std::fs::write(outside.join("x"), "2").unwrap();
    std::fs::rename(outside.join("x"), d.join("f")).unwrap();
    t.handle(rename(
        RenameMode::To,
        4,
        &[&d.join("f").display().to_string()],
    ));
    let got = lines(&rx);
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&outside).unwrap();
    let (d, f) = (d.display(), d.join("f").display().to_string());
    assert_eq!(
        got,
        [
            format!("mkdir {d}"),
            format!("create {f}"),
            format!("create {f}")
        ]
    );
}

/// `mv x/a b; rmdir x; mv y x; echo hi>x/a/f` with x/a and y/a there at start: the file is
/// x/a/f (y's a), not b/f (the name x/a once had).
#[test]
fn a_reused_directory_name_is_not_followed_to_its_old_directory() {
    let root = scratch_root("reused");
    std::fs::create_dir_all(root.join("b")).unwrap();
    std::fs::create_dir_all(root.join("x/a")).unwrap();
    let (mut t, rx, _) = translator(&root);
    let at = |rel: &str| root.join(rel).display().to_string();
    t.handle(rename(RenameMode::From, 1, &[&at("x/a")]));
    t.handle(rename(RenameMode::Both, 1, &[&at("x/a"), &at("b")]));
    t.handle(Event::new(EventKind::Remove(RemoveKind::Folder)).add_path(at("x").into()));
    t.handle(rename(RenameMode::From, 2, &[&at("y")]));
    t.handle(rename(RenameMode::Both, 2, &[&at("y"), &at("x")]));
    t.handle(Event::new(EventKind::Create(CreateKind::File)).add_path(at("x/a/f").into()));
    let got = lines(&rx);
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(
        got,
        [
            format!("rename {} -> {}", at("x/a"), at("b")),
            format!("rmdir {}", at("x")),
            format!("rename {} -> {}", at("y"), at("x")),
            format!("create {}", at("x/a/f")),
        ]
    );
}
