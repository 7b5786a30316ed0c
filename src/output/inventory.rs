//! The inventory file: a project's repositories and tags, as `plan` reads it
//! and `inventory` writes it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domain::config_error::ConfigError;
use crate::domain::in_use::InUse;
use crate::domain::model::{Refs, Tag};
use crate::domain::names::RepositoryPath;
use crate::domain::pulls::LedgerView;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub repositories: Vec<InventoryRepository>,
    /// Each project's git refs, keyed by project id (a string, as JSON
    /// keys are): for rules with `when_ref`. Optional.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refs: BTreeMap<String, Refs>,
    /// Each project's commits in use (deployed, running), keyed by project
    /// id: for `protect_in_use`. Optional.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub in_use: BTreeMap<String, InUse>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryRepository {
    pub path: RepositoryPath,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The GitLab project the repository belongs to: its refs are
    /// `refs[project_id]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
    /// Written by `inventory --ledger`: the first event the pull ledger
    /// received for the repository, or `null` when it has received none
    /// yet. Absent: no ledger was read. Each tag's `last_pulled_at` goes
    /// with it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "watched_since"
    )]
    pub ledger_watched_since: Option<Option<chrono::DateTime<chrono::Utc>>>,
    /// Written by `inventory --ledger` when the ledger could not be read
    /// for the repository: why. `plan` then deletes nothing through
    /// `unpulled_for` there, as the run would not have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_error: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl InventoryRepository {
    /// What the pull ledger said of the repository when it was listed.
    pub fn ledger_view(&self) -> LedgerView {
        LedgerView::from_recorded(self.ledger_error.as_deref(), self.ledger_watched_since)
    }

    /// Records what the pull ledger said (`LedgerView::NotRead` records
    /// nothing).
    pub fn record_ledger(&mut self, view: LedgerView) {
        match view {
            LedgerView::NotRead => {}
            LedgerView::Unreadable(why) => self.ledger_error = Some(why),
            LedgerView::Read { watched_since } => self.ledger_watched_since = Some(watched_since),
        }
    }
}

/// `ledger_watched_since`: absent, `null` (read, no event yet) or a time —
/// three states, where a plain optional field has two.
mod watched_since {
    use chrono::{DateTime, Utc};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Option<DateTime<Utc>>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            // Skipped by `skip_serializing_if`; written as null if not.
            None => serializer.serialize_none(),
            Some(time) => crate::domain::rfc3339::serialize(time, serializer),
        }
    }

    /// Only called when the key is present: `null` is `Some(None)`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<DateTime<Utc>>>, D::Error> {
        crate::domain::rfc3339::deserialize(deserializer).map(Some)
    }
}

impl Inventory {
    /// Reads an inventory file; every problem names the file, line and column.
    pub fn load(path: &Path) -> Result<Inventory, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigError::file(
                path.display().to_string(),
                format!("cannot read inventory file {}: {err}", path.display()),
            )
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Inventory, ConfigError> {
        let inventory: Inventory =
            serde_json::from_str(text).map_err(|err| Inventory::syntax_error(origin, &err))?;
        inventory.validate(origin)?;
        Ok(inventory)
    }

    /// A syntax or schema error, with the file, line and column and what
    /// an inventory looks like.
    pub fn syntax_error(origin: &str, err: &serde_json::Error) -> ConfigError {
        ConfigError::file_line(origin.to_string(), err.line(), format!(
            "{origin}:{}:{}: invalid inventory: {err} (expected {{\"repositories\": [{{\"path\": \"group/project\", \"tags\": [{{\"name\": \"v1.0.0\", \"digest\": \"sha256:…\", \"created_at\": \"2024-05-01T10:00:00Z\"}}]}}]}})",
            err.line(),
            err.column()
        ))
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        Inventory::check_refs_keys(origin, &self.refs)?;
        Inventory::check_project_keys(origin, "in_use", &self.in_use)?;
        let mut seen_paths = std::collections::HashSet::new();
        for repository in &self.repositories {
            if !seen_paths.insert(&repository.path) {
                return Err(ConfigError::file(
                    origin.to_string(),
                    format!("{origin}: repository {} is listed twice", repository.path),
                ));
            }
            Inventory::check_repository(origin, repository)?;
        }
        Ok(())
    }

    /// `in_use` keys are project ids, written canonically.
    pub fn check_project_keys<T>(
        origin: &str,
        section: &str,
        entries: &BTreeMap<String, T>,
    ) -> Result<(), ConfigError> {
        for project in entries.keys() {
            let canonical = project.parse::<u64>().ok().map(|id| id.to_string());
            if canonical.as_deref() != Some(project.as_str()) {
                return Err(ConfigError::file(origin.to_string(), format!(
                    "{origin}: {section}: {project:?} is not a project id; {section} is keyed by the \
                     repositories' project_id, as `inventory` writes it"
                )));
            }
        }
        Ok(())
    }

    /// `refs` keys are project ids, written canonically.
    pub fn check_refs_keys(origin: &str, refs: &BTreeMap<String, Refs>) -> Result<(), ConfigError> {
        for project in refs.keys() {
            let canonical = project.parse::<u64>().ok().map(|id| id.to_string());
            if canonical.as_deref() != Some(project.as_str()) {
                return Err(ConfigError::file(origin.to_string(), format!(
                    "{origin}: refs: {project:?} is not a project id; refs are keyed by the \
                     repositories' project_id, e.g. \"refs\": {{\"7\": {{\"complete\": true, \"slugs\": [\"main\"], \"open_mrs\": [12]}}}}"
                )));
            }
        }
        Ok(())
    }

    /// A repository's own checks: no tag listed twice.
    pub fn check_repository(
        origin: &str,
        repository: &InventoryRepository,
    ) -> Result<(), ConfigError> {
        // FxHash: the names are the file's own, and SipHash's resistance to
        // crafted collisions buys nothing here but time (100,000s of tags).
        let mut seen_tags = rustc_hash::FxHashSet::default();
        seen_tags.reserve(repository.tags.len());
        for tag in &repository.tags {
            if !seen_tags.insert(&tag.name) {
                return Err(ConfigError::file(
                    origin.to_string(),
                    format!(
                        "{origin}: repository {} lists tag {:?} twice",
                        repository.path,
                        tag.name.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}
