//! `registry-cleanup run`: the policy applied to every repository of the
//! project, by the tool itself (client engine) or by GitLab's bulk-delete
//! API (server engine).

use anyhow::Context as _;

use super::{finish, finish_stream, Clients};
use crate::cli::Engine;
use crate::engine::client::{ClientReport, ClientRun};
use crate::engine::server;
use crate::error::Exit;
use crate::options::{RunOptions, Scope};
use crate::policy::Policy;
use crate::report::{Report, ReportedTagRule};
use crate::report_stream::ReportStream;

pub async fn run(options: RunOptions) -> anyhow::Result<Exit> {
    let policy = Policy::load(&options.policy)?;
    let (clients, gitlab, mut repositories, tag_rules) = match &options.scope {
        Scope::Project => {
            let clients = Clients::new(&options.connection)?;
            let gitlab = clients.require_gitlab()?;
            let repositories = gitlab
                .repositories()
                .await
                .context("listing the project's container repositories")?;
            // For the report only: one request, and no failure when not readable.
            let tag_rules: Vec<ReportedTagRule> = match gitlab.tag_rules().await {
                Ok(rules) => rules.iter().flatten().map(ReportedTagRule::from).collect(),
                Err(err) => {
                    tracing::warn!(error = %err, "could not read the project's tag protection rules");
                    Vec::new()
                }
            };
            (clients, gitlab, repositories, tag_rules)
        }
        Scope::Instance => {
            let (clients, gitlab, repositories) =
                instance_repositories(&options.connection).await?;
            (clients, gitlab, repositories, Vec::new())
        }
        Scope::Group(group) => {
            let (clients, gitlab, repositories) =
                group_repositories(&options.connection, group).await?;
            // Each project's rules still protect its tags through its
            // repositories' registry tokens; the report's list is per project
            // and left out here.
            (clients, gitlab, repositories, Vec::new())
        }
    };
    let warnings = crate::engine::client::policy_warnings(&policy, &repositories);
    if let Some(shard) = options.shard {
        let listed = repositories.len();
        repositories.retain(|info| shard.contains(info.path.as_str()));
        tracing::info!(shard = %shard, listed, kept = repositories.len(), "this shard's repositories");
    }
    tracing::info!(
        repositories = repositories.len(),
        engine = options.engine.name(),
        dry_run = options.dry_run,
        "starting"
    );
    // What each rule does, durations in words, so that a run's log can be
    // read against its summary without opening the policy file.
    for rule in &policy.rules {
        tracing::info!("rule {}", rule.summary());
    }

    if options.engine == Engine::Server {
        let origin = options.policy.display().to_string();
        let rules = server::rules_by_repository(&policy, &origin, &repositories)?;
        if !options.dry_run {
            let mut report = server::execute(&gitlab, &policy, &rules, &repositories).await;
            report.gitlab_tag_rules = tag_rules;
            report.policy_file = Some(options.policy.display().to_string());
            report.shard = options.shard;
            clients.log_stats();
            return finish(&report, options.counts.with_report(options.report.as_ref()));
        }
        println!("dry run: the server engine sends no bulk call; this is the plan the client engine computes");
    }
    clients.probe_registry().await?;
    let client = ClientRun {
        clients: &clients,
        gitlab: &gitlab,
        per_project: matches!(options.scope, Scope::Group(_)),
        registry_only: options.scope == Scope::Instance,
        policy: &policy,
        dry_run: options.dry_run,
        max_deletions: options.max_deletions,
        engine: options.engine.name(),
    };
    // A group streams, so memory does not grow with it; a guard must see
    // the whole plan before the first delete, so it does not.
    if options.scope != Scope::Project && options.max_deletions.is_none() {
        let now = chrono::Utc::now();
        let mut head = Report::new(client.engine, options.dry_run);
        head.shard = options.shard;
        head.planned_with(now, &options.policy);
        head.warnings = warnings;
        let mut report = ReportStream::create(head, options.report.as_deref())?;
        client.stream(repositories, now, &mut report).await?;
        clients.log_stats();
        return finish_stream(report, &options.counts);
    }
    let ClientReport {
        mut report,
        refused,
    } = client.run(repositories).await?;
    report.gitlab_tag_rules = tag_rules;
    report.policy_file = Some(options.policy.display().to_string());
    report.shard = options.shard;
    report.warnings = warnings;
    report.refused_over_limit = refused;
    clients.log_stats();
    let exit = finish(&report, options.counts.with_report(options.report.as_ref()))?;
    match refused {
        Some(limit) => {
            eprintln!(
                "registry-cleanup: refused: the plan deletes {}, more than the limit of {limit} (--max-deletions / CLEANUP_MAX_DELETIONS); nothing was deleted. Check the policy with `registry-cleanup run --dry-run`, then raise the limit if the plan is right",
                crate::report::plural(report.totals.deleted, "tag", "tags")
            );
            Ok(Exit::Failed)
        }
        None => Ok(exit),
    }
}

