//! Deleting tags without collateral damage.
//!
//! The order of attempts, per repository:
//! 1. `DELETE /v2/<path>/manifests/<tag>` (OCI 1.1 tag delete): removes only
//!    that tag. Registries that cannot (400 `DIGEST_INVALID`, 405) are
//!    remembered and not asked again.
//! 2. GitLab's REST single-tag delete, when REST credentials exist: GitLab
//!    knows how to delete one tag on any registry.
//! 3. With the registry alone: a digest is deleted only when every tag that
//!    points at it is one we were asked to delete (checked against a fresh
//!    listing right before); a tag sharing its manifest with a tag we keep is
//!    first moved onto a unique throw-away manifest, whose digest is then
//!    deleted; without push permission for that, the tag is refused.
//!
//! A tag other than the ones named is never removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use tokio::sync::{Mutex, OnceCell};

use crate::auth::PermissionError;
use crate::gitlab::{GitLab, RestDelete};
use crate::progress::Progress;
use crate::registry::{Registry, RegistryDelete, PULL_DELETE, PULL_PUSH_DELETE};

/// What happened to one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Deleted,
    AlreadyAbsent,
    /// Deliberately not deleted (protected tag), with the reason.
    Skipped(String),
    Failed(String),
}

/// A repository as the deleter needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: String,
    /// The REST repository id, when known.
    pub id: Option<u64>,
}

pub struct Deleter {
    registry: Arc<Registry>,
    gitlab: Option<Arc<GitLab>>,
    concurrency: usize,
    repository_ids: OnceCell<HashMap<String, u64>>,
    /// Whether the registry has said if it deletes by tag. Until it has, tag
    /// deletes go one at a time (see [`Deleter::delete_tags`]).
    tag_delete_known: Mutex<bool>,
}

