//! `diffkeeper-scenario --replay-storms N`: the journal's replay contract on one sidecar. The
//! parity workload (see [`super::parity`]) runs first, in a directory of its own, then N seeded
//! storms of every op kind (see [`crate::storm`]), one directory each, one after the other
//! without pauses. Then the sidecar is stopped and each seed's directory is checked with
//! [`crate::replay`]: replaying the journal's lines under it onto the empty tree it started as
//! gives the real tree, with no op whose precondition fails before a gap; `seq` increases by one
//! and `ts` never decreases over the whole journal.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::session::{in_fresh_dirs, mark_end, with_ready_sidecar};
use super::{parity, Dirs, Options};
use crate::replay::{replay, Tree};
use crate::storm::{Storm, StormOp};

/// The last change made: once its line is in the journal, so is everything before it.
const MARKER: &str = "zz-end-of-storms";

/// What a storm run found.
#[derive(Debug, Default)]
pub struct StormsOutcome {
    pub backend: Option<String>,
    pub pass: bool,
    pub reason: Option<String>,
    pub seeds: u64,
    /// `seed N: what differs` for every seed whose replay failed.
    pub failed: Vec<String>,
    /// `seq`/`ts` errors over the whole journal.
    pub order_errors: Vec<String>,
    pub lines: usize,
    pub gaps: usize,
    pub repairs: usize,
    /// From the first change to the end marker's line in the journal.
    pub storm_ms: u128,
    pub parity: Value,
    pub log: String,
    /// What each storm did (seed 1 first), for the failure message.
    storms: Vec<String>,
}

impl StormsOutcome {
    fn fail(&mut self, reason: impl Into<String>) {
        if self.reason.is_none() {
            self.reason = Some(reason.into());
        }
        self.pass = false;
    }

    /// `REPLAY {...}`: the machine-readable summary.
    pub fn summary_line(&self) -> String {
        let summary = json!({
            "observed_backend": self.backend,
            "result": if self.pass { "pass" } else { "fail" },
            "reason": self.reason,
            "seeds": self.seeds,
            "failed_seeds": self.failed.len(),
            "order_errors": self.order_errors.len(),
            "lines": self.lines,
            "gaps": self.gaps,
            "repairs": self.repairs,
            "storm_ms": self.storm_ms as u64,
        });
        format!("REPLAY {summary}")
    }

    /// `PARITY {...}`: each step of the parity workload and what the journal missed of it.
    pub fn parity_line(&self) -> String {
        format!("PARITY {}", self.parity)
    }
}

/// Runs the parity workload and `seeds` storms of `steps` operations under one sidecar.
pub fn run(opts: &Options, seeds: u64, steps: usize) -> StormsOutcome {
    let mut outcome = StormsOutcome {
        pass: true,
        seeds,
        ..StormsOutcome::default()
    };
    if let Err(e) = in_fresh_dirs(opts, |dirs| run_in(opts, dirs, seeds, steps, &mut outcome)) {
        outcome.fail(e);
    }
    outcome
}

fn run_in(opts: &Options, dirs: &Dirs, seeds: u64, steps: usize, outcome: &mut StormsOutcome) {
    // Watched from the start: parity is about the ops a backend reports, not about catching up
    // on a directory made (and changed) before it is watched.
    let (root, outside) = (dirs.state.join("parity"), dirs.outside.join("parity"));
    if let Err(e) = mkdirs(&[&root, &outside]) {
        return outcome.fail(e);
    }
    let run = with_ready_sidecar(opts, dirs, || make_changes(dirs, seeds, steps, outcome));
    outcome.backend = run.backend;
    outcome.log = run.log;
    if let Some(problem) = run.stop_problem {
        outcome.fail(problem);
    }
    match run.made {
        Ok(parity_steps) => check(dirs, seeds, &parity_steps, outcome),
        Err(e) => outcome.fail(e),
    }
}

/// The parity workload, the storms and the end marker; waits for the marker's line.
fn make_changes(
    dirs: &Dirs,
    seeds: u64,
    steps: usize,
    outcome: &mut StormsOutcome,
) -> Result<Vec<parity::Step>, String> {
    let start = Instant::now();
    let (root, outside) = (dirs.state.join("parity"), dirs.outside.join("parity"));
    let parity_steps = parity::perform(&root, &outside)
        .map_err(|e| format!("the parity workload itself failed: {e}"))?;
    for seed in 1..=seeds {
        let (root, outside) = seed_dirs(dirs, seed);
        mkdirs(&[&root, &outside])?;
        let mut storm = Storm::new(&root, &outside, seed, &StormOp::ALL);
        storm.populate();
        storm.run(steps, Duration::ZERO);
        outcome.storms.push(storm.to_string());
    }
    mark_end(dirs, MARKER)?;
    outcome.storm_ms = start.elapsed().as_millis();
    Ok(parity_steps)
}

fn seed_dirs(dirs: &Dirs, seed: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let name = format!("seed{seed}");
    (dirs.state.join(&name), dirs.outside.join(&name))
}

fn mkdirs(dirs: &[&Path]) -> Result<(), String> {
    for dir in dirs {
        fs::create_dir(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Each seed's replay, the order over the whole journal, and the parity comparison.
fn check(dirs: &Dirs, seeds: u64, parity_steps: &[parity::Step], outcome: &mut StormsOutcome) {
    let journal = fs::read_to_string(&dirs.journal).unwrap_or_default();
    outcome.lines = journal.lines().count();
    let whole = replay(Tree::default(), &dirs.state, &journal);
    outcome.order_errors = whole.order_errors;
    outcome.gaps = whole.gaps.len();
    outcome.repairs = whole.repairs;
    if !outcome.order_errors.is_empty() {
        outcome.fail(format!(
            "{} seq/ts order errors, the first: {}",
            outcome.order_errors.len(),
            outcome.order_errors[0]
        ));
    }
    for seed in 1..=seeds {
        let (root, _) = seed_dirs(dirs, seed);
        let replayed = replay(Tree::default(), &root, &journal);
        let differences = replayed.tree.differences(&Tree::scan(&root));
        if differences.is_empty() && replayed.anomalies.is_empty() {
            continue;
        }
        let storm = outcome.storms.get(seed as usize - 1).cloned();
        let lines: Vec<&str> = journal
            .lines()
            .filter(|l| l.contains(&format!("{}/", root.display())))
            .collect();
        outcome.failed.push(format!(
            "seed {seed}: replaying the journal under {} does not give the real tree:\n\
             {differences}anomalies before a gap: {:?}\nstorm:\n{}journal lines under it:\n{}",
            root.display(),
            replayed.anomalies,
            storm.unwrap_or_default(),
            lines.join("\n")
        ));
    }
    if !outcome.failed.is_empty() {
        let seeds_failed: Vec<&str> = outcome
            .failed
            .iter()
            .filter_map(|f| f.split(':').next())
            .collect();
        outcome.fail(format!(
            "{} of {seeds} seeds do not replay to the real tree ({})",
            outcome.failed.len(),
            seeds_failed.join(", ")
        ));
    }
    let root = dirs.state.join("parity");
    outcome.parity = parity::compare(parity_steps, &parity::journaled(&journal, &root));
}
