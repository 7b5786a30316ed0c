//! `registry-cleanup report html REPORT.json [--output FILE]`: the report
//! as one self-contained HTML page (see `output::html`). A run's journal
//! (`REPORT.json.journal`, or `REPORT.json` never written beside it) makes
//! the page of that run as far as it got: interrupted.

use crate::commands::exit::CommandResult;
use crate::config::options::ReportHtmlOptions;
use crate::domain::exit::Exit;
use crate::output::html::HtmlReport;
use crate::output::restore::read_report_or_journal;

pub fn report_html(options: ReportHtmlOptions) -> CommandResult {
    let mut report = read_report_or_journal(&options.report)?;
    // Counted again from its repositories: a report written before the
    // per-rule and per-reason totals existed gets them too.
    report.extend(std::iter::empty());
    HtmlReport::write(&report, &options.output)?;
    println!(
        "{}: {} repositories, {} tags, {} {}",
        options.output.display(),
        report.totals.repositories,
        report.totals.tags,
        report.totals.deleted,
        report.verb()
    );
    Ok(Exit::Success)
}
