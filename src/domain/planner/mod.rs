//! The planner: a pure function (policy, repository, tags, refs, now) → plan. No
//! I/O, no clock, and no knowledge of how a plan is carried out or
//! reported: the executor takes [`RepositoryPlan::delete`], the report is
//! built from the plan and the executor's outcomes.
//!
//! It follows the steps of the specification literally (see
//! `docs/policy.md`): protected tags first, referrer tags set aside, then
//! applicable rules in file order, first claim wins (a git-aware rule claims
//! only when its `when_ref` condition holds), the claiming rule's `keep`,
//! then `keep_n` over the candidates newest first (per ref with `per_ref`),
//! then `older_than`; last, each referrer tag follows its subject.
//!
//! `protect_in_use` comes first of all, with step 1: a tag naming a
//! commit GitLab has in use (deployed, a rollback target, a running
//! pipeline's) is protected ([`ProtectReason::InUse`]). When the project's
//! commits in use are not known in full, nothing is deleted in the
//! repository: every tag the plan would delete is kept
//! ([`KeepReason::InUseUnknown`]) and the plan says why
//! ([`RepositoryPlan::in_use_warning`]).
//!
//! Refs that are not known in full (`None`, or not `complete`) decide no
//! `when_ref` condition, `gone` nor `exists`: a tag that a git-aware rule's
//! `delete` matches and whose name captures a ref is then kept
//! ([`KeepReason::RefsUnknown`]) — not handed on to later rules either, since
//! which rule would claim it depends on the refs — and the plan says why
//! ([`RepositoryPlan::refs_warning`]). `per_ref` alone needs no refs.
//!
//! A rule with `unpulled_for` deletes a tag it would delete only when the
//! pull ledger ([`LedgerView`]) saw no pull of it within that time and has
//! watched the repository that long. A ledger that was not read, or could
//! not be, decides nothing: such tags are kept
//! ([`KeepReason::LedgerUnreadable`]) and the plan says why
//! ([`RepositoryPlan::ledger_warning`]).
//!
//! Output order: `protected`, `delete` and `keep` are each sorted by tag name
//! ascending (byte order), whatever the order of the input, so plans and
//! reports can be compared and diffed as text.

use crate::domain::referrers::referrer_subject;
use rustc_hash::{FxHashMap, FxHashSet};
use std::cmp::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::in_use::{CommitInUse, InUseIndex};
use crate::domain::model::{Age, AgeSource, Refs, Tag};
use crate::domain::names::{Digest, RepositoryPath, TagName};
use crate::domain::policy::{OrphanedReferrers, Policy, Rule};
use crate::domain::project::ProjectFacts;
use crate::domain::pulls::LedgerView;
use crate::domain::refs::{condition_holds, refs_unusable, RefKey};

/// The `rule` of a referrer deleted because every tag of its subject is.
pub const WITH_SUBJECT: &str = "with its subject";
/// The `rule` of an orphaned referrer deleted by `orphaned_referrers: delete`.
pub const ORPHANED_REFERRER: &str = "orphaned referrer";

#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryPlan {
    pub path: RepositoryPath,
    pub protected: Vec<ProtectedTag>,
    pub delete: Vec<PlannedDeletion>,
    pub keep: Vec<KeptTag>,
    /// Which dates the tags were aged by ([`Tag::age`]).
    pub age_source: AgeSource,
    /// Tags with no push time whose build time is a reproducible builder's
    /// constant stamp (before 2000-01-01): aged as undated.
    pub undated_build_stamps: usize,
    /// Why the project's refs could not be used, when an applicable rule
    /// has `when_ref`: then no tag was claimed through `when_ref`.
    pub refs_warning: Option<String>,
    /// Why the project's commits in use could not be used, when the policy
    /// has `protect_in_use`: then nothing is deleted here.
    pub in_use_warning: Option<String>,
    /// Why the pull ledger could not be used, when an applicable rule has
    /// `unpulled_for`: then that rule deleted nothing.
    pub ledger_warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDeletion {
    pub tag: Tag,
    /// The rule that deletes it; for a referrer tag (`referrer`),
    /// [`WITH_SUBJECT`] or [`ORPHANED_REFERRER`]. Shared: one rule deletes
    /// up to every tag of a repository.
    pub rule: Arc<str>,
    /// A referrer tag deleted in step 6, not by a rule.
    pub referrer: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeptTag {
    pub tag: Tag,
    pub reason: KeepReason,
}

/// A tag set aside in step 1, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtectedTag {
    pub tag: Tag,
    pub reason: ProtectReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtectReason {
    /// One of GitLab's tag protection or immutability rules covers it
    /// ([`Tag::gitlab_rule`]: which, as a sentence).
    GitLabTagRule { rule: String },
    /// Marked `protected` in the inventory.
    Marked,
    /// `latest`, with `protect_latest: true` (the default).
    Latest,
    /// Matches this `protect` pattern of the policy (the first that does).
    Pattern { pattern: String },
    /// Names a commit GitLab has in use (`protect_in_use`): these, in the
    /// canonical order (deployments by environment, newest first; then
    /// pipelines).
    InUse { sources: Vec<CommitInUse> },
}

impl std::fmt::Display for ProtectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtectReason::GitLabTagRule { rule } => {
                write!(f, "protected by GitLab's tag rules: {rule}")
            }
            ProtectReason::Marked => f.write_str("protected: marked so in the inventory"),
            ProtectReason::Latest => f.write_str("protected: latest (protect_latest)"),
            ProtectReason::Pattern { pattern } => {
                write!(f, "protected: matches the protect pattern {pattern:?}")
            }
            ProtectReason::InUse { sources } => {
                f.write_str("in use: ")?;
                for (index, source) in sources.iter().enumerate() {
                    if index > 0 {
                        f.write_str("; ")?;
                    }
                    source.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

/// Step 1 for one tag: why it is protected, if it is.
pub fn protect_reason(policy: &Policy, tag: &Tag) -> Option<ProtectReason> {
    if let Some(rule) = &tag.gitlab_rule {
        return Some(ProtectReason::GitLabTagRule { rule: rule.clone() });
    }
    if tag.protected {
        return Some(ProtectReason::Marked);
    }
    if policy.protect_latest && tag.name.as_str() == "latest" {
        return Some(ProtectReason::Latest);
    }
    policy
        .protect
        .iter()
        .find(|pattern| pattern.is_match(&tag.name))
        .map(|pattern| ProtectReason::Pattern {
            pattern: pattern.source().to_string(),
        })
}

/// Why a tag stays, protected or kept: what the report lists per kept tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StayReason {
    Protected(ProtectReason),
    Kept(KeepReason),
}

impl StayReason {
    /// A stable code for filtering reports (`jq 'select(.kind == "keep_n")'`).
    pub fn kind(&self) -> &'static str {
        match self {
            StayReason::Protected(ProtectReason::GitLabTagRule { .. }) => "gitlab_tag_rule",
            StayReason::Protected(ProtectReason::Marked) => "protected",
            StayReason::Protected(ProtectReason::Latest) => "protected_latest",
            StayReason::Protected(ProtectReason::Pattern { .. }) => "protect_pattern",
            StayReason::Protected(ProtectReason::InUse { .. }) => "in_use",
            StayReason::Kept(reason) => reason.kind(),
        }
    }
}

impl std::fmt::Display for StayReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StayReason::Protected(reason) => reason.fmt(f),
            StayReason::Kept(reason) => reason.fmt(f),
        }
    }
}

