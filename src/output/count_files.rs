//! The count files a run can leave for later CI jobs: a GitLab `dotenv`
//! report (`--dotenv`, `artifacts:reports:dotenv`) and OpenMetrics text
//! (`--metrics`, `artifacts:reports:metrics`). Both are plain functions of
//! the report's totals, so every command that ends through
//! [`crate::commands::finish`] (`run`, `delete`, `report merge`) writes the
//! same counts its report has.

use std::path::Path;

use crate::output::report::{Report, ReportError, Totals};

/// One count, under its dotenv name (`CLEANUP_DELETED`) and, lowercased,
/// its metric name (`cleanup_deleted`).
struct Count {
    name: &'static str,
    help: &'static str,
    value: u64,
}

/// The counts of the product spec, in its order. `planned_only` is true
/// when nothing was deleted and `deleted` counts what would have been (a
/// dry run, or a run refused by `--max-deletions`: both report `dry_run`).
fn counts(totals: &Totals, planned_only: bool, refused: bool) -> [Count; 12] {
    let count = |value: usize| value as u64;
    [
        Count {
            name: "CLEANUP_DELETED",
            help: "Tags deleted (with CLEANUP_PLANNED_ONLY: tags the plan would delete).",
            value: count(totals.deleted),
        },
        Count {
            name: "CLEANUP_KEPT",
            help: "Tags the policy keeps.",
            value: count(totals.kept),
        },
        Count {
            name: "CLEANUP_PROTECTED",
            help: "Tags never deleted: latest, protect patterns, GitLab's tag rules.",
            value: count(totals.protected),
        },
        Count {
            name: "CLEANUP_FAILED",
            help: "Planned deletions that failed.",
            value: count(totals.failed),
        },
        Count {
            name: "CLEANUP_FAILED_REPOSITORIES",
            help:
                "Repositories where nothing was attempted: their listing or registry token failed.",
            value: count(totals.failed_repositories),
        },
        Count {
            name: "CLEANUP_INCOMPLETE_REPOSITORIES",
            help: "Repositories where part of the policy was not carried out: git refs or commits in use unknown.",
            value: count(totals.incomplete_repositories),
        },
        Count {
            name: "CLEANUP_REMOVALS_FAILED",
            help: "Repositories remove_empty_repositories failed to remove.",
            value: count(totals.removals_failed),
        },
        Count {
            name: "CLEANUP_REFUSED",
            help: "1 when --max-deletions refused the run (nothing was deleted).",
            value: u64::from(refused),
        },
        Count {
            name: "CLEANUP_SKIPPED",
            help: "Planned deletions skipped (e.g. refused by a GitLab tag rule).",
            value: count(totals.skipped),
        },
        Count {
            name: "CLEANUP_ALREADY_ABSENT",
            help: "Planned deletions whose tag was already gone.",
            value: count(totals.already_absent),
        },
        Count {
            name: "CLEANUP_DELETED_BYTES",
            help:
                "Listed sizes of the deleted images, summed (shared layers counted once per image).",
            value: totals.deleted_bytes,
        },
        Count {
            name: "CLEANUP_PLANNED_ONLY",
            help: "1 when nothing was deleted (a dry run or a refused run).",
            value: u64::from(planned_only),
        },
    ]
}

/// The counts of a report: its totals, whether it only planned (a dry run,
/// or a refused run: both report `dry_run`), whether the guard refused it.
fn report_counts(report: &Report) -> [Count; 12] {
    counts(
        &report.totals,
        report.dry_run,
        report.refused_over_limit.is_some(),
    )
}

/// The dotenv text: `CLEANUP_DELETED=3` lines; `CLEANUP_PLANNED_ONLY` and
/// `CLEANUP_REFUSED` are `true` or `false`, as jobs test them in `rules: if:`.
pub fn dotenv_text(report: &Report) -> String {
    report_counts(report)
        .iter()
        .map(|count| match count.name {
            "CLEANUP_PLANNED_ONLY" | "CLEANUP_REFUSED" => {
                format!("{}={}\n", count.name, count.value == 1)
            }
            name => format!("{name}={}\n", count.value),
        })
        .collect()
}

/// OpenMetrics text: one gauge per count, `# EOF` last (GitLab's metrics
/// report shows each name and value, and how it changed from the target
/// branch's).
pub fn metrics_text(report: &Report) -> String {
    let mut text = String::new();
    for count in report_counts(report) {
        let name = count.name.to_ascii_lowercase();
        text.push_str(&format!("# TYPE {name} gauge\n"));
        text.push_str(&format!("# HELP {name} {}\n", count.help));
        text.push_str(&format!("{name} {}\n", count.value));
    }
    text.push_str("# EOF\n");
    text
}

pub fn write_dotenv(report: &Report, path: &Path) -> Result<(), ReportError> {
    write(path, dotenv_text(report))
}

pub fn write_metrics(report: &Report, path: &Path) -> Result<(), ReportError> {
    write(path, metrics_text(report))
}

fn write(path: &Path, text: String) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(dry_run: bool) -> Report {
        Report {
            dry_run,
            totals: Totals {
                repositories: 2,
                tags: 30,
                deleted: 12,
                kept: 15,
                protected: 2,
                failed: 1,
                skipped: 0,
                already_absent: 3,
                failed_repositories: 1,
                incomplete_repositories: 1,
                deleted_bytes: 123_456,
                ..Totals::default()
            },
            ..Report::default()
        }
    }

    #[test]
    fn dotenv_has_every_count_of_the_spec() {
        assert_eq!(
            dotenv_text(&report(false)),
            "CLEANUP_DELETED=12\nCLEANUP_KEPT=15\nCLEANUP_PROTECTED=2\nCLEANUP_FAILED=1\n\
             CLEANUP_FAILED_REPOSITORIES=1\nCLEANUP_INCOMPLETE_REPOSITORIES=1\nCLEANUP_REMOVALS_FAILED=0\n\
             CLEANUP_REFUSED=false\nCLEANUP_SKIPPED=0\nCLEANUP_ALREADY_ABSENT=3\nCLEANUP_DELETED_BYTES=123456\n\
             CLEANUP_PLANNED_ONLY=false\n"
        );
        assert!(dotenv_text(&report(true)).ends_with("CLEANUP_PLANNED_ONLY=true\n"));
        let refused = Report {
            refused_over_limit: Some(5),
            ..report(true)
        };
        assert!(dotenv_text(&refused).contains("CLEANUP_REFUSED=true\n"));
    }

    #[test]
    fn metrics_are_openmetrics_gauges() {
        let text = metrics_text(&report(true));
        assert!(text.contains("# TYPE cleanup_deleted gauge\n"), "{text}");
        assert!(text.contains("\ncleanup_deleted 12\n"), "{text}");
        assert!(text.contains("\ncleanup_deleted_bytes 123456\n"), "{text}");
        assert!(text.contains("\ncleanup_planned_only 1\n"), "{text}");
        assert!(
            text.contains("\ncleanup_incomplete_repositories 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# TYPE ").count(), 12);
    }
}
