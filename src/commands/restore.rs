//! `registry-cleanup restore --report FILE`: the tags a run deleted, put
//! back at their recorded digests (see `execute::restore`).

use std::collections::BTreeSet;
use std::io::Write;

use crate::commands::exit::{CommandResult, Failure};
use crate::config::options::RestoreOptions;
use crate::domain::config_error::ConfigError;
use crate::domain::exit::Exit;
use crate::domain::names::RepositoryPath;
use crate::execute::clients::Clients;
use crate::execute::restore::{RestoreOutcome, Restorer};
use crate::output::restore::{
    read_record, DeletedRecord, DeletionRecord, RestoreReport, RestoreTotals, RestoredTag,
};

pub async fn restore(options: RestoreOptions) -> CommandResult {
    let record = read_record(&options.record)?;
    describe(&options, &record);
    let stdout = std::io::stdout();
    if record.dry_run {
        writeln!(
            stdout.lock(),
            "{}: the report of a dry run (or of a run --max-deletions refused): nothing was deleted, so nothing is restored",
            options.record.display()
        )?;
        write_output(&options, &record, Vec::new())?;
        return Ok(Exit::Success);
    }
    let clients = Clients::new(&options.connection)?;
    let chosen = choose(&clients, &options, record.deleted.clone()).await?;
    if chosen.is_empty() {
        writeln!(
            stdout.lock(),
            "{}: the run deleted no tag: nothing to restore",
            options.record.display()
        )?;
        write_output(&options, &record, Vec::new())?;
        return Ok(Exit::Success);
    }
    clients.probe_registry().await?;
    let restorer = Restorer::new(
        clients.registry.clone(),
        clients.concurrency,
        options.dry_run,
    );
    let outcomes = restorer.restore(&chosen).await?;
    clients.log_stats();

    let tags: Vec<RestoredTag> = chosen
        .iter()
        .zip(&outcomes)
        .map(|(record, outcome)| restored_tag(record, outcome))
        .collect();
    let mut out = stdout.lock();
    for (record, outcome) in chosen.iter().zip(&outcomes) {
        writeln!(out, "{}", line(record, outcome, options.dry_run))?;
    }
    let totals = RestoreTotals::count(&tags);
    writeln!(out, "{}", total_line(&totals, options.dry_run))?;
    drop(out);
    write_output(&options, &record, tags)?;
    Ok(if outcomes.iter().any(RestoreOutcome::is_failure) {
        Exit::Failed
    } else {
        Exit::Success
    })
}

/// Says (in the log) what the record is and what it adds up to.
fn describe(options: &RestoreOptions, record: &DeletionRecord) {
    let path = |path: &Option<std::path::PathBuf>| {
        path.as_ref()
            .map_or_else(|| "none".to_string(), |path| path.display().to_string())
    };
    tracing::info!(
        report = %path(&record.report),
        journal = %path(&record.journal),
        deleted = record.deleted.len(),
        only_in_journal = record.only_in_journal,
        dry_run = options.dry_run,
        "reading the run's record"
    );
    if record.interrupted {
        tracing::info!("the run was interrupted: its report lists what it had deleted by then");
    }
    if record.only_in_journal > 0 && record.report.is_some() {
        tracing::warn!(
            tags = record.only_in_journal,
            "the journal lists deletions the report does not (the run was stopped before it reported them): they are restored too"
        );
    }
}

/// The deletions `--repository` and `--tag` pick; each name must pick
/// something, or it is a typo: a configuration error naming what the
/// record has, before any request to the registry.
async fn choose(
    clients: &Clients,
    options: &RestoreOptions,
    deleted: Vec<DeletedRecord>,
) -> Result<Vec<DeletedRecord>, Failure> {
    let repositories: Vec<RepositoryPath> = if options.repositories.is_empty() {
        Vec::new()
    } else {
        clients.repository_paths(&options.repositories).await?
    };
    let record_has = |what: &str, names: BTreeSet<&str>| {
        let names: Vec<&str> = names.into_iter().collect();
        if names.is_empty() {
            format!("it lists no deleted {what}")
        } else {
            format!("it lists {}", names.join(", "))
        }
    };
    for (input, path) in options.repositories.iter().zip(&repositories) {
        if !deleted.iter().any(|record| record.repository == *path) {
            let has = record_has(
                "tag",
                deleted
                    .iter()
                    .map(|record| record.repository.as_str())
                    .collect(),
            );
            return Err(ConfigError::argument(
                "--repository",
                format!(
                    "--repository {input:?}: {} deleted no tag of {path}; {has}. Nothing was restored",
                    options.record.display()
                ),
            )
            .into());
        }
    }
    let in_repositories = |record: &DeletedRecord| {
        repositories.is_empty() || repositories.contains(&record.repository)
    };
    for tag in &options.tags {
        if !deleted
            .iter()
            .any(|record| in_repositories(record) && record.tag == *tag)
        {
            let has = record_has(
                "tag",
                deleted
                    .iter()
                    .filter(|record| in_repositories(record))
                    .map(|record| record.tag.as_str())
                    .collect(),
            );
            return Err(ConfigError::argument(
                "--tag",
                format!(
                    "--tag {tag}: {} deleted no tag {tag}{}; {has}. Nothing was restored",
                    options.record.display(),
                    if repositories.is_empty() {
                        String::new()
                    } else {
                        " in the repositories chosen".to_string()
                    }
                ),
            )
            .into());
        }
    }
    Ok(deleted
        .into_iter()
        .filter(|record| {
            in_repositories(record)
                && (options.tags.is_empty() || options.tags.contains(&record.tag))
        })
        .collect())
}

