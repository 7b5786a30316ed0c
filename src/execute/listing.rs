//! Listing a repository's tags with what the plan needs, in the fewest requests.
//!
//! The registry's `/gitlab/v1` list gives 1000 tags per call with digests and
//! dates; where it is missing (404), the REST API gives names (keyset pages,
//! else offset pages) and one details call per tag, made only when a rule
//! needs dates or the caller needs digests.
//!
//! Referrer tags (signatures, attestations) can only follow their image when
//! every tag's digest and kind are known (see the planner, step 6): the
//! listing fills `media_type`, an index's `children` and [`Tag::image`],
//! fetching a manifest only where the listing itself did not say, once per
//! digest (`Lister::complete`).
//!
//! What one listing learns is not paid for again by the others: the first
//! listing finds out alone whether the registry serves `/gitlab/v1` (kept in
//! the registry's [`crate::registry::client::Capabilities`]), and before a run that
//! will delete, the registry token is fetched once with `pull,delete`, which
//! then serves the listing and the deletes alike.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::domain::exit::{Exit, ExitCode};
use crate::domain::model::RepositoryInfo;
use crate::domain::model::Tag;
use crate::domain::names::{Digest, Reference, RepositoryPath, TagName};
use crate::domain::planner::PlannedDeletion;
use crate::domain::referrers::referrer_subject;
use crate::gitlab::client::{GitLab, GitLabError};
use crate::registry::client::{Manifest, Registry, RegistryError, INDEX_MEDIA_TYPES, PULL_DELETE};
use crate::wire::progress::Progress;

/// Why a repository could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    GitLab(#[from] GitLabError),
    #[error("reading the details of tag {tag:?}: {source}")]
    Details {
        tag: TagName,
        #[source]
        source: GitLabError,
    },
}

impl ExitCode for ListError {
    fn exit_code(&self) -> Exit {
        match self {
            ListError::Registry(err) => err.exit_code(),
            ListError::GitLab(err) | ListError::Details { source: err, .. } => err.exit_code(),
        }
    }
}

/// Progress over listing `repositories`, by the tag counts REST reported.
pub fn listing_progress(repositories: &[RepositoryInfo]) -> std::sync::Arc<Progress> {
    let progress = Progress::new("listing tags");
    progress.add_total(
        repositories
            .iter()
            .map(|r| r.tags_count.unwrap_or(0) as usize)
            .sum(),
    );
    progress
}

/// Where a listing came from, for logs and request accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    GitLabV1,
    RestDetails,
    RestNames,
}

pub struct Lister<'a> {
    registry: &'a Registry,
    gitlab: &'a GitLab,
    concurrency: usize,
    /// Deletes will follow: ask for the delete token up front.
    will_delete: bool,
}

