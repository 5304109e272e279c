//! The five commands, each printing its result to stdout.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

use diffkeeper_cli::name::{printed, EXACT_SUFFIX};
use diffkeeper_store::{DiffKind, StoreError, StoreReader};

use crate::{patch, when, Failure};

fn open(store: &Path) -> Result<StoreReader, Failure> {
    let reader = StoreReader::open(store)?;
    if let Some(bytes) = reader.torn_tail {
        log::info!("store: an unfinished last record ({bytes} bytes) is ignored (the writer is live, or crashed mid-append)");
    }
    Ok(reader)
}

fn stdout_error(e: std::io::Error) -> Failure {
    Failure::Store(StoreError::io("stdout", e))
}

pub fn timeline(store: &Path, path: Option<&OsStr>, json: bool) -> Result<ExitCode, Failure> {
    let reader = open(store)?;
    let mut out = std::io::stdout().lock();
    for e in reader.timeline(path.map(OsStr::as_bytes)) {
        let full = full_path(&e.root, &e.path);
        let line = if json {
            let mut v = serde_json::json!({
                "ts": when::format(e.ts_ns),
                "op": e.op,
                "root": e.root,
            });
            put_name(&mut v, "path", &e.path);
            if let Some(size) = e.size {
                v["size"] = size.into();
            }
            if let Some(other) = &e.other {
                put_name(&mut v, "other", other);
            }
            v.to_string()
        } else {
            let detail = match (&e.size, &e.other) {
                (Some(size), _) => format!(" ({size} bytes)"),
                (None, Some(other)) => format!(" -> {}", shown(other)),
                (None, None) => String::new(),
            };
            format!("{}  {:<8} {full}{detail}", when::format(e.ts_ns), e.op)
        };
        writeln!(out, "{line}").map_err(stdout_error)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cat(store: &Path, path: &OsStr, at: u64) -> Result<ExitCode, Failure> {
    let reader = open(store)?;
    let mut out = std::io::stdout().lock();
    reader.cat(path.as_bytes(), at, &mut out)?;
    out.flush().map_err(stdout_error)?;
    Ok(ExitCode::SUCCESS)
}

pub fn export(store: &Path, at: u64, out: &Path) -> Result<ExitCode, Failure> {
    let reader = open(store)?;
    let report = reader.export(at, out)?;
    eprintln!(
        "diffkeeper: exported {} files ({} bytes), {} hard links, {} symlinks, {} directories to {}",
        report.files,
        report.bytes,
        report.hardlinks,
        report.symlinks,
        report.dirs,
        out.display()
    );
    if report.shadowed > 0 {
        eprintln!(
            "diffkeeper: left out {} entries an outer root recorded where a root inside it \
             lies (that root's own entries are exported there)",
            report.shadowed
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn diff(store: &Path, from: u64, to: u64, with_patch: bool) -> Result<ExitCode, Failure> {
    let reader = open(store)?;
    let mut out = std::io::stdout().lock();
    let trees = with_patch.then(|| (reader.tree_at(from), reader.tree_at(to)));
    for entry in reader.diff(from, to) {
        let mark = match entry.kind {
            DiffKind::Added => 'A',
            DiffKind::Removed => 'D',
            DiffKind::Modified => 'M',
            DiffKind::Attributes => 'a',
        };
        let full = full_path(&entry.root, &entry.path);
        writeln!(out, "{mark} {full}").map_err(stdout_error)?;
        if let Some((old, new)) = &trees {
            let text = patch::unified(&reader, &entry, old, new, &full)?;
            out.write_all(text.as_bytes()).map_err(stdout_error)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify(store: &Path) -> Result<ExitCode, Failure> {
    let report = StoreReader::verify(store)?;
    for note in &report.torn_tails {
        println!("note: {note}");
    }
    for problem in &report.problems {
        println!("corrupt: {problem}");
    }
    println!(
        "{}: {} records, {} chunks checked, {} problems",
        store.display(),
        report.records,
        report.chunks,
        report.problems.len()
    );
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The absolute path of a root-relative path, as [`shown`] prints it.
pub fn full_path(root: &str, path: &[u8]) -> String {
    let sep = if root.ends_with('/') { &b""[..] } else { b"/" };
    shown(&[root.as_bytes(), sep, path].concat())
}

/// A name in text output: as it is when UTF-8; else lossily, then ` [path_b64=...]` with its
/// exact bytes (the journal's rule, docs/journal.md), so two names never print the same.
pub fn shown(name: &[u8]) -> String {
    let printed = printed(name);
    match printed.exact_b64 {
        None => printed.text.into_owned(),
        Some(exact) => format!("{} [path{EXACT_SUFFIX}={exact}]", printed.text),
    }
}

/// Sets `key` to a name in JSON output, and `key_b64` to its exact bytes when not UTF-8.
fn put_name(v: &mut serde_json::Value, key: &str, name: &[u8]) {
    let printed = printed(name);
    v[key] = printed.text.as_ref().into();
    if let Some(exact) = printed.exact_b64 {
        v[format!("{key}{EXACT_SUFFIX}")] = exact.into();
    }
}
