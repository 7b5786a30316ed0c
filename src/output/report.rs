//! The JSON report (`--report FILE`) and the human summary on stdout.
//!
//! `plan`, `run` and `delete` all produce a [`Report`], built from what was
//! planned and what the executor says happened to each planned deletion;
//! the summary lines are derived from it so the two can never disagree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::exit::{Exit, ExitCode};
use crate::domain::in_use::CommitInUse;
use crate::domain::model::AgeSource;
use crate::domain::model::Outcome;
use crate::domain::planner::{PlanOutline, PlannedDeletion, ProtectReason, StayReason, StayingTag};

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("serialising the report: {0}")]
    Serialise(#[from] serde_json::Error),
    #[error("writing the report to {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ExitCode for ReportError {
    /// The deletions are done by then: the run happened, its record failed.
    fn exit_code(&self) -> Exit {
        Exit::Failed
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub dry_run: bool,
    pub engine: String,
    /// The registry-cleanup version that made the report.
    #[serde(default)]
    pub tool_version: String,
    /// The time the plan aged tags against (`plan --now`, or the run's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<DateTime<Utc>>,
    /// The policy file the plan came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<String>,
    /// The sha256 of the policy file's bytes (`run`): `run --plan` applies
    /// a dry run's report only with the same policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// Which project, group or registry the run covered (`run`): `run
    /// --plan` applies a dry run's report only there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<crate::domain::applied_plan::RunScope>,
    /// `run --plan`: the reviewed plan this run applied. Each repository's
    /// `plan_skipped` lists the plan's deletions not carried out, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_plan: Option<AppliedPlan>,
    /// The project's GitLab tag protection and immutability rules, where
    /// the credentials may read them (the plan takes them from the registry
    /// token either way).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gitlab_tag_rules: Vec<ReportedTagRule>,
    /// The shard of a group run (`--shard`): `report merge` checks that
    /// every shard of N is there once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::domain::shard::Shard>,
    pub repositories: Vec<RepositoryReport>,
    pub totals: Totals,
    /// Run-level notes: policy rules that can never claim a tag or match
    /// no repository of the project (see `lint`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Set when `--max-deletions` refused the run: the limit its plan
    /// exceeded. Nothing was deleted (`dry_run` is true: the report lists
    /// the plan), and the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_over_limit: Option<usize>,
    /// The run was stopped by a signal before it had done every
    /// repository: the report lists what was done up to then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// The reviewed plan a run applied (`run --plan`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPlan {
    /// The plan file, as given.
    pub file: String,
    /// The sha256 of the plan file's bytes: which review this was.
    pub sha256: String,
    /// When the dry run that made it planned (its `now`).
    #[serde(default, with = "crate::domain::rfc3339")]
    pub made_at: Option<DateTime<Utc>>,
    /// How many deletions it lists.
    pub deletions: usize,
}

/// A deletion of the applied plan that was not carried out, and why:
/// `kind` `changed_since_plan` (the tag names another digest now, or is
/// gone), or the kind of the reason the live plan keeps it for
/// (`protect_pattern`, `in_use`, `keep_n`…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSkippedTag {
    pub tag: String,
    /// The digest the plan recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub kind: String,
    pub reason: String,
}

impl From<crate::domain::applied_plan::SkippedFromPlan> for PlanSkippedTag {
    fn from(skipped: crate::domain::applied_plan::SkippedFromPlan) -> Self {
        PlanSkippedTag {
            tag: skipped.tag,
            digest: skipped.planned.map(String::from),
            kind: skipped.kind,
            reason: skipped.reason,
        }
    }
}

/// A GitLab tag rule as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedTagRule {
    pub pattern: String,
    /// `immutable`, or `protected` (below a role, no push or delete).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_access_level_for_delete: Option<String>,
}

