//! Commits in use (`protect_in_use`): what GitLab says is deployed or still
//! running, and which tags name those commits. Pure: the listing lives in
//! `gitlab::in_use` and hands over an [`InUse`]; the planner asks an
//! [`InUseIndex`] which commits a tag's name points at.
//!
//! A project's [`InUse`] records what was listed ([`InUseListed`]) as well
//! as what was found, so that one listing can serve any policy it covers:
//! `inventory` lists every environment's last 100 successful deployments and
//! every running pipeline, and `plan` then takes from it what the policy
//! asks (its `environments`, its `last_deployments` newest per
//! environment). A listing that covers less than the policy asks is as good
//! as none: nothing is deleted on a guess.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::pattern::Pattern;
use crate::domain::refs::{ref_slug, REF_GROUP};

/// The capture group of `protect_in_use.commit` naming a commit SHA (or its
/// first characters).
pub const SHA_GROUP: &str = "sha";

/// The shortest `sha` capture that counts: GitLab's own short SHA is 8
/// characters (`CI_COMMIT_SHORT_SHA`), git's default abbreviation 7.
pub const MIN_SHA_PREFIX: usize = 7;

/// Most deployments per environment a policy may protect: one page of
/// GitLab's deployments list (`per_page` is at most 100).
pub const MAX_LAST_DEPLOYMENTS: usize = 100;

/// The environment pattern of a listing that took every environment.
pub const EVERY_ENVIRONMENT: &str = ".*";

/// Environment states whose deployments are in use: `available`, and
/// `stopping` (its stop job is running; what it deployed still runs until
/// the stop finishes). `stopped` environments run nothing.
pub const LIVE_ENVIRONMENT_STATES: [&str; 2] = ["available", "stopping"];

/// Pipeline statuses that count as running: every status of a pipeline
/// GitLab has not finished and that does not wait for a person (`manual`),
/// in the order a pipeline moves through them, so that listing them in this
/// order sees a pipeline that moves on between two listings in the later
/// one. `waiting_for_callback` and `canceling` exist on GitLab 17.x and
/// later (older GitLab refuses them as unknown: none can be in them);
/// `canceling` jobs still run until they stop; `scheduled` is a delayed job
/// that starts on its own.
pub const RUNNING_PIPELINE_STATUSES: [&str; 8] = [
    "scheduled",
    "created",
    "waiting_for_resource",
    "preparing",
    "waiting_for_callback",
    "pending",
    "running",
    "canceling",
];

/// Where a commit in use comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InUseSource {
    /// One of an environment's successful deployments.
    Deployment {
        environment: String,
        deployment_id: u64,
        /// When the deploy job finished (the deployment's `deployable.finished_at`),
        /// or the deployment's `updated_at` for one made through the API.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::domain::rfc3339"
        )]
        finished_at: Option<DateTime<Utc>>,
    },
    /// A pipeline that is not finished (see [`RUNNING_PIPELINE_STATUSES`]).
    Pipeline { pipeline_id: u64, status: String },
}

impl fmt::Display for InUseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InUseSource::Deployment {
                environment,
                deployment_id,
                finished_at,
            } => {
                write!(f, "deployed to {environment} (deployment {deployment_id}")?;
                if let Some(at) = finished_at {
                    write!(f, ", finished {}", at.format("%Y-%m-%dT%H:%M:%SZ"))?;
                }
                f.write_str(")")
            }
            InUseSource::Pipeline {
                pipeline_id,
                status,
            } => write!(f, "pipeline {pipeline_id} {status}"),
        }
    }
}

/// A commit GitLab has in use, with where from and the ref it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitInUse {
    /// The full commit SHA, lowercase hex.
    pub sha: String,
    /// The branch or tag name the deployment or pipeline ran for.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    pub source: InUseSource,
}

impl fmt::Display for CommitInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, commit {}",
            self.source,
            &self.sha[..self.sha.len().min(8)]
        )?;
        if let Some(git_ref) = &self.git_ref {
            write!(f, " on {git_ref}")?;
        }
        Ok(())
    }
}

