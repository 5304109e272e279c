//! diffkeeper-scenario: runs the journal scenario (see `diffkeeper_tests::scenario`) against a
//! diffkeeper-sidecar binary and prints one `SCENARIO {...}` line. Static, self-contained: it
//! runs inside minimal VMs (busybox userland, no source tree).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use diffkeeper_tests::scenario::{self, storms, Options};

const HELP: &str = "\
diffkeeper-scenario: run diffkeeper-sidecar on a fresh watched directory, make scripted changes
(nested directories, create, write/pwrite/writev/pwritev of known sizes, rename, delete, rmdir,
and changes outside the directory), stop it with SIGTERM, and compare its journal exactly with
the lines the backend must produce.

Usage: diffkeeper-scenario --sidecar PATH --expect-backend B [OPTIONS] [-- SIDECAR_ARGS...]

  --sidecar PATH          the diffkeeper-sidecar binary to test
  --expect-backend B      fentry | kprobe | tracepoint | inotify: the backend the sidecar must
                          report in its ready line; also selects the expected lines
  --workdir DIR           create the scenario directory under DIR (default: $TMPDIR or /tmp)
  --hide-system-btf       run the sidecar in a private mount namespace with /sys/kernel/btf
                          hidden (root), so it must use --btf-cache-dir
  --ready-timeout SECS    how long the sidecar may take to log ready (default 30)
  --keep                  keep the scenario directory (journal.jsonl) for inspection
  --ops                   the operations scenario instead: truncations with no write after them
                          (ftruncate, truncate, O_TRUNC opens, creat: each a write of 0
                          bytes), creates, renames and unlinks that
                          fail after their security hook (ENOTEMPTY, EPERM, ENOSPC when the
                          work dir is a tmpfs with few inodes), new names from link(2),
                          linkat(2), symlink(2), symlinkat(2) (dirfd, cwd, O_TMPFILE, absolute,
                          `..`, outside), writes to unnamed files: only completed operations,
                          and no made-up path, may be journaled
  --replay-storms N       the replay contract instead: one sidecar, first one scripted change of
                          every kind (the parity workload: each step's lines printed against the
                          ones it must produce), then N seeded storms of every op kind (renames
                          of files and directories into, out of and within the roots, atomic
                          saves, deletes, chmod, links), each in a directory of its own, without
                          pauses; replaying the journal under each storm's directory must give
                          the real tree, and seq/ts must never go back. Failing seeds are printed
  --steps N               operations per storm (default 60)
  --races                 two races instead, under one sidecar: a thread write()s tens of MiB
                          through fd K while the main thread dup2()s a decoy (a file, then
                          /dev/null) onto K: the write lines must name the file written, with
                          its byte count; and 5,000 symlinkat() calls while another thread
                          changes the name's first byte every millisecond: no journaled name
                          may be one never created, and every created one is journaled or
                          covered by a line on its directory flagged `truncated`. Prints
                          RACES {\"result\":..,\"dup2_raced\":N,\"dup2_wrong\":[..],
                          \"flip_made\":N,\"flip_flagged\":N,\"flip_never_made\":N,..}
  --verbose               copy the sidecar's log to stderr (it is always copied on failure)
  -- SIDECAR_ARGS...      appended to: --state-dir DIR --coalesce-ms 0 --journal FILE

Or: diffkeeper-scenario --roundtrip --diffkeeper PATH --sidecar PATH --expect-backend B [-- SIDECAR_ARGS...]
  the state recorder's round trip: the sidecar with --store on a fresh tree, a workload in
  phases (edits, appends, atomic save, chmod +x, truncate, directory rename, deletes, empty dir,
  symlink, hard link, 4 KiB changed in an 8 MiB file, spaces and UTF-8), a `cp -a` snapshot after
  each, and `diffkeeper export --at T_i` compared with snapshot i (types, modes, contents, link
  targets). Every difference fails: each op of the workload, truncations included (reported
  as writes), is journaled by every mode. Prints one
  `PHASE i ok|FAIL [RECORD+EXPORT s] NAME: differences` line per phase, then
  ROUNDTRIP {\"backend\":..,\"result\":\"pass\"|\"fail\",\"equal\":N,\"phases\":M,\"secs\":..}

Or: diffkeeper-scenario --shutdown-fs DIR
  shut the ext4 file system holding DIR down (EXT4_IOC_SHUTDOWN, flags 0: frozen, marked shut
  down, thawed; it stays mounted read-write) and exit, so that an unlink on it passes the VFS
  checks and its security hook, then fails in ext4_unlink with EIO (the VM ext4 rows)

Output (--replay-storms: a parity table, `PARITY {...}` and `REPLAY {...}` lines; the
failing seeds on stderr): one line on stdout,
  SCENARIO {\"backend\":B,\"observed_backend\":..,\"result\":\"pass\"|\"fail\",\"reason\":..,
            \"events\":N,\"expected\":M,\"exit_code\":..,\"stop_ms\":..,\"diff\":[\"-missing\",\"+unexpected\",..]}
Exit codes: 0 pass, 1 fail, 2 bad usage.
";

struct Cli {
    options: Options,
    verbose: bool,
    /// `--roundtrip`: the state recorder's round trip through this `diffkeeper` binary.
    roundtrip: Option<PathBuf>,
    /// `--replay-storms N` and `--steps N`.
    storms: Option<(u64, usize)>,
    /// `--races`.
    races: bool,
}

fn number<T: std::str::FromStr>(name: &str, v: &OsString) -> Result<T, String> {
    v.to_string_lossy()
        .parse()
        .map_err(|_| format!("{name} {v:?} is not a number"))
}

fn parse(args: Vec<OsString>) -> Result<Option<Cli>, String> {
    let mut sidecar = None;
    let mut backend = None;
    let mut options = Options::new("", "");
    let mut verbose = false;
    let (mut roundtrip, mut diffkeeper) = (false, None);
    let (mut seeds, mut steps) = (None, 60);
    let mut races = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value (see --help)"))
        };
        match arg.to_str().unwrap_or("") {
            "-h" | "--help" => return Ok(None),
            "--sidecar" => sidecar = Some(PathBuf::from(value("--sidecar")?)),
            "--expect-backend" => {
                backend = Some(value("--expect-backend")?.to_string_lossy().into_owned())
            }
            "--workdir" => options.workdir = Some(PathBuf::from(value("--workdir")?)),
            "--ready-timeout" => {
                let v = value("--ready-timeout")?;
                let secs: u64 = v
                    .to_string_lossy()
                    .parse()
                    .map_err(|_| format!("--ready-timeout {v:?} is not a number of seconds"))?;
                options.ready_timeout = Duration::from_secs(secs);
            }
            "--hide-system-btf" => options.hide_system_btf = true,
            "--keep" => options.keep = true,
            "--ops" => options.ops = true,
            "--races" => races = true,
            "--verbose" => verbose = true,
            "--roundtrip" => roundtrip = true,
            "--diffkeeper" => diffkeeper = Some(PathBuf::from(value("--diffkeeper")?)),
            "--replay-storms" => {
                seeds = Some(number("--replay-storms", &value("--replay-storms")?)?)
            }
            "--steps" => steps = number("--steps", &value("--steps")?)?,
            "--" => {
                options.sidecar_args = args.collect();
                break;
            }
            _ => return Err(format!("unexpected argument {arg:?} (see --help)")),
        }
    }
    options.sidecar = sidecar.ok_or("--sidecar PATH is required (see --help)")?;
    let backend = backend.ok_or("--expect-backend B is required (see --help)")?;
    if !["fentry", "kprobe", "tracepoint", "inotify"].contains(&backend.as_str()) {
        return Err(format!(
            "--expect-backend {backend:?}: use fentry, kprobe, tracepoint or inotify"
        ));
    }
    options.expect_backend = backend;
    let roundtrip = match (roundtrip, diffkeeper) {
        (true, Some(diffkeeper)) => Some(diffkeeper),
        (true, None) => return Err("--roundtrip needs --diffkeeper PATH (see --help)".into()),
        (false, Some(_)) => return Err("--diffkeeper is only for --roundtrip (see --help)".into()),
        (false, None) => None,
    };
    Ok(Some(Cli {
        options,
        verbose,
        roundtrip,
        storms: seeds.map(|seeds| (seeds, steps)),
        races,
    }))
}

/// EXT4_IOC_SHUTDOWN: _IOR('X', 125, __u32) (fs/ext4/ext4.h; the same number on x86_64 and
/// aarch64).
const EXT4_IOC_SHUTDOWN: u32 = 0x8004_587d;

fn shutdown_fs(dir: &OsString) -> ExitCode {
    use std::os::fd::AsRawFd;
    let result = std::fs::File::open(dir).and_then(|file| {
        // EXT4_GOING_FLAGS_DEFAULT.
        let flags: u32 = 0;
        // SAFETY: a live descriptor and a pointer to a u32 the kernel only reads.
        let rc = unsafe { nix::libc::ioctl(file.as_raw_fd(), EXT4_IOC_SHUTDOWN as _, &flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("diffkeeper-scenario: --shutdown-fs {dir:?}: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if let [flag, dir] = &args[..] {
        if flag == "--shutdown-fs" {
            return shutdown_fs(dir);
        }
    }
    let cli = match parse(args) {
        Ok(Some(cli)) => cli,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("diffkeeper-scenario: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(diffkeeper) = &cli.roundtrip {
        return roundtrip(&cli.options, diffkeeper);
    }
    if let Some((seeds, steps)) = cli.storms {
        return replay_storms(&cli, seeds, steps);
    }
    if cli.races {
        return races(&cli);
    }
    let outcome = scenario::run(&cli.options);
    if cli.verbose || !outcome.pass {
        for line in outcome.log.lines() {
            eprintln!("sidecar: {line}");
        }
        if let Some(reason) = &outcome.reason {
            eprintln!("scenario: {reason}");
        }
    }
    println!("{}", outcome.summary_line());
    if outcome.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `--races`: the summary line; the sidecar's log on failure (or with --verbose).
fn races(cli: &Cli) -> ExitCode {
    let outcome = scenario::races::run(&cli.options);
    if cli.verbose || !outcome.pass {
        for line in outcome.log.lines() {
            eprintln!("sidecar: {line}");
        }
    }
    println!("{}", outcome.summary_line());
    if outcome.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `--roundtrip`: every phase's export must equal its snapshot. kprobe and fentry report every
/// op the workload makes (truncations as writes): no difference is explained away.
fn roundtrip(options: &Options, diffkeeper: &std::path::Path) -> ExitCode {
    use diffkeeper_tests::recorder::{export_with_cli, round_trip, Options as RoundTripOptions};
    let started = std::time::Instant::now();
    let export = export_with_cli(diffkeeper);
    let result = round_trip(&RoundTripOptions {
        sidecar: &options.sidecar,
        backend_args: options
            .sidecar_args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        reports: &|_| true,
        export: &export,
    });
    let mut equal = 0;
    for (i, phase) in result.phases.iter().enumerate() {
        let secs = format!("[{:.1}+{:.1}s]", phase.record_secs, phase.export_secs);
        // Every op is reported (`reports` above): nothing is explained, any difference fails.
        let differences: Vec<String> = phase
            .unexplained
            .iter()
            .map(|d| d.to_string())
            .chain(
                phase
                    .explained
                    .iter()
                    .map(|(d, why)| format!("{d} ({why})")),
            )
            .collect();
        if differences.is_empty() {
            equal += 1;
            println!("PHASE {i} ok {secs} {}", phase.name);
        } else {
            println!(
                "PHASE {i} FAIL {secs} {}: {}",
                phase.name,
                differences.join("; ")
            );
        }
    }
    let pass = equal == result.phases.len() && result.backend == options.expect_backend;
    if !pass {
        for line in result.log.lines() {
            eprintln!("sidecar: {line}");
        }
    }
    println!(
        "ROUNDTRIP {}",
        serde_json::json!({
            "backend": options.expect_backend,
            "observed_backend": result.backend,
            "result": if pass { "pass" } else { "fail" },
            "equal": equal,
            "phases": result.phases.len(),
            "secs": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        })
    );
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn replay_storms(cli: &Cli, seeds: u64, steps: usize) -> ExitCode {
    let outcome = storms::run(&cli.options, seeds, steps);
    if cli.verbose || !outcome.pass {
        for line in outcome.log.lines() {
            eprintln!("sidecar: {line}");
        }
        for failure in &outcome.failed {
            eprintln!("{failure}");
        }
        if let Some(reason) = &outcome.reason {
            eprintln!("scenario: {reason}");
        }
    }
    print_parity(&outcome.parity);
    println!("{}", outcome.parity_line());
    println!("{}", outcome.summary_line());
    if outcome.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The parity workload's steps, one line each: what the journal missed of them.
fn print_parity(parity: &serde_json::Value) {
    let Some(steps) = parity["steps"].as_array() else {
        return;
    };
    println!("parity: step | lines expected | missing");
    for step in steps {
        let missing: Vec<&str> = step["missing"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str())
            .collect();
        println!(
            "parity: {} | {} | {}",
            step["kind"].as_str().unwrap_or("?"),
            step["expected"],
            if missing.is_empty() {
                "-".to_string()
            } else {
                missing.join(", ")
            }
        );
    }
    println!("parity: unexpected lines: {}", parity["unexpected"]);
}