impl From<&crate::domain::tag_rules::TagRule> for ReportedTagRule {
    fn from(rule: &crate::domain::tag_rules::TagRule) -> Self {
        ReportedTagRule {
            pattern: rule.tag_name_pattern.clone(),
            kind: if rule.is_immutable() {
                "immutable"
            } else {
                "protected"
            }
            .to_string(),
            minimum_access_level_for_delete: rule.minimum_access_level_for_delete.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepositoryReport {
    pub path: String,
    /// How many tags the repository had when it was listed.
    pub tags: usize,
    /// Which dates its tags were aged by: `pushed` (the registry's push
    /// times), `built` (the images' build times), `mixed`, or `none` (no
    /// tag had a usable date). See docs/policy.md, "Ages".
    #[serde(default)]
    pub age_source: AgeSource,
    /// Tags with no push time whose build time is a reproducible builder's
    /// constant stamp (before 2000-01-01: ko's 1970, buildpacks' 1980), so
    /// they were aged as undated: never deleted by `older_than`.
    #[serde(default)]
    pub undated_build_stamps: usize,
    /// Deleted tags (in a dry run: what would be deleted).
    pub deleted: Vec<DeletedTag>,
    pub kept: usize,
    pub protected: usize,
    /// Tags that were planned for deletion but were already gone.
    #[serde(default)]
    pub already_absent: Vec<AbsentTag>,
    pub failed: Vec<FailedTag>,
    pub skipped: Vec<SkippedTag>,
    /// `run --plan`: the plan's deletions here that were not carried out,
    /// and why (they stay, and are in `kept_tags` too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan_skipped: Vec<PlanSkippedTag>,
    /// Of `protected`, the tags GitLab's tag rules protect or make
    /// immutable, with the reason (absent when none: older reports read on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected_by_gitlab: Vec<ProtectedTag>,
    /// Every tag that stays — kept (`kept`) or protected (`protected`) —
    /// with why, sorted by name; `kind` is a stable code, `reason` the
    /// sentence. Empty where no plan was made (a failed listing, `delete`,
    /// the server engine's live run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_tags: Vec<KeptTagEntry>,
    /// Repository-level notes: a server-engine warning, a plan that empties it…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Why the policy's `when_ref` rules could not be applied here (the
    /// project's git refs unknown or incomplete): no tag was claimed through
    /// them. Part of the policy not carried out: the command exits 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs_incomplete: Option<String>,
    /// Why the project's commits in use (`protect_in_use`) could not be
    /// used: nothing was deleted here, and the command exits 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use_incomplete: Option<String>,
    /// Why the policy's `unpulled_for` rules could not be applied here (the
    /// pull ledger not read or unreadable): they deleted nothing. Part of
    /// the policy not carried out: the command exits 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_unreadable: Option<String>,
    /// Why nothing was attempted in this repository (e.g. its listing failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What `remove_empty_repositories` did with the repository itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal: Option<RepositoryRemoval>,
}

/// The repository removed (`removed`; `would remove` in a dry run), left
/// (`skipped`, with the reason) or not removed (`failed`, with the error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryRemoval {
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RepositoryRemoval {
    pub const REMOVED: &'static str = "removed";
    pub const WOULD_REMOVE: &'static str = "would remove";
    pub const SKIPPED: &'static str = "skipped";
    pub const FAILED: &'static str = "failed";

    pub fn new(outcome: &str, reason: Option<String>) -> Self {
        RepositoryRemoval {
            outcome: outcome.to_string(),
            reason,
        }
    }

    /// Removed, or (dry run) would be.
    pub fn counts(&self) -> bool {
        self.outcome == Self::REMOVED || self.outcome == Self::WOULD_REMOVE
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletedTag {
    pub tag: String,
    pub digest: Option<String>,
    /// The manifest's media type where the listing said it: what `restore`
    /// puts the tag back with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image's build time, where known.
    // `default`: as a plain `Option` field, absent reads as `None`.
    #[serde(default, with = "crate::domain::rfc3339")]
    pub created_at: Option<DateTime<Utc>>,
    /// The tag's push time, where the registry reports it (`/gitlab/v1`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::domain::rfc3339"
    )]
    pub pushed_at: Option<DateTime<Utc>>,
    /// Shared with the plan: one rule deletes up to every tag of a repository.
    pub rule: Option<std::sync::Arc<str>>,
    /// A signature, attestation or other referrer tag, deleted with its
    /// subject (or as an orphan): counted apart in the summary.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub referrer: bool,
    /// Untagged referrers (OCI 1.1 signatures, SBOMs…) the registry listed
    /// for this image (`/gitlab/v1`); GitLab's registry deletes them with it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub untagged_referrers: u32,
    /// The image's bytes where the listing reported them (shared layers
    /// count in every image that has them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

fn is_zero(count: &u32) -> bool {
    *count == 0
}

impl DeletedTag {
    /// A tag deleted by name, nothing else known of it.
    pub fn named(tag: impl Into<String>) -> Self {
        DeletedTag {
            tag: tag.into(),
            digest: None,
            media_type: None,
            created_at: None,
            pushed_at: None,
            rule: None,
            referrer: false,
            untagged_referrers: 0,
            size_bytes: None,
        }
    }

    pub fn planned(deletion: PlannedDeletion) -> Self {
        DeletedTag {
            tag: deletion.tag.name.into(),
            digest: deletion.tag.digest.map(String::from),
            media_type: deletion.tag.media_type,
            created_at: deletion.tag.created_at,
            pushed_at: deletion.tag.pushed_at,
            rule: Some(deletion.rule),
            referrer: deletion.referrer,
            untagged_referrers: deletion.tag.referrers,
            size_bytes: deletion.tag.size_bytes,
        }
    }
}

/// A tag that stays, and why (see [`crate::domain::planner::StayReason`]),
/// with what the listing said of it (absent where it said nothing, and in
/// reports made before these were recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptTagEntry {
    pub tag: String,
    pub kind: String,
    pub reason: String,
    /// `kind: in_use`: the commits in use the tag names, each with its
    /// source (an environment's deployment, or a running pipeline).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_use: Vec<CommitInUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::domain::rfc3339"
    )]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::domain::rfc3339"
    )]
    pub pushed_at: Option<DateTime<Utc>>,
    /// As a deleted tag's `size_bytes`: the storage the tag holds on to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

