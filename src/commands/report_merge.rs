//! `registry-cleanup report merge FILE...`: the shard reports of a group
//! run as one report and summary, ending like `run` does.

use crate::commands::exit::CommandResult;
use crate::commands::finish::finish;
use crate::config::options::ReportMergeOptions;
use crate::output::merge::{merge, read_report};

pub fn report_merge(options: ReportMergeOptions) -> CommandResult {
    let mut reports = Vec::with_capacity(options.files.len());
    for file in options.files {
        let report = read_report(&file)?;
        reports.push((file, report));
    }
    let shards = reports.len();
    let merged = merge(reports)?;
    tracing::info!(
        reports = shards,
        repositories = merged.totals.repositories,
        "merged the shard reports"
    );
    finish(&merged, options.counts.with_report(options.report.as_ref()))
}