/// A tag that stays: what a plan outline keeps of the kept and protected
/// tags once the listing is dropped — its name, why, and what a reviewer
/// of the report weighs it by (digest, dates, size; moved, not copied,
/// from the listing).
#[derive(Debug, Clone, PartialEq)]
pub struct StayingTag {
    pub tag: TagName,
    pub reason: StayReason,
    pub digest: Option<Digest>,
    pub created_at: Option<DateTime<Utc>>,
    pub pushed_at: Option<DateTime<Utc>>,
    pub size_bytes: Option<u64>,
}

impl StayingTag {
    fn new(tag: Tag, reason: StayReason) -> Self {
        StayingTag {
            tag: tag.name,
            reason,
            digest: tag.digest,
            created_at: tag.created_at,
            pushed_at: tag.pushed_at,
            size_bytes: tag.size_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// No applicable rule's `delete` pattern matched.
    Unclaimed,
    /// The claiming rule's `keep` pattern matched.
    KeepPattern { rule: String },
    /// Among the claiming rule's `keep_n` newest candidates: `rank` (1 is
    /// the newest) of `candidates` (per ref with `per_ref`).
    KeepN {
        rule: String,
        rank: usize,
        candidates: usize,
        keep_n: usize,
    },
    /// Dated, but not older than the rule's `older_than`: `age` before
    /// `now`, by its push time (`pushed`) or else its build time.
    TooNew {
        rule: String,
        age: chrono::TimeDelta,
        pushed: bool,
        older_than: String,
    },
    /// No known age (no push time, and no build time or a reproducible
    /// builder's stamp), and the rule deletes by age only.
    Undated { rule: String },
    /// The rule has `unpulled_for` and the pull ledger was not read or
    /// could not be (the plan's `ledger_warning` says why): kept.
    LedgerUnreadable { rule: String },
    /// The rule has `unpulled_for`, and the ledger has watched the
    /// repository for less than that: `watched_for`, `None` when it has
    /// seen no event of it yet. A pull before the ledger started would not
    /// be known, so nothing is deleted on its word yet.
    LedgerTooYoung {
        rule: String,
        watched_for: Option<chrono::TimeDelta>,
        unpulled_for: String,
    },
    /// The rule has `unpulled_for`, and the image was pulled `ago` before
    /// `now` (its manifest, or one its index lists).
    PulledRecently {
        rule: String,
        ago: chrono::TimeDelta,
        unpulled_for: String,
    },
    /// The rule has `unpulled_for`, and the listing did not give the tag's
    /// digest or its kind (an index's children): its pulls cannot be told.
    PullsUnverifiable { rule: String },
    /// A git-aware rule's `delete` matched and the name captures a ref, but
    /// the project's refs are not known in full: no `when_ref` condition is
    /// decided on a guess, and no later rule gets the tag either.
    RefsUnknown { rule: String },
    /// A referrer tag whose subject a kept or protected tag still points at.
    WithSubject,
    /// A referrer tag whose subject no tag points at, and
    /// `orphaned_referrers: keep`.
    OrphanedReferrer,
    /// A referrer whose subject's holders cannot be told: some tag of the
    /// repository was listed without its digest or its kind (media type,
    /// or known to be an image: else it could be an index whose children are
    /// unknown). Kept: when in doubt, don't delete.
    SubjectUnverifiable,
    /// The plan would delete it, but the project's commits in use are not
    /// known in full (`protect_in_use`): nothing is deleted in the project.
    InUseUnknown,
    /// `run --plan`: the plan would delete it now, but the reviewed plan
    /// does not list it — only the reviewed deletions are carried out.
    NotInPlan,
    /// `run --plan`: the reviewed plan lists it at `planned`, and it names
    /// `now` (`None`: the listing or the plan gave no digest, so that it is
    /// the same image cannot be checked).
    ChangedSincePlan {
        planned: Option<Digest>,
        now: Option<Digest>,
    },
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepReason::Unclaimed => f.write_str("no rule deletes it"),
            KeepReason::KeepPattern { rule } => write!(f, "matches the keep pattern of {rule:?}"),
            KeepReason::KeepN {
                rule,
                rank,
                candidates,
                keep_n,
            } => write!(
                f,
                "within keep_n {keep_n} of {rule:?}: number {rank} of {candidates} candidates, newest first"
            ),
            KeepReason::TooNew {
                rule,
                age,
                pushed,
                older_than,
            } => write!(
                f,
                "younger than older_than {older_than} of {rule:?}: {} {}",
                if *pushed { "pushed" } else { "built" },
                ago(*age)
            ),
            KeepReason::Undated { rule } => {
                write!(f, "no push or build date, and {rule:?} deletes by age only")
            }
            KeepReason::LedgerUnreadable { .. }
            | KeepReason::LedgerTooYoung { .. }
            | KeepReason::PulledRecently { .. }
            | KeepReason::PullsUnverifiable { .. } => self.fmt_pulls(f),
            KeepReason::RefsUnknown { rule } => write!(
                f,
                "{rule:?} deletes by git ref (when_ref), and the project's refs are not known in full"
            ),
            KeepReason::WithSubject => f.write_str("its subject is kept"),
            KeepReason::SubjectUnverifiable => f.write_str(
                "a signature or attestation kept because the listing does not show which images point at its subject (digests or media types missing)",
            ),
            KeepReason::OrphanedReferrer => f.write_str(
                "orphaned referrer: its subject has no tag; kept (orphaned_referrers: keep)",
            ),
            KeepReason::InUseUnknown => f.write_str(
                "the plan would delete it, but the project's commits in use (protect_in_use) are not known in full: nothing is deleted in the project",
            ),
            KeepReason::NotInPlan => f.write_str(
                "not in the plan: the policy would delete it now, but the reviewed plan (--plan) does not list it",
            ),
            KeepReason::ChangedSincePlan { planned, now } => {
                f.write_str("changed since the plan: ")?;
                match (planned, now) {
                    (Some(planned), Some(now)) => {
                        write!(f, "the plan deletes it at {planned}, it now names {now}")
                    }
                    (None, _) => f.write_str(
                        "the plan recorded no digest for it, so that it still names the same image cannot be checked",
                    ),
                    (Some(planned), None) => write!(
                        f,
                        "the plan deletes it at {planned}, and the listing gives no digest to check it against"
                    ),
                }
            }
        }
    }
}

