//! What a project has in use: environments, deployments and pipelines, as
//! GitLab's REST API lists them (`GET /projects/:id/environments`,
//! `…/deployments`, `…/pipelines`), with GitLab's filters, their
//! validation and its offset pagination (docs/gitlab-protocol.md, "In use").
//!
//! Faithful, not convenient: a filter value GitLab does not know is a 400
//! (`<param> does not have a valid value`), as Grape answers; a deployment
//! has no `finished_at` of its own (its deploy job has); the deployments
//! list refuses GitLab's inefficient combinations; a job token can be
//! refused each listing as GitLab does (`Config::job_token_refused`: 401
//! where the route does not take the job token, 403 where fine-grained job
//! token permissions leave it out).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::model::{gitlab_time, State};
use crate::rest::{message, offset_page, with_project_id};
use crate::server::{json_response, Req, Resp};

/// One of the three listings, for [`crate::Config::job_token_refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InUseListing {
    Environments,
    Deployments,
    Pipelines,
}

impl InUseListing {
    /// GitLab's fine-grained job token permission for it.
    fn policy(self) -> &'static str {
        match self {
            InUseListing::Environments => "read_environments",
            InUseListing::Deployments => "read_deployments",
            InUseListing::Pipelines => "read_pipelines",
        }
    }
}

/// A deployment to seed ([`crate::Emulator::add_deployment`]): by default
/// successful, of `main`, finished now, made by a deploy job.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentSpec {
    pub environment: String,
    pub sha: String,
    pub git_ref: String,
    /// `created`, `running`, `success`, `failed`, `canceled`, `skipped` or `blocked`.
    pub status: String,
    /// When its deploy job finished (also its `updated_at`); `None` while it runs.
    pub finished_at: Option<DateTime<Utc>>,
    /// Made through `POST /projects/:id/deployments`: no deploy job
    /// (`deployable: null`).
    pub via_api: bool,
    /// Another project of the group (`Config::group_projects`); `None`: the project.
    pub project: Option<u64>,
}

impl DeploymentSpec {
    pub fn new(environment: &str, sha: &str) -> DeploymentSpec {
        DeploymentSpec {
            environment: environment.to_string(),
            sha: sha.to_string(),
            git_ref: "main".to_string(),
            status: "success".to_string(),
            finished_at: Some(Utc::now()),
            via_api: false,
            project: None,
        }
    }

    pub fn status(mut self, status: &str) -> DeploymentSpec {
        self.status = status.to_string();
        if matches!(status, "created" | "running" | "blocked") {
            self.finished_at = None;
        }
        self
    }

    pub fn git_ref(mut self, git_ref: &str) -> DeploymentSpec {
        self.git_ref = git_ref.to_string();
        self
    }

    pub fn finished(mut self, at: DateTime<Utc>) -> DeploymentSpec {
        self.finished_at = Some(at);
        self
    }

    pub fn via_api(mut self) -> DeploymentSpec {
        self.via_api = true;
        self
    }

    pub fn in_project(mut self, project: u64) -> DeploymentSpec {
        self.project = Some(project);
        self
    }
}

/// A pipeline to seed ([`crate::Emulator::add_pipeline`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    pub sha: String,
    pub git_ref: String,
    /// Any of GitLab's pipeline statuses (`running`, `pending`, `success`, …).
    pub status: String,
    pub project: Option<u64>,
}

impl PipelineSpec {
    pub fn new(sha: &str, status: &str) -> PipelineSpec {
        PipelineSpec {
            sha: sha.to_string(),
            git_ref: "main".to_string(),
            status: status.to_string(),
            project: None,
        }
    }

    pub fn git_ref(mut self, git_ref: &str) -> PipelineSpec {
        self.git_ref = git_ref.to_string();
        self
    }

    pub fn in_project(mut self, project: u64) -> PipelineSpec {
        self.project = Some(project);
        self
    }
}

pub(crate) struct Environment {
    pub id: u64,
    pub name: String,
    /// `available`, `stopping` or `stopped`.
    pub state: String,
    pub created_at: DateTime<Utc>,
}

pub(crate) struct Deployment {
    pub id: u64,
    pub iid: u64,
    pub environment: String,
    pub spec: DeploymentSpec,
    pub created_at: DateTime<Utc>,
    pub job_id: u64,
}

pub(crate) struct Pipeline {
    pub id: u64,
    pub iid: u64,
    pub spec: PipelineSpec,
    pub created_at: DateTime<Utc>,
}

/// One project's environments, deployments and pipelines.
#[derive(Default)]
pub(crate) struct ProjectInUse {
    pub environments: Vec<Environment>,
    pub deployments: Vec<Deployment>,
    pub pipelines: Vec<Pipeline>,
}

