//! `registry-cleanup run`: the policy applied to every repository of the
//! project, by the tool itself (client engine) or by GitLab's bulk-delete
//! API (server engine).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::stream::{self, StreamExt};
use tokio::sync::Semaphore;

use super::{finish, load_policy, CommonOptions, Context};
use crate::cli::{Engine, RunArgs};
use crate::config::CleanupEnv;
use crate::deleter::{Outcome, Target};
use crate::error::{Exit, UserError};
use crate::gitlab::{BulkDelete, GitLab, RepositoryInfo};
use crate::listing::Lister;
use crate::planner::{plan_repository, RepositoryPlan};
use crate::policy::{Policy, PolicyError, Rule};
use crate::progress::Progress;
use crate::report::{AbsentTag, FailedTag, Report, RepositoryReport, SkippedTag};

/// Repositories listed at once; each also overlaps its own tag requests. Each
/// holds its whole tag list while it is listed and planned, so few at once.
const REPOSITORY_CONCURRENCY: usize = 2;

pub async fn run(
    args: RunArgs,
    env: &CleanupEnv,
    allow_insecure_http: bool,
) -> anyhow::Result<Exit> {
    let CommonOptions {
        dry_run,
        report: report_path,
        concurrency,
    } = CommonOptions::resolve(&args.common, env)?;
    let max_deletions = env.max_deletions(args.max_deletions)?;
    let engine = match args.engine {
        Some(engine) => engine,
        None => match env.string(&env.cleanup_engine).as_deref() {
            None | Some("client") => Engine::Client,
            Some("server") => Engine::Server,
            Some(other) => {
                return Err(UserError::new(format!(
                    "CLEANUP_ENGINE={other:?} is not an engine: use client or server"
                ))
                .into())
            }
        },
    };
    let (policy_path, policy) = load_policy(args.policy.clone(), env)?;
    let ctx = Context::from_env(allow_insecure_http, concurrency)?;
    let gitlab = ctx.require_gitlab()?;
    let repositories = gitlab
        .repositories()
        .await
        .map_err(|err| err.context("listing the project's container repositories"))?;
    tracing::info!(
        repositories = repositories.len(),
        engine = engine.name(),
        dry_run,
        "starting"
    );

    if engine == Engine::Server {
        let rules = server_rules(&policy, &policy_path.display().to_string(), &repositories)?;
        if !dry_run {
            let report = server(&gitlab, &policy, &rules, &repositories).await;
            ctx.log_stats();
            return finish(&report, report_path);
        }
        println!("dry run: the server engine sends no bulk call; this is the plan the client engine computes");
    }
    let (report, refused) = client(
        &ctx,
        &gitlab,
        &policy,
        repositories,
        dry_run,
        max_deletions,
        engine,
    )
    .await?;
    ctx.log_stats();
    let exit = finish(&report, report_path)?;
    match refused {
        Some(limit) => {
            eprintln!(
                "registry-cleanup: refused: the plan deletes {} tags, more than the limit of {limit} (--max-deletions / CLEANUP_MAX_DELETIONS); nothing was deleted. Check the policy with `registry-cleanup run --dry-run`, then raise the limit if the plan is right",
                report.totals.deleted
            );
            Ok(Exit::Failed)
        }
        None => Ok(exit),
    }
}

/// One repository after listing and planning: its report entry (every
/// planned deletion under `deleted`), or why nothing will be attempted. The
/// listed tags and the plan are dropped right after planning, so what a run
/// holds grows with the tags it deletes, not with the tags it lists.
struct Planned {
    info: RepositoryInfo,
    report: Result<RepositoryReport, String>,
    /// Set when the listing failed because of our own configuration.
    user_error: Option<String>,
}

