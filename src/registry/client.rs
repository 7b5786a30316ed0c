//! The registry API (OCI distribution, plus GitLab's `/gitlab/v1` listing),
//! authenticated with registry JWTs from [`RegistryAuth`].

use crate::wire::http::{listed_name, listed_names};
use crate::wire::urls::encode_segment;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use tokio::sync::{Mutex, MutexGuard, OnceCell};
use url::Url;

use crate::domain::exit::{Exit, ExitCode};
use crate::domain::model::Tag;
use crate::domain::names::{Digest, Reference, RepositoryPath, TagName};
use crate::domain::tag_rules::TagRules;
use crate::registry::auth::{parse_challenge, AuthError, RegistryAuth};
use crate::wire::http::{display_url, Http, HttpError, HttpResponse};
use crate::wire::links::Pager;
use crate::wire::secret::Secret;
use crate::wire::urls::join_path;

/// Every manifest type: without the list types a multi-arch tag resolves to
/// one child's digest; without the OCI types an OCI image answers 404.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

pub const PULL: &[&str] = &["pull"];
pub const PULL_DELETE: &[&str] = &["pull", "delete"];
/// What `restore` needs: read manifests, put them back under their tags.
pub const PULL_PUSH: &[&str] = &["pull", "push"];
pub const PULL_PUSH_DELETE: &[&str] = &["pull", "push", "delete"];

/// Fresh tokens fetched for one call after `invalid_token` refusals.
const MAX_TOKEN_REFRESHES: u32 = 3;

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The registry pointed us at another origin (a redirect, an upload
    /// location): the registry token is not sent there.
    #[error("the registry pointed us at {0}, which is not the registry's origin; refusing to send the registry token there")]
    ForeignOrigin(String),
}

impl RegistryError {
    /// No answer at all after every retry (refused or dropped connections,
    /// timeouts, TLS failures): the same for every repository, so a run
    /// stops on it rather than trying each repository again.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RegistryError::Http(HttpError::Transport { .. })
                | RegistryError::Auth(crate::registry::auth::AuthError::Http(
                    HttpError::Transport { .. }
                ))
        )
    }
}

impl ExitCode for RegistryError {
    fn exit_code(&self) -> Exit {
        match self {
            RegistryError::Http(err) => err.exit_code(),
            RegistryError::Auth(err) => err.exit_code(),
            RegistryError::ForeignOrigin(_) => Exit::Failed,
        }
    }
}

/// What the registry can do. Learned from its answers, once per run, and
/// kept here only: every listing and delete asks this.
///
/// GitLab's registry announces both on `GET /v2/`
/// (`gitlab-container-registry-features`,
/// `gitlab-container-registry-database-enabled`) — but only to an
/// authorized request: the anonymous one meets the 401 challenge before the
/// handler that sets them. So the first registry token a run obtains asks
/// `GET /v2/` once more ([`Registry::learn_announced`]). Distribution and
/// older GitLab registries announce nothing: then the first listing and the
/// first delete find out.
#[derive(Debug, Default)]
pub struct Capabilities {
    /// `DELETE /v2/<path>/manifests/<tag>` removes just that tag (OCI 1.1);
    /// Distribution 2.8 answers 400 `DIGEST_INVALID`.
    pub tag_delete: Capability,
    /// GitLab's `/gitlab/v1` tag list answers (the metadata database runs).
    pub gitlab_v1: Capability,
    /// Whether `GET /v2/` announced them (set once it has been asked with
    /// the credentials that get the headers): an announcement is not
    /// overruled by one repository's answer.
    announced: OnceCell<bool>,
}

impl Capabilities {
    /// `Some(true)` once GitLab's registry announced what it can do,
    /// `Some(false)` once asked and nothing was announced.
    pub fn announced(&self) -> Option<bool> {
        self.announced.get().copied()
    }
}

/// One yes/no the registry has or has not answered yet, with a turn for
/// finding it out: callers that start together wait for the first answer
/// instead of each paying for a probe.
#[derive(Debug, Default)]
pub struct Capability {
    state: AtomicU8,
    /// Learned from GitLab's headers rather than from a probe's answer.
    announced: std::sync::atomic::AtomicBool,
    discovery: Mutex<()>,
}

const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

impl Capability {
    /// `None` until the registry has answered.
    pub fn known(&self) -> Option<bool> {
        match self.state.load(Ordering::Relaxed) {
            YES => Some(true),
            NO => Some(false),
            UNKNOWN.. => None,
        }
    }

    fn learn(&self, yes: bool) {
        self.state
            .store(if yes { YES } else { NO }, Ordering::Relaxed);
    }

    fn announce(&self, yes: bool) {
        self.announced.store(true, Ordering::Relaxed);
        self.learn(yes);
    }

    /// Whether the registry announced it (`GET /v2/`'s headers).
    pub fn was_announced(&self) -> bool {
        self.announced.load(Ordering::Relaxed)
    }

    /// The turn to find the answer out; check [`Capability::known`] again once held.
    pub async fn discovery(&self) -> MutexGuard<'_, ()> {
        self.discovery.lock().await
    }
}

