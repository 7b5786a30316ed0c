//! `registry-cleanup report html REPORT.json [--output FILE]`: the report
//! as one self-contained HTML page (see `output::html`).

use crate::commands::exit::CommandResult;
use crate::config::options::ReportHtmlOptions;
use crate::domain::exit::Exit;
use crate::output::html::HtmlReport;
use crate::output::merge::read_report;

pub fn report_html(options: ReportHtmlOptions) -> CommandResult {
    let mut report = read_report(&options.report)?;
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
