//! The client engine: list → plan → guard → execute → report.
//!
//! Each repository is listed and planned, and its listed tags dropped right
//! after planning ([`PlanOutline`]), so what a run holds grows with the
//! tags it deletes, not with the tags it lists. The guard sees every plan
//! before the first delete; the executor returns one outcome per planned
//! deletion, and the report is built from plan and outcomes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tokio::sync::Semaphore;

use crate::commands::Clients;
use crate::config::ConfigError;
use crate::deleter::{Outcome, Target};
use crate::error::{Exit, ExitCode};
use crate::gitlab::{GitLab, RepositoryInfo};
use crate::lint;
use crate::listing::{listing_progress, Lister};
use crate::model::Refs;
use crate::model::Tag;
use crate::names::TagName;
use crate::planner::{plan_repository, PlanOutline};
use crate::policy::Policy;
use crate::progress::Progress;
use crate::registry::Registry;
use crate::report::{ProtectedTag, Report, RepositoryReport};

/// Repositories listed at once; each also overlaps its own tag requests. Each
/// holds its whole tag list while it is listed and planned, so few at once.
const REPOSITORY_CONCURRENCY: usize = 2;

/// What the client engine was asked to do.
pub struct ClientRun<'a> {
    pub clients: &'a Clients,
    pub gitlab: &'a GitLab,
    pub policy: &'a Policy,
    pub dry_run: bool,
    /// Refuse the whole run when the plan deletes more tags than this.
    pub max_deletions: Option<usize>,
    /// The engine named in the report (`server --dry-run` shows this plan).
    pub engine: &'static str,
}

/// How a client run ended.
pub struct ClientReport {
    pub report: Report,
    /// Set when the guard refused the plan: the limit it exceeded.
    pub refused: Option<usize>,
}

/// One repository after listing and planning, or why nothing will be
/// attempted in it.
struct Planned {
    info: RepositoryInfo,
    plan: Result<PlanOutline, String>,
    /// Tags GitLab's tag rules protect, with the reason (step 1).
    protected_by_gitlab: Vec<ProtectedTag>,
}

