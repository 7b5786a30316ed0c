//! The core model every step shares: a tag as listed, planned, deleted and
//! reported. File formats (`inventory`, `report`) and APIs (`gitlab`,
//! `registry`) convert to and from it at their edges.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::names::{Digest, TagName};

/// One tag as the planner sees it. It is also the inventory file's tag
/// entry, hence the serde attributes: every field but `name` is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    pub name: TagName,
    #[serde(default)]
    pub digest: Option<Digest>,
    /// `None` for manifest lists and unparsable configs: counts as newest.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// The manifest's media type, where the listing knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// For an image index: the digests of the manifests it contains. A
    /// referrer tag whose subject is one of them follows this tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Digest>,
}

impl Tag {
    /// A tag known by name only (a listing without details).
    pub fn named(name: TagName) -> Self {
        Tag {
            name,
            digest: None,
            created_at: None,
            protected: false,
            media_type: None,
            children: Vec::new(),
        }
    }
}
