//! GitLab in front of a third-party registry (`Config::upstream_registry`),
//! without the registry metadata database — for a real registry (Docker
//! Distribution 2.8 in `scripts/real-registry-test.sh`) whose token realm is
//! this emulator.
//!
//! What GitLab does there, and so what this does:
//! - Its container repository records are created when `/jwt/auth` issues a
//!   push token for a path (`rest::jwt_auth`); that is the repository list.
//! - The tag list is the registry's `GET /v2/<p>/tags/list`, sorted by name,
//!   paginated by offset; keyset pagination answers 405 (no database). A
//!   repository the registry does not know (404) has no tags.
//! - Tag details fetch the manifest (404 `Tag Not Found` when it does not
//!   resolve); `digest` is its `Docker-Content-Digest`; `created_at` is the image
//!   config's `created`, `revision` the config's digest, `total_size` the sum of
//!   the layers — all `null` for an index (no config) and `created_at` `null` for
//!   a config without `created` (a cosign signature's `{}`).
//! - The single-tag delete is GitLab's `ThirdParty::DeleteTagsService`: upload
//!   the blob `{"config": {}}`, put a schema2 manifest naming it (no layers) on
//!   the tag, then delete that manifest by digest (a 404 there counts as done).
//!   Every tag moved onto the dummy manifest goes with it, nothing else.
//!
//! Like GitLab, nothing serialises concurrent single-tag deletes of one
//! repository. On Distribution 2.8 they race: one request's digest delete can
//! land between another's manifest PUT and its tag link, so that tag is left
//! listed but pointing at a deleted manifest (it no longer resolves), and the
//! other request's digest delete answers 404, which GitLab counts as done —
//! both answer 200. A client deleting several tags of one repository at once
//! through this API can meet exactly that.
//!
//! The registry is called with a JWT the emulator signs for itself (`pull,push,
//! delete` on the one repository; GitLab asks for `*`). These routes bypass
//! `Config::tamper` and the in-memory registry; the group endpoint and the bulk
//! delete stay in-memory (they are not emulated against a real registry).

use chrono::{DateTime, Utc};
use hyper::Method;
use serde_json::{json, Value};

use crate::jwt::{Access, Claims};
use crate::model::{gitlab_time, sha256_digest};
use crate::rest::{
    authenticate, decode, message, offset_page, repository_json, tag_summary, truthy,
};
use crate::server::{empty, json_response, Req, Resp};
use crate::Shared;

const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONTAINER_IMAGE: &str = "application/vnd.docker.container.image.v1+json";

/// A REST call this mode answers from the upstream registry.
pub(crate) enum Route {
    Repositories {
        project: String,
    },
    Repository {
        rid: String,
    },
    Tags {
        project: String,
        rid: String,
    },
    Tag {
        project: String,
        rid: String,
        tag: String,
    },
    DeleteTag {
        project: String,
        rid: String,
        tag: String,
    },
}

pub(crate) fn route(req: &Req) -> Option<Route> {
    let rest = req.path.strip_prefix("/api/v4/")?;
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let get = req.method == Method::GET || req.method == Method::HEAD;
    let delete = req.method == Method::DELETE;
    let owned = |s: &str| s.to_string();
    Some(match segments.as_slice() {
        ["projects", id, "registry", "repositories"] if get => {
            Route::Repositories { project: owned(id) }
        }
        ["registry", "repositories", rid] if get => Route::Repository { rid: owned(rid) },
        ["projects", id, "registry", "repositories", rid, "tags"] if get => Route::Tags {
            project: owned(id),
            rid: owned(rid),
        },
        ["projects", id, "registry", "repositories", rid, "tags", tag] if get => Route::Tag {
            project: owned(id),
            rid: owned(rid),
            tag: decode(tag),
        },
        ["projects", id, "registry", "repositories", rid, "tags", tag] if delete => {
            Route::DeleteTag {
                project: owned(id),
                rid: owned(rid),
                tag: decode(tag),
            }
        }
        _ => return None,
    })
}

