//! Command line: every setting comes from its flag, else its environment variable, else its
//! default. `--help` is rendered from [`FLAGS`], so the documented names cannot drift.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use diffkeeper_cli::{
    env_bool, flag_bool, parse_number, reject_leftovers, render_help, FlagDoc, UsageError,
};

pub const DEFAULT_CACHE_DIR: &str = "/var/cache/diffkeeper/btf";
pub const DEFAULT_BAKED_DIR: &str = "/opt/diffkeeper/btf";
pub const DEFAULT_MIRROR: &str = "https://github.com/aquasecurity/btfhub-archive/raw/main";
const DEFAULT_TIMEOUT_SECS: u64 = 30;
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 64 << 20;
const DEFAULT_MAX_BTF_BYTES: u64 = 512 << 20;

#[rustfmt::skip]
pub const FLAGS: &[FlagDoc] = &[
    FlagDoc { flag: "--btf-cache-dir", value: "DIR", env: "DIFFKEEPER_BTF_CACHE_DIR", default: DEFAULT_CACHE_DIR,
        help: "where <release>.btf and <release>.json are kept" },
    FlagDoc { flag: "--baked-btf-dir", value: "DIR", env: "DIFFKEEPER_BTF_BAKED_DIR", default: DEFAULT_BAKED_DIR,
        help: "BTFs shipped with the image: <release>.btf, <release>.btf.tar.xz or <distro>/<version>/<arch>/<release>.btf[.tar.xz]" },
    FlagDoc { flag: "--btfhub-mirror", value: "URL", env: "DIFFKEEPER_BTF_MIRROR", default: DEFAULT_MIRROR,
        help: "BTFHub archive base URL (https://, file://, or http:// with --allow-http)" },
    FlagDoc { flag: "--disable-btfhub-download", value: "", env: "DIFFKEEPER_BTF_ALLOW_DOWNLOAD=0", default: "downloads enabled",
        help: "never touch the network" },
    FlagDoc { flag: "--ca-file", value: "PEM", env: "DIFFKEEPER_BTF_CA_FILE", default: "bundled web roots only",
        help: "extra trust anchors (PEM certificates) for an internal mirror" },
    FlagDoc { flag: "--allow-http", value: "", env: "DIFFKEEPER_BTF_ALLOW_HTTP=1", default: "http:// refused",
        help: "allow a plain http:// mirror (file:// is always allowed)" },
    FlagDoc { flag: "--host-root", value: "DIR", env: "DIFFKEEPER_HOST_ROOT", default: "/host if it exists, else /",
        help: "the host's root file system; its etc/os-release names the distro" },
    FlagDoc { flag: "--kernel-release", value: "R", env: "DIFFKEEPER_KERNEL_RELEASE", default: "uname -r",
        help: "kernel release to provision" },
    FlagDoc { flag: "--arch", value: "A", env: "DIFFKEEPER_ARCH", default: "uname -m in BTFHub naming",
        help: "architecture (x86_64, arm64)" },
    FlagDoc { flag: "--timeout", value: "SECS", env: "DIFFKEEPER_BTF_TIMEOUT", default: "30",
        help: "per-request timeout for downloads" },
    FlagDoc { flag: "--retries", value: "N", env: "DIFFKEEPER_BTF_RETRIES", default: "3",
        help: "retries (with backoff) after timeouts, connection errors and 5xx; never after 404" },
    FlagDoc { flag: "--max-download-bytes", value: "N", env: "", default: "67108864 (64 MiB)",
        help: "cap on the compressed download" },
    FlagDoc { flag: "--max-btf-bytes", value: "N", env: "", default: "536870912 (512 MiB)",
        help: "cap on the extracted archive and on a BTF file" },
    FlagDoc { flag: "--required", value: "", env: "DIFFKEEPER_BTF_REQUIRED=1", default: "off",
        help: "exit 1 when no BTF can be provided (otherwise warn and exit 0)" },
    FlagDoc { flag: "--debug", value: "", env: "DIFFKEEPER_DEBUG=1", default: "off",
        help: "debug logging" },
    FlagDoc { flag: "--help", value: "", env: "", default: "",
        help: "print this help" },
    FlagDoc { flag: "--version", value: "", env: "", default: "",
        help: "print the version" },
];

