//! The summary on stdout, inside GitLab CI (`GITLAB_CI=true`) with each
//! repository's details in a collapsible job-log section and the totals
//! outside; elsewhere the plain summary.
//!
//! GitLab's documented markers (docs.gitlab.com, "Custom collapsible
//! sections"): `\e[0Ksection_start:<unix time>:<name>[collapsed=true]\r\e[0K<header>`
//! … `\e[0Ksection_end:<unix time>:<name>\r\e[0K`. The section's header is
//! the repository's summary line, so the collapsed log still reads as the
//! plain summary does.

use std::io::Write;

use crate::output::breakdown::Breakdown;
use crate::output::report::{human_bytes, Report, RepositoryReport};

/// Whether stdout goes to a GitLab CI job log (`GITLAB_CI=true`, set by
/// every GitLab Runner).
pub fn in_gitlab_ci() -> bool {
    // `var_os`: a variable that is not UTF-8 is simply not `true` (envy reads
    // the whole environment as text, and would panic on one).
    std::env::var_os("GITLAB_CI").is_some_and(|value| value == "true")
}

/// Prints the summary: each repository's line — plain, or with `sections`
/// its details in a section collapsed unless something failed there (a
/// failure should not need a click to be seen) — then the breakdown by rule,
/// reason and storage ([`Breakdown`]), then the totals. `now` is the
/// markers' unix time.
pub fn print_summary(
    report: &Report,
    sections: bool,
    now: i64,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let lines = report.summary_lines();
    // `summary_lines` is one line per repository, in order, then the totals.
    let (repository_lines, total_lines) = lines.split_at(report.repositories.len());
    for (index, (repository, header)) in
        report.repositories.iter().zip(repository_lines).enumerate()
    {
        if sections {
            print_repository(repository, header, report.dry_run, index + 1, now, out)?;
        } else {
            writeln!(out, "{header}")?;
        }
    }
    for line in breakdown_lines(report, &Breakdown::of(report)) {
        writeln!(out, "{line}")?;
    }
    for line in total_lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// The breakdown block of `report`'s summary: none for the server engine's
/// live run, which GitLab reports nothing back from.
pub fn breakdown_lines(report: &Report, breakdown: &Breakdown) -> Vec<String> {
    if report.engine == "server" && !report.dry_run {
        return Vec::new();
    }
    breakdown.lines(report)
}

/// One repository's section: `header` (its summary line) and its detail
/// lines, collapsed unless something failed there (a failure should not
/// need a click to be seen). `number`: the repository's place in the run,
/// for a section name unique in the job log. Also what a streamed run
/// prints as each repository finishes.
pub fn print_repository(
    repository: &RepositoryReport,
    header: &str,
    dry_run: bool,
    number: usize,
    now: i64,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let name = format!("registry_cleanup_repository_{number}");
    let failed = !repository.failed.is_empty() || repository.error.is_some();
    let collapsed = if failed { "" } else { "[collapsed=true]" };
    write!(
        out,
        "\x1b[0Ksection_start:{now}:{name}{collapsed}\r\x1b[0K{header}\n"
    )?;
    for line in detail_lines(repository, dry_run) {
        writeln!(out, "{line}")?;
    }
    write!(out, "\x1b[0Ksection_end:{now}:{name}\r\x1b[0K\n")
}

/// One line per tag the run touched in `repository`.
pub fn detail_lines(repository: &RepositoryReport, dry_run: bool) -> Vec<String> {
    let verb = if dry_run { "would delete" } else { "deleted" };
    let mut lines = Vec::new();
    for deleted in &repository.deleted {
        let mut details: Vec<String> = Vec::new();
        if let Some(rule) = &deleted.rule {
            details.push(format!("rule {rule:?}"));
        }
        if let Some(size) = deleted.size_bytes {
            details.push(human_bytes(size));
        }
        let details = if details.is_empty() {
            String::new()
        } else {
            format!(" ({})", details.join(", "))
        };
        lines.push(format!("  {verb} {}{details}", deleted.tag));
    }
    for absent in &repository.already_absent {
        lines.push(format!("  already absent {}", absent.tag));
    }
    for skipped in &repository.skipped {
        lines.push(format!("  skipped {}: {}", skipped.tag, skipped.reason));
    }
    for failed in &repository.failed {
        lines.push(format!("  FAILED {}: {}", failed.tag, failed.error));
    }
    for protected in &repository.protected_by_gitlab {
        lines.push(format!(
            "  protected {}: {}",
            protected.tag, protected.reason
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::report::{DeletedTag, FailedTag};

    fn report() -> Report {
        let mut report = Report::new("client", false);
        let mut api = RepositoryReport::new("g/p/api");
        api.tags = 2;
        api.kept = 1;
        api.deleted.push(DeletedTag {
            rule: Some("review".into()),
            size_bytes: Some(2048),
            ..DeletedTag::named("mr-1")
        });
        report.push(api);
        let mut web = RepositoryReport::new("g/p/web");
        web.tags = 1;
        web.failed.push(FailedTag {
            tag: "mr-2".into(),
            error: "boom".into(),
        });
        report.push(web);
        report
    }

    fn printed(sections: bool) -> String {
        let mut out = Vec::new();
        print_summary(&report(), sections, 1_700_000_000, &mut out).expect("printed");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn sections_wrap_each_repository_and_leave_the_totals_outside() {
        let text = printed(true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "\x1b[0Ksection_start:1700000000:registry_cleanup_repository_1[collapsed=true]\r\x1b[0Kg/p/api: 2 tags, 1 deleted, 1 kept, 0 protected"
        );
        assert_eq!(lines[1], "  deleted mr-1 (rule \"review\", 2.0 KiB)");
        assert_eq!(
            lines[2],
            "\x1b[0Ksection_end:1700000000:registry_cleanup_repository_1\r\x1b[0K"
        );
        // A repository with failures is not collapsed.
        assert!(lines[3].contains("section_start:1700000000:registry_cleanup_repository_2\r"));
        assert_eq!(lines[4], "  FAILED mr-2: boom");
        assert!(lines[5].starts_with("\x1b[0Ksection_end:1700000000:registry_cleanup_repository_2"));
        assert_eq!(lines[6], "deleted, by rule:");
        assert!(lines[7].starts_with("  \"review\": 1 tag"), "{text}");
        let total = lines
            .iter()
            .position(|line| line.starts_with("total: 2 repositories"))
            .expect("total");
        assert!(total > 7, "{text}");
        assert_eq!(text.matches("section_start").count(), 2);
    }

    #[test]
    fn plain_output_has_no_markers() {
        let text = printed(false);
        assert!(!text.contains("section_"), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
        let report = report();
        let lines = report.summary_lines();
        let breakdown = Breakdown::of(&report).lines(&report);
        assert!(!breakdown.is_empty());
        let expected: Vec<&String> = lines[..2]
            .iter()
            .chain(&breakdown)
            .chain(&lines[2..])
            .collect();
        assert_eq!(
            text,
            expected
                .iter()
                .map(|line| format!("{line}\n"))
                .collect::<String>()
        );
    }
}