impl KeepReason {
    /// The sentences of the reasons `unpulled_for` gives (the pull ledger's).
    fn fmt_pulls(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepReason::LedgerUnreadable { rule } => write!(
                f,
                "{rule:?} deletes only unpulled images (unpulled_for), and the pull ledger could not be used here"
            ),
            KeepReason::LedgerTooYoung {
                rule,
                watched_for: Some(watched_for),
                unpulled_for,
            } => write!(
                f,
                "the pull ledger has watched this repository for {}, less than unpulled_for {unpulled_for} of {rule:?}",
                span(*watched_for)
            ),
            KeepReason::LedgerTooYoung {
                rule,
                watched_for: None,
                unpulled_for,
            } => write!(
                f,
                "the pull ledger has seen no event of this repository yet (unpulled_for {unpulled_for} of {rule:?})"
            ),
            KeepReason::PulledRecently {
                rule,
                ago: age,
                unpulled_for,
            } => write!(
                f,
                "pulled {}, within unpulled_for {unpulled_for} of {rule:?}",
                ago(*age)
            ),
            KeepReason::PullsUnverifiable { rule } => write!(
                f,
                "{rule:?} deletes only unpulled images (unpulled_for), and the listing does not give this tag's digest and kind, so its pulls cannot be looked up"
            ),
            // Only the pull reasons are sent here (see `fmt`).
            _ => Ok(()),
        }
    }
}

impl KeepReason {
    /// A stable code for filtering reports.
    pub fn kind(&self) -> &'static str {
        match self {
            KeepReason::Unclaimed => "unclaimed",
            KeepReason::KeepPattern { .. } => "keep_pattern",
            KeepReason::KeepN { .. } => "keep_n",
            KeepReason::TooNew { .. } => "younger_than_older_than",
            KeepReason::Undated { .. } => "undated",
            KeepReason::LedgerUnreadable { .. } => "ledger_unreadable",
            KeepReason::LedgerTooYoung { .. } => "ledger_too_young",
            KeepReason::PulledRecently { .. } => "pulled_recently",
            KeepReason::PullsUnverifiable { .. } => "pulls_unverifiable",
            KeepReason::RefsUnknown { .. } => "refs_unknown",
            KeepReason::WithSubject => "referrer_of_kept_subject",
            KeepReason::OrphanedReferrer => "orphaned_referrer",
            KeepReason::SubjectUnverifiable => "referrer_unverifiable",
            KeepReason::InUseUnknown => "in_use_unknown",
            KeepReason::NotInPlan => "not_in_plan",
            KeepReason::ChangedSincePlan { .. } => "changed_since_plan",
        }
    }
}

/// "3 days", "5 hours", "no time": a span in the largest whole unit.
fn span(length: chrono::TimeDelta) -> String {
    match ago(length).strip_suffix(" ago") {
        Some(span) => span.to_string(),
        None => "no time".to_string(),
    }
}

/// "3 days ago", "5 hours ago", "just now": an age in the largest whole unit.
fn ago(age: chrono::TimeDelta) -> String {
    let unit =
        |count: i64, one: &str| format!("{count} {one}{} ago", if count == 1 { "" } else { "s" });
    if age.num_days() > 0 {
        unit(age.num_days(), "day")
    } else if age.num_hours() > 0 {
        unit(age.num_hours(), "hour")
    } else if age.num_minutes() > 0 {
        unit(age.num_minutes(), "minute")
    } else if age.num_seconds() >= 0 {
        "just now".to_string()
    } else {
        // A date after `now` (clock skew, or `plan --now` in the past).
        "after now".to_string()
    }
}

impl RepositoryPlan {
    pub fn total(&self) -> usize {
        self.protected.len() + self.delete.len() + self.keep.len()
    }

