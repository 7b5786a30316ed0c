//! How every command that plans or deletes ends: the summary (in
//! collapsible sections inside GitLab CI), the report, its HTML page and
//! the count files.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use crate::commands::exit::{CommandResult, Failure};
use crate::config::options::{CountFiles, Outputs};
use crate::domain::exit::Exit;
use crate::output::count_files;
use crate::output::html::HtmlReport;
use crate::output::report::{Report, ReportError};
use crate::output::report_stream::ReportStream;
use crate::output::sections;

/// When the command started, for the elapsed time in the summary.
pub static STARTED: OnceLock<Instant> = OnceLock::new();

/// Starts a streamed report: the summary and, with `report`, the report
/// file, and with `counts.html` its HTML page, written as each repository
/// finishes (see [`ReportStream`]).
pub fn start_stream(
    head: Report,
    report: Option<&Path>,
    counts: &CountFiles,
) -> Result<ReportStream, ReportError> {
    ReportStream::create(head, report)?.with_html(counts.html.as_deref())
}

/// How a command whose report was streamed ([`ReportStream`]: summary
/// lines and report entries written as each repository finished) ends: the
/// totals, the report put in place, then [`conclude`]. `counts`: the count
/// files to write from the totals.
pub fn finish_stream(stream: ReportStream, counts: &CountFiles) -> Result<(Exit, Report), Failure> {
    let (totals_only, failures) = stream.finish()?;
    print_elapsed(&mut std::io::stdout().lock())?;
    let exit = conclude(&totals_only, &counts.with_report(None), failures)?;
    Ok((exit, totals_only))
}

/// Prints the summary (in collapsible sections inside GitLab CI) and
/// writes the report and count files asked for: how every command that
/// deletes or plans ends (streamed ones: [`finish_stream`]). `outputs`: an
/// [`Outputs`], or just the report path (`Option<&PathBuf>`).
pub fn finish(report: &Report, outputs: impl Into<Outputs>) -> CommandResult {
    let outputs: Outputs = outputs.into();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    sections::print_summary(
        report,
        sections::in_gitlab_ci(),
        chrono::Utc::now().timestamp(),
        &mut out,
    )?;
    print_elapsed(&mut out)?;
    if let Some(path) = &outputs.report {
        report.write(path)?;
        tracing::info!(path = %path.display(), "report written");
    }
    if let Some(path) = &outputs.html {
        HtmlReport::write(report, path)?;
    }
    conclude(report, &outputs, report.has_failures())
}

/// The time since the command started, after the summary: apart from the
/// total line, whose figures tests and scripts compare.
fn print_elapsed(out: &mut impl std::io::Write) -> std::io::Result<()> {
    if let Some(elapsed) = STARTED.get().map(|started| started.elapsed()) {
        writeln!(out, "elapsed: {:.1} s", elapsed.as_secs_f64())?;
    }
    Ok(())
}

/// The end every reporting command shares, streamed or not. `report` has
/// the final totals, and its repositories only when it was not streamed:
/// anything made from the totals (the counts for later jobs…) belongs here,
/// not in [`finish`], so that streamed runs and plans get it too.
fn conclude(report: &Report, outputs: &Outputs, failures: bool) -> CommandResult {
    if let Some(path) = &outputs.dotenv {
        count_files::write_dotenv(report, path)?;
        tracing::info!(path = %path.display(), "dotenv written");
    }
    if let Some(path) = &outputs.metrics {
        count_files::write_metrics(report, path)?;
        tracing::info!(path = %path.display(), "metrics written");
    }
    Ok(if failures {
        Exit::Failed
    } else {
        Exit::Success
    })
}
