//! `run --plan REPORT.json` (`CLEANUP_PLAN`) and `--plan-max-age`
//! (`CLEANUP_PLAN_MAX_AGE`).

use std::path::PathBuf;

use crate::config::cli::Engine;
use crate::config::settings::CleanupEnv;
use crate::domain::config_error::ConfigError;
use crate::domain::policy::{parse_duration, PolicyDuration};

/// How old a plan may be by default: a week-end's review, not a stale one.
pub const DEFAULT_PLAN_MAX_AGE: &str = "7d";

/// The reviewed plan to apply (`file`), and how old a plan may be.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub file: Option<PathBuf>,
    /// The flag or variable it was given as, for messages.
    pub given_as: &'static str,
    pub max_age: PolicyDuration,
}

/// `--plan` else `CLEANUP_PLAN`, with `--plan-max-age` else
/// `CLEANUP_PLAN_MAX_AGE` else 7 days (checked even without a plan: a
/// malformed value is a mistake either way). The server engine cannot
/// apply a plan: GitLab's bulk API deletes by pattern, not tag by tag.
pub fn resolve(
    flag: Option<PathBuf>,
    max_age_flag: Option<String>,
    env: &CleanupEnv,
    engine: Engine,
) -> Result<PlanOptions, ConfigError> {
    let (file, given_as) = match (flag, env.path(&env.cleanup_plan)) {
        (Some(file), _) => (Some(file), "--plan"),
        (None, Some(file)) => (Some(file), "CLEANUP_PLAN"),
        (None, None) => (None, "--plan"),
    };
    let (text, name) = match (max_age_flag, env.string(&env.cleanup_plan_max_age)) {
        (Some(text), _) => (text, "--plan-max-age"),
        (None, Some(text)) => (text, "CLEANUP_PLAN_MAX_AGE"),
        (None, None) => (DEFAULT_PLAN_MAX_AGE.to_string(), "--plan-max-age"),
    };
    let max_age = parse_duration(text.trim())
        .map_err(|err| ConfigError::setting(name, format!("{name}: {err}")))?;
    if engine == Engine::Server && file.is_some() {
        return Err(ConfigError::argument(
            "--engine",
            format!("{given_as} applies a plan tag by tag, which GitLab's bulk-delete API cannot: use the client engine (unset CLEANUP_ENGINE or pass --engine client)"),
        ));
    }
    Ok(PlanOptions {
        file,
        given_as,
        max_age,
    })
}
