//! `--exclude GLOB`: paths whose content is not recorded. `*` and `?` match within one name,
//! `**` across names; a glob without `/` is matched against every name of the path (so
//! `*.tmp` excludes such files anywhere, and `cache` a directory of that name with all below
//! it), one with `/` against the whole absolute path.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The `--exclude` globs, checked once at start.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    globs: Vec<String>,
}

/// A glob that cannot match anything useful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadGlob {
    pub glob: String,
    pub why: &'static str,
}

impl std::fmt::Display for BadGlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--exclude {:?}: {} (e.g. '*.tmp', 'cache' or '/state/tmp/**')",
            self.glob, self.why
        )
    }
}

impl std::error::Error for BadGlob {}

impl Excludes {
    pub fn new(globs: &[String]) -> Result<Self, BadGlob> {
        for glob in globs {
            let why = if glob.is_empty() {
                Some("empty")
            } else if glob.contains('/') && !glob.starts_with('/') && !glob.starts_with("**") {
                Some("a glob with / must be absolute (start with / or **)")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(BadGlob {
                    glob: glob.clone(),
                    why,
                });
            }
        }
        Ok(Self {
            globs: globs.to_vec(),
        })
    }

    /// The first glob that excludes `path` (absolute), if any.
    pub fn matching(&self, path: &Path) -> Option<&str> {
        let path = path.as_os_str().as_bytes();
        self.globs
            .iter()
            .find(|glob| {
                if glob.contains('/') {
                    matches(glob.as_bytes(), path)
                        || (1..path.len())
                            .any(|i| path[i] == b'/' && matches(glob.as_bytes(), &path[..i]))
                } else {
                    path.split(|&b| b == b'/')
                        .any(|name| matches(glob.as_bytes(), name))
                }
            })
            .map(String::as_str)
    }
}

/// Glob match of a whole `text`: `*`/`?` never cross `/`, `**` does.
fn matches(glob: &[u8], text: &[u8]) -> bool {
    match glob.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) if rest.first() == Some(&b'*') => {
            let rest = &rest[1..];
            (0..=text.len()).any(|i| matches(rest, &text[i..]))
        }
        Some((b'*', rest)) => {
            let name_end = text.iter().position(|&b| b == b'/').unwrap_or(text.len());
            (0..=name_end).any(|i| matches(rest, &text[i..]))
        }
        Some((b'?', rest)) => text.first().is_some_and(|&b| b != b'/') && matches(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && matches(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(globs: &[&str]) -> Excludes {
        Excludes::new(&globs.iter().map(|g| g.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn names_and_paths() {
        let e = ex(&["*.tmp", "cache", "/state/logs/**", "/state/a?c/*.db"]);
        assert_eq!(e.matching(Path::new("/state/x/y.tmp")), Some("*.tmp"));
        assert_eq!(e.matching(Path::new("/state/cache/deep/f")), Some("cache"));
        assert_eq!(
            e.matching(Path::new("/state/logs/2026/app.log")),
            Some("/state/logs/**")
        );
        assert_eq!(
            e.matching(Path::new("/state/abc/x.db")),
            Some("/state/a?c/*.db")
        );
        assert_eq!(e.matching(Path::new("/state/abc/sub/x.db")), None);
        assert_eq!(e.matching(Path::new("/state/x.tmpl")), None);
        assert_eq!(e.matching(Path::new("/state/caches")), None);
    }

    #[test]
    fn a_directory_glob_excludes_what_is_below() {
        let e = ex(&["/state/tmp"]);
        assert_eq!(e.matching(Path::new("/state/tmp/a/b")), Some("/state/tmp"));
        assert_eq!(e.matching(Path::new("/state/tmpx")), None);
    }

    #[test]
    fn bad_globs_are_refused() {
        for bad in ["", "rel/path"] {
            assert!(Excludes::new(&[bad.to_string()]).is_err(), "{bad:?}");
        }
    }
}