impl KeptTagEntry {
    pub fn planned(staying: StayingTag) -> Self {
        let in_use = match &staying.reason {
            StayReason::Protected(ProtectReason::InUse { sources }) => sources.clone(),
            _ => Vec::new(),
        };
        KeptTagEntry {
            tag: staying.tag.into(),
            kind: staying.reason.kind().to_string(),
            reason: staying.reason.to_string(),
            in_use,
            digest: staying.digest.map(String::from),
            created_at: staying.created_at,
            pushed_at: staying.pushed_at,
            size_bytes: staying.size_bytes,
        }
    }

    /// Protected (set aside before any rule), as opposed to kept by the
    /// rules: the kinds [`crate::domain::planner::ProtectReason`] gives,
    /// and GitLab's tag rules.
    pub fn is_protected(&self) -> bool {
        is_protected_kind(&self.kind)
    }
}

/// Whether a `kept_tags` kind is a protection (counted in `protected`)
/// rather than a rule's keeping (counted in `kept`).
pub fn is_protected_kind(kind: &str) -> bool {
    matches!(
        kind,
        "protected" | "protected_latest" | "protect_pattern" | "gitlab_tag_rule"
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbsentTag {
    pub tag: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedTag {
    pub tag: String,
    pub error: String,
}

/// A tag set aside because of GitLab's tag rules, and which rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtectedTag {
    pub tag: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedTag {
    pub tag: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub repositories: usize,
    pub tags: usize,
    /// Every deleted tag, referrer tags included.
    pub deleted: usize,
    /// Of `deleted`, the signatures and attestations deleted with their
    /// images (or as orphans).
    #[serde(default)]
    pub referrers_deleted: usize,
    pub kept: usize,
    pub protected: usize,
    #[serde(default)]
    pub already_absent: usize,
    pub failed: usize,
    pub skipped: usize,
    /// `run --plan`: the plan's deletions not carried out (`plan_skipped`).
    #[serde(default, skip_serializing_if = "is_zero_count")]
    pub plan_skipped: usize,
    /// Repositories where nothing was attempted because their listing or
    /// registry token failed (`error` set): not in `failed`, which counts
    /// tags, and no less a failure.
    #[serde(default)]
    pub failed_repositories: usize,
    /// The repositories' `undated_build_stamps`, summed.
    #[serde(default)]
    pub undated_build_stamps: usize,
    /// The `size_bytes` of every deleted tag (in a dry run: of what would be
    /// deleted), summed; tags listed without a size add nothing. Shared
    /// layers are counted once per image, so this can exceed what the
    /// registry's garbage collection frees.
    #[serde(default)]
    pub deleted_bytes: u64,
    /// Repositories `remove_empty_repositories` removed (would remove).
    #[serde(default, skip_serializing_if = "is_zero_count")]
    pub repositories_removed: usize,
    /// Repositories where part of the policy was not carried out because
    /// what it depends on was not known: the project's git refs
    /// (`refs_incomplete`), its commits in use (`in_use_incomplete`), the
    /// pull ledger (`ledger_unreadable`).
    /// Nothing was deleted through that part; the run failed (exit 1).
    #[serde(default, skip_serializing_if = "is_zero_count")]
    pub incomplete_repositories: usize,
    /// Repositories `remove_empty_repositories` failed to remove.
    #[serde(default, skip_serializing_if = "is_zero_count")]
    pub removals_failed: usize,
    /// The deleted tags by the rule that deleted them (referrer tags under
    /// `with its subject` / `orphaned referrer`), with their bytes: what
    /// each rule does, at a glance. Tags deleted by reference (`delete`)
    /// name no rule and are not here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deleted_by_rule: BTreeMap<String, TagsAndBytes>,
    /// The tags that stay (`kept_tags`: kept and protected) by `kind`, with
    /// the bytes they hold.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kept_by_kind: BTreeMap<String, TagsAndBytes>,
    /// The `size_bytes` of every tag that stays (`kept_tags`), summed:
    /// the storage the policy leaves in place, counted as `deleted_bytes` is.
    #[serde(default, skip_serializing_if = "is_zero_bytes")]
    pub kept_bytes: u64,
}

/// A number of tags and the listed bytes of those that had a size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagsAndBytes {
    pub tags: usize,
    pub bytes: u64,
}

impl TagsAndBytes {
    fn add(&mut self, tags: usize, bytes: u64) {
        self.tags += tags;
        self.bytes += bytes;
    }
}

fn is_zero_bytes(bytes: &u64) -> bool {
    *bytes == 0
}

fn is_zero_count(count: &usize) -> bool {
    *count == 0
}

impl Totals {
    /// Counts one more repository: the one place totals are computed, for a
    /// report built at once ([`Report::push`]), streamed
    /// (`report_stream`) or merged (`merge`).
    pub fn count(&mut self, repository: &RepositoryReport) {
        self.repositories += 1;
        self.tags += repository.tags;
        self.deleted += repository.deleted.len();
        self.referrers_deleted += repository.referrers_deleted();
        self.kept += repository.kept;
        self.protected += repository.protected;
        self.already_absent += repository.already_absent.len();
        self.failed += repository.failed.len();
        self.skipped += repository.skipped.len();
        self.plan_skipped += repository.plan_skipped.len();
        self.undated_build_stamps += repository.undated_build_stamps;
        self.failed_repositories += usize::from(repository.error.is_some());
        self.deleted_bytes += repository.deleted_bytes();
        if repository
            .removal
            .as_ref()
            .is_some_and(RepositoryRemoval::counts)
        {
            self.repositories_removed += 1;
        }
        self.incomplete_repositories += usize::from(repository.incomplete());
        self.removals_failed += usize::from(
            repository
                .removal
                .as_ref()
                .is_some_and(|removal| removal.outcome == RepositoryRemoval::FAILED),
        );
        self.count_rules_and_kinds(repository);
    }

    /// Whether anything counted here makes the run a failure (exit 1): the
    /// one place that says so, for whole, streamed and merged reports alike.
    pub fn failures(&self) -> bool {
        self.failed > 0
            || self.failed_repositories > 0
            || self.incomplete_repositories > 0
            || self.removals_failed > 0
    }

    fn count_rules_and_kinds(&mut self, repository: &RepositoryReport) {
        // A repository's deletions come sorted by tag name, and one rule
        // often deletes most of them: count runs of the same rule, one map
        // lookup a run rather than a tag.
        let mut run: Option<(&str, TagsAndBytes)> = None;
        for deleted in &repository.deleted {
            let Some(rule) = deleted.rule.as_deref() else {
                continue;
            };
            let size = deleted.size_bytes.unwrap_or(0);
            match &mut run {
                Some((current, counted)) if *current == rule => counted.add(1, size),
                _ => {
                    if let Some((rule, counted)) = run.take() {
                        self.add_rule(rule, counted);
                    }
                    run = Some((
                        rule,
                        TagsAndBytes {
                            tags: 1,
                            bytes: size,
                        },
                    ));
                }
            }
        }
        if let Some((rule, counted)) = run {
            self.add_rule(rule, counted);
        }
        for kept in &repository.kept_tags {
            let size = kept.size_bytes.unwrap_or(0);
            self.kept_bytes += size;
            match self.kept_by_kind.get_mut(kept.kind.as_str()) {
                Some(counted) => counted.add(1, size),
                None => {
                    self.kept_by_kind.insert(
                        kept.kind.clone(),
                        TagsAndBytes {
                            tags: 1,
                            bytes: size,
                        },
                    );
                }
            }
        }
    }

    fn add_rule(&mut self, rule: &str, counted: TagsAndBytes) {
        match self.deleted_by_rule.get_mut(rule) {
            Some(total) => total.add(counted.tags, counted.bytes),
            None => {
                self.deleted_by_rule.insert(rule.to_string(), counted);
            }
        }
    }
}

/// Where a run's report goes as each repository is finished: a [`Report`]
/// held in memory, or a `ReportStream` written as it goes. The head (dry
/// run, clock, policy, shard, warnings…) is complete when the sink is made;
/// the repositories come one by one; nothing is patched in afterwards.
pub trait ReportSink {
    /// The run's guard (`--max-deletions`) refused the plan before anything
    /// was deleted: the report lists the plan as a dry run and records the
    /// limit. Called before the first repository, if at all.
    fn refuse(&mut self, limit: usize);

    /// The run was stopped by a signal: the report lists what was done up
    /// to then.
    fn interrupted(&mut self);

    /// A note about the whole run, for the summary's end and `warnings`.
    fn warn(&mut self, warning: String);

    fn push(&mut self, repository: RepositoryReport) -> Result<(), ReportError>;
}

impl ReportSink for Report {
    fn refuse(&mut self, limit: usize) {
        self.dry_run = true;
        self.refused_over_limit = Some(limit);
    }

    fn interrupted(&mut self) {
        self.interrupted = true;
    }

    fn warn(&mut self, warning: String) {
        self.warnings.push(warning);
    }

    fn push(&mut self, repository: RepositoryReport) -> Result<(), ReportError> {
        Report::push(self, repository);
        Ok(())
    }
}

impl Report {
    pub fn new(engine: &str, dry_run: bool) -> Self {
        Report {
            dry_run,
            engine: engine.to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            ..Report::default()
        }
    }

    /// Records what a policy's plan was made from: the clock it aged tags
    /// against and the policy file.
    pub fn planned_with(&mut self, now: DateTime<Utc>, policy_file: &Path) {
        self.now = Some(now);
        self.policy_file = Some(policy_file.display().to_string());
    }

    /// Adds a repository and keeps the totals in step.
    pub fn push(&mut self, repository: RepositoryReport) {
        self.totals.count(&repository);
        self.repositories.push(repository);
    }

    /// Adds many repositories, then counts the totals once.
    pub fn extend(&mut self, repositories: impl IntoIterator<Item = RepositoryReport>) {
        self.repositories.extend(repositories);
        self.recount();
    }

    fn recount(&mut self) {
        let mut totals = Totals::default();
        for repository in &self.repositories {
            totals.count(repository);
        }
        self.totals = totals;
    }

    pub fn has_failures(&self) -> bool {
        self.totals.failures() || self.refused_over_limit.is_some()
    }

    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// "would delete" in a dry run, else "deleted".
    pub fn verb(&self) -> &'static str {
        if self.dry_run {
            "would delete"
        } else {
            "deleted"
        }
    }

    /// The per-repository lines and the total, as printed on stdout.
    pub fn summary_lines(&self) -> Vec<String> {
        if self.engine == "server" && !self.dry_run {
            return self.bulk_summary_lines();
        }
        let verb = self.verb();
        let mut lines: Vec<String> = self
            .repositories
            .iter()
            .map(|repository| repository.summary_line(verb))
            .collect();
        lines.extend(self.total_lines());
        lines
    }

    /// The summary's last lines, from the totals (and the report's
    /// warnings): the total, the bytes the deleted images held, warnings.
    pub fn total_lines(&self) -> Vec<String> {
        let verb = self.verb();
        let totals = &self.totals;
        let mut total = format!(
            "total: {}, {}, {}, {} kept, {} protected",
            plural(totals.repositories, "repository", "repositories"),
            plural(totals.tags, "tag", "tags"),
            deleted_phrase(totals.deleted, totals.referrers_deleted, verb),
            totals.kept,
            totals.protected
        );
        append_counts(
            &mut total,
            totals.already_absent,
            totals.skipped,
            totals.failed,
        );
        self.append_run_state(&mut total);
        let mut lines = vec![total];
        if let Some(plan) = &self.applied_plan {
            lines.push(format!(
                "applied the plan {} (sha256 {}): {} listed, {} not deleted (changed since the plan, or kept now: see plan_skipped in the report)",
                plan.file,
                plan.sha256,
                plural(plan.deletions, "deletion", "deletions"),
                totals.plan_skipped
            ));
        }
        if totals.deleted_bytes > 0 {
            let what = if self.dry_run {
                "in images that would be deleted"
            } else {
                "in deleted images"
            };
            lines.push(format!(
                "≈ {} {what} (shared layers counted once per image)",
                human_bytes(totals.deleted_bytes)
            ));
        }
        lines.extend(self.warnings.iter().map(|w| format!("warning: {w}")));
        lines
    }

    /// The total line's tail: what failed, stopped or was refused, and the
    /// empty repositories removed.
    fn append_run_state(&self, total: &mut String) {
        let totals = &self.totals;
        if totals.failed_repositories > 0 {
            total.push_str(&format!(
                ", {} failed",
                plural(totals.failed_repositories, "repository", "repositories")
            ));
        }
        if totals.incomplete_repositories > 0 {
            total.push_str(&format!(
                ", {} not cleaned in full (refs or commits in use unknown)",
                plural(totals.incomplete_repositories, "repository", "repositories")
            ));
        }
        if totals.removals_failed > 0 {
            total.push_str(&format!(
                ", {} FAILED",
                plural(
                    totals.removals_failed,
                    "repository removal",
                    "repository removals"
                )
            ));
        }
        if let Some(limit) = self.refused_over_limit {
            total.push_str(&format!(
                ", REFUSED: more than --max-deletions {limit}, nothing deleted"
            ));
        }
        if self.interrupted {
            total
                .push_str(", INTERRUPTED: stopped by a signal before the end; run again to finish");
        }
        if totals.repositories_removed > 0 {
            total.push_str(&format!(
                ", {} {}",
                plural(
                    totals.repositories_removed,
                    "empty repository",
                    "empty repositories"
                ),
                if self.dry_run {
                    "would be removed"
                } else {
                    "removed"
                }
            ));
        }
    }

    /// The server engine's lines: GitLab deletes in the background and
    /// reports nothing back, so there are no deleted, kept or protected
    /// counts to show, only what was asked of GitLab.
    fn bulk_summary_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .repositories
            .iter()
            .map(|repository| {
                let mut line = format!("{}: {} tags", repository.path, repository.tags);
                if let Some(error) = &repository.error {
                    line.push_str(&format!(" (FAILED: {error})"));
                }
                for warning in &repository.warnings {
                    line.push_str(&format!(" ({warning})"));
                }
                line
            })
            .collect();
        let failed = self
            .repositories
            .iter()
            .filter(|r| r.error.is_some())
            .count();
        let mut total = format!(
            "total: {}, {}; GitLab deletes in the background and reports no counts",
            plural(self.totals.repositories, "repository", "repositories"),
            plural(self.totals.tags, "tag", "tags")
        );
        if failed > 0 {
            total.push_str(&format!(", {failed} bulk calls failed"));
        }
        lines.push(total);
        lines
    }
}

