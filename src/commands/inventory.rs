//! `registry-cleanup inventory`: the live project as an inventory file, so a
//! policy can be tried offline with `plan`.

use crate::commands::exit::{CommandResult, Failure};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::commands::exit::Context as _;
use futures::stream::{self, StreamExt};

use crate::config::options::{InventoryOptions, Scope};
use crate::domain::config_error::ConfigError;
use crate::domain::exit::Exit;
use crate::domain::model::RepositoryInfo;
use crate::execute::client_engine::apply_tag_rules;
use crate::execute::clients::Clients;
use crate::execute::listing::{listing_progress, Lister};
use crate::execute::scope;
use crate::gitlab::client::GitLab;
use crate::ledger::client::read_pulls;
use crate::output::inventory::{Inventory, InventoryRepository};
use crate::output::report::plural;

pub async fn inventory(options: InventoryOptions) -> CommandResult {
    let (clients, gitlab) = scope::clients_for(&options.scope, &options.connection)?;
    let per_project = matches!(options.scope, Scope::Group(_));
    let (repositories, project_id) = select_repositories(&options, &clients, &gitlab).await?;
    clients.probe_registry().await?;
    let mut inventory = Inventory::default();
    let projects: BTreeSet<u64> = repositories.iter().filter_map(|r| r.project_id).collect();
    inventory.repositories =
        list_repositories(&clients, &gitlab, repositories, per_project, project_id).await?;
    // Always written, whatever a policy will ask: complete, or `complete:
    // false` with the reason (a job token GitLab does not let read them, a
    // failed listing). Keyed by project id, one listing per project.
    let listed_projects: Vec<(u64, Arc<GitLab>)> = if per_project {
        projects
            .into_iter()
            .map(|project| (project, Arc::new(gitlab.for_project(project))))
            .collect()
    } else {
        match project_id {
            Some(project_id) => vec![(project_id, gitlab.clone())],
            None => {
                tracing::warn!(
                    "the project id is not known (set CI_PROJECT_ID): the inventory has no refs and no in_use section"
                );
                Vec::new()
            }
        }
    };
    for (project, gitlab) in listed_projects {
        add_project_facts(&mut inventory, project, &gitlab).await;
    }
    clients.log_stats();
    write_inventory(&inventory, options.output.as_deref())?;
    Ok(Exit::Success)
}

/// The repositories to list (the scope's, of this shard, those
/// `--repository` names — bad paths refused before any listing) and the
/// project id the `refs` section is keyed by.
async fn select_repositories(
    options: &InventoryOptions,
    clients: &Clients,
    gitlab: &Arc<GitLab>,
) -> Result<(Vec<RepositoryInfo>, Option<u64>), Failure> {
    let per_project = matches!(options.scope, Scope::Group(_));
    let registry_only = options.scope == Scope::Instance;
    // Bad paths are refused before any request.
    let wanted = if options.repositories.is_empty() {
        Vec::new()
    } else {
        clients.repository_paths(&options.repositories).await?
    };
    let mut repositories = scope::repositories(&options.scope, clients, gitlab, false).await?;
    if let Some(shard) = options.shard {
        repositories.retain(|info| shard.contains(info.path.as_str()));
    }
    // The `refs` section is keyed by project id: the one the repository
    // listing names, else CI_PROJECT_ID. With neither (CI_PROJECT_PATH
    // alone, an empty project) `plan` could not tie refs to repositories.
    let project_id: Option<u64> = repositories
        .iter()
        .find_map(|r| r.project_id)
        .or_else(|| gitlab.project().parse().ok())
        .filter(|_| !per_project && !registry_only);
    if !wanted.is_empty() {
        for path in &wanted {
            if !repositories.iter().any(|r| &r.path == path) {
                return Err(ConfigError::argument("--repository", format!(
                    "--repository {path}: the project has no such container repository (it has: {})",
                    repositories.iter().map(|r| r.path.as_str()).collect::<Vec<_>>().join(", ")
                ))
                .into());
            }
        }
        repositories.retain(|r| wanted.contains(&r.path));
    }
    Ok((repositories, project_id))
}

/// Each repository's tags, two repositories at a time, with GitLab's tag
/// rules and the pull ledger's facts.
async fn list_repositories(
    clients: &Clients,
    gitlab: &Arc<GitLab>,
    repositories: Vec<RepositoryInfo>,
    per_project: bool,
    project_id: Option<u64>,
) -> Result<Vec<InventoryRepository>, Failure> {
    let progress = listing_progress(&repositories);
    let ticker = progress.tick(Duration::from_secs(5));
    // `pull,delete`, though nothing is written: only that token carries
    // GitLab's tag rules, which the inventory records as `protected`.
    let listed: Vec<Result<InventoryRepository, Failure>> = stream::iter(repositories)
        .map(|info| {
            let (progress, registry) = (&progress, &clients.registry);
            let ledger = clients.ledger.as_deref();
            let gitlab = gitlab.for_repository(&info, per_project);
            async move {
                let lister = Lister::new(registry, &gitlab, clients.concurrency, true);
                let (mut tags, _) = lister
                    .list(&info, true, progress)
                    .await
                    .with_context(|| format!("listing the tags of {}", info.path))?;
                apply_tag_rules(registry, &info, &mut tags).await;
                let ledger = read_pulls(ledger, &info.path, &mut tags).await;
                tags.sort_by(|a, b| a.name.cmp(&b.name));
                let mut repository = InventoryRepository {
                    path: info.path,
                    id: Some(info.id),
                    project_id: info.project_id.or(project_id),
                    ledger_watched_since: None,
                    ledger_error: None,
                    tags,
                };
                repository.record_ledger(ledger);
                Ok(repository)
            }
        })
        .buffered(2)
        .collect()
        .await;
    drop(ticker);
    listed.into_iter().collect()
}

/// A project's git refs and commits in use, complete or with the reason
/// they are not.
async fn add_project_facts(inventory: &mut Inventory, project: u64, gitlab: &GitLab) {
    let refs = gitlab.refs().await;
    if let Some(reason) = &refs.incomplete_because {
        tracing::warn!(project, "the inventory's refs are incomplete: {reason}");
    }
    inventory.refs.insert(project.to_string(), refs);
    let in_use = gitlab.all_in_use().await;
    if let Some(reason) = &in_use.incomplete_because {
        tracing::warn!(
            project,
            "the inventory's commits in use are incomplete: {reason}"
        );
    }
    inventory.in_use.insert(project.to_string(), in_use);
}

/// The inventory to `output` (saying what was written), or to stdout.
fn write_inventory(inventory: &Inventory, output: Option<&Path>) -> Result<(), Failure> {
    let json = inventory
        .to_json()
        .map_err(|err| Failure::new(Exit::Failed, format!("serialising the inventory: {err}")))?
        + "\n";
    match output {
        Some(path) => {
            std::fs::write(path, json)
                .with_context(|| format!("writing the inventory to {}", path.display()))?;
            let tags: usize = inventory.repositories.iter().map(|r| r.tags.len()).sum();
            println!(
                "wrote {} and {} to {}",
                plural(inventory.repositories.len(), "repository", "repositories"),
                plural(tags, "tag", "tags"),
                path.display()
            );
        }
        None => {
            use std::io::Write;
            std::io::stdout().lock().write_all(json.as_bytes())?;
        }
    }
    Ok(())
}
