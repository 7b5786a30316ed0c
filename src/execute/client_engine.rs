//! The client engine: list → plan → guard → execute → report, a repository
//! at a time, into a report sink ([`ReportSink`]: held in memory, or
//! written as it goes).
//!
//! One driver ([`ClientRun::drive`]) runs the stages for every scope:
//! - each repository is listed and planned, and its listing dropped right
//!   after planning (`PlanOutline`), so what a run holds grows with the tags
//!   it deletes, not with the tags it lists;
//! - where the whole plan must be seen before the first delete — a project
//!   run (a configuration problem in any repository stops it before any
//!   delete, exit 2), or `--max-deletions` — every repository is planned
//!   first, the guard decides, then each is carried out; otherwise (group and
//!   instance runs) repositories flow through list → plan → delete → report
//!   a window at a time, so memory holds the largest repository, not the
//!   group, and only the first repository is listed alone, to stop on a
//!   configuration problem before anything is deleted;
//! - each repository's report entry is built from its plan and the
//!   executor's outcomes and pushed into the sink in path order; a
//!   repository's removal (`remove_empty_repositories`) follows its deletions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tokio::sync::{OnceCell, Semaphore};

use crate::domain::applied_plan::PlanGate;
use crate::domain::exit::{Exit, ExitCode};
use crate::domain::lint;
use crate::domain::model::{Outcome, RefusalKind, RepositoryInfo, Tag};
use crate::domain::names::{RepositoryPath, TagName};
use crate::domain::planner::{plan_owned_repository_gated, DeletionGate, PlanOutline};
use crate::domain::policy::Policy;
use crate::domain::project::ProjectFacts;
use crate::execute::clients::Clients;
use crate::execute::deleter::{Deleter, DeletionWitness, Target};
use crate::execute::listing::{listing_progress, ListError, Lister};
use crate::execute::record::JournalWitness;
use crate::execute::removal::{self, Removal};
use crate::execute::stop::Stop;
use crate::gitlab::client::{GitLab, GitLabError};
use crate::ledger::client::read_pulls;
use crate::output::report::{
    PlanSkippedTag, ReportError, ReportSink, RepositoryRemoval, RepositoryReport,
};
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
    /// A live run's journal: each deletion appended as it settles.
    pub journal: Option<Arc<JournalWitness>>,
    /// The run writes a report: each planned deletion's digest is read
    /// where the listing did not give it — `restore` puts a tag back at it,
    /// and `run --plan` applies a dry run's deletion only while the tag
    /// still names it.
    pub record_digests: bool,
    /// Asked on SIGTERM/SIGINT: no new write, a grace for those on the wire.
    pub stop: Option<Arc<Stop>>,
    /// `run --plan`: only the reviewed plan's deletions, each re-checked
    /// (see `domain::applied_plan`).
    pub plan: Option<Arc<PlanGate>>,
}

/// Why a run stopped before it was done: a configuration problem a listing
/// showed (exit 2, nothing deleted), or the report could not be written
/// (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("listing {path}: {source}")]
    Configuration {
        path: RepositoryPath,
        #[source]
        source: Box<ListError>,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
}

impl ExitCode for DriveError {
    fn exit_code(&self) -> Exit {
        match self {
            DriveError::Configuration { source, .. } => source.exit_code(),
            DriveError::Report(err) => err.exit_code(),
        }
    }
}

/// One repository after listing and planning, or why nothing will be
/// attempted in it.
struct Planned {
    info: RepositoryInfo,
    plan: Result<PlanOutline, ListError>,
}

impl Planned {
    fn deletions(&self) -> usize {
        self.plan.as_ref().map_or(0, |plan| plan.delete.len())
    }

    /// The listing failed because of our own configuration (a token service
    /// on another origin, missing credentials): it fails the same way in
    /// every repository, so the run stops (exit 2).
    fn configuration_error(self) -> Result<Planned, DriveError> {
        match self.plan {
            Err(source) if source.exit_code() == Exit::Usage => Err(DriveError::Configuration {
                path: self.info.path,
                source: Box::new(source),
            }),
            plan => Ok(Planned { plan, ..self }),
        }
    }
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

/// What every repository of a run shares while it is carried out.
struct Shared<'r> {
    /// Each project's git refs and commits in use, where the policy asks.
    facts: BTreeMap<Option<u64>, ProjectFacts>,
    now: DateTime<Utc>,
    listing: Arc<Progress>,
    deleting: Arc<Progress>,
    deleter: Deleter,
    /// Units of deletion in flight across repositories (see [`ClientRun::execute_one`]).
    room: Semaphore,
    /// Tag lists are the large part: only this many are held at once.
    listing_slots: Semaphore,
    tokens: TokenBatches<'r>,
}

