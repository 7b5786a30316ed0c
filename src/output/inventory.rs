//! The inventory file: a project's repositories and tags, as `plan` reads it
//! and `inventory` writes it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domain::config_error::ConfigError;
use crate::domain::model::{Refs, Tag};
use crate::domain::names::RepositoryPath;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub repositories: Vec<InventoryRepository>,
    /// Each project's git refs, keyed by project id (a string, as JSON
    /// keys are): for rules with `when_ref`. Optional.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refs: BTreeMap<String, Refs>,
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
    #[serde(default)]
    pub tags: Vec<Tag>,
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
