//! Deleting tags without collateral damage.
//!
//! The order of attempts, per repository:
//! 1. `DELETE /v2/<path>/manifests/<tag>` (OCI 1.1 tag delete): removes only
//!    that tag. Registries that cannot (400 `DIGEST_INVALID`, 405) are
//!    remembered and not asked again.
//! 2. GitLab's REST single-tag delete, when REST credentials exist: GitLab
//!    knows how to delete one tag on any registry.
//! 3. With the registry alone: a digest is deleted only when every tag that
//!    points at it is one we were asked to delete, no kept image index lists
//!    it and no kept referrer names it as subject (checked against a fresh
//!    listing right before: one `GET` per tag, which gives the digest, as a
//!    `HEAD` would, and an index's children). Otherwise the tag is first
//!    moved onto a unique throw-away manifest, whose digest is then deleted
//!    (the manifest stays, untagged, for whatever needs it); without push
//!    permission for that, the tag is refused with the reason.
//!
//! A tag other than the ones named is never removed.
//!
//! This is the executor: it takes planned deletions and returns one
//! [`Outcome`] per deletion, aligned with its input.

use crate::domain::exit::one_line as chain;
use crate::domain::model::{FailureKind, Outcome, RefusalKind};
use crate::execute::stop::Stop;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use tokio::sync::OnceCell;

use crate::domain::names::{Digest, Reference, RepositoryPath, TagName};
use crate::domain::referrers::referrer_subject;
use crate::gitlab::client::{GitLab, GitLabError, RestDelete};
use crate::registry::auth::AuthError;
use crate::registry::client::{
    Manifest, Registry, RegistryDelete, RegistryError, PULL_DELETE, PULL_PUSH_DELETE,
};
use crate::wire::progress::Progress;

/// A repository as the deleter needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: RepositoryPath,
    /// The REST repository id, when known.
    pub id: Option<u64>,
}

pub struct Deleter {
    registry: Arc<Registry>,
    gitlab: Option<Arc<GitLab>>,
    concurrency: usize,
    repository_ids: OnceCell<HashMap<RepositoryPath, u64>>,
    witness: Option<Arc<dyn DeletionWitness>>,
    /// Asked on a signal: no new delete is sent, those on the wire get a grace.
    stop: Option<Arc<Stop>>,
    /// The manifests a digest delete removed, by repository and tag, until
    /// the tag's outcome is settled and handed to the witness with them.
    removed_manifests: std::sync::Mutex<HashMap<(RepositoryPath, TagName), bytes::Bytes>>,
}

/// Told of each tag's final outcome as soon as it is known — the journal
/// of a live run — with the manifest's bytes where the deletion removed the
/// manifest itself (a digest delete), so it can be put back.
pub trait DeletionWitness: Send + Sync {
    /// A delete of `tag` is about to be sent: after a SIGKILL, a tag this
    /// was said of and no outcome may be gone.
    fn attempting(&self, repository: &RepositoryPath, tag: &TagName);

