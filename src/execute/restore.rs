//! Putting deleted tags back at their recorded digests (`restore`).
//!
//! A deleted tag is usually not a deleted image: GitLab's registry keeps an
//! untagged manifest until online garbage collection reviews it (24 hours
//! after untagging by default), Distribution until its garbage collector
//! runs. Within that window a tag can be put back exactly, by digest.
//!
//! For each deleted tag, in two steps:
//! 1. *Find out* (reads only): the tag exists again → left alone (at the
//!    recorded digest: already back; at another: pushed again since, and
//!    said so). Otherwise the manifest: the journal's copy where the
//!    deletion removed the manifest itself, else `GET` by digest. Neither →
//!    "gone: garbage-collected".
//! 2. *Put back* (`PUT` under the tag, the exact bytes, their media type),
//!    in an order the registry accepts: image indexes first (before the
//!    tags of their children; a child the registry no longer has is put
//!    back by digest first, from its copy), then the other images, then the
//!    signatures and attestations deleted with their subject — after it, and
//!    not at all when their subject could not be put back.
//!
//! A tag that fails touches nothing else: every other tag goes on.

use crate::domain::exit::one_line as chain;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt};

use crate::domain::exit::{Exit, ExitCode};
use crate::domain::names::{Digest, Reference, RepositoryPath};
use crate::domain::referrers::referrer_subject;
use crate::output::restore::DeletedRecord;
use crate::registry::client::{ManifestPut, Registry, RegistryError, PULL, PULL_PUSH};

/// Where the manifest put back came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The registry still had it (an untagged manifest).
    Registry,
    /// The journal's copy (the deletion had removed the manifest itself).
    Journal,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Registry => "registry",
            Source::Journal => "journal",
        }
    }
}

/// What became of one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    Restored(Source),
    /// A dry run: it would be put back from there.
    WouldRestore(Source),
    /// The tag names the recorded digest already.
    AlreadyPresent,
    /// The tag was pushed again since, at another digest: left as it is.
    LeftAlone {
        now: Digest,
    },
    Failed(String),
    /// Not attempted, and why (a signature whose subject failed).
    Skipped(String),
}

impl RestoreOutcome {
    pub fn is_failure(&self) -> bool {
        matches!(self, RestoreOutcome::Failed(_))
    }

    /// The tag names the recorded manifest once this is done.
    fn is_back(&self) -> bool {
        matches!(
            self,
            RestoreOutcome::Restored(_)
                | RestoreOutcome::WouldRestore(_)
                | RestoreOutcome::AlreadyPresent
        )
    }
}

/// What a manifest needs to exist before it can be put back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct References {
    media_type: Option<String>,
    /// The manifests an index lists.
    children: Vec<Digest>,
    /// An image's config and layers.
    blobs: Vec<Digest>,
}

impl References {
    fn of(body: &[u8]) -> References {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return References::default();
        };
        let digests = |items: Option<&serde_json::Value>| -> Vec<Digest> {
            items
                .and_then(serde_json::Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.get("digest")?.as_str())
                        .filter_map(|digest| Digest::parse(digest).ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut blobs: Vec<Digest> = value
            .get("config")
            .and_then(|config| config.get("digest")?.as_str())
            .and_then(|digest| Digest::parse(digest).ok())
            .into_iter()
            .collect();
        blobs.extend(digests(value.get("layers")));
        References {
            media_type: value
                .get("mediaType")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
            children: digests(value.get("manifests")),
            blobs,
        }
    }
}

/// A manifest found, ready to be put back.
#[derive(Debug, Clone)]
struct Ready {
    digest: Digest,
    body: Bytes,
    media_type: String,
    source: Source,
    references: References,
}

impl Ready {
    fn is_index(&self) -> bool {
        crate::registry::client::INDEX_MEDIA_TYPES.contains(&self.media_type.as_str())
            || !self.references.children.is_empty()
    }
}

/// What finding out gave for one tag.
enum Found {
    Settled(RestoreOutcome),
    Ready(Ready),
}

/// Why the restore as a whole stopped: the credentials or the registry,
/// the same for every tag.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct RestoreError {
    context: String,
    #[source]
    source: RegistryError,
}

