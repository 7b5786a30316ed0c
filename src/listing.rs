//! Listing a repository's tags with what the plan needs, in the fewest requests.
//!
//! The registry's `/gitlab/v1` list gives 1000 tags per call with digests and
//! dates; where it is missing (404), the REST API gives names (keyset pages,
//! else offset pages) and one details call per tag, made only when a rule
//! needs dates or the caller needs digests.
//!
//! What one listing learns is not paid for again by the others: the first
//! listing finds out alone whether the registry serves `/gitlab/v1` (kept in
//! the registry's [`crate::registry::Capabilities`]), and before a run that
//! will delete, the registry token is fetched once with `pull,delete`, which
//! then serves the listing and the deletes alike.

use futures::stream::{self, StreamExt};

use crate::error::{Exit, ExitCode};
use crate::gitlab::{GitLab, GitLabError, RepositoryInfo};
use crate::model::Tag;
use crate::names::{RepositoryPath, TagName};
use crate::progress::Progress;
use crate::registry::{Registry, RegistryError, PULL_DELETE};

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
        if let Some(tags) = self.gitlab_v1(&repository.path).await? {
            progress.advance(tags.len());
            return Ok((tags, Source::GitLabV1));
        }
        let names = self.gitlab.tag_names(repository.id).await?;
        if !need_details {
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
        Ok((tags, Source::RestDetails))
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