/// What a `DELETE /v2/<path>/manifests/<reference>` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryDelete {
    Deleted,
    NotFound,
    /// The registry cannot delete by tag (400 DIGEST_INVALID, 405 UNSUPPORTED).
    Unsupported(String),
    /// 403: a protected tag, or deletes refused for this user.
    Denied(String),
    /// 409 `MANIFEST_REFERENCED` (GitLab's registry): an image index still
    /// lists the manifest. Reported, never retried.
    Referenced(String),
    /// 401 `PROTECTED_TAG` / `IMMUTABLE_TAG` (GitLab's tag rules): this tag
    /// may not be deleted. Not a token problem: never retried.
    RuleProtected {
        code: String,
        message: String,
    },
    /// 401 `PROTECTED_MANIFEST`: GitLab's registry refuses every delete by
    /// digest in a repository with tag rules. Only tag delete (or REST) works.
    ProtectedManifest(String),
}

/// What a `PUT /v2/<path>/manifests/<reference>` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestPut {
    /// Stored (201), under the digest the registry names.
    Stored(Digest),
    /// A blob or a manifest it lists is missing: 400
    /// `MANIFEST_BLOB_UNKNOWN` / `BLOB_UNKNOWN` / `MANIFEST_UNKNOWN`, or
    /// (Distribution, for an index) 400 `MANIFEST_INVALID` naming an
    /// unknown manifest. What the registry's garbage collector leaves.
    Missing { code: String, message: String },
    /// Any other refusal (immutable tag, protected tag, denied, invalid),
    /// with the registry's code and message.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

/// GitLab's registry error codes for deletes its tag rules refuse (401, but
/// not a token problem: a new token carries the same rules).
pub const RULE_REFUSAL_CODES: &[&str] = &["PROTECTED_TAG", "IMMUTABLE_TAG", "PROTECTED_MANIFEST"];

/// Media types of the manifests that list other manifests.
pub const INDEX_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// What the tool needs of a manifest: its kind, the manifests an index
/// lists, an image's config and an artifact's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// As the registry names it (`Docker-Content-Digest`, as a `HEAD` gives
    /// it), else the body's hash.
    pub digest: Digest,
    pub media_type: String,
    /// The digests an image index lists (empty for an image).
    pub children: Vec<Digest>,
    /// An image's config blob.
    pub config: Option<Digest>,
    /// An OCI 1.1 artifact's subject.
    pub subject: Option<Digest>,
    /// The manifest exactly as the registry served it: what puts it back
    /// where a deletion removed it (`restore`).
    pub body: bytes::Bytes,
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        INDEX_MEDIA_TYPES.contains(&self.media_type.as_str())
    }
}

pub struct Registry {
    http: Http,
    base: Url,
    server_url: Url,
    credentials: Option<(String, Secret)>,
    auth: OnceCell<Option<Arc<RegistryAuth>>>,
    pub capabilities: Capabilities,
    /// Repositories where GitLab's registry refused a digest delete (401
    /// `PROTECTED_MANIFEST`): no digest delete is sent there again.
    closed_digest_paths: std::sync::Mutex<std::collections::HashSet<RepositoryPath>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl Registry {
    pub fn new(
        http: Http,
        base: Url,
        server_url: Url,
        credentials: Option<(String, Secret)>,
    ) -> Registry {
        Registry {
            http,
            base,
            server_url,
            credentials,
            auth: OnceCell::new(),
            capabilities: Capabilities::default(),
            closed_digest_paths: Default::default(),
        }
    }

    /// `false` once the registry has answered that it cannot delete by tag.
    pub fn may_delete_by_tag(&self) -> bool {
        self.capabilities.tag_delete.known() != Some(false)
    }

    /// Whether digest deletes are closed in `repository`: GitLab's tag rules
    /// exist there (its token carries patterns) or the registry already
    /// answered `PROTECTED_MANIFEST`.
    pub async fn digest_path_closed(&self, repository: &RepositoryPath) -> bool {
        if self
            .closed_digest_paths
            .lock()
            .map(|closed| closed.contains(repository))
            .unwrap_or(true)
        {
            return true;
        }
        // A token the deleter already holds: no request.
        self.tag_rules(repository)
            .await
            .is_ok_and(|rules| !rules.is_empty())
    }

    /// Remembers a `PROTECTED_MANIFEST` answer for `repository`.
    pub fn close_digest_path(&self, repository: &RepositoryPath) {
        if let Ok(mut closed) = self.closed_digest_paths.lock() {
            closed.insert(repository.clone());
        }
    }

    /// GitLab's tag rules for `repository`, from its `pull,delete` token's
    /// `access[].meta`. Without token auth (an open registry): none.
    pub async fn tag_rules(&self, repository: &RepositoryPath) -> Result<TagRules, RegistryError> {
        match self.auth().await? {
            Some(auth) => Ok(auth.tag_rules(repository, PULL_DELETE).await?),
            None => Ok(TagRules::default()),
        }
    }

    /// Learns what GitLab's registry says it can do on `GET /v2/`
    /// (`gitlab-container-registry-features`, a comma list, and
    /// `gitlab-container-registry-database-enabled`), so that neither is
    /// probed. Absent headers (Distribution, older GitLab) leave the probes.
    /// Whether the answer announced anything.
    fn learn_from_headers(&self, response: &HttpResponse) -> bool {
        let features = response.header("gitlab-container-registry-features");
        if let Some(features) = features {
            let tag_delete = features
                .split(',')
                .any(|feature| feature.trim().eq_ignore_ascii_case("tag_delete"));
            self.capabilities.tag_delete.announce(tag_delete);
        }
        let database = response.header("gitlab-container-registry-database-enabled");
        if let Some(database) = database {
            self.capabilities
                .gitlab_v1
                .announce(database.trim().eq_ignore_ascii_case("true"));
        }
        features.is_some() || database.is_some()
    }

    /// Asks `GET /v2/` with `token` (any token the realm issues is accepted
    /// for the base route) what GitLab's registry can do, once per run: the
    /// callers that come together wait for the one answer. Not asked where
    /// the anonymous answer already said, or was not a challenge. A failed
    /// request leaves the capabilities to the probes.
    async fn learn_announced(&self, token: &Secret) {
        self.capabilities
            .announced
            .get_or_init(|| async {
                let url = join_path(&self.base, "v2/");
                match self
                    .http
                    .send(Method::GET, &url, |r| r.bearer_auth(token.expose()))
                    .await
                {
                    Ok(response) if response.status.is_success() => {
                        let announced = self.learn_from_headers(&response);
                        tracing::debug!(announced, "asked the registry what it can do");
                        announced
                    }
                    Ok(response) => {
                        tracing::debug!(status = %response.status, "the registry's authorized GET /v2/ failed; its capabilities are probed");
                        false
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "the registry's authorized GET /v2/ failed; its capabilities are probed");
                        false
                    }
                }
            })
            .await;
    }