impl RepositoryReport {
    pub fn new(path: &str) -> Self {
        RepositoryReport {
            path: path.to_string(),
            ..RepositoryReport::default()
        }
    }

    /// A repository's entry from its plan and, where the deletions were
    /// attempted, their outcomes, aligned with `plan.delete` (`None`: a dry
    /// run, every planned deletion is listed as what would be deleted).
    pub fn from_plan(plan: PlanOutline, outcomes: Option<&[Outcome]>) -> Self {
        let mut report = RepositoryReport::new(&plan.path);
        report.tags = plan.tags;
        report.age_source = plan.age_source;
        report.undated_build_stamps = plan.undated_build_stamps;
        report.kept = plan.kept;
        report.protected = plan.protected;
        report.warnings = plan.warnings;
        report.refs_incomplete = plan.refs_unusable;
        report.in_use_incomplete = plan.in_use_unusable;
        report.ledger_unreadable = plan.ledger_unusable;
        report.protected_by_gitlab = plan
            .staying
            .iter()
            .filter_map(|staying| match &staying.reason {
                StayReason::Protected(ProtectReason::GitLabTagRule { rule }) => {
                    Some(ProtectedTag {
                        tag: staying.tag.to_string(),
                        reason: rule.clone(),
                    })
                }
                _ => None,
            })
            .collect();
        report.kept_tags = plan
            .staying
            .into_iter()
            .map(KeptTagEntry::planned)
            .collect();
        // The plan is consumed: its names and rules move into the report.
        report.deleted.reserve(plan.delete.len());
        match outcomes {
            None => {
                for deletion in plan.delete {
                    report.record(DeletedTag::planned(deletion), None);
                }
            }
            Some(outcomes) => {
                debug_assert_eq!(outcomes.len(), plan.delete.len());
                for (deletion, outcome) in plan.delete.into_iter().zip(outcomes) {
                    report.record(DeletedTag::planned(deletion), Some(outcome));
                }
            }
        }
        report
    }