    /// What the summary should shout about: a plan that leaves nothing;
    /// refs that could not be used.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.delete.is_empty() && self.keep.is_empty() && self.protected.is_empty() {
            warnings.push(format!(
                "the plan deletes every tag of {} ({}): none is left",
                self.path,
                self.delete.len()
            ));
        }
        warnings.extend(self.refs_warning.clone());
        warnings.extend(self.in_use_warning.clone());
        warnings.extend(self.ledger_warning.clone());
        warnings
    }

    /// How many of the deletions are referrer tags (step 6), not a rule's.
    pub fn referrer_deletions(&self) -> usize {
        self.delete.iter().filter(|d| d.referrer).count()
    }

    /// What carrying out and reporting the plan needs, once the listed tags
    /// can go: a run holds this for every repository until it deletes, so
    /// what it holds grows with the tags it deletes, not the tags it lists.
    pub fn into_outline(self) -> PlanOutline {
        let (tags, kept) = (self.total(), self.keep.len());
        let warnings = self.warnings();
        let referrer_deletions = self.referrer_deletions();
        let protected = self.protected.len();
        let mut staying: Vec<StayingTag> = self
            .protected
            .into_iter()
            .map(|p| StayingTag::new(p.tag, StayReason::Protected(p.reason)))
            .chain(
                self.keep
                    .into_iter()
                    .map(|k| StayingTag::new(k.tag, StayReason::Kept(k.reason))),
            )
            .collect();
        staying.sort_by(|a, b| a.tag.as_bytes().cmp(b.tag.as_bytes()));
        PlanOutline {
            staying,
            tags,
            kept,
            protected,
            referrer_deletions,
            warnings,
            refs_unusable: self.refs_warning.clone(),
            in_use_unusable: self.in_use_warning.clone(),
            ledger_unusable: self.ledger_warning.clone(),
            age_source: self.age_source,
            undated_build_stamps: self.undated_build_stamps,
            path: self.path,
            delete: self.delete,
        }
    }
}

/// A plan's deletions and counts, without the kept tags.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutline {
    /// Why the `when_ref` rules could not be applied (refs unknown or
    /// incomplete): part of the policy was not carried out.
    pub refs_unusable: Option<String>,
    /// Why the project's commits in use could not be used
    /// (`protect_in_use`): nothing is deleted here, and the run fails.
    pub in_use_unusable: Option<String>,
    /// Why the `unpulled_for` rules could not be applied (the pull ledger
    /// not read, or unreadable): part of the policy was not carried out.
    pub ledger_unusable: Option<String>,
    pub path: RepositoryPath,
    pub tags: usize,
    pub kept: usize,
    pub protected: usize,
    /// Of `delete`, the referrer tags (signatures, attestations, …).
    pub referrer_deletions: usize,
    pub delete: Vec<PlannedDeletion>,
    pub warnings: Vec<String>,
    pub age_source: AgeSource,
    pub undated_build_stamps: usize,
    /// Every protected and kept tag by name with why it stays, sorted by
    /// name: a name and a reason each, so a run holds little per kept tag.
    pub staying: Vec<StayingTag>,
}

/// Where a tag stands while planning: step 6 needs every tag's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Protected or kept: its digest (and an index's children) stay.
    Alive,
    Deleted,
    /// A referrer tag not decided yet.
    Pending,
}

/// What becomes of one tag: the plan without the tag itself, which the
/// plan then copies from a borrowed listing ([`plan_repository`]) or takes
/// from an owned one ([`plan_owned_repository`]).
#[derive(Debug)]
enum Decision {
    Protected(ProtectReason),
    Keep(KeepReason),
    Delete { rule: Arc<str>, referrer: bool },
}

/// Plans one repository. `repository` is its full path (`group/project/api`),
/// which the rules' `repositories` patterns are matched against. `project`:
/// what is known of its project — its git refs, for rules with `when_ref`
/// (not known: like refs that are not `complete`, no tag is claimed through
/// `when_ref`); its commits in use, for `protect_in_use` (not known:
/// nothing is deleted).
pub fn plan_repository(
    policy: &Policy,
    repository: &RepositoryPath,
    tags: &[Tag],
    project: Option<&ProjectFacts>,
    now: DateTime<Utc>,
) -> RepositoryPlan {
    plan_repository_with_ledger(policy, repository, tags, project, &LedgerView::NotRead, now)
}

/// [`plan_repository`] with what the pull ledger says of the repository
/// (the tags carry their `last_pulled_at`), for rules with `unpulled_for`.
pub fn plan_repository_with_ledger(
    policy: &Policy,
    repository: &RepositoryPath,
    tags: &[Tag],
    project: Option<&ProjectFacts>,
    ledger: &LedgerView,
    now: DateTime<Utc>,
) -> RepositoryPlan {
    let decided = decide(policy, repository, tags, project, ledger, now, None);
    decided.into_plan(tags.iter().cloned())
}

/// [`plan_repository`] for a listing that is not needed afterwards: the
/// plan takes the tags over instead of copying them (a listing of 100,000
/// tags is tens of megabytes).
pub fn plan_owned_repository(
    policy: &Policy,
    repository: &RepositoryPath,
    tags: Vec<Tag>,
    project: Option<&ProjectFacts>,
    now: DateTime<Utc>,
) -> RepositoryPlan {
    plan_owned_repository_with_ledger(policy, repository, tags, project, &LedgerView::NotRead, now)
}

/// [`plan_owned_repository`] with what the pull ledger says of the
/// repository, for rules with `unpulled_for`.
pub fn plan_owned_repository_with_ledger(
    policy: &Policy,
    repository: &RepositoryPath,
    tags: Vec<Tag>,
    project: Option<&ProjectFacts>,
    ledger: &LedgerView,
    now: DateTime<Utc>,
) -> RepositoryPlan {
    plan_owned_repository_gated(policy, repository, tags, project, ledger, now, None)
}

/// Holds back deletions the plan would make (`run --plan`: those a
/// reviewed plan does not list as they are now; see
/// `domain::applied_plan`). A held-back tag stays, with the reason, and
/// counts as kept for what follows: a referrer tag of its image stays with
/// it.
pub trait DeletionGate {
    /// Why `tag`, which the plan would delete, stays instead (`None`: it goes).
    fn holds_back(&self, tag: &Tag) -> Option<KeepReason>;
}

/// [`plan_owned_repository_with_ledger`] through a [`DeletionGate`]: every
/// deletion, a rule's or a referrer's, passes the gate or stays.
pub fn plan_owned_repository_gated(
    policy: &Policy,
    repository: &RepositoryPath,
    tags: Vec<Tag>,
    project: Option<&ProjectFacts>,
    ledger: &LedgerView,
    now: DateTime<Utc>,
    gate: Option<&dyn DeletionGate>,
) -> RepositoryPlan {
    let decided = decide(policy, repository, &tags, project, ledger, now, gate);
    decided.into_plan(tags)
}

