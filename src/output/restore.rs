//! What `restore` reads and what it writes.
//!
//! It reads the record of a run: its report (`run --report FILE`), its
//! journal (`FILE.journal`, JSON lines written as each deletion happened),
//! or both. The report is the record of a finished run; the journal adds the
//! bytes of manifests a deletion removed outright (a digest delete) and the
//! deletions of a run killed before its report was written. Either file may
//! be named: which one it is, is told by its content.
//!
//! It writes (`--output FILE`) what it did with each tag, as JSON.
//!
//! `report html` reads the same files ([`read_report_or_journal`]): a
//! journal alone — its run killed before it wrote the report — is read as
//! that run's report, interrupted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;

use crate::domain::exit::{Exit, ExitCode};
use crate::domain::names::{Digest, RepositoryPath, TagName};
use crate::output::journal::{journal_path, read_journal, JournalEntry, JournalError};
use crate::output::report::{
    AbsentTag, DeletedTag, FailedTag, Report, ReportError, RepositoryReport, SkippedTag,
};

/// One deleted tag, as the record has it: what `restore` puts back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedRecord {
    pub repository: RepositoryPath,
    pub tag: TagName,
    /// `None` where the record has none (a tag deleted by name with
    /// `delete`, whose report names no digest): it cannot be put back.
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    /// A signature, attestation or other referrer tag: back after its subject.
    pub referrer: bool,
    /// The manifest's bytes, kept by the journal where the deletion removed
    /// the manifest itself; checked to hash to `digest`.
    pub kept_manifest: Option<bytes::Bytes>,
}

/// What the record says was deleted.
#[derive(Debug, Default)]
pub struct DeletionRecord {
    /// The deleted tags, in the record's order.
    pub deleted: Vec<DeletedRecord>,
    /// The record is a dry run's (or a run `--max-deletions` refused):
    /// nothing was deleted, so nothing is to be restored.
    pub dry_run: bool,
    /// The run was stopped by a signal (`"interrupted": true`).
    pub interrupted: bool,
    /// The report read, if any.
    pub report: Option<PathBuf>,
    /// The journal read, if any.
    pub journal: Option<PathBuf>,
    /// Deletions only the journal records (a run killed before its report
    /// was written, or stopped before it listed them).
    pub only_in_journal: usize,
    /// Manifest copies in the journal that were not used: they did not hash
    /// to the digest recorded with them.
    pub bad_copies: usize,
}

/// Why the record could not be read. Nothing was restored: exit 2.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is neither a registry-cleanup report nor its journal (as a report: {report_error})", .path.display())]
    Neither {
        path: PathBuf,
        report_error: serde_json::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{}: repository {repository:?} of {tag:?}: {reason}", .path.display())]
    Entry {
        path: PathBuf,
        repository: String,
        tag: String,
        reason: String,
    },
}

impl ExitCode for RecordError {
    fn exit_code(&self) -> Exit {
        Exit::Usage
    }
}

/// Reads the record `path` names: a report (and `REPORT.journal` beside
/// it, when there is one), or a journal alone. A report that does not
/// exist while its journal does is the record of a run killed before it
/// wrote the report: the journal is read.
pub fn read_record(path: &Path) -> Result<DeletionRecord, RecordError> {
    match open_record(path)? {
        RecordFile::Report(report) => {
            let journal_beside = journal_path(path);
            let journal = journal_beside.is_file().then_some(journal_beside);
            from_report(path, &report, journal.as_deref())
        }
        RecordFile::Journal(journal) => from_journal(&journal),
    }
}

/// What a record file turned out to be.
enum RecordFile {
    Report(Box<Report>),
    /// The journal to read: the file named, or the one beside a report
    /// that was never written.
    Journal(PathBuf),
}

