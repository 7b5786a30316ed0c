//! Listing a repository's tags with what the plan needs, in the fewest requests.
//!
//! The registry's `/gitlab/v1` list gives 1000 tags per call with digests and
//! dates; where it is missing (404), the REST API gives names (keyset pages,
//! else offset pages) and one details call per tag, made only when a rule
//! needs dates or the caller needs digests.
//!
//! A [`Lister`] is shared by every listing of a run, so that what one listing
//! learns is not paid for again by the others: the first listing finds out
//! alone whether the registry serves `/gitlab/v1` (listings running at the
//! same time would each probe it), and before a run that will delete, the
//! registry token is fetched once with `pull,delete`, which then serves the
//! listing and the deletes alike.

use futures::stream::{self, StreamExt};
use tokio::sync::Mutex;

use crate::gitlab::{GitLab, RepositoryInfo};
use crate::inventory::Tag;
use crate::progress::Progress;
use crate::registry::{Registry, PULL_DELETE};

/// Where a listing came from, for logs and request accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    GitLabV1,
    RestDetails,
    RestNames,
}

#[derive(Debug, Default)]
struct Probe {
    /// The registry has answered a `/gitlab/v1` listing (either way).
    answered: bool,
    /// …and it was a 404: no metadata database.
    missing: bool,
}

pub struct Lister<'a> {
    registry: &'a Registry,
    gitlab: &'a GitLab,
    concurrency: usize,
    /// Deletes will follow: ask for the delete token up front.
    will_delete: bool,
    probe: Mutex<Probe>,
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
            probe: Mutex::new(Probe::default()),
        }
    }

    pub async fn list(
        &self,
        repository: &RepositoryInfo,
        need_details: bool,
        progress: &Progress,
    ) -> anyhow::Result<(Vec<Tag>, Source)> {
        if let Some(tags) = self.gitlab_v1(repository).await? {
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
                details.map_err(|err| err.context(format!("reading the details of tag {name:?}")))
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
    async fn gitlab_v1(&self, repository: &RepositoryInfo) -> anyhow::Result<Option<Vec<Tag>>> {
        let mut probe = self.probe.lock().await;
        if probe.answered {
            let missing = probe.missing;
            drop(probe);
            if missing {
                return Ok(None);
            }
            self.warm_token(&repository.path).await;
            return self.registry.gitlab_v1_tags(&repository.path).await;
        }
        // Others wait for this first answer rather than probe too.
        self.warm_token(&repository.path).await;
        let listed = self.registry.gitlab_v1_tags(&repository.path).await?;
        probe.answered = true;
        probe.missing = listed.is_none();
        Ok(listed)
    }

    /// Before a run that deletes, one `pull,delete` token serves both the
    /// listing and the deletes (the registry's token cache hands it out for
    /// `pull` too), where listing first would fetch a `pull` token of its own.
    async fn warm_token(&self, path: &str) {
        if !self.will_delete {
            return;
        }
        if let Err(err) = self.registry.check_access(path, PULL_DELETE).await {
            // Listing needs only pull; the deleter reports a missing delete
            // permission for each tag it cannot delete.
            tracing::debug!(repository = %path, error = %format!("{err:#}"), "no delete token before listing");
        }
    }
}
