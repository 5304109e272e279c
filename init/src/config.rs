//! Command line: every setting comes from its flag, else its environment variable, else its
//! default. [`FLAGS`] defines each flag once: parsing, `--help` and the README check read it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use diffkeeper_btf::bundle::DEFAULT_FILE_NAME;
use diffkeeper_btf::DEFAULT_CACHE_DIR;
use diffkeeper_cli::{render_help, Flag, Kind, Origin, Parsed, UsageError};

pub const DEFAULT_BAKED_DIR: &str = "/opt/diffkeeper/btf";
pub const DEFAULT_MIRROR: &str = "https://github.com/aquasecurity/btfhub-archive/raw/main";

#[rustfmt::skip]
pub const FLAGS: &[Flag] = &[
    Flag { name: "--btf-cache-dir", value: "DIR", env: "DIFFKEEPER_BTF_CACHE_DIR", default: DEFAULT_CACHE_DIR, note: "", kind: Kind::Value,
        help: "where <release>.btf and <release>.json are kept" },
    Flag { name: "--baked-btf-dir", value: "DIR", env: "DIFFKEEPER_BTF_BAKED_DIR", default: DEFAULT_BAKED_DIR, note: "", kind: Kind::Value,
        help: "BTFs shipped with the image: <release>.btf, <release>.btf.tar.xz or <distro>/<version>/<arch>/<release>.btf[.tar.xz]" },
    Flag { name: "--btf-bundle", value: "FILE", env: "DIFFKEEPER_BTF_BUNDLE", default: "<baked dir>/bundle.dkbtf", note: "", kind: Kind::Value,
        help: "bundle of minimised BTFs (`just btfgen`), looked in after the cache, before the baked files and the mirror" },
    Flag { name: "--btfhub-mirror", value: "URL", env: "DIFFKEEPER_BTF_MIRROR", default: DEFAULT_MIRROR, note: "", kind: Kind::Value,
        help: "BTFHub archive base URL (https://, file://, or http:// with --allow-http)" },
    Flag { name: "--disable-btfhub-download", value: "", env: "DIFFKEEPER_BTF_ALLOW_DOWNLOAD=0", default: "downloads enabled", note: "", kind: Kind::Switch,
        help: "never touch the network" },
    Flag { name: "--ca-file", value: "PEM", env: "DIFFKEEPER_BTF_CA_FILE", default: "bundled web roots only", note: "", kind: Kind::Value,
        help: "extra trust anchors (PEM certificates) for an internal mirror" },
    Flag { name: "--allow-http", value: "", env: "DIFFKEEPER_BTF_ALLOW_HTTP=1", default: "http:// refused", note: "", kind: Kind::Switch,
        help: "allow a plain http:// mirror (file:// is always allowed)" },
    Flag { name: "--host-root", value: "DIR", env: "DIFFKEEPER_HOST_ROOT", default: "/host if it exists, else /", note: "", kind: Kind::Value,
        help: "the host's root file system; its etc/os-release names the distro" },
    Flag { name: "--kernel-release", value: "R", env: "DIFFKEEPER_KERNEL_RELEASE", default: "uname -r", note: "", kind: Kind::Value,
        help: "kernel release to provision" },
    Flag { name: "--arch", value: "A", env: "DIFFKEEPER_ARCH", default: "uname -m in BTFHub naming", note: "", kind: Kind::Value,
        help: "architecture (x86_64, arm64)" },
    Flag { name: "--timeout", value: "SECS", env: "DIFFKEEPER_BTF_TIMEOUT", default: "30", note: "", kind: Kind::Value,
        help: "per-request timeout for downloads" },
    Flag { name: "--retries", value: "N", env: "DIFFKEEPER_BTF_RETRIES", default: "3", note: "", kind: Kind::Value,
        help: "retries (with backoff) after timeouts, connection errors and 5xx; never after 404" },
    Flag { name: "--max-download-bytes", value: "N", env: "", default: "67108864", note: "(64 MiB)", kind: Kind::Value,
        help: "cap on the compressed download" },
    Flag { name: "--max-btf-bytes", value: "N", env: "", default: "536870912", note: "(512 MiB)", kind: Kind::Value,
        help: "cap on the extracted archive and on a BTF file" },
    Flag { name: "--required", value: "", env: "DIFFKEEPER_BTF_REQUIRED=1", default: "off", note: "", kind: Kind::Switch,
        help: "exit 1 when no BTF can be provided (otherwise warn and exit 0)" },
    Flag { name: "--restore-from", value: "STORE", env: "DIFFKEEPER_RESTORE_FROM", default: "no restore", note: "", kind: Kind::Value,
        help: "a diffkeeper store (diffkeeper-sidecar --store) to restore state from, before the app starts" },
    Flag { name: "--restore-to", value: "DIR", env: "DIFFKEEPER_RESTORE_TO", default: "", note: "", kind: Kind::Value,
        help: "the state directory to restore into (must be empty); required with --restore-from" },
    Flag { name: "--restore-at", value: "T", env: "DIFFKEEPER_RESTORE_AT", default: "the newest state", note: "", kind: Kind::Value,
        help: "restore the state at T: RFC 3339 (as the journal's ts) or a duration ago (5m, 2h)" },
    Flag { name: "--restore-overwrite", value: "", env: "DIFFKEEPER_RESTORE_OVERWRITE=1", default: "off", note: "", kind: Kind::Switch,
        help: "empty a non-empty --restore-to first (otherwise it is refused)" },
    Flag { name: "--debug", value: "", env: "DIFFKEEPER_DEBUG=1", default: "off", note: "", kind: Kind::Switch,
        help: "debug logging" },
    Flag { name: "--help", value: "", env: "", default: "", note: "", kind: Kind::Action,
        help: "print this help" },
    Flag { name: "--version", value: "", env: "", default: "", note: "", kind: Kind::Action,
        help: "print the version" },
];