/// Tells a report from a journal by content (a `.journal` name aside), and
/// finds the journal of a report that was never written.
fn open_record(path: &Path) -> Result<RecordFile, RecordError> {
    let journal_beside = journal_path(path);
    if !path.exists() && journal_beside.is_file() {
        tracing::warn!(report = %path.display(), journal = %journal_beside.display(), "the report does not exist, its journal does (the run was stopped before it wrote the report): reading the journal");
        return Ok(RecordFile::Journal(journal_beside));
    }
    let text = std::fs::read_to_string(path).map_err(|source| RecordError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let named_journal = path
        .extension()
        .is_some_and(|extension| extension == "journal");
    if named_journal {
        return Ok(RecordFile::Journal(path.to_path_buf()));
    }
    match serde_json::from_str::<Report>(&text) {
        Ok(report) => Ok(RecordFile::Report(Box::new(report))),
        Err(_) if looks_like_journal(&text) => Ok(RecordFile::Journal(path.to_path_buf())),
        Err(report_error) => Err(RecordError::Neither {
            path: path.to_path_buf(),
            report_error,
        }),
    }
}

/// Whether `text` is a journal: its first line is a journal entry.
pub fn looks_like_journal(text: &str) -> bool {
    text.lines()
        .find(|line| !line.trim().is_empty())
        .is_some_and(|line| serde_json::from_str::<JournalEntry>(line).is_ok())
}

fn from_report(
    path: &Path,
    report: &Report,
    journal: Option<&Path>,
) -> Result<DeletionRecord, RecordError> {
    let mut record = DeletionRecord {
        dry_run: report.dry_run,
        interrupted: report.interrupted,
        report: Some(path.to_path_buf()),
        ..DeletionRecord::default()
    };
    if report.dry_run {
        // A plan lists what would have been deleted; nothing was.
        return Ok(record);
    }
    for repository in &report.repositories {
        for deleted in &repository.deleted {
            record.deleted.push(parse_entry(
                path,
                &repository.path,
                &deleted.tag,
                deleted.digest.as_deref(),
                deleted.media_type.clone(),
                deleted.referrer,
            )?);
        }
    }
    if let Some(journal) = journal {
        record.journal = Some(journal.to_path_buf());
        let entries = read_journal(journal)?;
        add_journal(&mut record, journal, entries)?;
    }
    Ok(record)
}

fn from_journal(path: &Path) -> Result<DeletionRecord, RecordError> {
    let entries = read_journal(path)?;
    let mut record = DeletionRecord {
        journal: Some(path.to_path_buf()),
        ..DeletionRecord::default()
    };
    add_journal(&mut record, path, entries)?;
    // All of it is the journal's: not worth a separate count.
    record.only_in_journal = 0;
    Ok(record)
}

/// Adds the journal's deletions to the record: the kept manifest bytes to
/// the tags the report lists, and the tags it does not list.
fn add_journal(
    record: &mut DeletionRecord,
    path: &Path,
    entries: Vec<JournalEntry>,
) -> Result<(), RecordError> {
    let mut position: HashMap<(RepositoryPath, TagName), usize> = record
        .deleted
        .iter()
        .enumerate()
        .map(|(index, deleted)| ((deleted.repository.clone(), deleted.tag.clone()), index))
        .collect();
    for entry in possibly_deleted(entries) {
        let mut parsed = parse_entry(
            path,
            &entry.repository,
            &entry.tag,
            entry.digest.as_deref(),
            entry.media_type.clone(),
            entry.referrer,
        )?;
        parsed.kept_manifest = match (&entry.manifest, &parsed.digest) {
            (Some(encoded), Some(digest)) => {
                let copy = decode_copy(encoded).filter(|bytes| Digest::of(bytes) == *digest);
                if copy.is_none() {
                    record.bad_copies += 1;
                    tracing::warn!(journal = %path.display(), repository = %parsed.repository, tag = %parsed.tag, "the journal's copy of the manifest is not the manifest recorded (it does not hash to its digest): not used");
                }
                copy
            }
            _ => None,
        };
        let key = (parsed.repository.clone(), parsed.tag.clone());
        match position.get(&key) {
            Some(&index) => {
                let known = &mut record.deleted[index];
                // The report is the record; the journal adds the bytes of
                // the same manifest (and a digest or type the report lacks).
                if known.digest.is_none() {
                    known.digest = parsed.digest.clone();
                }
                if known.digest == parsed.digest {
                    known.media_type = known.media_type.take().or(parsed.media_type);
                    if parsed.kept_manifest.is_some() {
                        known.kept_manifest = parsed.kept_manifest;
                    }
                }
            }
            None => {
                position.insert(key, record.deleted.len());
                record.deleted.push(parsed);
                record.only_in_journal += 1;
            }
        }
    }
    Ok(())
}

/// The journal's entries of tags that are, or may be, gone: each tag's last
/// line is `deleted`, or `attempting` with no outcome after it (the run was
/// killed while the delete was in flight: the registry may have done it). A
/// tag the delete never reached is still there, and restore finds it so.
fn possibly_deleted(entries: Vec<JournalEntry>) -> Vec<JournalEntry> {
    last_lines(entries)
        .into_iter()
        .filter(|entry| entry.deleted() || in_flight(entry))
        .collect()
}

/// Each tag's last line, in the journal's order: what became of the tag
/// as far as the run got to write it down.
fn last_lines(entries: Vec<JournalEntry>) -> Vec<JournalEntry> {
    let mut last: HashMap<(String, String), usize> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        last.insert((entry.repository.clone(), entry.tag.clone()), index);
    }
    entries
        .into_iter()
        .enumerate()
        .filter(|(index, entry)| {
            last.get(&(entry.repository.clone(), entry.tag.clone())) == Some(index)
        })
        .map(|(_, entry)| entry)
        .collect()
}

