//! The client engine: list → plan → guard → execute → report.
//!
//! Each repository is listed and planned, and its listed tags dropped right
//! after planning ([`PlanOutline`]), so what a run holds grows with the
//! tags it deletes, not with the tags it lists. The guard sees every plan
//! before the first delete; the executor returns one outcome per planned
//! deletion, and the report is built from plan and outcomes.

use std::time::Duration;

use chrono::Utc;
use futures::stream::{self, StreamExt};
use tokio::sync::Semaphore;

use crate::commands::Clients;
use crate::config::ConfigError;
use crate::deleter::{Outcome, Target};
use crate::error::{Exit, ExitCode};
use crate::gitlab::{GitLab, RepositoryInfo};
use crate::listing::{listing_progress, Lister};
use crate::names::TagName;
use crate::planner::{plan_repository, PlanOutline};
use crate::policy::Policy;
use crate::progress::Progress;
use crate::report::{Report, RepositoryReport};

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
}

impl ClientRun<'_> {
    pub async fn run(
        &self,
        repositories: Vec<RepositoryInfo>,
    ) -> Result<ClientReport, ConfigError> {
        let planned = self.list_and_plan(repositories).await?;
        let refused = self.guard(&planned);
        let write = !self.dry_run && refused.is_none();
        let repositories = self.execute(planned, write).await;
        // The report shows a refused plan as a dry run: nothing was deleted.
        let mut report = Report::new(self.engine, !write);
        for repository in repositories {
            report.push(repository);
        }
        Ok(ClientReport { report, refused })
    }

    /// Lists and plans every repository. A listing that failed because of
    /// our own configuration (a token service on another origin, missing
    /// credentials) fails the same way everywhere: a configuration error
    /// for the whole run, exit 2.
    async fn list_and_plan(
        &self,
        repositories: Vec<RepositoryInfo>,
    ) -> Result<Vec<Planned>, ConfigError> {
        let now = Utc::now();
        let listing = listing_progress(&repositories);
        let ticker = listing.tick(Duration::from_secs(5));
        let lister = Lister::new(
            &self.clients.registry,
            self.gitlab,
            self.clients.concurrency,
            !self.dry_run,
        );
        let listed: Vec<(Planned, Option<String>)> = stream::iter(repositories)
            .map(|info| {
                let (listing, lister) = (&listing, &lister);
                async move {
                    let need_details = self.policy.needs_dates(&info.path);
                    match lister.list(&info, need_details, listing).await {
                        Ok((tags, source)) => {
                            tracing::info!(repository = %info.path, tags = tags.len(), source = ?source, "listed");
                            // Refs are not listed yet (issue 13: the REST listing
                            // comes separately): `None` claims nothing through
                            // `when_ref`, and the plan warns.
                            let plan = plan_repository(self.policy, &info.path, &tags, None, now);
                            drop(tags);
                            for warning in plan.warnings() {
                                tracing::warn!(repository = %info.path, "{warning}");
                            }
                            let plan = Ok(plan.into_outline());
                            (Planned { info, plan }, None)
                        }
                        Err(err) => {
                            tracing::error!(repository = %info.path, error = %err, "listing failed; nothing will be deleted here");
                            let config_error =
                                (err.exit_code() == Exit::Usage).then(|| err.to_string());
                            let plan = Err(format!("listing failed, nothing deleted: {err}"));
                            (Planned { info, plan }, config_error)
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
            .map(|Planned { info, plan }| {
                let (deleter, deleting, room) = (&deleter, &deleting, &room);
                async move {
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
            })
            .buffer_unordered(REPOSITORY_CONCURRENCY * concurrency)
            .collect()
            .await;
        drop(ticker);
        repositories.sort_by(|a, b| a.path.cmp(&b.path));
        repositories
    }
}