pub(crate) async fn handle(shared: &Shared, req: &Req, base: &str, route: Route) -> Resp {
    match answer(shared, req, base, route).await {
        Ok(response) | Err(response) => response,
    }
}

async fn answer(shared: &Shared, req: &Req, base: &str, route: Route) -> Result<Resp, Resp> {
    match route {
        Route::Repositories { project } => {
            let repositories: Vec<(Value, String)> = {
                let state = shared.lock();
                check_project(&state, req, &project)?;
                state
                    .repositories
                    .values()
                    .map(|repository| {
                        (
                            repository_json(&state, repository, req),
                            repository.path.clone(),
                        )
                    })
                    .collect()
            };
            let mut items = Vec::new();
            for (value, path) in repositories {
                items.push(with_tags(shared, req, base, value, &path).await?);
            }
            let state = shared.lock();
            Ok(offset_page(&state, req, items))
        }
        Route::Repository { rid } => {
            let (value, path) = {
                let state = shared.lock();
                authenticate(&state, req)?;
                let repository = rid
                    .parse::<u64>()
                    .ok()
                    .and_then(|rid| state.repositories.get(&rid))
                    .ok_or_else(|| message(404, "404 Repository Not Found"))?;
                (
                    repository_json(&state, repository, req),
                    repository.path.clone(),
                )
            };
            let value = with_tags(shared, req, base, value, &path).await?;
            Ok(json_response(200, &value))
        }
        Route::Tags { project, rid } => {
            let path = repository_path(shared, req, &project, &rid)?;
            if req.param("pagination").as_deref() == Some("keyset") {
                // Keyset pagination needs the registry's metadata database.
                return Ok(message(405, "405 Method Not Allowed"));
            }
            let upstream = Upstream::new(shared, base, &path);
            let tags = upstream.tags().await?;
            let state = shared.lock();
            let items = tags
                .iter()
                .map(|name| summary(&state, &path, name))
                .collect();
            Ok(offset_page(&state, req, items))
        }
        Route::Tag { project, rid, tag } => {
            let path = repository_path(shared, req, &project, &rid)?;
            let upstream = Upstream::new(shared, base, &path);
            let Some((digest, manifest)) = upstream.manifest(&tag).await? else {
                return Ok(message(404, "404 Tag Not Found"));
            };
            let config_digest = manifest["config"]["digest"].as_str();
            let created_at = match config_digest {
                Some(config_digest) => upstream
                    .blob_json(config_digest)
                    .await?
                    .and_then(|config| config["created"].as_str().map(str::to_string))
                    .and_then(|created| DateTime::parse_from_rfc3339(&created).ok())
                    .map(|created| gitlab_time(&created.with_timezone(&Utc))),
                None => None,
            };
            let revision = config_digest.map(|digest| digest.trim_start_matches("sha256:"));
            let total_size = manifest["layers"].as_array().map(|layers| {
                layers
                    .iter()
                    .filter_map(|layer| layer["size"].as_u64())
                    .sum::<u64>()
            });
            let mut value = {
                let state = shared.lock();
                summary(&state, &path, &tag)
            };
            value["revision"] = json!(revision);
            value["short_revision"] =
                json!(revision.map(|r| r.chars().take(9).collect::<String>()));
            value["digest"] = json!(digest);
            value["created_at"] = json!(created_at);
            value["total_size"] = json!(total_size);
            Ok(json_response(200, &value))
        }
        Route::DeleteTag { project, rid, tag } => {
            let path = repository_path(shared, req, &project, &rid)?;
            let upstream = Upstream::new(shared, base, &path);
            if upstream.manifest(&tag).await?.is_none() {
                return Ok(message(404, "404 Tag Not Found"));
            }
            match upstream.delete_tag_the_third_party_way(&tag).await {
                Ok(()) => Ok(empty(200)),
                Err(reason) => {
                    eprintln!("gitlab-emulator: deleting {path}:{tag} upstream: {reason}");
                    Ok(message(400, "400 Bad request - could not delete tags"))
                }
            }
        }
    }
}