/// A tag whose delete was sent and never answered, as far as the journal
/// knows: the run was killed meanwhile.
fn in_flight(entry: &JournalEntry) -> bool {
    entry.outcome == JournalEntry::ATTEMPTING
}

/// What `report html` reads: a report, or a journal (named, or beside a
/// report that was never written) read as its run's report.
pub fn read_report_or_journal(path: &Path) -> Result<Report, RecordError> {
    match open_record(path)? {
        RecordFile::Report(report) => Ok(*report),
        RecordFile::Journal(journal) => Ok(report_from_journal(&journal, read_journal(&journal)?)),
    }
}

/// A journal as the report its run did not live to write: live and
/// interrupted, each tag as its last line leaves it — `deleted`, already
/// absent, skipped, failed, and a delete in flight when the run was killed
/// as failed with "may be gone" (the registry says which: `restore` puts it
/// back if it is gone, a new run finishes it if not). The journal knows
/// only the tags the run tried to delete: none kept, and a repository's
/// `tags` counts those alone. Repositories in the journal's order, each
/// one's tags by name, as a report lists them.
pub fn report_from_journal(path: &Path, entries: Vec<JournalEntry>) -> Report {
    let mut repositories: Vec<RepositoryReport> = Vec::new();
    for entry in last_lines(entries) {
        let position = match repositories
            .iter()
            .position(|repository| repository.path == entry.repository)
        {
            Some(position) => position,
            None => {
                repositories.push(RepositoryReport::new(&entry.repository));
                repositories.len() - 1
            }
        };
        let repository = &mut repositories[position];
        repository.tags += 1;
        let unrecorded =
            |what: &str| format!("{what}: the journal does not record why (the run's log does)");
        match entry.outcome.as_str() {
            "deleted" => repository.deleted.push(DeletedTag {
                digest: entry.digest,
                media_type: entry.media_type,
                rule: entry.rule.map(std::sync::Arc::from),
                referrer: entry.referrer,
                ..DeletedTag::named(entry.tag)
            }),
            "already_absent" => repository.already_absent.push(AbsentTag { tag: entry.tag }),
            "skipped" => repository.skipped.push(SkippedTag {
                tag: entry.tag,
                reason: unrecorded("skipped"),
            }),
            JournalEntry::ATTEMPTING => repository.failed.push(FailedTag {
                tag: entry.tag,
                error: MAY_BE_GONE.to_string(),
            }),
            _ => repository.failed.push(FailedTag {
                tag: entry.tag,
                error: unrecorded("failed"),
            }),
        }
    }
    for repository in &mut repositories {
        repository.deleted.sort_by(|a, b| a.tag.cmp(&b.tag));
        repository.already_absent.sort_by(|a, b| a.tag.cmp(&b.tag));
        repository.skipped.sort_by(|a, b| a.tag.cmp(&b.tag));
        repository.failed.sort_by(|a, b| a.tag.cmp(&b.tag));
    }
    let mut report = Report {
        dry_run: false,
        // Only the client engine journals its deletions.
        engine: "client".to_string(),
        interrupted: true,
        warnings: vec![format!(
            "read from the journal {} alone: the run ended before it wrote its report (killed, e.g. by SIGKILL after a cancelled job's grace period). It lists the tags the run tried to delete and what became of each; the tags it kept are not known, and each repository's tag count counts only the tags the journal names",
            path.display()
        )],
        ..Report::default()
    };
    report.extend(repositories);
    report
}

