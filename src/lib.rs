//! registry-cleanup: precise, previewable cleanup of GitLab container registries.
//!
//! The binary's `main` calls [`main_with_args`]; everything else lives here so
//! tests reach it. The folders are the layers, from the ground up; each may
//! import only the layers its module comment names (`tests/layers.rs` keeps
//! it so — see `docs/architecture.md`):
//!
//! - `domain`: what a tag, a policy and a plan are; the pure planner. Imports
//!   nothing else of the crate.
//! - `wire`: HTTP with retries, rate budget and secrets; pagination; progress.
//! - `gitlab`, `registry`: the two APIs, each on the wire; `ledger`: the
//!   pull ledger's service and its client.
//! - `output`: the files and summaries a run leaves (report, counts,
//!   inventory), from domain types only.
//! - `config`: the command line, the environment and every command's options.
//! - `execute`: listing, the deleter and the two engines that carry out a plan.
//! - `commands`: one file per command, and the exit code each outcome means.

pub mod commands;
pub mod config;
pub mod domain;
pub mod execute;
pub mod gitlab;
pub mod ledger;
pub mod output;
pub mod registry;
pub mod wire;

use std::ffi::OsString;
use std::process::ExitCode;

use crate::config::{cli, logging};
use crate::domain::exit::Exit;

/// Parses `args`, runs the command and maps the outcome to an exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let parsed = cli::command()
        .try_get_matches_from(args)
        .and_then(|matches| <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            }
            .into();
        }
    };
    if let Err(err) = logging::init() {
        eprintln!("registry-cleanup: error: {err}");
        return Exit::Usage.into();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("registry-cleanup: error: starting the async runtime: {err}");
            return Exit::Failed.into();
        }
    };
    let outcome = runtime.block_on(commands::dispatch(cli));
    // Let in-flight tasks (progress tickers) go before we print the verdict.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprintln!("registry-cleanup: error: {err:#}");
            err.exit_code().into()
        }
    }
}
