//! `run`'s part in review-then-apply: every run's report records what it
//! was made with (the policy file's sha256, the scope), so that its dry
//! run's report can serve as a plan; `run --plan REPORT.json` reads that
//! plan and checks it before any request (refused: exit 2, nothing sent),
//! then the client engine applies it through its gate
//! ([`crate::domain::applied_plan`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::options::{RunOptions, Scope};
use crate::config::settings::GitLabEnv;
use crate::domain::applied_plan::{ApplyAgainst, PlanGate, RunScope};
use crate::domain::config_error::ConfigError;
use crate::domain::model::RepositoryInfo;
use crate::domain::names::Digest;
use crate::output::plan::read_plan;
use crate::output::report::{plural, AppliedPlan, Report};

/// What a run's plan is made with, as its report records it.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The sha256 of the policy file's bytes.
    pub policy_digest: String,
    pub scope: RunScope,
}

/// The policy file's digest and the run's scope. The policy was read a
/// moment ago, so an error here is one reading it again.
pub fn provenance(options: &RunOptions) -> Result<Provenance, ConfigError> {
    let policy = options.policy.display().to_string();
    let bytes = std::fs::read(&options.policy)
        .map_err(|err| ConfigError::file(&policy, format!("reading the policy {policy}: {err}")))?;
    Ok(Provenance {
        policy_digest: Digest::of(&bytes).hex().to_string(),
        scope: run_scope(&options.scope)?,
    })
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

/// A reviewed plan, checked, on its way to the client engine.
#[derive(Debug)]
pub struct Applying {
    pub gate: Arc<PlanGate>,
    head: AppliedPlan,
    /// Repositories the dry run did not plan in full, and why.
    incomplete: Vec<(String, String)>,
}

/// `--plan`: reads the plan and checks it against this run, before any
/// request. A plan that must not be applied refuses the run (exit 2).
pub fn load(
    options: &RunOptions,
    provenance: &Provenance,
    now: DateTime<Utc>,
) -> Result<Option<Applying>, ConfigError> {
    let plan_options = &options.plan;
    let Some(path) = &plan_options.file else {
        return Ok(None);
    };
    let flag = plan_options.given_as;
    let shown = path.display().to_string();
    let file = read_plan(path, flag)?;
    let policy_file = options.policy.display().to_string();
    let max_age_text = plan_options.max_age.to_string();
    let against = ApplyAgainst {
        now,
        max_age: plan_options.max_age.to_timedelta(),
        max_age_text: &max_age_text,
        policy_digest: &provenance.policy_digest,
        policy_file: &policy_file,
        scope: &provenance.scope,
        shard: options.shard,
    };
    if let Some(why) = file.plan.refusal(&against) {
        return Err(ConfigError::file(
            &shown,
            format!("{flag} {shown}: refusing to apply this plan: {why}. Nothing was deleted"),
        ));
    }
    let head = AppliedPlan {
        file: shown,
        sha256: file.sha256,
        made_at: file.plan.made_at,
        deletions: file.plan.len(),
    };
    tracing::info!(
        plan = %head.file,
        sha256 = %head.sha256,
        deletions = head.deletions,
        "applying a reviewed plan: only its deletions, each re-checked against the live listing"
    );
    let incomplete = file.plan.incomplete.clone();
    Ok(Some(Applying {
        gate: Arc::new(file.plan.into_gate()),
        head,
        incomplete,
    }))
}

/// Every run's report head: the policy digest and scope; with a plan,
/// which plan, and warnings for what it leaves undone — repositories its
/// dry run did not plan in full, deletions in repositories this run does
/// not list.
pub fn describe(
    head: &mut Report,
    provenance: Provenance,
    applying: Option<&Applying>,
    repositories: &[RepositoryInfo],
) {
    head.policy_digest = Some(provenance.policy_digest);
    head.scope = Some(provenance.scope);
    let Some(applying) = applying else {
        return;
    };
    head.applied_plan = Some(applying.head.clone());
    let mut warnings = Vec::new();
    for (path, why) in &applying.incomplete {
        warnings.push(format!(
            "the plan's dry run did not plan {path} in full ({why}): only what it lists there is deleted"
        ));
    }
    let outside = applying
        .gate
        .outside(repositories.iter().map(|info| info.path.as_str()));
    for (path, deletions) in outside {
        warnings.push(format!(
            "the plan lists {} in {path}, which this run does not list (gone since, or outside its shard): not deleted",
            plural(deletions, "deletion", "deletions")
        ));
    }
    for warning in warnings {
        tracing::warn!("{warning}");
        head.warnings.push(warning);
    }
}
