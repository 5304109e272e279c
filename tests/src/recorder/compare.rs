//! Two trees compared the way an export must match its snapshot: the same paths, file types,
//! permission bits, file contents and symlink targets.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Every difference between `want` and `got`, one line each naming the path (empty: equal).
pub fn differences(want: &Path, got: &Path) -> Vec<Difference> {
    let mut out = Vec::new();
    let (want_paths, got_paths) = (crate::scratch::tree(want), crate::scratch::tree(got));
    for rel in &want_paths {
        if !got_paths.contains(rel) {
            out.push(Difference::new(rel, "missing from the export"));
            continue;
        }
        if let Some(why) = entry_difference(&want.join(rel), &got.join(rel)) {
            out.push(Difference::new(rel, &why));
        }
    }
    for rel in got_paths.iter().filter(|rel| !want_paths.contains(rel)) {
        out.push(Difference::new(rel, "in the export, not in the snapshot"));
    }
    out
}

/// One path that differs, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub how: String,
}

impl Difference {
    fn new(path: &str, how: &str) -> Self {
        Self {
            path: path.to_string(),
            how: how.to_string(),
        }
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.how)
    }
}

fn entry_difference(want: &Path, got: &Path) -> Option<String> {
    let (w, g) = match (fs::symlink_metadata(want), fs::symlink_metadata(got)) {
        (Ok(w), Ok(g)) => (w, g),
        (w, g) => return Some(format!("lstat: {:?} vs {:?}", w.err(), g.err())),
    };
    let kind = |m: &fs::Metadata| {
        let t = m.file_type();
        if t.is_symlink() {
            "symlink"
        } else if t.is_dir() {
            "dir"
        } else if t.is_file() {
            "file"
        } else {
            "special"
        }
    };
    if kind(&w) != kind(&g) {
        return Some(format!(
            "a {} in the snapshot, a {} in the export",
            kind(&w),
            kind(&g)
        ));
    }
    if w.file_type().is_symlink() {
        let (wt, gt) = (fs::read_link(want).ok(), fs::read_link(got).ok());
        return (wt != gt).then(|| format!("symlink target {wt:?} vs {gt:?}"));
    }
    let (wm, gm) = (
        w.permissions().mode() & 0o7777,
        g.permissions().mode() & 0o7777,
    );
    if wm != gm {
        return Some(format!("mode {wm:o} vs {gm:o}"));
    }
    if w.is_file() {
        let (wc, gc) = (fs::read(want).ok()?, fs::read(got).ok()?);
        if wc != gc {
            let first = wc
                .iter()
                .zip(&gc)
                .position(|(a, b)| a != b)
                .unwrap_or(wc.len().min(gc.len()));
            return Some(format!(
                "content differs ({} vs {} bytes, first at byte {first})",
                wc.len(),
                gc.len()
            ));
        }
    }
    None
}