    /// What the registry announced, asking for it with a token of no scope
    /// (as `docker login` does) where no token of the run has yet: for
    /// `doctor`, which must say what the registry can do even when every
    /// repository's token was refused.
    pub async fn announced_capabilities(
        &self,
    ) -> Result<(Option<bool>, Option<bool>), RegistryError> {
        if let Some(auth) = self.auth().await? {
            if self.capabilities.announced().is_none() {
                let token = auth.scopeless_token().await?;
                self.learn_announced(&token).await;
            }
        }
        Ok((
            self.capabilities.tag_delete.known(),
            self.capabilities.gitlab_v1.known(),
        ))
    }

    /// Discovers the token service from `GET /v2/`'s challenge, once.
    async fn auth(&self) -> Result<Option<Arc<RegistryAuth>>, RegistryError> {
        self.auth
            .get_or_try_init(|| async {
                let url = join_path(&self.base, "v2/");
                let response = self.http.send(Method::GET, &url, |r| r).await?;
                // A registry with no token auth has said all it will; one
                // that names both anonymously too. GitLab's says it to a
                // token only: asked again with the run's first token.
                let announced = self.learn_from_headers(&response);
                let both = self.capabilities.tag_delete.was_announced()
                    && self.capabilities.gitlab_v1.was_announced();
                if both || response.status.is_success() {
                    let _ = self.capabilities.announced.set(announced);
                }
                match response.status.as_u16() {
                    200..=299 => Ok(None),
                    401 => {
                        let header = response.header(WWW_AUTHENTICATE.as_str()).unwrap_or_default();
                        let challenge = parse_challenge(header)
                            .filter(|c| c.scheme.eq_ignore_ascii_case("bearer"))
                            .ok_or_else(|| {
                                response.invalid(format!(
                                    "the registry's challenge {header:?} is not a Bearer token challenge"
                                ))
                            })?;
                        let auth = RegistryAuth::new(
                            self.http.clone(),
                            &challenge,
                            &self.server_url,
                            self.credentials.clone(),
                        )?;
                        Ok(Some(Arc::new(auth)))
                    }
                    _ => Err(response.unexpected().into()),
                }
            })
            .await
            .cloned()
    }

    /// The first contact, `GET /v2/` (whose answer every later call uses):
    /// made once per run, before any repository is worked on.
    pub async fn probe(&self) -> Result<(), RegistryError> {
        self.auth().await.map(|_| ())
    }

    /// Asks for one `pull,delete` token per batch of repositories instead
    /// of one per repository ([`RegistryAuth::prefetch`]); repositories it
    /// does not cover get their own token when used. Returns the calls made.
    pub async fn prefetch_tokens(
        &self,
        repositories: &[&RepositoryPath],
    ) -> Result<usize, RegistryError> {
        match self.auth().await? {
            Some(auth) => {
                let paths: Vec<&str> = repositories.iter().map(|path| path.as_str()).collect();
                Ok(auth.prefetch(&paths, PULL_DELETE).await?)
            }
            None => Ok(0),
        }
    }

    /// Every repository path of the registry: `GET /v2/_catalog?n=1000`,
    /// following `Link: rel="next"`, with a `registry:catalog:*` token
    /// (administrators only: anyone else is refused, exit 2). A path that
    /// is not a registry path fails the listing.
    pub async fn catalog(&self) -> Result<Vec<RepositoryPath>, RegistryError> {
        self.catalog_pages(self.catalog_access().await?).await
    }

    /// The catalog token (none without token auth), which also asks the
    /// registry what it can do: instance mode checks that before reading
    /// the catalog, for no request of its own but `GET /v2/`.
    pub async fn catalog_access(&self) -> Result<Option<Secret>, RegistryError> {
        match self.auth().await? {
            Some(auth) => {
                let token = auth.catalog_token().await?;
                self.learn_announced(&token).await;
                Ok(Some(token))
            }
            None => Ok(None),
        }
    }

