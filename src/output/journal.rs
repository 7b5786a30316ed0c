//! The journal: each deletion a live run makes, appended and flushed to
//! `REPORT.journal` as it happens (JSON lines), so that even a run killed
//! with SIGKILL — GitLab kills a cancelled job after its grace period —
//! leaves the list of what it deleted. The report, written when the run
//! ends, supersedes it as the record; the journal stays beside it, because
//! it alone keeps the bytes of manifests a deletion removed outright (a
//! registry that deletes by digest), which `restore` needs to put them back.
//!
//! One line per planned deletion that was attempted:
//!
//! ```json
//! {"repository":"group/project/api","tag":"mr-12","digest":"sha256:…","media_type":"application/vnd.oci.image.manifest.v1+json","outcome":"deleted","time":"2026-12-07T10:00:00Z","rule":"review images"}
//! ```
//!
//! Before a delete is sent, a line with `"outcome":"attempting"` is written;
//! the line with its outcome follows when the answer comes. After a SIGKILL a
//! tag with an `attempting` line and no outcome may or may not be gone: the
//! registry says which. `manifest` (base64) is there only where the deletion
//! removed the manifest itself. Lines are written whole (one `write` each) and flushed, so a
//! killed run leaves at most one partial last line, which the reader skips.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::model::Outcome;
use crate::output::report::ReportError;

/// One deletion as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub repository: String,
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `attempting` (written before the delete is sent), then `deleted`,
    /// `already_absent`, `skipped` or `failed`.
    pub outcome: String,
    pub time: DateTime<Utc>,
    /// The rule that deleted it, or `with its subject` / `orphaned
    /// referrer` for a signature or attestation; none when deleted by name
    /// (`delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// A referrer tag deleted with its subject: restored after it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub referrer: bool,
    /// The manifest's bytes, base64, where the deletion removed the manifest
    /// itself (a digest delete): what `restore` puts back when the registry
    /// no longer has it but still has its blobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

impl JournalEntry {
    /// The outcome of a line written before the delete was sent.
    pub const ATTEMPTING: &'static str = "attempting";

    /// The stable word for an outcome, as the journal writes it.
    pub fn outcome_word(outcome: &Outcome) -> &'static str {
        match outcome {
            Outcome::Deleted => "deleted",
            Outcome::AlreadyAbsent => "already_absent",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
        }
    }

    pub fn deleted(&self) -> bool {
        self.outcome == "deleted"
    }
}

/// `REPORT.journal`, next to the report.
pub fn journal_path(report: &Path) -> PathBuf {
    let mut path = report.as_os_str().to_owned();
    path.push(".journal");
    PathBuf::from(path)
}

/// A journal; appends are serialised, each flushed before it returns. The
/// file is made with the first entry (a new run's journal is its own: an
/// older one there is replaced), so a run that deletes nothing leaves none.
pub struct Journal {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl Journal {
    pub fn create(path: &Path) -> Result<Journal, ReportError> {
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry as one line, and flushes it to the operating
    /// system (a SIGKILL of the process then loses nothing written).
    pub fn append(&self, entry: &JournalEntry) -> Result<(), ReportError> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        // A poisoned lock still holds a usable file: a panic elsewhere must
        // not cost the record.
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let write_error = |source| ReportError::Write {
            path: self.path.clone(),
            source,
        };
        let file = match &mut *file {
            Some(file) => file,
            slot @ None => slot.insert(
                OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(&self.path)
                    .map_err(write_error)?,
            ),
        };
        file.write_all(&line)
            .and_then(|()| file.flush())
            .map_err(write_error)
    }
}

/// Every whole entry of a journal file, in order; a last line cut short (a
/// run killed mid-write) is skipped, any other bad line is an error naming
/// its line number.
pub fn read_journal(path: &Path) -> Result<Vec<JournalEntry>, JournalError> {
    let file = File::open(path).map_err(|source| JournalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|source| JournalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let mut entries = Vec::with_capacity(lines.len());
    let last = lines.len();
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<JournalEntry>(line) {
            Ok(entry) => entries.push(entry),
            // Only the last line can have been cut short by a kill.
            Err(_) if index + 1 == last => {
                tracing::warn!(path = %path.display(), line = index + 1, "the journal's last line is incomplete (the run was killed while writing it): skipped");
            }
            Err(source) => {
                return Err(JournalError::Line {
                    path: path.to_path_buf(),
                    line: index + 1,
                    source,
                })
            }
        }
    }
    Ok(entries)
}

/// Why a journal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read the journal {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: not a journal line: {source}", .path.display())]
    Line {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

impl crate::domain::exit::ExitCode for JournalError {
    fn exit_code(&self) -> crate::domain::exit::Exit {
        crate::domain::exit::Exit::Usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: &str) -> JournalEntry {
        JournalEntry {
            repository: "group/project".into(),
            tag: tag.into(),
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            outcome: "deleted".into(),
            time: "2026-12-07T10:00:00Z".parse().expect("time"),
            rule: Some("review images".into()),
            referrer: false,
            manifest: None,
        }
    }

    #[test]
    fn appended_entries_read_back_and_a_cut_last_line_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = journal_path(&dir.path().join("report.json"));
        assert!(path.ends_with("report.json.journal"));
        let journal = Journal::create(&path).expect("create");
        journal.append(&entry("mr-1")).expect("append");
        journal.append(&entry("mr-2")).expect("append");
        // What a kill in the middle of a write leaves.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(b"{\"repository\":\"group/pro"))
            .expect("cut line");
        let read = read_journal(&path).expect("read");
        assert_eq!(read, [entry("mr-1"), entry("mr-2")]);

        // A bad line elsewhere is an error naming it.
        std::fs::write(&path, "not json\n{}\n").expect("write");
        let err = read_journal(&path).expect_err("bad line");
        assert!(err.to_string().contains(":1: not a journal line"), "{err}");
    }
}