fn chain(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

impl Deleter {
    pub fn new(
        registry: Arc<Registry>,
        gitlab: Option<Arc<GitLab>>,
        concurrency: usize,
    ) -> Deleter {
        Deleter {
            registry,
            gitlab,
            concurrency: concurrency.max(1),
            repository_ids: OnceCell::new(),
            tag_delete_known: Mutex::new(false),
        }
    }

    /// Deletes `tags` from `target`; one outcome per tag, in the given order.
    pub async fn delete_tags(
        &self,
        target: &Target,
        tags: &[String],
        progress: &Progress,
    ) -> Vec<(String, Outcome)> {
        let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
        let mut fallback = Vec::new();

        let mut pending = tags.iter().cloned();
        let mut direct: Vec<(String, Option<Outcome>)> = Vec::with_capacity(tags.len());
        if self.registry.may_delete_by_tag() {
            if let Some(message) = self.missing_delete_permission(target).await {
                for tag in pending.by_ref() {
                    direct.push(self.settle(
                        target,
                        tag,
                        Some(Outcome::Failed(message.clone())),
                        progress,
                    ));
                }
            }
            // Until the registry has said whether it deletes by tag, one tag
            // at a time: one that cannot (Distribution) then costs one wasted
            // request rather than one per slot.
            let mut known = self.tag_delete_known.lock().await;
            while !*known {
                let Some(tag) = pending.next() else { break };
                let (tag, outcome) = self.delete_by_tag(target, tag, progress).await;
                *known = matches!(outcome, None | Some(Outcome::Deleted));
                direct.push((tag, outcome));
            }
        }
        let rest: Vec<(String, Option<Outcome>)> = stream::iter(pending)
            .map(|tag| self.delete_by_tag(target, tag, progress))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        direct.extend(rest);
        for (tag, outcome) in direct {
            match outcome {
                Some(outcome) => {
                    outcomes.insert(tag, outcome);
                }
                None => fallback.push(tag),
            }
        }

        if !fallback.is_empty() {
            tracing::debug!(repository = %target.path, tags = fallback.len(), "registry cannot delete by tag; using a safe fallback");
            let results = match &self.gitlab {
                Some(gitlab) => self.delete_through_rest(gitlab, target, &fallback).await,
                None => self.delete_with_registry_only(target, &fallback).await,
            };
            for (tag, outcome) in results {
                progress.advance(1);
                log_outcome(&target.path, &tag, &outcome);
                outcomes.insert(tag, outcome);
            }
        }

        tags.iter()
            .map(|tag| {
                let outcome = outcomes.get(tag).cloned().unwrap_or_else(|| {
                    Outcome::Failed("internal error: no outcome recorded".into())
                });
                (tag.clone(), outcome)
            })
            .collect()
    }

    /// `DELETE /v2/<path>/manifests/<tag>`; `None` when the registry cannot
    /// delete by tag and a fallback must do it.
    async fn delete_by_tag(
        &self,
        target: &Target,
        tag: String,
        progress: &Progress,
    ) -> (String, Option<Outcome>) {
        if !self.registry.may_delete_by_tag() {
            return (tag, None);
        }
        let outcome = match self.registry.delete_manifest(&target.path, &tag).await {
            Ok(RegistryDelete::Deleted) => Some(Outcome::Deleted),
            Ok(RegistryDelete::NotFound) => Some(Outcome::AlreadyAbsent),
            Ok(RegistryDelete::Denied(message)) => Some(Outcome::Skipped(format!(
                "the registry refused to delete it (403 {message}): a protected tag"
            ))),
            Ok(RegistryDelete::Unsupported(_)) => None,
            Err(err) => Some(Outcome::Failed(chain(&err))),
        };
        self.settle(target, tag, outcome, progress)
    }

    /// Counts and logs a final outcome as soon as it is known, so progress
    /// lines move during a long repository.
    fn settle(
        &self,
        target: &Target,
        tag: String,
        outcome: Option<Outcome>,
        progress: &Progress,
    ) -> (String, Option<Outcome>) {
        if let Some(outcome) = &outcome {
            progress.advance(1);
            log_outcome(&target.path, &tag, outcome);
        }
        (tag, outcome)
    }

    /// Fetches the delete token before the deletes fan out. A token without
    /// `delete` fails every tag with the very message each tag delete would
    /// have failed with, without asking the token service again per tag.
    async fn missing_delete_permission(&self, target: &Target) -> Option<String> {
        match self.registry.check_access(&target.path, PULL_DELETE).await {
            Err(err) if err.downcast_ref::<PermissionError>().is_some() => Some(chain(&err)),
            _ => None,
        }
    }

    async fn repository_id(&self, gitlab: &GitLab, target: &Target) -> anyhow::Result<u64> {
        if let Some(id) = target.id {
            return Ok(id);
        }
        let ids = self
            .repository_ids
            .get_or_try_init(|| async {
                let repositories = gitlab.repositories().await?;
                Ok::<_, anyhow::Error>(repositories.into_iter().map(|r| (r.path, r.id)).collect())
            })
            .await?;
        ids.get(&target.path).copied().ok_or_else(|| {
            anyhow::anyhow!(
                "GitLab does not list a container repository {} in this project",
                target.path
            )
        })
    }

    async fn delete_through_rest(
        &self,
        gitlab: &GitLab,
        target: &Target,
        tags: &[String],
    ) -> Vec<(String, Outcome)> {
        let id = match self.repository_id(gitlab, target).await {
            Ok(id) => id,
            Err(err) => {
                let message = format!("cannot delete through GitLab's API: {}", chain(&err));
                return tags
                    .iter()
                    .map(|t| (t.clone(), Outcome::Failed(message.clone())))
                    .collect();
            }
        };
        stream::iter(tags.iter().cloned())
            .map(|tag| async move {
                let outcome = match gitlab.delete_tag(id, &tag).await {
                    Ok(RestDelete::Deleted) => Outcome::Deleted,
                    Ok(RestDelete::NotFound) => Outcome::AlreadyAbsent,
                    Ok(RestDelete::Forbidden {
                        message,
                        earlier_attempt_may_have_applied,
                    }) => {
                        self.explain_forbidden(
                            target,
                            &tag,
                            message,
                            earlier_attempt_may_have_applied,
                        )
                        .await
                    }
                    Err(err) => Outcome::Failed(chain(&err)),
                };
                (tag, outcome)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    /// Newer GitLab answers 403 both for a protected tag and for a tag that
    /// does not exist: tell them apart by asking the registry. Gone after a
    /// retry whose earlier attempt may have got through: that attempt deleted it.
    async fn explain_forbidden(
        &self,
        target: &Target,
        tag: &str,
        message: String,
        earlier_attempt_may_have_applied: bool,
    ) -> Outcome {
        if message.to_ascii_lowercase().contains("protected") {
            return Outcome::Skipped(format!(
                "GitLab refused to delete it ({message}): a protected tag"
            ));
        }
        match self.registry.manifest_digest(&target.path, tag).await {
            Ok(None) if earlier_attempt_may_have_applied => Outcome::Deleted,
            Ok(None) => Outcome::AlreadyAbsent,
            Ok(Some(_)) => Outcome::Skipped(format!("GitLab refused to delete it (403 {message})")),
            Err(err) => Outcome::Failed(format!(
                "GitLab refused to delete it (403 {message}); {}",
                chain(&err)
            )),
        }
    }

    /// Maps every tag of the repository to its digest, from a fresh listing
    /// (never from an earlier one: a tag may have moved onto our manifest).
    async fn digest_index(&self, path: &str) -> anyhow::Result<BTreeMap<String, String>> {
        let names = self.registry.tag_names(path).await?;
        let resolved: Vec<anyhow::Result<(String, Option<String>)>> = stream::iter(names)
            .map(|name| async move {
                let digest = self.registry.manifest_digest(path, &name).await?;
                Ok((name, digest))
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut index = BTreeMap::new();
        for entry in resolved {
            let (name, digest) = entry?;
            if let Some(digest) = digest {
                index.insert(name, digest);
            }
        }
        Ok(index)
    }

    async fn delete_with_registry_only(
        &self,
        target: &Target,
        tags: &[String],
    ) -> Vec<(String, Outcome)> {
        let path = target.path.as_str();
        let fail_all = |message: String| -> Vec<(String, Outcome)> {
            tags.iter()
                .map(|t| (t.clone(), Outcome::Failed(message.clone())))
                .collect()
        };
        // One fresh listing right before deleting; what remains is the race
        // with a push during these few requests, which no registry API closes.
        let index = match self.digest_index(path).await {
            Ok(index) => index,
            Err(err) => {
                return fail_all(format!(
                    "not deleted: could not list the repository's tags to prove no other tag shares the manifest: {}",
                    chain(&err)
                ))
            }
        };
        let wanted: BTreeSet<&str> = tags.iter().map(String::as_str).collect();
        let mut results = Vec::new();
        let mut by_digest: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for tag in tags {
            match index.get(tag) {
                None => results.push((tag.clone(), Outcome::AlreadyAbsent)),
                Some(digest) => by_digest
                    .entry(digest.clone())
                    .or_default()
                    .push(tag.clone()),
            }
        }
        let mut shared = Vec::new();
        let mut whole_digests = Vec::new();
        for (digest, group) in by_digest {
            let others: Vec<&String> = index
                .iter()
                .filter(|(name, d)| **d == digest && !wanted.contains(name.as_str()))
                .map(|(name, _)| name)
                .collect();
            if others.is_empty() {
                whole_digests.push((digest, group));
            } else {
                let others = others
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                shared.extend(group.into_iter().map(|tag| (tag, others.clone())));
            }
        }

        let deleted: Vec<Vec<(String, Outcome)>> = stream::iter(whole_digests)
            .map(|(digest, group)| async move {
                let outcome = match self.registry.delete_manifest(path, &digest).await {
                    Ok(RegistryDelete::Deleted) => Outcome::Deleted,
                    Ok(RegistryDelete::NotFound) => Outcome::AlreadyAbsent,
                    Ok(RegistryDelete::Denied(message)) => Outcome::Skipped(format!(
                        "the registry refused to delete its manifest {digest} (403 {message})"
                    )),
                    Ok(RegistryDelete::Unsupported(code)) => Outcome::Failed(format!(
                        "the registry refused to delete manifest {digest} ({code}): deletes may be disabled"
                    )),
                    Err(err) => Outcome::Failed(chain(&err)),
                };
                group.into_iter().map(|tag| (tag, outcome.clone())).collect()
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        results.extend(deleted.into_iter().flatten());

        if !shared.is_empty() {
            results.extend(self.delete_shared(path, shared).await);
        }
        results
    }

    /// Tags whose manifest other tags still use: move each onto its own
    /// throw-away manifest, then delete that.
    async fn delete_shared(
        &self,
        path: &str,
        shared: Vec<(String, String)>,
    ) -> Vec<(String, Outcome)> {
        if let Err(err) = self.registry.check_access(path, PULL_PUSH_DELETE).await {
            let why = if err.downcast_ref::<PermissionError>().is_some() {
                "the credentials lack push permission needed to move it onto a throw-away manifest"
                    .to_string()
            } else {
                chain(&err)
            };
            return shared
                .into_iter()
                .map(|(tag, others)| {
                    let reason = format!(
                        "refused: this registry cannot delete by tag and {others} share(s) its manifest, so deleting the manifest would delete them too; {why}. Set CI_JOB_TOKEN or GITLAB_TOKEN so GitLab's API can delete the tag, or grant push"
                    );
                    (tag, Outcome::Failed(reason))
                })
                .collect();
        }
        stream::iter(shared)
            .map(|(tag, _)| async move {
                let outcome = async {
                    let digest = self.registry.move_to_throwaway_manifest(path, &tag).await?;
                    match self.registry.delete_manifest(path, &digest).await? {
                        RegistryDelete::Deleted | RegistryDelete::NotFound => Ok(Outcome::Deleted),
                        RegistryDelete::Denied(message) => Ok(Outcome::Failed(format!(
                            "moved onto throw-away manifest {digest}, but deleting it was refused (403 {message})"
                        ))),
                        RegistryDelete::Unsupported(code) => Ok(Outcome::Failed(format!(
                            "moved onto throw-away manifest {digest}, but deleting it was refused ({code})"
                        ))),
                    }
                }
                .await
                .unwrap_or_else(|err: anyhow::Error| Outcome::Failed(chain(&err)));
                (tag, outcome)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    /// Deletes a manifest by digest: every tag pointing at it goes too, as
    /// the user asked by naming the digest.
    pub async fn delete_digest(&self, target: &Target, digest: &str) -> Outcome {
        let outcome = match self.registry.delete_manifest(&target.path, digest).await {
            Ok(RegistryDelete::Deleted) => Outcome::Deleted,
            Ok(RegistryDelete::NotFound) => Outcome::AlreadyAbsent,
            Ok(RegistryDelete::Denied(message)) => {
                Outcome::Skipped(format!("the registry refused (403 {message})"))
            }
            Ok(RegistryDelete::Unsupported(code)) => Outcome::Failed(format!(
                "the registry refused to delete the manifest ({code})"
            )),
            Err(err) => Outcome::Failed(chain(&err)),
        };
        log_outcome(&target.path, digest, &outcome);
        outcome
    }
}

fn log_outcome(repository: &str, tag: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Deleted => tracing::debug!(repository, tag, "deleted"),
        Outcome::AlreadyAbsent => tracing::debug!(repository, tag, "already absent"),
        Outcome::Skipped(reason) => tracing::info!(repository, tag, reason = %reason, "skipped"),
        Outcome::Failed(error) => tracing::warn!(repository, tag, error = %error, "failed"),
    }
}
