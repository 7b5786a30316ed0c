//! An in-process emulator of the three GitLab services `registry-cleanup` talks to:
//! the REST API (`/api/v4`), the registry token endpoint (`/jwt/auth`) and a
//! GitLab-flavoured container registry (`/v2/…`, `/gitlab/v1/…`).
//!
//! It is built from `docs/gitlab-protocol.md` and meant to be *faithful*, not
//! convenient: unknown scopes are dropped silently, keyset pagination answers 405
//! where GitLab would, a bulk delete's regexes are anchored as literally as GitLab
//! anchors them, and a registry without tag delete answers `DIGEST_INVALID`.
//!
//! # Architecture
//!
//! [`Emulator::start`] binds two loopback listeners (GitLab origin and registry
//! origin, different ports as in reality) and runs them on a current-thread tokio
//! runtime in a thread of its own, so plain `#[test]` functions and async tests
//! can both use it. All state lives in one [`std::sync::Mutex`] (`model::State`)
//! that handlers lock briefly and never across an `.await`; the HTTP layer
//! (`server`) adds latency, rate limits and fault injection around the pure
//! request handlers (`rest`, `registry`), and records every request.
//!
//! Emulation choices a reader of a failing test may need:
//! - Tags seeded with a `created_at` get a Docker schema2 image manifest; tags
//!   seeded without one get an OCI image index (one linux/amd64 OCI child), which
//!   is why GitLab shows no date for them. Fetched by tag or digest, an OCI
//!   manifest needs its OCI media type in `Accept` (else 404 `MANIFEST_UNKNOWN`,
//!   like Distribution); a Docker manifest list fetched by tag without the list
//!   type resolves to its linux/amd64 child; a Docker schema2 manifest is served
//!   whatever `Accept` says (there is no schema1 to convert to).
//! - JWT expiry is checked without leeway, to the millisecond.
//! - A dropped connection is a response that is never written: the server closes
//!   the socket after reading the request (recorded with status 0).

// Handlers return the error response itself as `Err`; boxing it would buy nothing
// in a test server.
#![allow(clippy::result_large_err)]

mod bulk;
mod in_use;
mod jwt;
mod latency;
mod model;
mod registry;
mod rest;
mod server;
mod upstream;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use bulk::parse_chronic_duration;
pub use in_use::{DeploymentSpec, InUseListing, PipelineSpec};
pub use jwt::libtrust_key_id;

/// The PEM of the RSA key the emulator signs JWTs with unless
/// [`Config::signing_key_pem`] names another.
pub const DEFAULT_SIGNING_KEY_PEM: &str = include_str!("../testdata/signing-key.pem");

/// The numeric id of the project's group on the REST API (the group path is the
/// project path without its last segment).
pub const GROUP_ID: u64 = 99;

