//! The core model every step shares: a tag as listed, planned, deleted and
//! reported. File formats (`inventory`, `report`) and APIs (`gitlab`,
//! `registry`) convert to and from it at their edges.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::names::{Digest, RepositoryPath, TagName};

/// One tag as the planner sees it. It is also the inventory file's tag
/// entry, hence the serde attributes: every field but `name` is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    pub name: TagName,
    #[serde(default)]
    pub digest: Option<Digest>,
    /// The image's **build** time: REST tag details' `created_at` on a
    /// registry without the metadata database (the image config's
    /// `created`; for an index, its newest child's). `None` for artifacts
    /// and unparsable configs, and on `/gitlab/v1`, which lists no build
    /// time. A time before 2000-01-01 is a reproducible builder's constant
    /// stamp: see [`Tag::age`].
    #[serde(default, with = "crate::domain::rfc3339")]
    pub created_at: Option<DateTime<Utc>>,
    /// The tag's **push** time, where the registry reports it (`/gitlab/v1`
    /// `published_at`, i.e. `updated_at` or else `created_at`). It decides
    /// the tag's age over the build time: see [`Tag::age`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::domain::rfc3339"
    )]
    pub pushed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// Protected by one of GitLab's tag protection or immutability rules
    /// (from the registry token, see `tag_rules`): which, as a sentence.
    /// The inventory records it so that `plan` gives the same reason.
    #[serde(
        default,
        rename = "gitlab_tag_rule",
        skip_serializing_if = "Option::is_none"
    )]
    pub gitlab_rule: Option<String>,
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
    /// The image's size in bytes as the listing reported it (`/gitlab/v1`
    /// `size_bytes`, REST tag details' `total_size`): the manifest, config
    /// and layers of this one image, so layers shared with other images
    /// count in each. `None` where the listing did not say (names only, an
    /// index on REST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// The last pull the pull ledger saw of this tag's manifest or, for an
    /// image index, of any manifest it lists (`--ledger`; see
    /// `domain::pulls`). `None`: no pull seen, or no ledger read — the
    /// repository's ledger state tells which.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::domain::rfc3339"
    )]
    pub last_pulled_at: Option<DateTime<Utc>>,
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
            pushed_at: None,
            protected: false,
            gitlab_rule: None,
            media_type: None,
            children: Vec::new(),
            image: false,
            referrers: 0,
            size_bytes: None,
            last_pulled_at: None,
        }
    }

    /// Whether the listing tells if this tag is an image index (and then
    /// which manifests it lists): its media type is known, or it is known
    /// to be an image. Referrer tags can only be deleted when every other
    /// tag of the repository is this well known (see the planner, step 6).
    pub fn kind_known(&self) -> bool {
        self.media_type.is_some() || self.image
    }

    /// The date this tag is ordered and aged by (docs/policy.md, "Ages"):
    /// its push time where known, else its build time — unless that is a
    /// reproducible builder's constant stamp (before 2000-01-01), which
    /// counts as unknown (newest for `keep_n`, never old for `older_than`).
    pub fn age(&self) -> Age {
        match (self.pushed_at, self.created_at) {
            (Some(pushed), _) => Age::Pushed(pushed),
            (None, Some(built)) if built >= build_time_floor() => Age::Built(built),
            (None, Some(_)) => Age::BuildStamp,
            (None, None) => Age::Unknown,
        }
    }
}

/// A tag's age and where it came from ([`Tag::age`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    /// The registry's push time (`/gitlab/v1` `published_at`).
    Pushed(DateTime<Utc>),
    /// The image's build time (the config's `created`), no push time known.
    Built(DateTime<Utc>),
    /// No push time, and the build time is a reproducible builder's
    /// constant stamp (1970 from ko, 1980 from buildpacks): unknown.
    BuildStamp,
    /// Neither time is known (an index or artifact listed without dates).
    Unknown,
}

impl Age {
    /// The date to order and age by; `None`: unknown (counts as newest).
    pub fn date(self) -> Option<DateTime<Utc>> {
        match self {
            Age::Pushed(at) | Age::Built(at) => Some(at),
            Age::BuildStamp | Age::Unknown => None,
        }
    }
}

/// Which dates a repository's tags were aged by (the report's
/// `age_source`): `pushed` when every dated tag had a push time, `built`
/// when every dated tag had only a build time, `mixed` for some of each,
/// `none` when no tag had a usable date (all undated, or reproducible
/// stamps only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgeSource {
    Pushed,
    Built,
    Mixed,
    #[default]
    None,
}

