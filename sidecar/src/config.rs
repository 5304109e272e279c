//! Command line of diffkeeper-sidecar: a flag wins over its environment variable, which wins
//! over the default. `--help` is rendered from [`OPTIONS`], so the documented names are the
//! parsed ones.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use diffkeeper_ebpf::cli::{
    env_bool, flag_bool, parse_bool, parse_number, reject_leftovers, render_help, FlagDoc,
    UsageError,
};

use crate::ebpf::{AttachMode, ObjectChoice};

pub const DEFAULT_BTF_CACHE_DIR: &str = "/var/cache/diffkeeper/btf";
const DEFAULT_COALESCE_MS: u64 = 50;
const DEFAULT_RINGBUF_BYTES: u32 = 1 << 20;
const MIN_RINGBUF_BYTES: u32 = 4096;

#[rustfmt::skip]
const OPTIONS: &[FlagDoc] = &[
    FlagDoc { flag: "--state-dir", value: "DIR", env: "DIFFKEEPER_STATE_DIRS (colon-separated)", default: "required",
        help: "directory to watch, recursively (repeatable)" },
    FlagDoc { flag: "--btf-cache-dir", value: "DIR", env: "DIFFKEEPER_BTF_CACHE_DIR", default: DEFAULT_BTF_CACHE_DIR,
        help: "where diffkeeper-init keeps <uname -r>.btf (used when the kernel has no /sys/kernel/btf/vmlinux)" },
    FlagDoc { flag: "--enable-ebpf", value: "=BOOL", env: "DIFFKEEPER_ENABLE_EBPF", default: "true",
        help: "use eBPF; false = inotify only" },
    FlagDoc { flag: "--attach", value: "MODE", env: "DIFFKEEPER_ATTACH", default: "auto",
        help: "auto | fentry | kprobe | tracepoint (auto: fentry -> kprobe -> tracepoint)" },
    FlagDoc { flag: "--ebpf-object", value: "OBJ", env: "DIFFKEEPER_EBPF_OBJECT", default: "auto",
        help: "auto | modern | compat (auto: modern where the kernel has bpf_loop and the ring buffer, else compat)" },
    FlagDoc { flag: "--fallback-fsnotify", value: "=BOOL", env: "DIFFKEEPER_EBPF_FALLBACK_FSNOTIFY", default: "true",
        help: "fall back to inotify when eBPF is impossible; false = exit 1 instead" },
    FlagDoc { flag: "--journal", value: "PATH", env: "DIFFKEEPER_JOURNAL", default: "- (stdout)",
        help: "where the JSON lines go (a file is appended to)" },
    FlagDoc { flag: "--coalesce-ms", value: "N", env: "DIFFKEEPER_COALESCE_MS", default: "50",
        help: "merge writes to one path within N ms into one line with a count; 0 = every event" },
    FlagDoc { flag: "--ringbuf-bytes", value: "N", env: "", default: "1048576 (1 MiB)",
        help: "eBPF ring buffer size (compat object: the perf buffers' total): a power of two, at least 4096" },
    FlagDoc { flag: "--metrics-addr", value: "ADDR", env: "DIFFKEEPER_METRICS_ADDR", default: "off",
        help: "serve GET /metrics and /healthz on IP:PORT, e.g. 0.0.0.0:9911" },
    FlagDoc { flag: "--debug", value: "", env: "DIFFKEEPER_DEBUG=1", default: "off",
        help: "debug logging" },
    FlagDoc { flag: "--help", value: "", env: "", default: "", help: "print this help" },
    FlagDoc { flag: "--version", value: "", env: "", default: "", help: "print the version" },
];

/// Everything the sidecar needs to run, after precedence is applied.
#[derive(Debug)]
pub struct Config {
    pub state_dirs: Vec<PathBuf>,
    pub btf_cache_dir: PathBuf,
    pub enable_ebpf: bool,
    pub attach: AttachMode,
    pub ebpf_object: ObjectChoice,
    pub fallback_fsnotify: bool,
    /// `-` means stdout.
    pub journal: PathBuf,
    pub coalesce: Duration,
    pub ringbuf_bytes: u32,
    pub metrics_addr: Option<SocketAddr>,
    pub debug: bool,
}

#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

pub fn help_text() -> String {
    let intro = format!(
        "diffkeeper-sidecar {}: reports file changes under the state directories as JSON lines,\n\
         using eBPF with the kernel's or the cached BTF (never the network), else inotify.\n\n\
         Usage: diffkeeper-sidecar --state-dir DIR [--state-dir DIR ...] [OPTIONS]\n\n\
         Flags win over environment variables, which win over defaults.\n\
         Exit codes: 0 stopped by SIGTERM/SIGINT, 1 cannot run (the log says why), 2 bad usage.\n\nOptions:\n",
        env!("CARGO_PKG_VERSION")
    );
    render_help(&intro, OPTIONS)
}

