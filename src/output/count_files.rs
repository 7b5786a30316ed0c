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
fn counts(totals: &Totals, planned_only: bool) -> [Count; 9] {
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

/// The dotenv text: `CLEANUP_DELETED=3` lines; `CLEANUP_PLANNED_ONLY` is
/// `true` or `false`, as jobs test it in `rules: if:`.
pub fn dotenv_text(totals: &Totals, planned_only: bool) -> String {
    counts(totals, planned_only)
        .iter()
        .map(|count| match count.name {
            "CLEANUP_PLANNED_ONLY" => format!("{}={planned_only}\n", count.name),
            name => format!("{name}={}\n", count.value),
        })
        .collect()
}

/// OpenMetrics text: one gauge per count, `# EOF` last (GitLab's metrics
/// report shows each name and value, and how it changed from the target
/// branch's).
pub fn metrics_text(totals: &Totals, planned_only: bool) -> String {
    let mut text = String::new();
    for count in counts(totals, planned_only) {
        let name = count.name.to_ascii_lowercase();
        text.push_str(&format!("# TYPE {name} gauge\n"));
        text.push_str(&format!("# HELP {name} {}\n", count.help));
        text.push_str(&format!("{name} {}\n", count.value));
    }
    text.push_str("# EOF\n");
    text
}

pub fn write_dotenv(report: &Report, path: &Path) -> Result<(), ReportError> {
    write(path, dotenv_text(&report.totals, report.dry_run))
}

pub fn write_metrics(report: &Report, path: &Path) -> Result<(), ReportError> {
    write(path, metrics_text(&report.totals, report.dry_run))
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

    fn totals() -> Totals {
        Totals {
            repositories: 2,
            tags: 30,
            deleted: 12,
            kept: 15,
            protected: 2,
            failed: 1,
            skipped: 0,
            already_absent: 3,
            failed_repositories: 1,
            deleted_bytes: 123_456,
            ..Totals::default()
        }
    }

    #[test]
    fn dotenv_has_every_count_of_the_spec() {
        assert_eq!(
            dotenv_text(&totals(), false),
            "CLEANUP_DELETED=12\nCLEANUP_KEPT=15\nCLEANUP_PROTECTED=2\nCLEANUP_FAILED=1\n\
             CLEANUP_FAILED_REPOSITORIES=1\nCLEANUP_SKIPPED=0\nCLEANUP_ALREADY_ABSENT=3\nCLEANUP_DELETED_BYTES=123456\n\
             CLEANUP_PLANNED_ONLY=false\n"
        );
        assert!(dotenv_text(&totals(), true).ends_with("CLEANUP_PLANNED_ONLY=true\n"));
    }

    #[test]
    fn metrics_are_openmetrics_gauges() {
        let text = metrics_text(&totals(), true);
        assert!(text.contains("# TYPE cleanup_deleted gauge\n"), "{text}");
        assert!(text.contains("\ncleanup_deleted 12\n"), "{text}");
        assert!(text.contains("\ncleanup_deleted_bytes 123456\n"), "{text}");
        assert!(text.contains("\ncleanup_planned_only 1\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# TYPE ").count(), 9);
    }
}
