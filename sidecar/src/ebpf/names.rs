//! New names in tracepoint mode (link, linkat, symlink, symlinkat): the kernel side sends the
//! directory the new name is relative to (walked up from its dentry, so exact) and the name
//! exactly as the caller passed it ([`Event::name`](diffkeeper_ebpf::event::Event::name)).
//! Here the name is placed below that directory, or refused with the reason: the journal never
//! carries a guessed path.

use std::fmt;
use std::path::Path;

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
    /// lead anywhere, or something removed since): the new file may not be where the name says.
    NotADirectory(String),
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
                "{dir} is not a directory (a symlink, or gone): the name may lead elsewhere"
            ),
        }
    }
}

/// The components of a relative `name`: empty ones (repeated or trailing `/`) and `.` name the
/// directory they are in, so they are dropped; an absolute name or a `..` is refused.
pub fn components(name: &str) -> Result<Vec<&str>, Unplaced> {
    if name.starts_with('/') {
        return Err(Unplaced::Absolute);
    }
    let parts: Vec<&str> = name
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(Unplaced::Parent);
    }
    if parts.is_empty() {
        return Err(Unplaced::Empty);
    }
    Ok(parts)
}

/// `dir` (absolute, as the sidecar sees it) joined with `name`. Each component before the last
/// must be a directory below `dir` now, not a symlink (lstat); the last one is the new name
/// itself, which link calls never follow.
pub fn place(dir: &str, name: &str) -> Result<String, Unplaced> {
    let parts = components(name)?;
    let mut path = String::with_capacity(dir.len() + 1 + name.len());
    path.push_str(dir.trim_end_matches('/'));
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            let is_dir = std::fs::symlink_metadata(Path::new(&path)).is_ok_and(|m| m.is_dir());
            if !is_dir {
                return Err(Unplaced::NotADirectory(path));
            }
        }
        path.push('/');
        path.push_str(part);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_names_are_placed() {
        assert_eq!(components("a.txt").unwrap(), ["a.txt"]);
        assert_eq!(components("./a//b/").unwrap(), ["a", "b"]);
        assert_eq!(components("a/./b").unwrap(), ["a", "b"]);
        assert_eq!(place("/state/", "x").unwrap(), "/state/x");
        assert_eq!(place("/state/d", ".//x").unwrap(), "/state/d/x");
        assert_eq!(place("/", "x").unwrap(), "/x");
    }

    #[test]
    fn absolute_parent_and_empty_names_are_refused() {
        assert_eq!(place("/state", "/state/x"), Err(Unplaced::Absolute));
        assert_eq!(place("/state", "../x"), Err(Unplaced::Parent));
        assert_eq!(place("/state", "a/../x"), Err(Unplaced::Parent));
        assert_eq!(place("/state", "./"), Err(Unplaced::Empty));
        assert_eq!(place("/state", ""), Err(Unplaced::Empty));
    }

    #[test]
    fn a_name_through_a_symlink_or_a_missing_directory_is_refused() {
        let dir = std::env::temp_dir().join(format!("dk-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real")).expect("mkdir");
        std::os::unix::fs::symlink("/tmp", dir.join("link")).expect("symlink");
        let d = dir.to_string_lossy();
        assert_eq!(place(&d, "real/x"), Ok(format!("{d}/real/x")));
        assert_eq!(
            place(&d, "link/x"),
            Err(Unplaced::NotADirectory(format!("{d}/link")))
        );
        assert_eq!(
            place(&d, "gone/x"),
            Err(Unplaced::NotADirectory(format!("{d}/gone")))
        );
        // The last component is the new name itself: a symlink there is what was made.
        assert_eq!(place(&d, "link"), Ok(format!("{d}/link")));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
