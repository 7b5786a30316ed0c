//! `registry-cleanup run`: the policy applied to every repository of the
//! project, by the tool itself (client engine) or by GitLab's bulk-delete
//! API (server engine).

use crate::commands::exit::CommandResult;

use crate::commands::finish::{finish, finish_stream, start_stream};
use crate::config::cli::Engine;
use crate::config::options::{RunOptions, Scope};
use crate::domain::exit::Exit;
use crate::domain::policy::Policy;
use crate::execute::client_engine::{ClientReport, ClientRun};
use crate::execute::scope;
use crate::execute::server_engine as server;
use crate::output::report::{Report, ReportedTagRule};

pub async fn run(options: RunOptions) -> CommandResult {
    let policy = Policy::load(&options.policy)?;
    let (clients, gitlab) = scope::clients_for(&options.scope, &options.connection)?;
    let mut repositories = scope::repositories(&options.scope, &clients, &gitlab).await?;
    // For the report only: one request, and no failure when not readable. In
    // a group, each project's rules still protect its tags through its
    // repositories' registry tokens; the report's list is per project and
    // left out.
    let tag_rules: Vec<ReportedTagRule> = if options.scope == Scope::Project {
        match gitlab.tag_rules().await {
            Ok(rules) => rules.iter().flatten().map(ReportedTagRule::from).collect(),
            Err(err) => {
                tracing::warn!(error = %err, "could not read the project's tag protection rules");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let warnings = crate::execute::client_engine::policy_warnings(&policy, &repositories);
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
        let mut report = start_stream(head, options.report.as_deref(), &options.counts)?;
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
                crate::output::report::plural(report.totals.deleted, "tag", "tags")
            );
            Ok(Exit::Failed)
        }
        None => Ok(exit),
    }
}