async fn client(
    ctx: &Context,
    gitlab: &Arc<GitLab>,
    policy: &Policy,
    repositories: Vec<RepositoryInfo>,
    dry_run: bool,
    max_deletions: Option<usize>,
    engine: Engine,
) -> anyhow::Result<(Report, Option<usize>)> {
    let now = Utc::now();
    let listing = Progress::new("listing tags");
    listing.add_total(
        repositories
            .iter()
            .map(|r| r.tags_count.unwrap_or(0) as usize)
            .sum(),
    );
    let ticker = listing.tick(Duration::from_secs(5));
    let lister = Lister::new(&ctx.registry, gitlab, ctx.concurrency, !dry_run);
    let planned: Vec<Planned> = stream::iter(repositories)
        .map(|info| {
            let (listing, lister) = (&listing, &lister);
            async move {
                let need_details = policy.needs_dates(&info.path);
                let listed = lister.list(&info, need_details, listing).await;
                let user_error = listed.as_ref().err().and_then(|err| {
                    err.chain()
                        .find_map(|cause| cause.downcast_ref::<UserError>())
                        .map(|user| user.0.clone())
                });
                let report = match listed {
                    Ok((tags, source)) => {
                        tracing::info!(repository = %info.path, tags = tags.len(), source = ?source, "listed");
                        let plan = plan_repository(policy, &info.path, &tags, now);
                        drop(tags);
                        let mut report = plan.to_report();
                        report.warnings.extend(plan_warnings(&plan));
                        Ok(report)
                    }
                    Err(err) => {
                        tracing::error!(repository = %info.path, error = %format!("{err:#}"), "listing failed; nothing will be deleted here");
                        Err(format!("listing failed, nothing deleted: {err:#}"))
                    }
                };
                Planned { info, report, user_error }
            }
        })
        .buffer_unordered(REPOSITORY_CONCURRENCY)
        .collect()
        .await;
    drop(ticker);
    // A listing that failed because of our own configuration (a token service
    // on another origin, missing credentials) fails the same way everywhere:
    // that is a configuration error for the whole run, exit 2.
    if let Some(error) = planned.iter().find_map(|p| p.user_error.clone()) {
        return Err(UserError::new(error).into());
    }

    let planned_deletions: usize = planned
        .iter()
        .filter_map(|p| p.report.as_ref().ok())
        .map(|r| r.deleted.len())
        .sum();
    // The limit a live run's plan exceeds, refusing the whole run.
    let refused = max_deletions.filter(|limit| !dry_run && planned_deletions > *limit);
    let write = !dry_run && refused.is_none();

    let deleting = Progress::new("deleting tags");
    deleting.add_total(if write { planned_deletions } else { 0 });
    let ticker = deleting.tick(Duration::from_secs(5));
    let deleter = ctx.deleter();
    // Repositories are deleted from side by side. Each first takes as many
    // units of `room` as it has deletions, up to CLEANUP_CONCURRENCY: about
    // two large repositories at a time (each holds its outcomes until done),
    // or many small ones, so that slots are not left idle. The throttle in
    // the HTTP layer keeps the requests in flight within CLEANUP_CONCURRENCY.
    let room = Semaphore::new(REPOSITORY_CONCURRENCY * ctx.concurrency);
    let mut repositories: Vec<RepositoryReport> = stream::iter(planned)
        .map(|Planned { info, report, .. }| {
            let (deleter, deleting, room) = (&deleter, &deleting, &room);
            async move {
                let mut repository = match report {
                    Ok(report) => report,
                    Err(error) => {
                        let mut repository = RepositoryReport::new(&info.path);
                        repository.tags = info.tags_count.unwrap_or(0) as usize;
                        repository.error = Some(error);
                        return repository;
                    }
                };
                if write && !repository.deleted.is_empty() {
                    let target = Target {
                        path: info.path.clone(),
                        id: Some(info.id),
                    };
                    let units = repository.deleted.len().min(ctx.concurrency);
                    // Never closed: the error case cannot happen.
                    let _room = room.acquire_many(units as u32).await.ok();
                    let tags: Vec<String> =
                        repository.deleted.iter().map(|d| d.tag.clone()).collect();
                    let outcomes: HashMap<String, Outcome> = deleter
                        .delete_tags(&target, &tags, deleting)
                        .await
                        .into_iter()
                        .collect();
                    apply_outcomes(&mut repository, &outcomes);
                }
                repository
            }
        })
        .buffer_unordered(REPOSITORY_CONCURRENCY * ctx.concurrency)
        .collect()
        .await;
    drop(ticker);
    repositories.sort_by(|a, b| a.path.cmp(&b.path));

    // The report shows a refused plan as a dry run: nothing was deleted.
    let mut report = Report::new(engine.name(), !write);
    for repository in repositories {
        report.push(repository);
    }
    Ok((report, refused))
}

/// Moves what did not go as planned out of `deleted`.
fn apply_outcomes(repository: &mut RepositoryReport, outcomes: &HashMap<String, Outcome>) {
    let planned = std::mem::take(&mut repository.deleted);
    for entry in planned {
        match outcomes.get(&entry.tag) {
            Some(Outcome::Deleted) => repository.deleted.push(entry),
            Some(Outcome::AlreadyAbsent) => {
                repository.already_absent.push(AbsentTag { tag: entry.tag })
            }
            Some(Outcome::Skipped(reason)) => repository.skipped.push(SkippedTag {
                tag: entry.tag,
                reason: reason.clone(),
            }),
            Some(Outcome::Failed(error)) => repository.failed.push(FailedTag {
                tag: entry.tag,
                error: error.clone(),
            }),
            None => repository.failed.push(FailedTag {
                tag: entry.tag,
                error: "internal error: not attempted".into(),
            }),
        }
    }
}

/// What the summary should shout about.
pub fn plan_warnings(plan: &RepositoryPlan) -> Vec<String> {
    if !plan.delete.is_empty() && plan.keep.is_empty() && plan.protected.is_empty() {
        tracing::warn!(repository = %plan.path, deleted = plan.delete.len(), "the plan deletes EVERY tag of this repository");
        vec![format!(
            "the plan deletes every tag of {} ({}): none is left",
            plan.path,
            plan.delete.len()
        )]
    } else {
        Vec::new()
    }
}

