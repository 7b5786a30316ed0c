//! The registry's notification envelope (Distribution's
//! `application/vnd.docker.distribution.events.v1+json`, which GitLab's
//! registry sends too) read into what the ledger stores: per event, its id,
//! time and repository, and — for a manifest pull that counts — the digest.
//!
//! A batch is read whole or refused whole: one malformed event (an id, time,
//! repository or digest that is missing or wrong, an action the registry
//! does not send) refuses the batch, so that nothing half-understood is
//! stored. What is understood but not a user's pull is recorded only as a
//! sign the ledger watches the repository: pushes, deletes, mounts, pulls by
//! an ignored user agent (the tool itself, GitLab, scanners named by flag).
//! Blob events are dropped: a layer pull says nothing a manifest pull does
//! not.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::names::{Digest, RepositoryPath};

/// The envelope's media type, as Distribution sends it.
pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// The user agents ignored by default: this tool's own manifest reads
/// (`registry-cleanup/<version>`) and GitLab's (`GitLab/<version>`: its
/// REST API reads manifests for tag details).
pub const DEFAULT_IGNORED_USER_AGENTS: [&str; 2] = ["registry-cleanup/", "GitLab/"];

/// Longest event id accepted: Distribution's are UUIDs (36 characters).
const MAX_ID_LENGTH: usize = 256;

/// Manifest media types (a pull of one of these is a pull of an image);
/// anything else a registry serves is a blob.
const MANIFEST_MEDIA_TYPES: [&str; 6] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// One event as the ledger stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The registry's event id: storing is idempotent on it.
    pub id: String,
    /// When the registry saw it happen (not when it reached us: a
    /// redelivered event keeps its time).
    pub at: DateTime<Utc>,
    pub repository: RepositoryPath,
    /// `Some`: a manifest pull that counts, of this digest. `None`: an
    /// event that only shows the repository is watched.
    pub pulled: Option<Digest>,
}

/// Why a batch was refused (a 400: the sender's fault, nothing stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

/// Which pulls count: the user agents whose reads are not a user's pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Prefixes of ignored user agents (`GitLab/` ignores `GitLab/17.5.0`).
    pub ignored_user_agents: Vec<String>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            ignored_user_agents: DEFAULT_IGNORED_USER_AGENTS
                .iter()
                .map(|prefix| prefix.to_string())
                .collect(),
        }
    }
}

impl Filter {
    pub fn ignores(&self, user_agent: &str) -> bool {
        self.ignored_user_agents
            .iter()
            .any(|prefix| user_agent.starts_with(prefix.as_str()))
    }
}

#[derive(Deserialize)]
struct Envelope {
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    timestamp: String,
    action: String,
    target: RawTarget,
    #[serde(default)]
    request: RawRequest,
}

#[derive(Deserialize)]
struct RawTarget {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawRequest {
    #[serde(default)]
    useragent: String,
}

/// What an event's action is to the ledger.
enum Action {
    Pull,
    /// `push`, `delete`, `mount`, and GitLab's `rename`: the repository is
    /// watched, nobody pulled.
    Other,
}

fn action(name: &str) -> Option<Action> {
    match name {
        "pull" => Some(Action::Pull),
        "push" | "delete" | "mount" | "rename" => Some(Action::Other),
        _ => None,
    }
}

/// Whether the event's target is a manifest (else a blob): by its media
/// type, or — for a media type we do not know — by the URL the registry
/// gives (`…/manifests/<digest>`).
fn is_manifest(target: &RawTarget) -> bool {
    MANIFEST_MEDIA_TYPES.contains(&target.media_type.as_str())
        || target
            .url
            .as_deref()
            .is_some_and(|url| url.contains("/manifests/"))
}

/// Reads a batch: every event the ledger records, in order. Blob events are
/// left out; anything malformed refuses the whole batch.
pub fn parse(body: &[u8], filter: &Filter) -> Result<Vec<Event>, EnvelopeError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|err| {
        EnvelopeError(format!(
            "not a registry notification envelope ({ENVELOPE_MEDIA_TYPE}, {{\"events\": [...]}}): {err}"
        ))
    })?;
    let mut events = Vec::with_capacity(envelope.events.len());
    for (index, raw) in envelope.events.into_iter().enumerate() {
        let fail = |why: String| EnvelopeError(format!("events[{index}]: {why}"));
        let Some(action) = action(&raw.action) else {
            return Err(fail(format!(
                "unknown action {:?} (a registry sends pull, push, delete, mount)",
                truncate(&raw.action)
            )));
        };
        if raw.id.is_empty() || raw.id.len() > MAX_ID_LENGTH {
            return Err(fail(format!(
                "the id must be 1 to {MAX_ID_LENGTH} characters"
            )));
        }
        let at = DateTime::parse_from_rfc3339(&raw.timestamp)
            .map_err(|err| {
                fail(format!(
                    "timestamp {:?} is not an RFC 3339 time: {err}",
                    truncate(&raw.timestamp)
                ))
            })?
            .with_timezone(&Utc);
        let manifest = is_manifest(&raw.target);
        // A blob mount or pull names no repository we could use; a
        // `rename` may name none either. Neither is a pull of an image.
        if !manifest && !matches!(action, Action::Other) {
            continue;
        }
        let Some(repository) = raw.target.repository.as_deref() else {
            if manifest {
                return Err(fail("target.repository is missing".to_string()));
            }
            continue;
        };
        let repository = RepositoryPath::parse(repository).map_err(|err| {
            fail(format!(
                "target.repository {:?}: {err}",
                truncate(repository)
            ))
        })?;
        let pulled =
            match action {
                Action::Pull if filter.ignores(&raw.request.useragent) => None,
                Action::Pull => {
                    let text = raw
                        .target
                        .digest
                        .as_deref()
                        .ok_or_else(|| fail("a pull without target.digest".to_string()))?;
                    Some(Digest::parse(text).map_err(|err| {
                        fail(format!("target.digest {:?}: {err}", truncate(text)))
                    })?)
                }
                Action::Other => None,
            };
        events.push(Event {
            id: raw.id,
            at,
            repository,
            pulled,
        });
    }
    Ok(events)
}

