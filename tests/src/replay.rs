//! Replaying a journal onto a tree: the journal's contract is that replaying its lines onto the
//! tree it started from gives the real tree at its end. Any backend's journal can be checked
//! with [`replay`] (inotify, eBPF modes, VM rows).
//!
//! The tree is names and kinds only (directory or not: files, symlinks and hard links are all
//! "not a directory", the way the journal names them `create`); contents and modes are not in
//! the journal. Each op's rule, and what counts as an anomaly (an op whose precondition does
//! not hold: a sign of a wrong, missing or misordered line):
//! - `create`: the path is a file now (anomaly: its parent is missing, or it is a directory);
//! - `mkdir`: the path is a directory now (anomaly: it exists, or its parent is missing);
//! - `write`, `attrib`: nothing changes (anomaly: the path is missing);
//! - `delete`, `rmdir`: the path and everything below it are gone (anomaly: it is missing);
//!   a directory moved out of the roots is journaled by inotify as `delete`;
//! - `rename`: `from` and its subtree move to `path`, replacing what was there (anomaly:
//!   `from` is missing);
//! - `gap`: nothing; from here on lines may repeat what the rescan's `repair` lines said, so
//!   anomalies after a gap are counted apart.
//! - `capture` (a `--store` note on the store's content): nothing, it is not a change.
//!
//! Also checked: `seq` increases by one, `ts` never decreases.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    NonDir,
}

/// Paths relative to the root (no leading `/`), with their kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree(pub BTreeMap<String, Kind>);

impl Tree {
    /// Everything below `root`, symlinks not followed.
    pub fn scan(root: &Path) -> Tree {
        let mut tree = BTreeMap::new();
        let mut pending = vec![root.to_owned()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = path.symlink_metadata() else {
                    continue;
                };
                let rel = path.strip_prefix(root).expect("below the root");
                let rel = name_key(rel.as_os_str().as_bytes());
                if meta.is_dir() {
                    pending.push(path);
                    tree.insert(rel, Kind::Dir);
                } else {
                    tree.insert(rel, Kind::NonDir);
                }
            }
        }
        Tree(tree)
    }

    /// What differs from `other`, one line per path (empty when equal).
    pub fn differences(&self, other: &Tree) -> String {
        let mut out = String::new();
        for (path, kind) in &self.0 {
            match other.0.get(path) {
                None => {
                    let _ = writeln!(out, "  only in the replay: {path} ({kind:?})");
                }
                Some(k) if k != kind => {
                    let _ = writeln!(out, "  {path}: replay {kind:?}, real {k:?}");
                }
                Some(_) => {}
            }
        }
        for (path, kind) in &other.0 {
            if !self.0.contains_key(path) {
                let _ = writeln!(out, "  only in the real tree: {path} ({kind:?})");
            }
        }
        out
    }

    fn remove_tree(&mut self, path: &str) -> Option<Kind> {
        let below = format!("{path}/");
        self.0.retain(|p, _| !p.starts_with(&below));
        self.0.remove(path)
    }

    fn parent_exists(&self, path: &str) -> bool {
        match path.rsplit_once('/') {
            None => true,
            Some((parent, _)) => self.0.get(parent) == Some(&Kind::Dir),
        }
    }
}

/// The outcome of a replay.
#[derive(Debug, Default)]
pub struct Replay {
    pub tree: Tree,
    /// Ops whose precondition did not hold, before the first gap.
    pub anomalies: Vec<String>,
    /// The same after a gap (expected: repair lines and queued lines may say a thing twice).
    pub anomalies_after_gap: Vec<String>,
    /// `seq` not one more than the line before, or `ts` before the line before.
    pub order_errors: Vec<String>,
    pub gaps: Vec<Value>,
    pub repairs: usize,
    /// Lines per op (including `gap`).
    pub ops: BTreeMap<String, usize>,
}

impl Replay {
    /// A readable account for a failure message.
    pub fn summary(&self) -> String {
        format!(
            "ops {:?}, gaps {}, repair lines {}, anomalies {:?}, after a gap {:?}, order errors {:?}",
            self.ops,
            self.gaps.len(),
            self.repairs,
            self.anomalies,
            self.anomalies_after_gap,
            self.order_errors
        )
    }
}

/// Replays the journal `lines` (JSON text, one per line) onto `start`; paths are made relative
/// to `root`, lines for paths outside it are skipped.
pub fn replay(start: Tree, root: &Path, lines: &str) -> Replay {
    let root = [root.as_os_str().as_bytes(), b"/"].concat();
    let mut r = Replay {
        tree: start,
        ..Replay::default()
    };
    let mut last: Option<(u64, String)> = None;
    for (n, text) in lines.lines().enumerate() {
        let line: Value = match serde_json::from_str(text) {
            Ok(line) => line,
            Err(e) => {
                r.order_errors
                    .push(format!("line {}: not JSON ({e}): {text}", n + 1));
                continue;
            }
        };
        let seq = line["seq"].as_u64().unwrap_or(0);
        let ts = line["ts"].as_str().unwrap_or_default().to_string();
        if let Some((last_seq, last_ts)) = &last {
            if seq != last_seq + 1 {
                r.order_errors
                    .push(format!("seq {seq} after {last_seq}: {text}"));
            }
            if ts < *last_ts {
                r.order_errors
                    .push(format!("ts {ts} after {last_ts}: {text}"));
            }
        }
        last = Some((seq, ts));
        let op = line["op"].as_str().unwrap_or_default().to_string();
        *r.ops.entry(op.clone()).or_default() += 1;
        if op == "gap" {
            r.gaps.push(line);
            continue;
        }
        if op == "capture" {
            // Capture's note about the store's content: not a change to the tree.
            continue;
        }
        if line["repair"] == Value::Bool(true) {
            r.repairs += 1;
        }
        // A name's exact bytes: `KEY_b64` when the journal gives them (not UTF-8), else `KEY`.
        let rel = |key: &str| {
            let exact = match line[format!("{key}_b64")].as_str() {
                Some(b64) => diffkeeper_cli::name::decode_exact(b64).ok()?,
                None => line[key].as_str()?.as_bytes().to_vec(),
            };
            exact.strip_prefix(&root[..]).map(name_key)
        };
        let Some(path) = rel("path") else {
            continue;
        };
        let from = rel("from");
        if let Some(anomaly) = apply(&mut r.tree, &op, &path, from.as_deref()) {
            let anomaly = format!("seq {seq}: {anomaly}");
            if r.gaps.is_empty() {
                r.anomalies.push(anomaly);
            } else {
                r.anomalies_after_gap.push(anomaly);
            }
        }
    }
    r
}

