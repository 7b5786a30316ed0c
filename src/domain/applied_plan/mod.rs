//! `run --plan REPORT.json`: a reviewed plan — a dry run's report — applied
//! exactly. The run lists and plans live as always; a deletion is carried
//! out only when the live plan would make it **and** the reviewed plan lists
//! the tag at the digest it names now. Everything else the live plan would
//! delete stays, with the reason ([`KeepReason::NotInPlan`],
//! [`KeepReason::ChangedSincePlan`]); every reviewed deletion that is not
//! carried out is reported with why ([`RepositoryGate::skipped`]).
//!
//! Intersecting with the live plan is what re-checks protection: a tag
//! protected since the review (a `protect` pattern, GitLab's tag rules, a
//! deployment), or that the rules keep now, is not deleted, since the live
//! plan keeps it. The gate works inside the planner
//! ([`crate::domain::planner::DeletionGate`]), so a signature or attestation
//! of an image held back stays with it.
//!
//! Before any request, a plan is refused ([`ReviewedPlan::refusal`]) when it
//! is not a dry run's, was interrupted, is too old, or was made for another
//! policy, scope or shard.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::model::Tag;
use crate::domain::names::Digest;
use crate::domain::planner::{DeletionGate, KeepReason, PlanOutline, StayReason};
use crate::domain::shard::Shard;

/// Which repositories a run covers, as its report records it (`scope`): a
/// plan is applied only in the scope it was made for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunScope {
    /// `project`, `group` or `instance`.
    pub kind: String,
    /// `CI_PROJECT_ID`, where set (project runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
    /// `CI_PROJECT_PATH`, where set (project runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_path: Option<String>,
    /// `--group`, as given (group runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `CI_SERVER_URL`: which GitLab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl RunScope {
    pub const PROJECT: &'static str = "project";
    pub const GROUP: &'static str = "group";
    pub const INSTANCE: &'static str = "instance";

    /// "project 42 (group/project)", "group acme", "the instance".
    pub fn describe(&self) -> String {
        let mut text = match self.kind.as_str() {
            Self::PROJECT => {
                let mut text = "project".to_string();
                if let Some(id) = self.project_id {
                    text.push_str(&format!(" {id}"));
                }
                match (&self.project_path, self.project_id) {
                    (Some(path), Some(_)) => text.push_str(&format!(" ({path})")),
                    (Some(path), None) => text.push_str(&format!(" {path}")),
                    _ => {}
                }
                text
            }
            Self::GROUP => format!("group {}", self.group.as_deref().unwrap_or("?")),
            Self::INSTANCE => "the whole registry (--instance)".to_string(),
            other => other.to_string(),
        };
        if let Some(server) = &self.server {
            text.push_str(&format!(" on {server}"));
        }
        text
    }

    /// Why a plan made for `planned` cannot be applied in this scope, if it
    /// cannot: another kind of scope, GitLab, project or group — or one
    /// named so differently that it cannot be told.
    pub fn mismatch(&self, planned: &RunScope) -> Option<String> {
        let other = || {
            Some(format!(
                "it was made for {}, and this run covers {}",
                planned.describe(),
                self.describe()
            ))
        };
        if self.kind != planned.kind {
            return other();
        }
        if let (Some(a), Some(b)) = (&self.server, &planned.server) {
            if !same_url(a, b) {
                return other();
            }
        }
        match self.kind.as_str() {
            Self::PROJECT => match (self.project_id, planned.project_id) {
                (Some(a), Some(b)) => (a != b).then(other).flatten(),
                _ => match (&self.project_path, &planned.project_path) {
                    (Some(a), Some(b)) => (!a.eq_ignore_ascii_case(b)).then(other).flatten(),
                    _ => Some(format!(
                        "it was made for {}, and this run names its project as {}: set CI_PROJECT_ID or CI_PROJECT_PATH as the run that made the plan did, so that the project can be told",
                        planned.describe(),
                        self.describe()
                    )),
                },
            },
            Self::GROUP => match (&self.group, &planned.group) {
                (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => None,
                _ => Some(format!(
                    "it was made for {}, and this run covers {} (give --group as the run that made the plan did)",
                    planned.describe(),
                    self.describe()
                )),
            },
            _ => None,
        }
    }
}