/// Every project's, and the ids GitLab hands out (global, as GitLab's).
#[derive(Default)]
pub(crate) struct InUseState {
    pub projects: BTreeMap<u64, ProjectInUse>,
    next_id: u64,
}

impl InUseState {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Adds an environment (or sets the state of one of that name); its id.
    pub(crate) fn environment(&mut self, project: u64, name: &str, state: &str) -> u64 {
        let id = self.next_id();
        let environments = &mut self.projects.entry(project).or_default().environments;
        if let Some(known) = environments.iter_mut().find(|e| e.name == name) {
            known.state = state.to_string();
            return known.id;
        }
        environments.push(Environment {
            id,
            name: name.to_string(),
            state: state.to_string(),
            created_at: Utc::now(),
        });
        id
    }

    pub(crate) fn deployment(&mut self, project: u64, spec: DeploymentSpec) -> u64 {
        if !self
            .projects
            .get(&project)
            .is_some_and(|p| p.environments.iter().any(|e| e.name == spec.environment))
        {
            self.environment(project, &spec.environment, "available");
        }
        let id = self.next_id();
        let job_id = self.next_id();
        let project = self.projects.entry(project).or_default();
        let iid = project.deployments.len() as u64 + 1;
        project.deployments.push(Deployment {
            id,
            iid,
            environment: spec.environment.clone(),
            created_at: spec.finished_at.unwrap_or_else(Utc::now),
            spec,
            job_id,
        });
        id
    }

    pub(crate) fn pipeline(&mut self, project: u64, spec: PipelineSpec) -> u64 {
        let id = self.next_id();
        let project = self.projects.entry(project).or_default();
        let iid = project.pipelines.len() as u64 + 1;
        project.pipelines.push(Pipeline {
            id,
            iid,
            spec,
            created_at: Utc::now(),
        });
        id
    }
}

/// Grape's answer to a value outside a parameter's `values`.
fn invalid_value(param: &str) -> Resp {
    json_response(
        400,
        &json!({"error": format!("{param} does not have a valid value")}),
    )
}

/// `bad_request!(message)`.
fn bad_request(text: &str) -> Resp {
    message(400, &format!("400 Bad request - {text}"))
}

/// A parameter that must be one of `values` (absent: `default`).
fn one_of(req: &Req, param: &str, values: &[&str], default: &str) -> Result<String, Resp> {
    match req.param(param) {
        None => Ok(default.to_string()),
        Some(value) if values.contains(&value.as_str()) => Ok(value),
        Some(_) => Err(invalid_value(param)),
    }
}

/// The listing refused to a valid job token, as `Config::job_token_refused` says.
fn refused(state: &State, req: &Req, listing: InUseListing) -> Option<Resp> {
    if !req.headers.contains_key("job-token") {
        return None;
    }
    let (_, status) = state
        .config
        .job_token_refused
        .iter()
        .find(|(refused, _)| *refused == listing)?;
    Some(match status {
        401 => message(401, "401 Unauthorized"),
        403 => {
            let project = state
                .config
                .project_path
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            message(
                403,
                &format!(
                    "403 Forbidden - Insufficient permissions to access this resource in project {project}. The following token permission is required: {}.",
                    listing.policy()
                ),
            )
        }
        other => message(*other, "refused"),
    })
}

/// Environment states this GitLab knows (`stopping` since GitLab 15.x).
fn environment_states(state: &State) -> &'static [&'static str] {
    if state.config.legacy_statuses {
        &["available", "stopped"]
    } else {
        &["available", "stopping", "stopped"]
    }
}

/// `Ci::HasStatus::AVAILABLE_STATUSES` (`waiting_for_callback` and
/// `canceling` since GitLab 17.x).
fn pipeline_statuses(state: &State) -> &'static [&'static str] {
    if state.config.legacy_statuses {
        &[
            "created",
            "waiting_for_resource",
            "preparing",
            "pending",
            "running",
            "success",
            "failed",
            "canceled",
            "skipped",
            "manual",
            "scheduled",
        ]
    } else {
        &[
            "created",
            "waiting_for_resource",
            "preparing",
            "waiting_for_callback",
            "pending",
            "running",
            "success",
            "failed",
            "canceling",
            "canceled",
            "skipped",
            "manual",
            "scheduled",
        ]
    }
}

/// `Deployment.statuses`.
const DEPLOYMENT_STATUSES: [&str; 7] = [
    "created", "running", "success", "failed", "canceled", "skipped", "blocked",
];
const FINISHED_DEPLOYMENT_STATUSES: [&str; 3] = ["success", "failed", "canceled"];

fn slug(name: &str) -> String {
    let cleaned: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    cleaned.trim_matches('-').chars().take(24).collect()
}