/// A delete in flight when the run was killed, as a journal read as a
/// report shows it.
pub const MAY_BE_GONE: &str = "may be gone: the run was killed while this delete was in flight, before its answer was written down; `registry-cleanup restore` puts it back if it is gone, a new run finishes it if it is not";

/// The journal's base64 (standard alphabet; URL-safe accepted too).
fn decode_copy(encoded: &str) -> Option<bytes::Bytes> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    STANDARD
        .decode(encoded)
        .or_else(|_| URL_SAFE.decode(encoded))
        .ok()
        .map(bytes::Bytes::from)
}

fn parse_entry(
    path: &Path,
    repository: &str,
    tag: &str,
    digest: Option<&str>,
    media_type: Option<String>,
    referrer: bool,
) -> Result<DeletedRecord, RecordError> {
    let invalid = |reason: String| RecordError::Entry {
        path: path.to_path_buf(),
        repository: repository.to_string(),
        tag: tag.to_string(),
        reason,
    };
    Ok(DeletedRecord {
        repository: RepositoryPath::parse(repository).map_err(|err| invalid(err.to_string()))?,
        tag: TagName::parse(tag).map_err(|err| invalid(err.to_string()))?,
        digest: digest
            .map(Digest::parse)
            .transpose()
            .map_err(|err| invalid(err.to_string()))?,
        media_type: media_type.filter(|media_type| !media_type.is_empty()),
        referrer,
        kept_manifest: None,
    })
}

/// What `restore` did with one tag (`--output FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoredTag {
    pub repository: String,
    pub tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `restored`, `would_restore`, `already_present`, `left_alone`,
    /// `failed` or `skipped`.
    pub outcome: &'static str,
    /// Where the manifest came from: `registry` (it still had it) or
    /// `journal` (the kept copy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'static str>,
    /// Why, for every outcome but `restored`: the error, the digest the tag
    /// names now…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The counts of a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreTotals {
    pub tags: usize,
    pub restored: usize,
    pub already_present: usize,
    pub left_alone: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl RestoreTotals {
    pub fn count(tags: &[RestoredTag]) -> RestoreTotals {
        let mut totals = RestoreTotals {
            tags: tags.len(),
            ..RestoreTotals::default()
        };
        for tag in tags {
            match tag.outcome {
                "restored" | "would_restore" => totals.restored += 1,
                "already_present" => totals.already_present += 1,
                "left_alone" => totals.left_alone += 1,
                "skipped" => totals.skipped += 1,
                _ => totals.failed += 1,
            }
        }
        totals
    }
}

/// The JSON `restore --output FILE` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    pub dry_run: bool,
    pub tool_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    pub tags: Vec<RestoredTag>,
    pub totals: RestoreTotals,
}

impl RestoreReport {
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::journal::Journal;
    use crate::output::report::{DeletedTag, RepositoryReport};

    const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";

    fn deleted(tag: &str, digest: &Digest) -> DeletedTag {
        DeletedTag {
            digest: Some(digest.to_string()),
            media_type: Some(IMAGE.into()),
            rule: Some("review images".into()),
            ..DeletedTag::named(tag)
        }
    }

