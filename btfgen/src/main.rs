//! `diffkeeper-btfgen [--objects DIR] [--bpftool PATH] [--jobs N] ARCHIVE_DIR OUT`
//! (`just btfgen ARCHIVE_DIR OUT`): see the crate docs.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use diffkeeper_btfgen::{generate, Options};

const USAGE: &str = "usage: diffkeeper-btfgen [--objects DIR] [--bpftool PATH] [--jobs N] \
                     ARCHIVE_DIR OUT\n\
  ARCHIVE_DIR  a BTFHub-shaped tree: <distro>/<version>/<arch>/<release>.btf.tar.xz\n\
  OUT          the bundle to write (e.g. bundle.dkbtf)\n\
  --objects    where the eBPF objects are (every *.bpf.o below; default ebpf/obj)\n\
  --bpftool    the bpftool to run (default bpftool)\n\
  --jobs       kernels minimised in parallel (default: the number of CPUs)";

/// A command line btfgen cannot run (exit status 2, with the usage).
#[derive(Debug)]
enum UsageError {
    MissingValue { flag: &'static str },
    BadJobs { value: String },
    UnknownFlag { flag: String },
    WantTwoPaths,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingValue { flag } => write!(f, "{flag} needs a value"),
            Self::BadJobs { value } => write!(f, "--jobs {value:?} is not a number"),
            Self::UnknownFlag { flag } => write!(f, "unknown flag {flag}"),
            Self::WantTwoPaths => write!(f, "want ARCHIVE_DIR and OUT"),
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut objects = PathBuf::from("ebpf/obj");
    let mut bpftool = "bpftool".to_string();
    let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = |flag: &'static str| args.next().ok_or(UsageError::MissingValue { flag });
        let parsed = match arg.as_str() {
            "--objects" => value("--objects").map(|v| objects = v.into()),
            "--bpftool" => value("--bpftool").map(|v| bpftool = v),
            "--jobs" => value("--jobs").and_then(|v| {
                v.parse()
                    .map(|n| jobs = n)
                    .map_err(|_| UsageError::BadJobs { value: v })
            }),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            flag if flag.starts_with('-') => Err(UsageError::UnknownFlag {
                flag: flag.to_string(),
            }),
            _ => {
                positional.push(arg);
                Ok(())
            }
        };
        if let Err(e) = parsed {
            eprintln!("btfgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let [archive, out] = &positional[..] else {
        eprintln!("btfgen: {}\n{USAGE}", UsageError::WantTwoPaths);
        return ExitCode::from(2);
    };
    let opts = Options {
        archive: archive.into(),
        objects,
        out: out.into(),
        bpftool,
        jobs,
    };
    match generate(&opts) {
        Ok(report) => {
            for made in &report.made {
                eprintln!(
                    "btfgen: ok {}: {}-byte BTF -> {}-byte minimised BTF for {} objects, {} bytes \
                     stored",
                    made.key, made.kernel_btf_len, made.min_btf_len, made.objects, made.stored_len
                );
            }
            for skipped in &report.skipped {
                eprintln!(
                    "btfgen: skipped {}: {}",
                    skipped.path.display(),
                    skipped.reason
                );
            }
            eprintln!(
                "btfgen: wrote {} ({} bytes): {} kernels, {} distinct BTFs, {} skipped",
                opts.out.display(),
                report.bundle_len,
                report.made.len(),
                report.blobs,
                report.skipped.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("btfgen: error: {e}");
            ExitCode::from(1)
        }
    }
}