impl ExitCode for RestoreError {
    fn exit_code(&self) -> Exit {
        self.source.exit_code()
    }
}

pub struct Restorer {
    registry: Arc<Registry>,
    concurrency: usize,
    dry_run: bool,
}

/// The "gone" sentence: what a user searches for.
pub const GONE: &str = "gone: garbage-collected";

impl Restorer {
    pub fn new(registry: Arc<Registry>, concurrency: usize, dry_run: bool) -> Restorer {
        Restorer {
            registry,
            concurrency: concurrency.max(1),
            dry_run,
        }
    }

    /// One outcome per record, aligned with `records`.
    pub async fn restore(
        &self,
        records: &[DeletedRecord],
    ) -> Result<Vec<RestoreOutcome>, RestoreError> {
        let refused = self.check_access(records).await?;
        let found: Vec<Found> = stream::iter(records)
            .map(|record| async {
                match refused.get(&record.repository) {
                    Some(why) => Found::Settled(RestoreOutcome::Failed(why.clone())),
                    None => self.find(record).await,
                }
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        // Manifests this restore has bytes for, by digest: an index's child
        // the registry lost can be put back from them.
        let copies: HashMap<Digest, Ready> = found
            .iter()
            .filter_map(|found| match found {
                Found::Ready(ready) => Some((ready.digest.clone(), ready.clone())),
                Found::Settled(_) => None,
            })
            .collect();
        if self.dry_run {
            return Ok(self.preview(records, found, &copies).await);
        }
        Ok(self.put_back_in_order(records, found, &copies).await)
    }

    /// The token each repository needs, asked once per repository up
    /// front. A refusal of the credentials' kind (exit 2) or a token
    /// service that does not answer stops everything; any other refusal
    /// fails that repository's tags.
    async fn check_access(
        &self,
        records: &[DeletedRecord],
    ) -> Result<HashMap<RepositoryPath, String>, RestoreError> {
        let actions = if self.dry_run { PULL } else { PULL_PUSH };
        let mut repositories: Vec<&RepositoryPath> =
            records.iter().map(|record| &record.repository).collect();
        repositories.sort();
        repositories.dedup();
        let mut refused = HashMap::new();
        for repository in repositories {
            if let Err(err) = self.registry.check_access(repository, actions).await {
                if err.exit_code() == Exit::Usage || err.is_unreachable() {
                    return Err(RestoreError {
                        context: format!(
                            "getting a registry token ({}) for {repository}; nothing was restored",
                            actions.join(",")
                        ),
                        source: err,
                    });
                }
                refused.insert(repository.clone(), chain(&err));
            }
        }
        Ok(refused)
    }

    /// Step 1 for one tag: reads only.
    async fn find(&self, record: &DeletedRecord) -> Found {
        let Some(digest) = &record.digest else {
            return Found::Settled(RestoreOutcome::Failed(
                "the record names no digest for this tag (deleted by name, not listed): nothing to put back".to_string(),
            ));
        };
        let tag = Reference::Tag(record.tag.clone());
        match self
            .registry
            .manifest_digest(&record.repository, &tag)
            .await
        {
            Ok(Some(now)) if now == *digest => {
                return Found::Settled(RestoreOutcome::AlreadyPresent)
            }
            Ok(Some(now)) => return Found::Settled(RestoreOutcome::LeftAlone { now }),
            Ok(None) => {}
            Err(err) => return Found::Settled(RestoreOutcome::Failed(chain(&err))),
        }
        if let Some(body) = &record.kept_manifest {
            let references = References::of(body);
            let media_type = media_type(&references, record.media_type.as_deref(), None);
            return Found::Ready(Ready {
                digest: digest.clone(),
                body: body.clone(),
                media_type,
                source: Source::Journal,
                references,
            });
        }
        let by_digest = Reference::Digest(digest.clone());
        match self.registry.manifest(&record.repository, &by_digest).await {
            // Put back only the manifest recorded: a registry (or a proxy)
            // that answers a digest with other bytes — converted to another
            // schema, say — would have the tag name something else.
            Ok(Some(manifest)) if Digest::of(&manifest.body) != *digest => {
                Found::Settled(RestoreOutcome::Failed(format!(
                    "not put back: the registry answered for {digest} with other bytes (they hash to {}), so the tag would name another manifest",
                    Digest::of(&manifest.body)
                )))
            }
            Ok(Some(manifest)) => {
                let references = References::of(&manifest.body);
                let media_type = media_type(
                    &references,
                    record.media_type.as_deref(),
                    Some(manifest.media_type.as_str()),
                );
                Found::Ready(Ready {
                    digest: digest.clone(),
                    body: manifest.body,
                    media_type,
                    source: Source::Registry,
                    references,
                })
            }
            Ok(None) => Found::Settled(RestoreOutcome::Failed(format!(
                "{GONE} (the registry no longer has the manifest {digest}, and no copy of it was kept: it was only untagged, and the registry's garbage collector has removed it since)"
            ))),
            Err(err) => Found::Settled(RestoreOutcome::Failed(chain(&err))),
        }
    }

    /// A dry run: what would be put back, and from where. A kept copy is
    /// only as good as the blobs (or child manifests) it needs: those are
    /// checked (`HEAD`), so that "would restore" is true.
    async fn preview(
        &self,
        records: &[DeletedRecord],
        found: Vec<Found>,
        copies: &HashMap<Digest, Ready>,
    ) -> Vec<RestoreOutcome> {
        stream::iter(records.iter().zip(found))
            .map(|(record, found)| async move {
                match found {
                    Found::Settled(outcome) => outcome,
                    Found::Ready(ready) if ready.source == Source::Registry => {
                        RestoreOutcome::WouldRestore(Source::Registry)
                    }
                    Found::Ready(ready) => match self.first_missing(record, &ready, copies).await {
                        Ok(None) => RestoreOutcome::WouldRestore(ready.source),
                        Ok(Some(missing)) => RestoreOutcome::Failed(format!(
                            "{GONE} (the journal kept the manifest, but the registry no longer has {missing}, which it needs)"
                        )),
                        Err(err) => RestoreOutcome::Failed(chain(&err)),
                    },
                }
            })
            .buffered(self.concurrency)
            .collect()
            .await
    }

    /// The first blob or child manifest a kept copy needs that neither the
    /// registry nor this restore has.
    async fn first_missing(
        &self,
        record: &DeletedRecord,
        ready: &Ready,
        copies: &HashMap<Digest, Ready>,
    ) -> Result<Option<String>, RegistryError> {
        for blob in &ready.references.blobs {
            if !self.registry.blob_exists(&record.repository, blob).await? {
                return Ok(Some(format!("the blob {blob}")));
            }
        }
        for child in &ready.references.children {
            if copies.contains_key(child) {
                continue;
            }
            let reference = Reference::Digest(child.clone());
            if self
                .registry
                .manifest_digest(&record.repository, &reference)
                .await?
                .is_none()
            {
                return Ok(Some(format!("the child manifest {child}")));
            }
        }
        Ok(None)
    }

    /// Step 2: indexes, then images, then referrers; each group side by
    /// side, bounded by the concurrency.
    async fn put_back_in_order(
        &self,
        records: &[DeletedRecord],
        found: Vec<Found>,
        copies: &HashMap<Digest, Ready>,
    ) -> Vec<RestoreOutcome> {
        let mut outcomes: Vec<Option<RestoreOutcome>> = Vec::with_capacity(records.len());
        let mut waiting: [Vec<(usize, Ready)>; 3] = Default::default();
        for (index, (record, found)) in records.iter().zip(found).enumerate() {
            match found {
                Found::Settled(outcome) => outcomes.push(Some(outcome)),
                Found::Ready(ready) => {
                    let group = if record.referrer {
                        2
                    } else if ready.is_index() {
                        0
                    } else {
                        1
                    };
                    waiting[group].push((index, ready));
                    outcomes.push(None);
                }
            }
        }
        for (group, ready) in waiting.into_iter().enumerate() {
            let not_back = if group == 2 {
                subjects_not_back(records, &outcomes)
            } else {
                HashMap::new()
            };
            let done: Vec<(usize, RestoreOutcome)> = stream::iter(ready)
                .map(|(index, ready)| {
                    let record = &records[index];
                    let subject_failed = referrer_subject(record.tag.as_str())
                        .and_then(|subject| not_back.get(&subject).map(|tags| (subject, tags)));
                    async move {
                        let outcome = match subject_failed {
                            Some((subject, tags)) => RestoreOutcome::Skipped(format!(
                                "not put back: its subject {subject} ({tags}) could not be restored"
                            )),
                            None => self.put_back(record, &ready, copies).await,
                        };
                        (index, outcome)
                    }
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
            for (index, outcome) in done {
                outcomes[index] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| RestoreOutcome::Failed("not attempted".to_string()))
            })
            .collect()
    }

    /// `PUT` under the tag; an index the registry refuses for a missing
    /// child gets its children put back by digest (from the copies this
    /// restore has), then one more try.
    async fn put_back(
        &self,
        record: &DeletedRecord,
        ready: &Ready,
        copies: &HashMap<Digest, Ready>,
    ) -> RestoreOutcome {
        let mut answer = self.put(record, ready).await;
        if ready.is_index() && matches!(answer, Ok(ManifestPut::Missing { .. })) {
            match self.put_back_children(record, ready, copies).await {
                Ok(()) => answer = self.put(record, ready).await,
                Err(outcome) => return outcome,
            }
        }
        match answer {
            Ok(ManifestPut::Stored(stored)) if stored == ready.digest => {
                tracing::info!(repository = %record.repository, tag = %record.tag, digest = %stored, from = ready.source.name(), "restored");
                RestoreOutcome::Restored(ready.source)
            }
            Ok(ManifestPut::Stored(stored)) => RestoreOutcome::Failed(format!(
                "the registry stored the manifest as {stored}, not {}: the tag now names that",
                ready.digest
            )),
            Ok(ManifestPut::Missing { code, message }) => RestoreOutcome::Failed(format!(
                "{GONE} (the registry refused the manifest: {code} {message}; what it needs is no longer there)"
            )),
            Ok(ManifestPut::Refused {
                status,
                code,
                message,
            }) => RestoreOutcome::Failed(format!(
                "the registry refused to put it back: {status} {code} {message}"
            )),
            Err(err) => RestoreOutcome::Failed(chain(&err)),
        }
    }

    async fn put(
        &self,
        record: &DeletedRecord,
        ready: &Ready,
    ) -> Result<ManifestPut, RegistryError> {
        self.registry
            .put_manifest(
                &record.repository,
                &Reference::Tag(record.tag.clone()),
                &ready.media_type,
                &ready.body,
            )
            .await
    }

    /// Puts back by digest each child of `ready` the registry no longer
    /// has, from this restore's copies; a child nobody has fails the index.
    async fn put_back_children(
        &self,
        record: &DeletedRecord,
        ready: &Ready,
        copies: &HashMap<Digest, Ready>,
    ) -> Result<(), RestoreOutcome> {
        for child in &ready.references.children {
            let reference = Reference::Digest(child.clone());
            let present = self
                .registry
                .manifest_digest(&record.repository, &reference)
                .await
                .map_err(|err| RestoreOutcome::Failed(chain(&err)))?;
            if present.is_some() {
                continue;
            }
            let Some(copy) = copies.get(child) else {
                return Err(RestoreOutcome::Failed(format!(
                    "{GONE} (the index lists {child}, which the registry no longer has and of which no copy was kept)"
                )));
            };
            let answer = self
                .registry
                .put_manifest(&record.repository, &reference, &copy.media_type, &copy.body)
                .await;
            match answer {
                Ok(ManifestPut::Stored(_)) => {
                    tracing::info!(repository = %record.repository, child = %child, "an index's child put back by digest");
                }
                Ok(ManifestPut::Missing { code, message }) => {
                    return Err(RestoreOutcome::Failed(format!(
                        "{GONE} (its child {child} could not be put back: {code} {message})"
                    )))
                }
                Ok(ManifestPut::Refused {
                    status,
                    code,
                    message,
                }) => {
                    return Err(RestoreOutcome::Failed(format!(
                        "its child {child} could not be put back: {status} {code} {message}"
                    )))
                }
                Err(err) => return Err(RestoreOutcome::Failed(chain(&err))),
            }
        }
        Ok(())
    }
}

/// The subjects (by digest) that some tag of this restore should have put
/// back and none did, with the tags that named them: their signatures and
/// attestations stay away too.
fn subjects_not_back(
    records: &[DeletedRecord],
    outcomes: &[Option<RestoreOutcome>],
) -> HashMap<Digest, String> {
    let back: HashSet<&Digest> = records
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| outcome.as_ref().is_some_and(RestoreOutcome::is_back))
        .filter_map(|(record, _)| record.digest.as_ref())
        .collect();
    let mut failed: HashMap<Digest, String> = HashMap::new();
    for (record, outcome) in records.iter().zip(outcomes) {
        let (Some(digest), Some(RestoreOutcome::Failed(_))) = (&record.digest, outcome) else {
            continue;
        };
        if record.referrer || back.contains(digest) {
            continue;
        }
        let tags = failed.entry(digest.clone()).or_default();
        if !tags.is_empty() {
            tags.push_str(", ");
        }
        tags.push_str(record.tag.as_str());
    }
    failed
}

/// The media type to put a manifest back with: the one its body declares
/// (a registry checks the two agree), else the one recorded, else the one
/// the registry served it as, else what its shape says (OCI manifests may
/// leave `mediaType` out).
fn media_type(references: &References, recorded: Option<&str>, served: Option<&str>) -> String {
    references
        .media_type
        .as_deref()
        .or(recorded)
        .or(served.filter(|served| !served.is_empty()))
        .map(str::to_string)
        .unwrap_or_else(|| {
            if references.children.is_empty() {
                "application/vnd.oci.image.manifest.v1+json".to_string()
            } else {
                "application/vnd.oci.image.index.v1+json".to_string()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::names::TagName;

    fn record(tag: &str, digest: &Digest, referrer: bool) -> DeletedRecord {
        DeletedRecord {
            repository: RepositoryPath::parse("group/project").expect("path"),
            tag: TagName::parse(tag).expect("tag"),
            digest: Some(digest.clone()),
            media_type: None,
            referrer,
            kept_manifest: None,
        }
    }

    #[test]
    fn references_read_an_image_and_an_index() {
        let config = Digest::of(b"config");
        let layer = Digest::of(b"layer");
        let image = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": config},
            "layers": [{"digest": layer}],
        });
        let found = References::of(image.to_string().as_bytes());
        assert_eq!(found.blobs, [config.clone(), layer]);
        assert!(found.children.is_empty());
        assert_eq!(
            media_type(&found, Some("recorded"), None),
            "application/vnd.docker.distribution.manifest.v2+json"
        );

        // An OCI index without mediaType: recorded, else served, else its shape.
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": config}]});
        let found = References::of(index.to_string().as_bytes());
        assert_eq!(found.children, [config]);
        assert_eq!(
            media_type(&found, Some("recorded"), Some("served")),
            "recorded"
        );
        assert_eq!(media_type(&found, None, Some("served")), "served");
        assert_eq!(
            media_type(&found, None, Some("")),
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(References::of(b"not json"), References::default());
    }

    #[test]
    fn a_subject_that_failed_keeps_its_signatures_away() {
        let image = Digest::of(b"image");
        let other = Digest::of(b"other");
        let sig = format!("sha256-{}.sig", image.hex());
        let records = [
            record("1.0.0", &image, false),
            record("1.0.0-copy", &image, false),
            record("2.0.0", &other, false),
            record(&sig, &Digest::of(b"sig"), true),
        ];
        let failed = || Some(RestoreOutcome::Failed("gone".into()));
        let back = Some(RestoreOutcome::Restored(Source::Registry));
        let outcomes = [failed(), failed(), back.clone(), None];
        let not_back = subjects_not_back(&records, &outcomes);
        assert_eq!(
            not_back.get(&image).map(String::as_str),
            Some("1.0.0, 1.0.0-copy")
        );
        assert!(!not_back.contains_key(&other));
        // Another tag of the same image came back: the subject is there.
        let outcomes = [failed(), back.clone(), back, None];
        assert!(subjects_not_back(&records, &outcomes).is_empty());
    }
}
