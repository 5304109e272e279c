//! Names in tracepoint mode (creates, links, deletes, mkdir, rmdir, renames, chmod/chown by
//! name): the kernel side sends, at sys_enter, the directory a name is relative to (walked up
//! from its dentry, so exact) and the name exactly as the caller passed it
//! ([`Event::name`](diffkeeper_ebpf::event::Event::name)). Here the name is placed below that
//! directory, or refused with the reason: the journal never carries a guessed path. An absolute
//! name comes only from a caller that shares the sidecar's root directory
//! ([`super::absolute`]), and is placed below the watched root it starts with.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use diffkeeper_ebpf::event::{Comm, Event, Names, DK_ROOT_ABS};

use super::reader::Unreported;

/// Why a new name cannot be placed below the directory the kernel side walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unplaced {
    /// The kernel resolves an absolute name from the caller's root directory, in the caller's
    /// mount namespace, neither of which the kernel side walks.
    Absolute,
    /// `..` can leave the directory, its watched root, or its file system (a mount point).
    Parent,
    /// Nothing but `/` and `.`: no link call that succeeded has such a name.
    Empty,
    /// A directory on the way is not a real directory below the root now (a symlink, which may
    /// lead anywhere, or a file): the name may not be where it says.
    NotADirectory(String),
    /// An absolute name below no watched root (it only shares their leading directories).
    Outside,
    /// The caller's memory held another name at the end of the call than at its start
    /// (another thread rewrote it): the kernel may have used either.
    Raced,
}

impl fmt::Display for Unplaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absolute => f.write_str(
                "an absolute name is resolved from the caller's root directory and mount \
                 namespace, which the kernel side cannot walk",
            ),
            Self::Parent => f.write_str("a `..` component may lead out of the directory"),
            Self::Empty => f.write_str("the name is empty"),
            Self::NotADirectory(dir) => write!(
                f,
                "{dir} is not a directory (a symlink, or a file): the name may lead elsewhere"
            ),
            Self::Outside => f.write_str("the absolute name is below no watched root"),
            Self::Raced => f.write_str(
                "another thread changed the name in memory while the call ran: the kernel may \
                 have used another one",
            ),
        }
    }
}

/// A name's bytes without its trailing `/`s (`/` alone becomes empty).
fn trim_end_slashes(name: &[u8]) -> &[u8] {
    let end = name.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    &name[..end]
}

/// The components of `name`, without the empty ones (repeated or trailing `/`) and `.`, which
/// name the directory they are in.
fn parts(name: &[u8]) -> Vec<&[u8]> {
    name.split(|&b| b == b'/')
        .filter(|part| !part.is_empty() && *part != b".")
        .collect()
}

/// A root as bytes (names are bytes: Linux does not require UTF-8).
fn root_bytes(root: &Path) -> &[u8] {
    root.as_os_str().as_bytes()
}

/// The components of a relative `name`: empty ones (repeated or trailing `/`) and `.` name the
/// directory they are in, so they are dropped; an absolute name or a `..` is refused.
pub fn components(name: &[u8]) -> Result<Vec<&[u8]>, Unplaced> {
    if name.starts_with(b"/") {
        return Err(Unplaced::Absolute);
    }
    let parts = parts(name);
    if parts.contains(&&b".."[..]) {
        return Err(Unplaced::Parent);
    }
    if parts.is_empty() {
        return Err(Unplaced::Empty);
    }
    Ok(parts)
}