/// Registry tokens for a batch of repositories at a time: one `/jwt/auth`
/// call per batch, made when the batch's first repository starts (so each
/// batch's token is fresh), not one per repository. Only where repositories
/// stream (group and instance runs); a run that plans everything first asks
/// per repository, as it always has.
struct TokenBatches<'r> {
    registry: &'r Registry,
    batches: Vec<(Vec<RepositoryPath>, OnceCell<()>)>,
}

impl TokenBatches<'_> {
    async fn before(&self, index: usize) {
        let Some((paths, done)) = self.batches.get(index / MAX_SCOPES_PER_TOKEN) else {
            return;
        };
        done.get_or_init(|| async {
            let paths: Vec<&RepositoryPath> = paths.iter().collect();
            if let Err(err) = self.registry.prefetch_tokens(&paths).await {
                // Each repository then asks for its own token.
                tracing::debug!(error = %err, "no registry token for the batch");
            }
        })
        .await;
    }
}

impl ClientRun<'_> {
    /// The one driver: every repository listed, planned, carried out (unless
    /// a dry run, or refused by the guard) and pushed into `sink`, in path
    /// order.
    pub async fn drive(
        &self,
        mut repositories: Vec<RepositoryInfo>,
        now: DateTime<Utc>,
        sink: &mut dyn ReportSink,
    ) -> Result<(), DriveError> {
        repositories.sort_by(|a, b| a.path.cmp(&b.path));
        let plan_first = self.plan_first();
        let concurrency = self.clients.concurrency;
        let shared = Shared {
            facts: self.project_facts(&repositories).await,
            now,
            listing: listing_progress(&repositories),
            deleting: Progress::new("deleting tags"),
            deleter: self.shared_deleter(),
            room: Semaphore::new(REPOSITORY_CONCURRENCY * concurrency),
            listing_slots: Semaphore::new(REPOSITORY_CONCURRENCY),
            tokens: TokenBatches {
                registry: &self.clients.registry,
                batches: if plan_first {
                    Vec::new()
                } else {
                    repositories
                        .chunks(MAX_SCOPES_PER_TOKEN)
                        .map(|chunk| {
                            (
                                chunk.iter().map(|i| i.path.clone()).collect(),
                                OnceCell::new(),
                            )
                        })
                        .collect()
                },
            },
        };
        let _tickers = (
            shared.listing.tick(Duration::from_secs(5)),
            shared.deleting.tick(Duration::from_secs(5)),
        );
        if plan_first {
            self.plan_then_execute(repositories, &shared, sink).await?;
        } else {
            self.flow(repositories, &shared, sink).await?;
        }
        if self.stopped() {
            sink.interrupted();
        }
        match self
            .journal
            .as_ref()
            .and_then(|journal| journal.take_error())
        {
            Some(err) => Err(err.into()),
            None => Ok(()),
        }
    }

    /// The whole plan is seen before the first delete: a project run, or a
    /// guard to apply.
    fn plan_first(&self) -> bool {
        !(self.per_project || self.registry_only) || self.max_deletions.is_some()
    }

    /// Every repository planned, the guard applied, then each carried out.
    async fn plan_then_execute(
        &self,
        repositories: Vec<RepositoryInfo>,
        shared: &Shared<'_>,
        sink: &mut dyn ReportSink,
    ) -> Result<(), DriveError> {
        // Stopped: no repository is listed any more (the ones listed are
        // reported, their deletions not attempted).
        let listed: Vec<Planned> = stream::iter(repositories)
            .take_while(|_| std::future::ready(!self.stopped()))
            .map(|info| self.list_and_plan_one(info, shared))
            .buffer_unordered(REPOSITORY_CONCURRENCY)
            .collect()
            .await;
        let mut planned = Vec::with_capacity(listed.len());
        for repository in listed {
            planned.push(repository.configuration_error()?);
        }
        planned.sort_by(|a, b| a.info.path.cmp(&b.info.path));
        let deletions: usize = planned.iter().map(Planned::deletions).sum();
        let refused = self
            .max_deletions
            .filter(|limit| !self.dry_run && deletions > *limit);
        if let Some(limit) = refused {
            sink.refuse(limit);
        }
        // A dry run says what the live run's guard would do, before anyone
        // relies on the live run.
        if let Some(limit) = self
            .max_deletions
            .filter(|limit| self.dry_run && deletions > *limit)
        {
            let warning = format!(
                "the live run would be refused: the plan deletes {deletions} tags, more than --max-deletions {limit} (CLEANUP_MAX_DELETIONS); nothing would be deleted"
            );
            tracing::warn!("{warning}");
            sink.warn(warning);
        }
        let write = !self.dry_run && refused.is_none();
        if write {
            shared.deleting.add_total(deletions);
        }
        let concurrency = self.clients.concurrency;
        let mut done = stream::iter(planned)
            .map(|planned| self.execute_one(planned, write, shared))
            .buffered(REPOSITORY_CONCURRENCY * concurrency);
        while let Some(repository) = done.next().await {
            sink.push(repository)?;
        }
        Ok(())
    }

    /// Repositories flow list → plan → delete → report a few at a time, each
    /// report entry pushed as soon as the repository is done, in path order.
    /// The first is listed alone: a configuration problem (a token service on
    /// another origin, refused credentials) fails the same way everywhere, and
    /// shows there, before anything is deleted (exit 2). Later, such a failure
    /// is that repository's error (exit 1).
    async fn flow(
        &self,
        repositories: Vec<RepositoryInfo>,
        shared: &Shared<'_>,
        sink: &mut dyn ReportSink,
    ) -> Result<(), DriveError> {
        let write = !self.dry_run;
        let mut repositories = repositories.into_iter().enumerate();
        if let Some((index, first)) = repositories.next() {
            shared.tokens.before(index).await;
            let planned = self
                .list_and_plan_one(first, shared)
                .await
                .configuration_error()?;
            sink.push(self.execute_planned(planned, write, shared).await)?;
        }
        let concurrency = self.clients.concurrency;
        let mut done = stream::iter(repositories)
            .take_while(|_| std::future::ready(!self.stopped()))
            .map(|(index, info)| async move {
                shared.tokens.before(index).await;
                let slot = shared.listing_slots.acquire().await.ok();
                let planned = self.list_and_plan_one(info, shared).await;
                drop(slot);
                self.execute_planned(planned, write, shared).await
            })
            .buffered(REPOSITORY_CONCURRENCY * concurrency);
        while let Some(repository) = done.next().await {
            sink.push(repository)?;
        }
        Ok(())
    }

    /// A streamed repository's deletions join the progress total when known.
    async fn execute_planned(
        &self,
        planned: Planned,
        write: bool,
        shared: &Shared<'_>,
    ) -> RepositoryReport {
        if write {
            shared.deleting.add_total(planned.deletions());
        }
        self.execute_one(planned, write, shared).await
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

    /// What each project's repositories are planned with, listed once per
    /// project, and only for projects where some repository's policy looks
    /// at it: the git refs (`when_ref`), the commits in use
    /// (`protect_in_use`). Never an error: a refused or failed listing
    /// gives `complete: false` and the reason.
    async fn project_facts(
        &self,
        repositories: &[RepositoryInfo],
    ) -> BTreeMap<Option<u64>, ProjectFacts> {
        if self.registry_only {
            // No project known: `when_ref` rules claim nothing, and say so.
            return BTreeMap::new();
        }
        // Per project: a repository, and whether refs / commits in use are needed.
        let mut projects: BTreeMap<Option<u64>, (&RepositoryInfo, bool, bool)> = BTreeMap::new();
        for info in repositories {
            let refs = self.policy.needs_refs(&info.path);
            let in_use = self.policy.needs_in_use(&info.path);
            if refs || in_use {
                let needs = projects
                    .entry(self.project_key(info))
                    .or_insert((info, false, false));
                needs.1 |= refs;
                needs.2 |= in_use;
            }
        }
        let mut facts = BTreeMap::new();
        for (project, (info, refs, in_use)) in projects {
            let gitlab = self.gitlab_for(info);
            let mut known = ProjectFacts::default();
            if refs {
                let listed = gitlab.refs().await;
                tracing::info!(
                    project = ?project,
                    complete = listed.complete,
                    slugs = listed.slugs.len(),
                    open_mrs = listed.open_mrs.len(),
                    "listed the project's git refs"
                );
                known.refs = Some(listed);
            }
            if let Some(block) = self.policy.protect_in_use.as_ref().filter(|_| in_use) {
                let listed = gitlab.in_use(&block.ask()).await;
                tracing::info!(
                    project = ?project,
                    complete = listed.complete,
                    commits = listed.commits.len(),
                    "listed the project's commits in use"
                );
                known.in_use = Some(listed);
            }
            facts.insert(project, known);
        }
        facts
    }

    /// Lists and plans one repository.
    async fn list_and_plan_one(&self, info: RepositoryInfo, shared: &Shared<'_>) -> Planned {
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
        let facts = shared.facts.get(&self.project_key(&info));
        // Applying a plan checks each tag's digest: the listing must give it.
        let need_details = self.policy.needs_dates(&info.path) || self.plan.is_some();
        let gate = self
            .plan
            .as_ref()
            .map(|plan| plan.repository(info.path.as_str()));
        let plan = match lister.list(&info, need_details, &shared.listing).await {
            Ok((mut tags, source)) => {
                tracing::info!(repository = %info.path, tags = tags.len(), source = ?source, "listed");
                apply_tag_rules(&self.clients.registry, &info, &mut tags).await;
                let ledger = read_pulls(
                    (self.clients.ledger.as_deref())
                        .filter(|_| self.policy.needs_pulls(&info.path)),
                    &info.path,
                    &mut tags,
                )
                .await;
                let plan = plan_owned_repository_gated(
                    self.policy,
                    &info.path,
                    tags,
                    facts,
                    &ledger,
                    shared.now,
                    gate.as_ref().map(|gate| gate as &dyn DeletionGate),
                );
                for warning in plan.warnings() {
                    tracing::warn!(repository = %info.path, "{warning}");
                }
                let mut outline = plan.into_outline();
                // A run's record names each deleted (or, in a dry run,
                // planned) tag's digest; without a report nothing is paid.
                let digests = match self.record_digests {
                    true => lister.add_digests(&info, &mut outline.delete).await,
                    false => Ok(()),
                };
                match digests {
                    Ok(()) => Ok(outline),
                    Err(err) => {
                        tracing::error!(repository = %info.path, error = %err, "reading the digests of the tags to delete failed; nothing will be deleted here");
                        Err(err)
                    }
                }
            }
            Err(err) => {
                tracing::error!(repository = %info.path, error = %err, "listing failed; nothing will be deleted here");
                Err(err)
            }
        };
        Planned { info, plan }
    }

    /// Carries out one repository's plan (when `write`) and reports it.
    async fn execute_one(
        &self,
        planned: Planned,
        write: bool,
        shared: &Shared<'_>,
    ) -> RepositoryReport {
        let Planned { info, plan } = planned;
        let plan_skipped = self.plan_skipped(&info, &plan);
        let mut repository = match plan {
            Err(error) => {
                let mut repository = RepositoryReport::new(&info.path);
                repository.tags = info.tags_count.unwrap_or(0) as usize;
                repository.error = Some(format!("listing failed, nothing deleted: {error}"));
                repository
            }
            Ok(plan) if !write || plan.delete.is_empty() => RepositoryReport::from_plan(plan, None),
            Ok(plan) => {
                let outcomes = self.delete_planned(&info, &plan, shared).await;
                RepositoryReport::from_plan(plan, Some(&outcomes))
            }
        };
        repository.plan_skipped = plan_skipped;
        if self.policy.remove_empty_repositories {
            if let Some(decision) = removal::decide(&info, &repository, Utc::now()) {
                repository.removal = Some(self.remove_repository(&info, decision, write).await);
            }
        }
        repository
    }

    /// Deletes a repository's planned tags: one outcome per planned deletion.
    async fn delete_planned(
        &self,
        info: &RepositoryInfo,
        plan: &PlanOutline,
        shared: &Shared<'_>,
    ) -> Vec<Outcome> {
        let target = Target {
            path: info.path.clone(),
            id: Some(info.id),
        };
        // Group mode: the repository's own project, for REST fallbacks.
        let own_deleter = match (self.per_project, info.project_id) {
            (true, Some(project)) => Some(self.project_deleter(project)),
            _ => None,
        };
        let deleter = own_deleter.as_ref().unwrap_or(&shared.deleter);
        // Repositories are deleted from side by side. Each first takes as many
        // units of `room` as it has deletions, up to CLEANUP_CONCURRENCY: about
        // two large repositories at a time (each holds its outcomes until done),
        // or many small ones, so that slots are not left idle. The throttle in
        // the HTTP layer keeps the requests in flight within CLEANUP_CONCURRENCY.
        let units = plan.delete.len().min(self.clients.concurrency);
        // Never closed: the error case cannot happen.
        let _room = shared.room.acquire_many(units as u32).await.ok();
        if let Some(journal) = &self.journal {
            if journal.is_broken() {
                // No deletion without its record.
                let outcome = Outcome::skipped(
                    RefusalKind::Stopped,
                    "not attempted: the journal could not be written, so the run stopped deleting",
                );
                return vec![outcome; plan.delete.len()];
            }
            journal.expect(&info.path, &plan.delete);
        }
        let tags: Vec<TagName> = plan.delete.iter().map(|d| d.tag.name.clone()).collect();
        deleter.delete_tags(&target, &tags, &shared.deleting).await
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
}

impl ClientRun<'_> {
    /// The deleter for repositories without one of their own: in instance
    /// mode one that cannot fall back to REST.
    fn shared_deleter(&self) -> Deleter {
        let deleter = if self.registry_only {
            Deleter::new(
                self.clients.registry.clone(),
                None,
                self.clients.concurrency,
            )
        } else {
            self.clients.deleter()
        };
        self.recorded(deleter)
    }

    fn project_deleter(&self, project: u64) -> Deleter {
        self.recorded(Deleter::new(
            self.clients.registry.clone(),
            Some(Arc::new(self.gitlab.for_project(project))),
            self.clients.concurrency,
        ))
    }

    /// A deleter that journals each outcome and stops when the run stops.
    fn recorded(&self, deleter: Deleter) -> Deleter {
        let witness = self
            .journal
            .clone()
            .map(|journal| journal as Arc<dyn DeletionWitness>);
        deleter.with_witness(witness).with_stop(self.stop.clone())
    }

    /// `run --plan`: the reviewed deletions of a repository its live plan
    /// does not make, logged, for its report entry.
    fn plan_skipped(
        &self,
        info: &RepositoryInfo,
        plan: &Result<PlanOutline, ListError>,
    ) -> Vec<PlanSkippedTag> {
        let (Some(gate), Ok(outline)) = (&self.plan, plan) else {
            return Vec::new();
        };
        let skipped = gate.repository(info.path.as_str()).skipped(outline);
        for tag in &skipped {
            tracing::warn!(repository = %info.path, tag = %tag.tag, "not deleted although the plan lists it: {}", tag.reason);
        }
        skipped.into_iter().map(PlanSkippedTag::from).collect()
    }

    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|stop| stop.requested())
    }
}

/// Step 1 of the plan, GitLab's part: records on each tag which of GitLab's
/// tag rules (from the repository's `pull,delete` registry token,
/// `access[].meta`) protect it or make it immutable; the planner keeps those
/// ([`crate::domain::planner::ProtectReason::GitLabTagRule`]). No rules
/// readable (no delete permission): nothing marked, and said; the registry
/// then refuses those deletes and they are reported as skipped.
pub async fn apply_tag_rules(registry: &Registry, info: &RepositoryInfo, tags: &mut [Tag]) {
    let rules = match registry.tag_rules(&info.path).await {
        Ok(rules) => rules,
        Err(err) => {
            tracing::warn!(repository = %info.path, error = %err, "GitLab's tag rules could not be read (they come with a delete token): tags they protect may be planned for deletion and then refused");
            return;
        }
    };
    for tag in tags.iter_mut() {
        tag.gitlab_rule = rules.reason(tag.name.as_str());
    }
}