/// Everything diffkeeper-init needs to run, after precedence is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub btf_cache_dir: PathBuf,
    pub baked_dir: PathBuf,
    pub btf_bundle: PathBuf,
    pub mirror: String,
    pub download: bool,
    pub ca_file: Option<PathBuf>,
    pub allow_http: bool,
    pub host_root: PathBuf,
    pub kernel_release: Option<String>,
    pub arch: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
    pub max_download_bytes: u64,
    pub max_btf_bytes: u64,
    pub required: bool,
    pub debug: bool,
    pub restore: Option<Restore>,
}

/// A restore of a store's state into the state directory, asked for by `--restore-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    pub store: PathBuf,
    pub target: PathBuf,
    /// Nanoseconds since the epoch; `None` for the newest state.
    pub at_ns: Option<u64>,
    pub overwrite: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

pub fn help_text() -> String {
    let intro = format!(
        "diffkeeper-init {}: makes sure this node's kernel BTF is in diffkeeper's cache.\n\n\
         Order: system BTF (/sys/kernel/btf/vmlinux) -> cache -> bundle -> baked dir -> mirror.\n\
         Exit codes: 0 BTF available (or nothing found without --required), 1 failure with\n\
         --required, 2 bad usage. Flags win over environment, environment over defaults.\n\nFlags:\n",
        env!("CARGO_PKG_VERSION")
    );
    render_help(&intro, FLAGS)
}

