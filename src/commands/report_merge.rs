//! `registry-cleanup report merge FILE...`: the shard reports of a group
//! run as one report and summary, ending like `run` does.

use super::finish;
use crate::error::Exit;
use crate::merge::{merge, read_report};
use crate::options::ReportMergeOptions;

pub fn report_merge(options: ReportMergeOptions) -> anyhow::Result<Exit> {
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
