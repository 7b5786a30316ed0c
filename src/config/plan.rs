//! `run --plan REPORT.json` (`CLEANUP_PLAN`) and `--plan-max-age`
//! (`CLEANUP_PLAN_MAX_AGE`), and what a run records of its scope so that a
//! plan is applied only where it was made (`domain::applied_plan`).

use std::path::PathBuf;

use crate::config::cli::Engine;
use crate::config::options::Scope;
use crate::config::settings::{CleanupEnv, GitLabEnv};
use crate::domain::applied_plan::RunScope;
use crate::domain::config_error::ConfigError;
use crate::domain::policy::{parse_duration, PolicyDuration};

/// How old a plan may be by default: a week-end's review, not a stale one.
pub const DEFAULT_PLAN_MAX_AGE: &str = "7d";

/// The reviewed plan to apply.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub file: PathBuf,
    /// The flag or variable it was given as, for messages.
    pub given_as: &'static str,
    pub max_age: PolicyDuration,
}

/// `--plan` else `CLEANUP_PLAN`, with `--plan-max-age` else
/// `CLEANUP_PLAN_MAX_AGE` else 7 days. The server engine cannot apply a
/// plan: GitLab's bulk API deletes by pattern, not tag by tag.
pub fn resolve(
    flag: Option<PathBuf>,
    max_age_flag: Option<String>,
    env: &CleanupEnv,
    engine: Engine,
) -> Result<Option<PlanOptions>, ConfigError> {
    let (file, given_as) = match (flag, env.path(&env.cleanup_plan)) {
        (Some(file), _) => (file, "--plan"),
        (None, Some(file)) => (file, "CLEANUP_PLAN"),
        (None, None) => return Ok(None),
    };
    let (text, name) = match (max_age_flag, env.string(&env.cleanup_plan_max_age)) {
        (Some(text), _) => (text, "--plan-max-age"),
        (None, Some(text)) => (text, "CLEANUP_PLAN_MAX_AGE"),
        (None, None) => (DEFAULT_PLAN_MAX_AGE.to_string(), "--plan-max-age"),
    };
    let max_age = parse_duration(text.trim())
        .map_err(|err| ConfigError::setting(name, format!("{name}: {err}")))?;
    if engine == Engine::Server {
        return Err(ConfigError::argument(
            "--engine",
            format!("{given_as} applies a plan tag by tag, which GitLab's bulk-delete API cannot: use the client engine (unset CLEANUP_ENGINE or pass --engine client)"),
        ));
    }
    Ok(Some(PlanOptions {
        file,
        given_as,
        max_age,
    }))
}

/// What the run's report records of its scope: the project
/// (`CI_PROJECT_ID`, `CI_PROJECT_PATH`), the group as given, or the
/// instance, and the GitLab (`CI_SERVER_URL`).
pub fn run_scope(scope: &Scope) -> Result<RunScope, ConfigError> {
    let env = GitLabEnv::from_env()?;
    let text = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let server = text(&env.ci_server_url).map(|url| url.trim_end_matches('/').to_string());
    Ok(match scope {
        Scope::Project => RunScope {
            kind: RunScope::PROJECT.to_string(),
            project_id: text(&env.ci_project_id).and_then(|id| id.parse().ok()),
            project_path: text(&env.ci_project_path),
            group: None,
            server,
        },
        Scope::Group(group) => RunScope {
            kind: RunScope::GROUP.to_string(),
            group: Some(group.clone()),
            server,
            ..RunScope::default()
        },
        Scope::Instance => RunScope {
            kind: RunScope::INSTANCE.to_string(),
            server,
            ..RunScope::default()
        },
    })
}