impl<'a> Lister<'a> {
    pub fn new(
        registry: &'a Registry,
        gitlab: &'a GitLab,
        concurrency: usize,
        will_delete: bool,
    ) -> Lister<'a> {
        Lister {
            registry,
            gitlab,
            concurrency: concurrency.max(1),
            will_delete,
        }
    }

    pub async fn list(
        &self,
        repository: &RepositoryInfo,
        need_details: bool,
        progress: &Progress,
    ) -> Result<(Vec<Tag>, Source), ListError> {
        if let Some(mut tags) = self.gitlab_v1(&repository.path).await? {
            progress.advance(tags.len());
            // `/gitlab/v1` gives every tag's media type and date; only an
            // index's children need its manifest.
            self.complete(&repository.path, &mut tags, false).await?;
            return Ok((tags, Source::GitLabV1));
        }
        let names = self.gitlab.tag_names(repository.id).await?;
        // Which image a signature or attestation belongs to is told by
        // digests: with referrer tags, the details are needed anyway.
        // Without them, nothing changes (and nothing more is requested).
        let has_referrers = names.iter().any(|name| referrer_subject(name).is_some());
        if !need_details && !has_referrers {
            progress.advance(names.len());
            return Ok((
                names.into_iter().map(Tag::named).collect(),
                Source::RestNames,
            ));
        }
        let mut tags = Vec::with_capacity(names.len());
        let gitlab = self.gitlab;
        let mut details = stream::iter(names)
            .map(|name| async move {
                let details = gitlab.tag_details(repository.id, &name).await;
                progress.advance(1);
                details.map_err(|source| ListError::Details { tag: name, source })
            })
            .buffer_unordered(self.concurrency);
        // The first error ends the listing: the repository is skipped anyway,
        // so the remaining details calls would be wasted.
        while let Some(entry) = details.next().await {
            // A tag deleted since the names were listed is simply gone.
            if let Some(tag) = entry? {
                tags.push(tag);
            }
        }
        drop(details);
        // Without the metadata database (no `/gitlab/v1`), GitLab's REST
        // `created_at` is the image config's `created`: only an image
        // manifest has a config, so a dated tag is no index. (With the
        // database it would be the push time, of indexes too: never here.)
        for tag in &mut tags {
            tag.image = tag.created_at.is_some();
        }
        self.complete(&repository.path, &mut tags, need_details)
            .await?;
        Ok((tags, Source::RestDetails))
    }

    /// The digests of the tags a plan deletes where the listing named tags
    /// only (REST names: a policy of name rules, without `/gitlab/v1`), one
    /// details call per such tag: the report and the journal then record
    /// what each deletion removed, which `restore` puts back. A tag gone
    /// since it was listed keeps no digest (its delete finds it absent).
    pub async fn add_digests(
        &self,
        repository: &RepositoryInfo,
        deletions: &mut [PlannedDeletion],
    ) -> Result<(), ListError> {
        let gitlab = self.gitlab;
        let found: Vec<(usize, Option<Tag>)> = stream::iter(
            deletions
                .iter()
                .enumerate()
                .filter(|(_, deletion)| deletion.tag.digest.is_none())
                .map(|(index, deletion)| (index, deletion.tag.name.clone())),
        )
        .map(|(index, name)| async move {
            let details = gitlab.tag_details(repository.id, &name).await;
            details
                .map(|tag| (index, tag))
                .map_err(|source| ListError::Details { tag: name, source })
        })
        .buffer_unordered(self.concurrency)
        .try_collect()
        .await?;
        for (index, details) in found {
            deletions[index].tag.digest = details.and_then(|tag| tag.digest);
        }
        Ok(())
    }

    /// Fills in what the listing did not say: each tag's kind, an index's
    /// children and, with `index_ages`, an index's build time.
    ///
    /// REST details (no `/gitlab/v1`) date a tag from its image config, so a
    /// dated tag is an image ([`Tag::image`], set by the caller) and costs
    /// nothing more; only undated tags (indexes, artifacts, unparsable configs) have their
    /// manifest fetched. Every manifest and config is fetched once per
    /// digest, however many tags share it.
    ///
    /// An index's build time is its newest child's config `created` (one
    /// child manifest and one config per child digest); a time before
    /// 2000-01-01 (reproducible builders stamp 1970 or 1980) counts as
    /// unknown, never as old ([`Tag::age`]), like an image's.
    async fn complete(
        &self,
        path: &RepositoryPath,
        tags: &mut [Tag],
        index_ages: bool,
    ) -> Result<(), RegistryError> {
        let wanted = undescribed_digests(tags);
        if wanted.is_empty() {
            return Ok(());
        }
        // The `pull,delete` token the tag rules (and any delete) need serves
        // these fetches too: one token request, not a `pull` one first.
        self.warm_token(path).await;
        let manifests = self.manifests(path, wanted).await?;
        let built = if index_ages {
            self.index_build_times(path, tags, &manifests).await?
        } else {
            HashMap::new()
        };
        describe(tags, &manifests, &built, index_ages);
        Ok(())
    }

    /// The manifest of each digest, once each (absent ones left out).
    async fn manifests(
        &self,
        path: &RepositoryPath,
        digests: BTreeSet<Digest>,
    ) -> Result<HashMap<Digest, Manifest>, RegistryError> {
        let registry = self.registry;
        stream::iter(digests)
            .map(|digest| async move {
                registry
                    .manifest(path, &Reference::Digest(digest.clone()))
                    .await
                    .map(|manifest| manifest.map(|manifest| (digest, manifest)))
            })
            .buffer_unordered(self.concurrency)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await
    }

    /// The build time of each child of the undated indexes among `tags`:
    /// its config's `created` (one child manifest and one config each).
    async fn index_build_times(
        &self,
        path: &RepositoryPath,
        tags: &[Tag],
        manifests: &HashMap<Digest, Manifest>,
    ) -> Result<HashMap<Digest, Option<DateTime<Utc>>>, RegistryError> {
        let registry = self.registry;
        let children: BTreeSet<Digest> = tags
            .iter()
            .filter(|tag| tag.created_at.is_none())
            .filter_map(|tag| manifests.get(tag.digest.as_ref()?))
            .filter(|manifest| manifest.is_index())
            .flat_map(|manifest| manifest.children.iter().cloned())
            .collect();
        stream::iter(children)
            .map(|child| async move {
                let created = match registry
                    .manifest(path, &Reference::Digest(child.clone()))
                    .await?
                    .and_then(|manifest| manifest.config)
                {
                    Some(config) => registry.config_created(path, &config).await?,
                    None => None,
                };
                // A reproducible stamp (before 2000) is kept as it is:
                // `Tag::age` counts it as unknown, and the report counts it.
                Ok::<_, RegistryError>((child, created))
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await
    }

    /// The `/gitlab/v1` listing, or `None` where the registry has none.
    /// Until the registry has answered whether it serves `/gitlab/v1`, one
    /// listing at a time asks; the others wait for that answer.
    async fn gitlab_v1(&self, path: &RepositoryPath) -> Result<Option<Vec<Tag>>, RegistryError> {
        let capability = &self.registry.capabilities.gitlab_v1;
        let _turn = match capability.known() {
            Some(false) => return Ok(None),
            Some(true) => None,
            None => Some(capability.discovery().await),
        };
        if capability.known() == Some(false) {
            return Ok(None);
        }
        self.warm_token(path).await;
        self.registry.gitlab_v1_tags(path).await
    }

    /// Before a run that deletes, one `pull,delete` token serves both the
    /// listing and the deletes (the registry's token cache hands it out for
    /// `pull` too), where listing first would fetch a `pull` token of its own.
    async fn warm_token(&self, path: &RepositoryPath) {
        if !self.will_delete {
            return;
        }
        if let Err(err) = self.registry.check_access(path, PULL_DELETE).await {
            // Listing needs only pull; the deleter reports a missing delete
            // permission for each tag it cannot delete.
            tracing::debug!(repository = %path, error = %err, "no delete token before listing");
        }
    }
}

/// The digests whose manifest says what the listing did not: those of
/// tags listed as an index, and of undated tags of unknown kind.
fn undescribed_digests(tags: &[Tag]) -> BTreeSet<Digest> {
    tags.iter()
        .filter(|tag| match &tag.media_type {
            Some(media_type) => INDEX_MEDIA_TYPES.contains(&media_type.as_str()),
            None => !tag.image,
        })
        .filter_map(|tag| tag.digest.clone())
        .collect()
}

/// Writes into each tag what its manifest says: its media type and, for an
/// index, its children and (with `index_ages`, when undated) the build
/// time of its newest child.
fn describe(
    tags: &mut [Tag],
    manifests: &HashMap<Digest, Manifest>,
    built: &HashMap<Digest, Option<DateTime<Utc>>>,
    index_ages: bool,
) {
    for tag in tags.iter_mut() {
        let Some(manifest) = tag.digest.as_ref().and_then(|d| manifests.get(d)) else {
            continue;
        };
        if !manifest.media_type.is_empty() {
            tag.media_type = Some(manifest.media_type.clone());
        }
        if manifest.is_index() {
            tag.children = manifest.children.clone();
            if index_ages && tag.created_at.is_none() {
                tag.created_at = manifest
                    .children
                    .iter()
                    .filter_map(|child| built.get(child).copied().flatten())
                    .max();
            }
        }
    }
}
