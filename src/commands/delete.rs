//! `registry-cleanup delete`: named tags or digests, by reference.

use crate::commands::exit::{CommandResult, Failure};
use std::io::Write;

use crate::commands::exit::Context as _;
use futures::stream::{self, StreamExt};

use crate::commands::finish::finish;
use crate::config::options::DeleteOptions;
use crate::domain::config_error::ConfigError;
use crate::domain::exit::{Exit, ExitCode};
use crate::domain::model::RepositoryInfo;
use crate::domain::model::{FailureKind, Outcome, RefusalKind};
use crate::domain::names::{Digest, Reference, TagName};
use crate::domain::tag_rules::TagRules;
use crate::execute::clients::Clients;
use crate::execute::deleter::Target;
use crate::output::report::{DeletedTag, Report, RepositoryReport};
use crate::registry::client::{PULL, PULL_DELETE};
use crate::wire::progress::Progress;

pub async fn delete(options: DeleteOptions) -> CommandResult {
    let DeleteOptions {
        dry_run,
        references,
        ..
    } = &options;
    let clients = Clients::new(&options.connection)?;
    let targets = targets(&clients, &options).await?;
    clients.probe_registry().await?;

    let mut report = Report::new("client", *dry_run);
    let progress = Progress::new("delete");
    progress.add_total(targets.len() * references.len());
    let ticker = progress.tick(std::time::Duration::from_secs(5));
    let deleter = clients.deleter();
    let stdout = std::io::stdout();
    for target in &targets {
        let actions = if *dry_run { PULL } else { PULL_DELETE };
        let mut repository = RepositoryReport::new(&target.path);
        repository.tags = references.len();
        if let Err(err) = clients.registry.check_access(&target.path, actions).await {
            if err.exit_code() == Exit::Usage {
                return Err(err.into());
            }
            // The token service (on CI_SERVER_URL) not answering at all is the
            // same for every repository: stop rather than wait it out again.
            if err.is_unreachable() {
                return Err(err).with_context(|| {
                    format!(
                        "GitLab's token service at {} cannot be reached; nothing was deleted. Check CI_SERVER_URL",
                        clients.settings.server_url
                    )
                });
            }
            writeln!(stdout.lock(), "{}: FAILED: {err}", target.path)?;
            repository.error = Some(err.to_string());
            report.push(repository);
            continue;
        }
        let outcomes = if *dry_run {
            preview(&clients, target, references).await
        } else {
            execute(&deleter, target, references, &progress).await
        };
        let mut out = stdout.lock();
        for (reference, outcome) in references.iter().zip(&outcomes) {
            let separator = match reference {
                Reference::Tag(_) => ":",
                Reference::Digest(_) => "@",
            };
            let what = match outcome {
                Outcome::Deleted if *dry_run => "would delete".to_string(),
                Outcome::Deleted => "deleted".to_string(),
                Outcome::AlreadyAbsent => "already absent".to_string(),
                Outcome::Skipped(refusal) => format!("skipped: {}", refusal.reason),
                Outcome::Failed(failure) => format!("failed: {}", failure.error),
            };
            writeln!(out, "{}{separator}{reference}: {what}", target.path)?;
            repository.record(deleted_entry(reference), Some(outcome));
        }
        report.push(repository);
    }
    drop(ticker);
    clients.log_stats();
    finish(&report, options.counts.with_report(options.report.as_ref()))
}

/// The repositories named (relative paths resolved against the project's
/// root image, refused before any request when invalid), or all of the
/// project's.
async fn targets(clients: &Clients, options: &DeleteOptions) -> Result<Vec<Target>, Failure> {
    if options.all_repositories {
        let gitlab = clients.require_gitlab()?;
        let repositories = gitlab
            .repositories()
            .await
            .context("listing the project's container repositories")?;
        clients.check_project_agrees(&repositories)?;
        return Ok(repositories
            .into_iter()
            .map(|r| Target {
                path: r.path,
                id: Some(r.id),
            })
            .collect());
    }
    let inputs = if options.repositories.is_empty() {
        vec![String::new()]
    } else {
        options.repositories.clone()
    };
    let paths = clients.repository_paths(&inputs).await?;
    let mut named: Vec<(&String, Target)> = Vec::new();
    for (input, path) in inputs.iter().zip(paths) {
        if !named.iter().any(|(_, t)| t.path == path) {
            named.push((input, Target { path, id: None }));
        }
    }
    if let Some(gitlab) = &clients.gitlab {
        match gitlab.repositories().await {
            Ok(existing) => {
                clients.check_project_agrees(&existing)?;
                return known_targets(named, &existing);
            }
            // The check guards against typos; deleting a tag that is not
            // there harms nothing, so a failed listing does not stop the run.
            Err(err) => tracing::warn!(
                error = %err,
                "could not list the project's container repositories: the --repository names are not checked"
            ),
        }
    }
    Ok(named.into_iter().map(|(_, target)| target).collect())
}