/// How the emulated GitLab and registry behave. Every field can be changed while
/// running with [`Emulator::set_config`].
#[derive(Debug, Clone)]
pub struct Config {
    pub project_id: u64,
    pub project_path: String,
    /// Valid as `JOB-TOKEN` header and as Basic password of user `gitlab-ci-token`.
    pub job_token: String,
    /// Valid as `PRIVATE-TOKEN` header (or REST `Authorization: Bearer`) and as
    /// Basic password with any username.
    pub access_token: String,
    /// `(user, password)` for Basic auth on `/jwt/auth` only; never gets `delete`.
    pub deploy_token: Option<(String, String)>,
    /// `true`: GitLab registry (`DELETE /v2/<p>/manifests/<tag>` removes that tag).
    /// `false`: Docker Distribution 2.8 (400 `DIGEST_INVALID`).
    pub tag_delete: bool,
    /// Whether the REST tag list supports `pagination=keyset` (else 405).
    pub keyset: bool,
    /// Whether the registry serves `/gitlab/v1/repositories/<path>/tags/list/`.
    pub gitlab_v1: bool,
    /// Whether `/jwt/auth` grants `delete` (dropped silently when not).
    pub grant_delete: bool,
    /// Whether `/jwt/auth` grants `push`.
    pub grant_push: bool,
    pub jwt_lifetime: Duration,
    /// Every request is answered this long after it arrived (precisely: `latency.rs`).
    pub latency: Duration,
    pub faults: Option<Faults>,
    /// Faults for chosen requests, checked before the seeded ones: each
    /// applies to its next `times` matching requests.
    pub scripted_faults: Vec<ScriptedFault>,
    /// A request budget for the GitLab origin, announced in `RateLimit-*` headers.
    pub rate_limit: Option<RateLimit>,
    /// The realm the registry's challenges name instead of our `/jwt/auth`.
    pub realm_override: Option<String>,
    /// REST single-tag delete of a missing tag: 404 (older GitLab) or 403 (newer).
    pub missing_tag_delete_status: u16,
    /// PKCS#8 or PKCS#1 RSA private key PEM; `None` → [`DEFAULT_SIGNING_KEY_PEM`].
    pub signing_key_pem: Option<String>,
    pub issuer: String,
    /// Answers to corrupt, for hostile-input tests: the first matching rule
    /// applies (after fault injection, which it does not replace).
    pub tamper: Vec<Tamper>,
    /// GitLab in front of a third-party registry (without the metadata
    /// database), at this base URL (`http://127.0.0.1:5000`): the project's
    /// REST registry endpoints read and change that registry, with JWTs the
    /// emulator signs for itself (it must be that registry's token realm).
    /// Repositories are those `/jwt/auth` issued a push token for. See
    /// `upstream.rs`. `None`: the in-memory registry.
    pub upstream_registry: Option<String>,
    /// GitLab's tag rules for the project (protection and immutability,
    /// §7). `/jwt/auth` carries them in each `access[].meta` of a token
    /// granting push or delete; the registry enforces what the presented
    /// token carries (401 `PROTECTED_TAG` / `IMMUTABLE_TAG`, and 401
    /// `PROTECTED_MANIFEST` for any digest delete); REST refuses (403).
    pub tag_rules: TagRules,
    /// `false`: `/jwt/auth` leaves the patterns out of `meta`, while the
    /// registry still enforces `tag_rules` — a token issued before the rules
    /// were created, meeting a registry that has learnt them since (rules
    /// reach the registry only with newer JWTs).
    pub tag_rules_in_jwt: bool,
    /// Whether `GET /v2/` answers GitLab's capability headers
    /// (`gitlab-container-registry-features: tag_delete`,
    /// `gitlab-container-registry-database-enabled: <gitlab_v1>`). Sent only
    /// by GitLab's registry, i.e. with `tag_delete` (never Distribution-like).
    pub capability_headers: bool,
    /// GitLab before 18.x (or fine-grained job token permissions without
    /// the grant): the branches, git tags and merge requests endpoints
    /// answer 403 to a `JOB-TOKEN`; an access token still reads them.
    pub refs_refuse_job_token: bool,
    /// `GET /projects/:id`'s `container_expiration_policy`: GitLab's own
    /// cleanup policy (`null` when never set up). Default: what GitLab
    /// creates for a new project, disabled.
    pub container_expiration_policy: Option<serde_json::Value>,
    /// `GET /projects/:id`'s `container_registry_access_level`
    /// (`enabled`, `private` or `disabled`).
    pub container_registry_access_level: String,
    /// The access token's scopes, as `GET /personal_access_tokens/self`
    /// answers them (and `expires_at`: `access_token_expires_at`).
    pub access_token_scopes: Vec<String>,
    pub access_token_expires_at: Option<String>,
    /// Other projects of the group (and its subgroups): `(id, full path)`,
    /// each under the group's path (the project path without its last
    /// segment). Seeding takes full paths under them; the group endpoint
    /// lists their repositories with the project's; `/jwt/auth` grants
    /// scopes on them to the access token only (a job token covers its own
    /// project), and their REST registry endpoints answer under their ids.
    pub group_projects: Vec<(u64, String)>,
    /// The access token is an administrator's: `/jwt/auth` grants it
    /// `registry:catalog:*`, which `GET /v2/_catalog` needs.
    pub admin: bool,
    /// Listings of what a project has in use (environments, deployments,
    /// pipelines) that a valid `JOB-TOKEN` is refused, and with which
    /// status: 401 (a GitLab whose route does not take the job token) or
    /// 403 (fine-grained job token permissions without the grant; GitLab's
    /// message names it). An access token still reads them.
    pub job_token_refused: Vec<(InUseListing, u16)>,
    /// A GitLab before the `stopping` environment state and the
    /// `waiting_for_callback` and `canceling` pipeline statuses: those
    /// filter values answer 400 `<param> does not have a valid value`.
    pub legacy_statuses: bool,
    /// The instant an inventory's dates are relative to (`--inventory-now`):
    /// tags seeded from an inventory are served as old at any time as they
    /// were at that instant (a playground that stays up shows the plan of
    /// `plan --now` that instant, whenever it is asked).
    pub inventory_now: Option<chrono::DateTime<chrono::Utc>>,
}

/// GitLab's default cleanup policy of a new project: disabled, daily,
/// keep 10, older than 90 days, every tag by name.
pub fn default_expiration_policy() -> serde_json::Value {
    serde_json::json!({
        "cadence": "1d",
        "enabled": false,
        "keep_n": 10,
        "older_than": "90d",
        "name_regex": ".*",
        "name_regex_keep": null,
        "next_run_at": "2026-12-02T00:00:00.000Z",
    })
}

/// A project's tag rules, as RE2 patterns (GitLab's own syntax).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagRules {
    /// Tags whose delete needs a higher role than the tokens' user has
    /// (`tag_deny_access_patterns.delete`).
    pub delete_deny: Vec<String>,
    /// Tags nobody may change or delete (`tag_immutable_patterns`).
    pub immutable: Vec<String>,
}

impl TagRules {
    pub fn is_empty(&self) -> bool {
        self.delete_deny.is_empty() && self.immutable.is_empty()
    }
}

/// Whether any pattern matches anywhere in `tag` (unanchored).
pub(crate) fn rule_matches(patterns: &[String], tag: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| regex::Regex::new(pattern).is_ok_and(|regex| regex.is_match(tag)))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            project_id: 1,
            project_path: "group/project".to_string(),
            job_token: "jobtoken-s3cr3t-0000".to_string(),
            access_token: "glpat-s3cr3t-1111".to_string(),
            deploy_token: None,
            tag_delete: true,
            keyset: true,
            gitlab_v1: true,
            grant_delete: true,
            grant_push: false,
            jwt_lifetime: Duration::from_secs(300),
            latency: Duration::ZERO,
            faults: None,
            scripted_faults: Vec::new(),
            rate_limit: None,
            realm_override: None,
            missing_tag_delete_status: 404,
            signing_key_pem: None,
            issuer: "gitlab-issuer".to_string(),
            tamper: Vec::new(),
            upstream_registry: None,
            tag_rules: TagRules::default(),
            tag_rules_in_jwt: true,
            capability_headers: true,
            refs_refuse_job_token: false,
            container_expiration_policy: Some(default_expiration_policy()),
            container_registry_access_level: "enabled".to_string(),
            access_token_scopes: vec!["api".to_string()],
            access_token_expires_at: None,
            group_projects: Vec::new(),
            admin: false,
            job_token_refused: Vec::new(),
            legacy_statuses: false,
            inventory_now: None,
        }
    }
}