/// Everything diffkeeper-init needs to run, after precedence is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub cache_dir: PathBuf,
    pub baked_dir: PathBuf,
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
         Order: system BTF (/sys/kernel/btf/vmlinux) -> cache -> baked dir -> BTFHub mirror.\n\
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
    let mut args = pico_args::Arguments::from_vec(args);
    if args.contains(["-h", "--help"]) {
        return Ok(Command::Help);
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Command::Version);
    }
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let env_bool = |name: &str| env_bool(&env, name);
    let mut text = |flag: &'static str, var: &str| -> Result<Option<String>, UsageError> {
        Ok(args
            .opt_value_from_str::<_, String>(flag)
            .map_err(pico_error)?
            .or_else(|| env(var)))
    };

    let cache_dir = text("--btf-cache-dir", "DIFFKEEPER_BTF_CACHE_DIR")?;
    let baked_dir = text("--baked-btf-dir", "DIFFKEEPER_BTF_BAKED_DIR")?;
    let mirror = text("--btfhub-mirror", "DIFFKEEPER_BTF_MIRROR")?;
    let ca_file = text("--ca-file", "DIFFKEEPER_BTF_CA_FILE")?;
    let host_root = text("--host-root", "DIFFKEEPER_HOST_ROOT")?;
    let kernel_release = text("--kernel-release", "DIFFKEEPER_KERNEL_RELEASE")?;
    let arch = text("--arch", "DIFFKEEPER_ARCH")?;
    let timeout = text("--timeout", "DIFFKEEPER_BTF_TIMEOUT")?;
    let retries = text("--retries", "DIFFKEEPER_BTF_RETRIES")?;
    let max_download = args
        .opt_value_from_str::<_, String>("--max-download-bytes")
        .map_err(pico_error)?;
    let max_btf = args
        .opt_value_from_str::<_, String>("--max-btf-bytes")
        .map_err(pico_error)?;

    let disable_download = switch(&mut args, "--disable-btfhub-download")?;
    let download = match disable_download {
        Some(disabled) => !disabled,
        None => env_bool("DIFFKEEPER_BTF_ALLOW_DOWNLOAD")?.unwrap_or(true),
    };
    let allow_http = or_env(switch(&mut args, "--allow-http")?, || {
        env_bool("DIFFKEEPER_BTF_ALLOW_HTTP")
    })?;
    let required = or_env(switch(&mut args, "--required")?, || {
        env_bool("DIFFKEEPER_BTF_REQUIRED")
    })?;
    let debug = or_env(switch(&mut args, "--debug")?, || {
        env_bool("DIFFKEEPER_DEBUG")
    })?;
    reject_leftovers(args.finish())?;

    let timeout_secs = match timeout {
        Some(v) => parse_number::<u64>("--timeout", &v)?,
        None => DEFAULT_TIMEOUT_SECS,
    };
    if timeout_secs == 0 {
        return Err(UsageError("--timeout must be at least 1 second".into()));
    }
    let config = Config {
        cache_dir: cache_dir.unwrap_or_else(|| DEFAULT_CACHE_DIR.into()).into(),
        baked_dir: baked_dir.unwrap_or_else(|| DEFAULT_BAKED_DIR.into()).into(),
        mirror: mirror.unwrap_or_else(|| DEFAULT_MIRROR.into()),
        download,
        ca_file: ca_file.map(PathBuf::from),
        allow_http,
        host_root: host_root
            .map(PathBuf::from)
            .unwrap_or_else(default_host_root),
        kernel_release,
        arch,
        timeout: Duration::from_secs(timeout_secs),
        retries: number_or("--retries", retries, DEFAULT_RETRIES)?,
        max_download_bytes: number_or(
            "--max-download-bytes",
            max_download,
            DEFAULT_MAX_DOWNLOAD_BYTES,
        )?,
        max_btf_bytes: number_or("--max-btf-bytes", max_btf, DEFAULT_MAX_BTF_BYTES)?,
        required,
        debug,
    };
    if config.download {
        check_mirror(&config.mirror, config.allow_http)?;
    }
    Ok(Command::Run(Box::new(config)))
}

/// A switch given bare (`--required`) or with a value (`--required=false`).
fn switch(args: &mut pico_args::Arguments, name: &'static str) -> Result<Option<bool>, UsageError> {
    if args.contains(name) {
        return Ok(Some(true));
    }
    args.opt_value_from_str::<_, String>(name)
        .map_err(pico_error)?
        .map(|v| flag_bool(name, &v))
        .transpose()
}

fn or_env(
    flag: Option<bool>,
    env: impl FnOnce() -> Result<Option<bool>, UsageError>,
) -> Result<bool, UsageError> {
    match flag {
        Some(v) => Ok(v),
        None => Ok(env()?.unwrap_or(false)),
    }
}

fn number_or<T: std::str::FromStr>(
    origin: &str,
    value: Option<String>,
    default: T,
) -> Result<T, UsageError> {
    value.map_or(Ok(default), |v| parse_number(origin, &v))
}

fn pico_error(e: pico_args::Error) -> UsageError {
    UsageError(format!("{e} (see --help)"))
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
    use std::collections::HashMap;

    /// Arguments, environment, and what the usage error must mention.
    type UsageCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, UsageError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args = args.iter().map(OsString::from).collect();
        match parse(args, &|name| env.get(name).cloned())? {
            Command::Run(c) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.cache_dir, Path::new(DEFAULT_CACHE_DIR));
        assert_eq!(c.baked_dir, Path::new(DEFAULT_BAKED_DIR));
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
        assert_eq!(c.cache_dir, Path::new("/env/cache"));
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
        assert_eq!(c.cache_dir, Path::new("/flag/cache"));
        assert_eq!(c.baked_dir, Path::new("/env/baked"));
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert!(!c.required && c.download);
        assert_eq!(c.kernel_release.as_deref(), Some("5.15.0-92-generic"));
    }

    #[test]
    fn empty_env_counts_as_unset() {
        let c = run(
            &[],
            &[("DIFFKEEPER_BTF_CACHE_DIR", ""), ("DIFFKEEPER_DEBUG", "")],
        )
        .unwrap();
        assert_eq!(c.cache_dir, Path::new(DEFAULT_CACHE_DIR));
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
    fn help_lists_every_flag_with_env_and_default() {
        let help = help_text();
        for f in FLAGS {
            assert!(help.contains(f.flag), "{}", f.flag);
            assert!(help.contains(f.env), "{}", f.env);
            assert!(help.contains(f.default), "{}", f.default);
        }
        let parsed = parse(vec!["--help".into()], &|_| None).unwrap();
        assert_eq!(parsed, Command::Help);
    }
}