impl CommitInUse {
    /// The canonical order: deployments (by environment, newest deployment
    /// first), then pipelines (newest first), so that a plan names the same
    /// sources in the same order whoever listed them.
    fn order_key(&self) -> (u8, &str, std::cmp::Reverse<u64>, &str) {
        match &self.source {
            InUseSource::Deployment {
                environment,
                deployment_id,
                ..
            } => (
                0,
                environment.as_str(),
                std::cmp::Reverse(*deployment_id),
                &self.sha,
            ),
            InUseSource::Pipeline { pipeline_id, .. } => {
                (1, "", std::cmp::Reverse(*pipeline_id), &self.sha)
            }
        }
    }
}

/// What a listing of commits in use covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InUseListed {
    /// The pattern environments were chosen by ([`EVERY_ENVIRONMENT`]: all
    /// of them). Only live environments ([`LIVE_ENVIRONMENT_STATES`]) count.
    pub environments: String,
    /// How many successful deployments were listed per environment, newest
    /// (highest id) first; 0: deployments were not listed.
    pub last_deployments: usize,
    /// Whether the running pipelines were listed.
    pub running_pipelines: bool,
}

impl InUseListed {
    /// What `inventory` lists, whatever the policy: every live
    /// environment's last [`MAX_LAST_DEPLOYMENTS`] successful deployments,
    /// and the running pipelines.
    pub fn everything() -> Self {
        InUseListed {
            environments: EVERY_ENVIRONMENT.to_string(),
            last_deployments: MAX_LAST_DEPLOYMENTS,
            running_pipelines: true,
        }
    }
}

/// A project's commits in use, as listed; also the inventory's `in_use`
/// entry for the project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InUse {
    /// Every listing answered in full. When not, nothing is deleted in the
    /// project (fail safe), and `incomplete_because` says why.
    pub complete: bool,
    pub listed: InUseListed,
    /// In the canonical order ([`InUse::sort`]).
    #[serde(default)]
    pub commits: Vec<CommitInUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_because: Option<String>,
}

impl InUse {
    /// A listing that failed or was refused: nothing is known.
    pub fn failed(listed: InUseListed, why: String) -> Self {
        InUse {
            complete: false,
            listed,
            commits: Vec::new(),
            incomplete_because: Some(why),
        }
    }

    /// Puts the commits in the canonical order.
    pub fn sort(&mut self) {
        self.commits
            .sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    }
}

/// What a policy's `protect_in_use` asks of a listing (the policy's block,
/// without its `commit` pattern).
#[derive(Debug, Clone, Copy)]
pub struct InUseAsk<'a> {
    pub environments: &'a Pattern,
    pub last_deployments: usize,
    pub running_pipelines: bool,
}

impl InUseAsk<'_> {
    /// What listing for this ask covers.
    pub fn listed(&self) -> InUseListed {
        InUseListed {
            environments: self.environments.source().to_string(),
            last_deployments: self.last_deployments,
            running_pipelines: self.running_pipelines,
        }
    }

    /// Why `in_use` cannot tell which commits this ask protects: not
    /// known, incomplete, or listed with less than it asks. `None`: usable.
    pub fn unusable(&self, in_use: Option<&InUse>) -> Option<String> {
        let Some(in_use) = in_use else {
            return Some("the project's commits in use are not known".to_string());
        };
        if !in_use.complete {
            return Some(format!(
                "the project's commits in use are not known in full ({})",
                in_use.incomplete_because.as_deref().unwrap_or(
                    "a listing of environments, deployments or pipelines did not finish"
                )
            ));
        }
        let listed = &in_use.listed;
        if self.last_deployments > listed.last_deployments {
            return Some(format!(
                "the listing of commits in use has {} deployments per environment, and protect_in_use asks for the last {}",
                listed.last_deployments, self.last_deployments
            ));
        }
        if self.last_deployments > 0
            && listed.environments != EVERY_ENVIRONMENT
            && listed.environments != self.environments.source()
        {
            return Some(format!(
                "the listing of commits in use covers the environments matching {:?}, and protect_in_use asks for those matching {:?}",
                listed.environments,
                self.environments.source()
            ));
        }
        if self.running_pipelines && !listed.running_pipelines {
            return Some(
                "the listing of commits in use has no running pipelines, and protect_in_use asks for them"
                    .to_string(),
            );
        }
        None
    }
}