impl AgeSource {
    /// The source over `tags`' ages.
    pub fn of<'a>(tags: impl IntoIterator<Item = &'a Tag>) -> AgeSource {
        let (mut pushed, mut built) = (false, false);
        for tag in tags {
            match tag.age() {
                Age::Pushed(_) => pushed = true,
                Age::Built(_) => built = true,
                Age::BuildStamp | Age::Unknown => {}
            }
        }
        match (pushed, built) {
            (true, true) => AgeSource::Mixed,
            (true, false) => AgeSource::Pushed,
            (false, true) => AgeSource::Built,
            (false, false) => AgeSource::None,
        }
    }
}

/// Build times before this are the constant stamps of reproducible builders
/// (1970 from ko, 1980 from buildpacks): unknown, never old.
pub fn build_time_floor() -> DateTime<Utc> {
    BUILD_TIME_FLOOR
}

/// 2000-01-01T00:00:00Z, a constant: [`Tag::age`] compares against it for
/// every tag, many times over while sorting.
const BUILD_TIME_FLOOR: DateTime<Utc> = match DateTime::from_timestamp(946_684_800, 0) {
    Some(floor) => floor,
    None => panic!("a valid constant date"),
};

/// What a project's git refs say, for git-aware rules (`when_ref`,
/// `per_ref`): the slugs of its branches and git tags, the source-branch
/// slugs of its open merge requests (a fork's branch lives elsewhere), and
/// the IIDs of its open merge requests. Also the inventory's `refs` entry
/// for the project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refs {
    /// Every listing answered in full. When not, no tag is claimed through
    /// `when_ref` in the project (fail safe), and `incomplete_because` says why.
    pub complete: bool,
    /// Slugs of branches, git tags and open merge requests' source branches.
    #[serde(default)]
    pub slugs: std::collections::BTreeSet<String>,
    /// IIDs of the open merge requests.
    #[serde(default)]
    pub open_mrs: std::collections::BTreeSet<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_because: Option<String>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_build_time_floor_is_the_year_2000() {
        let floor = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        assert_eq!(Some(build_time_floor()), floor);
    }
}

/// A container repository as REST lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub id: u64,
    pub path: RepositoryPath,
    pub tags_count: Option<u64>,
    /// The project the repository belongs to (the inventory's `refs` key).
    pub project_id: Option<u64>,
    /// When GitLab created the repository (`remove_empty_repositories`
    /// leaves an empty one alone for a day: a push may be under way).
    pub created_at: Option<DateTime<Utc>>,
    /// GitLab's `status`: `delete_scheduled`, `delete_ongoing`, or none.
    pub status: Option<String>,
}

/// What happened to one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Deleted,
    AlreadyAbsent,
    /// Deliberately not deleted: GitLab's protection said no.
    Skipped(Refusal),
    /// Not deleted, and it should have been (or could not be proven safe).
    Failed(DeleteFailure),
}

/// A delete GitLab refused on purpose, and the sentence the report gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// A protected tag: the registry's 403 or GitLab's REST 403.
    Protected,
    /// One of GitLab's tag rules: 401 `PROTECTED_TAG` or `IMMUTABLE_TAG`.
    TagRule,
    /// Not attempted: the run was stopped (a signal) before it got there.
    Stopped,
}

/// Why a delete did not happen, and the sentence the report gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub kind: FailureKind,
    pub error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The request failed: no answer, a server error after the retries, an
    /// answer that could not be read.
    Request,
    /// The credentials may not delete there.
    Permission,
    /// The registry refused the delete, and not as GitLab's protection does.
    Refused,
    /// 409 `MANIFEST_REFERENCED`: an image index still lists the manifest.
    StillInAnIndex,
    /// GitLab's registry refuses every delete by digest in a repository with
    /// tag rules (`PROTECTED_MANIFEST`), and this registry cannot delete by tag.
    DigestPathClosed,
    /// Something kept needs the manifest and the tag cannot be moved off it;
    /// or that nothing needs it could not be proven. Refused by this tool.
    ManifestNeeded,
    /// Never attempted (a fallback did not answer for it).
    NotAttempted,
}

impl Outcome {
    pub fn skipped(kind: RefusalKind, reason: impl Into<String>) -> Outcome {
        Outcome::Skipped(Refusal {
            kind,
            reason: reason.into(),
        })
    }

    pub fn failed(kind: FailureKind, error: impl Into<String>) -> Outcome {
        Outcome::Failed(DeleteFailure {
            kind,
            error: error.into(),
        })
    }
}
