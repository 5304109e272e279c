//! diffkeeper-init: makes sure the node's kernel BTF is available before the sidecar starts.
//!
//! With `--restore-from`, it first restores a diffkeeper store's state into the state directory.
//!
//! Exit codes: 0 = a BTF is available (system, cache, bundle, baked, downloaded) or none was found and
//! `--required` is off; 1 = failure with `--required`, or a requested restore failed; 2 = bad usage.

mod archive;
mod baked;
mod bundle;
mod config;
mod download;
mod errors;
mod identity;
mod provision;
mod restore;
mod status;
mod tls;

use std::process::ExitCode;

use config::Command;
use diffkeeper_cli::init_logging;

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    let config = match config::parse(args, &|name| std::env::var(name).ok()) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", config::help_text());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("diffkeeper-init {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("diffkeeper-init: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.debug, &[]);
    if let Some(restore) = &config.restore {
        // Asked for explicitly: the app must not start on a state that failed to come back.
        if let Err(e) = restore::run(restore) {
            log::error!("restore from {} failed: {e}", restore.store.display());
            return ExitCode::from(1);
        }
    }
    match provision::run(&config) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) if config.required => {
            log::error!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            log::warn!("{e}");
            log::warn!("continuing without a BTF (pass --required to fail instead)");
            ExitCode::SUCCESS
        }
    }
}
