//! `remove_empty_repositories`: whether a repository itself goes, decided
//! from what the run did to it. Pure: the report entry, what GitLab said
//! about the repository, and `now` in; a decision out.
//!
//! A repository goes when this run deleted its last tag, or when it was
//! already empty and GitLab created it more than a day ago (a push may be
//! under way into a new one). Never when anything is left in it (a kept,
//! protected, failed or skipped tag), when its listing failed, when GitLab
//! is already deleting it, when its age is unknown, or when its project's
//! commits in use are not known (`protect_in_use`).

use chrono::{DateTime, Duration, Utc};

use crate::domain::model::RepositoryInfo;
use crate::output::report::RepositoryReport;

/// How long an empty repository is left alone: a push may be under way.
pub const EMPTY_GRACE_HOURS: i64 = 24;

/// What to do with the repository itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Delete it (`DELETE /projects/:id/registry/repositories/:rid`).
    Remove,
    /// Leave it, and say why in the report.
    Skip(String),
}

/// `None`: nothing to say (not empty, or the policy does not ask).
pub fn decide(
    info: &RepositoryInfo,
    report: &RepositoryReport,
    now: DateTime<Utc>,
) -> Option<Removal> {
    if report.error.is_some() {
        return None;
    }
    let everything_gone = report.kept == 0
        && report.protected == 0
        && report.failed.is_empty()
        && report.skipped.is_empty()
        && report.deleted.len() + report.already_absent.len() == report.tags;
    if !everything_gone {
        return None;
    }
    let emptied_by_this_run = report.tags > 0;
    if let Some(status) = info
        .status
        .as_deref()
        .filter(|status| matches!(*status, "delete_scheduled" | "delete_ongoing"))
    {
        return Some(Removal::Skip(format!(
            "GitLab is already deleting it (status {status})"
        )));
    }
    if !emptied_by_this_run {
        match info.created_at {
            None => {
                return Some(Removal::Skip(
                    "empty, and GitLab did not say when it was created".into(),
                ))
            }
            Some(created) if now - created <= Duration::hours(EMPTY_GRACE_HOURS) => {
                return Some(Removal::Skip(format!(
                    "empty, but created less than {EMPTY_GRACE_HOURS} hours ago (a push may be under way)"
                )))
            }
            Some(_) => {}
        }
    }
    if report.in_use_incomplete.is_some() {
        // An empty repository holds no image in use, but the promise is
        // plain: nothing is deleted in a project whose commits in use are
        // not known.
        return Some(Removal::Skip(
            "the project's commits in use (protect_in_use) are not known: nothing is deleted in the project".into(),
        ));
    }
    Some(Removal::Remove)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::names::RepositoryPath;
    use crate::output::report::{DeletedTag, FailedTag};

    fn info(status: Option<&str>, age_hours: Option<i64>, now: DateTime<Utc>) -> RepositoryInfo {
        RepositoryInfo {
            id: 1,
            path: RepositoryPath::parse("g/p").expect("path"),
            tags_count: None,
            project_id: Some(7),
            created_at: age_hours.map(|hours| now - Duration::hours(hours)),
            status: status.map(str::to_string),
        }
    }

    fn report(tags: usize, deleted: usize, kept: usize) -> RepositoryReport {
        let mut report = RepositoryReport::new("g/p");
        report.tags = tags;
        report.kept = kept;
        report.deleted = (0..deleted)
            .map(|i| DeletedTag::named(format!("t{i}")))
            .collect();
        report
    }

    #[test]
    fn decides_from_what_is_left_the_status_and_the_age() {
        let now = Utc::now();
        let skip = |text: &str| Some(Removal::Skip(text.to_string()));
        let cases: Vec<(RepositoryInfo, RepositoryReport, Option<Removal>)> = vec![
            // Emptied by this run: removed, whatever its age.
            (
                info(None, Some(1), now),
                report(3, 3, 0),
                Some(Removal::Remove),
            ),
            (
                info(None, None, now),
                report(3, 3, 0),
                Some(Removal::Remove),
            ),
            // Something left: nothing to say.
            (info(None, Some(48), now), report(3, 2, 1), None),
            // Already empty: only when older than a day, and known to be.
            (
                info(None, Some(48), now),
                report(0, 0, 0),
                Some(Removal::Remove),
            ),
            (
                info(None, Some(2), now),
                report(0, 0, 0),
                skip("empty, but created less than 24 hours ago (a push may be under way)"),
            ),
            (
                info(None, None, now),
                report(0, 0, 0),
                skip("empty, and GitLab did not say when it was created"),
            ),
            // GitLab already deleting it.
            (
                info(Some("delete_scheduled"), Some(48), now),
                report(2, 2, 0),
                skip("GitLab is already deleting it (status delete_scheduled)"),
            ),
            (
                info(Some("delete_ongoing"), Some(48), now),
                report(0, 0, 0),
                skip("GitLab is already deleting it (status delete_ongoing)"),
            ),
        ];
        for (info, report, expected) in cases {
            assert_eq!(decide(&info, &report, now), expected, "{info:?} {report:?}");
        }
    }

    #[test]
    fn a_failed_deletion_or_listing_keeps_the_repository() {
        let now = Utc::now();
        let mut failed = report(3, 2, 0);
        failed.failed.push(FailedTag {
            tag: "t9".into(),
            error: "500".into(),
        });
        assert_eq!(decide(&info(None, Some(48), now), &failed, now), None);
        let mut unlisted = report(0, 0, 0);
        unlisted.error = Some("listing failed".into());
        assert_eq!(decide(&info(None, Some(48), now), &unlisted, now), None);
        // An empty repository of a project whose commits in use are unknown:
        // nothing is deleted in that project, the repository neither.
        let mut in_use_unknown = report(0, 0, 0);
        in_use_unknown.in_use_incomplete = Some("GET /projects/:id/pipelines answered 403".into());
        assert_eq!(
            decide(&info(None, Some(48), now), &in_use_unknown, now),
            Some(Removal::Skip(
                "the project's commits in use (protect_in_use) are not known: nothing is deleted in the project".into()
            ))
        );
    }
}