/// A value from the request, cut short for an error message.
fn truncate(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn event(id: &str, action: &str, media_type: &str, agent: &str) -> serde_json::Value {
        serde_json::json!({
            "id": id,
            "timestamp": "2026-12-07T10:00:00.123456789Z",
            "action": action,
            "target": {
                "mediaType": media_type,
                "digest": format!("sha256:{}", "a".repeat(64)),
                "repository": "group/project/app",
                "url": "http://registry/v2/group/project/app/manifests/sha256:aa",
                "tag": "v1"
            },
            "request": {"useragent": agent, "method": "GET"},
            "actor": {}, "source": {"addr": "registry:5000"}
        })
    }

    fn batch(events: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "events": events })).expect("json")
    }

    #[test]
    fn manifest_pulls_count_unless_an_ignored_agent_made_them() {
        let body = batch(vec![
            event("1", "pull", MANIFEST, "docker/27.0 go/1.22"),
            event("2", "pull", MANIFEST, "GitLab/17.5.0"),
            event("3", "pull", MANIFEST, "registry-cleanup/0.1.0"),
            event("4", "push", MANIFEST, "docker/27.0"),
            event("5", "pull", MANIFEST, "trivy/0.50"),
        ]);
        let mut filter = Filter::default();
        filter.ignored_user_agents.push("trivy/".into());
        let events = parse(&body, &filter).expect("parses");
        let pulled: Vec<bool> = events.iter().map(|e| e.pulled.is_some()).collect();
        assert_eq!(pulled, [true, false, false, false, false]);
        assert_eq!(events[0].repository.as_str(), "group/project/app");
        assert_eq!(
            events[0].at,
            "2026-12-07T10:00:00.123456789Z"
                .parse::<DateTime<Utc>>()
                .expect("time")
        );
    }

    #[test]
    fn blob_events_are_left_out() {
        let mut blob = event("1", "pull", "application/octet-stream", "docker/27.0");
        blob["target"]["url"] = "http://registry/v2/group/project/app/blobs/sha256:aa".into();
        let events = parse(&batch(vec![blob]), &Filter::default()).expect("parses");
        assert!(events.is_empty());
        // A manifest media type we do not know is told by its URL.
        let odd = event("2", "pull", "application/x-new-manifest", "docker/27.0");
        let events = parse(&batch(vec![odd]), &Filter::default()).expect("parses");
        assert_eq!(events.len(), 1);
        assert!(events[0].pulled.is_some());
    }

    #[test]
    fn one_bad_event_refuses_the_batch() {
        let good = || event("1", "pull", MANIFEST, "docker");
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                event("2", "fetch", MANIFEST, "docker"),
                "unknown action \"fetch\"",
            ),
            (event("", "pull", MANIFEST, "docker"), "the id must be"),
            (
                {
                    let mut e = good();
                    e["timestamp"] = "yesterday".into();
                    e
                },
                "timestamp \"yesterday\"",
            ),
            (
                {
                    let mut e = good();
                    e["target"]["digest"] = "sha256:XYZ".into();
                    e
                },
                "target.digest \"sha256:XYZ\"",
            ),
            (
                {
                    let mut e = good();
                    e["target"]["repository"] = "../etc".into();
                    e
                },
                "target.repository \"../etc\"",
            ),
        ];
        for (bad, expected) in cases {
            let err = parse(&batch(vec![good(), bad]), &Filter::default()).expect_err(expected);
            assert!(err.0.starts_with("events[1]: "), "{err}");
            assert!(err.0.contains(expected), "{err}");
        }
        for body in [&b"{"[..], b"[]", b"{\"events\": 3}", b"\xff\xfe"] {
            assert!(parse(body, &Filter::default()).is_err());
        }
    }
}