    /// Files one planned deletion under what happened to it (`None`: not
    /// attempted, as in a dry run: listed as deleted).
    pub fn record(&mut self, entry: DeletedTag, outcome: Option<&Outcome>) {
        match outcome {
            None | Some(Outcome::Deleted) => self.deleted.push(entry),
            Some(Outcome::AlreadyAbsent) => self.already_absent.push(AbsentTag { tag: entry.tag }),
            Some(Outcome::Skipped(refusal)) => self.skipped.push(SkippedTag {
                tag: entry.tag,
                reason: refusal.reason.clone(),
            }),
            Some(Outcome::Failed(failure)) => self.failed.push(FailedTag {
                tag: entry.tag,
                error: failure.error.clone(),
            }),
        }
    }

    /// The listed sizes of the deleted tags, summed.
    pub fn deleted_bytes(&self) -> u64 {
        self.deleted.iter().filter_map(|d| d.size_bytes).sum()
    }

    /// Part of the policy not carried out here, whole: nothing attempted
    /// (`error`), `when_ref` rules not applied (`refs_incomplete`), or
    /// nothing deleted for want of the commits in use (`in_use_incomplete`),
    /// or `unpulled_for` rules not applied (`ledger_unreadable`).
    pub fn has_failures(&self) -> bool {
        self.error.is_some()
            || self.incomplete()
            || self
                .removal
                .as_ref()
                .is_some_and(|removal| removal.outcome == RepositoryRemoval::FAILED)
    }