    /// Every page of the catalog, with the token [`Registry::catalog_access`] gave.
    pub async fn catalog_pages(
        &self,
        token: Option<Secret>,
    ) -> Result<Vec<RepositoryPath>, RegistryError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Vec<String>,
        }
        let mut url = join_path(&self.base, "v2/_catalog");
        url.query_pairs_mut().append_pair("n", "1000");
        let mut pager = Pager::new(&url);
        let mut paths = Vec::new();
        loop {
            let response = self
                .http
                .send(Method::GET, &url, |request| match &token {
                    Some(token) => request.bearer_auth(token.expose()),
                    None => request,
                })
                .await?;
            if !response.status.is_success() {
                return Err(response.unexpected().into());
            }
            let page: Page = response.json()?;
            for path in page.repositories {
                paths.push(RepositoryPath::parse(&path).map_err(|_| {
                    response.invalid(format!(
                        "the catalog lists {path:?}, which is not a valid repository path; refusing to work from this listing"
                    ))
                })?);
            }
            match pager.next_from_link(&response, &url)? {
                Some(next) => url = next,
                None => return Ok(paths),
            }
        }
    }

    /// Checks up front that the credentials give `actions` on `repository`.
    pub async fn check_access(
        &self,
        repository: &RepositoryPath,
        actions: &[&str],
    ) -> Result<(), RegistryError> {
        if let Some(auth) = self.auth().await? {
            let token = auth.token(repository, actions).await?;
            self.learn_announced(&token).await;
        }
        Ok(())
    }

    /// Sends an authenticated request; a token the registry calls invalid
    /// (expired, revoked) is replaced transparently, a few times at most: retries
    /// inside [`Http::send`] reuse the token, so a call slowed down by 429s can
    /// outlive a short-lived JWT more than once, but a registry that rejects
    /// every fresh token must not keep us asking.
    async fn call(
        &self,
        method: Method,
        url: &Url,
        repository: &RepositoryPath,
        actions: &[&str],
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<HttpResponse, RegistryError> {
        if url.origin() != self.base.origin() {
            return Err(RegistryError::ForeignOrigin(display_url(url)));
        }
        let auth = self.auth().await?;
        let mut refreshes = 0;
        // A refresh resends the request: an attempt before it may have applied.
        let mut earlier_attempt_may_have_applied = false;
        loop {
            let token = match &auth {
                Some(auth) => {
                    let token = auth.token(repository, actions).await?;
                    self.learn_announced(&token).await;
                    Some(token)
                }
                None => None,
            };
            let mut response = self
                .http
                .send(method.clone(), url, |request| {
                    let request = build(request);
                    match &token {
                        Some(token) => request.bearer_auth(token.expose()),
                        None => request,
                    }
                })
                .await?;
            response.earlier_attempt_may_have_applied |= earlier_attempt_may_have_applied;
            earlier_attempt_may_have_applied = response.earlier_attempt_may_have_applied;
            if response.status == StatusCode::UNAUTHORIZED && refreshes < MAX_TOKEN_REFRESHES {
                if let Some(auth) = &auth {
                    let challenge = response
                        .header(WWW_AUTHENTICATE.as_str())
                        .and_then(parse_challenge);
                    let error = challenge
                        .as_ref()
                        .and_then(|c| c.error())
                        .unwrap_or_default();
                    if token_may_be_stale(error, response.registry_error_code().as_deref()) {
                        tracing::debug!(
                            repository = %repository,
                            error,
                            "registry token refused; fetching a new one"
                        );
                        auth.invalidate(repository, actions).await;
                        refreshes += 1;
                        continue;
                    }
                }
            }
            return Ok(response);
        }
    }

    /// `/v2/<path>/manifests/<reference>`. The types guarantee no name here
    /// can climb out of the path (`url` normalises dot segments, even
    /// encoded ones): they were parsed where they came in.
    fn manifest_url(&self, repository: &RepositoryPath, reference: &str) -> Url {
        join_path(
            &self.base,
            &format!(
                "v2/{}/manifests/{}",
                encode_path(repository),
                encode_segment(reference)
            ),
        )
    }

    /// The digest a tag (or digest) resolves to, or `None` when it does not exist.
    pub async fn manifest_digest(
        &self,
        repository: &RepositoryPath,
        reference: &Reference,
    ) -> Result<Option<Digest>, RegistryError> {
        let Some(response) = self
            .read_manifest(Method::HEAD, repository, reference)
            .await?
        else {
            return Ok(None);
        };
        if let Some(digest) = response.header("docker-content-digest") {
            return Ok(Some(validate_digest(
                &response,
                "Docker-Content-Digest",
                digest,
            )?));
        }
        // Some registries omit the header on HEAD: hash the manifest itself.
        Ok(self
            .read_manifest(Method::GET, repository, reference)
            .await?
            .map(|response| Digest::of(&response.body)))
    }

    /// `HEAD`/`GET /v2/<path>/manifests/<reference>` with every manifest
    /// type accepted: the answer, or `None` when it does not exist.
    async fn read_manifest(
        &self,
        method: Method,
        repository: &RepositoryPath,
        reference: &Reference,
    ) -> Result<Option<HttpResponse>, RegistryError> {
        let url = self.manifest_url(repository, reference.as_str());
        let response = self
            .call(method, &url, repository, PULL, |r| {
                r.header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match response.status.as_u16() {
            200 => Ok(Some(response)),
            404 => Ok(None),
            _ => Err(response.unexpected().into()),
        }
    }

    /// `PUT /v2/<path>/manifests/<reference>` of `body` exactly, as
    /// `media_type`: how `restore` puts a manifest back under a tag (or by
    /// digest, for a child an index needs). A refusal is an answer, not an
    /// error: the caller says what it means for that tag.
    pub async fn put_manifest(
        &self,
        repository: &RepositoryPath,
        reference: &Reference,
        media_type: &str,
        body: &bytes::Bytes,
    ) -> Result<ManifestPut, RegistryError> {
        let url = self.manifest_url(repository, reference.as_str());
        let response = self
            .call(Method::PUT, &url, repository, PULL_PUSH, |r| {
                r.header(CONTENT_TYPE, media_type).body(body.clone())
            })
            .await?;
        let status = response.status.as_u16();
        if response.status.is_success() {
            let digest = match response.header("docker-content-digest") {
                Some(header) => validate_digest(&response, "Docker-Content-Digest", header)?,
                None => Digest::of(body),
            };
            return Ok(ManifestPut::Stored(digest));
        }
        let code = response.registry_error_code().unwrap_or_default();
        let message = crate::wire::http::error_message(&response.body);
        let missing = status == 400
            && (matches!(
                code.as_str(),
                "MANIFEST_BLOB_UNKNOWN" | "BLOB_UNKNOWN" | "MANIFEST_UNKNOWN"
            ) || (code == "MANIFEST_INVALID" && mentions_unknown(&response.body)));
        Ok(match status {
            _ if missing => ManifestPut::Missing { code, message },
            400 | 401 | 403 | 404 | 405 | 409 | 412 | 415 | 422 => ManifestPut::Refused {
                status,
                code,
                message,
            },
            _ => return Err(response.unexpected().into()),
        })
    }

    /// Whether the repository has the blob (`HEAD /v2/<path>/blobs/<digest>`).
    pub async fn blob_exists(
        &self,
        repository: &RepositoryPath,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let url = join_path(
            &self.base,
            &format!("v2/{}/blobs/{}", encode_path(repository), digest),
        );
        let response = self
            .call(Method::HEAD, &url, repository, PULL, |r| r)
            .await?;
        match response.status.as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(response.unexpected().into()),
        }
    }

    /// `DELETE /v2/<path>/manifests/<reference>`: a tag (OCI 1.1 tag delete)
    /// or a digest (removes every tag pointing at it).
    pub async fn delete_manifest(
        &self,
        repository: &RepositoryPath,
        reference: &Reference,
    ) -> Result<RegistryDelete, RegistryError> {
        let url = self.manifest_url(repository, reference.as_str());
        let response = self
            .call(Method::DELETE, &url, repository, PULL_DELETE, |r| r)
            .await?;
        let is_tag = matches!(reference, Reference::Tag(_));
        let outcome = match response.status.as_u16() {
            200..=299 => RegistryDelete::Deleted,
            // Our own earlier attempt got through and only its answer was lost.
            404 if response.earlier_attempt_may_have_applied => RegistryDelete::Deleted,
            404 => RegistryDelete::NotFound,
            400 | 405 if is_tag => {
                let code = response.registry_error_code().unwrap_or_default();
                if response.status.as_u16() == 405
                    || code == "DIGEST_INVALID"
                    || code == "UNSUPPORTED"
                {
                    RegistryDelete::Unsupported(
                        format!("{} {code}", response.status.as_u16())
                            .trim()
                            .to_string(),
                    )
                } else {
                    return Err(response.unexpected().into());
                }
            }
            403 => RegistryDelete::Denied(crate::wire::http::error_message(&response.body)),
            409 if response.registry_error_code().as_deref() == Some("MANIFEST_REFERENCED") => {
                RegistryDelete::Referenced(crate::wire::http::error_message(&response.body))
            }
            401 => match response.registry_error_code().as_deref() {
                Some(code @ ("PROTECTED_TAG" | "IMMUTABLE_TAG")) => RegistryDelete::RuleProtected {
                    code: code.to_string(),
                    message: crate::wire::http::error_message(&response.body),
                },
                Some("PROTECTED_MANIFEST") => {
                    self.close_digest_path(repository);
                    RegistryDelete::ProtectedManifest(crate::wire::http::error_message(
                        &response.body,
                    ))
                }
                _ => return Err(response.unexpected().into()),
            },
            _ => return Err(response.unexpected().into()),
        };
        if is_tag {
            match outcome {
                RegistryDelete::Deleted => self.capabilities.tag_delete.learn(true),
                RegistryDelete::Unsupported(_) => self.capabilities.tag_delete.learn(false),
                _ => {}
            }
        }
        Ok(outcome)
    }

    /// Every tag name, through the distribution API (`/v2/<path>/tags/list`).
    pub async fn tag_names(
        &self,
        repository: &RepositoryPath,
    ) -> Result<Vec<TagName>, RegistryError> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = join_path(
            &self.base,
            &format!("v2/{}/tags/list", encode_path(repository)),
        );
        url.query_pairs_mut().append_pair("n", "1000");
        let mut names = Vec::new();
        let mut pager = Pager::new(&url);
        loop {
            let response = self
                .call(Method::GET, &url, repository, PULL, |r| r)
                .await?;
            match response.status.as_u16() {
                200 => {}
                404 => return Ok(names),
                _ => return Err(response.unexpected().into()),
            }
            let page: TagList = response.json()?;
            names.extend(listed_names(&response, page.tags.unwrap_or_default())?);
            match pager.next_from_link(&response, &url)? {
                Some(next) => url = next,
                None => return Ok(names),
            }
        }
    }

    /// GitLab's `/gitlab/v1` tag list: every tag with digest and date, 1000
    /// per call. `None` where the registry has no metadata database.
    pub async fn gitlab_v1_tags(
        &self,
        repository: &RepositoryPath,
    ) -> Result<Option<Vec<Tag>>, RegistryError> {
        let capability = &self.capabilities.gitlab_v1;
        // `GET /v2/` may already have said (GitLab's capability headers).
        self.auth().await?;
        if capability.known() == Some(false) {
            return Ok(None);
        }
        let mut url = join_path(
            &self.base,
            &format!(
                "gitlab/v1/repositories/{}/tags/list/",
                encode_path(repository)
            ),
        );
        url.query_pairs_mut()
            .append_pair("n", "1000")
            .append_pair("referrers", "true");
        let mut tags = Vec::new();
        let mut pager = Pager::new(&url);
        loop {
            let response = self
                .call(Method::GET, &url, repository, PULL, |r| r)
                .await?;
            match response.status.as_u16() {
                200 => capability.learn(true),
                404 if response.registry_error_code().as_deref() == Some("NAME_UNKNOWN")
                    && capability.known() == Some(true) =>
                {
                    return Ok(Some(tags));
                }
                // Announced by the registry: one repository's odd 404 (a
                // proxy's, a path the database lacks) is that repository's
                // failure, not a reason to stop using `/gitlab/v1` for the
                // run — which instance mode, with no REST to fall back to,
                // could not survive.
                404 if capability.was_announced() => {
                    return Err(response.unexpected().into());
                }
                404 => {
                    capability.learn(false);
                    return Ok(None);
                }
                _ => return Err(response.unexpected().into()),
            }
            let page: Vec<V1Tag> = response.json()?;
            for tag in page {
                tags.push(tag.into_tag(&response)?);
            }
            match pager.next_from_link(&response, &url)? {
                Some(next) => url = next,
                None => return Ok(Some(tags)),
            }
        }
    }

    /// A manifest (by tag or digest), or `None` when it does not exist.
    pub async fn manifest(
        &self,
        repository: &RepositoryPath,
        reference: &Reference,
    ) -> Result<Option<Manifest>, RegistryError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Descriptor {
            digest: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            #[serde(default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Vec<Descriptor>,
            #[serde(default)]
            config: Option<Descriptor>,
            #[serde(default)]
            subject: Option<Descriptor>,
        }
        let Some(response) = self
            .read_manifest(Method::GET, repository, reference)
            .await?
        else {
            return Ok(None);
        };
        let body: Body = response.json()?;
        let digest =
            |descriptor: Descriptor| validate_digest(&response, "digest", &descriptor.digest);
        // The body's own mediaType is what was pushed; the header is what
        // the registry says it served. Either will do; the body wins.
        let media_type = body
            .media_type
            .or_else(|| response.header(CONTENT_TYPE.as_str()).map(str::to_string))
            .unwrap_or_default();
        // The digest the registry stores it under, as a HEAD would give it;
        // the body's hash where the header is missing.
        let manifest_digest = match (reference, response.header("docker-content-digest")) {
            (_, Some(header)) => validate_digest(&response, "Docker-Content-Digest", header)?,
            (Reference::Digest(digest), None) => digest.clone(),
            (Reference::Tag(_), None) => Digest::of(&response.body),
        };
        Ok(Some(Manifest {
            digest: manifest_digest,
            media_type,
            children: body
                .manifests
                .into_iter()
                .map(digest)
                .collect::<Result<_, _>>()?,
            config: body.config.map(digest).transpose()?,
            subject: body.subject.map(digest).transpose()?,
            body: response.body.clone(),
        }))
    }

    /// An image config's `created`, the build time (`None` when absent or
    /// not a time).
    pub async fn config_created(
        &self,
        repository: &RepositoryPath,
        config: &Digest,
    ) -> Result<Option<DateTime<Utc>>, RegistryError> {
        #[derive(Deserialize)]
        struct Config {
            #[serde(default)]
            created: Option<serde_json::Value>,
        }
        let url = join_path(
            &self.base,
            &format!("v2/{}/blobs/{}", encode_path(repository), config),
        );
        let response = self
            .call(Method::GET, &url, repository, PULL, |r| r)
            .await?;
        match response.status.as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(response.unexpected().into()),
        }
        let config: Config = response.json()?;
        Ok(config
            .created
            .and_then(|value| value.as_str().map(str::to_string))
            .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
            .map(|time| time.with_timezone(&Utc)))
    }

    /// Points `tag` at a new manifest that nothing else uses, and returns its
    /// digest: deleting that digest then removes `tag` and only `tag`. This is
    /// how a tag is deleted on registries without tag delete when other tags
    /// share its manifest (regctl and GitLab itself do the same).
    pub async fn move_to_throwaway_manifest(
        &self,
        repository: &RepositoryPath,
        tag: &TagName,
    ) -> Result<Digest, RegistryError> {
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{
                "created_by": "registry-cleanup: throw-away manifest, deleted right away",
                "comment": format!("{repository}:{tag} {} {}", Utc::now().to_rfc3339(), fastrand::u64(..)),
            }],
        })
        .to_string()
        .into_bytes();
        let config_digest = Digest::of(&config);
        self.upload_blob(repository, &config, &config_digest)
            .await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": config.len(),
                "digest": config_digest,
            },
            "layers": [],
        })
        .to_string()
        .into_bytes();
        let manifest_digest = Digest::of(&manifest);
        let url = self.manifest_url(repository, tag);
        let response = self
            .call(Method::PUT, &url, repository, PULL_PUSH_DELETE, |r| {
                r.header(
                    CONTENT_TYPE,
                    "application/vnd.docker.distribution.manifest.v2+json",
                )
                .body(manifest.clone())
            })
            .await?;
        if !response.status.is_success() {
            return Err(response.unexpected().into());
        }
        if let Some(digest) = response.header("docker-content-digest") {
            if digest != manifest_digest.as_str() {
                return Err(response
                    .invalid(format!("the registry stored the throw-away manifest as {digest}, expected {manifest_digest}"))
                    .into());
            }
        }
        Ok(manifest_digest)
    }

    async fn upload_blob(
        &self,
        repository: &RepositoryPath,
        blob: &[u8],
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let start = join_path(
            &self.base,
            &format!("v2/{}/blobs/uploads/", encode_path(repository)),
        );
        let response = self
            .call(Method::POST, &start, repository, PULL_PUSH_DELETE, |r| r)
            .await?;
        if response.status != StatusCode::ACCEPTED {
            return Err(response.unexpected().into());
        }
        let location = response
            .header(LOCATION.as_str())
            .ok_or_else(|| response.invalid("blob upload answered without a Location"))?;
        let mut upload = start
            .join(location)
            .map_err(|err| response.invalid(format!("blob upload Location {location:?}: {err}")))?;
        upload.query_pairs_mut().append_pair("digest", digest);
        let body = blob.to_vec();
        let response = self
            .call(Method::PUT, &upload, repository, PULL_PUSH_DELETE, |r| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        if !response.status.is_success() {
            return Err(response.unexpected().into());
        }
        Ok(())
    }
}