/// Parses the arguments (without the program name); `env` looks up environment variables.
pub fn parse(
    args: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, UsageError> {
    let args = match diffkeeper_cli::parse(FLAGS, args, env)? {
        Parsed::Help => return Ok(Command::Help),
        Parsed::Version => return Ok(Command::Version),
        Parsed::Run(args) => args,
    };
    // The flag disables downloads; its variable allows them.
    let download = match args.get("--disable-btfhub-download") {
        Some(given) if matches!(given.origin, Origin::Flag(_)) => !given.boolean()?,
        Some(given) => given.boolean()?,
        None => true,
    };
    let timeout_secs: u64 = args.number("--timeout")?;
    if timeout_secs == 0 {
        return Err(UsageError("--timeout must be at least 1 second".into()));
    }
    let baked_dir: PathBuf = args.text_or_default("--baked-btf-dir").into();
    let config = Config {
        btf_cache_dir: args.text_or_default("--btf-cache-dir").into(),
        btf_bundle: args
            .text("--btf-bundle")
            .map(PathBuf::from)
            .unwrap_or_else(|| baked_dir.join(DEFAULT_FILE_NAME)),
        baked_dir,
        mirror: args.text_or_default("--btfhub-mirror"),
        download,
        ca_file: args.text("--ca-file").map(PathBuf::from),
        allow_http: args.boolean("--allow-http")?,
        host_root: args
            .text("--host-root")
            .map(PathBuf::from)
            .unwrap_or_else(default_host_root),
        kernel_release: args.text("--kernel-release"),
        arch: args.text("--arch"),
        timeout: Duration::from_secs(timeout_secs),
        retries: args.number("--retries")?,
        max_download_bytes: args.number("--max-download-bytes")?,
        max_btf_bytes: args.number("--max-btf-bytes")?,
        required: args.boolean("--required")?,
        debug: args.boolean("--debug")?,
        restore: restore(&args)?,
    };
    if config.download {
        check_mirror(&config.mirror, config.allow_http)?;
    }
    Ok(Command::Run(Box::new(config)))
}

/// The restore settings: none unless `--restore-from` is given, and then `--restore-to` too.
fn restore(args: &diffkeeper_cli::Args) -> Result<Option<Restore>, UsageError> {
    let Some(store) = args.get("--restore-from") else {
        for name in ["--restore-to", "--restore-at", "--restore-overwrite"] {
            if let Some(given) = args.get(name) {
                return Err(UsageError(format!(
                    "{} is given without --restore-from (DIFFKEEPER_RESTORE_FROM)",
                    given.origin
                )));
            }
        }
        return Ok(None);
    };
    let target = args.text("--restore-to").ok_or_else(|| {
        UsageError(format!(
            "{} needs --restore-to DIR (DIFFKEEPER_RESTORE_TO), the state directory to fill",
            store.origin
        ))
    })?;
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let at_ns = match args.get("--restore-at") {
        None => None,
        Some(given) => Some(diffkeeper_cli::time::parse_moment(&given.value, now_ns).ok_or_else(|| {
            UsageError(format!(
                "{}={:?} is neither an RFC 3339 time (2026-11-18T11:06:40Z) nor a duration ago (5m, 2h)",
                given.origin, given.value
            ))
        })?),
    };
    Ok(Some(Restore {
        store: store.value.into(),
        target: target.into(),
        at_ns,
        overwrite: args.boolean("--restore-overwrite")?,
    }))
}

fn default_host_root() -> PathBuf {
    if Path::new("/host").is_dir() {
        PathBuf::from("/host")
    } else {
        PathBuf::from("/")
    }
}

/// Refuses mirror URLs that would download without transport security or cannot be fetched.
fn check_mirror(mirror: &str, allow_http: bool) -> Result<(), UsageError> {
    let lower = mirror.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("file://") {
        Ok(())
    } else if lower.starts_with("http://") {
        if allow_http {
            Ok(())
        } else {
            Err(UsageError(format!(
                "plain http:// mirror {mirror} refused: the BTF would be downloaded without \
                 transport security. Use an https:// or file:// mirror, or pass --allow-http \
                 (DIFFKEEPER_BTF_ALLOW_HTTP=1) for a trusted internal network"
            )))
        }
    } else {
        Err(UsageError(format!(
            "--btfhub-mirror {mirror:?} is not an https://, http:// or file:// URL"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arguments, environment, and what the usage error must mention.
    type UsageCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, UsageError> {
        let args = args.iter().map(OsString::from).collect();
        match parse(args, &diffkeeper_cli::env_from_pairs(env))? {
            Command::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.btf_cache_dir, Path::new(DEFAULT_CACHE_DIR));
        assert_eq!(c.baked_dir, Path::new(DEFAULT_BAKED_DIR));
        assert_eq!(c.btf_bundle, Path::new("/opt/diffkeeper/btf/bundle.dkbtf"));
        assert_eq!(c.mirror, DEFAULT_MIRROR);
        assert!(c.download && !c.allow_http && !c.required && !c.debug);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(
            (c.max_download_bytes, c.max_btf_bytes),
            (64 << 20, 512 << 20)
        );
        assert_eq!(c.ca_file, None);
    }

    #[test]
    fn flag_beats_env_beats_default() {
        let env = [
            ("DIFFKEEPER_BTF_CACHE_DIR", "/env/cache"),
            ("DIFFKEEPER_BTF_BAKED_DIR", "/env/baked"),
            ("DIFFKEEPER_BTF_TIMEOUT", "7"),
            ("DIFFKEEPER_BTF_REQUIRED", "1"),
            ("DIFFKEEPER_BTF_ALLOW_DOWNLOAD", "false"),
            ("DIFFKEEPER_KERNEL_RELEASE", "5.4.0-1-env"),
        ];
        let c = run(&[], &env).unwrap();
        assert_eq!(c.btf_cache_dir, Path::new("/env/cache"));
        assert_eq!(c.timeout, Duration::from_secs(7));
        assert!(c.required && !c.download);
        assert_eq!(c.kernel_release.as_deref(), Some("5.4.0-1-env"));

        let c = run(
            &[
                "--btf-cache-dir",
                "/flag/cache",
                "--timeout=3",
                "--required=false",
                "--disable-btfhub-download=false",
                "--kernel-release",
                "5.15.0-92-generic",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(c.btf_cache_dir, Path::new("/flag/cache"));
        assert_eq!(c.baked_dir, Path::new("/env/baked"));
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert!(!c.required && c.download);
        assert_eq!(c.kernel_release.as_deref(), Some("5.15.0-92-generic"));
        // The bundle's default follows the baked dir; its own flag or variable wins.
        assert_eq!(c.btf_bundle, Path::new("/env/baked/bundle.dkbtf"));
        let c = run(&["--btf-bundle", "/flag/b.dkbtf"], &env).unwrap();
        assert_eq!(c.btf_bundle, Path::new("/flag/b.dkbtf"));
        let c = run(&[], &[("DIFFKEEPER_BTF_BUNDLE", "/env/b.dkbtf")]).unwrap();
        assert_eq!(c.btf_bundle, Path::new("/env/b.dkbtf"));
    }

    #[test]
    fn empty_env_counts_as_unset() {
        let c = run(
            &[],
            &[("DIFFKEEPER_BTF_CACHE_DIR", ""), ("DIFFKEEPER_DEBUG", "")],
        )
        .unwrap();
        assert_eq!(c.btf_cache_dir, Path::new(DEFAULT_CACHE_DIR));
        assert!(!c.debug);
    }

    #[test]
    fn switches() {
        let c = run(
            &[
                "--disable-btfhub-download",
                "--required",
                "--debug",
                "--allow-http",
            ],
            &[],
        )
        .unwrap();
        assert!(!c.download && c.required && c.debug && c.allow_http);
        let c = run(
            &[],
            &[
                ("DIFFKEEPER_BTF_ALLOW_HTTP", "1"),
                ("DIFFKEEPER_DEBUG", "true"),
            ],
        )
        .unwrap();
        assert!(c.allow_http && c.debug);
    }

    #[test]
    fn usage_errors_name_the_culprit() {
        let cases: &[UsageCase] = &[
            (&["--bogus"], &[], "--bogus"),
            (&["--timeout", "soon"], &[], "--timeout"),
            (&["--timeout", "0"], &[], "--timeout"),
            (&["--required=maybe"], &[], "--required"),
            (
                &[],
                &[("DIFFKEEPER_BTF_REQUIRED", "perhaps")],
                "DIFFKEEPER_BTF_REQUIRED",
            ),
            (
                &["--btfhub-mirror", "http://mirror.local/btf"],
                &[],
                "--allow-http",
            ),
            (
                &["--btfhub-mirror", "ftp://mirror.local/btf"],
                &[],
                "ftp://",
            ),
            (&["--max-btf-bytes", "lots"], &[], "--max-btf-bytes"),
        ];
        for (args, env, needle) in cases {
            let err = run(args, env).unwrap_err();
            assert!(err.0.contains(needle), "{args:?} {env:?}: {err}");
        }
    }

    #[test]
    fn http_mirror_needs_opt_in_unless_downloads_are_off() {
        assert!(run(&["--btfhub-mirror=http://m/x", "--allow-http"], &[]).is_ok());
        assert!(run(
            &["--btfhub-mirror=http://m/x", "--disable-btfhub-download"],
            &[]
        )
        .is_ok());
        assert!(run(&["--btfhub-mirror=file:///srv/btfhub"], &[]).is_ok());
    }

    #[test]
    fn numeric_defaults_are_numbers() {
        let c = run(&[], &[]).unwrap();
        assert_eq!((c.timeout, c.retries), (Duration::from_secs(30), 3));
    }

    #[test]
    fn help_lists_every_flag_with_env_and_default() {
        let help = help_text();
        for f in FLAGS {
            assert!(help.contains(f.name), "{}", f.name);
            assert!(help.contains(f.env), "{}", f.env);
            assert!(help.contains(f.default), "{}", f.default);
        }
        let parsed = parse(vec!["--help".into()], &|_| None).unwrap();
        assert_eq!(parsed, Command::Help);
    }
}