fn check_project(state: &crate::model::State, req: &Req, project: &str) -> Result<(), Resp> {
    authenticate(state, req)?;
    let id = decode(project);
    if id == state.config.project_id.to_string() || id == state.config.project_path {
        Ok(())
    } else {
        Err(message(404, "404 Project Not Found"))
    }
}

/// The full path of a repository record of the project.
fn repository_path(shared: &Shared, req: &Req, project: &str, rid: &str) -> Result<String, Resp> {
    let state = shared.lock();
    check_project(&state, req, project)?;
    rid.parse::<u64>()
        .ok()
        .and_then(|rid| state.repositories.get(&rid))
        .map(|repository| repository.path.clone())
        .ok_or_else(|| message(404, "404 Repository Not Found"))
}

fn summary(state: &crate::model::State, path: &str, name: &str) -> Value {
    let repository = state.repository_by_path(path);
    match repository {
        Some(repository) => tag_summary(state, repository, name),
        None => json!({
            "name": name,
            "path": format!("{path}:{name}"),
            "location": format!("{}/{path}:{name}", state.registry_host),
        }),
    }
}

/// `tags_count` / `tags` of a repository JSON, from the registry.
async fn with_tags(
    shared: &Shared,
    req: &Req,
    base: &str,
    mut value: Value,
    path: &str,
) -> Result<Value, Resp> {
    let wants_count = truthy(req.param("tags_count"));
    let wants_tags = truthy(req.param("tags"));
    if !wants_count && !wants_tags {
        return Ok(value);
    }
    let tags = Upstream::new(shared, base, path).tags().await?;
    if wants_count {
        value["tags_count"] = json!(tags.len());
    }
    if wants_tags {
        let state = shared.lock();
        value["tags"] = tags
            .iter()
            .map(|name| summary(&state, path, name))
            .collect();
    }
    Ok(value)
}

/// The registry, as GitLab's own client for one repository.
struct Upstream<'a> {
    http: &'a reqwest::Client,
    base: String,
    path: String,
    token: String,
}

fn unavailable(what: &str, err: impl std::fmt::Display) -> Resp {
    eprintln!("gitlab-emulator: upstream registry: {what}: {err}");
    message(500, "500 Internal Server Error")
}