/// Corrupts the answers to matching requests: a wrong status (the real handler
/// then does not run, so no change happens), extra or missing headers, a
/// replaced, truncated or rewritten body. A 302 with a `Location` elsewhere
/// makes a cross-origin redirect.
#[derive(Debug, Clone, Default)]
pub struct Tamper {
    /// `None`: either origin.
    pub server: Option<Server>,
    /// `None`: any method (case-insensitive otherwise).
    pub method: Option<String>,
    /// A substring of the raw (percent-encoded) path; `""` matches every path.
    pub path_contains: String,
    /// A substring of the raw query; `""` matches every query.
    pub query_contains: String,
    pub status: Option<u16>,
    /// Set (replacing any value the handler gave).
    pub set_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
    pub body: Option<TamperBody>,
}

impl Tamper {
    /// Requests with `method` (any when `None`) whose path contains `path_contains`.
    pub fn on(method: Option<&str>, path_contains: &str) -> Tamper {
        Tamper {
            method: method.map(str::to_string),
            path_contains: path_contains.to_string(),
            ..Tamper::default()
        }
    }

    pub fn status(mut self, status: u16) -> Tamper {
        self.status = Some(status);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Tamper {
        self.set_headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn without_header(mut self, name: &str) -> Tamper {
        self.remove_headers.push(name.to_string());
        self
    }

    pub fn body(mut self, body: TamperBody) -> Tamper {
        self.body = Some(body);
        self
    }

    pub fn query(mut self, query_contains: &str) -> Tamper {
        self.query_contains = query_contains.to_string();
        self
    }

    pub fn on_server(mut self, server: Server) -> Tamper {
        self.server = Some(server);
        self
    }
}

#[derive(Debug, Clone)]
pub enum TamperBody {
    Replace(Vec<u8>),
    /// The first N bytes of the real body.
    Truncate(usize),
    /// The real body, rewritten.
    Transform(fn(&[u8]) -> Vec<u8>),
}

/// Seeded fault injection: a fraction `rate` of requests (0..1) fails with a 429
/// (with `Retry-After: 1`, `0`, an HTTP-date or none), a 500, 502 or 503, a dropped
/// connection, or a response delayed by `slow`. Half of the faults hitting a
/// state-changing request happen after the change was applied.
#[derive(Debug, Clone)]
pub struct Faults {
    pub seed: u64,
    pub rate: f64,
    pub slow: Duration,
}

/// One deterministic fault: the next `times` requests with `method` whose path
/// contains `path_contains` are answered `status` (or, with `None`, lose their
/// connection) — before the change happens, or after it (`after_effect`), so
/// that the change is made and only its answer is lost.
#[derive(Debug, Clone)]
pub struct ScriptedFault {
    pub method: String,
    pub path_contains: String,
    pub status: Option<u16>,
    pub after_effect: bool,
    pub times: usize,
}

impl ScriptedFault {
    /// A lost answer: the change is made, the client sees `status` (`None`: a
    /// dropped connection), once.
    pub fn lost_answer(method: &str, path_contains: &str, status: Option<u16>) -> ScriptedFault {
        ScriptedFault {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            status,
            after_effect: true,
            times: 1,
        }
    }

    /// Refused before anything happens, once.
    pub fn refused(method: &str, path_contains: &str, status: u16) -> ScriptedFault {
        ScriptedFault {
            after_effect: false,
            status: Some(status),
            ..ScriptedFault::lost_answer(method, path_contains, None)
        }
    }

    /// The same fault for the next `times` matching requests, not only the
    /// next one (`usize::MAX`: every one, retries included).
    pub fn times(self, times: usize) -> ScriptedFault {
        ScriptedFault { times, ..self }
    }
}

/// `limit` requests per `window` on the GitLab origin; more get 429.
#[derive(Debug, Clone)]
pub struct RateLimit {
    pub limit: u32,
    pub window: Duration,
}

/// A tag to seed. `digest: None` generates a unique manifest; `created_at: None`
/// makes the tag an OCI image index, which GitLab shows without a date.
/// `created_at` is the build time (the config's `created`); `pushed_at` the
/// push time (`/gitlab/v1` `created_at`/`published_at`), by default the
/// build time (or now, if undated).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagSpec {
    pub name: String,
    pub digest: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub pushed_at: Option<DateTime<Utc>>,
    pub protected: bool,
}

impl TagSpec {
    /// An undated tag with a unique digest.
    pub fn new(name: impl Into<String>) -> TagSpec {
        TagSpec {
            name: name.into(),
            ..TagSpec::default()
        }
    }

    pub fn created(mut self, at: DateTime<Utc>) -> TagSpec {
        self.created_at = Some(at);
        self
    }

    /// Pushed at `at` (first and last push), whatever the build time.
    pub fn pushed(mut self, at: DateTime<Utc>) -> TagSpec {
        self.pushed_at = Some(at);
        self
    }

    pub fn digest(mut self, digest: impl Into<String>) -> TagSpec {
        self.digest = Some(digest.into());
        self
    }

