//! A run's report read back as a reviewed plan (`run --plan REPORT.json`):
//! its head (dry run or not, when, policy, scope, shard) and each
//! repository's listed deletions with their digests, for
//! [`crate::domain::applied_plan`] to check and apply.

use std::collections::BTreeMap;
use std::path::Path;

use crate::domain::applied_plan::ReviewedPlan;
use crate::domain::config_error::ConfigError;
use crate::domain::names::Digest;
use crate::output::report::Report;

/// A plan file as read: the plan, and the sha256 of its bytes (which
/// review was applied, for the report).
#[derive(Debug)]
pub struct PlanFile {
    pub plan: ReviewedPlan,
    pub sha256: String,
}

/// Reads `path` (a run's JSON report) as a plan. Unreadable, or not a
/// report: a configuration error naming the file (exit 2).
pub fn read_plan(path: &Path, flag: &str) -> Result<PlanFile, ConfigError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|err| {
        ConfigError::file(
            &shown,
            format!("{flag} {shown}: cannot read the plan: {err}"),
        )
    })?;
    let report: Report = serde_json::from_slice(&bytes).map_err(|err| {
        ConfigError::file(
            &shown,
            format!(
                "{flag} {shown}: not a registry-cleanup report ({err}); a plan is the report of `registry-cleanup run --dry-run --report FILE`"
            ),
        )
    })?;
    Ok(PlanFile {
        plan: reviewed(report),
        sha256: Digest::of(&bytes).hex().to_string(),
    })
}

/// The plan a report holds.
pub fn reviewed(report: Report) -> ReviewedPlan {
    let mut deletions: BTreeMap<String, BTreeMap<String, Option<Digest>>> = BTreeMap::new();
    let mut incomplete = Vec::new();
    for repository in report.repositories {
        if let Some(error) = &repository.error {
            incomplete.push((repository.path.clone(), error.clone()));
        } else if let Some(why) = (repository.refs_incomplete.as_ref())
            .or(repository.in_use_incomplete.as_ref())
            .or(repository.ledger_unreadable.as_ref())
        {
            incomplete.push((repository.path.clone(), why.clone()));
        }
        let tags = deletions.entry(repository.path).or_default();
        for deleted in repository.deleted {
            // A digest that is not one checks against nothing: the tag stays.
            let digest = deleted.digest.and_then(|d| Digest::parse(&d).ok());
            tags.insert(deleted.tag, digest);
        }
    }
    ReviewedPlan {
        dry_run: report.dry_run,
        interrupted: report.interrupted,
        made_at: report.now,
        policy_digest: report.policy_digest,
        scope: report.scope,
        shard: report.shard,
        deletions,
        incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::report::{DeletedTag, RepositoryReport};

    fn deleted(tag: &str, digest: Option<&str>) -> DeletedTag {
        DeletedTag {
            digest: digest.map(str::to_string),
            ..DeletedTag::named(tag)
        }
    }

    #[test]
    fn a_report_reads_as_its_deletions_and_head() {
        let good = format!("sha256:{}", "ab".repeat(32));
        let mut report = Report::new("client", true);
        report.policy_digest = Some("p".to_string());
        let mut api = RepositoryReport::new("g/p/api");
        api.deleted = vec![deleted("mr-1", Some(&good)), deleted("mr-2", Some("md5:x"))];
        let mut web = RepositoryReport::new("g/p/web");
        web.error = Some("listing failed".to_string());
        report.push(api);
        report.push(web);
        let plan = reviewed(report);
        assert!(plan.dry_run);
        assert_eq!(plan.policy_digest.as_deref(), Some("p"));
        assert_eq!(plan.len(), 2);
        let api = &plan.deletions["g/p/api"];
        assert_eq!(
            api["mr-1"].as_ref().map(Digest::as_str),
            Some(good.as_str())
        );
        assert_eq!(api["mr-2"], None);
        assert_eq!(
            plan.incomplete,
            [("g/p/web".to_string(), "listing failed".to_string())]
        );
    }

    #[test]
    fn a_file_that_is_no_report_is_a_configuration_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plan.json");
        std::fs::write(&path, "{\"rules\": []}").expect("write");
        let err = read_plan(&path, "--plan").expect_err("refused");
        assert!(
            err.to_string().contains("not a registry-cleanup report"),
            "{err}"
        );
        let err = read_plan(&dir.path().join("missing.json"), "--plan").expect_err("refused");
        assert!(err.to_string().contains("cannot read the plan"), "{err}");
    }
}