/// Two URLs the same but for case and a trailing slash.
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// A dry run's report read as a plan: what it was made for, and its deletions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewedPlan {
    pub dry_run: bool,
    pub interrupted: bool,
    /// The clock the dry run planned with (the report's `now`).
    pub made_at: Option<DateTime<Utc>>,
    /// The sha256 of the policy file the dry run read (`policy_digest`).
    pub policy_digest: Option<String>,
    pub scope: Option<RunScope>,
    pub shard: Option<Shard>,
    /// Each repository's listed deletions: tag name → the digest recorded
    /// (`None`: the dry run's listing gave none, or it is not a digest).
    pub deletions: BTreeMap<String, BTreeMap<String, Option<Digest>>>,
    /// Repositories the dry run did not plan in full (its listing failed,
    /// or part of the policy could not be applied), with why: only what it
    /// listed there is deleted, so less than the policy asks.
    pub incomplete: Vec<(String, String)>,
}

/// What a plan must have been made for to be applied by this run.
#[derive(Debug, Clone)]
pub struct ApplyAgainst<'a> {
    pub now: DateTime<Utc>,
    pub max_age: TimeDelta,
    /// `--plan-max-age` as written, for messages.
    pub max_age_text: &'a str,
    /// The sha256 of the policy file as it is now.
    pub policy_digest: &'a str,
    pub policy_file: &'a str,
    pub scope: &'a RunScope,
    pub shard: Option<Shard>,
}

/// What to do about a plan made by a registry-cleanup that did not record
/// what it was made for.
const MAKE_IT_AGAIN: &str =
    "make the plan again with `registry-cleanup run --dry-run --report FILE`";

impl ReviewedPlan {
    /// Why this plan must not be applied by a run `against` these, if it
    /// must not: the whole run is refused, nothing is sent.
    pub fn refusal(&self, against: &ApplyAgainst<'_>) -> Option<String> {
        if !self.dry_run {
            return Some(format!(
                "it is the report of a live run, not of a dry run: a plan is what a dry run would delete; {MAKE_IT_AGAIN}"
            ));
        }
        if self.interrupted {
            return Some(format!(
                "the dry run that made it was interrupted, so it lists only part of the plan; {MAKE_IT_AGAIN}"
            ));
        }
        let (Some(made_at), Some(policy_digest), Some(scope)) =
            (self.made_at, &self.policy_digest, &self.scope)
        else {
            return Some(format!(
                "it does not record when, with which policy and for which project it was made (`now`, `policy_digest`, `scope`): it was made by an older registry-cleanup or by another command; {MAKE_IT_AGAIN}"
            ));
        };
        let age = against.now - made_at;
        if age > against.max_age {
            return Some(format!(
                "it was made at {}, {} ago, more than --plan-max-age {} (CLEANUP_PLAN_MAX_AGE): review a fresh plan, or raise the limit",
                made_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                in_words(age),
                against.max_age_text
            ));
        }
        if policy_digest != against.policy_digest {
            return Some(format!(
                "it was made with another policy (sha256 {policy_digest}) than {} is now (sha256 {}): review a plan made with this policy",
                against.policy_file, against.policy_digest
            ));
        }
        if let Some(why) = against.scope.mismatch(scope) {
            return Some(why);
        }
        if self.shard != against.shard {
            let shard = |shard: Option<Shard>| {
                shard.map_or_else(|| "no shard".to_string(), |s| format!("shard {s}"))
            };
            return Some(format!(
                "it was made for {}, and this run is {}: apply each shard's plan in its own shard",
                shard(self.shard),
                shard(against.shard)
            ));
        }
        None
    }