    pub fn protected(mut self) -> TagSpec {
        self.protected = true;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Server {
    Gitlab,
    Registry,
}

/// Which credential a request carried (whether or not it was valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AuthKind {
    None,
    JobToken,
    PrivateToken,
    Basic,
    Bearer,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// The path exactly as received (still percent-encoded).
    pub path: String,
    pub query: String,
    /// 0 when the connection was dropped without an answer.
    pub status: u16,
    pub server: Server,
    /// The injected fault, e.g. `"503"`, `"drop after-effect"`, `"slow"`.
    pub fault: Option<String>,
    pub auth: AuthKind,
    pub retry_after_sent: bool,
}

/// One call of the REST bulk delete, as received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BulkCall {
    pub repository_id: u64,
    pub content_type: String,
    pub raw_body: String,
    /// Query and body parameters, decoded, in order received.
    pub params: Vec<(String, String)>,
    pub status: u16,
}

/// What a garbage collector run removes ([`Emulator::garbage_collect`],
/// `POST /_emulator/garbage-collect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collect {
    /// Blobs no manifest names (Distribution's `garbage-collect`): what a
    /// delete by digest leaves behind. Untagged manifests stay.
    Blobs,
    /// First every manifest no tag reaches — not tagged, not listed by an
    /// index that is, not the referrer of a manifest that stays — then the
    /// blobs: GitLab's online garbage collection once its review delay is
    /// over, Distribution's `garbage-collect --delete-untagged`.
    UntaggedManifests,
}

/// What a garbage collector run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Collected {
    pub manifests: usize,
    pub blobs: usize,
}

/// Where the binary (or a test) wants the emulator to listen.
#[derive(Debug, Clone)]
pub struct Listen {
    pub gitlab: SocketAddr,
    /// `None`: serve only the GitLab origin (for use as the token realm of a
    /// real registry).
    pub registry: Option<SocketAddr>,
    /// The registry host GitLab reports in `location` and `CI_REGISTRY`;
    /// default: the registry listener's address.
    pub registry_host: Option<String>,
}

impl Default for Listen {
    fn default() -> Self {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        Listen {
            gitlab: any,
            registry: Some(any),
            registry_host: None,
        }
    }
}