/// `group/project/api:mr-12@sha256:…: restored`.
fn line(record: &DeletedRecord, outcome: &RestoreOutcome, dry_run: bool) -> String {
    let reference = match &record.digest {
        Some(digest) => format!("{}:{}@{digest}", record.repository, record.tag),
        None => format!("{}:{}", record.repository, record.tag),
    };
    let what = match outcome {
        RestoreOutcome::Restored(source) | RestoreOutcome::WouldRestore(source) => {
            let verb = if dry_run { "would restore" } else { "restored" };
            match source {
                crate::execute::restore::Source::Registry => verb.to_string(),
                crate::execute::restore::Source::Journal => {
                    format!("{verb} from the journal's copy of the manifest")
                }
            }
        }
        RestoreOutcome::AlreadyPresent => "already back".to_string(),
        RestoreOutcome::LeftAlone { now } => {
            format!("left alone: pushed again since, now {now}")
        }
        RestoreOutcome::Failed(error) => format!("FAILED: {error}"),
        RestoreOutcome::Skipped(reason) => format!("skipped: {reason}"),
    };
    format!("{reference}: {what}")
}

/// `restore: 23 tags, 20 restored, 1 already back, 1 left alone, 1 failed`.
fn total_line(totals: &RestoreTotals, dry_run: bool) -> String {
    let mut parts = vec![format!(
        "{} {}",
        totals.restored,
        if dry_run {
            "would be restored"
        } else {
            "restored"
        }
    )];
    for (count, what) in [
        (totals.already_present, "already back"),
        (totals.left_alone, "left alone (pushed again since)"),
        (totals.failed, "failed"),
        (totals.skipped, "skipped"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {what}"));
        }
    }
    format!(
        "restore: {} tag{}, {}",
        totals.tags,
        if totals.tags == 1 { "" } else { "s" },
        parts.join(", ")
    )
}

fn restored_tag(record: &DeletedRecord, outcome: &RestoreOutcome) -> RestoredTag {
    let (outcome, from, detail) = match outcome {
        RestoreOutcome::Restored(source) => ("restored", Some(source.name()), None),
        RestoreOutcome::WouldRestore(source) => ("would_restore", Some(source.name()), None),
        RestoreOutcome::AlreadyPresent => ("already_present", None, None),
        RestoreOutcome::LeftAlone { now } => (
            "left_alone",
            None,
            Some(format!("pushed again since, now {now}")),
        ),
        RestoreOutcome::Failed(error) => ("failed", None, Some(error.clone())),
        RestoreOutcome::Skipped(reason) => ("skipped", None, Some(reason.clone())),
    };
    RestoredTag {
        repository: record.repository.to_string(),
        tag: record.tag.to_string(),
        digest: record.digest.as_ref().map(ToString::to_string),
        media_type: record.media_type.clone(),
        outcome,
        from,
        detail,
    }
}

fn write_output(
    options: &RestoreOptions,
    record: &DeletionRecord,
    tags: Vec<RestoredTag>,
) -> Result<(), Failure> {
    let Some(path) = &options.output else {
        return Ok(());
    };
    let report = RestoreReport {
        dry_run: options.dry_run,
        tool_version: env!("CARGO_PKG_VERSION"),
        report: record.report.as_ref().map(|p| p.display().to_string()),
        journal: record.journal.as_ref().map(|p| p.display().to_string()),
        totals: RestoreTotals::count(&tags),
        tags,
    };
    report.write(path)?;
    tracing::info!(path = %path.display(), "restore report written");
    Ok(())
}