/// The commits an ask protects, indexed for matching tag names: by SHA
/// (sorted, for prefix look-ups) and by the slug of their ref.
#[derive(Debug)]
pub struct InUseIndex<'a> {
    /// `(sha, commit)` sorted by SHA.
    by_sha: Vec<(&'a str, &'a CommitInUse)>,
    /// `(ref slug, commit)` sorted by slug.
    by_slug: Vec<(String, &'a CommitInUse)>,
    /// The protected commits in the canonical order, to order sources by.
    order: Vec<&'a CommitInUse>,
}

impl<'a> InUseIndex<'a> {
    /// The commits of `in_use` that `ask` protects: deployments to the
    /// environments its pattern matches, the `last_deployments` newest of
    /// each (by deployment id), and running pipelines when it asks for them.
    pub fn new(ask: &InUseAsk<'_>, in_use: &'a InUse) -> Self {
        let mut order: Vec<&'a CommitInUse> = Vec::new();
        let mut deployments: Vec<&'a CommitInUse> = Vec::new();
        for commit in &in_use.commits {
            match &commit.source {
                InUseSource::Deployment { environment, .. } => {
                    if ask.last_deployments > 0 && ask.environments.is_match(environment) {
                        deployments.push(commit);
                    }
                }
                InUseSource::Pipeline { status, .. } => {
                    if ask.running_pipelines && RUNNING_PIPELINE_STATUSES.contains(&status.as_str())
                    {
                        order.push(commit);
                    }
                }
            }
        }
        deployments.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        // Newest first within each environment: keep the first N of each.
        let mut previous: Option<&str> = None;
        let mut taken = 0usize;
        let mut kept: Vec<&'a CommitInUse> = Vec::new();
        for commit in deployments {
            let InUseSource::Deployment { environment, .. } = &commit.source else {
                continue;
            };
            if previous != Some(environment.as_str()) {
                previous = Some(environment.as_str());
                taken = 0;
            }
            if taken < ask.last_deployments {
                kept.push(commit);
                taken += 1;
            }
        }
        kept.append(&mut order);
        let order = kept;
        let mut by_sha: Vec<(&'a str, &'a CommitInUse)> =
            order.iter().map(|c| (c.sha.as_str(), *c)).collect();
        by_sha.sort_by(|a, b| a.0.cmp(b.0));
        let mut by_slug: Vec<(String, &'a CommitInUse)> = order
            .iter()
            .filter_map(|c| c.git_ref.as_deref().map(|r| (ref_slug(r), *c)))
            .filter(|(slug, _)| !slug.is_empty())
            .collect();
        by_slug.sort_by(|a, b| a.0.cmp(&b.0));
        InUseIndex {
            by_sha,
            by_slug,
            order,
        }
    }

    /// How many commits are protected.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The protected commits `name` points at through `commit` (the policy's
    /// pattern): its `sha` capture, 7 or more hex characters, is a prefix
    /// of their SHA, or its `ref` capture has their ref's slug. In the
    /// canonical order; empty when none.
    pub fn sources(&self, commit: &Pattern, name: &str) -> Vec<&'a CommitInUse> {
        if self.order.is_empty() {
            return Vec::new();
        }
        let Some(captures) = commit.captures(name) else {
            return Vec::new();
        };
        let mut found: Vec<&'a CommitInUse> = Vec::new();
        if let Some(sha) = captures.name(SHA_GROUP) {
            let prefix = sha.as_str().to_ascii_lowercase();
            if prefix.len() >= MIN_SHA_PREFIX && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
                let start = self.by_sha.partition_point(|(s, _)| *s < prefix.as_str());
                found.extend(
                    self.by_sha[start..]
                        .iter()
                        .take_while(|(s, _)| s.starts_with(prefix.as_str()))
                        .map(|(_, c)| *c),
                );
            }
        }
        if let Some(git_ref) = captures.name(REF_GROUP) {
            let slug = ref_slug(git_ref.as_str());
            if !slug.is_empty() {
                let start = self.by_slug.partition_point(|(s, _)| *s < slug);
                found.extend(
                    self.by_slug[start..]
                        .iter()
                        .take_while(|(s, _)| *s == slug)
                        .map(|(_, c)| *c),
                );
            }
        }
        if found.len() > 1 {
            let position = |c: &&CommitInUse| {
                self.order
                    .iter()
                    .position(|o| std::ptr::eq(*o, *c))
                    .unwrap_or(usize::MAX)
            };
            found.sort_by_key(position);
            found.dedup_by(|a, b| std::ptr::eq(*a, *b));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn sha(seed: u8) -> String {
        format!("{seed:02x}").repeat(20)
    }

    fn deployment(environment: &str, id: u64, commit: &str, git_ref: &str) -> CommitInUse {
        CommitInUse {
            sha: commit.to_string(),
            git_ref: Some(git_ref.to_string()),
            source: InUseSource::Deployment {
                environment: environment.to_string(),
                deployment_id: id,
                finished_at: Some(at("2026-12-01T10:00:00Z")),
            },
        }
    }

    fn pipeline(id: u64, commit: &str, status: &str) -> CommitInUse {
        CommitInUse {
            sha: commit.to_string(),
            git_ref: Some("feature/x".to_string()),
            source: InUseSource::Pipeline {
                pipeline_id: id,
                status: status.to_string(),
            },
        }
    }

    fn in_use(commits: Vec<CommitInUse>) -> InUse {
        let mut in_use = InUse {
            complete: true,
            listed: InUseListed::everything(),
            commits,
            incomplete_because: None,
        };
        in_use.sort();
        in_use
    }

    fn pattern(source: &str) -> Pattern {
        Pattern::new(source).expect("pattern")
    }

    #[test]
    fn the_last_n_deployments_of_each_matching_environment_and_running_pipelines() {
        let commits = vec![
            deployment("production", 10, &sha(1), "main"),
            deployment("production", 12, &sha(2), "main"),
            deployment("production", 11, &sha(3), "main"),
            deployment("staging", 13, &sha(4), "main"),
            deployment("review/x", 14, &sha(5), "feature/x"),
            pipeline(90, &sha(6), "running"),
            pipeline(91, &sha(7), "success"),
        ];
        let in_use = in_use(commits);
        let environments = pattern("production|staging");
        let ask = InUseAsk {
            environments: &environments,
            last_deployments: 2,
            running_pipelines: true,
        };
        let index = InUseIndex::new(&ask, &in_use);
        let ids: Vec<String> = index.order.iter().map(|c| c.source.to_string()).collect();
        assert_eq!(
            ids,
            [
                "deployed to production (deployment 12, finished 2026-12-01T10:00:00Z)",
                "deployed to production (deployment 11, finished 2026-12-01T10:00:00Z)",
                "deployed to staging (deployment 13, finished 2026-12-01T10:00:00Z)",
                "pipeline 90 running",
            ]
        );
        let commit = pattern(r"(?:(?P<ref>[a-z0-9-]+)-)?(?P<sha>[0-9a-f]{7,40})");
        let named = |name: &str| -> Vec<String> {
            index
                .sources(&commit, name)
                .iter()
                .map(|c| c.source.to_string())
                .collect()
        };
        // A 7-character prefix, an 8-character one, the full SHA.
        assert_eq!(named(&sha(2)[..7]).len(), 1);
        // The SHA names staging's deployment, the ref all three on main.
        assert_eq!(named(&format!("main-{}", &sha(4)[..8])).len(), 3);
        assert_eq!(named(&sha(6)), ["pipeline 90 running"]);
        // Too short, not protected, past the last two, a finished pipeline.
        assert!(named(&sha(2)[..6]).is_empty());
        assert!(named(&sha(1)[..8]).is_empty(), "deployment 10 is the third");
        assert!(named(&sha(5)[..8]).is_empty(), "review/x does not match");
        assert!(named(&sha(7)[..8]).is_empty(), "a finished pipeline");
        // By ref slug alone: `main` is production's and staging's ref.
        let by_ref = pattern(r"(?P<ref>[A-Za-z0-9-]+)-latest");
        let sources: Vec<String> = index
            .sources(&by_ref, "Main-latest")
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(sources.len(), 3, "{sources:?}");
        assert!(sources[0].ends_with(&format!("commit {} on main", &sha(2)[..8])));
        assert!(index.sources(&by_ref, "feature-x-latest").len() == 1);
    }

    #[test]
    fn a_listing_that_covers_less_than_the_policy_asks_is_unusable() {
        let environments = pattern("production");
        let ask = |last_deployments, running_pipelines| InUseAsk {
            environments: &environments,
            last_deployments,
            running_pipelines,
        };
        assert_eq!(
            ask(3, true).unusable(None).as_deref(),
            Some("the project's commits in use are not known")
        );
        let mut listed = in_use(Vec::new());
        assert_eq!(ask(3, true).unusable(Some(&listed)), None);
        listed.listed = ask(3, false).listed();
        assert_eq!(ask(3, false).unusable(Some(&listed)), None);
        assert_eq!(ask(2, false).unusable(Some(&listed)), None);
        assert!(ask(4, false)
            .unusable(Some(&listed))
            .is_some_and(|why| why.contains("3 deployments per environment")));
        assert!(ask(3, true)
            .unusable(Some(&listed))
            .is_some_and(|why| why.contains("no running pipelines")));
        let staging = pattern("staging");
        let other = InUseAsk {
            environments: &staging,
            last_deployments: 1,
            running_pipelines: false,
        };
        assert!(other
            .unusable(Some(&listed))
            .is_some_and(|why| why.contains("\"production\"")));
        // Deployments not asked for: the environments do not matter.
        let pipelines_only = InUseAsk {
            environments: &staging,
            last_deployments: 0,
            running_pipelines: false,
        };
        assert_eq!(pipelines_only.unusable(Some(&listed)), None);
        let failed = InUse::failed(
            InUseListed::everything(),
            "GET /projects/:id/pipelines answered 403".into(),
        );
        assert_eq!(
            ask(1, true).unusable(Some(&failed)).as_deref(),
            Some("the project's commits in use are not known in full (GET /projects/:id/pipelines answered 403)")
        );
    }

    #[test]
    fn the_inventory_form_round_trips() {
        let listed = in_use(vec![
            deployment("production", 12, &sha(2), "main"),
            pipeline(90, &sha(6), "running"),
        ]);
        let json = serde_json::to_value(&listed).expect("json");
        assert_eq!(
            json["commits"][0],
            serde_json::json!({"sha": sha(2), "ref": "main", "source": {"kind": "deployment",
                "environment": "production", "deployment_id": 12, "finished_at": "2026-12-01T10:00:00Z"}})
        );
        assert_eq!(
            json["commits"][1]["source"],
            serde_json::json!({"kind": "pipeline", "pipeline_id": 90, "status": "running"})
        );
        let back: InUse = serde_json::from_value(json).expect("back");
        assert_eq!(back, listed);
        let unknown = serde_json::json!({"complete": true, "listed": {"environments": ".*",
            "last_deployments": 1, "running_pipelines": true},
            "commits": [{"sha": "ab", "source": {"kind": "pipeline", "pipeline_id": 1, "status": "x", "extra": 1}}]});
        assert!(serde_json::from_value::<InUse>(unknown).is_err());
    }
}
