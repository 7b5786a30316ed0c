//! The journal of a live run, fed by the deleter as each deletion settles:
//! the deleter knows a tag by name only; this adds what the plan knew of it
//! (digest, media type, rule) before the line is appended.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;

use crate::domain::model::Outcome;
use crate::domain::names::{RepositoryPath, TagName};
use crate::domain::planner::PlannedDeletion;
use crate::execute::deleter::DeletionWitness;
use crate::output::journal::{Journal, JournalEntry};
use crate::output::report::ReportError;

/// What the plan said of a tag about to be deleted.
struct Planned {
    digest: Option<String>,
    media_type: Option<String>,
    rule: String,
    referrer: bool,
}

pub struct JournalWitness {
    journal: Journal,
    planned: Mutex<HashMap<(RepositoryPath, TagName), Planned>>,
    /// The first error writing the journal: the run stops deleting on it.
    broken: Mutex<Option<ReportError>>,
}

impl JournalWitness {
    pub fn new(journal: Journal) -> JournalWitness {
        JournalWitness {
            journal,
            planned: Mutex::default(),
            broken: Mutex::default(),
        }
    }

    /// The deletions of `repository` about to be attempted.
    pub fn expect<'a>(
        &self,
        repository: &RepositoryPath,
        deletions: impl IntoIterator<Item = &'a PlannedDeletion>,
    ) {
        let mut planned = self
            .planned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for deletion in deletions {
            planned.insert(
                (repository.clone(), deletion.tag.name.clone()),
                Planned {
                    digest: deletion.tag.digest.as_ref().map(ToString::to_string),
                    media_type: deletion.tag.media_type.clone(),
                    rule: deletion.rule.to_string(),
                    referrer: deletion.referrer,
                },
            );
        }
    }

    /// Why the journal could not be written, once: the run must not go on
    /// deleting without its record.
    pub fn take_error(&self) -> Option<ReportError> {
        self.broken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    pub fn is_broken(&self) -> bool {
        self.broken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some()
    }
}

impl JournalWitness {
    fn append(&self, entry: &JournalEntry) {
        if let Err(err) = self.journal.append(entry) {
            tracing::error!(path = %self.journal.path().display(), error = %err, "the journal could not be written: the run stops deleting");
            let mut broken = self
                .broken
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            broken.get_or_insert(err);
        }
    }

    fn entry(
        &self,
        repository: &RepositoryPath,
        tag: &TagName,
        outcome: &str,
        remove: bool,
    ) -> JournalEntry {
        let mut planned = self
            .planned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (repository.clone(), tag.clone());
        let known = if remove {
            planned.remove(&key)
        } else {
            planned.get(&key).map(|p| Planned {
                digest: p.digest.clone(),
                media_type: p.media_type.clone(),
                rule: p.rule.clone(),
                referrer: p.referrer,
            })
        };
        JournalEntry {
            repository: repository.to_string(),
            tag: tag.to_string(),
            digest: known.as_ref().and_then(|p| p.digest.clone()),
            media_type: known.as_ref().and_then(|p| p.media_type.clone()),
            outcome: outcome.to_string(),
            time: chrono::Utc::now(),
            rule: known.as_ref().map(|p| p.rule.clone()),
            referrer: known.as_ref().is_some_and(|p| p.referrer),
            manifest: None,
        }
    }
}

impl DeletionWitness for JournalWitness {
    fn attempting(&self, repository: &RepositoryPath, tag: &TagName) {
        let entry = self.entry(repository, tag, JournalEntry::ATTEMPTING, false);
        self.append(&entry);
    }

    fn settled(
        &self,
        repository: &RepositoryPath,
        tag: &TagName,
        outcome: &Outcome,
        removed_manifest: Option<&[u8]>,
    ) {
        let mut entry = self.entry(repository, tag, JournalEntry::outcome_word(outcome), true);
        entry.manifest =
            removed_manifest.map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes));
        self.append(&entry);
    }
}