/// The clients for group mode (an access token, refused before any request
/// without one) and the group's repositories, every project's.
pub(crate) async fn group_repositories(
    connection: &crate::options::Connection,
    group: &str,
) -> anyhow::Result<(
    Clients,
    std::sync::Arc<crate::gitlab::GitLab>,
    Vec<crate::gitlab::RepositoryInfo>,
)> {
    let clients = Clients::for_group(connection)?;
    let gitlab = clients
        .gitlab
        .clone()
        .ok_or_else(|| crate::config::ConfigError::new(crate::gitlab::GROUP_TOKEN_ADVICE))?;
    let repositories = gitlab
        .group_repositories(group)
        .await
        .with_context(|| format!("listing the container repositories of the group {group}"))?;
    Ok((clients, gitlab, repositories))
}

/// The clients for instance mode (an administrator's access token, refused
/// before any request without one) and every repository of the registry,
/// from its catalog. Catalog entries are paths only: no project, no REST
/// id, so this mode lists through `/gitlab/v1` and deletes by tag through
/// the registry, and refuses (exit 2, before the catalog is read) a
/// registry that does not say it can do both.
pub(crate) async fn instance_repositories(
    connection: &crate::options::Connection,
) -> anyhow::Result<(
    Clients,
    std::sync::Arc<crate::gitlab::GitLab>,
    Vec<crate::gitlab::RepositoryInfo>,
)> {
    use crate::config::ConfigError;
    let clients = Clients::for_instance(connection)?;
    let gitlab = clients
        .gitlab
        .clone()
        .ok_or_else(|| ConfigError::new("--instance needs GITLAB_TOKEN"))?;
    let (tag_delete, gitlab_v1) = clients
        .registry
        .announced_capabilities()
        .await
        .context("asking the registry what it can do (GET /v2/)")?;
    if tag_delete != Some(true) {
        return Err(ConfigError::new(
            "--instance deletes through the registry API only (delete by tag), and this registry does not announce tag delete (gitlab-container-registry-features on GET /v2/): nothing was done. Clean groups with --group instead, which can fall back to GitLab's REST API",
        )
        .into());
    }
    if gitlab_v1 != Some(true) {
        return Err(ConfigError::new(
            "--instance lists tags through the registry's /gitlab/v1 API (GitLab's container registry with its metadata database), which this registry does not serve: nothing was done. Clean groups with --group instead",
        )
        .into());
    }
    let paths = clients
        .registry
        .catalog()
        .await
        .context("listing the registry's catalog")?;
    let repositories = paths
        .into_iter()
        .map(|path| crate::gitlab::RepositoryInfo {
            // Never used: nothing in instance mode goes through REST.
            id: 0,
            path,
            tags_count: None,
            project_id: None,
            created_at: None,
            status: None,
        })
        .collect();
    Ok((clients, gitlab, repositories))
}