/// The one rule each repository hands to GitLab; more than one is a policy error.
fn server_rules<'a>(
    policy: &'a Policy,
    origin: &str,
    repositories: &[RepositoryInfo],
) -> Result<HashMap<u64, &'a Rule>, PolicyError> {
    let mut rules = HashMap::new();
    for repository in repositories {
        let applicable: Vec<&Rule> = policy
            .rules
            .iter()
            .filter(|rule| rule.repositories.is_match(&repository.path))
            .collect();
        match applicable.as_slice() {
            [] => {}
            [rule] => {
                rules.insert(repository.id, *rule);
            }
            several => {
                let names: Vec<String> = several.iter().map(|r| format!("{:?}", r.name)).collect();
                return Err(PolicyError {
                    message: format!(
                        "{origin}: repository {} has {} applicable rules ({}), but --engine server hands GitLab one rule per repository: narrow the rules' `repositories` patterns, or use --engine client",
                        repository.path,
                        several.len(),
                        names.join(", ")
                    ),
                });
            }
        }
    }
    Ok(rules)
}

/// A pattern GitLab will anchor as `\A` + pattern + `\z`: wrapped so the
/// anchors bind every top-level alternative.
fn anchored(patterns: &[&str]) -> String {
    let alternatives: Vec<String> = patterns.iter().map(|p| format!("(?:{p})")).collect();
    format!("(?:{})", alternatives.join("|"))
}

/// GitLab parses `older_than` with ChronicDuration; whole units it reads the same way.
pub fn gitlab_duration(seconds: u64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The form parameters of the bulk-delete call for one rule.
pub fn bulk_form(policy: &Policy, rule: &Rule) -> Vec<(String, String)> {
    let mut form = vec![(
        "name_regex_delete".to_string(),
        anchored(&[rule.delete.source()]),
    )];
    let mut keep: Vec<&str> = rule.keep.iter().map(|k| k.source()).collect();
    keep.extend(policy.protect.iter().map(|p| p.source()));
    if !keep.is_empty() {
        form.push(("name_regex_keep".to_string(), anchored(&keep)));
    }
    if rule.keep_n > 0 {
        form.push(("keep_n".to_string(), rule.keep_n.to_string()));
    }
    if let Some(older_than) = &rule.older_than {
        form.push((
            "older_than".to_string(),
            gitlab_duration(older_than.seconds),
        ));
    }
    form
}

async fn server(
    gitlab: &GitLab,
    policy: &Policy,
    rules: &HashMap<u64, &Rule>,
    repositories: &[RepositoryInfo],
) -> Report {
    let mut report = Report::new("server", false);
    if !policy.protect_latest {
        tracing::warn!("protect_latest: false has no effect with --engine server: GitLab never bulk-deletes `latest`");
    }
    for info in repositories {
        let mut repository = RepositoryReport::new(&info.path);
        repository.tags = info.tags_count.unwrap_or(0) as usize;
        let Some(rule) = rules.get(&info.id) else {
            repository
                .warnings
                .push("no rule applies; no bulk call sent".into());
            report.push(repository);
            continue;
        };
        let form = bulk_form(policy, rule);
        match gitlab.bulk_delete(info.id, &form).await {
            Ok(BulkDelete::Accepted) => {
                tracing::info!(repository = %info.path, rule = %rule.name, "bulk delete accepted");
                repository.warnings.push(format!(
                    "bulk delete for rule {:?} accepted: GitLab runs it in the background and reports nothing back",
                    rule.name
                ));
            }
            Ok(BulkDelete::AlreadyRequested(message)) => {
                tracing::warn!(repository = %info.path, message = %message, "bulk delete not accepted");
                repository
                    .warnings
                    .push(format!("GitLab did not run the bulk delete: {message}"));
            }
            Err(err) => {
                repository.error = Some(format!("bulk delete failed: {err:#}"));
            }
        }
        report.push(repository);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchoring_binds_every_alternative() {
        assert_eq!(anchored(&["a|b"]), "(?:(?:a|b))");
        assert_eq!(anchored(&["keep", "v\\d+"]), "(?:(?:keep)|(?:v\\d+))");
        let gitlab_regex =
            regex::Regex::new(&format!("\\A{}\\z", anchored(&["a|b"]))).expect("regex");
        assert!(gitlab_regex.is_match("a") && gitlab_regex.is_match("b"));
        assert!(!gitlab_regex.is_match("ab") && !gitlab_regex.is_match("xb"));
    }

    #[test]
    fn durations_in_units_gitlab_parses() {
        assert_eq!(gitlab_duration(90 * 86_400), "90d");
        assert_eq!(gitlab_duration(7_200), "2h");
        assert_eq!(gitlab_duration(90), "90s");
        assert_eq!(gitlab_duration(1_800), "30m");
    }
}
