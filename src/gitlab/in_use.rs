//! GitLab's REST API for the commits a project has in use
//! (`protect_in_use`): its live environments, each one's newest successful
//! deployments, and its running pipelines (docs/gitlab-protocol.md, "In
//! use").
//!
//! [`GitLab::in_use`] never fails: a listing that fails or is refused gives
//! an [`InUse`] with `complete: false` and the reason, and the planner then
//! deletes nothing in the project. The listings one by one are public for
//! `doctor`.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::domain::in_use::{
    CommitInUse, InUse, InUseAsk, InUseListed, InUseSource, LIVE_ENVIRONMENT_STATES,
    RUNNING_PIPELINE_STATUSES,
};
use crate::domain::pattern::Pattern;
use crate::gitlab::client::{GitLab, GitLabError, PER_PAGE};
use crate::wire::http::HttpError;

/// One of the three listings, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InUseListing {
    Environments,
    Deployments,
    Pipelines,
}

impl InUseListing {
    pub const ALL: [InUseListing; 3] = [
        InUseListing::Environments,
        InUseListing::Deployments,
        InUseListing::Pipelines,
    ];

    /// The endpoint, as the docs name it.
    pub fn endpoint(self) -> &'static str {
        match self {
            InUseListing::Environments => "GET /projects/:id/environments",
            InUseListing::Deployments => "GET /projects/:id/deployments",
            InUseListing::Pipelines => "GET /projects/:id/pipelines",
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            InUseListing::Environments => "environments",
            InUseListing::Deployments => "deployments",
            InUseListing::Pipelines => "pipelines",
        }
    }

    /// The job token permission GitLab's fine-grained job token
    /// permissions name for it.
    pub fn job_token_permission(self) -> &'static str {
        match self {
            InUseListing::Environments => "Environments: Read (read_environments)",
            InUseListing::Deployments => "Deployments: Read (read_deployments)",
            InUseListing::Pipelines => "Pipelines: Read (read_pipelines)",
        }
    }
}

/// What to do when GitLab refuses a listing to these credentials.
pub fn refusal_advice(credentials: &str, listing: InUseListing) -> String {
    match credentials {
        "PRIVATE-TOKEN" => format!(
            "give GITLAB_TOKEN the read_api scope and a user who may read the project's {} (Reporter or higher)",
            listing.what()
        ),
        _ => format!(
            "set GITLAB_TOKEN to an access token with the read_api scope; the job token reads {} only on GitLab versions that allow it ({} for pipelines: recent GitLab only), and where the project uses fine-grained job token permissions only with {}",
            listing.what(),
            "environments and deployments since 17.x",
            listing.job_token_permission()
        ),
    }
}

/// An environment as `GET /projects/:id/environments` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListedEnvironment {
    pub id: u64,
    pub name: String,
    /// `available`, `stopping` or `stopped`.
    #[serde(default)]
    pub state: Option<String>,
}

/// A deployment as `GET /projects/:id/deployments` lists it: no
/// `finished_at` of its own, its deploy job's instead.
#[derive(Debug, Clone, Deserialize)]
pub struct ListedDeployment {
    pub id: u64,
    pub sha: String,
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub deployable: Option<Deployable>,
    #[serde(default)]
    pub environment: Option<NamedEnvironment>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Deployable {
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NamedEnvironment {
    pub name: String,
}

impl ListedDeployment {
    /// When it finished: its deploy job's `finished_at`, or (a deployment
    /// made through the API has no job) its `updated_at`, which its move to
    /// `success` set.
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.deployable
            .as_ref()
            .and_then(|job| job.finished_at)
            .or(self.updated_at)
    }
}

/// A pipeline as `GET /projects/:id/pipelines` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct ListedPipeline {
    pub id: u64,
    pub sha: String,
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    pub status: String,
}

/// A full commit SHA (40 hex digits, or 64 in a SHA-256 repository),
/// lowercase; `None` for anything else.
fn full_sha(sha: &str) -> Option<String> {
    let valid = matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| sha.to_ascii_lowercase())
}

/// GitLab's answer to a filter value it does not know (Grape's `values`
/// check): 400 `{"error": "<param> does not have a valid value"}`. Older
/// GitLab has no `stopping` environments and no `waiting_for_callback` or
/// `canceling` pipelines: nothing can be in them there.
fn unknown_value(err: &GitLabError) -> bool {
    matches!(
        err,
        GitLabError::Http(HttpError::Status { status, detail, .. })
            if *status == StatusCode::BAD_REQUEST && detail.contains("does not have a valid value")
    )
}