/// A plan whose tags are still the listing's: a decision per tag, in
/// listing order.
struct Decided {
    path: RepositoryPath,
    decisions: Vec<Decision>,
    age_source: AgeSource,
    undated_build_stamps: usize,
    refs_warning: Option<String>,
    in_use_warning: Option<String>,
    ledger_warning: Option<String>,
}

impl Decided {
    /// The plan, with `tags`: the listing the decisions were made on, in
    /// the same order.
    fn into_plan(self, tags: impl IntoIterator<Item = Tag>) -> RepositoryPlan {
        let (mut protected_count, mut delete_count) = (0, 0);
        for decision in &self.decisions {
            match decision {
                Decision::Protected(_) => protected_count += 1,
                Decision::Delete { .. } => delete_count += 1,
                Decision::Keep(_) => {}
            }
        }
        // Sized exactly: these hold every tag of the repository between them.
        let mut protected = Vec::with_capacity(protected_count);
        let mut delete = Vec::with_capacity(delete_count);
        let mut keep = Vec::with_capacity(self.decisions.len() - protected_count - delete_count);
        for (tag, decision) in tags.into_iter().zip(self.decisions) {
            match decision {
                Decision::Protected(reason) => protected.push(ProtectedTag { tag, reason }),
                Decision::Keep(reason) => keep.push(KeptTag { tag, reason }),
                Decision::Delete { rule, referrer } => delete.push(PlannedDeletion {
                    tag,
                    rule,
                    referrer,
                }),
            }
        }
        protected.sort_by(|a, b| by_name(&a.tag, &b.tag));
        delete.sort_by(|a, b| by_name(&a.tag, &b.tag));
        keep.sort_by(|a, b| by_name(&a.tag, &b.tag));
        RepositoryPlan {
            path: self.path,
            protected,
            delete,
            keep,
            age_source: self.age_source,
            undated_build_stamps: self.undated_build_stamps,
            refs_warning: self.refs_warning,
            in_use_warning: self.in_use_warning,
            ledger_warning: self.ledger_warning,
        }
    }
}

fn decide(
    policy: &Policy,
    repository: &RepositoryPath,
    tags: &[Tag],
    project: Option<&ProjectFacts>,
    ledger: &LedgerView,
    now: DateTime<Utc>,
    gate: Option<&dyn DeletionGate>,
) -> Decided {
    let refs: Option<&Refs> = project.and_then(|project| project.refs.as_ref());
    let in_use = in_use_index(policy, repository, project);
    // Step 3: the applicable rules, in file order.
    let rules: Vec<&Rule> = policy.applicable_rules(repository).collect();
    // Refs known only in part decide no `when_ref` condition.
    let unusable = refs_unusable(refs);
    let refs_known = unusable.is_none();

    let Sorted {
        mut decisions,
        mut fates,
        referrers,
        claimed,
        refs_unknown_kept,
    } = sort_tags(policy, tags, &in_use, &rules, refs, refs_known);

    let ledger_kept = plan_rules(&rules, claimed, ledger, now, &mut fates, &mut decisions);
    // The gate sees the rules' deletions before step 6: a tag it holds back
    // keeps its referrers.
    if let Some(gate) = gate {
        hold_back(gate, tags, &mut fates, &mut decisions);
    }
    plan_referrers(
        policy.orphaned_referrers,
        tags,
        &referrers,
        gate,
        &mut fates,
        &mut decisions,
    );

    let refs_warning = unusable.and_then(|why| {
        rules_warning(
            &rules,
            |rule| rule.when_ref.is_some(),
            &why,
            "no tag claimed through when_ref",
            refs_unknown_kept,
        )
    });
    let ledger_warning = ledger.unusable().and_then(|why| {
        rules_warning(
            &rules,
            |rule| rule.unpulled_for.is_some(),
            &why,
            "nothing deleted through unpulled_for",
            ledger_kept,
        )
    });

    let mut decisions: Vec<Decision> = decisions
        .into_iter()
        .map(|decision| decision.expect("every tag is decided"))
        .collect();
    // Commits in use not known in full: nothing is deleted on a guess.
    let in_use_warning = match in_use {
        Some(Err(why)) => Some(keep_every_deletion(&mut decisions, &why)),
        _ => None,
    };

    Decided {
        path: repository.clone(),
        decisions,
        age_source: AgeSource::of(tags),
        undated_build_stamps: undated_build_stamps(tags),
        refs_warning,
        in_use_warning,
        ledger_warning,
    }
}

/// `protect_in_use`: the protected commits, or why they are not known;
/// `None` when the policy asks nothing of them here.
fn in_use_index<'a>(
    policy: &'a Policy,
    repository: &RepositoryPath,
    project: Option<&'a ProjectFacts>,
) -> Option<Result<InUseIndex<'a>, String>> {
    policy
        .protect_in_use
        .as_ref()
        .filter(|_| policy.needs_in_use(repository))
        .map(|block| {
            let ask = block.ask();
            let listed = project.and_then(|project| project.in_use.as_ref());
            match (ask.unusable(listed), listed) {
                (None, Some(listed)) => Ok(InUseIndex::new(&ask, listed)),
                (why, _) => {
                    Err(why.unwrap_or_else(|| {
                        "the project's commits in use are not known".to_string()
                    }))
                }
            }
        })
}

/// Steps 1, 2 and 4, tag by tag: what is decided before the rules count.
struct Sorted<'t> {
    /// Every tag gets exactly one decision; `None` until then.
    decisions: Vec<Option<Decision>>,
    fates: Vec<Fate>,
    /// Referrer tags and their subjects, for step 6.
    referrers: Vec<(usize, Digest)>,
    /// Per applicable rule, the tags it claimed.
    claimed: Vec<Vec<(usize, &'t Tag)>>,
    refs_unknown_kept: usize,
}

