//! The registry API (OCI distribution, plus GitLab's `/gitlab/v1` listing),
//! authenticated with registry JWTs from [`RegistryAuth`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;
use url::Url;

use crate::auth::{parse_challenge, RegistryAuth};
use crate::config::join_path;
use crate::http::{display_url, Http, HttpError, HttpResponse};
use crate::inventory::Tag;
use crate::links::Pager;
use crate::secret::Secret;

/// Every manifest type: without the list types a multi-arch tag resolves to
/// one child's digest; without the OCI types an OCI image answers 404.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

pub const PULL: &[&str] = &["pull"];
pub const PULL_DELETE: &[&str] = &["pull", "delete"];
pub const PULL_PUSH_DELETE: &[&str] = &["pull", "push", "delete"];

/// Fresh tokens fetched for one call after `invalid_token` refusals.
const MAX_TOKEN_REFRESHES: u32 = 3;

const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// What a `DELETE /v2/<path>/manifests/<reference>` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryDelete {
    Deleted,
    NotFound,
    /// The registry cannot delete by tag (400 DIGEST_INVALID, 405 UNSUPPORTED).
    Unsupported(String),
    /// 403: a protected tag, or deletes refused for this user.
    Denied(String),
}

pub struct Registry {
    http: Http,
    base: Url,
    server_url: Url,
    credentials: Option<(String, Secret)>,
    auth: OnceCell<Option<Arc<RegistryAuth>>>,
    tag_delete: AtomicU8,
    gitlab_v1: AtomicU8,
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
            tag_delete: AtomicU8::new(UNKNOWN),
            gitlab_v1: AtomicU8::new(UNKNOWN),
        }
    }

    /// `false` once the registry has answered that it cannot delete by tag.
    pub fn may_delete_by_tag(&self) -> bool {
        self.tag_delete.load(Ordering::Relaxed) != NO
    }

    /// Discovers the token service from `GET /v2/`'s challenge, once.
    async fn auth(&self) -> anyhow::Result<Option<Arc<RegistryAuth>>> {
        self.auth
            .get_or_try_init(|| async {
                let url = join_path(&self.base, "v2/");
                let response = self.http.send(Method::GET, &url, |r| r).await?;
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

    /// Checks up front that the credentials give `actions` on `repository`.
    pub async fn check_access(&self, repository: &str, actions: &[&str]) -> anyhow::Result<()> {
        if let Some(auth) = self.auth().await? {
            auth.token(repository, actions).await?;
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
        repository: &str,
        actions: &[&str],
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> anyhow::Result<HttpResponse> {
        if url.origin() != self.base.origin() {
            anyhow::bail!(
                "the registry pointed us at {}, which is not the registry's origin; refusing to send the registry token there",
                display_url(url)
            );
        }
        let auth = self.auth().await?;
        let mut refreshes = 0;
        // A refresh resends the request: an attempt before it may have applied.
        let mut earlier_attempt_may_have_applied = false;
        loop {
            let token = match &auth {
                Some(auth) => Some(auth.token(repository, actions).await?),
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
                    if error != "insufficient_scope" {
                        tracing::debug!(
                            repository,
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

    /// `/v2/<path>/manifests/<reference>`, for a valid path and a valid tag
    /// name or sha256 digest only: a name such as `..` would climb out of
    /// the path in a URL (`url` normalises dot segments, even encoded ones).
    fn manifest_url(&self, repository: &str, reference: &str) -> anyhow::Result<Url> {
        if !is_valid_tag_name(reference) && !is_sha256_digest(reference) {
            anyhow::bail!(
                "refusing to use {reference:?} in a request: it is neither a valid tag name nor a sha256 digest"
            );
        }
        Ok(join_path(
            &self.base,
            &format!(
                "v2/{}/manifests/{}",
                checked_path(repository)?,
                encode_segment(reference)
            ),
        ))
    }

    /// The digest a tag (or digest) resolves to, or `None` when it does not exist.
    pub async fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> anyhow::Result<Option<String>> {
        let url = self.manifest_url(repository, reference)?;
        let response = self
            .call(Method::HEAD, &url, repository, PULL, |r| {
                r.header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match response.status.as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(response.unexpected().into()),
        }
        if let Some(digest) = response.header("docker-content-digest") {
            return Ok(Some(validate_digest(&response, digest)?));
        }
        // Some registries omit the header on HEAD: hash the manifest itself.
        let response = self
            .call(Method::GET, &url, repository, PULL, |r| {
                r.header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match response.status.as_u16() {
            200 => Ok(Some(sha256_digest(&response.body))),
            404 => Ok(None),
            _ => Err(response.unexpected().into()),
        }
    }

    /// `DELETE /v2/<path>/manifests/<reference>`: a tag (OCI 1.1 tag delete)
    /// or a digest (removes every tag pointing at it).
    pub async fn delete_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> anyhow::Result<RegistryDelete> {
        let url = self.manifest_url(repository, reference)?;
        let response = self
            .call(Method::DELETE, &url, repository, PULL_DELETE, |r| r)
            .await?;
        let is_tag = !reference.starts_with("sha256:");
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
            403 => RegistryDelete::Denied(crate::http::error_message(&response.body)),
            _ => return Err(response.unexpected().into()),
        };
        if is_tag {
            match outcome {
                RegistryDelete::Deleted => self.tag_delete.store(YES, Ordering::Relaxed),
                RegistryDelete::Unsupported(_) => self.tag_delete.store(NO, Ordering::Relaxed),
                _ => {}
            }
        }
        Ok(outcome)
    }

    /// Every tag name, through the distribution API (`/v2/<path>/tags/list`).
    pub async fn tag_names(&self, repository: &str) -> anyhow::Result<Vec<String>> {
        #[derive(Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = join_path(
            &self.base,
            &format!("v2/{}/tags/list", checked_path(repository)?),
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
            let page = page.tags.unwrap_or_default();
            check_listed_names(&response, page.iter())?;
            names.extend(page);
            match pager.next_from_link(&response, &url)? {
                Some(next) => url = next,
                None => return Ok(names),
            }
        }
    }

    /// GitLab's `/gitlab/v1` tag list: every tag with digest and date, 1000
    /// per call. `None` where the registry has no metadata database.
    pub async fn gitlab_v1_tags(&self, repository: &str) -> anyhow::Result<Option<Vec<Tag>>> {
        if self.gitlab_v1.load(Ordering::Relaxed) == NO {
            return Ok(None);
        }
        #[derive(Deserialize)]
        struct V1Tag {
            name: String,
            #[serde(default)]
            digest: Option<String>,
            #[serde(default)]
            created_at: Option<DateTime<Utc>>,
        }
        let mut url = join_path(
            &self.base,
            &format!(
                "gitlab/v1/repositories/{}/tags/list/",
                checked_path(repository)?
            ),
        );
        url.query_pairs_mut().append_pair("n", "1000");
        let mut tags = Vec::new();
        let mut pager = Pager::new(&url);
        loop {
            let response = self
                .call(Method::GET, &url, repository, PULL, |r| r)
                .await?;
            match response.status.as_u16() {
                200 => self.gitlab_v1.store(YES, Ordering::Relaxed),
                404 if response.registry_error_code().as_deref() == Some("NAME_UNKNOWN")
                    && self.gitlab_v1.load(Ordering::Relaxed) == YES =>
                {
                    return Ok(Some(tags));
                }
                404 => {
                    self.gitlab_v1.store(NO, Ordering::Relaxed);
                    return Ok(None);
                }
                _ => return Err(response.unexpected().into()),
            }
            let page: Vec<V1Tag> = response.json()?;
            check_listed_names(&response, page.iter().map(|tag| &tag.name))?;
            tags.extend(page.into_iter().map(|tag| Tag {
                name: tag.name,
                digest: tag.digest,
                created_at: tag.created_at,
                protected: false,
            }));
            match pager.next_from_link(&response, &url)? {
                Some(next) => url = next,
                None => return Ok(Some(tags)),
            }
        }
    }

    /// Points `tag` at a new manifest that nothing else uses, and returns its
    /// digest: deleting that digest then removes `tag` and only `tag`. This is
    /// how a tag is deleted on registries without tag delete when other tags
    /// share its manifest (regctl and GitLab itself do the same).
    pub async fn move_to_throwaway_manifest(
        &self,
        repository: &str,
        tag: &str,
    ) -> anyhow::Result<String> {
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
        let config_digest = sha256_digest(&config);
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
        let manifest_digest = sha256_digest(&manifest);
        let url = self.manifest_url(repository, tag)?;
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
            if digest != manifest_digest {
                return Err(response
                    .invalid(format!("the registry stored the throw-away manifest as {digest}, expected {manifest_digest}"))
                    .into());
            }
        }
        Ok(manifest_digest)
    }

    async fn upload_blob(&self, repository: &str, blob: &[u8], digest: &str) -> anyhow::Result<()> {
        let start = join_path(
            &self.base,
            &format!("v2/{}/blobs/uploads/", checked_path(repository)?),
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

/// A tag name as the OCI distribution spec allows it:
/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_valid_tag_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    first_ok
        && name.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A repository path: `/`-separated segments of letters, digits, `.`, `_`
/// and `-`, each starting and ending with a letter or digit (so never `.`,
/// `..` or empty).
pub fn is_valid_repository_path(path: &str) -> bool {
    path.len() <= 255
        && path.split('/').all(|segment| {
            let bytes = segment.as_bytes();
            matches!((bytes.first(), bytes.last()), (Some(a), Some(z)) if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

pub fn is_sha256_digest(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The encoded path, or an error for one that could address another repository.
fn checked_path(repository: &str) -> anyhow::Result<String> {
    if is_valid_repository_path(repository) {
        Ok(encode_path(repository))
    } else {
        anyhow::bail!(
            "refusing to use {repository:?} in a request: it is not a valid repository path"
        )
    }
}

/// Fails a listing that names a tag no registry accepts on push.
fn check_listed_names<'a>(
    response: &HttpResponse,
    mut names: impl Iterator<Item = &'a String>,
) -> Result<(), HttpError> {
    match names.find(|name| !is_valid_tag_name(name)) {
        Some(bad) => Err(response.invalid(format!(
            "the registry listed the tag {bad:?}, which is not a valid tag name; refusing to work from this listing"
        ))),
        None => Ok(()),
    }
}

fn validate_digest(response: &HttpResponse, digest: &str) -> Result<String, HttpError> {
    if is_sha256_digest(digest) {
        Ok(digest.to_string())
    } else {
        Err(response.invalid(format!(
            "Docker-Content-Digest {digest:?} is not a sha256 digest"
        )))
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut text = String::with_capacity(71);
    text.push_str("sha256:");
    for byte in hash {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// One path segment, percent-encoded (tag names from a server are not trusted).
pub fn encode_segment(segment: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b':');
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

/// A repository path, each segment encoded, slashes kept.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn only_registry_names_reach_a_url() {
        for good in ["v1.0.0", "latest", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(is_valid_tag_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".x",
            "-x",
            "a/b",
            "a b",
            "ü",
            "a?b",
            "%2e%2e",
            &"a".repeat(129),
        ] {
            assert!(!is_valid_tag_name(bad), "{bad:?}");
        }
        for good in [
            "group/project",
            "group/project/api",
            "g/p/tools/builder-2",
            "a.b/c_d",
        ] {
            assert!(is_valid_repository_path(good), "{good}");
        }
        for bad in [
            "",
            "group/project/../victim",
            "group//project",
            "group/project/",
            "/group",
            "group/./p",
            "g/p/.hidden",
            "g/p/a b",
            "g/p/%2e%2e",
        ] {
            assert!(!is_valid_repository_path(bad), "{bad:?}");
        }
        assert!(is_sha256_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_sha256_digest("sha256:abc"));
    }

    #[test]
    fn manifest_urls_never_climb_out_of_the_repository() {
        let http = Http::new(crate::http::HttpOptions::default()).expect("client");
        let base = Url::parse("https://registry.example.com").expect("url");
        let registry = Registry::new(http, base.clone(), base, None);
        assert_eq!(
            registry
                .manifest_url("group/project", "v1.0")
                .expect("valid")
                .as_str(),
            "https://registry.example.com/v2/group/project/manifests/v1.0"
        );
        for (path, reference) in [
            ("group/project", ".."),
            ("group/project", "."),
            ("group/project", ""),
            ("group/project/..", "x"),
            ("group/project", "sha256:xyz"),
        ] {
            assert!(
                registry.manifest_url(path, reference).is_err(),
                "{path} {reference}"
            );
        }
    }

    #[test]
    fn odd_tag_names_are_encoded() {
        assert_eq!(encode_segment("v1.0_rc-1"), "v1.0_rc-1");
        assert_eq!(encode_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(encode_segment("sha256:abc"), "sha256:abc");
        assert_eq!(encode_path("group/project/api"), "group/project/api");
    }
}