    fn entry(tag: &str, digest: &Digest, manifest: Option<&[u8]>) -> JournalEntry {
        use base64::engine::general_purpose::STANDARD;
        JournalEntry {
            repository: "group/project".into(),
            tag: tag.into(),
            digest: Some(digest.to_string()),
            media_type: Some(IMAGE.into()),
            outcome: "deleted".into(),
            time: "2026-12-07T10:00:00Z".parse().expect("time"),
            rule: Some("review images".into()),
            referrer: false,
            manifest: manifest.map(|bytes| STANDARD.encode(bytes)),
        }
    }

    fn report(dry_run: bool, deleted: Vec<DeletedTag>) -> Report {
        let mut repository = RepositoryReport::new("group/project");
        repository.deleted = deleted;
        Report {
            dry_run,
            engine: "client".into(),
            repositories: vec![repository],
            ..Report::default()
        }
    }

    #[test]
    fn a_report_and_its_journal_make_one_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.json");
        let one = Digest::of(b"one");
        let two = Digest::of(b"two");
        let three = Digest::of(b"three");
        report(false, vec![deleted("mr-1", &one), deleted("mr-2", &two)])
            .write(&path)
            .expect("report");
        let journal = Journal::create(&journal_path(&path)).expect("journal");
        // The same deletion with the bytes it removed; a copy that is not
        // the manifest; a deletion the report does not list; a failure.
        journal
            .append(&entry("mr-1", &one, Some(b"one")))
            .expect("append");
        journal
            .append(&entry("mr-2", &two, Some(b"not two")))
            .expect("append");
        journal
            .append(&entry("mr-3", &three, None))
            .expect("append");
        let mut failed = entry("mr-4", &three, None);
        failed.outcome = "attempting".into();
        journal.append(&failed).expect("append");
        failed.outcome = "failed".into();
        journal.append(&failed).expect("append");
        // Killed while this delete was in flight: it may be gone.
        let mut in_flight = entry("mr-5", &three, None);
        in_flight.outcome = "attempting".into();
        journal.append(&in_flight).expect("append");

        let record = read_record(&path).expect("read");
        let tags: Vec<(&str, Option<&[u8]>)> = record
            .deleted
            .iter()
            .map(|d| (d.tag.as_str(), d.kept_manifest.as_deref()))
            .collect();
        assert_eq!(
            tags,
            [
                ("mr-1", Some(&b"one"[..])),
                ("mr-2", None),
                ("mr-3", None),
                ("mr-5", None)
            ]
        );
        assert_eq!((record.only_in_journal, record.bad_copies), (2, 1));
        assert!(!record.dry_run);

        // The journal named alone: its own deletions.
        let record = read_record(&journal_path(&path)).expect("read journal");
        assert_eq!(record.deleted.len(), 4);
        assert_eq!(record.report, None);

