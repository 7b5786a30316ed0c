//! registry-cleanup: precise, previewable cleanup of GitLab container registries.
//!
//! The binary's `main` calls [`main_with_args`]; everything else lives here so
//! tests reach it. One module per concern:
//!
//! - the edge: `cli` (flags), `config` (the `CI_*`/`CLEANUP_*` environment,
//!   `ConfigError`), `options` (every command's options, resolved once),
//!   `names` (tag names, digests, repository paths, parsed once), `paths`
//!   (what `--repository` accepts);
//! - the model: `model` (a tag), `policy` (the policy file), `lint`
//!   (warnings about a valid policy), `inventory` (the inventory file;
//!   `inventory_stream` reads it one repository at a time), `import`
//!   (GitLab's cleanup policy as a policy file);
//! - the pure core: `planner` (policy × tags × refs × now → plan), `removal`
//!   (whether `remove_empty_repositories` removes a repository), `refs`
//!   (ref slugs, what a tag's name says about its git ref);
//! - the network: `http` (retries, rate budget, errors), `throttle` (requests
//!   in flight), `links` (pagination), `auth` (registry tokens), `registry`
//!   and `gitlab` (the two APIs), `listing` (a repository's tags),
//!   `deleter` (the executor: safe deletes, one outcome per deletion);
//! - the pipeline: `engine` (client: list → plan → guard → execute → report;
//!   server: GitLab's bulk API), `commands` (one per subcommand);
//! - scale: `shard` (which of N parallel jobs cleans a repository);
//! - output: `report` (report file and summary), `report_stream` (the
//!   same, written as each repository finishes), `merge` (shard reports
//!   into one), `outputs` (dotenv and OpenMetrics count files), `sections`
//!   (GitLab CI log sections), `progress`, `logging`,
//!   `secret` (redacted tokens), `error` (exit codes), `rfc3339` (the
//!   times in inventory and report files, read and written fast);
//! - GitLab's tag rules from the registry JWT: `tag_rules`;
//! - `doctor`'s findings (ok/warn/fail lines and their exit code).

pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod deleter;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod gitlab;
pub mod http;
pub mod import;
pub mod inventory;
pub mod inventory_stream;
pub mod links;
pub mod lint;
pub mod listing;
pub mod logging;
pub mod merge;
pub mod model;
pub mod names;
pub mod options;
pub mod outputs;
pub mod paths;
pub mod planner;
pub mod policy;
pub mod progress;
pub mod refs;
pub mod registry;
pub mod removal;
pub mod report;
pub mod report_stream;
pub mod rfc3339;
pub mod secret;
pub mod sections;
pub mod shard;
pub mod tag_rules;
pub mod throttle;

use std::ffi::OsString;
use std::process::ExitCode;

use crate::error::{exit_for, Exit};

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
            exit_for(&err).into()
        }
    }
}