    fn settled(
        &self,
        repository: &RepositoryPath,
        tag: &TagName,
        outcome: &Outcome,
        removed_manifest: Option<&[u8]>,
    );
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
            witness: None,
            stop: None,
            removed_manifests: Default::default(),
        }
    }

    /// The deleter, stopping when `stop` is asked.
    pub fn with_stop(mut self, stop: Option<Arc<Stop>>) -> Deleter {
        self.stop = stop;
        self
    }

    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|stop| stop.requested())
    }

    /// The outcome of a tag the run was stopped before.
    fn not_attempted(&self) -> Outcome {
        let signal = self
            .stop
            .as_ref()
            .and_then(|stop| stop.signal())
            .map_or("a signal", |signal| signal.name());
        Outcome::skipped(
            RefusalKind::Stopped,
            format!("not attempted: the run was stopped ({signal}) before this tag; run again to finish"),
        )
    }

    /// Runs a write already decided on to its end — unless a stop is asked
    /// and its grace runs out first: `None`.
    async fn in_grace<T>(&self, write: impl std::future::Future<Output = T>) -> Option<T> {
        match &self.stop {
            Some(stop) => stop.within_grace(write).await,
            None => Some(write.await),
        }
    }

    /// The deleter, telling `witness` of each outcome as it settles.
    pub fn with_witness(mut self, witness: Option<Arc<dyn DeletionWitness>>) -> Deleter {
        self.witness = witness;
        self
    }

    /// Deletes `tags` from `target`: one outcome per tag, in the order given.
    pub async fn delete_tags(
        &self,
        target: &Target,
        tags: &[TagName],
        progress: &Progress,
    ) -> Vec<Outcome> {
        // Every slot is filled below: by tag delete, or by a fallback that
        // answers for each tag it was handed.
        let mut outcomes: Vec<Option<Outcome>> = vec![None; tags.len()];
        self.delete_each_by_tag(target, tags, &mut outcomes, progress)
            .await;
        self.delete_the_rest(target, tags, &mut outcomes, progress)
            .await;
        all_answered(outcomes)
    }

    /// Step 1, tag delete, for every tag: fills the slot of each tag it
    /// answers for and leaves the others empty for a fallback.
    async fn delete_each_by_tag(
        &self,
        target: &Target,
        tags: &[TagName],
        outcomes: &mut [Option<Outcome>],
        progress: &Progress,
    ) {
        let mut pending = 0..tags.len();
        if self.registry.may_delete_by_tag() {
            if let Some(message) = self.missing_delete_permission(target).await {
                for index in pending.by_ref() {
                    let outcome = Outcome::failed(FailureKind::Permission, message.clone());
                    self.settle(target, &tags[index], &outcome, progress);
                    outcomes[index] = Some(outcome);
                }
            }
            // Until the registry has said whether it deletes by tag, one tag
            // at a time: one that cannot (Distribution) then costs one wasted
            // request rather than one per slot.
            let capability = &self.registry.capabilities.tag_delete;
            if capability.known().is_none() {
                let _turn = capability.discovery().await;
                while capability.known().is_none() {
                    let Some(index) = pending.next() else { break };
                    outcomes[index] = self.delete_by_tag(target, &tags[index], progress).await;
                }
            }
        }
        let direct: Vec<(usize, Option<Outcome>)> = stream::iter(pending)
            .map(|index| async move {
                (
                    index,
                    self.delete_by_tag(target, &tags[index], progress).await,
                )
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        for (index, outcome) in direct {
            outcomes[index] = outcome;
        }
    }

    /// Steps 2 and 3 for the tags tag delete left (the empty slots): through
    /// GitLab's REST API where there are REST credentials, else with the
    /// registry alone.
    async fn delete_the_rest(
        &self,
        target: &Target,
        tags: &[TagName],
        outcomes: &mut [Option<Outcome>],
        progress: &Progress,
    ) {
        let fallback: Vec<usize> = (0..tags.len())
            .filter(|index| outcomes[*index].is_none())
            .collect();
        if fallback.is_empty() {
            return;
        }
        tracing::debug!(repository = %target.path, tags = fallback.len(), "registry cannot delete by tag; using a safe fallback");
        let fallback_tags: Vec<TagName> =
            fallback.iter().map(|index| tags[*index].clone()).collect();
        let results = if self.stopped() {
            vec![self.not_attempted(); fallback_tags.len()]
        } else {
            for tag in &fallback_tags {
                self.attempting(target, tag);
            }
            let fallback = async {
                match &self.gitlab {
                    Some(gitlab) => {
                        self.delete_through_rest(gitlab, target, &fallback_tags)
                            .await
                    }
                    None => self.delete_with_registry_only(target, &fallback_tags).await,
                }
            };
            self.in_grace(fallback)
                .await
                .unwrap_or_else(|| vec![stopped_in_flight(); fallback_tags.len()])
        };
        for ((index, tag), outcome) in fallback.iter().zip(&fallback_tags).zip(results) {
            self.settle(target, tag, &outcome, progress);
            outcomes[*index] = Some(outcome);
        }
    }

    /// `DELETE /v2/<path>/manifests/<tag>`; `None` when the registry cannot
    /// delete by tag and a fallback must do it.
    async fn delete_by_tag(
        &self,
        target: &Target,
        tag: &TagName,
        progress: &Progress,
    ) -> Option<Outcome> {
        if !self.registry.may_delete_by_tag() {
            return None;
        }
        if self.stopped() {
            let outcome = self.not_attempted();
            self.settle(target, tag, &outcome, progress);
            return Some(outcome);
        }
        let reference = Reference::Tag(tag.clone());
        self.attempting(target, tag);
        let Some(answer) = self
            .in_grace(self.registry.delete_manifest(&target.path, &reference))
            .await
        else {
            let outcome = stopped_in_flight();
            self.settle(target, tag, &outcome, progress);
            return Some(outcome);
        };
        if matches!(answer, Ok(RegistryDelete::Unsupported(_))) {
            return None;
        }
        let outcome = outcome_of(answer, &Deleting::Tag);
        self.settle(target, tag, &outcome, progress);
        Some(outcome)
    }

    /// Counts and logs a final outcome as soon as it is known, so progress
    /// lines move during a long repository.
    fn settle(&self, target: &Target, tag: &TagName, outcome: &Outcome, progress: &Progress) {
        progress.advance(1);
        log_outcome(&target.path, tag, outcome);
        let removed = self
            .removed_manifests
            .lock()
            .ok()
            .and_then(|mut removed| removed.remove(&(target.path.clone(), tag.clone())));
        if let Some(witness) = &self.witness {
            witness.settled(&target.path, tag, outcome, removed.as_deref());
        }
    }

    fn attempting(&self, target: &Target, tag: &TagName) {
        if let Some(witness) = &self.witness {
            witness.attempting(&target.path, tag);
        }
    }

    /// Keeps the bytes of the manifest a digest delete removed for each of
    /// `positions`' tags, for the witness.
    fn keep_removed(
        &self,
        path: &RepositoryPath,
        tags: &[TagName],
        positions: &[usize],
        index: &BTreeMap<TagName, Manifest>,
    ) {
        let Ok(mut removed) = self.removed_manifests.lock() else {
            return;
        };
        for &position in positions {
            if let Some(manifest) = index.get(&tags[position]) {
                removed.insert(
                    (path.clone(), tags[position].clone()),
                    manifest.body.clone(),
                );
            }
        }
    }

    /// Fetches the delete token before the deletes fan out. A token without
    /// `delete` fails every tag with the very message each tag delete would
    /// have failed with, without asking the token service again per tag.
    async fn missing_delete_permission(&self, target: &Target) -> Option<String> {
        match self.registry.check_access(&target.path, PULL_DELETE).await {
            Err(err @ RegistryError::Auth(AuthError::Permission(_))) => Some(chain(&err)),
            _ => None,
        }
    }

    async fn repository_id(&self, gitlab: &GitLab, target: &Target) -> Result<u64, String> {
        if let Some(id) = target.id {
            return Ok(id);
        }
        let ids = self
            .repository_ids
            .get_or_try_init(|| async {
                let repositories = gitlab.repositories().await?;
                Ok::<_, GitLabError>(repositories.into_iter().map(|r| (r.path, r.id)).collect())
            })
            .await
            .map_err(|err| chain(&err))?;
        ids.get(&target.path).copied().ok_or_else(|| {
            format!(
                "GitLab does not list a container repository {} in this project",
                target.path
            )
        })
    }

    /// One outcome per tag, in the order given, one tag at a time.
    ///
    /// This path serves registries that cannot delete by tag, where GitLab
    /// deletes a tag by pointing it at a dummy manifest — the same one for
    /// every tag — and deleting that by digest. Two such deletes in one
    /// repository at once race: one's digest delete can land between the
    /// other's manifest upload and its tag link, leaving a tag listed that
    /// points at nothing (seen on Distribution 2.8). So, per repository,
    /// these deletes go one after the other; repositories still go side by
    /// side.
    async fn delete_through_rest(
        &self,
        gitlab: &GitLab,
        target: &Target,
        tags: &[TagName],
    ) -> Vec<Outcome> {
        let id = match self.repository_id(gitlab, target).await {
            Ok(id) => id,
            Err(err) => {
                let message = format!("cannot delete through GitLab's API: {err}");
                return vec![Outcome::failed(FailureKind::Request, message); tags.len()];
            }
        };
        stream::iter(tags)
            .map(|tag| async move {
                match gitlab.delete_tag(id, tag).await {
                    Ok(RestDelete::Deleted) => Outcome::Deleted,
                    Ok(RestDelete::NotFound) => Outcome::AlreadyAbsent,
                    Ok(RestDelete::Forbidden {
                        message,
                        earlier_attempt_may_have_applied,
                    }) => {
                        self.explain_forbidden(
                            target,
                            tag,
                            message,
                            earlier_attempt_may_have_applied,
                        )
                        .await
                    }
                    Err(err) => Outcome::failed(FailureKind::Request, chain(&err)),
                }
            })
            .buffered(1)
            .collect()
            .await
    }

    /// Newer GitLab answers 403 both for a protected tag and for a tag that
    /// does not exist: tell them apart by asking the registry. Gone after a
    /// retry whose earlier attempt may have got through: that attempt deleted it.
    async fn explain_forbidden(
        &self,
        target: &Target,
        tag: &TagName,
        message: String,
        earlier_attempt_may_have_applied: bool,
    ) -> Outcome {
        let lower = message.to_ascii_lowercase();
        if lower.contains("protected") || lower.contains("immutable") {
            return Outcome::skipped(
                RefusalKind::Protected,
                format!("GitLab refused to delete it ({message}): a protected tag"),
            );
        }
        let reference = Reference::Tag(tag.clone());
        match self
            .registry
            .manifest_digest(&target.path, &reference)
            .await
        {
            Ok(None) if earlier_attempt_may_have_applied => Outcome::Deleted,
            Ok(None) => Outcome::AlreadyAbsent,
            // Still there, and the 403 did not say "protected": a refusal
            // GitLab did not explain as protection is a failure.
            Ok(Some(_)) => Outcome::failed(
                FailureKind::Refused,
                format!("GitLab refused to delete it (403 {message})"),
            ),
            Err(err) => Outcome::failed(
                FailureKind::Request,
                format!(
                    "GitLab refused to delete it (403 {message}); {}",
                    chain(&err)
                ),
            ),
        }
    }

    /// Maps every tag of the repository to its manifest, from a fresh
    /// listing (never from an earlier one: a tag may have moved onto our
    /// manifest). One `GET` per tag, where a `HEAD` would give the digest
    /// alone: the same number of requests also tells which kept tags are
    /// image indexes, what they list, and what an artifact names as subject.
    async fn manifest_index(
        &self,
        path: &RepositoryPath,
    ) -> Result<BTreeMap<TagName, Manifest>, RegistryError> {
        let names = self.registry.tag_names(path).await?;
        let resolved: Vec<Result<(TagName, Option<Manifest>), RegistryError>> = stream::iter(names)
            .map(|name| async move {
                let reference = Reference::Tag(name);
                let manifest = self.registry.manifest(path, &reference).await?;
                let Reference::Tag(name) = reference else {
                    unreachable!("built as a tag above")
                };
                Ok((name, manifest))
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut index = BTreeMap::new();
        for entry in resolved {
            let (name, manifest) = entry?;
            if let Some(manifest) = manifest {
                index.insert(name, manifest);
            }
        }
        Ok(index)
    }

    /// One outcome per tag, in the order given.
    async fn delete_with_registry_only(&self, target: &Target, tags: &[TagName]) -> Vec<Outcome> {
        let path = &target.path;
        // GitLab's tag rules close every digest delete here (401
        // `PROTECTED_MANIFEST`), the throw-away manifest's included: say so
        // per tag rather than send deletes that must fail.
        if self.registry.digest_path_closed(path).await {
            let outcome = digest_path_closed(
                "GitLab's tag protection or immutability rules exist in this repository",
            );
            return vec![outcome; tags.len()];
        }
        // One fresh listing right before deleting; what remains is the race
        // with a push during these few requests, which no registry API closes.
        let index = match self.manifest_index(path).await {
            Ok(index) => index,
            Err(err) => {
                let message = format!(
                    "not deleted: could not list the repository's tags to prove no other tag needs the manifest: {}",
                    chain(&err)
                );
                return vec![Outcome::failed(FailureKind::ManifestNeeded, message); tags.len()];
            }
        };
        let mut outcomes: Vec<Option<Outcome>> = vec![None; tags.len()];
        let DigestDeletes {
            whole_indexes,
            whole_digests,
            mut shared,
        } = digest_deletes(tags, &index, &mut outcomes);
        // Indexes first: a manifest an index still lists cannot go before it.
        for phase in [whole_indexes, whole_digests] {
            for (group, outcome) in self.delete_digests(path, phase).await {
                if outcome == Outcome::Deleted {
                    self.keep_removed(path, tags, &group, &index);
                }
                for position in group {
                    outcomes[position] = Some(outcome.clone());
                }
            }
        }

        if !shared.is_empty() && self.registry.digest_path_closed(path).await {
            // A digest delete just met `PROTECTED_MANIFEST`: moving a tag
            // onto a throw-away manifest would only strand it there.
            let outcome = digest_path_closed("the registry refused a delete by digest here");
            for (position, _) in shared.drain(..) {
                outcomes[position] = Some(outcome.clone());
            }
        }
        if !shared.is_empty() {
            let moved = self.delete_shared(path, tags, &shared).await;
            for ((position, _), outcome) in shared.iter().zip(moved) {
                outcomes[*position] = Some(outcome);
            }
        }
        all_answered(outcomes)
    }

    /// Deletes each digest, which every tag of its group (positions) points
    /// at and nothing kept needs: one outcome per group.
    async fn delete_digests(
        &self,
        path: &RepositoryPath,
        groups: Vec<(&Digest, Vec<usize>)>,
    ) -> Vec<(Vec<usize>, Outcome)> {
        stream::iter(groups)
            .map(|(digest, group)| async move {
                let reference = Reference::Digest(digest.clone());
                let answer = self.registry.delete_manifest(path, &reference).await;
                (group, outcome_of(answer, &Deleting::TagsManifest(digest)))
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await
    }

    /// Tags whose manifest something kept still needs (another tag, a kept
    /// index listing it, a kept referrer naming it): move each onto its own
    /// throw-away manifest, then delete that. One outcome per entry of
    /// `shared` (a position in `tags` and why its manifest must stay).
    async fn delete_shared(
        &self,
        path: &RepositoryPath,
        tags: &[TagName],
        shared: &[(usize, String)],
    ) -> Vec<Outcome> {
        if let Err(err) = self.registry.check_access(path, PULL_PUSH_DELETE).await {
            let why = match &err {
                RegistryError::Auth(AuthError::Permission(_)) => {
                    "the credentials lack push permission needed to move it onto a throw-away manifest"
                        .to_string()
                }
                other => chain(other),
            };
            return shared
                .iter()
                .map(|(_, needed)| {
                    Outcome::failed(
                        FailureKind::ManifestNeeded,
                        format!("refused: this registry cannot delete by tag, and its manifest must stay: {needed}; {why}. Set CI_JOB_TOKEN or GITLAB_TOKEN so GitLab's API can delete the tag, or grant push"),
                    )
                })
                .collect();
        }
        stream::iter(shared)
            .map(|(position, _)| async move {
                let tag = &tags[*position];
                match self.registry.move_to_throwaway_manifest(path, tag).await {
                    Ok(digest) => {
                        let reference = Reference::Digest(digest.clone());
                        let answer = self.registry.delete_manifest(path, &reference).await;
                        outcome_of(answer, &Deleting::Throwaway(&digest))
                    }
                    Err(err) => Outcome::failed(FailureKind::Request, chain(&err)),
                }
            })
            .buffered(self.concurrency)
            .collect()
            .await
    }

    /// Deletes a manifest by digest: every tag pointing at it goes too, as
    /// the user asked by naming the digest.
    pub async fn delete_digest(&self, target: &Target, digest: &Digest) -> Outcome {
        let reference = Reference::Digest(digest.clone());
        let answer = self
            .registry
            .delete_manifest(&target.path, &reference)
            .await;
        let outcome = outcome_of(answer, &Deleting::Digest);
        log_outcome(&target.path, digest, &outcome);
        outcome
    }
}

/// Each slot's outcome. An empty slot is not reachable: each fallback
/// answers for every tag it is handed. Should that break, fail safe:
/// report, never guess.
fn all_answered(outcomes: Vec<Option<Outcome>>) -> Vec<Outcome> {
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| Outcome::failed(FailureKind::NotAttempted, "not attempted"))
        })
        .collect()
}

/// The deletes by digest that remove the given tags (by position) and
/// nothing else.
struct DigestDeletes<'a> {
    /// Indexes that every tag on them is to lose and nothing kept needs.
    whole_indexes: Vec<(&'a Digest, Vec<usize>)>,
    /// The same for every other manifest.
    whole_digests: Vec<(&'a Digest, Vec<usize>)>,
    /// Tags on a manifest something kept needs (and why): each is moved
    /// onto a throw-away manifest first.
    shared: Vec<(usize, String)>,
}

/// Groups the tags by the manifest they point at in `index` (a fresh
/// listing of every tag of the repository); a tag it no longer lists is
/// marked already absent in `outcomes`. Indexes are set apart because
/// GitLab's registry refuses (409) to delete a manifest an index still
/// lists, even one this call deletes next: indexes go first.
fn digest_deletes<'a>(
    tags: &[TagName],
    index: &'a BTreeMap<TagName, Manifest>,
    outcomes: &mut [Option<Outcome>],
) -> DigestDeletes<'a> {
    let wanted: BTreeSet<&TagName> = tags.iter().collect();
    let needed = needed_by_kept_tags(index, &wanted);
    let mut by_digest: BTreeMap<&Digest, Vec<usize>> = BTreeMap::new();
    for (position, tag) in tags.iter().enumerate() {
        match index.get(tag) {
            None => outcomes[position] = Some(Outcome::AlreadyAbsent),
            Some(manifest) => by_digest
                .entry(&manifest.digest)
                .or_default()
                .push(position),
        }
    }
    let mut deletes = DigestDeletes {
        whole_indexes: Vec::new(),
        whole_digests: Vec::new(),
        shared: Vec::new(),
    };
    for (digest, group) in by_digest {
        match needed.get(digest) {
            None => {
                let lists_others = group
                    .first()
                    .and_then(|position| index.get(&tags[*position]))
                    .is_some_and(|manifest| !manifest.children.is_empty());
                if lists_others {
                    deletes.whole_indexes.push((digest, group));
                } else {
                    deletes.whole_digests.push((digest, group));
                }
            }
            Some(reasons) => {
                let why = reasons.join("; ");
                deletes
                    .shared
                    .extend(group.into_iter().map(|position| (position, why.clone())));
            }
        }
    }
    deletes
}

/// The manifests that tags not being deleted still need, each with why: the
/// manifest another kept tag points at, the children a kept image index
/// lists, the subject a kept referrer names (by its `sha256-<hex>[.suffix]`
/// tag, or by an OCI 1.1 `subject`). Deleting one of these by digest would
/// remove a kept tag, or leave a kept index or signature pointing at nothing.
fn needed_by_kept_tags(
    index: &BTreeMap<TagName, Manifest>,
    wanted: &BTreeSet<&TagName>,
) -> BTreeMap<Digest, Vec<String>> {
    // Digest → the kept tags that need it, one map per reason.
    let mut sharing: BTreeMap<&Digest, Vec<&str>> = BTreeMap::new();
    let mut listing: BTreeMap<&Digest, Vec<&str>> = BTreeMap::new();
    let mut naming: BTreeMap<Digest, Vec<&str>> = BTreeMap::new();
    for (name, manifest) in index.iter().filter(|(name, _)| !wanted.contains(name)) {
        let name = name.as_str();
        sharing.entry(&manifest.digest).or_default().push(name);
        for child in &manifest.children {
            listing.entry(child).or_default().push(name);
        }
        let subjects = referrer_subject(name)
            .into_iter()
            .chain(manifest.subject.clone())
            .collect::<BTreeSet<_>>();
        for subject in subjects {
            naming.entry(subject).or_default().push(name);
        }
    }
    let mut needed: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for (digest, names) in sharing {
        needed.entry(digest.clone()).or_default().push(format!(
            "{} share(s) its manifest, so deleting the manifest would delete them too",
            names.join(", ")
        ));
    }
    for (digest, mut names) in listing {
        // An index may list a manifest twice (two platforms, one image).
        names.dedup();
        needed.entry(digest.clone()).or_default().push(format!(
            "still part of the kept image index {}",
            names.join(", ")
        ));
    }
    for (digest, names) in naming {
        needed.entry(digest).or_default().push(format!(
            "the kept referrer {} names it as subject",
            names.join(", ")
        ));
    }
    needed
}

/// What a manifest `DELETE` was meant to remove: the wording of its outcome.
enum Deleting<'a> {
    /// A tag, by name (`DELETE …/manifests/<tag>`).
    Tag,
    /// The manifest the tags being deleted point at, and nothing else needs.
    TagsManifest(&'a Digest),
    /// The throw-away manifest a tag was just moved onto.
    Throwaway(&'a Digest),
    /// A manifest the user named by digest (every tag on it goes too).
    Digest,
}

/// The one mapping from a registry's answer to a manifest `DELETE` to what
/// happened to the tag(s) it was to remove. `Unsupported` (the registry
/// cannot delete by tag) is the caller's to fall back from when deleting by
/// tag; here it is a refusal.
fn outcome_of(answer: Result<RegistryDelete, RegistryError>, deleting: &Deleting<'_>) -> Outcome {
    let answer = match answer {
        Ok(answer) => answer,
        Err(err) => return Outcome::failed(FailureKind::Request, chain(&err)),
    };
    match (answer, deleting) {
        // The throw-away manifest exists for this delete alone: gone is done.
        (RegistryDelete::Deleted | RegistryDelete::NotFound, Deleting::Throwaway(_)) => {
            Outcome::Deleted
        }
        (RegistryDelete::Deleted, _) => Outcome::Deleted,
        (RegistryDelete::NotFound, _) => Outcome::AlreadyAbsent,
        // A 403 is not GitLab's word for protection (that is a 401 with
        // PROTECTED_TAG or IMMUTABLE_TAG, or REST's 403 naming a protected
        // tag): a proxy, a policy, a misconfigured registry. A failure,
        // counted, and the run exits 1 — never a quiet "skipped".
        (RegistryDelete::Denied(message), Deleting::Tag) => Outcome::failed(
            FailureKind::Refused,
            format!("the registry refused to delete it (403 {message})"),
        ),
        (RegistryDelete::Denied(message), Deleting::TagsManifest(digest)) => Outcome::failed(
            FailureKind::Refused,
            format!("the registry refused to delete its manifest {digest} (403 {message})"),
        ),
        (RegistryDelete::Denied(message), Deleting::Digest) => Outcome::failed(
            FailureKind::Refused,
            format!("the registry refused (403 {message})"),
        ),
        (RegistryDelete::Denied(message), Deleting::Throwaway(digest)) => Outcome::failed(
            FailureKind::Refused,
            format!("moved onto throw-away manifest {digest}, but deleting it was refused (403 {message})"),
        ),
        (RegistryDelete::Unsupported(code), Deleting::Throwaway(digest)) => Outcome::failed(
            FailureKind::Refused,
            format!("moved onto throw-away manifest {digest}, but deleting it was refused ({code})"),
        ),
        (RegistryDelete::Unsupported(code), Deleting::TagsManifest(digest)) => Outcome::failed(
            FailureKind::Refused,
            format!("the registry refused to delete manifest {digest} ({code}): deletes may be disabled"),
        ),
        (RegistryDelete::Unsupported(code), Deleting::Digest | Deleting::Tag) => Outcome::failed(
            FailureKind::Refused,
            format!("the registry refused to delete the manifest ({code})"),
        ),
        (RegistryDelete::Referenced(message), _) => Outcome::failed(
            FailureKind::StillInAnIndex,
            format!("not deleted: still part of an image index (409 MANIFEST_REFERENCED: {message})"),
        ),
        // GitLab's registry refused a tag delete because of a tag rule:
        // deliberately not deleted, not a failure. The rules changed since
        // the plan read them from the token.
        (RegistryDelete::RuleProtected { code, message }, _) => {
            let what = if code == "IMMUTABLE_TAG" {
                "immutable"
            } else {
                "protected by a GitLab tag rule"
            };
            Outcome::skipped(
                RefusalKind::TagRule,
                format!("{what}: the registry refused to delete it (401 {code}: {message})"),
            )
        }
        (RegistryDelete::ProtectedManifest(message), Deleting::Digest) => Outcome::failed(
            FailureKind::DigestPathClosed,
            format!("not deleted: GitLab's registry refuses deletes by digest in a repository with tag protection or immutability rules (401 PROTECTED_MANIFEST: {message}); delete its tags instead"),
        ),
        (RegistryDelete::ProtectedManifest(message), _) => digest_path_closed(&message),
    }
}

/// A delete the run was stopped during, and whose answer did not come within
/// the grace: it may or may not have happened.
fn stopped_in_flight() -> Outcome {
    Outcome::failed(
        FailureKind::Request,
        "stopped while the delete was on the wire, before it was answered: the tag may or may not be gone; run again to finish",
    )
}

/// The digest path is closed in this repository (401 `PROTECTED_MANIFEST`,
/// or tag rules known from the token) and the registry cannot delete by tag:
/// a tag can go only through GitLab's API.
fn digest_path_closed(why: &str) -> Outcome {
    Outcome::failed(
        FailureKind::DigestPathClosed,
        format!("not deleted: this registry cannot delete by tag, and GitLab's registry refuses every delete by digest (and so the throw-away manifest) in a repository with tag protection or immutability rules (PROTECTED_MANIFEST: {why}); set CI_JOB_TOKEN or GITLAB_TOKEN so GitLab's API can delete the tag"),
    )
}

fn log_outcome(repository: &str, tag: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Deleted => tracing::debug!(repository, tag, "deleted"),
        Outcome::AlreadyAbsent => tracing::debug!(repository, tag, "already absent"),
        Outcome::Skipped(refusal) => {
            tracing::info!(repository, tag, reason = %refusal.reason, "skipped")
        }
        Outcome::Failed(failure) => {
            tracing::warn!(repository, tag, error = %failure.error, "failed")
        }
    }
}