/// A tree key for a name's bytes: UTF-8 as it is, each byte that is not as NUL and two hex
/// digits (no name holds a NUL, so two names never share a key, and `/` stays a separator).
pub fn name_key(bytes: &[u8]) -> String {
    let mut key = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        key.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(key, "\0{b:02x}");
        }
    }
    key
}

/// Applies one op; returns the anomaly, if any (the op is applied as well as it can be).
fn apply(tree: &mut Tree, op: &str, path: &str, from: Option<&str>) -> Option<String> {
    let exists = tree.0.get(path).copied();
    let orphan = !tree.parent_exists(path);
    match op {
        "create" => {
            let bad = orphan || exists == Some(Kind::Dir);
            tree.remove_tree(path);
            tree.0.insert(path.to_owned(), Kind::NonDir);
            bad.then(|| format!("create {path}: parent missing or a directory there"))
        }
        "mkdir" => {
            tree.remove_tree(path);
            tree.0.insert(path.to_owned(), Kind::Dir);
            (orphan || exists.is_some())
                .then(|| format!("mkdir {path}: parent missing or already there"))
        }
        "write" | "attrib" => exists.is_none().then(|| format!("{op} {path}: missing")),
        "delete" | "rmdir" => tree
            .remove_tree(path)
            .is_none()
            .then(|| format!("{op} {path}: missing")),
        "rename" => {
            let Some(from) = from else {
                return Some(format!("rename {path} without from"));
            };
            if !tree.0.contains_key(from) {
                return Some(format!("rename {from} -> {path}: {from} missing"));
            }
            let below = format!("{from}/");
            let moved: Vec<(String, Kind)> = tree
                .0
                .iter()
                .filter(|(p, _)| p.starts_with(&below) || p.as_str() == from)
                .map(|(p, k)| (format!("{path}{}", &p[from.len()..]), *k))
                .collect();
            tree.remove_tree(from);
            tree.remove_tree(path);
            tree.0.extend(moved);
            orphan.then(|| format!("rename {from} -> {path}: parent of {path} missing"))
        }
        other => Some(format!("unknown op {other:?} for {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_move_subtrees_and_anomalies_are_found() {
        let mut start = Tree::default();
        start.0.insert("d".into(), Kind::Dir);
        start.0.insert("d/f".into(), Kind::NonDir);
        let lines = [
            r#"{"seq":1,"ts":"2026-01-01T00:00:00.000000001Z","op":"rename","path":"/s/e","from":"/s/d"}"#,
            r#"{"seq":2,"ts":"2026-01-01T00:00:00.000000002Z","op":"create","path":"/s/e/g"}"#,
            r#"{"seq":3,"ts":"2026-01-01T00:00:00.000000003Z","op":"write","path":"/s/gone"}"#,
            r#"{"seq":5,"ts":"2026-01-01T00:00:00.000000001Z","op":"mkdir","path":"/s/n"}"#,
        ]
        .join("\n");
        let r = replay(start, Path::new("/s"), &lines);
        let names: Vec<&str> = r.tree.0.keys().map(String::as_str).collect();
        assert_eq!(names, ["e", "e/f", "e/g", "n"]);
        assert_eq!(r.anomalies, ["seq 3: write gone: missing"]);
        assert_eq!(r.order_errors.len(), 2, "{:?}", r.order_errors);
    }

    #[test]
    fn names_that_are_not_utf8_replay_by_their_exact_bytes() {
        let lines = [
            r#"{"seq":1,"ts":"2026-01-01T00:00:00.000000001Z","op":"create","path":"/s/bad\ufffd","path_b64":"L3MvYmFk/w=="}"#,
            r#"{"seq":2,"ts":"2026-01-01T00:00:00.000000002Z","op":"create","path":"/s/bad\ufffd","path_b64":"L3MvYmFk/g=="}"#,
            r#"{"seq":3,"ts":"2026-01-01T00:00:00.000000003Z","op":"delete","path":"/s/bad\ufffd","path_b64":"L3MvYmFk/w=="}"#,
        ]
        .join("\n");
        let r = replay(Tree::default(), Path::new("/s"), &lines);
        let names: Vec<&str> = r.tree.0.keys().map(String::as_str).collect();
        assert_eq!(names, ["bad\0fe"]);
        assert!(r.anomalies.is_empty(), "{:?}", r.anomalies);
        assert_eq!(name_key(b"a/\xffb/\xc3\xa9"), "a/\0ffb/\u{e9}");
    }
}
