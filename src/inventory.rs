//! The inventory file: a project's repositories and tags, as `plan` reads it
//! and `inventory` writes it.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::UserError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub repositories: Vec<InventoryRepository>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryRepository {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// One tag as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    pub name: String,
    #[serde(default)]
    pub digest: Option<String>,
    /// `None` for manifest lists and unparsable configs: counts as newest.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

impl Tag {
    pub fn named(name: impl Into<String>) -> Self {
        Tag {
            name: name.into(),
            digest: None,
            created_at: None,
            protected: false,
        }
    }
}

impl Inventory {
    /// Reads an inventory file; every problem names the file, line and column.
    pub fn load(path: &Path) -> anyhow::Result<Inventory> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            UserError::new(format!(
                "cannot read inventory file {}: {err}",
                path.display()
            ))
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Inventory> {
        let inventory: Inventory = serde_json::from_str(text).map_err(|err| {
            UserError::new(format!(
                "{origin}:{}:{}: invalid inventory: {err} (expected {{\"repositories\": [{{\"path\": \"group/project\", \"tags\": [{{\"name\": \"v1.0.0\", \"digest\": \"sha256:…\", \"created_at\": \"2024-05-01T10:00:00Z\"}}]}}]}})",
                err.line(),
                err.column()
            ))
        })?;
        inventory.validate(origin)?;
        Ok(inventory)
    }

    fn validate(&self, origin: &str) -> anyhow::Result<()> {
        let mut seen_paths = std::collections::HashSet::new();
        for repository in &self.repositories {
            if repository.path.trim().is_empty() {
                return Err(UserError::new(format!(
                    "{origin}: a repository has an empty \"path\"; use the full path, e.g. \"group/project/api\""
                ))
                .into());
            }
            if !seen_paths.insert(repository.path.as_str()) {
                return Err(UserError::new(format!(
                    "{origin}: repository {} is listed twice",
                    repository.path
                ))
                .into());
            }
            let mut seen_tags = std::collections::HashSet::new();
            for tag in &repository.tags {
                if tag.name.is_empty() {
                    return Err(UserError::new(format!(
                        "{origin}: repository {} has a tag with an empty name",
                        repository.path
                    ))
                    .into());
                }
                if !seen_tags.insert(tag.name.as_str()) {
                    return Err(UserError::new(format!(
                        "{origin}: repository {} lists tag {:?} twice",
                        repository.path, tag.name
                    ))
                    .into());
                }
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> anyhow::Result<String> {
        serde_json::to_string_pretty(self).context("serialising the inventory")
    }
}
