//! `registry-cleanup delete`: named tags or digests, by reference.

use std::io::Write;

use futures::stream::{self, StreamExt};

use super::{CommonOptions, Context};
use crate::cli::DeleteArgs;
use crate::config::CleanupEnv;
use crate::deleter::{Outcome, Target};
use crate::error::{Exit, UserError};
use crate::paths::normalise_repository;
use crate::progress::Progress;
use crate::registry::{PULL, PULL_DELETE};
use crate::report::{AbsentTag, DeletedTag, FailedTag, Report, RepositoryReport, SkippedTag};

/// A tag name as the registry allows it, or a sha256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(String),
}

pub fn parse_reference(text: &str) -> Result<Reference, UserError> {
    if let Some(hex) = text.strip_prefix("sha256:") {
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Ok(Reference::Digest(text.to_string()));
        }
        return Err(UserError::new(format!(
            "REF {text:?} is not a digest: a digest is sha256: followed by 64 lower-case hex digits"
        )));
    }
    let valid = !text.is_empty()
        && text.len() <= 128
        && text.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphanumeric() || c == '_' || (i > 0 && (c == '.' || c == '-'))
        });
    if valid {
        Ok(Reference::Tag(text.to_string()))
    } else {
        Err(UserError::new(format!(
            "REF {text:?} is not a tag name: tags are up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-' (or give a sha256: digest)"
        )))
    }
}

pub async fn delete(
    args: DeleteArgs,
    env: &CleanupEnv,
    allow_insecure_http: bool,
) -> anyhow::Result<Exit> {
    let CommonOptions {
        dry_run,
        report: report_path,
        concurrency,
    } = CommonOptions::resolve(&args.common, env)?;
    let references = args
        .refs
        .iter()
        .map(|r| parse_reference(r))
        .collect::<Result<Vec<_>, _>>()?;
    let ctx = Context::from_env(allow_insecure_http, concurrency)?;

    let targets = if args.all_repositories {
        let gitlab = ctx.require_gitlab()?;
        gitlab
            .repositories()
            .await
            .map_err(|err| err.context("listing the project's container repositories"))?
            .into_iter()
            .map(|r| Target {
                path: r.path,
                id: Some(r.id),
            })
            .collect()
    } else {
        let inputs = if args.repositories.is_empty() {
            vec![String::new()]
        } else {
            args.repositories.clone()
        };
        let mut targets: Vec<Target> = Vec::new();
        for input in &inputs {
            let path = normalise_repository(
                input,
                &ctx.settings.root_repository,
                ctx.settings.registry_host.as_deref(),
            )?;
            if !targets.iter().any(|t| t.path == path) {
                targets.push(Target { path, id: None });
            }
        }
        targets
    };

    let mut report = Report::new("client", dry_run);
    let progress = Progress::new("delete");
    progress.add_total(targets.len() * references.len());
    let _ticker = progress.tick(std::time::Duration::from_secs(5));
    let deleter = ctx.deleter();
    let stdout = std::io::stdout();
    for target in &targets {
        let actions = if dry_run { PULL } else { PULL_DELETE };
        let mut repository = RepositoryReport::new(&target.path);
        repository.tags = references.len();
        if let Err(err) = ctx.registry.check_access(&target.path, actions).await {
            if err.is::<UserError>() {
                return Err(err);
            }
            let message = format!("{err:#}");
            writeln!(stdout.lock(), "{}: FAILED: {message}", target.path)?;
            repository.error = Some(message);
            report.push(repository);
            continue;
        }
        let outcomes = if dry_run {
            preview(&ctx, target, &references).await
        } else {
            let tags: Vec<String> = references
                .iter()
                .filter_map(|r| match r {
                    Reference::Tag(tag) => Some(tag.clone()),
                    Reference::Digest(_) => None,
                })
                .collect();
            let mut outcomes = deleter.delete_tags(target, &tags, &progress).await;
            for reference in &references {
                if let Reference::Digest(digest) = reference {
                    outcomes.push((digest.clone(), deleter.delete_digest(target, digest).await));
                    progress.advance(1);
                }
            }
            outcomes
        };
        let mut out = stdout.lock();
        for (reference, outcome) in outcomes {
            let separator = if reference.starts_with("sha256:") {
                "@"
            } else {
                ":"
            };
            let name = format!("{}{separator}{reference}", target.path);
            match outcome {
                Outcome::Deleted if dry_run => {
                    writeln!(out, "{name}: would delete")?;
                    repository.deleted.push(deleted_entry(reference));
                }
                Outcome::Deleted => {
                    writeln!(out, "{name}: deleted")?;
                    repository.deleted.push(deleted_entry(reference));
                }
                Outcome::AlreadyAbsent => {
                    writeln!(out, "{name}: already absent")?;
                    repository.already_absent.push(AbsentTag { tag: reference });
                }
                Outcome::Skipped(reason) => {
                    writeln!(out, "{name}: skipped: {reason}")?;
                    repository.skipped.push(SkippedTag {
                        tag: reference,
                        reason,
                    });
                }
                Outcome::Failed(error) => {
                    writeln!(out, "{name}: failed: {error}")?;
                    repository.failed.push(FailedTag {
                        tag: reference,
                        error,
                    });
                }
            }
        }
        report.push(repository);
    }
    drop(_ticker);
    ctx.log_stats();
    let totals = &report.totals;
    writeln!(
        stdout.lock(),
        "total: {} references in {} repositories, {} {}, {} already absent, {} skipped, {} failed",
        totals.repositories * references.len(),
        totals.repositories,
        totals.deleted,
        if dry_run { "would delete" } else { "deleted" },
        totals.already_absent,
        totals.skipped,
        totals.failed
    )?;
    if let Some(path) = report_path {
        report.write(&path)?;
    }
    Ok(if report.has_failures() {
        Exit::Failed
    } else {
        Exit::Success
    })
}

fn deleted_entry(reference: String) -> DeletedTag {
    let (tag, digest) = if reference.starts_with("sha256:") {
        (reference.clone(), Some(reference))
    } else {
        (reference, None)
    };
    DeletedTag {
        tag,
        digest,
        created_at: None,
        rule: None,
    }
}

/// A dry run reads: what exists would be deleted, the rest is already absent.
async fn preview(
    ctx: &Context,
    target: &Target,
    references: &[Reference],
) -> Vec<(String, Outcome)> {
    stream::iter(references.iter().cloned())
        .map(|reference| async move {
            let name = match &reference {
                Reference::Tag(tag) => tag.clone(),
                Reference::Digest(digest) => digest.clone(),
            };
            let outcome = match ctx.registry.manifest_digest(&target.path, &name).await {
                Ok(Some(_)) => Outcome::Deleted,
                Ok(None) => Outcome::AlreadyAbsent,
                Err(err) => Outcome::Failed(format!("{err:#}")),
            };
            (name, outcome)
        })
        .buffered(ctx.concurrency)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(
            parse_reference("mr-12-abc").expect("tag"),
            Reference::Tag("mr-12-abc".into())
        );
        assert_eq!(
            parse_reference("v1.2.3").expect("tag"),
            Reference::Tag("v1.2.3".into())
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parse_reference(&digest).expect("digest"),
            Reference::Digest(digest.clone())
        );
        for bad in [
            "",
            "-x",
            ".x",
            "a/b",
            "a b",
            "sha256:xyz",
            &"a".repeat(129),
            "tag;rm",
        ] {
            let err = parse_reference(bad).expect_err(bad);
            assert!(err.0.contains("REF"), "{bad}: {err}");
        }
    }
}
