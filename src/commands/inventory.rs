//! `registry-cleanup inventory`: the live project as an inventory file, so a
//! policy can be tried offline with `plan`.

use std::time::Duration;

use futures::stream::{self, StreamExt};

use super::Context;
use crate::cli::InventoryArgs;
use crate::config::CleanupEnv;
use crate::error::{Exit, UserError};
use crate::inventory::{Inventory, InventoryRepository};
use crate::listing::Lister;
use crate::paths::normalise_repository;
use crate::progress::Progress;

pub async fn inventory(
    args: InventoryArgs,
    env: &CleanupEnv,
    allow_insecure_http: bool,
) -> anyhow::Result<Exit> {
    let concurrency = env.concurrency(args.concurrency)?;
    let output = args
        .output
        .clone()
        .or_else(|| env.path(&env.cleanup_output));
    let ctx = Context::from_env(allow_insecure_http, concurrency)?;
    let gitlab = ctx.require_gitlab()?;
    // Bad paths are refused before any request.
    let mut wanted = Vec::new();
    for input in &args.repositories {
        wanted.push(normalise_repository(
            input,
            &ctx.settings.root_repository,
            ctx.settings.registry_host.as_deref(),
        )?);
    }
    let mut repositories = gitlab
        .repositories()
        .await
        .map_err(|err| err.context("listing the project's container repositories"))?;
    if !wanted.is_empty() {
        for path in &wanted {
            if !repositories.iter().any(|r| &r.path == path) {
                return Err(UserError::new(format!(
                    "--repository {path}: the project has no such container repository (it has: {})",
                    repositories.iter().map(|r| r.path.as_str()).collect::<Vec<_>>().join(", ")
                ))
                .into());
            }
        }
        repositories.retain(|r| wanted.contains(&r.path));
    }

    let progress = Progress::new("listing tags");
    progress.add_total(
        repositories
            .iter()
            .map(|r| r.tags_count.unwrap_or(0) as usize)
            .sum(),
    );
    let ticker = progress.tick(Duration::from_secs(5));
    let lister = Lister::new(&ctx.registry, &gitlab, ctx.concurrency, false);
    let listed: Vec<anyhow::Result<InventoryRepository>> = stream::iter(repositories)
        .map(|info| {
            let (lister, progress) = (&lister, &progress);
            async move {
                let (mut tags, _) = lister
                    .list(&info, true, progress)
                    .await
                    .map_err(|err| err.context(format!("listing the tags of {}", info.path)))?;
                tags.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(InventoryRepository {
                    path: info.path,
                    id: Some(info.id),
                    tags,
                })
            }
        })
        .buffered(2)
        .collect()
        .await;
    drop(ticker);
    let mut inventory = Inventory::default();
    for repository in listed {
        inventory.repositories.push(repository?);
    }
    let json = inventory.to_json()? + "\n";
    ctx.log_stats();
    match output {
        Some(path) => {
            std::fs::write(&path, json).map_err(|err| {
                anyhow::anyhow!("writing the inventory to {}: {err}", path.display())
            })?;
            let tags: usize = inventory.repositories.iter().map(|r| r.tags.len()).sum();
            println!(
                "wrote {} repositories and {tags} tags to {}",
                inventory.repositories.len(),
                path.display()
            );
        }
        None => {
            use std::io::Write;
            std::io::stdout().lock().write_all(json.as_bytes())?;
        }
    }
    Ok(Exit::Success)
}
