//! Listing a repository's tags with what the plan needs, in the fewest requests.
//!
//! The registry's `/gitlab/v1` list gives 1000 tags per call with digests and
//! dates; where it is missing (404), the REST API gives names (keyset pages,
//! else offset pages) and one details call per tag, made only when a rule
//! needs dates or the caller needs digests.

use futures::stream::{self, StreamExt};

use crate::gitlab::{GitLab, RepositoryInfo};
use crate::inventory::Tag;
use crate::progress::Progress;
use crate::registry::Registry;

/// Where a listing came from, for logs and request accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    GitLabV1,
    RestDetails,
    RestNames,
}

pub async fn list_tags(
    registry: &Registry,
    gitlab: &GitLab,
    repository: &RepositoryInfo,
    need_details: bool,
    concurrency: usize,
    progress: &Progress,
) -> anyhow::Result<(Vec<Tag>, Source)> {
    if let Some(tags) = registry.gitlab_v1_tags(&repository.path).await? {
        progress.advance(tags.len());
        return Ok((tags, Source::GitLabV1));
    }
    let names = gitlab.tag_names(repository.id).await?;
    if !need_details {
        progress.advance(names.len());
        return Ok((
            names.into_iter().map(Tag::named).collect(),
            Source::RestNames,
        ));
    }
    let details: Vec<anyhow::Result<Option<Tag>>> = stream::iter(names)
        .map(|name| async move {
            let details = gitlab.tag_details(repository.id, &name).await;
            progress.advance(1);
            details.map_err(|err| err.context(format!("reading the details of tag {name:?}")))
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut tags = Vec::with_capacity(details.len());
    for entry in details {
        // A tag deleted since the names were listed is simply gone.
        if let Some(tag) = entry? {
            tags.push(tag);
        }
    }
    Ok((tags, Source::RestDetails))
}