impl GitLab {
    /// The project's commits in use, as `ask` asks for them: the live
    /// environments (available, stopping) whose name it matches, each one's
    /// `last_deployments` newest successful deployments, and every running
    /// pipeline. Never an error: a listing that fails or is refused gives
    /// `complete: false` and the reason (nothing is then deleted in the
    /// project), and ends the listing.
    pub async fn in_use(&self, ask: &InUseAsk<'_>) -> InUse {
        match self.list_in_use(ask).await {
            Ok(commits) => {
                let mut in_use = InUse {
                    complete: true,
                    listed: ask.listed(),
                    commits,
                    incomplete_because: None,
                };
                in_use.sort();
                in_use
            }
            Err(reason) => {
                tracing::warn!(reason = %reason, "the project's commits in use are not known in full; nothing is deleted in it");
                InUse::failed(ask.listed(), reason)
            }
        }
    }

    /// Every commit in use, whatever a policy asks (what `inventory`
    /// records, so that `plan` can take what any policy asks): every live
    /// environment's last 100 successful deployments, and every running
    /// pipeline.
    pub async fn all_in_use(&self) -> InUse {
        let listed = InUseListed::everything();
        match Pattern::new(&listed.environments) {
            Ok(every) => {
                self.in_use(&InUseAsk {
                    environments: &every,
                    last_deployments: listed.last_deployments,
                    running_pipelines: listed.running_pipelines,
                })
                .await
            }
            Err(why) => InUse::failed(listed, why),
        }
    }

    async fn list_in_use(&self, ask: &InUseAsk<'_>) -> Result<Vec<CommitInUse>, String> {
        let mut commits = Vec::new();
        if ask.last_deployments > 0 {
            let mut environments: Vec<ListedEnvironment> = Vec::new();
            for state in LIVE_ENVIRONMENT_STATES {
                match self.environments(state).await {
                    Ok(Some(listed)) => environments.extend(listed),
                    Ok(None) => {
                        tracing::debug!(state, "GitLab knows no such environment state")
                    }
                    Err(err) => return Err(self.in_use_failure(InUseListing::Environments, err)),
                }
            }
            environments.retain(|environment| ask.environments.is_match(&environment.name));
            environments.sort_by(|a, b| a.name.cmp(&b.name));
            environments.dedup_by(|a, b| a.name == b.name);
            for environment in &environments {
                let deployments = self
                    .successful_deployments(Some(&environment.name), ask.last_deployments)
                    .await
                    .map_err(|err| self.in_use_failure(InUseListing::Deployments, err))?;
                for deployment in deployments {
                    let finished_at = deployment.finished_at();
                    commits.push(CommitInUse {
                        // Checked by `successful_deployments`.
                        sha: full_sha(&deployment.sha).unwrap_or_default(),
                        git_ref: deployment.git_ref,
                        source: InUseSource::Deployment {
                            environment: environment.name.clone(),
                            deployment_id: deployment.id,
                            finished_at,
                        },
                    });
                }
            }
        }
        if ask.running_pipelines {
            for status in RUNNING_PIPELINE_STATUSES {
                match self.pipelines(status).await {
                    Ok(Some(listed)) => {
                        commits.extend(listed.into_iter().map(|pipeline| CommitInUse {
                            sha: full_sha(&pipeline.sha).unwrap_or_default(),
                            git_ref: pipeline.git_ref,
                            source: InUseSource::Pipeline {
                                pipeline_id: pipeline.id,
                                status: pipeline.status,
                            },
                        }))
                    }
                    Ok(None) => tracing::debug!(status, "GitLab knows no such pipeline status"),
                    Err(err) => return Err(self.in_use_failure(InUseListing::Pipelines, err)),
                }
            }
        }
        Ok(commits)
    }

    /// Why a listing failed, for `incomplete_because`. A refusal (401, 403)
    /// says which token can read it.
    pub fn in_use_failure(&self, listing: InUseListing, err: GitLabError) -> String {
        let refused = match &err {
            GitLabError::Config(_) => Some(StatusCode::UNAUTHORIZED),
            GitLabError::Http(HttpError::Status { status, .. })
                if *status == StatusCode::FORBIDDEN =>
            {
                Some(*status)
            }
            _ => None,
        };
        match refused {
            Some(status) => format!(
                "GitLab refused to list the project's {} ({} answered {} to the {} credentials): {}",
                listing.what(),
                listing.endpoint(),
                status.as_u16(),
                self.credentials(),
                refusal_advice(self.credentials(), listing)
            ),
            None => format!(
                "listing the project's {} ({}) failed: {err}",
                listing.what(),
                listing.endpoint()
            ),
        }
    }