fn sort_tags<'t>(
    policy: &Policy,
    tags: &'t [Tag],
    in_use: &Option<Result<InUseIndex<'_>, String>>,
    rules: &[&Rule],
    refs: Option<&Refs>,
    refs_known: bool,
) -> Sorted<'t> {
    let mut refs_unknown_kept = 0usize;
    // Every tag gets exactly one decision; `None` until then.
    let mut decisions: Vec<Option<Decision>> = Vec::new();
    decisions.resize_with(tags.len(), || None);
    let mut fates = vec![Fate::Pending; tags.len()];
    let mut referrers: Vec<(usize, Digest)> = Vec::new();
    let mut claimed: Vec<Vec<(usize, &Tag)>> = vec![Vec::new(); rules.len()];
    for (index, tag) in tags.iter().enumerate() {
        // Step 1: protected tags are set aside before any rule sees them.
        if let Some(reason) = protect_reason(policy, tag) {
            decisions[index] = Some(Decision::Protected(reason));
            fates[index] = Fate::Alive;
            continue;
        }
        // `protect_in_use`: a tag naming a commit in use, with step 1.
        if let (Some(Ok(index_in_use)), Some(block)) = (&in_use, &policy.protect_in_use) {
            let sources = index_in_use.sources(&block.commit, &tag.name);
            if !sources.is_empty() {
                decisions[index] = Some(Decision::Protected(ProtectReason::InUse {
                    sources: sources.into_iter().cloned().collect(),
                }));
                fates[index] = Fate::Alive;
                continue;
            }
        }
        // Step 2: referrer tags are decided in step 6, by their subject.
        if let Some(subject) = referrer_subject(&tag.name) {
            referrers.push((index, subject));
            continue;
        }
        // Step 4: the first applicable rule whose `delete` matches (and whose
        // `when_ref` condition holds) claims it.
        match claiming_rule(rules, &tag.name, refs, refs_known) {
            Claim::Rule(rule) => claimed[rule].push((index, tag)),
            Claim::RefsUnknown(rule) => {
                fates[index] = Fate::Alive;
                refs_unknown_kept += 1;
                decisions[index] = Some(Decision::Keep(KeepReason::RefsUnknown {
                    rule: rules[rule].name.clone(),
                }));
            }
            Claim::None => {
                fates[index] = Fate::Alive;
                decisions[index] = Some(Decision::Keep(KeepReason::Unclaimed));
            }
        }
    }

    Sorted {
        decisions,
        fates,
        referrers,
        claimed,
        refs_unknown_kept,
    }
}

/// Why rules of a kind decided nothing here, naming them, or `None` when
/// the policy has no such rule for this repository.
fn rules_warning(
    rules: &[&Rule],
    of_kind: impl Fn(&Rule) -> bool,
    why: &dyn std::fmt::Display,
    consequence: &str,
    kept: usize,
) -> Option<String> {
    let named: Vec<String> = rules
        .iter()
        .filter(|rule| of_kind(rule))
        .map(|rule| format!("{:?}", rule.name))
        .collect();
    (!named.is_empty()).then(|| {
        format!(
            "{why}: {consequence} ({}); {kept} tag{} kept for it",
            named.join(", "),
            if kept == 1 { "" } else { "s" }
        )
    })
}

/// Commits in use not known in full: every deletion becomes a keep, and
/// the warning says how many.
fn keep_every_deletion(decisions: &mut [Decision], why: &str) -> String {
    let mut kept = 0usize;
    for decision in decisions.iter_mut() {
        if matches!(decision, Decision::Delete { .. }) {
            *decision = Decision::Keep(KeepReason::InUseUnknown);
            kept += 1;
        }
    }
    format!(
        "{why}: nothing deleted here (protect_in_use); {kept} tag{} the plan would delete kept",
        if kept == 1 { "" } else { "s" }
    )
}

/// Step 5, rule by rule; how many tags stayed because the pull ledger
/// could not be used.
fn plan_rules(
    rules: &[&Rule],
    claimed: Vec<Vec<(usize, &Tag)>>,
    ledger: &LedgerView,
    now: DateTime<Utc>,
    fates: &mut [Fate],
    decisions: &mut [Option<Decision>],
) -> usize {
    let mut ledger_kept = 0usize;
    for (rule, claimed) in rules.iter().zip(claimed) {
        let pulls = Pulls::new(ledger, &mut ledger_kept);
        plan_rule(rule, claimed, now, pulls, fates, decisions);
    }
    ledger_kept
}

/// `run --plan`: the rules' deletions the gate holds back stay, alive.
fn hold_back(
    gate: &dyn DeletionGate,
    tags: &[Tag],
    fates: &mut [Fate],
    decisions: &mut [Option<Decision>],
) {
    for (index, tag) in tags.iter().enumerate() {
        if !matches!(decisions[index], Some(Decision::Delete { .. })) {
            continue;
        }
        if let Some(reason) = gate.holds_back(tag) {
            fates[index] = Fate::Alive;
            decisions[index] = Some(Decision::Keep(reason));
        }
    }
}

/// Tags dated by their build time alone (no push time known).
fn undated_build_stamps(tags: &[Tag]) -> usize {
    tags.iter()
        .filter(|tag| tag.age() == Age::BuildStamp)
        .count()
}

/// Who claims a tag in step 4.
enum Claim {
    /// The rule at this index of the applicable rules.
    Rule(usize),
    /// The rule at this index would decide by the tag's ref, which the
    /// refs cannot tell: kept.
    RefsUnknown(usize),
    None,
}

/// Step 4 for one tag: the first applicable rule whose `delete` matches its
/// name and, when the rule has `when_ref`, whose ref condition holds. A
/// git-aware rule whose `delete` matches but whose groups capture no ref
/// (an optional group) passes the tag on; one that captures a ref while the
/// refs are unknown (`refs_known` false) keeps it.
fn claiming_rule(rules: &[&Rule], name: &str, refs: Option<&Refs>, refs_known: bool) -> Claim {
    for (index, rule) in rules.iter().enumerate() {
        let Some(when) = rule.when_ref else {
            if rule.delete.is_match(name) {
                return Claim::Rule(index);
            }
            continue;
        };
        let Some(key) = RefKey::of(&rule.delete, name) else {
            continue;
        };
        if !refs_known {
            return Claim::RefsUnknown(index);
        }
        if condition_holds(when, Some(&key), refs) {
            return Claim::Rule(index);
        }
    }
    Claim::None
}