impl ClientRun<'_> {
    pub async fn run(
        &self,
        repositories: Vec<RepositoryInfo>,
    ) -> Result<ClientReport, ConfigError> {
        let warnings = self.policy_warnings(&repositories);
        let refs = self.refs(&repositories).await;
        let now = Utc::now();
        let planned = self.list_and_plan(repositories, refs.as_ref(), now).await?;
        let refused = self.guard(&planned);
        let write = !self.dry_run && refused.is_none();
        let repositories = self.execute(planned, write).await;
        // The report shows a refused plan as a dry run: nothing was deleted.
        let mut report = Report::new(self.engine, !write);
        report.now = Some(now);
        for repository in repositories {
            report.push(repository);
        }
        report.warnings = warnings;
        Ok(ClientReport { report, refused })
    }

    /// What the policy gets wrong for this project (`lint`), logged and
    /// kept for the report.
    fn policy_warnings(&self, repositories: &[RepositoryInfo]) -> Vec<String> {
        let paths: Vec<&str> = repositories.iter().map(|info| info.path.as_str()).collect();
        let mut warnings = lint::rules_matching_no_repository(self.policy, &paths);
        warnings.extend(lint::shadowed_rules(self.policy));
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        warnings
    }

    /// The project's git refs, listed once per run (the run covers one
    /// project), and only when some repository's rules look at them
    /// (`when_ref`, `per_ref`). Never an error: a refused or failed listing
    /// gives refs with `complete: false` and the reason.
    async fn refs(&self, repositories: &[RepositoryInfo]) -> Option<Refs> {
        if !repositories
            .iter()
            .any(|info| self.policy.needs_refs(&info.path))
        {
            return None;
        }
        let refs = self.gitlab.refs().await;
        tracing::info!(
            complete = refs.complete,
            slugs = refs.slugs.len(),
            open_mrs = refs.open_mrs.len(),
            "listed the project's git refs"
        );
        Some(refs)
    }

    /// Lists and plans every repository. A listing that failed because of
    /// our own configuration (a token service on another origin, missing
    /// credentials) fails the same way everywhere: a configuration error
    /// for the whole run, exit 2.
    async fn list_and_plan(
        &self,
        repositories: Vec<RepositoryInfo>,
        refs: Option<&Refs>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Planned>, ConfigError> {
        let listing = listing_progress(&repositories);
        let ticker = listing.tick(Duration::from_secs(5));
        // A dry run asks for `pull,delete` too (nothing is written with
        // it): only that token carries GitLab's tag rules, and the dry run
        // must plan exactly what the live run will.
        let lister = Lister::new(
            &self.clients.registry,
            self.gitlab,
            self.clients.concurrency,
            true,
        );
        let listed: Vec<(Planned, Option<String>)> = stream::iter(repositories)
            .map(|info| {
                let (listing, lister) = (&listing, &lister);
                async move {
                    let need_details = self.policy.needs_dates(&info.path);
                    match lister.list(&info, need_details, listing).await {
                        Ok((mut tags, source)) => {
                            tracing::info!(repository = %info.path, tags = tags.len(), source = ?source, "listed");
                            let protected_by_gitlab =
                                apply_tag_rules(&self.clients.registry, &info, &mut tags).await;
                            let plan = plan_repository(self.policy, &info.path, &tags, refs, now);
                            drop(tags);
                            for warning in plan.warnings() {
                                tracing::warn!(repository = %info.path, "{warning}");
                            }
                            let plan = Ok(plan.into_outline());
                            (Planned { info, plan, protected_by_gitlab }, None)
                        }
                        Err(err) => {
                            tracing::error!(repository = %info.path, error = %err, "listing failed; nothing will be deleted here");
                            let config_error =
                                (err.exit_code() == Exit::Usage).then(|| err.to_string());
                            let plan = Err(format!("listing failed, nothing deleted: {err}"));
                            let protected_by_gitlab = Vec::new();
                            (Planned { info, plan, protected_by_gitlab }, config_error)
                        }
                    }
                }
            })
            .buffer_unordered(REPOSITORY_CONCURRENCY)
            .collect()
            .await;
        drop(ticker);
        let mut planned = Vec::with_capacity(listed.len());
        for (repository, config_error) in listed {
            if let Some(error) = config_error {
                return Err(ConfigError::new(error));
            }
            planned.push(repository);
        }
        Ok(planned)
    }

    /// The limit a live run's plan exceeds, refusing the whole run.
    fn guard(&self, planned: &[Planned]) -> Option<usize> {
        let deletions: usize = planned
            .iter()
            .filter_map(|p| p.plan.as_ref().ok())
            .map(|plan| plan.delete.len())
            .sum();
        self.max_deletions
            .filter(|limit| !self.dry_run && deletions > *limit)
    }

    /// Carries out the plans (when `write`) and reports each repository.
    async fn execute(&self, planned: Vec<Planned>, write: bool) -> Vec<RepositoryReport> {
        let concurrency = self.clients.concurrency;
        let deleting = Progress::new("deleting tags");
        deleting.add_total(if write {
            planned
                .iter()
                .filter_map(|p| p.plan.as_ref().ok())
                .map(|plan| plan.delete.len())
                .sum()
        } else {
            0
        });
        let ticker = deleting.tick(Duration::from_secs(5));
        let deleter = self.clients.deleter();
        // Repositories are deleted from side by side. Each first takes as many
        // units of `room` as it has deletions, up to CLEANUP_CONCURRENCY: about
        // two large repositories at a time (each holds its outcomes until done),
        // or many small ones, so that slots are not left idle. The throttle in
        // the HTTP layer keeps the requests in flight within CLEANUP_CONCURRENCY.
        let room = Semaphore::new(REPOSITORY_CONCURRENCY * concurrency);
        let mut repositories: Vec<RepositoryReport> = stream::iter(planned)
            .map(
                |Planned {
                     info,
                     plan,
                     protected_by_gitlab,
                 }| {
                    let (deleter, deleting, room) = (&deleter, &deleting, &room);
                    async move {
                        // `return` leaves this inner block with the repository's report.
                        let mut repository = async {
                            let plan = match plan {
                                Ok(plan) => plan,
                                Err(error) => {
                                    let mut repository = RepositoryReport::new(&info.path);
                                    repository.tags = info.tags_count.unwrap_or(0) as usize;
                                    repository.error = Some(error);
                                    return repository;
                                }
                            };
                            if !write || plan.delete.is_empty() {
                                return RepositoryReport::from_plan(&plan, None);
                            }
                            let target = Target {
                                path: info.path.clone(),
                                id: Some(info.id),
                            };
                            let units = plan.delete.len().min(concurrency);
                            // Never closed: the error case cannot happen.
                            let _room = room.acquire_many(units as u32).await.ok();
                            let tags: Vec<TagName> =
                                plan.delete.iter().map(|d| d.tag.name.clone()).collect();
                            let outcomes: Vec<Outcome> =
                                deleter.delete_tags(&target, &tags, deleting).await;
                            RepositoryReport::from_plan(&plan, Some(&outcomes))
                        }
                        .await;
                        name_gitlab_rules(&mut repository, &protected_by_gitlab);
                        repository.protected_by_gitlab = protected_by_gitlab;
                        repository
                    }
                },
            )
            .buffer_unordered(REPOSITORY_CONCURRENCY * concurrency)
            .collect()
            .await;
        drop(ticker);
        repositories.sort_by(|a, b| a.path.cmp(&b.path));
        repositories
    }
}