/// A [`DK_F_NAME`](diffkeeper_ebpf::event::DK_F_NAME) event with its names placed: each end as
/// the other families send it, (root id, path below the root), so the canary and the journal
/// see one form. An end whose name cannot be placed keeps its directory, ending in `/`, and the
/// event is flagged `truncated` (the change happened in there, under a name not known); it is
/// counted and logged too. `None` when no end is left: an absolute name below no root (sent
/// because it starts with the roots' common directories), or one that cannot be placed.
pub fn place_event(mut event: Event, roots: &[PathBuf], unreported: &Unreported) -> Option<Event> {
    let Names {
        path, from, raced, ..
    } = event.name.take()?;
    let mut cut = event.truncated;
    let who = (event.comm, event.pid);
    let (path_end, from_end) = (event.path.take(), event.from.take());
    let mut place_one = |end: Option<(u32, Vec<u8>)>, name: Option<Vec<u8>>| {
        let (id, mut dir) = end?;
        let Some(name) = name else {
            // Only the directory came (its name was not read): flagged, never guessed.
            cut = true;
            if !dir.is_empty() && !dir.ends_with(b"/") {
                dir.push(b'/');
            }
            return (id != DK_ROOT_ABS).then_some((id, dir));
        };
        let placed = if raced {
            Err(Unplaced::Raced)
        } else {
            place_end(roots, id, &dir, &name)
        };
        match placed {
            Ok(end) => Some(end),
            Err(Unplaced::Outside) => None,
            Err(why) => {
                log_unplaced(who, roots, (id, &dir), &name, &why, unreported);
                cut = true;
                if !dir.is_empty() {
                    dir.push(b'/');
                }
                (id != DK_ROOT_ABS).then_some((id, dir))
            }
        }
    };
    let (path, from) = (place_one(path_end, path), place_one(from_end, from));
    event.path = path;
    event.from = from;
    event.truncated = cut;
    (event.path.is_some() || event.from.is_some()).then_some(event)
}

/// One named end placed: (root id, path below that root).
fn place_end(
    roots: &[PathBuf],
    id: u32,
    dir: &[u8],
    name: &[u8],
) -> Result<(u32, Vec<u8>), Unplaced> {
    if id == DK_ROOT_ABS {
        return place_absolute(name, roots);
    }
    let root = roots.get(id as usize).ok_or(Unplaced::Outside)?;
    let root = trim_end_slashes(root_bytes(root));
    let start = if dir.is_empty() {
        root.to_vec()
    } else {
        [root, b"/", dir].concat()
    };
    let placed = place(&start, name)?;
    let below = &placed[root.len()..];
    let skip = below.iter().take_while(|&&b| b == b'/').count();
    Ok((id, below[skip..].to_vec()))
}

/// Logs the first hundred unplaced names, then one at each power of two: a program making
/// such names in a loop cannot flood the log; the count is exact either way.
fn log_unplaced(
    (comm, pid): (Comm, u32),
    roots: &[PathBuf],
    (id, dir): (u32, &[u8]),
    name: &[u8],
    why: &Unplaced,
    unreported: &Unreported,
) {
    let total = unreported.count_unplaced_name();
    if total <= 100 || total.is_power_of_two() {
        let base = match roots.get(id as usize) {
            Some(root) => format!(
                "{}/{}",
                String::from_utf8_lossy(trim_end_slashes(root_bytes(root))),
                String::from_utf8_lossy(dir)
            ),
            None => "the caller's root directory".into(),
        };
        log::warn!(
            "[eBPF] name not placed: {} (pid {}) passed {:?} relative to {base}: {why} \
             ({total} in all; diffkeeper_unreported_changes_total{{reason=\"{}\"}})",
            comm,
            pid,
            OsStr::from_bytes(name),
            Unreported::UNPLACED_NAME
        );
    }
}

/// An absolute `name` (from a caller that shares the sidecar's root directory) placed below the
/// watched root it lies in: the innermost root whose path is a prefix of its components, then
/// [`place`] below it. `roots` are absolute, as the sidecar sees them; returns (root id, path
/// below the root).
pub fn place_absolute(name: &[u8], roots: &[PathBuf]) -> Result<(u32, Vec<u8>), Unplaced> {
    let parts = parts(name);
    if parts.contains(&&b".."[..]) {
        return Err(Unplaced::Parent);
    }
    let root = roots
        .iter()
        .enumerate()
        .filter_map(|(id, root)| {
            let root = root_bytes(root);
            let root_parts: Vec<&[u8]> = root
                .split(|&b| b == b'/')
                .filter(|p| !p.is_empty())
                .collect();
            let below = parts.len() > root_parts.len() && parts.starts_with(&root_parts);
            below.then_some((id, root, root_parts.len()))
        })
        .max_by_key(|(_, _, depth)| *depth); // the innermost root holding the name
    let (id, root, depth) = root.ok_or(Unplaced::Outside)?;
    let below = parts[depth..].join(&b'/');
    place(root, &below)?;
    Ok((id as u32, below))
}

