//! The commands: one module per command, the exit code each outcome means
//! (`exit`) and how a command that plans or deletes ends (`finish`); this
//! one resolves the options and hands them to the command. The top layer:
//! it may import every other.

pub mod apply;
pub mod check;
pub mod delete;
pub mod doctor;
pub mod doctor_findings;
pub mod doctor_in_use;
pub mod exit;
pub mod finish;
pub mod inventory;
pub mod ledger;
pub mod plan;
pub mod policy;
pub mod report_html;
pub mod report_merge;
pub mod restore;
pub mod run;
pub mod signals;

use crate::commands::exit::CommandResult;
use crate::commands::finish::STARTED;
use crate::config::cli::Cli;
use crate::config::options::{self, Invocation};
use crate::config::settings::CleanupEnv;

/// Runs the parsed command line; errors carry the exit code in their type.
pub async fn dispatch(cli: Cli) -> CommandResult {
    STARTED.get_or_init(std::time::Instant::now);
    let env = CleanupEnv::from_env()?;
    match options::resolve(cli, &env)? {
        Invocation::Check(options) => check::check(options),
        Invocation::Plan(options) => plan::plan(options),
        Invocation::Delete(options) => delete::delete(options).await,
        Invocation::Run(options) => run::run(options).await,
        Invocation::Inventory(options) => inventory::inventory(options).await,
        Invocation::Doctor(options) => doctor::doctor(options).await,
        Invocation::PolicyImport(options) => policy::import(options).await,
        Invocation::ReportMerge(options) => report_merge::report_merge(options),
        Invocation::LedgerServe(options) => ledger::serve(options).await,
        Invocation::ReportHtml(options) => report_html::report_html(options),
        Invocation::Restore(options) => restore::restore(options).await,
    }
}