fn environment_json(environment: &Environment) -> Value {
    json!({
        "id": environment.id,
        "name": environment.name,
        "slug": slug(&environment.name),
        "external_url": null,
        "created_at": gitlab_time(&environment.created_at),
        "updated_at": gitlab_time(&environment.created_at),
        "tier": if environment.name == "production" { "production" } else { "other" },
        "state": environment.state,
        "auto_stop_at": null,
        "kubernetes_namespace": null,
        "flux_resource_path": null,
        "description": null,
        "auto_stop_setting": "always",
    })
}

/// `GET /projects/:id/environments`: `name` (exact) or `search` (3+
/// characters, a substring), `states` (one of them); by id, offset pages.
pub(crate) fn environments(state: &mut State, req: &Req, id: &str) -> Resp {
    with_project_id(state, req, id, |state, project| {
        if let Some(response) = refused(state, req, InUseListing::Environments) {
            return response;
        }
        let wanted = match req.param("states") {
            None => None,
            Some(value) if environment_states(state).contains(&value.as_str()) => Some(value),
            Some(_) => return invalid_value("states"),
        };
        let (name, search) = (req.param("name"), req.param("search"));
        if name.is_some() && search.is_some() {
            return json_response(
                400,
                &json!({"error": "name, search cannot be used together"}),
            );
        }
        if search.as_ref().is_some_and(|s| s.chars().count() < 3) {
            return bad_request("Search query is less than 3 characters");
        }
        let mut listed: Vec<&Environment> = state
            .in_use
            .projects
            .get(&project)
            .map(|p| p.environments.iter().collect())
            .unwrap_or_default();
        listed.retain(|e| wanted.as_ref().is_none_or(|w| &e.state == w));
        listed.retain(|e| name.as_ref().is_none_or(|n| &e.name == n));
        listed.retain(|e| search.as_ref().is_none_or(|s| e.name.contains(s.as_str())));
        listed.sort_by_key(|e| e.id);
        let items: Vec<Value> = listed.into_iter().map(environment_json).collect();
        offset_page(state, req, items)
    })
}

fn deployment_json(state: &State, project: u64, deployment: &Deployment) -> Value {
    let spec = &deployment.spec;
    let environment = state.in_use.projects.get(&project).and_then(|p| {
        p.environments
            .iter()
            .find(|e| e.name == deployment.environment)
    });
    let updated_at = spec.finished_at.unwrap_or(deployment.created_at);
    let user = json!({"id": 1, "username": "root", "name": "Administrator", "state": "active"});
    let deployable = if spec.via_api {
        Value::Null
    } else {
        let job_status = match spec.status.as_str() {
            "blocked" => "manual",
            "created" => "created",
            other => other,
        };
        json!({
            "id": deployment.job_id,
            "status": job_status,
            "stage": "deploy",
            "name": format!("deploy {}", deployment.environment),
            "ref": spec.git_ref,
            "tag": false,
            "coverage": null,
            "allow_failure": false,
            "created_at": gitlab_time(&deployment.created_at),
            "started_at": gitlab_time(&deployment.created_at),
            "finished_at": spec.finished_at.as_ref().map(gitlab_time),
            "duration": null,
            "user": user,
            "commit": {"id": spec.sha, "short_id": spec.sha.chars().take(8).collect::<String>()},
            "pipeline": {"id": deployment.job_id + 100_000, "sha": spec.sha, "ref": spec.git_ref, "status": job_status},
        })
    };
    json!({
        "id": deployment.id,
        "iid": deployment.iid,
        "ref": spec.git_ref,
        "sha": spec.sha,
        "created_at": gitlab_time(&deployment.created_at),
        "updated_at": gitlab_time(&updated_at),
        "status": spec.status,
        "user": user,
        "environment": environment.map(|e| json!({
            "id": e.id, "name": e.name, "slug": slug(&e.name), "external_url": null,
            "created_at": gitlab_time(&e.created_at), "updated_at": gitlab_time(&e.created_at),
        })),
        "deployable": deployable,
    })
}

