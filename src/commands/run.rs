//! `registry-cleanup run`: the policy applied to every repository of the
//! project, by the tool itself (client engine) or by GitLab's bulk-delete
//! API (server engine).

use std::sync::Arc;

use crate::commands::apply;
use crate::commands::exit::{CommandResult, Failure};
use crate::commands::signals;
use crate::execute::record::JournalWitness;
use crate::execute::stop::Stop;
use crate::gitlab::client::GitLab;
use crate::output::journal::{journal_path, Journal};

use crate::commands::finish::{finish, finish_stream, start_stream};
use crate::config::cli::Engine;
use crate::config::options::{RunOptions, Scope};
use crate::domain::exit::Exit;
use crate::domain::policy::Policy;
use crate::execute::client_engine::{policy_warnings, ClientRun};
use crate::execute::scope;
use crate::execute::server_engine as server;
use crate::output::report::{plural, Report, ReportedTagRule};

pub async fn run(options: RunOptions) -> CommandResult {
    let policy = load_policy(&options)?;
    // `--plan` is read and checked before any request (refused: exit 2).
    let provenance = apply::provenance(&options)?;
    let applying = apply::load(&options, &provenance, chrono::Utc::now())?;
    let (clients, gitlab) = scope::clients_for(&options.scope, &options.connection)?;
    let mut repositories = scope::repositories(&options.scope, &clients, &gitlab, true).await?;
    let tag_rules = reported_tag_rules(&options, &gitlab).await;
    let warnings = policy_warnings(&policy, &repositories);
    if let Some(shard) = options.shard {
        let listed = repositories.len();
        repositories.retain(|info| shard.contains(info.path.as_str()));
        tracing::info!(shard = %shard, listed, kept = repositories.len(), "this shard's repositories");
    }
    log_start(&options, &policy, repositories.len());
    // The report's head, complete before the first repository.
    let now = chrono::Utc::now();
    let mut head = Report::new(options.engine.name(), options.dry_run);
    head.planned_with(now, &options.policy);
    (head.shard, head.gitlab_tag_rules, head.warnings) = (options.shard, tag_rules, warnings);
    apply::describe(&mut head, provenance, applying.as_ref(), &repositories);
    let outputs = options.counts.with_report(options.report.as_ref());

    if options.engine == Engine::Server {
        let origin = options.policy.display().to_string();
        let rules = server::rules_by_repository(&policy, &origin, &repositories)?;
        if !options.dry_run {
            // GitLab runs the bulk calls later: no clock, no plan to warn about.
            head.now = None;
            head.warnings.clear();
            let report = server::execute(head, &gitlab, &policy, &rules, &repositories).await;
            clients.log_stats();
            return finish(&report, outputs);
        }
        println!("dry run: the server engine sends no bulk call; this is the plan the client engine computes");
    }
    clients.probe_registry().await?;
    let journal = journal(&options)?;
    let stop = Arc::new(Stop::default());
    signals::watch(stop.clone());
    let client = ClientRun {
        clients: &clients,
        gitlab: &gitlab,
        per_project: matches!(options.scope, Scope::Group(_)),
        registry_only: options.scope == Scope::Instance,
        policy: &policy,
        dry_run: options.dry_run,
        max_deletions: options.max_deletions,
        journal,
        record_digests: options.report.is_some(),
        stop: Some(stop.clone()),
        plan: applying.map(|applying| applying.gate),
    };
    // A project's report is held whole; a group's or the instance's is
    // written as each repository finishes, so memory does not grow with it.
    let report = if options.scope == Scope::Project {
        let mut report = head;
        client.drive(repositories, now, &mut report).await?;
        clients.log_stats();
        let exit = finish(&report, outputs)?;
        report
            .refused_over_limit
            .map(|limit| (limit, report.totals.deleted))
            .ok_or(exit)
    } else {
        let mut stream = start_stream(head, options.report.as_deref(), &options.counts)?;
        client.drive(repositories, now, &mut stream).await?;
        clients.log_stats();
        let (exit, report) = finish_stream(stream, &options.counts)?;
        report
            .refused_over_limit
            .map(|limit| (limit, report.totals.deleted))
            .ok_or(exit)
    };
    if let Some(signal) = stop.signal() {
        return Ok(signal.exit());
    }
    // `Ok` is the refusal (limit, planned); `Err` the exit of a run that went on.
    Ok(report.map_or_else(|exit| exit, |(limit, planned)| refused(limit, planned)))
}

/// `--max-deletions` refused the plan: said on stderr, exit 1.
fn refused(limit: usize, planned: usize) -> Exit {
    eprintln!(
        "registry-cleanup: refused: the plan deletes {}, more than the limit of {limit} (--max-deletions / CLEANUP_MAX_DELETIONS); nothing was deleted. Check the policy with `registry-cleanup run --dry-run`, then raise the limit if the plan is right",
        plural(planned, "tag", "tags")
    );
    Exit::Failed
}

/// The policy file, checked for this scope and engine (exit 2 before any
/// request).
fn load_policy(options: &RunOptions) -> Result<Policy, Failure> {
    let policy = Policy::load(&options.policy)?;
    scope::check_policy(&policy, &options.policy, &options.scope)?;
    crate::config::ledger::check_run(
        &policy,
        &options.policy.display().to_string(),
        options.engine,
        options.connection.ledger.as_ref(),
    )?;
    Ok(policy)
}

/// The project's tag rules, for the report only: one request, and no
/// failure when not readable. In a group, each project's rules still
/// protect its tags through its repositories' registry tokens; the
/// report's list is per project and left out.
async fn reported_tag_rules(options: &RunOptions, gitlab: &GitLab) -> Vec<ReportedTagRule> {
    if options.scope != Scope::Project {
        return Vec::new();
    }
    match gitlab.tag_rules().await {
        Ok(rules) => rules.iter().flatten().map(ReportedTagRule::from).collect(),
        Err(err) => {
            tracing::warn!(error = %err, "could not read the project's tag protection rules");
            Vec::new()
        }
    }
}

fn log_start(options: &RunOptions, policy: &Policy, repositories: usize) {
    tracing::info!(
        repositories,
        engine = options.engine.name(),
        dry_run = options.dry_run,
        "starting"
    );
    // What each rule does, durations in words, so that a run's log can be
    // read against its summary without opening the policy file.
    for rule in &policy.rules {
        tracing::info!("rule {}", rule.summary());
    }
}

/// A live run records each deletion as it happens, next to its report.
fn journal(options: &RunOptions) -> Result<Option<Arc<JournalWitness>>, Failure> {
    Ok(match (&options.report, options.dry_run) {
        (Some(report), false) => Some(Arc::new(JournalWitness::new(Journal::create(
            &journal_path(report),
        )?))),
        _ => None,
    })
}