    /// Part of the policy not carried out here for want of what it depends
    /// on (the git refs, the commits in use).
    pub fn incomplete(&self) -> bool {
        self.refs_incomplete.is_some()
            || self.in_use_incomplete.is_some()
            || self.ledger_unreadable.is_some()
    }

    pub fn referrers_deleted(&self) -> usize {
        self.deleted.iter().filter(|d| d.referrer).count()
    }

    pub fn summary_line(&self, verb: &str) -> String {
        let mut line = format!(
            "{}: {}, {}, {} kept, {} protected",
            self.path,
            plural(self.tags, "tag", "tags"),
            deleted_phrase(self.deleted.len(), self.referrers_deleted(), verb),
            self.kept,
            self.protected
        );
        append_counts(
            &mut line,
            self.already_absent.len(),
            self.skipped.len(),
            self.failed.len(),
        );
        if !self.plan_skipped.is_empty() {
            line.push_str(&format!(
                ", {} of the plan not deleted",
                self.plan_skipped.len()
            ));
        }
        if let Some(error) = &self.error {
            line.push_str(&format!(" (FAILED: {error})"));
        }
        if let Some(removal) = &self.removal {
            let reason = removal.reason.as_deref().unwrap_or("");
            line.push_str(&match removal.outcome.as_str() {
                RepositoryRemoval::REMOVED => " (repository removed)".to_string(),
                RepositoryRemoval::WOULD_REMOVE => " (would remove the repository)".to_string(),
                RepositoryRemoval::FAILED => format!(" (repository removal FAILED: {reason})"),
                _ => format!(" (repository not removed: {reason})"),
            });
        }
        for warning in &self.warnings {
            line.push_str(&format!(" (WARNING: {warning})"));
        }
        line
    }
}

