//! The client engine: list → plan → guard → execute → report.
//!
//! Each repository is listed and planned, and its listed tags dropped right
//! after planning ([`PlanOutline`]), so what a run holds grows with the
//! tags it deletes, not with the tags it lists. The guard sees every plan
//! before the first delete; the executor returns one outcome per planned
//! deletion, and the report is built from plan and outcomes.
//!
//! Group and instance runs without a guard stream instead
//! ([`ClientRun::stream`]): each repository goes list → plan → delete →
//! report on its own, a window at a time, so what they hold grows with the
//! largest repository, not with the group. Either way a repository's
//! removal (`remove_empty_repositories`) follows its deletions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tokio::sync::{OnceCell, Semaphore};

use crate::domain::config_error::ConfigError;
use crate::domain::exit::{Exit, ExitCode};
use crate::domain::lint;
use crate::domain::model::Outcome;
use crate::domain::model::Refs;
use crate::domain::model::RepositoryInfo;
use crate::domain::model::Tag;
use crate::domain::names::{RepositoryPath, TagName};
use crate::domain::planner::{plan_owned_repository_with_ledger, PlanOutline};
use crate::domain::policy::Policy;
use crate::execute::clients::Clients;
use crate::execute::deleter::{Deleter, Target};
use crate::execute::listing::{listing_progress, Lister};
use crate::execute::removal::{self, Removal};
use crate::gitlab::client::{GitLab, GitLabError};
use crate::ledger::client::read_pulls;
use crate::output::report::{
    ProtectedTag, Report, ReportError, RepositoryRemoval, RepositoryReport,
};
use crate::output::report_stream::ReportStream;
use crate::registry::auth::MAX_SCOPES_PER_TOKEN;
use crate::registry::client::Registry;
use crate::wire::progress::Progress;

/// Repositories listed at once; each also overlaps its own tag requests. Each
/// holds its whole tag list while it is listed and planned, so few at once.
const REPOSITORY_CONCURRENCY: usize = 2;

/// What the client engine was asked to do.
pub struct ClientRun<'a> {
    pub clients: &'a Clients,
    pub gitlab: &'a Arc<GitLab>,
    /// Group mode: the repositories belong to many projects, and each one's
    /// REST calls and git refs are its own project's
    /// (`RepositoryInfo::project_id`).
    pub per_project: bool,
    /// Instance mode: repositories known by path only (the catalog), so
    /// nothing goes through REST (no fallback deleter, no refs).
    pub registry_only: bool,
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

/// Why a streamed run ([`ClientRun::stream`]) stopped: a configuration
/// problem its first repository showed (exit 2, nothing deleted), or the
/// report could not be written (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

impl ExitCode for StreamError {
    fn exit_code(&self) -> Exit {
        match self {
            StreamError::Config(err) => err.exit_code(),
            StreamError::Report(err) => err.exit_code(),
        }
    }
}

/// One repository after listing and planning, or why nothing will be
/// attempted in it.
struct Planned {
    info: RepositoryInfo,
    plan: Result<PlanOutline, String>,
    /// Tags GitLab's tag rules protect, with the reason (step 1).
    protected_by_gitlab: Vec<ProtectedTag>,
}

/// What the policy gets wrong for these repositories (`lint`: rules that
/// match none of them, rules an earlier rule leaves nothing to claim),
/// logged, for the report's `warnings`. Given every repository the run
/// covers, before sharding: a rule matching only another shard's
/// repositories is not wrong.
pub fn policy_warnings(policy: &Policy, repositories: &[RepositoryInfo]) -> Vec<String> {
    let paths: Vec<&str> = repositories.iter().map(|info| info.path.as_str()).collect();
    let mut warnings = lint::rules_matching_no_repository(policy, &paths);
    warnings.extend(lint::shadowed_rules(policy));
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    warnings
}