/// Parses the arguments (without the program name); `env` looks up environment variables
/// (unset and empty both mean "not given").
pub fn parse(
    args: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, UsageError> {
    let mut args = pico_args::Arguments::from_vec(spell_out_booleans(args));
    if args.contains(["-h", "--help"]) {
        return Ok(Command::Help);
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Command::Version);
    }
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let mut flag = |name: &'static str| -> Result<Option<String>, UsageError> {
        args.opt_value_from_str::<_, String>(name)
            .map_err(|e| UsageError(format!("{e} (see --help)")))
    };
    let state_dir_flags = repeated(&mut flag, "--state-dir")?;
    let btf_cache_dir = flag("--btf-cache-dir")?.or_else(|| env("DIFFKEEPER_BTF_CACHE_DIR"));
    let attach = flag("--attach")?.map(|v| ("--attach", v));
    let attach = attach.or_else(|| env("DIFFKEEPER_ATTACH").map(|v| ("DIFFKEEPER_ATTACH", v)));
    let object = origin(
        flag("--ebpf-object")?,
        "--ebpf-object",
        &env,
        "DIFFKEEPER_EBPF_OBJECT",
    );
    let journal = flag("--journal")?.or_else(|| env("DIFFKEEPER_JOURNAL"));
    let coalesce = origin(
        flag("--coalesce-ms")?,
        "--coalesce-ms",
        &env,
        "DIFFKEEPER_COALESCE_MS",
    );
    let ringbuf = flag("--ringbuf-bytes")?;
    let metrics = origin(
        flag("--metrics-addr")?,
        "--metrics-addr",
        &env,
        "DIFFKEEPER_METRICS_ADDR",
    );
    let enable_ebpf = boolean(
        flag("--enable-ebpf")?,
        "--enable-ebpf",
        &env,
        "DIFFKEEPER_ENABLE_EBPF",
    )?;
    let fallback = boolean(
        flag("--fallback-fsnotify")?,
        "--fallback-fsnotify",
        &env,
        "DIFFKEEPER_EBPF_FALLBACK_FSNOTIFY",
    )?;
    let debug =
        args.contains("--debug") || boolean(None, "", &env, "DIFFKEEPER_DEBUG")?.unwrap_or(false);
    reject_leftovers(args.finish())?;

    let state_dirs: Vec<PathBuf> = if state_dir_flags.is_empty() {
        env("DIFFKEEPER_STATE_DIRS")
            .map(|v| {
                v.split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        state_dir_flags.into_iter().map(PathBuf::from).collect()
    };
    if state_dirs.is_empty() {
        return Err(UsageError(
            "no state directory given: use --state-dir DIR (repeatable) or DIFFKEEPER_STATE_DIRS=DIR1:DIR2".into(),
        ));
    }
    let attach = match attach {
        None => AttachMode::Auto,
        Some((origin, v)) => v.trim().parse().map_err(|_| {
            UsageError(format!(
                "{origin}={v:?} is not an attach mode (use auto, fentry, kprobe or tracepoint)"
            ))
        })?,
    };
    let ebpf_object = match object {
        None => ObjectChoice::Auto,
        Some((origin, v)) => v.trim().parse().map_err(|_| {
            UsageError(format!(
                "{origin}={v:?} is not an eBPF object (use auto, modern or compat)"
            ))
        })?,
    };
    let coalesce_ms = match coalesce {
        Some((origin, v)) => parse_number::<u64>(origin, &v)?,
        None => DEFAULT_COALESCE_MS,
    };
    let ringbuf_bytes = match ringbuf {
        Some(v) => parse_number::<u32>("--ringbuf-bytes", &v)?,
        None => DEFAULT_RINGBUF_BYTES,
    };
    if !ringbuf_bytes.is_power_of_two() || ringbuf_bytes < MIN_RINGBUF_BYTES {
        return Err(UsageError(format!(
            "--ringbuf-bytes={ringbuf_bytes} must be a power of two of at least {MIN_RINGBUF_BYTES} (e.g. 1048576)"
        )));
    }
    let metrics_addr = match metrics {
        None => None,
        Some((_, v)) if v.eq_ignore_ascii_case("off") => None,
        Some((origin, v)) => Some(v.trim().parse::<SocketAddr>().map_err(|_| {
            UsageError(format!(
                "{origin}={v:?} is not an IP:PORT address (e.g. 0.0.0.0:9911)"
            ))
        })?),
    };
    Ok(Command::Run(Box::new(Config {
        state_dirs,
        btf_cache_dir: btf_cache_dir
            .unwrap_or_else(|| DEFAULT_BTF_CACHE_DIR.into())
            .into(),
        enable_ebpf: enable_ebpf.unwrap_or(true),
        attach,
        ebpf_object,
        fallback_fsnotify: fallback.unwrap_or(true),
        journal: journal
            .unwrap_or_else(|| crate::journal::STDOUT.into())
            .into(),
        coalesce: Duration::from_millis(coalesce_ms),
        ringbuf_bytes,
        metrics_addr,
        debug,
    })))
}

fn repeated(
    flag: &mut dyn FnMut(&'static str) -> Result<Option<String>, UsageError>,
    name: &'static str,
) -> Result<Vec<String>, UsageError> {
    let mut values = Vec::new();
    while let Some(v) = flag(name)? {
        values.push(v);
    }
    Ok(values)
}

/// The flag's value, else the variable's, each with the name to cite in an error.
fn origin(
    flag_value: Option<String>,
    flag: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
) -> Option<(&'static str, String)> {
    flag_value
        .map(|v| (flag, v))
        .or_else(|| env(var).map(|v| (var, v)))
}

fn boolean(
    flag_value: Option<String>,
    flag: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Option<bool>, UsageError> {
    match flag_value {
        Some(v) => flag_bool(flag, &v).map(Some),
        None => env_bool(env, var),
    }
}

/// Boolean options take `--flag=BOOL`; also accept a bare `--flag` (true) and `--flag BOOL`.
fn spell_out_booleans(args: Vec<OsString>) -> Vec<OsString> {
    const BOOLEAN_OPTIONS: [&str; 2] = ["--enable-ebpf", "--fallback-fsnotify"];
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        match BOOLEAN_OPTIONS.iter().find(|name| arg == **name) {
            Some(name) => {
                let next_is_bool = args
                    .peek()
                    .and_then(|v| v.to_str())
                    .is_some_and(|v| parse_bool(v).is_some());
                let value = if next_is_bool {
                    args.next().unwrap_or_default()
                } else {
                    "true".into()
                };
                out.push(format!("{name}={}", value.to_string_lossy()).into());
            }
            None => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, UsageError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.get(name).cloned();
        match parse(args.iter().map(OsString::from).collect(), &lookup)? {
            Command::Run(config) => Ok(*config),
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&["--state-dir", "/s"], &[]).unwrap();
        assert_eq!(c.state_dirs, [PathBuf::from("/s")]);
        assert_eq!(c.btf_cache_dir, PathBuf::from(DEFAULT_BTF_CACHE_DIR));
        assert!(c.enable_ebpf && c.fallback_fsnotify && !c.debug);
        assert!(matches!(c.attach, AttachMode::Auto));
        assert_eq!(c.journal, PathBuf::from("-"));
        assert_eq!(c.coalesce, Duration::from_millis(50));
        assert_eq!(c.ringbuf_bytes, 1 << 20);
        assert_eq!(c.metrics_addr, None);
    }

    #[test]
    fn environment_is_used_when_no_flag_is_given() {
        let env = [
            ("DIFFKEEPER_STATE_DIRS", "/a::/b"),
            ("DIFFKEEPER_BTF_CACHE_DIR", "/cache"),
            ("DIFFKEEPER_ENABLE_EBPF", "0"),
            ("DIFFKEEPER_ATTACH", "tracepoint"),
            ("DIFFKEEPER_EBPF_FALLBACK_FSNOTIFY", "no"),
            ("DIFFKEEPER_JOURNAL", "/j.jsonl"),
            ("DIFFKEEPER_COALESCE_MS", "0"),
            ("DIFFKEEPER_METRICS_ADDR", "127.0.0.1:9911"),
            ("DIFFKEEPER_DEBUG", "1"),
        ];
        let c = run(&[], &env).unwrap();
        assert_eq!(c.state_dirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(c.btf_cache_dir, PathBuf::from("/cache"));
        assert!(!c.enable_ebpf && !c.fallback_fsnotify && c.debug);
        assert!(matches!(c.attach, AttachMode::Tracepoint));
        assert_eq!(c.journal, PathBuf::from("/j.jsonl"));
        assert_eq!(c.coalesce, Duration::ZERO);
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9911".parse().unwrap()));
    }

    #[test]
    fn flags_win_over_environment() {
        let env = [
            ("DIFFKEEPER_STATE_DIRS", "/env"),
            ("DIFFKEEPER_BTF_CACHE_DIR", "/env-cache"),
            ("DIFFKEEPER_ENABLE_EBPF", "false"),
            ("DIFFKEEPER_ATTACH", "kprobe"),
            ("DIFFKEEPER_EBPF_FALLBACK_FSNOTIFY", "false"),
            ("DIFFKEEPER_JOURNAL", "/env.jsonl"),
            ("DIFFKEEPER_COALESCE_MS", "bogus"),
            ("DIFFKEEPER_METRICS_ADDR", "not an address"),
        ];
        let c = run(
            &[
                "--state-dir",
                "/x",
                "--state-dir=/y",
                "--btf-cache-dir",
                "/c",
                "--enable-ebpf=true",
                "--attach",
                "fentry",
                "--fallback-fsnotify",
                "--journal",
                "-",
                "--coalesce-ms",
                "5",
                "--metrics-addr",
                "off",
                "--ringbuf-bytes",
                "4096",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(c.state_dirs, [PathBuf::from("/x"), PathBuf::from("/y")]);
        assert_eq!(c.btf_cache_dir, PathBuf::from("/c"));
        assert!(c.enable_ebpf && c.fallback_fsnotify);
        assert!(matches!(c.attach, AttachMode::Fentry));
        assert_eq!(c.journal, PathBuf::from("-"));
        assert_eq!(c.coalesce, Duration::from_millis(5));
        assert_eq!((c.metrics_addr, c.ringbuf_bytes), (None, 4096));
    }

    #[test]
    fn boolean_spellings() {
        for (args, want) in [
            (&["--enable-ebpf=false"][..], false),
            (&["--enable-ebpf", "off"][..], false),
            (&["--enable-ebpf", "--debug"][..], true),
            (&["--enable-ebpf"][..], true),
        ] {
            let mut all = vec!["--state-dir", "/s"];
            all.extend_from_slice(args);
            assert_eq!(run(&all, &[]).unwrap().enable_ebpf, want, "{args:?}");
        }
    }

    #[test]
    fn bad_usage_names_the_culprit() {
        for (args, env, culprit) in [
            (&["--bogus"][..], &[][..], "--bogus"),
            (&[][..], &[][..], "--state-dir"),
            (
                &["--state-dir", "/s", "--attach", "uprobe"][..],
                &[][..],
                "--attach=\"uprobe\"",
            ),
            (
                &["--state-dir", "/s"][..],
                &[("DIFFKEEPER_ATTACH", "x")][..],
                "DIFFKEEPER_ATTACH",
            ),
            (
                &["--state-dir", "/s", "--enable-ebpf=maybe"][..],
                &[][..],
                "--enable-ebpf",
            ),
            (
                &["--state-dir", "/s"][..],
                &[("DIFFKEEPER_ENABLE_EBPF", "maybe")][..],
                "DIFFKEEPER_ENABLE_EBPF",
            ),
            (
                &["--state-dir", "/s", "--coalesce-ms", "-1"][..],
                &[][..],
                "--coalesce-ms",
            ),
            (
                &["--state-dir", "/s"][..],
                &[("DIFFKEEPER_COALESCE_MS", "x")][..],
                "DIFFKEEPER_COALESCE_MS",
            ),
            (
                &["--state-dir", "/s", "--ringbuf-bytes", "5000"][..],
                &[][..],
                "power of two",
            ),
            (
                &["--state-dir", "/s", "--ringbuf-bytes", "2048"][..],
                &[][..],
                "4096",
            ),
            (
                &["--state-dir", "/s", "--metrics-addr", "localhost"][..],
                &[][..],
                "--metrics-addr",
            ),
            (
                &["--state-dir", "/s", "--journal"][..],
                &[][..],
                "--journal",
            ),
        ] {
            let err = run(args, env).unwrap_err();
            assert!(err.0.contains(culprit), "{args:?} {env:?}: {err}");
        }
    }

    #[test]
    fn help_lists_every_option_with_env_and_default() {
        let lookup = |_: &str| None;
        assert!(matches!(
            parse(vec!["--help".into()], &lookup),
            Ok(Command::Help)
        ));
        assert!(matches!(
            parse(vec!["-V".into()], &lookup),
            Ok(Command::Version)
        ));
        let help = help_text();
        for needle in [
            "--state-dir DIR",
            "DIFFKEEPER_STATE_DIRS",
            "--btf-cache-dir DIR",
            "DIFFKEEPER_BTF_CACHE_DIR",
            DEFAULT_BTF_CACHE_DIR,
            "--enable-ebpf=BOOL",
            "DIFFKEEPER_ENABLE_EBPF",
            "--attach MODE",
            "DIFFKEEPER_ATTACH",
            "default: auto",
            "--fallback-fsnotify=BOOL",
            "DIFFKEEPER_EBPF_FALLBACK_FSNOTIFY",
            "--journal PATH",
            "DIFFKEEPER_JOURNAL",
            "--coalesce-ms N",
            "DIFFKEEPER_COALESCE_MS",
            "default: 50",
            "--ringbuf-bytes N",
            "1048576",
            "--metrics-addr ADDR",
            "DIFFKEEPER_METRICS_ADDR",
            "--debug",
            "DIFFKEEPER_DEBUG=1",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }
}