/// Step 5 for one rule and the tags it claimed (with their indices
/// in the input, whose fate is recorded in `fates`).
fn plan_rule(
    rule: &Rule,
    claimed: Vec<(usize, &Tag)>,
    now: DateTime<Utc>,
    pulls: Pulls<'_>,
    fates: &mut [Fate],
    decisions: &mut [Option<Decision>],
) {
    let name = || rule.name.clone();
    let deleting: Arc<str> = Arc::from(rule.name.as_str());
    let (kept_by_pattern, mut candidates): (Vec<_>, Vec<_>) =
        claimed.into_iter().partition(|(_, tag)| {
            rule.keep
                .as_ref()
                .is_some_and(|keep| keep.is_match(&tag.name))
        });
    for (index, _) in kept_by_pattern {
        fates[index] = Fate::Alive;
        decisions[index] = Some(Decision::Keep(KeepReason::KeepPattern { rule: name() }));
    }

    candidates.sort_by(|(_, a), (_, b)| newest_first(a, b));
    // `None` when `now - older_than` is before the earliest representable
    // time: then no tag is old enough.
    let cutoff = rule
        .older_than
        .as_ref()
        .map(|older_than| now.checked_sub_signed(older_than.to_timedelta()));
    let groups = keep_n_groups(rule, &candidates);
    // FxHash: one lookup per candidate, keys from the listing (no
    // adversary to resist, as SipHash would).
    let mut sizes: FxHashMap<&Option<RefKey>, usize> = FxHashMap::default();
    if rule.keep_n > 0 {
        for group in &groups {
            *sizes.entry(group).or_default() += 1;
        }
    }
    let mut seen: FxHashMap<&Option<RefKey>, usize> = FxHashMap::default();
    for ((index, tag), group) in candidates.into_iter().zip(&groups) {
        let position = seen.entry(group).or_default();
        let newer = *position;
        *position += 1;
        let reason = if newer < rule.keep_n {
            Some(KeepReason::KeepN {
                rule: name(),
                rank: newer + 1,
                candidates: sizes.get(group).copied().unwrap_or(0),
                keep_n: rule.keep_n,
            })
        } else {
            age_reason(rule, tag, cutoff, now)
        };
        // Last, what the rule would delete is checked against the pull ledger.
        let reason = reason.or_else(|| unpulled_reason(rule, tag, now, &pulls));
        if matches!(reason, Some(KeepReason::LedgerUnreadable { .. })) {
            *pulls.kept_unreadable += 1;
        }
        match reason {
            Some(reason) => {
                fates[index] = Fate::Alive;
                decisions[index] = Some(Decision::Keep(reason));
            }
            None => {
                fates[index] = Fate::Deleted;
                decisions[index] = Some(Decision::Delete {
                    rule: Arc::clone(&deleting),
                    referrer: false,
                });
            }
        }
    }
}

/// `keep_n` counts over the whole rule, or per distinct ref (`per_ref`;
/// tags whose name captures no ref count together): each candidate's group.
/// The group sizes are counted from these first, for the rank the report
/// gives ("newest 2 of 7").
fn keep_n_groups(rule: &Rule, candidates: &[(usize, &Tag)]) -> Vec<Option<RefKey>> {
    candidates
        .iter()
        .map(|(_, tag)| {
            rule.per_ref
                .then(|| RefKey::of(&rule.delete, &tag.name))
                .flatten()
        })
        .collect()
}

/// Step 5's age condition for a tag past `keep_n`: kept when the rule has
/// `older_than` and the tag is undated or not old enough. `cutoff` is
/// `None` without `older_than`, `Some(None)` when no tag can be old enough.
fn age_reason(
    rule: &Rule,
    tag: &Tag,
    cutoff: Option<Option<DateTime<Utc>>>,
    now: DateTime<Utc>,
) -> Option<KeepReason> {
    let age = tag.age();
    match (cutoff, age.date()) {
        (None, _) => None,
        (Some(_), None) => Some(KeepReason::Undated {
            rule: rule.name.clone(),
        }),
        (Some(Some(cutoff)), Some(date)) if date < cutoff => None,
        (Some(_), Some(date)) => Some(KeepReason::TooNew {
            rule: rule.name.clone(),
            age: now - date,
            pushed: matches!(age, crate::domain::model::Age::Pushed(_)),
            older_than: rule
                .older_than
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        }),
    }
}

/// What step 5 needs of the pull ledger, and where it counts the tags kept
/// because the ledger could not be used.
struct Pulls<'a> {
    ledger: &'a LedgerView,
    kept_unreadable: &'a mut usize,
}

impl<'a> Pulls<'a> {
    fn new(ledger: &'a LedgerView, kept_unreadable: &'a mut usize) -> Pulls<'a> {
        Pulls {
            ledger,
            kept_unreadable,
        }
    }
}

/// Why a tag the rule would delete stays because of `unpulled_for`, if it
/// does: the ledger cannot be used; the tag's pulls cannot be told; it was
/// pulled within that time; the ledger has watched the repository for less.
fn unpulled_reason(
    rule: &Rule,
    tag: &Tag,
    now: DateTime<Utc>,
    pulls: &Pulls<'_>,
) -> Option<KeepReason> {
    let unpulled_for = rule.unpulled_for.as_ref()?;
    let name = || rule.name.clone();
    let watched_since = match pulls.ledger {
        LedgerView::NotRead | LedgerView::Unreadable(_) => {
            return Some(KeepReason::LedgerUnreadable { rule: name() })
        }
        LedgerView::Read { watched_since } => *watched_since,
    };
    // An index listed without its kind may list children whose pulls are
    // not looked at: no proof that nobody pulls it.
    if tag.digest.is_none() || !tag.kind_known() {
        return Some(KeepReason::PullsUnverifiable { rule: name() });
    }
    // `None`: `now - unpulled_for` is before any representable time, so
    // nothing has been unpulled (nor watched) that long.
    let cutoff = now.checked_sub_signed(unpulled_for.to_timedelta());
    if let Some(pulled) = tag.last_pulled_at {
        if cutoff.is_none_or(|cutoff| pulled >= cutoff) {
            return Some(KeepReason::PulledRecently {
                rule: name(),
                ago: now - pulled,
                unpulled_for: unpulled_for.to_string(),
            });
        }
    }
    match (watched_since, cutoff) {
        (Some(since), Some(cutoff)) if since <= cutoff => None,
        (since, _) => Some(KeepReason::LedgerTooYoung {
            rule: name(),
            watched_for: since.map(|since| now - since),
            unpulled_for: unpulled_for.to_string(),
        }),
    }
}