/// `dir` (absolute, as the sidecar sees it) joined with `name`. Each component before the last
/// must not be a symlink or a file now (lstat): a real directory, or gone since (the call went
/// through it, and the reader places names a few milliseconds later: an app that removes the
/// directories right after must not lose its lines). The last one is the name itself.
pub fn place(dir: &[u8], name: &[u8]) -> Result<Vec<u8>, Unplaced> {
    let parts = components(name)?;
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    path.extend_from_slice(trim_end_slashes(dir));
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            let through = match std::fs::symlink_metadata(OsStr::from_bytes(&path)) {
                Ok(meta) => meta.is_dir(),
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            };
            if !through {
                let shown = String::from_utf8_lossy(&path).into_owned();
                return Err(Unplaced::NotADirectory(shown));
            }
        }
        path.push(b'/');
        path.extend_from_slice(part);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(dir: &str, name: &str) -> Result<String, Unplaced> {
        place(dir.as_bytes(), name.as_bytes()).map(|p| String::from_utf8(p).expect("UTF-8"))
    }

    fn absolute(name: &str, roots: &[PathBuf]) -> Result<(u32, String), Unplaced> {
        place_absolute(name.as_bytes(), roots)
            .map(|(id, p)| (id, String::from_utf8(p).expect("UTF-8")))
    }

    #[test]
    fn plain_relative_names_are_placed() {
        assert_eq!(components(b"a.txt").unwrap(), [b"a.txt"]);
        assert_eq!(components(b"./a//b/").unwrap(), [b"a", b"b"]);
        assert_eq!(components(b"a/./b").unwrap(), [b"a", b"b"]);
        assert_eq!(placed("/state/", "x").unwrap(), "/state/x");
        assert_eq!(placed("/state/d", ".//x").unwrap(), "/state/d/x");
        assert_eq!(placed("/", "x").unwrap(), "/x");
    }

    #[test]
    fn names_that_are_not_utf8_keep_their_bytes() {
        assert_eq!(place(b"/state", b"bad\xff").unwrap(), b"/state/bad\xff");
        assert_eq!(place(b"/state", b"bad\xfe").unwrap(), b"/state/bad\xfe");
    }

    #[test]
    fn absolute_parent_and_empty_names_are_refused() {
        assert_eq!(placed("/state", "/state/x"), Err(Unplaced::Absolute));
        assert_eq!(placed("/state", "../x"), Err(Unplaced::Parent));
        assert_eq!(placed("/state", "a/../x"), Err(Unplaced::Parent));
        assert_eq!(placed("/state", "./"), Err(Unplaced::Empty));
        assert_eq!(placed("/state", ""), Err(Unplaced::Empty));
    }

    #[test]
    fn absolute_names_are_placed_below_their_root() {
        let dir = std::env::temp_dir().join(format!("dk-abs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("st/sub")).expect("mkdir");
        let st = dir.join("st").to_string_lossy().into_owned();
        let roots = [PathBuf::from(&st), PathBuf::from(format!("{st}/sub"))];
        assert_eq!(
            absolute(&format!("{st}/a.txt"), &roots),
            Ok((0, "a.txt".into()))
        );
        // The innermost root; `.` and repeated `/` name the directory they are in.
        assert_eq!(
            absolute(&format!("/{st}/./sub//b"), &roots),
            Ok((1, "b".into()))
        );
        assert_eq!(absolute(&st, &roots), Err(Unplaced::Outside));
        assert_eq!(
            absolute(&format!("{st}x/a"), &roots),
            Err(Unplaced::Outside)
        );
        assert_eq!(
            absolute(&format!("{st}/../st/a"), &roots),
            Err(Unplaced::Parent)
        );
        assert_eq!(
            absolute(&format!("{st}/gone/a"), &roots),
            Ok((0, "gone/a".into()))
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_name_through_a_symlink_or_a_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("dk-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real")).expect("mkdir");
        std::os::unix::fs::symlink("/tmp", dir.join("link")).expect("symlink");
        let d = dir.to_string_lossy();
        assert_eq!(placed(&d, "real/x"), Ok(format!("{d}/real/x")));
        assert_eq!(
            placed(&d, "link/x"),
            Err(Unplaced::NotADirectory(format!("{d}/link")))
        );
        // Gone since: the call went through it.
        assert_eq!(placed(&d, "gone/x"), Ok(format!("{d}/gone/x")));
        std::fs::write(dir.join("file"), b"f").expect("write");
        assert_eq!(
            placed(&d, "file/x"),
            Err(Unplaced::NotADirectory(format!("{d}/file")))
        );
        // The last component is the new name itself: a symlink there is what was made.
        assert_eq!(placed(&d, "link"), Ok(format!("{d}/link")));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