/// Whether a 401 calls for a fresh token. Only `invalid_token` (expired,
/// revoked) does; a 401 naming no error at all is read the same way, unless
/// its body names a refusal a new token would meet again (GitLab's tag rules,
/// `insufficient_scope`: the token service already gave what it could).
fn token_may_be_stale(challenge_error: &str, body_code: Option<&str>) -> bool {
    match challenge_error {
        "invalid_token" => true,
        "" => !body_code.is_some_and(|code| RULE_REFUSAL_CODES.contains(&code)),
        _ => false,
    }
}

/// Whether a registry error body says something it needs is unknown
/// (Distribution answers an index whose child is gone with
/// `MANIFEST_INVALID` and a detail naming the unknown manifest).
fn mentions_unknown(body: &[u8]) -> bool {
    String::from_utf8_lossy(body)
        .to_ascii_lowercase()
        .contains("unknown")
}

/// A tag in GitLab's `/gitlab/v1` tag list.
#[derive(Deserialize)]
struct V1Tag {
    name: String,
    #[serde(default)]
    digest: Option<String>,
    /// When the tag was first pushed (the database row's creation),
    /// not the image's build time.
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    /// When the tag was last re-pointed; `null` if never.
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
    /// `updated_at` or else `created_at`: the push time.
    #[serde(default)]
    published_at: Option<DateTime<Utc>>,
    #[serde(default)]
    media_type: Option<String>,
    /// The image's bytes, as the registry's database has them.
    #[serde(default)]
    size_bytes: Option<u64>,
    /// With `referrers=true`: the OCI 1.1 artifacts naming this
    /// tag's manifest as subject. Only counted: their digests cost
    /// nothing to keep but serve nothing yet.
    #[serde(default)]
    referrers: Option<Vec<serde::de::IgnoredAny>>,
}