/// Step 6: each referrer tag (`referrers`: its index in `tags` and its
/// subject) follows the tags that point at its subject — by digest, or as an
/// image index containing it. Every other tag's fate is known in `fates`.
///
/// A referrer's own digest may be another referrer's subject (a signature of
/// an attestation), so the fates are computed to a fixed point: a referrer is
/// decided once any tag pointing at its subject is alive (kept), or once all
/// of them are deleted (deleted with its subject). Referrers that still wait
/// on each other at the fixed point — only possible in a cycle of referrer
/// tags, which a registry cannot produce but an inventory can — are kept:
/// keeping them all is consistent (each has a kept tag pointing at its
/// subject), and never deletes more than the rules asked for.
fn plan_referrers(
    orphaned: OrphanedReferrers,
    tags: &[Tag],
    referrers: &[(usize, Digest)],
    gate: Option<&dyn DeletionGate>,
    fates: &mut [Fate],
    decisions: &mut [Option<Decision>],
) {
    if referrers.is_empty() {
        return;
    }
    let pointers = digest_pointers(tags);
    let holders = |index: usize, subject: &Digest| -> Vec<usize> {
        pointers
            .get(subject)
            .map(|tags| tags.iter().copied().filter(|&t| t != index).collect())
            .unwrap_or_default()
    };

    // Deleting a referrer needs proof that no kept tag points at its
    // subject: every other tag's digest, and whether it is an index (then
    // its children), must be known. A listing without them proves nothing.
    // Only "index or not" matters, not the exact type: a tag is known when
    // its media type is (an index's listing then carries its children), or
    // when it is known to be an image (`Tag::image`: GitLab read its image
    // config, which no index has). A date alone proves nothing: `/gitlab/v1`
    // dates indexes too, and an inventory does not say where its dates
    // came from.
    let verifiable = |index: usize| {
        tags.iter()
            .enumerate()
            .all(|(other, tag)| other == index || (tag.digest.is_some() && tag.kind_known()))
    };
    let mut decided: Vec<Option<Result<KeepReason, &'static str>>> = vec![None; referrers.len()];
    loop {
        let mut changed = false;
        for (slot, (index, subject)) in referrers.iter().enumerate() {
            if decided[slot].is_some() {
                continue;
            }
            let holders = holders(*index, subject);
            let Some(outcome) = referrer_fate(&holders, fates, verifiable(*index), orphaned) else {
                continue;
            };
            // A referrer the gate holds back stays, and so does whatever
            // refers to it in turn (the next rounds see it alive).
            let outcome = match (outcome, gate) {
                (Err(rule), Some(gate)) => gate.holds_back(&tags[*index]).ok_or(rule),
                (outcome, _) => outcome,
            };
            fates[*index] = if outcome.is_ok() {
                Fate::Alive
            } else {
                Fate::Deleted
            };
            decided[slot] = Some(outcome);
            changed = true;
        }
        if !changed {
            break;
        }
    }

    for ((index, _), outcome) in referrers.iter().zip(decided) {
        decisions[*index] = Some(match outcome.unwrap_or(Ok(KeepReason::WithSubject)) {
            Ok(reason) => Decision::Keep(reason),
            Err(rule) => Decision::Delete {
                rule: Arc::from(rule),
                referrer: true,
            },
        });
    }
}

/// Which tags point at a digest: their own, or a child of their index.
fn digest_pointers(tags: &[Tag]) -> FxHashMap<&Digest, Vec<usize>> {
    let mut pointers: FxHashMap<&Digest, Vec<usize>> = FxHashMap::default();
    for (index, tag) in tags.iter().enumerate() {
        let mut pointed: FxHashSet<&Digest> = tag.children.iter().collect();
        pointed.extend(tag.digest.as_ref());
        for digest in pointed {
            pointers.entry(digest).or_default().push(index);
        }
    }
    pointers
}

/// A referrer's fate from its subject's holders (the other tags pointing
/// at the subject): kept with a living holder, or when the listing cannot
/// prove none is kept; an orphan as the policy says; deleted when every
/// holder is; `None` while some holder's fate is still pending.
fn referrer_fate(
    holders: &[usize],
    fates: &[Fate],
    verifiable: bool,
    orphaned: OrphanedReferrers,
) -> Option<Result<KeepReason, &'static str>> {
    if holders.iter().any(|&h| fates[h] == Fate::Alive) {
        Some(Ok(KeepReason::WithSubject))
    } else if !verifiable {
        Some(Ok(KeepReason::SubjectUnverifiable))
    } else if holders.is_empty() {
        Some(match orphaned {
            OrphanedReferrers::Keep => Ok(KeepReason::OrphanedReferrer),
            OrphanedReferrers::Delete => Err(ORPHANED_REFERRER),
        })
    } else if holders.iter().all(|&h| fates[h] == Fate::Deleted) {
        Some(Err(WITH_SUBJECT))
    } else {
        None
    }
}

/// Candidate order of step 5: undated first (they count as newest), then by
/// age ([`Tag::age`]: push time, else build time) descending, then by name
/// ascending in byte order. The digest
/// only breaks ties between identical names, so that even a malformed input
/// with duplicates plans the same whatever its order.
pub fn newest_first(a: &Tag, b: &Tag) -> Ordering {
    let date = match (a.age().date(), b.age().date()) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    };
    date.then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
        .then_with(|| a.digest.cmp(&b.digest))
        .then_with(|| a.protected.cmp(&b.protected))
}

/// Output order: by name (byte order), then as [`newest_first`].
fn by_name(a: &Tag, b: &Tag) -> Ordering {
    a.name
        .as_bytes()
        .cmp(b.name.as_bytes())
        .then_with(|| newest_first(a, b))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod unpulled_tests;