        // A report that was never written: its journal is read.
        std::fs::remove_file(&path).expect("remove");
        let record = read_record(&path).expect("read the journal beside");
        assert_eq!(record.deleted.len(), 4);
        assert_eq!(record.journal, Some(journal_path(&path)));
    }

    /// A journal alone reads as its run's report, live and interrupted:
    /// each tag as its last line leaves it, a delete in flight "may be
    /// gone", repositories in the journal's order and tags by name.
    #[test]
    fn a_journal_reads_as_an_interrupted_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report_path = dir.path().join("r.json");
        let path = journal_path(&report_path);
        let journal = Journal::create(&path).expect("journal");
        let one = Digest::of(b"one");
        let append = |repository: &str, tag: &str, outcomes: &[&str]| {
            for outcome in outcomes {
                let mut line = entry(tag, &one, None);
                line.repository = repository.into();
                line.outcome = (*outcome).into();
                journal.append(&line).expect("append");
            }
        };
        append("group/project/web", "mr-9", &["attempting", "deleted"]);
        append("group/project", "mr-2", &["attempting", "deleted"]);
        append("group/project", "mr-1", &["attempting", "deleted"]);
        append("group/project", "mr-3", &["attempting", "failed"]);
        append("group/project", "mr-4", &["attempting", "already_absent"]);
        append("group/project", "mr-5", &["skipped"]);
        // Killed while these were on the wire.
        append("group/project", "mr-7", &["attempting"]);
        append("group/project", "mr-6", &["attempting"]);

        for named in [&path, &report_path] {
            let report = read_report_or_journal(named).expect("read");
            assert!(report.interrupted && !report.dry_run);
            assert!(
                report.warnings[0].contains("r.json.journal alone"),
                "{:?}",
                report.warnings
            );
            let paths: Vec<&str> = report
                .repositories
                .iter()
                .map(|r| r.path.as_str())
                .collect();
            assert_eq!(paths, ["group/project/web", "group/project"]);
            let project = &report.repositories[1];
            let deleted: Vec<(&str, Option<&str>)> = project
                .deleted
                .iter()
                .map(|d| (d.tag.as_str(), d.digest.as_deref()))
                .collect();
            let digest = one.to_string();
            assert_eq!(
                deleted,
                [("mr-1", Some(&digest[..])), ("mr-2", Some(&digest[..]))]
            );
            assert_eq!(project.deleted[0].rule.as_deref(), Some("review images"));
            let failed: Vec<(&str, bool)> = project
                .failed
                .iter()
                .map(|f| (f.tag.as_str(), f.error == MAY_BE_GONE))
                .collect();
            assert_eq!(failed, [("mr-3", false), ("mr-6", true), ("mr-7", true)]);
            assert_eq!(project.already_absent[0].tag, "mr-4");
            assert_eq!(project.skipped[0].tag, "mr-5");
            assert_eq!(project.tags, 7);
            let totals = &report.totals;
            assert_eq!(
                (
                    totals.repositories,
                    totals.tags,
                    totals.deleted,
                    totals.failed
                ),
                (2, 8, 3, 3)
            );
            assert_eq!(
                (totals.already_absent, totals.skipped, totals.kept),
                (1, 1, 0)
            );
        }

        // A report that exists is read as it is, its journal aside.
        report(false, vec![deleted("mr-1", &one)])
            .write(&report_path)
            .expect("report");
        let read = read_report_or_journal(&report_path).expect("read");
        assert!(!read.interrupted);
        assert_eq!(read.repositories[0].deleted.len(), 1);

        // The journal's content tells it, whatever its name.
        let renamed = dir.path().join("copy.txt");
        std::fs::copy(&path, &renamed).expect("copy");
        assert_eq!(
            read_report_or_journal(&renamed)
                .expect("read")
                .totals
                .deleted,
            3
        );
        let neither = dir.path().join("neither.json");
        std::fs::write(&neither, "{\"hello\": 1}").expect("write");
        let err = read_report_or_journal(&neither).expect_err("neither");
        assert!(err.to_string().contains("neither.json is neither"), "{err}");
        assert_eq!(err.exit_code(), Exit::Usage);
    }

    #[test]
    fn a_dry_runs_report_records_no_deletion() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plan.json");
        report(true, vec![deleted("mr-1", &Digest::of(b"one"))])
            .write(&path)
            .expect("report");
        let record = read_record(&path).expect("read");
        assert!(record.dry_run);
        assert!(record.deleted.is_empty());
    }

    #[test]
    fn a_file_of_neither_kind_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.yml");
        std::fs::write(&path, "rules: []\n").expect("write");
        let err = read_record(&path).expect_err("neither");
        assert!(err.to_string().contains("policy.yml is neither"), "{err}");
        assert_eq!(err.exit_code(), Exit::Usage);

        let path = dir.path().join("bad.json");
        let mut bad = report(false, vec![deleted("mr-1", &Digest::of(b"one"))]);
        bad.repositories[0].deleted[0].tag = "-bad".into();
        bad.write(&path).expect("report");
        let err = read_record(&path).expect_err("bad tag");
        assert!(err.to_string().contains("\"-bad\""), "{err}");
    }
}
