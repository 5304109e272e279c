//! Validated names: relative paths below a root, and root names.
//!
//! Every path is checked where it enters the store and again where it leaves it (export,
//! restore), so a forged store can never name a place outside the target.

use crate::error::{Result, StoreError};

/// Longest path accepted (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;

/// Checks a path relative to its root: not empty, not absolute, no `.`/`..`/empty component,
/// no NUL, at most [`MAX_PATH`] bytes.
pub fn check_rel(path: &[u8]) -> Result<()> {
    let bad = |reason| {
        Err(StoreError::BadPath {
            path: path.to_vec(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.len() > MAX_PATH {
        return bad("longer than 4096 bytes");
    }
    if path[0] == b'/' {
        return bad("absolute (must be relative to its root)");
    }
    if path.contains(&0) {
        return bad("contains a NUL byte");
    }
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" => return bad("has an empty component (// or a trailing /)"),
            b"." | b".." => return bad("has a . or .. component"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a root name: an absolute path made of clean components (`/` alone is allowed).
pub fn check_root(root: &str) -> Result<()> {
    let bad = |reason| {
        Err(StoreError::BadRoot {
            root: root.to_string(),
            reason,
        })
    };
    if !root.starts_with('/') {
        return bad("not absolute");
    }
    if root.len() > MAX_PATH || root.contains('\0') {
        return bad("too long or contains a NUL byte");
    }
    if root == "/" {
        return Ok(());
    }
    if check_rel(&root.as_bytes()[1..]).is_err() {
        return bad("has an empty, . or .. component or a trailing /");
    }
    Ok(())
}

/// True when `path` is `dir` or lies below it.
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/')
}

/// The parent of a relative path, if it has one.
pub fn parent(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|&b| b == b'/').map(|i| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        for good in [
            &b"a"[..],
            b"a/b",
            b"dir with space/\xc3\xa9t\xc3\xa9",
            b"..a/b..",
        ] {
            assert!(check_rel(good).is_ok(), "{good:?}");
        }
        for bad in [
            &b""[..],
            b"/a",
            b"a/../b",
            b"..",
            b"a//b",
            b"a/",
            b"./a",
            b"a\0b",
        ] {
            assert!(check_rel(bad).is_err(), "{bad:?}");
        }
        assert!(check_rel(&vec![b'a'; MAX_PATH + 1]).is_err());
    }

    #[test]
    fn roots() {
        for good in ["/", "/var/lib/app", "/state"] {
            assert!(check_root(good).is_ok(), "{good}");
        }
        for bad in ["", "state", "/a/../b", "/a/", "//a"] {
            assert!(check_root(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn within() {
        assert!(is_within(b"a/b", b"a"));
        assert!(is_within(b"a", b"a"));
        assert!(!is_within(b"ab", b"a"));
        assert_eq!(parent(b"a/b/c"), Some(&b"a/b"[..]));
        assert_eq!(parent(b"a"), None);
    }
}
