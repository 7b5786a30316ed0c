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
    /// Known to be a single manifest, not an image index, although
    /// `media_type` is unknown: GitLab read `created_at` from its image
    /// config (REST tag details, which only an image manifest has; an
    /// index has no config). The listing sets it instead of guessing a
    /// media type string, and saves fetching every image's manifest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub image: bool,
    /// How many OCI 1.1 referrers (untagged artifacts naming this tag's
    /// manifest as `subject`: signatures, SBOMs, …) the registry reported
    /// (`/gitlab/v1` with `referrers=true`). Informational: GitLab's registry
    /// deletes untagged referrers with their subject.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub referrers: u32,
}

fn is_zero(count: &u32) -> bool {
    *count == 0
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
            image: false,
            referrers: 0,
        }
    }

    /// Whether the listing tells if this tag is an image index (and then
    /// which manifests it lists): its media type is known, or it is known
    /// to be an image. Referrer tags can only be deleted when every other
    /// tag of the repository is this well known (see the planner, step 6).
    pub fn kind_known(&self) -> bool {
        self.media_type.is_some() || self.image
    }
}