/// A running emulator; dropping it shuts the servers down.
pub struct Emulator {
    shared: Arc<Shared>,
    gitlab_url: String,
    registry_url: String,
    registry_host: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub(crate) struct Shared {
    pub(crate) state: Mutex<model::State>,
    /// Requests being handled right now, on either origin (control
    /// endpoints excluded), and the most there have been at once.
    pub(crate) in_flight: AtomicUsize,
    pub(crate) max_in_flight: AtomicUsize,
    /// The client for `Config::upstream_registry`, made on first use (on the
    /// emulator's runtime, which its pooled connections belong to).
    pub(crate) upstream_http: std::sync::OnceLock<reqwest::Client>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, model::State> {
        // A panicking handler must not turn every later request into a panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn garbage_collect(&self, collect: Collect) -> Collected {
        let mut state = self.lock();
        let untagged = collect == Collect::UntaggedManifests;
        let mut collected = Collected::default();
        for repository in state.repositories.values_mut() {
            let (manifests, blobs) = repository.garbage_collect(untagged);
            collected.manifests += manifests;
            collected.blobs += blobs;
        }
        collected
    }

    /// Forgets the requests recorded so far, and the peak of requests in
    /// flight (down to those in flight now).
    pub(crate) fn reset_requests(&self) {
        let mut state = self.lock();
        state.requests.clear();
        state.bulk_calls.clear();
        self.max_in_flight
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl Emulator {
    /// Starts on two free loopback ports. Panics if that is impossible or the
    /// configured signing key does not parse (test code: fail loudly).
    pub fn start(config: Config) -> Emulator {
        Emulator::start_on(config, Listen::default()).expect("starting the GitLab emulator")
    }

    /// Starts on the given addresses.
    pub fn start_on(config: Config, listen: Listen) -> Result<Emulator, String> {
        let gitlab_listener = TcpListener::bind(listen.gitlab)
            .map_err(|err| format!("cannot listen on {}: {err}", listen.gitlab))?;
        let registry_listener = match listen.registry {
            Some(addr) => Some(
                TcpListener::bind(addr).map_err(|err| format!("cannot listen on {addr}: {err}"))?,
            ),
            None => None,
        };
        let gitlab_addr = gitlab_listener
            .local_addr()
            .map_err(|err| format!("no local address: {err}"))?;
        let registry_addr = match &registry_listener {
            Some(listener) => Some(
                listener
                    .local_addr()
                    .map_err(|err| format!("no local address: {err}"))?,
            ),
            None => None,
        };
        let gitlab_url = format!("http://{gitlab_addr}");
        let registry_host = match (&listen.registry_host, registry_addr) {
            (Some(host), _) => host.clone(),
            (None, Some(addr)) => addr.to_string(),
            (None, None) => "registry.invalid".to_string(),
        };
        let registry_url = match registry_addr {
            Some(addr) => format!("http://{addr}"),
            None => format!("http://{registry_host}"),
        };
        let state = model::State::new(config, gitlab_url.clone(), registry_host.clone())?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            upstream_http: std::sync::OnceLock::new(),
        });
        for listener in [Some(&gitlab_listener), registry_listener.as_ref()]
            .into_iter()
            .flatten()
        {
            listener
                .set_nonblocking(true)
                .map_err(|err| format!("cannot configure listener: {err}"))?;
        }

        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("gitlab-emulator".to_string())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(format!("cannot start tokio: {err}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listeners = [
                        Some((gitlab_listener, Server::Gitlab)),
                        registry_listener.map(|listener| (listener, Server::Registry)),
                    ];
                    for (listener, server) in listeners.into_iter().flatten() {
                        match tokio::net::TcpListener::from_std(listener) {
                            Ok(listener) => {
                                tokio::spawn(server::serve(
                                    listener,
                                    thread_shared.clone(),
                                    server,
                                ));
                            }
                            Err(err) => {
                                let _ = ready_tx.send(Err(format!("cannot adopt listener: {err}")));
                                return;
                            }
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    let _ = shutdown_rx.await;
                });
                // Dropping the runtime cancels every connection task.
            })
            .map_err(|err| format!("cannot spawn the emulator thread: {err}"))?;
        ready_rx
            .recv()
            .map_err(|_| "the emulator thread died while starting".to_string())??;
        Ok(Emulator {
            shared,
            gitlab_url,
            registry_url,
            registry_host,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` — `CI_SERVER_URL`.
    pub fn gitlab_url(&self) -> String {
        self.gitlab_url.clone()
    }

    /// `http://127.0.0.1:PORT2` — `CLEANUP_REGISTRY_URL`.
    pub fn registry_url(&self) -> String {
        self.registry_url.clone()
    }

    /// `127.0.0.1:PORT2` — `CI_REGISTRY`.
    pub fn registry_host(&self) -> String {
        self.registry_host.clone()
    }

    /// Creates a repository (`""` or `"."` = the project's root image, else a
    /// name under the project or a full path) and returns its id; an existing
    /// repository's id is returned as is.
    pub fn add_repository(&self, name: &str) -> u64 {
        let mut state = self.shared.lock();
        let path = state.full_path(name);
        state.ensure_repository(&path, None)
    }

    /// Sets a repository's REST `status` (`delete_scheduled`,
    /// `delete_ongoing`; `None`: none) and `created_at`, creating it if
    /// needed.
    pub fn set_repository_state(
        &self,
        name: &str,
        status: Option<&str>,
        created_at: DateTime<Utc>,
    ) {
        let mut state = self.shared.lock();
        let path = state.full_path(name);
        let id = state.ensure_repository(&path, None);
        if let Some(repository) = state.repository_mut(id) {
            repository.status = status.map(str::to_string);
            repository.created_at = created_at;
        }
    }

    /// Whether a repository (full path or name under the project) exists.
    pub fn has_repository(&self, name: &str) -> bool {
        let state = self.shared.lock();
        let path = state.full_path(name);
        state.repository_id(&path).is_some()
    }

    /// Adds (or replaces) a tag, creating the repository if needed.
    /// `repository_path` is a full path or a name relative to the project.
    pub fn add_tag(&self, repository_path: &str, tag: TagSpec) {
        self.add_tags(repository_path, [tag]);
    }

    pub fn add_tags(&self, repository_path: &str, tags: impl IntoIterator<Item = TagSpec>) {
        let mut state = self.shared.lock();
        let path = state.full_path(repository_path);
        let id = state.ensure_repository(&path, None);
        for tag in tags {
            state.seed_tag(id, tag);
        }
    }

    /// Seeds from the product's inventory format; panics on an invalid file.
    pub fn load_inventory_json(&self, json: &str) {
        if let Err(err) = self.try_load_inventory_json(json) {
            panic!("invalid inventory for the emulator: {err}");
        }
    }

    /// Seeds from the product's inventory format (paths are full paths under the
    /// project; a repository `id` is used when free).
    pub fn try_load_inventory_json(&self, json: &str) -> Result<(), String> {
        self.shared.lock().load_inventory(json)
    }

    /// Stores a blob in a repository (creating it) and returns its digest.
    pub fn put_blob(&self, repository_path: &str, content: &[u8]) -> String {
        let mut state = self.shared.lock();
        let path = state.full_path(repository_path);
        let id = state.ensure_repository(&path, None);
        state.put_blob(id, bytes::Bytes::copy_from_slice(content))
    }

    /// Stores any manifest (e.g. a Docker manifest list) under `reference` (a tag
    /// or a digest) as a registry push would, without auth; returns its digest.
    pub fn put_manifest(
        &self,
        repository_path: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<String, String> {
        let mut state = self.shared.lock();
        let path = state.full_path(repository_path);
        let id = state.ensure_repository(&path, None);
        state
            .push_manifest(
                id,
                reference,
                Some(media_type),
                bytes::Bytes::copy_from_slice(body),
            )
            .map_err(|err| err.to_string())
    }

    /// A handle for seeding one repository (created if needed) with images,
    /// indexes, signatures and OCI 1.1 artifacts; see [`Repository`].
    pub fn repository(&self, name: &str) -> Repository<'_> {
        let mut state = self.shared.lock();
        let path = state.full_path(name);
        let id = state.ensure_repository(&path, None);
        Repository {
            emulator: self,
            id,
            path,
        }
    }

    /// Adds a branch to the project's git repository
    /// (`GET /projects/:id/repository/branches`).
    pub fn add_branch(&self, name: &str) {
        self.shared.lock().git.branches.insert(name.to_string());
    }

    /// Adds a git tag (`GET /projects/:id/repository/tags`); not a
    /// container image tag.
    pub fn add_git_tag(&self, name: &str) {
        self.shared.lock().git.tags.insert(name.to_string());
    }

    /// Adds (or replaces) merge request `iid` targeting the project, with
    /// `state` `opened`, `closed`, `locked` or `merged`. From a fork, its
    /// `source_project_id` is another project's and its source branch is no
    /// branch of this project.
    pub fn add_merge_request(&self, iid: u64, source_branch: &str, state: &str, from_fork: bool) {
        self.shared.lock().git.merge_requests.insert(
            iid,
            model::MergeRequest {
                source_branch: source_branch.to_string(),
                state: state.to_string(),
                from_fork,
            },
        );
    }

    /// Adds an environment of the project (`GET /projects/:id/environments`)
    /// in `state` (`available`, `stopping`, `stopped`), or sets the state of
    /// the one of that name; its id.
    pub fn add_environment(&self, name: &str, state: &str) -> u64 {
        let mut shared = self.shared.lock();
        let project = shared.config.project_id;
        shared.in_use.environment(project, name, state)
    }

    /// The same in another project of the group (`Config::group_projects`).
    pub fn add_environment_in(&self, project: u64, name: &str, state: &str) -> u64 {
        self.shared.lock().in_use.environment(project, name, state)
    }

    /// Adds a deployment (`GET /projects/:id/deployments`), creating its
    /// environment (available) if needed; its id. Ids grow in the order of
    /// the calls, across projects, as GitLab's do.
    pub fn add_deployment(&self, spec: DeploymentSpec) -> u64 {
        let mut shared = self.shared.lock();
        let project = spec.project.unwrap_or(shared.config.project_id);
        shared.in_use.deployment(project, spec)
    }

    /// Adds a pipeline (`GET /projects/:id/pipelines`); its id.
    pub fn add_pipeline(&self, spec: PipelineSpec) -> u64 {
        let mut shared = self.shared.lock();
        let project = spec.project.unwrap_or(shared.config.project_id);
        shared.in_use.pipeline(project, spec)
    }

    /// Current tags of a repository: tag → digest (empty when it does not exist).
    pub fn tags(&self, repository_path: &str) -> BTreeMap<String, String> {
        let state = self.shared.lock();
        let path = state.full_path(repository_path);
        state
            .repository_by_path(&path)
            .map(|repository| {
                repository
                    .tags
                    .iter()
                    .map(|(name, tag)| (name.clone(), tag.digest.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Current tags of a repository with the size REST tag details answer
    /// (`total_size`: config and layers; `None` for an index), which
    /// `/gitlab/v1` lists as `size_bytes` (there an index's is its body).
    pub fn tag_sizes(&self, repository_path: &str) -> BTreeMap<String, Option<u64>> {
        let state = self.shared.lock();
        let path = state.full_path(repository_path);
        state
            .repository_by_path(&path)
            .map(|repository| {
                repository
                    .tags
                    .iter()
                    .map(|(name, tag)| {
                        let size = repository
                            .manifests
                            .get(&tag.digest)
                            .and_then(|manifest| manifest.total_size);
                        (name.clone(), size)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Full paths of every repository, by id.
    pub fn repositories(&self) -> Vec<(u64, String)> {
        let state = self.shared.lock();
        state
            .repositories
            .values()
            .map(|repository| (repository.id, repository.path.clone()))
            .collect()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Recorded requests with this method (case-insensitive) whose raw path
    /// contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|request| {
                request.method.eq_ignore_ascii_case(method) && request.path.contains(path_contains)
            })
            .count()
    }

    /// State-changing requests received (DELETE/PUT/POST/PATCH on either origin,
    /// `/jwt/auth` excluded), whatever their status.
    pub fn writes(&self) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|request| {
                matches!(request.method.as_str(), "DELETE" | "PUT" | "POST" | "PATCH")
                    && !request.path.starts_with("/jwt/auth")
            })
            .count()
    }

    pub fn bulk_calls(&self) -> Vec<BulkCall> {
        self.shared.lock().bulk_calls.clone()
    }

    /// The most requests that were being handled at once, across both
    /// origins (REST, `/jwt/auth`, registry), since the start or the last
    /// [`Emulator::reset_requests`]. A request counts from the moment its
    /// head is read until its answer is ready (latency included), so a
    /// client's own count of requests in flight is never lower.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Forgets recorded requests, bulk calls and the peak of requests in
    /// flight (not the hourly bulk-delete lock).
    pub fn reset_requests(&self) {
        self.shared.reset_requests();
    }

    /// Runs the registry's garbage collector over every repository (see
    /// [`Collect`]): what makes a deleted tag impossible to put back.
    pub fn garbage_collect(&self, collect: Collect) -> Collected {
        self.shared.garbage_collect(collect)
    }

    /// Lifts GitLab's once-an-hour bulk-delete lock on every repository.
    pub fn reset_bulk_locks(&self) {
        self.shared.lock().bulk_leases.clear();
    }

    /// Changes the configuration of the running emulator. Panics if the new
    /// signing key does not parse.
    pub fn set_config(&self, f: impl FnOnce(&mut Config)) {
        let mut state = self.shared.lock();
        let mut config = state.config.clone();
        f(&mut config);
        if let Err(err) = state.replace_config(config) {
            panic!("invalid emulator configuration: {err}");
        }
    }

    pub fn config(&self) -> Config {
        self.shared.lock().config.clone()
    }

    /// Everything a CI job has.
    pub fn ci_env(&self) -> Vec<(String, String)> {
        let config = self.config();
        let mut env = self.common_env(&config);
        env.extend([
            (
                "CI_REGISTRY_USER".to_string(),
                "gitlab-ci-token".to_string(),
            ),
            ("CI_REGISTRY_PASSWORD".to_string(), config.job_token.clone()),
            ("CI_JOB_TOKEN".to_string(), config.job_token),
        ]);
        env
    }

    /// A laptop outside CI: an access token, no `CI_JOB_TOKEN`.
    pub fn laptop_env(&self) -> Vec<(String, String)> {
        let config = self.config();
        let mut env = self.common_env(&config);
        env.extend([
            ("GITLAB_TOKEN".to_string(), config.access_token.clone()),
            ("CI_REGISTRY_USER".to_string(), "some-user".to_string()),
            ("CI_REGISTRY_PASSWORD".to_string(), config.access_token),
        ]);
        env
    }

    fn common_env(&self, config: &Config) -> Vec<(String, String)> {
        let fqdn = self.gitlab_url.trim_start_matches("http://").to_string();
        vec![
            ("CI_SERVER_URL".to_string(), self.gitlab_url.clone()),
            ("CI_SERVER_FQDN".to_string(), fqdn),
            (
                "CI_API_V4_URL".to_string(),
                format!("{}/api/v4", self.gitlab_url),
            ),
            ("CI_PROJECT_ID".to_string(), config.project_id.to_string()),
            ("CI_PROJECT_PATH".to_string(), config.project_path.clone()),
            ("CI_REGISTRY".to_string(), self.registry_host.clone()),
            (
                "CI_REGISTRY_IMAGE".to_string(),
                format!("{}/{}", self.registry_host, config.project_path),
            ),
            (
                "CLEANUP_REGISTRY_URL".to_string(),
                self.registry_url.clone(),
            ),
        ]
    }

    /// Every secret the emulator knows, for leak tests: job token, access token,
    /// deploy password and every JWT issued so far.
    pub fn secrets(&self) -> Vec<String> {
        let state = self.shared.lock();
        let mut secrets = vec![
            state.config.job_token.clone(),
            state.config.access_token.clone(),
        ];
        if let Some((_, password)) = &state.config.deploy_token {
            secrets.push(password.clone());
        }
        secrets.extend(state.jwts.iter().cloned());
        secrets
    }

    pub fn issued_jwts(&self) -> usize {
        self.shared.lock().jwts.len()
    }

    /// The `kid` of the signing key (libtrust fingerprint).
    pub fn kid(&self) -> String {
        self.shared.lock().keys.kid.clone()
    }

    /// The signing key's public half, as SubjectPublicKeyInfo PEM.
    pub fn public_key_pem(&self) -> String {
        self.shared.lock().keys.public_pem.clone()
    }
}

/// `sha256-<hex>` for a `sha256:<hex>` subject (the OCI referrers tag schema),
/// or with a suffix, cosign's `sha256-<hex>.sig` / `.att` / `.sbom`.
pub fn referrer_tag(subject: &str, suffix: Option<&str>) -> String {
    model::referrer_tag(subject, suffix)
}

/// The project an inventory's repositories belong to, for `--inventory`
/// without `--project-path`: the repository whose path is a prefix of every
/// other (the root image), else the longest common path of them all. A
/// GitLab project path has at least two segments (namespace/project).
pub fn project_path_of_inventory(json: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|err| format!("inventory is not valid: {err}"))?;
    let paths: Vec<&str> = value["repositories"]
        .as_array()
        .map(|repositories| {
            repositories
                .iter()
                .filter_map(|repository| repository["path"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let Some(first) = paths.first() else {
        return Err(
            "the inventory lists no repository to take the project path from: pass --project-path"
                .into(),
        );
    };
    let mut common: Vec<&str> = first.split('/').collect();
    for path in &paths[1..] {
        let segments: Vec<&str> = path.split('/').collect();
        let shared = common
            .iter()
            .zip(&segments)
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(shared);
    }
    if common.len() < 2 {
        return Err(format!(
            "the inventory's repositories ({}) share no project path (namespace/project): pass --project-path",
            paths.join(", ")
        ));
    }
    Ok(common.join("/"))
}

/// OCI image index and Docker manifest list media types, for
/// [`Repository::push_index_of`].
pub const OCI_INDEX: &str = model::OCI_INDEX;
pub const DOCKER_MANIFEST_LIST: &str = model::DOCKER_LIST;

/// One repository of a running emulator, for seeding supply-chain content.
///
/// Everything goes through the registry's own push path (`PUT` semantics,
/// without auth or request recording): bodies are real JSON whose sha256 is
/// their digest, children and blobs must exist, a pushed tag gets
/// `published_at` = now (see [`Repository::set_pushed_at`]) and REST
/// `created_at` = the image config's `created` (null for an index). The
/// helpers panic on what the registry would refuse (test code: fail loudly).
pub struct Repository<'a> {
    emulator: &'a Emulator,
    id: u64,
    path: String,
}

impl Repository<'_> {
    /// The repository's full path (`group/project/name`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    fn with<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut model::State, u64) -> Result<T, model::PushError>,
    ) -> T {
        let mut state = self.emulator.shared.lock();
        f(&mut state, self.id)
            .unwrap_or_else(|err| panic!("seeding {what} in {}: {err}", self.path))
    }

    /// A linux/amd64 OCI image whose config says `created` (omitted when
    /// `None`), under `tag` (or by digest only); returns its digest.
    pub fn push_image(&self, tag: Option<&str>, created: Option<DateTime<Utc>>) -> String {
        self.push_platform_image(tag, "linux", "amd64", created)
    }

    /// An OCI image for one platform (a child of a multi-arch index).
    pub fn push_platform_image(
        &self,
        tag: Option<&str>,
        os: &str,
        architecture: &str,
        created: Option<DateTime<Utc>>,
    ) -> String {
        self.with("an image", |state, id| {
            state.seed_image(id, tag, (os, architecture), created, true)
        })
    }

    /// A linux/amd64 Docker schema2 image.
    pub fn push_docker_image(&self, tag: Option<&str>, created: Option<DateTime<Utc>>) -> String {
        self.with("a Docker image", |state, id| {
            state.seed_image(id, tag, ("linux", "amd64"), created, false)
        })
    }

    /// An OCI image index under `tag` listing `children` (digests of
    /// manifests already pushed here, platforms taken from their configs).
    pub fn push_index(&self, tag: &str, children: &[&str]) -> String {
        self.push_index_of(Some(tag), OCI_INDEX, children)
    }

    /// An index of either media type ([`OCI_INDEX`], [`DOCKER_MANIFEST_LIST`]),
    /// tagged or by digest only.
    pub fn push_index_of(&self, tag: Option<&str>, media_type: &str, children: &[&str]) -> String {
        self.with("an index", |state, id| {
            state.seed_index(id, tag, media_type, children)
        })
    }

    /// Points `tag` at a manifest already here (e.g. `2.0.0-amd64` at the
    /// amd64 child of `2.0.0`).
    pub fn tag(&self, tag: &str, digest: &str) {
        self.with("a tag", |state, id| state.seed_tag_on(id, tag, digest));
    }

    /// A cosign signature (`"sig"`) or attestation (`"att"`, or e.g.
    /// `"sbom"`) of `subject`, tagged `sha256-<hex>.<suffix>`; returns its
    /// digest. The subject need not exist (an orphan). A second call for the
    /// same subject and suffix re-points the tag at a new manifest.
    pub fn push_signature(&self, subject: &str, suffix: &str) -> String {
        self.with("a signature", |state, id| {
            state.seed_signature(id, subject, suffix)
        })
    }

    /// An OCI 1.1 artifact of `artifact_type` whose `subject` is `subject`,
    /// pushed by digest (on GitLab's registry the subject must exist) and
    /// listed in the referrers tag schema's index tagged `sha256-<hex>`;
    /// returns the artifact's digest.
    pub fn push_artifact(&self, subject: &str, artifact_type: &str) -> String {
        self.with("an artifact", |state, id| {
            state.seed_artifact(id, subject, artifact_type)
        })
    }

    /// An OCI 1.1 artifact of `artifact_type` whose `subject` is `subject`,
    /// tagged `tag` by name (as `oras push REPO:sbom-1.0.0 --subject …` does)
    /// and listed nowhere else: only its manifest names the subject (no
    /// `sha256-<hex>` tag). Returns the artifact's digest.
    pub fn push_tagged_artifact(&self, tag: &str, subject: &str, artifact_type: &str) -> String {
        self.with("a tagged artifact", |state, id| {
            state.seed_artifact_manifest(id, tag, subject, artifact_type)
        })
    }

    /// Sets a tag's push time: as if it was pushed once, at `at`
    /// (`/gitlab/v1` `created_at` = `published_at` = `at`, `updated_at`
    /// null; REST `created_at` with the database). The build time (the
    /// config's `created`, REST `created_at` without the database) stays.
    pub fn set_pushed_at(&self, tag: &str, at: DateTime<Utc>) {
        let mut state = self.emulator.shared.lock();
        let entry = state
            .repository_mut(self.id)
            .and_then(|repository| repository.tags.get_mut(tag))
            .unwrap_or_else(|| panic!("no tag {tag} in {}", self.path));
        entry.first_pushed_at = at;
        entry.published_at = at;
    }

    /// Records a re-push of `tag` at `at` (same manifest): `/gitlab/v1`
    /// `updated_at` = `published_at` = `at`, `created_at` (the first push)
    /// stays.
    pub fn set_repushed_at(&self, tag: &str, at: DateTime<Utc>) {
        let mut state = self.emulator.shared.lock();
        let entry = state
            .repository_mut(self.id)
            .and_then(|repository| repository.tags.get_mut(tag))
            .unwrap_or_else(|| panic!("no tag {tag} in {}", self.path));
        entry.published_at = at;
    }

    /// The stored manifest body under `digest`, if any.
    pub fn manifest(&self, digest: &str) -> Option<Vec<u8>> {
        let state = self.emulator.shared.lock();
        state
            .repositories
            .get(&self.id)
            .and_then(|repository| repository.manifests.get(digest))
            .map(|manifest| manifest.body.to_vec())
    }

    /// Tag → digest.
    pub fn tags(&self) -> BTreeMap<String, String> {
        self.emulator.tags(&self.path)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod project_path_tests {
    use super::project_path_of_inventory;

    fn inventory(paths: &[&str]) -> String {
        let repositories: Vec<serde_json::Value> = paths
            .iter()
            .map(|path| serde_json::json!({"path": path, "tags": []}))
            .collect();
        serde_json::json!({ "repositories": repositories }).to_string()
    }

    #[test]
    fn the_project_is_the_common_path_of_its_repositories() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["acme/shop", "acme/shop/api", "acme/shop/tools/builder"],
                "acme/shop",
            ),
            (&["acme/shop/api", "acme/shop/frontend"], "acme/shop"),
            (&["g/sub/p/api", "g/sub/p"], "g/sub/p"),
            (&["g/p"], "g/p"),
        ];
        for (paths, project) in cases {
            assert_eq!(
                project_path_of_inventory(&inventory(paths)).as_deref(),
                Ok(*project),
                "{paths:?}"
            );
        }
        for paths in [&["a/x", "b/y"][..], &[][..], &["a/x", "a/y"][..]] {
            let err = project_path_of_inventory(&inventory(paths)).expect_err("no project");
            assert!(err.contains("--project-path"), "{err}");
        }
    }
}