impl V1Tag {
    /// The tag as the planner sees it; a name or digest the registry should
    /// never list fails the listing.
    fn into_tag(self, response: &HttpResponse) -> Result<Tag, HttpError> {
        let name = listed_name(response, self.name)?;
        let digest = match self.digest {
            Some(digest) => Some(validate_digest(response, "digest", &digest)?),
            None => None,
        };
        Ok(Tag {
            name,
            digest,
            // `/gitlab/v1` lists no build time: its `created_at` is
            // the tag's first push (gitlab-protocol.md §7 "Ages").
            created_at: None,
            // What GitLab's own cleanup ages by: `updated_at ||
            // created_at`, which `published_at` already is.
            pushed_at: self.published_at.or(self.updated_at).or(self.created_at),
            protected: false,
            gitlab_rule: None,
            media_type: self.media_type.filter(|m| !m.is_empty()),
            // Filled by the listing, which fetches each index once.
            children: Vec::new(),
            image: false,
            referrers: self
                .referrers
                .map_or(0, |r| u32::try_from(r.len()).unwrap_or(u32::MAX)),
            size_bytes: self.size_bytes,
            // From the pull ledger, not the registry (`--ledger`).
            last_pulled_at: None,
        })
    }
}

/// A digest the registry answered with (`what`: where it came from).
fn validate_digest(response: &HttpResponse, what: &str, digest: &str) -> Result<Digest, HttpError> {
    Digest::parse(digest).map_err(|_| {
        response.invalid(format!(
            "{what} {digest:?} is not a sha256 digest (64 lower-case hex digits)"
        ))
    })
}