/// Step 1 of the plan, GitLab's part: marks the tags GitLab's tag rules
/// (from the repository's `pull,delete` registry token, `access[].meta`)
/// protect or make immutable as protected, and returns them with the reason.
/// No rules readable (no delete permission): nothing marked, and said; the
/// registry then refuses those deletes and they are reported as skipped.
pub async fn apply_tag_rules(
    registry: &Registry,
    info: &RepositoryInfo,
    tags: &mut [Tag],
) -> Vec<ProtectedTag> {
    let rules = match registry.tag_rules(&info.path).await {
        Ok(rules) => rules,
        Err(err) => {
            tracing::warn!(repository = %info.path, error = %err, "GitLab's tag rules could not be read (they come with a delete token): tags they protect may be planned for deletion and then refused");
            return Vec::new();
        }
    };
    let mut protected = Vec::new();
    for tag in tags.iter_mut() {
        if let Some(reason) = rules.reason(tag.name.as_str()) {
            tag.protected = true;
            protected.push(ProtectedTag {
                tag: tag.name.to_string(),
                reason,
            });
        }
    }
    protected.sort_by(|a, b| a.tag.cmp(&b.tag));
    protected
}

/// The planner sees a tag GitLab's rules protect only as marked protected;
/// the report's reason names the rule instead.
fn name_gitlab_rules(repository: &mut RepositoryReport, protected_by_gitlab: &[ProtectedTag]) {
    if protected_by_gitlab.is_empty() {
        return;
    }
    for entry in &mut repository.kept_tags {
        // Both sorted by name; only the tags marked before planning.
        if entry.kind != "protected" {
            continue;
        }
        if let Ok(found) = protected_by_gitlab.binary_search_by(|p| p.tag.as_str().cmp(&entry.tag))
        {
            entry.kind = "gitlab_tag_rule".to_string();
            entry.reason = format!(
                "protected by GitLab's tag rules: {}",
                protected_by_gitlab[found].reason
            );
        }
    }
}
