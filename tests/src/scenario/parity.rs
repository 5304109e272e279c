//! The parity workload: one scripted change of every kind a storm makes, each with the
//! (op, path, from) lines a replay needs from any backend. The journal is compared with it step
//! by step ([`compare`]), and the VM matrix prints the result per backend and kernel.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{json, Value};

/// Between two steps.
const STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// A journal line as parity sees it: (op, path, from), paths relative to the workload's root.
pub type Line = (String, String, Option<String>);

/// One step of the workload: its kind and the lines it must produce.
pub struct Step {
    pub kind: &'static str,
    pub expected: Vec<Line>,
}

fn line(op: &str, path: &str, from: Option<&str>) -> Line {
    (op.into(), path.into(), from.map(str::to_owned))
}

/// Makes the changes under `root` (moving things in from and out to `outside`), in order.
pub fn perform(root: &Path, outside: &Path) -> std::io::Result<Vec<Step>> {
    let at = |rel: &str| root.join(rel);
    let mut steps = Vec::new();
    // Paced: parity is about which ops a backend reports, not about a reader that reads a
    // directory moved in after it moved on (the storms are the race).
    let mut step = |kind, expected| {
        steps.push(Step { kind, expected });
        std::thread::sleep(STEP_PAUSE);
    };
    fs::create_dir(at("d"))?;
    fs::create_dir(at("x"))?;
    step(
        "mkdir",
        vec![line("mkdir", "d", None), line("mkdir", "x", None)],
    );
    fs::File::create(at("d/f"))?;
    step("create", vec![line("create", "d/f", None)]);
    fs::write(at("d/f"), "content")?;
    step("write", vec![line("write", "d/f", None)]);
    fs::set_permissions(at("d/f"), fs::Permissions::from_mode(0o600))?;
    step("chmod", vec![line("attrib", "d/f", None)]);
    fs::rename(at("d/f"), at("d/g"))?;
    step("rename file", vec![line("rename", "d/g", Some("d/f"))]);
    fs::rename(at("d"), at("e"))?;
    step("rename directory", vec![line("rename", "e", Some("d"))]);
    fs::hard_link(at("e/g"), at("e/h"))?;
    step("hard link", vec![line("create", "e/h", None)]);
    std::os::unix::fs::symlink("g", at("e/s"))?;
    step("symlink", vec![line("create", "e/s", None)]);
    fs::write(at("e/.tmp"), "saved")?;
    fs::rename(at("e/.tmp"), at("e/g"))?;
    step(
        "atomic save",
        vec![
            line("create", "e/.tmp", None),
            line("write", "e/.tmp", None),
            line("rename", "e/g", Some("e/.tmp")),
        ],
    );
    fs::write(outside.join("in"), "in")?;
    fs::rename(outside.join("in"), at("in"))?;
    step("move in file", vec![line("create", "in", None)]);
    fs::create_dir(outside.join("ind"))?;
    fs::write(outside.join("ind/inner"), "in")?;
    fs::rename(outside.join("ind"), at("ind"))?;
    step(
        "move in directory",
        vec![
            line("mkdir", "ind", None),
            line("create", "ind/inner", None),
        ],
    );
    fs::rename(at("e/h"), outside.join("h"))?;
    step("move out file", vec![line("delete", "e/h", None)]);
    fs::rename(at("ind"), outside.join("ind-out"))?;
    step("move out directory", vec![line("delete", "ind", None)]);
    fs::remove_file(at("e/g"))?;
    step("delete", vec![line("delete", "e/g", None)]);
    fs::remove_dir(at("x"))?;
    step("rmdir", vec![line("rmdir", "x", None)]);
    Ok(steps)
}

/// The journal's change lines under `root` (repair lines too: they are how a backend that
/// missed something makes up for it), as parity lines.
pub fn journaled(journal: &str, root: &Path) -> BTreeSet<Line> {
    let prefix = format!("{}/", root.display());
    let rel = |v: &Value| {
        v.as_str()
            .and_then(|p| p.strip_prefix(&prefix))
            .map(str::to_owned)
    };
    journal
        .lines()
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .filter_map(|v| {
            let op = v["op"].as_str()?.to_owned();
            Some((op, rel(&v["path"])?, rel(&v["from"])))
        })
        .collect()
}

/// Each step's missing lines, and the lines no step expects: as JSON, one object per step
/// (`kind`, `expected`, `missing`) plus `unexpected`.
pub fn compare(steps: &[Step], journaled: &BTreeSet<Line>) -> Value {
    let show = |(op, path, from): &Line| match from {
        Some(from) => format!("{op} {from} -> {path}"),
        None => format!("{op} {path}"),
    };
    let expected: BTreeSet<&Line> = steps.iter().flat_map(|s| &s.expected).collect();
    let rows: Vec<Value> = steps
        .iter()
        .map(|s| {
            let missing: Vec<String> = s
                .expected
                .iter()
                .filter(|l| !journaled.contains(*l))
                .map(show)
                .collect();
            json!({"kind": s.kind, "expected": s.expected.len(), "missing": missing})
        })
        .collect();
    let unexpected: Vec<String> = journaled
        .iter()
        .filter(|l| !expected.contains(l))
        .map(show)
        .collect();
    json!({"steps": rows, "unexpected": unexpected})
}