/// The named repositories, each one the project has (with its REST id, for
/// the REST fallbacks of the deleter). A name the project does not have is
/// a typo — an `on_stop` job would report "already absent" and stay green
/// forever — so it is a configuration error naming the ones it has, before
/// any request to the registry.
fn known_targets(
    named: Vec<(&String, Target)>,
    existing: &[RepositoryInfo],
) -> Result<Vec<Target>, Failure> {
    let mut targets = Vec::with_capacity(named.len());
    for (input, target) in named {
        let Some(info) = existing.iter().find(|info| info.path == target.path) else {
            let has = if existing.is_empty() {
                "it has no container repositories yet".to_string()
            } else {
                let paths: Vec<String> = existing.iter().map(|i| i.path.to_string()).collect();
                format!("it has {}", paths.join(", "))
            };
            let named = if input.is_empty() {
                "the default repository (no --repository: the project's root image)".to_string()
            } else {
                format!("--repository {input:?}")
            };
            return Err(ConfigError::argument("--repository", format!(
                "{named}: the project has no container repository {}; {has}. Nothing was deleted; fix the name (relative to the project, `.` for the root image, or a full path)",
                target.path
            ))
            .into());
        };
        targets.push(Target {
            path: target.path,
            id: Some(info.id),
        });
    }
    Ok(targets)
}

/// Tags through the safe tag path, digests as asked: one outcome per
/// reference, in the order given.
async fn execute(
    deleter: &crate::execute::deleter::Deleter,
    target: &Target,
    references: &[Reference],
    progress: &Progress,
) -> Vec<Outcome> {
    let tags: Vec<TagName> = references
        .iter()
        .filter_map(|r| match r {
            Reference::Tag(tag) => Some(tag.clone()),
            Reference::Digest(_) => None,
        })
        .collect();
    let mut tag_outcomes = deleter
        .delete_tags(target, &tags, progress)
        .await
        .into_iter();
    let mut outcomes = Vec::with_capacity(references.len());
    for reference in references {
        let outcome = match reference {
            Reference::Tag(_) => tag_outcomes
                .next()
                .unwrap_or_else(|| Outcome::failed(FailureKind::NotAttempted, "not attempted")),
            Reference::Digest(digest) => {
                let outcome = deleter.delete_digest(target, digest).await;
                progress.advance(1);
                outcome
            }
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// Deleting by reference lists nothing: the name, and the digest if that
/// was the reference, are all that is known.
fn deleted_entry(reference: &Reference) -> DeletedTag {
    DeletedTag {
        digest: match reference {
            Reference::Digest(digest) => Some(Digest::to_string(digest)),
            Reference::Tag(_) => None,
        },
        ..DeletedTag::named(reference.to_string())
    }
}

/// A dry run reads: what exists would be deleted, the rest is already
/// absent — but a tag GitLab's tag rules protect would be refused, and the
/// dry run says so. The rules come with a `pull,delete` token, as in `run`
/// (nothing is written with it); credentials that may not delete cannot
/// read them, which is said.
async fn preview(clients: &Clients, target: &Target, references: &[Reference]) -> Vec<Outcome> {
    let rules = match clients.registry.tag_rules(&target.path).await {
        Ok(rules) => rules,
        Err(err) => {
            tracing::warn!(repository = %target.path, error = %err, "GitLab's tag rules could not be read (they come with a delete token): a tag they protect is shown as would-delete, and the live delete would be refused");
            TagRules::default()
        }
    };
    let rules = &rules;
    stream::iter(references)
        .map(|reference| async move {
            match clients
                .registry
                .manifest_digest(&target.path, reference)
                .await
            {
                Ok(Some(_)) => match reference {
                    Reference::Tag(tag) => match rules.reason(tag.as_str()) {
                        Some(rule) => Outcome::skipped(
                            RefusalKind::TagRule,
                            format!("protected by GitLab's tag rules: {rule}"),
                        ),
                        None => Outcome::Deleted,
                    },
                    // A digest delete is refused wherever a rule exists.
                    Reference::Digest(_) if !rules.is_empty() => Outcome::failed(
                        FailureKind::DigestPathClosed,
                        "would not be deleted: GitLab's registry refuses deletes by digest in a repository with tag protection or immutability rules; delete its tags instead",
                    ),
                    Reference::Digest(_) => Outcome::Deleted,
                },
                Ok(None) => Outcome::AlreadyAbsent,
                Err(err) => Outcome::failed(FailureKind::Request, err.to_string()),
            }
        })
        .buffered(clients.concurrency)
        .collect()
        .await
}