impl<'a> Upstream<'a> {
    fn new(shared: &'a Shared, base: &str, path: &str) -> Upstream<'a> {
        let http = shared.upstream_http.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                // As GitLab's own reads of the registry say (a pull ledger
                // ignores them: they are no user's pull).
                .user_agent("GitLab/17.6.0-emulator")
                .build()
                .unwrap_or_default()
        });
        let token = {
            let mut state = shared.lock();
            let now = Utc::now();
            let claims = Claims {
                iss: state.config.issuer.clone(),
                aud: "container_registry".to_string(),
                sub: "gitlab".to_string(),
                iat: now.timestamp(),
                nbf: now.timestamp() - 5,
                exp: now.timestamp() + 300,
                jti: sha256_digest(
                    format!(
                        "upstream-{}-{}",
                        now.timestamp_nanos_opt().unwrap_or(0),
                        state.jwts.len()
                    )
                    .as_bytes(),
                )[7..39]
                    .to_string(),
                access: vec![Access {
                    kind: "repository".to_string(),
                    name: path.to_string(),
                    actions: ["pull", "push", "delete"].map(str::to_string).to_vec(),
                    meta: None,
                }],
            };
            let token = state.keys.sign(&claims);
            state.jwts.push(token.clone());
            token
        };
        Upstream {
            http,
            base: base.trim_end_matches('/').to_string(),
            path: path.to_string(),
            token,
        }
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.path)
    }

    /// The tag names, sorted as GitLab sorts them; a repository the registry
    /// does not know, or an error answer, has none (GitLab's client reads a
    /// failed answer as no body); an unreachable registry is a 500.
    async fn tags(&self) -> Result<Vec<String>, Resp> {
        let response = self
            .http
            .get(self.url("tags/list"))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|err| unavailable("tags/list", err))?;
        let status = response.status();
        if !status.is_success() {
            if status != 404 {
                eprintln!(
                    "gitlab-emulator: upstream tags/list of {}: {status}",
                    self.path
                );
            }
            return Ok(Vec::new());
        }
        let body: Value = response
            .json()
            .await
            .map_err(|err| unavailable("tags/list body", err))?;
        let mut tags: Vec<String> = body["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|tag| tag.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        Ok(tags)
    }

    /// `(digest, manifest)` of a tag or digest; `None` when it does not resolve.
    async fn manifest(&self, reference: &str) -> Result<Option<(String, Value)>, Resp> {
        let response = self
            .http
            .get(self.url(&format!("manifests/{reference}")))
            .bearer_auth(&self.token)
            .header("Accept", ALL_MANIFEST_TYPES)
            .send()
            .await
            .map_err(|err| unavailable("manifest", err))?;
        if !response.status().is_success() {
            return Ok(None);
        }
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let body = response
            .bytes()
            .await
            .map_err(|err| unavailable("manifest body", err))?;
        let digest = digest.unwrap_or_else(|| sha256_digest(&body));
        Ok(serde_json::from_slice(&body)
            .ok()
            .map(|manifest| (digest, manifest)))
    }

    async fn blob_json(&self, digest: &str) -> Result<Option<Value>, Resp> {
        let response = self
            .http
            .get(self.url(&format!("blobs/{digest}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|err| unavailable("blob", err))?;
        if !response.status().is_success() {
            return Ok(None);
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| unavailable("blob body", err))?;
        Ok(serde_json::from_slice(&body).ok())
    }

    /// GitLab's `ThirdParty::DeleteTagsService` for one tag.
    async fn delete_tag_the_third_party_way(&self, tag: &str) -> Result<(), String> {
        // `generate_empty_manifest`: a config blob `{"config": {}}`, no layers.
        let config = serde_json::to_string_pretty(&json!({"config": {}}))
            .map_err(|err| err.to_string())?
            .into_bytes();
        let config_digest = self.upload_blob(&config).await?;
        let dummy = serde_json::to_string_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": CONTAINER_IMAGE, "size": config.len(), "digest": config_digest},
        }))
        .map_err(|err| err.to_string())?;
        // `put_tag`: the tag now names the dummy image, and only it.
        let response = self
            .http
            .put(self.url(&format!("manifests/{tag}")))
            .bearer_auth(&self.token)
            .header("Content-Type", DOCKER_MANIFEST)
            .body(dummy)
            .send()
            .await
            .map_err(|err| err.to_string())?;
        let status = response.status();
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let Some(digest) = digest.filter(|_| status.is_success()) else {
            return Err(format!(
                "PUT manifests/{tag}: {status} {}",
                response.text().await.unwrap_or_default()
            ));
        };
        // `delete_tag_by_digest`: every tag on the dummy goes; 404 is success.
        let response = self
            .http
            .delete(self.url(&format!("manifests/{digest}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|err| err.to_string())?;
        let status = response.status();
        if status.is_success() || status == 404 {
            Ok(())
        } else {
            Err(format!(
                "DELETE manifests/{digest}: {status} {}",
                response.text().await.unwrap_or_default()
            ))
        }
    }

    async fn upload_blob(&self, content: &[u8]) -> Result<String, String> {
        let digest = sha256_digest(content);
        let start = self
            .http
            .post(self.url("blobs/uploads/"))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|err| err.to_string())?;
        if !start.status().is_success() {
            return Err(format!("starting a blob upload: {}", start.status()));
        }
        let location = start
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .ok_or("a blob upload without Location")?
            .to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = self
            .http
            .put(format!("{location}{separator}digest={digest}"))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/octet-stream")
            .body(content.to_vec())
            .send()
            .await
            .map_err(|err| err.to_string())?;
        if !done.status().is_success() {
            return Err(format!("uploading {digest}: {}", done.status()));
        }
        Ok(digest)
    }
}
