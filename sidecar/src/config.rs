//! Command line of diffkeeper-sidecar: a flag wins over its environment variable, which wins
//! over the default. [`OPTIONS`] defines each flag once: parsing, `--help` and the README check
//! read it.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use diffkeeper_btf::DEFAULT_CACHE_DIR;
use diffkeeper_cli::{render_help, Flag, Kind, Parsed, UsageError};

use crate::capture::CaptureSettings;
use crate::ebpf::{
    AttachMode, ObjectChoice, UnknownAttachMode, UnknownObject, KRETPROBE_MAXACTIVE_MAX,
};
use crate::journal;

const MIN_RINGBUF_BYTES: u32 = 4096;

#[rustfmt::skip]
pub const OPTIONS: &[Flag] = &[
    Flag { name: "--state-dir", value: "DIR", env: "DIFFKEEPER_STATE_DIRS (colon-separated)", default: "required", note: "", kind: Kind::Repeated,
        help: "directory to watch, recursively (repeatable)" },
    Flag { name: "--btf-cache-dir", value: "DIR", env: "DIFFKEEPER_BTF_CACHE_DIR", default: DEFAULT_CACHE_DIR, note: "", kind: Kind::Value,
        help: "where diffkeeper-init keeps <uname -r>.btf (used when the kernel has no /sys/kernel/btf/vmlinux)" },
    Flag { name: "--enable-ebpf", value: "=BOOL", env: "DIFFKEEPER_ENABLE_EBPF", default: "true", note: "", kind: Kind::Bool,
        help: "use eBPF; false = inotify only" },
    Flag { name: "--attach", value: "MODE", env: "DIFFKEEPER_ATTACH", default: "auto", note: "", kind: Kind::Value,
        help: "auto | fentry | kprobe | tracepoint (auto: fentry -> kprobe -> tracepoint)" },
    Flag { name: "--ebpf-object", value: "OBJ", env: "DIFFKEEPER_EBPF_OBJECT", default: "auto", note: "", kind: Kind::Value,
        help: "auto | modern | compat (auto: modern where the kernel has bpf_loop and the ring buffer, else compat)" },
    Flag { name: "--fallback-fsnotify", value: "=BOOL", env: "DIFFKEEPER_EBPF_FALLBACK_FSNOTIFY", default: "true", note: "", kind: Kind::Bool,
        help: "fall back to inotify when eBPF is impossible; false = exit 1 instead" },
    Flag { name: "--journal", value: "PATH", env: "DIFFKEEPER_JOURNAL", default: journal::STDOUT, note: "(stdout)", kind: Kind::Value,
        help: "where the JSON lines go (a file is appended to)" },
    Flag { name: "--coalesce-ms", value: "N", env: "DIFFKEEPER_COALESCE_MS", default: "50", note: "", kind: Kind::Value,
        help: "merge writes to one path within N ms into one line with a count; 0 = every event" },
    Flag { name: "--ringbuf-bytes", value: "N", env: "", default: "1048576", note: "(1 MiB)", kind: Kind::Value,
        help: "eBPF ring buffer size (compat object: the perf buffers' total): a power of two, at least 4096" },
    Flag { name: "--kretprobe-maxactive", value: "N", env: "DIFFKEEPER_KRETPROBE_MAXACTIVE", default: "4096", note: "(the kernel's most)", kind: Kind::Value,
        help: "kprobe mode: calls in flight per probed function whose return is seen, 1..4096 (each costs the kernel 64-128 bytes, times 8 functions)" },
    Flag { name: "--tracefs-dir", value: "DIR", env: "DIFFKEEPER_TRACEFS_DIR", default: "searched", note: "(/sys/kernel/tracing, /sys/kernel/debug/tracing, else mounted)", kind: Kind::Value,
        help: "kprobe mode: the tracefs to make the kretprobes in, used as it is (never mounted); e.g. the node's, mounted by k8s/components/kretprobe-tracefs" },
    Flag { name: "--metrics-addr", value: "ADDR", env: "DIFFKEEPER_METRICS_ADDR", default: "off", note: "", kind: Kind::Value,
        help: "serve GET /metrics and /healthz on IP:PORT, e.g. 0.0.0.0:9911" },
    Flag { name: "--btfhub-mirror", value: "URL", env: "DIFFKEEPER_BTF_MIRROR", default: "ignored", note: "", kind: Kind::Value,
        help: "accepted and ignored: the sidecar never downloads (diffkeeper-init provisions BTF)" },
    Flag { name: "--disable-btfhub-download", value: "", env: "DIFFKEEPER_BTF_ALLOW_DOWNLOAD=0", default: "ignored", note: "", kind: Kind::Switch,
        help: "accepted and ignored: the sidecar never downloads (diffkeeper-init provisions BTF)" },
    Flag { name: "--store", value: "DIR", env: "DIFFKEEPER_STORE", default: "off", note: "", kind: Kind::Value,
        help: "record content: a baseline at start, then every journaled change, into the content store DIR (outside every state dir)" },
    Flag { name: "--store-sync-ms", value: "N", env: "DIFFKEEPER_STORE_SYNC_MS", default: "1000", note: "", kind: Kind::Value,
        help: "--store: the longest a captured change waits to be synced to disk (what kill -9 can lose)" },
    Flag { name: "--store-max-bytes", value: "N", env: "DIFFKEEPER_STORE_MAX_BYTES", default: "0", note: "(no limit)", kind: Kind::Value,
        help: "--store: prune the oldest versions past N bytes (never a live path's newest)" },
    Flag { name: "--capture-max-file-bytes", value: "N", env: "DIFFKEEPER_CAPTURE_MAX_FILE_BYTES", default: "1073741824", note: "(1 GiB)", kind: Kind::Value,
        help: "--store: larger files are journaled with content skipped, not stored" },
    Flag { name: "--capture-interval-ms", value: "N", env: "DIFFKEEPER_CAPTURE_INTERVAL_MS", default: "1000", note: "", kind: Kind::Value,
        help: "--store: a file that keeps changing is captured at most once per N ms" },
    Flag { name: "--exclude", value: "GLOB", env: "DIFFKEEPER_EXCLUDE (colon-separated)", default: "none", note: "", kind: Kind::Repeated,
        help: "--store: paths whose content is not stored (repeatable; * and ? within a name, ** across; a GLOB without / matches any name)" },
    Flag { name: "--debug", value: "", env: "DIFFKEEPER_DEBUG=1", default: "off", note: "", kind: Kind::Bare,
        help: "debug logging" },
    Flag { name: "--help", value: "", env: "", default: "", note: "", kind: Kind::Action, help: "print this help" },
    Flag { name: "--version", value: "", env: "", default: "", note: "", kind: Kind::Action, help: "print the version" },
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
    pub kretprobe_maxactive: u32,
    /// `--tracefs-dir`; `None`: looked for.
    pub tracefs_dir: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
    pub debug: bool,
    /// `--store` and the capture settings; `None`: content is not recorded.
    pub capture: Option<CaptureSettings>,
    /// The command after `--`: run once ready; the sidecar stops when it exits.
    pub command: Vec<OsString>,
    /// diffkeeper-init's download settings given to the sidecar too (one container spec for
    /// both): which ones, for the info line saying they change nothing here.
    pub ignored_download_settings: Vec<String>,
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
         Usage: diffkeeper-sidecar --state-dir DIR [--state-dir DIR ...] [OPTIONS] [-- CMD ARGS...]\n\n\
         Flags win over environment variables, which win over defaults.\n\
         With `-- CMD ARGS...`, CMD runs once the sidecar is ready; when it exits the sidecar\n\
         stops (final capture and sync) and exits with CMD's status (128+N for signal N).\n\
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
    let (args, command) = split_command(args);
    let args = match diffkeeper_cli::parse(OPTIONS, args, env)? {
        Parsed::Help => return Ok(Command::Help),
        Parsed::Version => return Ok(Command::Version),
        Parsed::Run(args) => args,
    };
    // Repeated flags replace the variable's colon-separated list as a whole.
    let state_dirs: Vec<PathBuf> = match args.all("--state-dir") {
        [] => args
            .env("--state-dir")
            .map(|v| {
                v.split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default(),
        flags => flags.iter().map(PathBuf::from).collect(),
    };
    if state_dirs.is_empty() {
        return Err(UsageError(
            "no state directory given: use --state-dir DIR (repeatable) or DIFFKEEPER_STATE_DIRS=DIR1:DIR2".into(),
        ));
    }
    let attach = match args.get("--attach") {
        None => AttachMode::Auto,
        Some(given) => given
            .value
            .parse()
            .map_err(|e: UnknownAttachMode| UsageError(format!("{}={e}", given.origin)))?,
    };
    let ebpf_object = match args.get("--ebpf-object") {
        None => ObjectChoice::Auto,
        Some(given) => given
            .value
            .parse()
            .map_err(|e: UnknownObject| UsageError(format!("{}={e}", given.origin)))?,
    };
    let ringbuf_bytes: u32 = args.number("--ringbuf-bytes")?;
    if !ringbuf_bytes.is_power_of_two() || ringbuf_bytes < MIN_RINGBUF_BYTES {
        return Err(UsageError(format!(
            "--ringbuf-bytes={ringbuf_bytes} must be a power of two of at least {MIN_RINGBUF_BYTES} (e.g. 1048576)"
        )));
    }
    let kretprobe_maxactive: u32 = args.number("--kretprobe-maxactive")?;
    if !(1..=KRETPROBE_MAXACTIVE_MAX).contains(&kretprobe_maxactive) {
        // Out of range means given: the default is in range.
        let origin = args
            .get("--kretprobe-maxactive")
            .map(|given| given.origin.to_string())
            .unwrap_or_default();
        return Err(UsageError(format!(
            "{origin}={kretprobe_maxactive} must be between 1 and {KRETPROBE_MAXACTIVE_MAX} (the kernel's most)"
        )));
    }
    let metrics_addr = match args.get("--metrics-addr") {
        None => None,
        Some(given) if given.value.eq_ignore_ascii_case("off") => None,
        Some(given) => Some(given.value.trim().parse::<SocketAddr>().map_err(|_| {
            UsageError(format!(
                "{}={:?} is not an IP:PORT address (e.g. 0.0.0.0:9911)",
                given.origin, given.value
            ))
        })?),
    };
    // diffkeeper-init's download settings: accepted with any value (operators give both
    // containers the same flags and variables; diffkeeper-init checks them) and only named in
    // one info line.
    let ignored_download_settings = ["--btfhub-mirror", "--disable-btfhub-download"]
        .iter()
        .filter_map(|name| args.get(name))
        .map(|given| given.origin.to_string())
        .collect();
    let capture = CaptureSettings::from_args(&args)?;
    Ok(Command::Run(Box::new(Config {
        state_dirs,
        btf_cache_dir: args.text_or_default("--btf-cache-dir").into(),
        enable_ebpf: args.boolean("--enable-ebpf")?,
        attach,
        ebpf_object,
        fallback_fsnotify: args.boolean("--fallback-fsnotify")?,
        journal: args.text_or_default("--journal").into(),
        coalesce: Duration::from_millis(args.number("--coalesce-ms")?),
        ringbuf_bytes,
        kretprobe_maxactive,
        tracefs_dir: args.text("--tracefs-dir").map(PathBuf::from),
        metrics_addr,
        debug: args.boolean("--debug")?,
        capture,
        command,
        ignored_download_settings,
    })))
}

/// Everything after the first `--` is the command to run, never read as flags.
fn split_command(mut args: Vec<OsString>) -> (Vec<OsString>, Vec<OsString>) {
    match args.iter().position(|a| a == "--") {
        Some(at) => {
            let command = args.split_off(at + 1);
            args.pop();
            (args, command)
        }
        None => (args, Vec::new()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Parses `args` with `env` as the environment; panics unless it is a run.
    pub(crate) fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, UsageError> {
        let lookup = diffkeeper_cli::env_from_pairs(env);
        match parse(args.iter().map(OsString::from).collect(), &lookup)? {
            Command::Run(config) => Ok(*config),
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&["--state-dir", "/s"], &[]).unwrap();
        assert_eq!(c.state_dirs, [PathBuf::from("/s")]);
        assert_eq!(c.btf_cache_dir, PathBuf::from(DEFAULT_CACHE_DIR));
        assert!(c.enable_ebpf && c.fallback_fsnotify && !c.debug);
        assert!(matches!(c.attach, AttachMode::Auto));
        assert_eq!(c.journal, PathBuf::from("-"));
        assert_eq!(c.coalesce, Duration::from_millis(50));
        assert_eq!(c.ringbuf_bytes, 1 << 20);
        assert_eq!(c.kretprobe_maxactive, 4096);
        assert_eq!(c.tracefs_dir, None);
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
            ("DIFFKEEPER_KRETPROBE_MAXACTIVE", "64"),
            ("DIFFKEEPER_TRACEFS_DIR", "/host/sys/kernel/tracing"),
        ];
        let c = run(&[], &env).unwrap();
        assert_eq!(c.state_dirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(c.btf_cache_dir, PathBuf::from("/cache"));
        assert!(!c.enable_ebpf && !c.fallback_fsnotify && c.debug);
        assert!(matches!(c.attach, AttachMode::Tracepoint));
        assert_eq!(c.journal, PathBuf::from("/j.jsonl"));
        assert_eq!(c.coalesce, Duration::ZERO);
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9911".parse().unwrap()));
        assert_eq!(c.kretprobe_maxactive, 64);
        assert_eq!(
            c.tracefs_dir,
            Some(PathBuf::from("/host/sys/kernel/tracing"))
        );
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
            ("DIFFKEEPER_TRACEFS_DIR", "/env-tracefs"),
        ];
        let c = run(
            &[
                "--tracefs-dir",
                "/t",
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
        assert_eq!(c.tracefs_dir, Some(PathBuf::from("/t")));
    }

    #[test]
    fn init_download_settings_are_accepted_and_named() {
        let c = run(&["--state-dir", "/s"], &[]).unwrap();
        assert!(c.ignored_download_settings.is_empty());
        let c = run(
            &[
                "--state-dir",
                "/s",
                "--disable-btfhub-download",
                "--btfhub-mirror=https://mirror.local/btf",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            c.ignored_download_settings,
            ["--btfhub-mirror", "--disable-btfhub-download"]
        );
        // Any value: diffkeeper-init is the one that checks them.
        let env = [
            ("DIFFKEEPER_BTF_ALLOW_DOWNLOAD", "0"),
            ("DIFFKEEPER_BTF_MIRROR", "not even a URL"),
        ];
        let c = run(&["--state-dir", "/s"], &env).unwrap();
        assert_eq!(
            c.ignored_download_settings,
            ["DIFFKEEPER_BTF_MIRROR", "DIFFKEEPER_BTF_ALLOW_DOWNLOAD"]
        );
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
                &["--state-dir", "/s", "--kretprobe-maxactive", "4097"][..],
                &[][..],
                "between 1 and 4096",
            ),
            (
                &["--state-dir", "/s"][..],
                &[("DIFFKEEPER_KRETPROBE_MAXACTIVE", "0")][..],
                "DIFFKEEPER_KRETPROBE_MAXACTIVE=0",
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
            DEFAULT_CACHE_DIR,
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
            "--kretprobe-maxactive N",
            "DIFFKEEPER_KRETPROBE_MAXACTIVE",
            "--tracefs-dir DIR",
            "DIFFKEEPER_TRACEFS_DIR",
            "--metrics-addr ADDR",
            "DIFFKEEPER_METRICS_ADDR",
            "--debug",
            "DIFFKEEPER_DEBUG=1",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }
}