/// "1 repository", "2 repositories": a count and its noun, agreeing.
pub fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// "12 deleted", or "12 deleted, plus 24 signatures/attestations with
/// their images" when referrer tags went along.
fn deleted_phrase(deleted: usize, referrers: usize, verb: &str) -> String {
    if referrers == 0 {
        format!("{deleted} {verb}")
    } else {
        format!(
            "{} {verb}, plus {} with their images",
            deleted - referrers,
            plural(
                referrers,
                "signature/attestation",
                "signatures/attestations"
            )
        )
    }
}

/// Bytes in binary units with one decimal: `3.2 GiB`, `512 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn append_counts(line: &mut String, already_absent: usize, skipped: usize, failed: usize) {
    if already_absent > 0 {
        line.push_str(&format!(", {already_absent} already absent"));
    }
    if skipped > 0 {
        line.push_str(&format!(", {skipped} skipped"));
    }
    if failed > 0 {
        line.push_str(&format!(", {failed} failed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{FailureKind, RefusalKind};

    #[test]
    fn totals_follow_the_repositories() {
        let mut report = Report::new("client", false);
        let mut api = RepositoryReport::new("group/project/api");
        api.tags = 140;
        api.kept = 118;
        api.protected = 2;
        api.deleted = (0..20)
            .map(|i| DeletedTag {
                rule: Some("review images".into()),
                ..DeletedTag::named(format!("mr-{i}"))
            })
            .collect();
        report.push(api);
        assert_eq!(report.totals.deleted, 20);
        assert_eq!(
            report.summary_lines()[0],
            "group/project/api: 140 tags, 20 deleted, 118 kept, 2 protected"
        );
    }

    fn outline(deletions: &[&str]) -> PlanOutline {
        use crate::domain::model::Tag;
        use crate::domain::names::{RepositoryPath, TagName};
        PlanOutline {
            refs_unusable: None,
            in_use_unusable: None,
            ledger_unusable: None,
            path: RepositoryPath::parse("g/p/api").expect("path"),
            tags: deletions.len() + 3,
            kept: 2,
            protected: 1,
            referrer_deletions: 0,
            delete: deletions
                .iter()
                .map(|name| PlannedDeletion {
                    tag: Tag::named(TagName::parse(name).expect("tag")),
                    rule: "r".into(),
                    referrer: false,
                })
                .collect(),
            warnings: vec![],
            age_source: crate::domain::model::AgeSource::None,
            undated_build_stamps: 0,
            staying: vec![],
        }
    }

    #[test]
    fn a_report_is_its_plan_plus_the_outcomes_in_order() {
        let plan = outline(&["a", "b", "c", "d"]);
        let outcomes = [
            Outcome::Deleted,
            Outcome::AlreadyAbsent,
            Outcome::skipped(RefusalKind::Protected, "protected"),
            Outcome::failed(FailureKind::Request, "boom"),
        ];
        let report = RepositoryReport::from_plan(plan.clone(), Some(&outcomes));
        assert_eq!(report.path, "g/p/api");
        assert_eq!((report.tags, report.kept, report.protected), (7, 2, 1));
        let names = |tags: Vec<&str>| tags.join(",");
        assert_eq!(
            names(report.deleted.iter().map(|d| d.tag.as_str()).collect()),
            "a"
        );
        assert_eq!(report.deleted[0].rule.as_deref(), Some("r"));
        assert_eq!(
            names(
                report
                    .already_absent
                    .iter()
                    .map(|d| d.tag.as_str())
                    .collect()
            ),
            "b"
        );
        assert_eq!(report.skipped[0].tag, "c");
        assert_eq!(report.skipped[0].reason, "protected");
        assert_eq!(report.failed[0].tag, "d");
        assert_eq!(report.failed[0].error, "boom");

        // A dry run lists every planned deletion as what would be deleted.
        let dry = RepositoryReport::from_plan(plan, None);
        assert_eq!(dry.deleted.len(), 4);
        assert!(dry.failed.is_empty() && dry.skipped.is_empty() && dry.already_absent.is_empty());
    }

    #[test]
    fn signatures_deleted_with_their_images_are_counted_apart() {
        let mut report = Report::new("client", false);
        let mut repository = RepositoryReport::new("g/p");
        repository.tags = 5;
        repository.kept = 2;
        for (tag, referrer) in [
            ("v1", false),
            ("sha256-aa.sig", true),
            ("sha256-aa.att", true),
        ] {
            repository.deleted.push(DeletedTag {
                tag: tag.into(),
                digest: None,
                media_type: None,
                created_at: None,
                pushed_at: None,
                rule: Some(if referrer { "with its subject" } else { "r" }.into()),
                referrer,
                untagged_referrers: 0,
                size_bytes: None,
            });
        }
        report.push(repository);
        assert_eq!(
            (report.totals.deleted, report.totals.referrers_deleted),
            (3, 2)
        );
        assert_eq!(
            report.summary_lines(),
            [
                "g/p: 5 tags, 1 deleted, plus 2 signatures/attestations with their images, 2 kept, 0 protected",
                "total: 1 repository, 5 tags, 1 deleted, plus 2 signatures/attestations with their images, 2 kept, 0 protected",
            ]
        );
    }

    #[test]
    fn deleted_bytes_sum_the_listed_sizes_and_the_summary_says_so() {
        let mut report = Report::new("client", false);
        let mut repository = RepositoryReport::new("g/p");
        repository.tags = 3;
        for (tag, size) in [("a", Some(3 << 30)), ("b", Some(1 << 29)), ("c", None)] {
            repository.deleted.push(DeletedTag {
                size_bytes: size,
                ..DeletedTag::named(tag)
            });
        }
        report.push(repository);
        assert_eq!(report.totals.deleted_bytes, (3 << 30) + (1 << 29));
        assert_eq!(
            report.summary_lines().last().map(String::as_str),
            Some("≈ 3.5 GiB in deleted images (shared layers counted once per image)")
        );
        report.dry_run = true;
        assert!(report.summary_lines()[2].contains("in images that would be deleted"));
        // Nothing sized: no bytes line at all.
        let mut unsized_report = Report::new("client", false);
        unsized_report.push(RepositoryReport::new("g/q"));
        assert!(!unsized_report
            .summary_lines()
            .iter()
            .any(|l| l.contains('≈')));
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3_435_973_837), "3.2 GiB");
    }

    #[test]
    fn dry_run_says_would_delete() {
        let mut report = Report::new("client", true);
        let mut repository = RepositoryReport::new("g/p");
        repository.tags = 1;
        repository.deleted.push(DeletedTag::named("a"));
        report.push(repository);
        assert_eq!(
            report.summary_lines()[0],
            "g/p: 1 tag, 1 would delete, 0 kept, 0 protected"
        );
    }
}