/// `GET /projects/:id/deployments`: `order_by` (`id`, `iid`, `created_at`,
/// `updated_at`, `finished_at`; default `id`), `sort` (default `asc`),
/// `status`, `environment` (a name); `DeploymentsFinder`'s checks; offset
/// pages. (`updated_*` and `finished_*` date filters are not emulated.)
pub(crate) fn deployments(state: &mut State, req: &Req, id: &str) -> Resp {
    with_project_id(state, req, id, |state, project| {
        if let Some(response) = refused(state, req, InUseListing::Deployments) {
            return response;
        }
        let order_by = match one_of(
            req,
            "order_by",
            &["id", "iid", "created_at", "updated_at", "finished_at"],
            "id",
        ) {
            Ok(value) => value,
            Err(response) => return response,
        };
        let sort = match one_of(req, "sort", &["asc", "desc"], "asc") {
            Ok(value) => value,
            Err(response) => return response,
        };
        let status = match req.param("status") {
            None => None,
            Some(value) if DEPLOYMENT_STATUSES.contains(&value.as_str()) => Some(value),
            Some(_) => return invalid_value("status"),
        };
        if order_by == "finished_at"
            && !status
                .as_deref()
                .is_some_and(|s| FINISHED_DEPLOYMENT_STATUSES.contains(&s))
        {
            return bad_request(
                "`finished_at` sort requires `finished_at` filter or a filter with at least one of the finished statuses.",
            );
        }
        let environment = req.param("environment");
        let mut listed: Vec<&Deployment> = state
            .in_use
            .projects
            .get(&project)
            .map(|p| p.deployments.iter().collect())
            .unwrap_or_default();
        listed.retain(|d| status.as_ref().is_none_or(|s| &d.spec.status == s));
        listed.retain(|d| environment.as_ref().is_none_or(|e| &d.environment == e));
        match order_by.as_str() {
            "updated_at" => {
                listed.sort_by_key(|d| (d.spec.finished_at.unwrap_or(d.created_at), d.id))
            }
            "finished_at" => listed.sort_by_key(|d| (d.spec.finished_at, d.id)),
            // `iid` and `created_at` order as `id` does (GitLab says so).
            _ => listed.sort_by_key(|d| d.id),
        }
        if sort == "desc" {
            listed.reverse();
        }
        let items: Vec<Value> = listed
            .into_iter()
            .map(|d| deployment_json(state, project, d))
            .collect();
        offset_page(state, req, items)
    })
}

/// `GET /projects/:id/pipelines`: `status` (one of GitLab's), `scope`
/// (`running`, `pending`, `finished`; `branches` and `tags` are not
/// emulated: 400), `ref`, `sha`, `order_by` (`id`, `status`, `ref`,
/// `updated_at`, `user_id`; default `id`), `sort` (default `desc`); offset
/// pages.
pub(crate) fn pipelines(state: &mut State, req: &Req, id: &str) -> Resp {
    with_project_id(state, req, id, |state, project| {
        if let Some(response) = refused(state, req, InUseListing::Pipelines) {
            return response;
        }
        let status = match req.param("status") {
            None => None,
            Some(value) if pipeline_statuses(state).contains(&value.as_str()) => Some(value),
            Some(_) => return invalid_value("status"),
        };
        let scope: Option<&[&str]> = match req.param("scope").as_deref() {
            None => None,
            Some("running") => Some(&["running"]),
            Some("pending") => Some(&["pending"]),
            Some("finished") => Some(&["success", "failed", "canceled", "skipped"]),
            Some("branches" | "tags") => {
                return json_response(
                    400,
                    &json!({"error": "scope branches and tags are not emulated"}),
                )
            }
            Some(_) => return invalid_value("scope"),
        };
        let order_by = match one_of(
            req,
            "order_by",
            &["id", "status", "ref", "updated_at", "user_id"],
            "id",
        ) {
            Ok(value) => value,
            Err(response) => return response,
        };
        let sort = match one_of(req, "sort", &["asc", "desc"], "desc") {
            Ok(value) => value,
            Err(response) => return response,
        };
        let (git_ref, sha) = (req.param("ref"), req.param("sha"));
        let mut listed: Vec<&Pipeline> = state
            .in_use
            .projects
            .get(&project)
            .map(|p| p.pipelines.iter().collect())
            .unwrap_or_default();
        listed.retain(|p| status.as_ref().is_none_or(|s| &p.spec.status == s));
        listed.retain(|p| scope.is_none_or(|scope| scope.contains(&p.spec.status.as_str())));
        listed.retain(|p| git_ref.as_ref().is_none_or(|r| &p.spec.git_ref == r));
        listed.retain(|p| sha.as_ref().is_none_or(|s| &p.spec.sha == s));
        match order_by.as_str() {
            "status" => {
                listed.sort_by(|a, b| a.spec.status.cmp(&b.spec.status).then(a.id.cmp(&b.id)))
            }
            "ref" => {
                listed.sort_by(|a, b| a.spec.git_ref.cmp(&b.spec.git_ref).then(a.id.cmp(&b.id)))
            }
            _ => listed.sort_by_key(|p| p.id),
        }
        if sort == "desc" {
            listed.reverse();
        }
        let gitlab_url = state.gitlab_url.clone();
        let path = state.config.project_path.clone();
        let items: Vec<Value> = listed
            .into_iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "iid": p.iid,
                    "project_id": project,
                    "sha": p.spec.sha,
                    "ref": p.spec.git_ref,
                    "status": p.spec.status,
                    "source": "push",
                    "created_at": gitlab_time(&p.created_at),
                    "updated_at": gitlab_time(&p.created_at),
                    "web_url": format!("{gitlab_url}/{path}/-/pipelines/{}", p.id),
                    "name": null,
                })
            })
            .collect();
        offset_page(state, req, items)
    })
}
