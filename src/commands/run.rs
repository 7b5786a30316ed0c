//! `registry-cleanup run`: the policy applied to every repository of the
//! project, by the tool itself (client engine) or by GitLab's bulk-delete
//! API (server engine).

use anyhow::Context as _;

use super::{finish, Clients};
use crate::cli::Engine;
use crate::engine::client::{ClientReport, ClientRun};
use crate::engine::server;
use crate::error::Exit;
use crate::options::RunOptions;
use crate::policy::Policy;
use crate::report::ReportedTagRule;

pub async fn run(options: RunOptions) -> anyhow::Result<Exit> {
    let policy = Policy::load(&options.policy)?;
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
            clients.log_stats();
            return finish(&report, options.counts.with_report(options.report.as_ref()));
        }
        println!("dry run: the server engine sends no bulk call; this is the plan the client engine computes");
    }
    clients.probe_registry().await?;
    let ClientReport {
        mut report,
        refused,
    } = ClientRun {
        clients: &clients,
        gitlab: &gitlab,
        policy: &policy,
        dry_run: options.dry_run,
        max_deletions: options.max_deletions,
        engine: options.engine.name(),
    }
    .run(repositories)
    .await?;
    report.gitlab_tag_rules = tag_rules;
    report.policy_file = Some(options.policy.display().to_string());
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
