//! The planner: a pure function (policy, repository, tags, now) → plan.
//!
//! CONTRACT (other modules rely on exactly this public API):
//! `plan_repository(&Policy, repository_path, &[Tag], now) -> RepositoryPlan`,
//! `RepositoryPlan { path, protected, delete, keep }`, `PlannedDeletion { tag, rule }`,
//! `KeptTag { tag, reason }`, `KeepReason`, and `RepositoryPlan::to_report(dry_run)`.

use chrono::{DateTime, Utc};

use crate::inventory::Tag;
use crate::policy::Policy;
use crate::report::RepositoryReport;

#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryPlan {
    pub path: String,
    pub protected: Vec<Tag>,
    pub delete: Vec<PlannedDeletion>,
    pub keep: Vec<KeptTag>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDeletion {
    pub tag: Tag,
    pub rule: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeptTag {
    pub tag: Tag,
    pub reason: KeepReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// No applicable rule's `delete` pattern matched.
    Unclaimed,
    /// The claiming rule's `keep` pattern matched.
    KeepPattern { rule: String },
    /// Among the claiming rule's `keep_n` newest candidates.
    KeepN { rule: String },
    /// Dated, but not older than the rule's `older_than`.
    TooNew { rule: String },
    /// No `created_at`, and the rule deletes by age only.
    Undated { rule: String },
}

impl RepositoryPlan {
    pub fn total(&self) -> usize {
        self.protected.len() + self.delete.len() + self.keep.len()
    }

    /// The report entry for this plan before anything was attempted.
    pub fn to_report(&self) -> RepositoryReport {
        todo!()
    }
}

pub fn plan_repository(
    _policy: &Policy,
    _repository: &str,
    _tags: &[Tag],
    _now: DateTime<Utc>,
) -> RepositoryPlan {
    todo!()
}