    /// `GET /projects/:id/environments?states=STATE`, every page. `None`:
    /// this GitLab knows no such state (none can be in it).
    pub async fn environments(
        &self,
        state: &str,
    ) -> Result<Option<Vec<ListedEnvironment>>, GitLabError> {
        let mut url = self.project_url("environments");
        url.query_pairs_mut()
            .append_pair("states", state)
            .append_pair("per_page", PER_PAGE);
        let listed: Vec<ListedEnvironment> = match self.all_pages(url).await {
            Ok(listed) => listed,
            Err(err) if unknown_value(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        // Only the state asked for counts (a `stopped` environment runs
        // nothing); an entry without a state is taken at GitLab's word.
        Ok(Some(
            listed
                .into_iter()
                .filter(|environment| environment.state.as_deref().is_none_or(|s| s == state))
                .collect(),
        ))
    }

    /// `GET /projects/:id/deployments?environment=NAME&status=success&order_by=id&sort=desc&per_page=N`:
    /// the `count` newest successful deployments (of `environment`, or of
    /// the whole project), one page. An answer that is not what was asked
    /// for (another status or environment, not newest first, no full SHA)
    /// fails: its filter or order was not applied, and the newest might be
    /// missing.
    pub async fn successful_deployments(
        &self,
        environment: Option<&str>,
        count: usize,
    ) -> Result<Vec<ListedDeployment>, GitLabError> {
        let mut url = self.project_url("deployments");
        {
            let mut query = url.query_pairs_mut();
            if let Some(environment) = environment {
                query.append_pair("environment", environment);
            }
            query
                .append_pair("status", "success")
                .append_pair("order_by", "id")
                .append_pair("sort", "desc")
                .append_pair("per_page", &count.clamp(1, 100).to_string());
        }
        let response = self.send(reqwest::Method::GET, &url, |r| r).await?;
        if !response.status.is_success() {
            return Err(response.unexpected().into());
        }
        let mut listed: Vec<ListedDeployment> = response.json()?;
        let mut previous: Option<u64> = None;
        for deployment in &listed {
            let wrong = if deployment.status.as_deref().is_some_and(|s| s != "success") {
                Some(format!(
                    "deployment {} has status {:?}, not success",
                    deployment.id,
                    deployment.status.as_deref().unwrap_or("")
                ))
            } else if let (Some(asked), Some(listed)) = (environment, &deployment.environment) {
                (listed.name != asked).then(|| {
                    format!(
                        "deployment {} is of environment {:?}, not {asked:?}",
                        deployment.id, listed.name
                    )
                })
            } else if previous.is_some_and(|previous| deployment.id >= previous) {
                Some(format!(
                    "deployment {} comes after deployment {}: not newest first",
                    deployment.id,
                    previous.unwrap_or_default()
                ))
            } else if full_sha(&deployment.sha).is_none() {
                Some(format!(
                    "deployment {} has the sha {:?}, not a full commit SHA",
                    deployment.id, deployment.sha
                ))
            } else {
                None
            };
            if let Some(wrong) = wrong {
                return Err(response
                    .invalid(format!("{wrong}; refusing to decide from this listing"))
                    .into());
            }
            previous = Some(deployment.id);
        }
        listed.truncate(count);
        Ok(listed)
    }

    /// `GET /projects/:id/pipelines?status=STATUS`, every page. `None`: this
    /// GitLab knows no such status (none can be in it).
    pub async fn pipelines(
        &self,
        status: &str,
    ) -> Result<Option<Vec<ListedPipeline>>, GitLabError> {
        let mut url = self.project_url("pipelines");
        url.query_pairs_mut()
            .append_pair("status", status)
            .append_pair("per_page", PER_PAGE);
        let listed: Vec<ListedPipeline> = match self.all_pages(url.clone()).await {
            Ok(listed) => listed,
            Err(err) if unknown_value(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        if let Some(odd) = listed.iter().find(|p| full_sha(&p.sha).is_none()) {
            return Err(GitLabError::Http(HttpError::InvalidResponse {
                method: reqwest::Method::GET,
                url: crate::wire::http::display_url(&url),
                message: format!(
                    "pipeline {} has the sha {:?}, not a full commit SHA; refusing to decide from this listing",
                    odd.id, odd.sha
                ),
            }));
        }
        // Only the status asked for: the next listing has the others.
        Ok(Some(
            listed
                .into_iter()
                .filter(|pipeline| pipeline.status == status)
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::in_use::InUseListed;
    use gitlab_emulator::{Config, DeploymentSpec, Emulator, PipelineSpec};

    use crate::gitlab::client::tests::{block_on, emulated};

    fn sha(n: u32) -> String {
        format!("{n:08x}").repeat(5)
    }

    fn at(day: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-{day:02}T10:00:00Z"))
            .expect("time")
            .with_timezone(&Utc)
    }

    /// (environments, deployments, pipelines) requests.
    fn counts(emulator: &Emulator) -> (usize, usize, usize) {
        (
            emulator.count("GET", "/environments"),
            emulator.count("GET", "/deployments"),
            emulator.count("GET", "/pipelines"),
        )
    }

    fn pattern(source: &str) -> Pattern {
        Pattern::new(source).expect("pattern")
    }

    #[test]
    fn the_last_deployments_of_live_matching_environments_and_running_pipelines() {
        let emulator = Emulator::start(Config::default());
        // 150 review apps: two pages of environments.
        for i in 0..150 {
            emulator.add_environment(&format!("review/{i:03}"), "available");
        }
        emulator.add_environment("staging", "stopping");
        emulator.add_environment("old", "stopped");
        let production: Vec<u64> = (1..=5)
            .map(|day| {
                emulator
                    .add_deployment(DeploymentSpec::new("production", &sha(day)).finished(at(day)))
            })
            .collect();
        emulator.add_deployment(
            DeploymentSpec::new("production", &sha(6))
                .status("failed")
                .finished(at(6)),
        );
        let staging = emulator.add_deployment(
            DeploymentSpec::new("staging", &sha(7))
                .git_ref("v1.0.0")
                .finished(at(7))
                .via_api(),
        );
        emulator.add_deployment(DeploymentSpec::new("old", &sha(8)).finished(at(8)));
        let pending =
            emulator.add_pipeline(PipelineSpec::new(&sha(9), "pending").git_ref("feature/x"));
        emulator.add_pipeline(PipelineSpec::new(&sha(10), "success"));
        emulator.add_pipeline(PipelineSpec::new(&sha(11), "manual"));
        let mut running = Vec::new();
        for n in 0..120 {
            running.push(emulator.add_pipeline(PipelineSpec::new(&sha(100 + n), "running")));
        }
        let waiting = emulator.add_pipeline(PipelineSpec::new(&sha(12), "waiting_for_resource"));

        let environments = pattern("production|staging|old");
        let ask = InUseAsk {
            environments: &environments,
            last_deployments: 3,
            running_pipelines: true,
        };
        let in_use = block_on(emulated(&emulator, true).in_use(&ask));
        assert!(in_use.complete, "{:?}", in_use.incomplete_because);
        assert_eq!(in_use.listed, ask.listed());
        let deployments: Vec<String> = in_use
            .commits
            .iter()
            .filter(|c| matches!(c.source, InUseSource::Deployment { .. }))
            .map(|c| format!("{} {}", c.source, &c.sha[..8]))
            .collect();
        assert_eq!(
            deployments,
            [
                format!("deployed to production (deployment {}, finished 2026-11-05T10:00:00Z) 00000005", production[4]),
                format!("deployed to production (deployment {}, finished 2026-11-04T10:00:00Z) 00000004", production[3]),
                format!("deployed to production (deployment {}, finished 2026-11-03T10:00:00Z) 00000003", production[2]),
                format!("deployed to staging (deployment {staging}, finished 2026-11-07T10:00:00Z) 00000007"),
            ]
        );
        let staging_commit = in_use
            .commits
            .iter()
            .find(|c| c.sha == sha(7))
            .expect("staging");
        assert_eq!(staging_commit.git_ref.as_deref(), Some("v1.0.0"));
        let pipelines: Vec<u64> = in_use
            .commits
            .iter()
            .filter_map(|c| match &c.source {
                InUseSource::Pipeline { pipeline_id, .. } => Some(*pipeline_id),
                _ => None,
            })
            .collect();
        let mut expected: Vec<u64> = running.clone();
        expected.push(pending);
        expected.push(waiting);
        expected.sort_by(|a, b| b.cmp(a));
        assert_eq!(
            pipelines, expected,
            "newest first, finished and manual ones left out"
        );
        // Environments: available (2 pages) and stopping (1); deployments:
        // one page per matching live environment (production, staging);
        // pipelines: one listing per status, `running` on 2 pages.
        assert_eq!(counts(&emulator), (3, 2, 9));
        assert_eq!(emulator.requests().len(), 14, "nothing else");
        assert!(emulator
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/deployments"))
            .all(|r| r.query.contains("status=success")
                && r.query.contains("order_by=id")
                && r.query.contains("sort=desc")
                && r.query.contains("per_page=3")));
    }

    #[test]
    fn an_older_gitlab_without_the_newer_states_and_statuses_is_listed_in_full() {
        let emulator = Emulator::start(Config {
            legacy_statuses: true,
            ..Config::default()
        });
        emulator.add_deployment(DeploymentSpec::new("production", &sha(1)));
        emulator.add_pipeline(PipelineSpec::new(&sha(2), "running"));
        let in_use = block_on(emulated(&emulator, true).all_in_use());
        assert!(in_use.complete, "{:?}", in_use.incomplete_because);
        assert_eq!(in_use.listed, InUseListed::everything());
        assert_eq!(in_use.commits.len(), 2);
        // `stopping`, `waiting_for_callback` and `canceling` answered 400.
        assert_eq!(counts(&emulator), (2, 1, 8));
    }

    #[test]
    fn a_refused_listing_leaves_the_commits_in_use_unknown_with_the_reason() {
        use gitlab_emulator::InUseListing as Emulated;
        for (listing, refused, endpoint, requests) in [
            (
                Emulated::Environments,
                401,
                "GET /projects/:id/environments",
                (1, 0, 0),
            ),
            (
                Emulated::Deployments,
                403,
                "GET /projects/:id/deployments",
                (2, 1, 0),
            ),
            (
                Emulated::Pipelines,
                403,
                "GET /projects/:id/pipelines",
                (2, 1, 1),
            ),
        ] {
            let emulator = Emulator::start(Config {
                job_token_refused: vec![(listing, refused)],
                ..Config::default()
            });
            emulator.add_deployment(DeploymentSpec::new("production", &sha(1)));
            emulator.add_pipeline(PipelineSpec::new(&sha(2), "running"));
            let in_use = block_on(emulated(&emulator, true).all_in_use());
            assert!(!in_use.complete);
            assert!(in_use.commits.is_empty());
            let reason = in_use.incomplete_because.expect("a reason");
            for needle in [
                endpoint,
                &format!("answered {refused} to the JOB-TOKEN credentials"),
                "GITLAB_TOKEN",
                "read_api",
            ] {
                assert!(reason.contains(needle), "{needle}: {reason}");
            }
            assert!(!reason.contains(&emulator.config().job_token));
            // The first refusal ends the listing.
            assert_eq!(counts(&emulator), requests, "{endpoint}");
            // An access token reads it.
            let in_use = block_on(emulated(&emulator, false).all_in_use());
            assert!(in_use.complete, "{:?}", in_use.incomplete_because);
        }
    }

    #[test]
    fn a_failing_or_odd_answer_leaves_the_commits_in_use_unknown() {
        let emulator = Emulator::start(Config {
            scripted_faults: vec![gitlab_emulator::ScriptedFault::refused(
                "GET",
                "/pipelines",
                404,
            )
            .times(usize::MAX)],
            ..Config::default()
        });
        let in_use = block_on(emulated(&emulator, true).all_in_use());
        let reason = in_use.incomplete_because.expect("a reason");
        assert!(
            reason.starts_with(
                "listing the project's pipelines (GET /projects/:id/pipelines) failed:"
            ),
            "{reason}"
        );
        // A deployments answer GitLab's filter was not applied to.
        let emulator = Emulator::start(Config {
            tamper: vec![
                gitlab_emulator::Tamper::on(Some("GET"), "/deployments").body(
                    gitlab_emulator::TamperBody::Transform(|body| {
                        String::from_utf8_lossy(body)
                            .replace("\"status\":\"success\"", "\"status\":\"failed\"")
                            .into_bytes()
                    }),
                ),
            ],
            ..Config::default()
        });
        emulator.add_deployment(DeploymentSpec::new("production", &sha(1)));
        let in_use = block_on(emulated(&emulator, true).all_in_use());
        let reason = in_use.incomplete_because.expect("a reason");
        assert!(
            reason.contains("has status \"failed\", not success"),
            "{reason}"
        );
    }
}