/// A repository path, each segment encoded, slashes kept.
pub fn encode_path(path: &RepositoryPath) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_urls_stay_in_the_repository() {
        let http = Http::new(crate::wire::http::HttpOptions::default()).expect("client");
        let base = Url::parse("https://registry.example.com").expect("url");
        let registry = Registry::new(http, base.clone(), base, None);
        let path = RepositoryPath::parse("group/project").expect("path");
        assert_eq!(
            registry.manifest_url(&path, "v1.0").as_str(),
            "https://registry.example.com/v2/group/project/manifests/v1.0"
        );
    }

    /// A registry client for the emulator's registry, with its CI credentials.
    fn emulated(emulator: &gitlab_emulator::Emulator) -> Registry {
        let env: std::collections::HashMap<String, String> =
            emulator.ci_env().into_iter().collect();
        let url = |key: &str| Url::parse(&env[key]).expect("emulator url");
        Registry::new(
            Http::new(crate::wire::http::HttpOptions::default()).expect("client"),
            url("CLEANUP_REGISTRY_URL"),
            url("CI_SERVER_URL"),
            Some((
                env["CI_REGISTRY_USER"].clone(),
                Secret::new(env["CI_REGISTRY_PASSWORD"].clone()),
            )),
        )
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    fn digest(text: &str) -> Digest {
        Digest::parse(text).expect("digest")
    }

    #[test]
    fn manifests_are_read_by_kind() {
        use chrono::TimeZone;
        let emulator = gitlab_emulator::Emulator::start(gitlab_emulator::Config::default());
        let repository = emulator.repository("api");
        let path = RepositoryPath::parse(repository.path()).expect("path");
        let built = Utc
            .with_ymd_and_hms(2025, 3, 4, 5, 6, 7)
            .single()
            .expect("time");
        let amd64 = repository.push_platform_image(None, "linux", "amd64", Some(built));
        let arm64 = repository.push_platform_image(None, "linux", "arm64", None);
        let index = repository.push_index("2.0.0", &[&amd64, &arm64]);
        let list = repository.push_index_of(
            None,
            gitlab_emulator::DOCKER_MANIFEST_LIST,
            &[&amd64, &arm64],
        );
        let image = repository.push_image(Some("1.0.0"), Some(built));
        let sbom = repository.push_artifact(&image, "application/spdx+json");
        let registry = emulated(&emulator);
        let manifest = |reference: &str| {
            block_on(registry.manifest(&path, &Reference::parse(reference).expect("reference")))
                .expect("answers")
        };

        // An OCI index, by tag and by digest: its children, no config.
        for reference in ["2.0.0", index.as_str()] {
            let found = manifest(reference).expect("exists");
            assert_eq!(found.digest, digest(&index), "{reference}");
            assert_eq!(found.media_type, gitlab_emulator::OCI_INDEX);
            assert!(found.is_index());
            assert_eq!(found.children, [digest(&amd64), digest(&arm64)]);
            assert_eq!((found.config, found.subject), (None, None));
        }

        // A Docker manifest list.
        let found = manifest(&list).expect("exists");
        assert_eq!(found.digest, digest(&list));
        assert_eq!(found.media_type, gitlab_emulator::DOCKER_MANIFEST_LIST);
        assert!(found.is_index());
        assert_eq!(found.children, [digest(&amd64), digest(&arm64)]);

        // An image: its config, whose `created` is the build time.
        let found = manifest("1.0.0").expect("exists");
        assert_eq!(found.digest, digest(&image));
        assert!(!found.is_index());
        assert!(found.children.is_empty());
        assert_eq!(found.subject, None);
        let config = found.config.expect("an image has a config");
        assert_eq!(
            block_on(registry.config_created(&path, &config)).expect("answers"),
            Some(built)
        );
        // A config without `created`.
        let config = manifest(&arm64).and_then(|m| m.config).expect("config");
        assert_eq!(
            block_on(registry.config_created(&path, &config)).expect("answers"),
            None
        );

        // An OCI 1.1 artifact: its subject.
        let found = manifest(&sbom).expect("exists");
        assert_eq!(found.digest, digest(&sbom));
        assert!(!found.is_index());
        assert_eq!(found.subject, Some(digest(&image)));

        // Absent: `None`, for a manifest and a config blob alike.
        let nobody = Digest::of(b"nobody pushed this");
        assert_eq!(manifest(nobody.as_str()), None);
        assert_eq!(manifest("no-such-tag"), None);
        assert_eq!(
            block_on(registry.config_created(&path, &nobody)).expect("answers"),
            None
        );
    }

    #[test]
    fn only_stale_tokens_are_refreshed() {
        assert!(token_may_be_stale("invalid_token", None));
        assert!(token_may_be_stale("invalid_token", Some("UNAUTHORIZED")));
        assert!(token_may_be_stale("", Some("UNAUTHORIZED")));
        assert!(token_may_be_stale("", None));
        assert!(!token_may_be_stale("insufficient_scope", None));
        assert!(!token_may_be_stale(
            "some_other_error",
            Some("UNAUTHORIZED")
        ));
        for code in RULE_REFUSAL_CODES {
            assert!(!token_may_be_stale("", Some(code)), "{code}");
        }
    }

    #[test]
    fn odd_tag_names_are_encoded() {
        assert_eq!(encode_segment("v1.0_rc-1"), "v1.0_rc-1");
        assert_eq!(encode_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(encode_segment("sha256:abc"), "sha256:abc");
        assert_eq!(
            encode_path(&RepositoryPath::parse("group/project/api").expect("path")),
            "group/project/api"
        );
    }
}