impl ClientRun<'_> {
    pub async fn run(
        &self,
        repositories: Vec<RepositoryInfo>,
    ) -> Result<ClientReport, ConfigError> {
        let refs = self.refs(&repositories).await;
        let now = Utc::now();
        let planned = self.list_and_plan(repositories, &refs, now).await?;
        let refused = self.guard(&planned);
        let write = !self.dry_run && refused.is_none();
        let repositories = self.execute(planned, write).await;
        // The report shows a refused plan as a dry run: nothing was deleted.
        let mut report = Report::new(self.engine, !write);
        report.now = Some(now);
        for repository in repositories {
            report.push(repository);
        }
        Ok(ClientReport { report, refused })
    }

    /// The REST client for a repository: its own project's in group mode.
    fn gitlab_for(&self, info: &RepositoryInfo) -> Arc<GitLab> {
        self.gitlab.for_repository(info, self.per_project)
    }

    /// Which project's refs a repository is planned with (`None`: the
    /// project's, outside group mode).
    fn project_key(&self, info: &RepositoryInfo) -> Option<u64> {
        info.project_id.filter(|_| self.per_project)
    }

    /// The git refs of each project, listed once per project, and only for
    /// projects where some repository's rules look at them (`when_ref`,
    /// `per_ref`). Never an error: a refused or failed listing gives refs
    /// with `complete: false` and the reason.
    async fn refs(&self, repositories: &[RepositoryInfo]) -> BTreeMap<Option<u64>, Refs> {
        if self.registry_only {
            // No project known: `when_ref` rules claim nothing, and say so.
            return BTreeMap::new();
        }
        let mut projects: BTreeMap<Option<u64>, &RepositoryInfo> = BTreeMap::new();
        for info in repositories {
            if self.policy.needs_refs(&info.path) {
                projects.entry(self.project_key(info)).or_insert(info);
            }
        }
        let mut refs = BTreeMap::new();
        for (project, info) in projects {
            let listed = self.gitlab_for(info).refs().await;
            tracing::info!(
                project = ?project,
                complete = listed.complete,
                slugs = listed.slugs.len(),
                open_mrs = listed.open_mrs.len(),
                "listed the project's git refs"
            );
            refs.insert(project, listed);
        }
        refs
    }

    /// Lists and plans every repository. A listing that failed because of
    /// our own configuration (a token service on another origin, missing
    /// credentials) fails the same way everywhere: a configuration error
    /// for the whole run, exit 2.
    async fn list_and_plan(
        &self,
        repositories: Vec<RepositoryInfo>,
        refs: &BTreeMap<Option<u64>, Refs>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Planned>, ConfigError> {
        let listing = listing_progress(&repositories);
        let ticker = listing.tick(Duration::from_secs(5));
        let listed: Vec<(Planned, Option<String>)> = stream::iter(repositories)
            .map(|info| self.list_and_plan_one(info, refs, now, &listing))
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

    /// Lists and plans one repository; the listing's error text when it
    /// failed because of our own configuration.
    async fn list_and_plan_one(
        &self,
        info: RepositoryInfo,
        refs: &BTreeMap<Option<u64>, Refs>,
        now: chrono::DateTime<Utc>,
        listing: &Progress,
    ) -> (Planned, Option<String>) {
        let gitlab = self.gitlab_for(&info);
        // A dry run asks for `pull,delete` too (nothing is written with
        // it): only that token carries GitLab's tag rules, and the dry run
        // must plan exactly what the live run will.
        let lister = Lister::new(
            &self.clients.registry,
            &gitlab,
            self.clients.concurrency,
            true,
        );
        let refs = refs.get(&self.project_key(&info));
        let need_details = self.policy.needs_dates(&info.path);
        match lister.list(&info, need_details, listing).await {
            Ok((mut tags, source)) => {
                tracing::info!(repository = %info.path, tags = tags.len(), source = ?source, "listed");
                let protected_by_gitlab =
                    apply_tag_rules(&self.clients.registry, &info, &mut tags).await;
                let ledger = read_pulls(
                    (self.clients.ledger.as_deref())
                        .filter(|_| self.policy.needs_pulls(&info.path)),
                    &info.path,
                    &mut tags,
                )
                .await;
                let plan = plan_owned_repository_with_ledger(
                    self.policy,
                    &info.path,
                    tags,
                    refs,
                    &ledger,
                    now,
                );
                for warning in plan.warnings() {
                    tracing::warn!(repository = %info.path, "{warning}");
                }
                let plan = Ok(plan.into_outline());
                (
                    Planned {
                        info,
                        plan,
                        protected_by_gitlab,
                    },
                    None,
                )
            }
            Err(err) => {
                tracing::error!(repository = %info.path, error = %err, "listing failed; nothing will be deleted here");
                let config_error = (err.exit_code() == Exit::Usage).then(|| err.to_string());
                let plan = Err(format!("listing failed, nothing deleted: {err}"));
                let protected_by_gitlab = Vec::new();
                (
                    Planned {
                        info,
                        plan,
                        protected_by_gitlab,
                    },
                    config_error,
                )
            }
        }
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
        let deleter = self.shared_deleter();
        // Repositories are deleted from side by side. Each first takes as many
        // units of `room` as it has deletions, up to CLEANUP_CONCURRENCY: about
        // two large repositories at a time (each holds its outcomes until done),
        // or many small ones, so that slots are not left idle. The throttle in
        // the HTTP layer keeps the requests in flight within CLEANUP_CONCURRENCY.
        let room = Semaphore::new(REPOSITORY_CONCURRENCY * concurrency);
        let mut repositories: Vec<RepositoryReport> = stream::iter(planned)
            .map(|planned| self.execute_one(planned, write, &deleter, &deleting, &room))
            .buffer_unordered(REPOSITORY_CONCURRENCY * concurrency)
            .collect()
            .await;
        drop(ticker);
        repositories.sort_by(|a, b| a.path.cmp(&b.path));
        repositories
    }

    /// Carries out one repository's plan (when `write`) and reports it.
    async fn execute_one(
        &self,
        planned: Planned,
        write: bool,
        shared_deleter: &Deleter,
        deleting: &Progress,
        room: &Semaphore,
    ) -> RepositoryReport {
        let Planned {
            info,
            plan,
            protected_by_gitlab,
        } = planned;
        let concurrency = self.clients.concurrency;
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
                return RepositoryReport::from_plan(plan, None);
            }
            let target = Target {
                path: info.path.clone(),
                id: Some(info.id),
            };
            // Group mode: the repository's own project, for REST fallbacks.
            let own_deleter = match (self.per_project, info.project_id) {
                (true, Some(project)) => Some(self.project_deleter(project)),
                _ => None,
            };
            let deleter = own_deleter.as_ref().unwrap_or(shared_deleter);
            let units = plan.delete.len().min(concurrency);
            // Never closed: the error case cannot happen.
            let _room = room.acquire_many(units as u32).await.ok();
            let tags: Vec<TagName> = plan.delete.iter().map(|d| d.tag.name.clone()).collect();
            let outcomes: Vec<Outcome> = deleter.delete_tags(&target, &tags, deleting).await;
            RepositoryReport::from_plan(plan, Some(&outcomes))
        }
        .await;
        name_gitlab_rules(&mut repository, &protected_by_gitlab);
        repository.protected_by_gitlab = protected_by_gitlab;
        if self.policy.remove_empty_repositories {
            if let Some(decision) = removal::decide(&info, &repository, Utc::now()) {
                repository.removal = Some(self.remove_repository(&info, decision, write).await);
            }
        }
        repository
    }

    /// Carries out a `remove_empty_repositories` decision (when `write`).
    async fn remove_repository(
        &self,
        info: &RepositoryInfo,
        decision: Removal,
        write: bool,
    ) -> RepositoryRemoval {
        let skipped = |reason: &str| {
            RepositoryRemoval::new(RepositoryRemoval::SKIPPED, Some(reason.to_string()))
        };
        match decision {
            Removal::Skip(reason) => skipped(&reason),
            Removal::Remove if self.registry_only => skipped(
                "instance mode works through the registry only, and only GitLab's REST API removes a repository",
            ),
            Removal::Remove if !write => RepositoryRemoval::new(RepositoryRemoval::WOULD_REMOVE, None),
            Removal::Remove => {
                let gitlab = self.gitlab_for(info);
                let failed = |err: GitLabError| {
                    tracing::error!(repository = %info.path, error = %err, "the repository could not be removed");
                    RepositoryRemoval::new(RepositoryRemoval::FAILED, Some(err.to_string()))
                };
                // A push may have come since the listing: never remove a tag
                // nobody planned to delete along with its repository.
                match gitlab.repository_has_tags(info.id).await {
                    Ok(Some(false)) => {}
                    Ok(Some(true)) => return skipped("a tag was pushed to it since it was listed"),
                    Ok(None) => return skipped("it is already gone"),
                    Err(err) => return failed(err),
                }
                match gitlab.delete_repository(info.id).await {
                    Ok(true) => {
                        tracing::info!(repository = %info.path, "repository removed");
                        RepositoryRemoval::new(RepositoryRemoval::REMOVED, None)
                    }
                    Ok(false) => skipped("it is already gone"),
                    Err(err) => failed(err),
                }
            }
        }
    }

    /// Group mode: repositories flow list → plan → delete → report a few at
    /// a time, each report entry written (and its summary line printed) as
    /// soon as the repository is done, in path order. Memory holds the
    /// repositories in the window, not the group. Without a guard to apply
    /// (`--max-deletions` must see the whole plan first, so it takes
    /// [`ClientRun::run`]).
    ///
    /// The first repository is listed alone: a configuration problem (a
    /// token service on another origin, refused credentials) fails the same
    /// way everywhere, and shows there, before anything is deleted (exit 2).
    /// Later, such a failure is that repository's error (exit 1).
    pub async fn stream(
        &self,
        mut repositories: Vec<RepositoryInfo>,
        now: DateTime<Utc>,
        report: &mut ReportStream,
    ) -> Result<(), StreamError> {
        repositories.sort_by(|a, b| a.path.cmp(&b.path));
        let refs = self.refs(&repositories).await;
        let write = !self.dry_run;
        let concurrency = self.clients.concurrency;
        let listing = listing_progress(&repositories);
        let deleting = Progress::new("deleting tags");
        let ticker = (
            listing.tick(Duration::from_secs(5)),
            deleting.tick(Duration::from_secs(5)),
        );
        let deleter = self.shared_deleter();
        let room = Semaphore::new(REPOSITORY_CONCURRENCY * concurrency);
        // Tag lists are the large part: only this many are held at once.
        let listing_slots = Semaphore::new(REPOSITORY_CONCURRENCY);
        // Registry tokens: one `/jwt/auth` call per batch of repositories,
        // made when the batch's first repository starts (so each batch's
        // token is fresh), not one per repository.
        let batches: Vec<(Vec<RepositoryPath>, OnceCell<()>)> = repositories
            .chunks(MAX_SCOPES_PER_TOKEN)
            .map(|chunk| {
                (
                    chunk.iter().map(|info| info.path.clone()).collect(),
                    OnceCell::new(),
                )
            })
            .collect();
        let tokens_for = |index: usize| {
            let batches = &batches;
            async move {
                if let Some((paths, done)) = batches.get(index / MAX_SCOPES_PER_TOKEN) {
                    done.get_or_init(|| async {
                        let paths: Vec<&RepositoryPath> = paths.iter().collect();
                        if let Err(err) = self.clients.registry.prefetch_tokens(&paths).await {
                            // Each repository then asks for its own token.
                            tracing::debug!(error = %err, "no registry token for the batch");
                        }
                    })
                    .await;
                }
            }
        };
        let mut repositories = repositories.into_iter().enumerate();
        if let Some((index, first)) = repositories.next() {
            tokens_for(index).await;
            let (planned, config_error) = self.list_and_plan_one(first, &refs, now, &listing).await;
            if let Some(error) = config_error {
                return Err(ConfigError::new(error).into());
            }
            if write {
                deleting.add_total(planned.plan.as_ref().map_or(0, |plan| plan.delete.len()));
            }
            let repository = self
                .execute_one(planned, write, &deleter, &deleting, &room)
                .await;
            report.push(repository)?;
        }
        let mut done = stream::iter(repositories)
            .map(|(index, info)| {
                let (refs, listing, deleting) = (&refs, &listing, &deleting);
                let (deleter, room, listing_slots) = (&deleter, &room, &listing_slots);
                let tokens_for = &tokens_for;
                async move {
                    tokens_for(index).await;
                    let slot = listing_slots.acquire().await.ok();
                    let (planned, _) = self.list_and_plan_one(info, refs, now, listing).await;
                    drop(slot);
                    if write {
                        deleting
                            .add_total(planned.plan.as_ref().map_or(0, |plan| plan.delete.len()));
                    }
                    self.execute_one(planned, write, deleter, deleting, room)
                        .await
                }
            })
            .buffered(REPOSITORY_CONCURRENCY * concurrency);
        while let Some(repository) = done.next().await {
            report.push(repository)?;
        }
        drop(ticker);
        Ok(())
    }
}

impl ClientRun<'_> {
    /// The deleter for repositories without one of their own: in instance
    /// mode one that cannot fall back to REST.
    fn shared_deleter(&self) -> Deleter {
        if self.registry_only {
            Deleter::new(
                self.clients.registry.clone(),
                None,
                self.clients.concurrency,
            )
        } else {
            self.clients.deleter()
        }
    }

    fn project_deleter(&self, project: u64) -> Deleter {
        Deleter::new(
            self.clients.registry.clone(),
            Some(Arc::new(self.gitlab.for_project(project))),
            self.clients.concurrency,
        )
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