    /// How many deletions the plan lists.
    pub fn len(&self) -> usize {
        self.deletions.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The gate the planner applies the plan through.
    pub fn into_gate(self) -> PlanGate {
        PlanGate {
            deletions: self.deletions,
        }
    }
}

/// "3 days", "5 hours", "2 minutes".
fn in_words(age: TimeDelta) -> String {
    let unit =
        |count: i64, one: &str| format!("{count} {one}{}", if count == 1 { "" } else { "s" });
    if age.num_days() > 0 {
        unit(age.num_days(), "day")
    } else if age.num_hours() > 0 {
        unit(age.num_hours(), "hour")
    } else {
        unit(age.num_minutes(), "minute")
    }
}

/// A reviewed plan's deletions, as the planner checks each tag against.
#[derive(Debug, Clone, Default)]
pub struct PlanGate {
    deletions: BTreeMap<String, BTreeMap<String, Option<Digest>>>,
}

impl PlanGate {
    /// The gate for one repository (one the plan does not name lets
    /// nothing through).
    pub fn repository(&self, path: &str) -> RepositoryGate<'_> {
        RepositoryGate {
            listed: self.deletions.get(path),
        }
    }

    /// The plan's deletions in repositories this run does not list (gone
    /// since, or outside its shard): none is carried out. Repository path
    /// and how many deletions, in path order.
    pub fn outside<'a>(&self, listed: impl IntoIterator<Item = &'a str>) -> Vec<(String, usize)> {
        let listed: HashSet<&str> = listed.into_iter().collect();
        self.deletions
            .iter()
            .filter(|(path, tags)| !tags.is_empty() && !listed.contains(path.as_str()))
            .map(|(path, tags)| (path.clone(), tags.len()))
            .collect()
    }
}

/// One repository's reviewed deletions.
#[derive(Debug, Clone, Copy)]
pub struct RepositoryGate<'a> {
    listed: Option<&'a BTreeMap<String, Option<Digest>>>,
}

impl DeletionGate for RepositoryGate<'_> {
    fn holds_back(&self, tag: &Tag) -> Option<KeepReason> {
        let Some(planned) = self.listed.and_then(|tags| tags.get(tag.name.as_str())) else {
            return Some(KeepReason::NotInPlan);
        };
        match (planned, &tag.digest) {
            (Some(planned), Some(now)) if planned == now => None,
            _ => Some(KeepReason::ChangedSincePlan {
                planned: planned.clone(),
                now: tag.digest.clone(),
            }),
        }
    }
}

/// A reviewed deletion not carried out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFromPlan {
    pub tag: String,
    /// The digest the plan recorded.
    pub planned: Option<Digest>,
    /// `changed_since_plan`, or the kind of the live reason it stays for
    /// (`protect_pattern`, `keep_n`, …).
    pub kind: String,
    pub reason: String,
}

impl RepositoryGate<'_> {
    /// The reviewed deletions of the repository that the live plan
    /// (`outline`, made through this gate) does not make, each with why: the
    /// tag names another digest now or is gone ("changed since the plan"),
    /// or the live plan keeps it (its reason).
    pub fn skipped(&self, outline: &PlanOutline) -> Vec<SkippedFromPlan> {
        let Some(listed) = self.listed else {
            return Vec::new();
        };
        let deleted: HashSet<&str> = outline.delete.iter().map(|d| d.tag.name.as_str()).collect();
        let mut skipped = Vec::new();
        for (tag, planned) in listed {
            if deleted.contains(tag.as_str()) {
                continue;
            }
            let staying = outline
                .staying
                .binary_search_by(|staying| staying.tag.as_bytes().cmp(tag.as_bytes()))
                .ok()
                .map(|at| &outline.staying[at]);
            let (kind, reason) = match staying {
                None => (
                    "changed_since_plan".to_string(),
                    "changed since the plan: the tag is gone".to_string(),
                ),
                Some(staying) => match (&staying.reason, planned, &staying.digest) {
                    (StayReason::Kept(KeepReason::ChangedSincePlan { .. }), _, _) => {
                        (staying.reason.kind().to_string(), staying.reason.to_string())
                    }
                    (reason, Some(planned), Some(now)) if planned != now => (
                        "changed_since_plan".to_string(),
                        format!(
                            "changed since the plan: the plan deletes it at {}, it now names {} (and stays anyway: {reason})",
                            planned.as_str(),
                            now.as_str()
                        ),
                    ),
                    (reason, _, _) => (reason.kind().to_string(), reason.to_string()),
                },
            };
            skipped.push(SkippedFromPlan {
                tag: tag.clone(),
                planned: planned.clone(),
                kind,
                reason,
            });
        }
        skipped
    }
}

#[cfg(test)]
mod tests;
