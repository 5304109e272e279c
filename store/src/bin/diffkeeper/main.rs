//! `diffkeeper`: reads a store written by `diffkeeper-sidecar --store`.
//!
//! Exit codes: 0 done, 1 failed (or `verify` found corruption), 2 usage error.

mod commands;
mod patch;
mod when;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use diffkeeper_cli::UsageError;

const HELP: &str = "\
diffkeeper: read a diffkeeper content store (written by diffkeeper-sidecar --store)

Usage:
  diffkeeper timeline --store DIR [--path P] [--json]
      Every recorded change, oldest first (--path: only those at or below P).
  diffkeeper cat --store DIR PATH [--at T]
      A file's content at T (default: the newest) to stdout.
  diffkeeper export --store DIR [--at T] --out DIR
      The exact tree at T (default: the newest) into a new or empty directory: contents,
      modes, ownership (as root), mtimes, symlinks, hard links, empty directories.
  diffkeeper diff --store DIR --from T1 [--to T2] [--patch]
      Paths changed between T1 and T2 (default: the newest): A added, D deleted, M modified,
      a attributes only; --patch adds a unified diff for text files.
  diffkeeper verify --store DIR
      Checks every record checksum and chunk hash; exit 1 naming what is corrupt.

PATH is absolute (under a watched root) or relative to the store's only root; its bytes are
taken as the shell passes them, so a name that is not UTF-8 is given as it is
(cat --store DIR \"$(printf '/state/bad\\377')\"). Output prints such a name lossily plus
its exact bytes: path_b64/other_b64 in --json, [path_b64=...] after it in text.
T is an RFC 3339 time as in the journal's ts (2026-11-18T11:06:40Z) or a duration ago
(30s, 5m, 2h, 1d, 1h30m).
Environment: DIFFKEEPER_STORE stands for --store.
";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    diffkeeper_cli::init_logging(false, &[]);
    match run(args) {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            eprintln!("diffkeeper: {e}");
            ExitCode::from(2)
        }
        // A reader that stopped early (`| head`) is not a failure.
        Err(Failure::Store(diffkeeper_store::StoreError::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(Failure::Store(e)) => {
            eprintln!("diffkeeper: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Why a command failed: a usage mistake (exit 2) or the store (exit 1).
pub enum Failure {
    Usage(UsageError),
    Store(diffkeeper_store::StoreError),
}

impl From<UsageError> for Failure {
    fn from(e: UsageError) -> Self {
        Self::Usage(e)
    }
}

impl From<diffkeeper_store::StoreError> for Failure {
    fn from(e: diffkeeper_store::StoreError) -> Self {
        Self::Store(e)
    }
}

fn usage(text: impl Into<String>) -> Failure {
    Failure::Usage(UsageError(text.into()))
}

fn run(args: Vec<OsString>) -> Result<ExitCode, Failure> {
    let mut args = pico_args::Arguments::from_vec(args);
    if args.contains(["-V", "--version"]) {
        println!("diffkeeper {}", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let command = args
        .subcommand()
        .map_err(|e| usage(format!("{e} (see --help)")))?
        .ok_or_else(|| {
            usage("no command given: timeline, cat, export, diff or verify (see --help)")
        })?;
    let store: PathBuf = match opt(&mut args, "--store")? {
        Some(dir) => PathBuf::from(dir),
        None => diffkeeper_cli::env_var("DIFFKEEPER_STORE")
            .map(PathBuf::from)
            .ok_or_else(|| usage("--store DIR is required (or DIFFKEEPER_STORE)"))?,
    };
    let now = when::now_ns();
    let time =
        |args: &mut pico_args::Arguments, flag: &'static str| -> Result<Option<u64>, Failure> {
            opt(args, flag)?
                .map(|t| when::parse(flag, &t, now).map_err(Failure::Usage))
                .transpose()
        };
    match command.as_str() {
        "timeline" => {
            // The name's bytes as the shell passes them: a name need not be UTF-8.
            let path: Option<OsString> = args
                .opt_value_from_os_str("--path", |s| {
                    Ok::<_, std::convert::Infallible>(s.to_os_string())
                })
                .map_err(|e| usage(format!("{e} (see --help)")))?;
            let json = args.contains("--json");
            finish(args)?;
            commands::timeline(&store, path.as_deref(), json)
        }
        "cat" => {
            let at = time(&mut args, "--at")?;
            let path: OsString = args
                .free_from_os_str(|s| Ok::<_, std::convert::Infallible>(s.to_os_string()))
                .map_err(|_| usage("cat needs a PATH (see --help)"))?;
            finish(args)?;
            commands::cat(&store, &path, at.unwrap_or(u64::MAX))
        }
        "export" => {
            let at = time(&mut args, "--at")?;
            let out = opt(&mut args, "--out")?.ok_or_else(|| usage("export needs --out DIR"))?;
            finish(args)?;
            commands::export(&store, at.unwrap_or(u64::MAX), &PathBuf::from(out))
        }
        "diff" => {
            let from = time(&mut args, "--from")?.ok_or_else(|| usage("diff needs --from T"))?;
            let to = time(&mut args, "--to")?;
            let patch = args.contains("--patch");
            finish(args)?;
            commands::diff(&store, from, to.unwrap_or(u64::MAX), patch)
        }
        "verify" => {
            finish(args)?;
            commands::verify(&store)
        }
        other => Err(usage(format!(
            "unknown command {other:?}: use timeline, cat, export, diff or verify (see --help)"
        ))),
    }
}

fn opt(args: &mut pico_args::Arguments, flag: &'static str) -> Result<Option<String>, Failure> {
    args.opt_value_from_str(flag)
        .map_err(|e| usage(format!("{e} (see --help)")))
}

fn finish(args: pico_args::Arguments) -> Result<(), Failure> {
    let rest = args.finish();
    if rest.is_empty() {
        return Ok(());
    }
    let rest: Vec<String> = rest
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Err(usage(format!(
        "unexpected argument(s): {} (see --help)",
        rest.join(" ")
    )))
}
