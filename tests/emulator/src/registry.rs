//! The registry origin: OCI distribution (`/v2/…`) with GitLab's additions
//! (delete by tag, `/gitlab/v1/…/tags/list/`), behind token auth.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};

use crate::model::{
    gitlab_time, sha256_digest, PushError, State, Upload, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX,
    OCI_MANIFEST,
};
use crate::server::{empty, json_response, response, set_header, Req, Resp};

pub(crate) fn error(status: u16, code: &str, message: &str, detail: Value) -> Resp {
    let mut response = json_response(
        status,
        &json!({"errors": [{"code": code, "message": message, "detail": detail}]}),
    );
    set_header(
        &mut response,
        "docker-distribution-api-version",
        "registry/2.0",
    );
    response
}

#[derive(Clone, Copy, PartialEq)]
enum Need {
    Pull,
    Push,
    Delete,
}

impl Need {
    fn actions(self) -> &'static [&'static str] {
        match self {
            Need::Pull => &["pull"],
            Need::Push => &["pull", "push"],
            Need::Delete => &["delete"],
        }
    }
}

fn challenge(state: &State, scope: Option<&str>, error_code: Option<&str>) -> String {
    let realm = state
        .config
        .realm_override
        .clone()
        .unwrap_or_else(|| format!("{}/jwt/auth", state.gitlab_url));
    let mut value = format!("Bearer realm=\"{realm}\",service=\"container_registry\"");
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(error_code) = error_code {
        value.push_str(&format!(",error=\"{error_code}\""));
    }
    value
}

fn unauthorized(
    state: &State,
    scope: Option<&str>,
    error_code: Option<&str>,
    message: &str,
) -> Resp {
    let mut response = error(401, "UNAUTHORIZED", message, json!(null));
    set_header(
        &mut response,
        "www-authenticate",
        &challenge(state, scope, error_code),
    );
    response
}

/// `GET /v2/_catalog?n=&last=`: every repository path, by name, for a
/// token with `registry:catalog:*` (only an administrator gets one:
/// `Config::admin`); `Link: <…?last=…&n=…>; rel="next"` while more follow.
fn catalog(state: &State, req: &Req) -> Resp {
    const SCOPE: &str = "registry:catalog:*";
    let claims = match bearer(state, req, Some(SCOPE)) {
        Ok(claims) => claims,
        Err(response) => return response,
    };
    let granted = claims.access.iter().any(|entry| {
        entry.kind == "registry"
            && entry.name == "catalog"
            && entry.actions.iter().any(|a| a == "*")
    });
    if !granted {
        return unauthorized(
            state,
            Some(SCOPE),
            Some("insufficient_scope"),
            "insufficient scope for this request",
        );
    }
    let n = req
        .param("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let last = req.param("last").unwrap_or_default();
    let mut paths: Vec<&str> = state
        .repositories
        .values()
        .map(|repository| repository.path.as_str())
        .filter(|path| last.is_empty() || *path > last.as_str())
        .collect();
    paths.sort_unstable();
    let more = paths.len() > n;
    paths.truncate(n);
    let mut response = json_response(200, &json!({"repositories": paths}));
    if more {
        if let Some(last) = paths.last() {
            let last =
                percent_encoding::utf8_percent_encode(last, percent_encoding::NON_ALPHANUMERIC);
            set_header(
                &mut response,
                "link",
                &format!("</v2/_catalog?last={last}&n={n}>; rel=\"next\""),
            );
        }
    }
    response
}

/// Checks the bearer token; `Ok` carries its access claim.
fn bearer(
    state: &State,
    req: &Req,
    scope: Option<&str>,
) -> Result<std::sync::Arc<crate::jwt::Claims>, Resp> {
    let token = req.header("authorization").and_then(|value| {
        value
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
            .map(|_| value[7..].trim())
    });
    let Some(token) = token else {
        return Err(unauthorized(state, scope, None, "authentication required"));
    };
    let invalid = |why: &str| unauthorized(state, scope, Some("invalid_token"), why);
    let claims = state.keys.verify(token).map_err(|why| invalid(&why))?;
    let now = chrono::Utc::now().timestamp_millis();
    if claims.exp.saturating_mul(1000) <= now {
        return Err(invalid("token expired"));
    }
    if claims.nbf.saturating_mul(1000) > now {
        return Err(invalid("token not yet valid"));
    }
    if claims.iss != state.config.issuer {
        return Err(invalid("token issuer not trusted"));
    }
    if claims.aud != "container_registry" {
        return Err(invalid("token audience mismatch"));
    }
    Ok(claims)
}

/// The tag rules the registry enforces for `path` on this request: those
/// the presented token carries (or, for a token issued before the rules,
/// the project's current ones: `Config::tag_rules_in_jwt`).
fn token_rules(state: &State, req: &Req, path: &str) -> crate::jwt::TokenRules {
    if !state.config.tag_rules_in_jwt {
        return crate::jwt::TokenRules {
            delete_deny: state.config.tag_rules.delete_deny.clone(),
            immutable: state.config.tag_rules.immutable.clone(),
        };
    }
    bearer(state, req, None)
        .ok()
        .and_then(|claims| {
            claims
                .access
                .iter()
                .find(|entry| entry.kind == "repository" && entry.name == path)
                .map(|entry| entry.rules())
        })
        .unwrap_or_default()
}

/// GitLab's registry refusing a delete because of a tag rule: 401 with the
/// rule's code in the body. The challenge names no `error`: a new token
/// would carry the same rules.
fn rule_refusal(state: &State, path: &str, code: &str, message: &str, detail: Value) -> Resp {
    let mut response = error(401, code, message, detail);
    set_header(
        &mut response,
        "www-authenticate",
        &challenge(state, Some(&format!("repository:{path}:delete")), None),
    );
    response
}

fn authorize(state: &State, req: &Req, path: &str, need: Need) -> Result<(), Resp> {
    let scope = format!("repository:{path}:{}", need.actions().join(","));
    let claims = bearer(state, req, Some(&scope))?;
    let granted = need.actions().iter().all(|action| {
        claims.access.iter().any(|entry| {
            entry.kind == "repository"
                && entry.name == path
                && entry.actions.iter().any(|a| a == action)
        })
    });
    if granted {
        Ok(())
    } else {
        Err(unauthorized(
            state,
            Some(&scope),
            Some("insufficient_scope"),
            "insufficient scope for this request",
        ))
    }
}

fn name_unknown(path: &str) -> Resp {
    error(
        404,
        "NAME_UNKNOWN",
        "repository name not known to registry",
        json!({"name": path}),
    )
}

fn manifest_unknown(reference: &str) -> Resp {
    error(
        404,
        "MANIFEST_UNKNOWN",
        "manifest unknown",
        json!({"Tag": reference}),
    )
}

pub(crate) fn handle(state: &mut State, req: &Req) -> Resp {
    let path = req.path.as_str();
    if path == "/v2/" || path == "/v2" {
        let mut response = match bearer(state, req, None) {
            Ok(_) => {
                let mut response = json_response(200, &json!({}));
                set_header(
                    &mut response,
                    "docker-distribution-api-version",
                    "registry/2.0",
                );
                response
            }
            // The challenge, before GitLab's base handler
            // (`distributionAPIBase`) could name anything.
            Err(response) => return response,
        };
        // GitLab's registry names what it can do — to an authorized request
        // only: its dispatcher answers an anonymous one with the challenge.
        if state.config.capability_headers && state.config.tag_delete {
            set_header(
                &mut response,
                "gitlab-container-registry-features",
                "tag_delete",
            );
            set_header(
                &mut response,
                "gitlab-container-registry-database-enabled",
                if state.config.gitlab_v1 {
                    "true"
                } else {
                    "false"
                },
            );
        }
        return response;
    }
    if let Some(rest) = path.strip_prefix("/gitlab/v1/repositories/") {
        if !state.config.gitlab_v1 {
            return response(404, Some("text/plain"), "404 page not found\n");
        }
        return match rest.strip_suffix("/tags/list/") {
            Some(name) if req.method == Method::GET => gitlab_v1_tags(state, req, name),
            _ => response(404, Some("text/plain"), "404 page not found\n"),
        };
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return response(404, Some("text/plain"), "404 page not found\n");
    };
    if rest == "_catalog" {
        return catalog(state, req);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return tags_list(state, req, name);
    }
    if let Some((name, upload)) = rest.rsplit_once("/blobs/uploads") {
        return blob_upload(state, req, name, upload.trim_start_matches('/'));
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return manifests(state, req, name, reference);
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        return blobs(state, req, name, digest);
    }
    response(404, Some("text/plain"), "404 page not found\n")
}

fn tags_list(state: &mut State, req: &Req, name: &str) -> Resp {
    if let Err(response) = authorize(state, req, name, Need::Pull) {
        return response;
    }
    let Some(repository) = state.repository_by_path(name) else {
        return name_unknown(name);
    };
    let last = req.param("last");
    let n = req.param("n").and_then(|n| n.parse::<usize>().ok());
    let after: Vec<&String> = repository
        .tags
        .keys()
        .filter(|tag| {
            last.as_ref()
                .is_none_or(|last| tag.as_str() > last.as_str())
        })
        .collect();
    let page: Vec<&String> = match n {
        Some(n) => after.iter().take(n).copied().collect(),
        None => after.clone(),
    };
    let mut response = json_response(200, &json!({"name": name, "tags": page}));
    if let (Some(n), Some(last_tag)) = (n, page.last()) {
        if after.len() > n {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("last", last_tag)
                .append_pair("n", &n.to_string())
                .finish();
            set_header(
                &mut response,
                "link",
                &format!("</v2/{name}/tags/list?{query}>; rel=\"next\""),
            );
        }
    }
    response
}

/// Which of the four manifest types the client accepts.
fn accepts(req: &Req, media_type: &str) -> bool {
    req.header_all("accept")
        .split(',')
        .map(|item| item.split(';').next().unwrap_or("").trim())
        .any(|item| item.eq_ignore_ascii_case(media_type))
}

fn manifests(state: &mut State, req: &Req, name: &str, reference: &str) -> Resp {
    let by_digest = reference.contains(':');
    match req.method {
        Method::GET | Method::HEAD => {
            if let Err(response) = authorize(state, req, name, Need::Pull) {
                return response;
            }
            let Some(repository) = state.repository_by_path(name) else {
                return name_unknown(name);
            };
            let digest = if by_digest {
                reference.to_string()
            } else {
                match repository.tags.get(reference) {
                    Some(tag) => tag.digest.clone(),
                    None => return manifest_unknown(reference),
                }
            };
            let Some(mut manifest) = repository.manifests.get(&digest) else {
                return manifest_unknown(reference);
            };
            let mut digest = digest;
            // Distribution: a manifest list fetched by tag by a client that does
            // not take lists is replaced by its linux/amd64 image.
            if manifest.media_type == DOCKER_LIST && !by_digest && !accepts(req, DOCKER_LIST) {
                let child = manifest
                    .children
                    .iter()
                    .find(|(_, os, arch)| os == "linux" && arch == "amd64")
                    .and_then(|(child, _, _)| {
                        repository.manifests.get(child).map(|m| (child.clone(), m))
                    });
                match child {
                    Some((child_digest, child)) => {
                        digest = child_digest;
                        manifest = child;
                    }
                    None => return manifest_unknown(reference),
                }
            }
            if manifest.media_type == OCI_MANIFEST && !accepts(req, OCI_MANIFEST) {
                return error(
                    404,
                    "MANIFEST_UNKNOWN",
                    "OCI manifest found, but accept header does not support OCI manifests",
                    json!(null),
                );
            }
            if manifest.media_type == OCI_INDEX && !accepts(req, OCI_INDEX) {
                return error(
                    404,
                    "MANIFEST_UNKNOWN",
                    "OCI index found, but accept header does not support OCI indexes",
                    json!(null),
                );
            }
            let mut response = response(200, Some(&manifest.media_type), manifest.body.clone());
            set_header(&mut response, "docker-content-digest", &digest);
            set_header(&mut response, "etag", &format!("\"{digest}\""));
            set_header(
                &mut response,
                "docker-distribution-api-version",
                "registry/2.0",
            );
            response
        }
        Method::PUT => {
            if let Err(response) = authorize(state, req, name, Need::Push) {
                return response;
            }
            if !state.in_known_project(name, true) {
                return name_unknown(name);
            }
            if !by_digest {
                let rules = token_rules(state, req, name);
                let exists = state
                    .repository_id(name)
                    .and_then(|id| state.repository_mut(id))
                    .is_some_and(|repository| repository.tags.contains_key(reference));
                if exists && crate::rule_matches(&rules.immutable, reference) {
                    return rule_refusal(
                        state,
                        name,
                        "IMMUTABLE_TAG",
                        "the tag is immutable",
                        json!({"tag": reference}),
                    );
                }
            }
            let id = state.ensure_repository(name, None);
            match state.push_manifest(id, reference, req.header("content-type"), req.body.clone()) {
                Ok(digest) => {
                    let mut response = empty(201);
                    set_header(&mut response, "docker-content-digest", &digest);
                    set_header(
                        &mut response,
                        "location",
                        &format!("/v2/{name}/manifests/{digest}"),
                    );
                    response
                }
                Err(PushError::BlobUnknown(digest)) => error(
                    400,
                    "MANIFEST_BLOB_UNKNOWN",
                    "blob unknown to registry",
                    json!({"digest": digest}),
                ),
                Err(PushError::DigestMismatch(digest)) => error(
                    400,
                    "DIGEST_INVALID",
                    "provided digest did not match uploaded content",
                    json!({"digest": digest}),
                ),
                Err(PushError::Protected(tag)) => error(
                    403,
                    "DENIED",
                    "requested access to the resource is denied",
                    json!({"tag": tag, "reason": "protected tag"}),
                ),
                Err(err @ PushError::Invalid(_)) => error(
                    400,
                    "MANIFEST_INVALID",
                    "manifest invalid",
                    json!(err.to_string()),
                ),
            }
        }
        Method::DELETE => {
            if let Err(response) = authorize(state, req, name, Need::Delete) {
                return response;
            }
            let tag_delete = state.config.tag_delete;
            let rules = token_rules(state, req, name);
            let Some(id) = state.repository_id(name) else {
                return name_unknown(name);
            };
            if by_digest && !(rules.delete_deny.is_empty() && rules.immutable.is_empty()) {
                // Any digest delete, matching or not, while the token
                // carries a rule: digest deletes would bypass them.
                return rule_refusal(
                    state,
                    name,
                    "PROTECTED_MANIFEST",
                    "manifest delete is not allowed while tag protection or immutability rules exist; delete by tag",
                    json!({"digest": reference}),
                );
            }
            if !by_digest && tag_delete {
                if crate::rule_matches(&rules.delete_deny, reference) {
                    return rule_refusal(
                        state,
                        name,
                        "PROTECTED_TAG",
                        "the tag is protected against deletion",
                        json!({"tag": reference}),
                    );
                }
                if crate::rule_matches(&rules.immutable, reference) {
                    return rule_refusal(
                        state,
                        name,
                        "IMMUTABLE_TAG",
                        "the tag is immutable",
                        json!({"tag": reference}),
                    );
                }
            }
            let repository = state.repository_mut(id).expect("just found");
            if !by_digest {
                if !tag_delete {
                    return error(
                        400,
                        "DIGEST_INVALID",
                        "provided digest did not match uploaded content",
                        json!(null),
                    );
                }
                return match repository.tags.get(reference) {
                    None => manifest_unknown(reference),
                    // As GitLab's registry refuses a tag its rules protect
                    // when the token did not carry the rule (created since).
                    Some(tag) if tag.protected => rule_refusal(
                        state,
                        name,
                        "PROTECTED_TAG",
                        "the tag is protected against deletion",
                        json!({"tag": reference}),
                    ),
                    Some(_) => {
                        repository.tags.remove(reference);
                        empty(202)
                    }
                };
            }
            if !repository.manifests.contains_key(reference) {
                return manifest_unknown(reference);
            }
            if repository
                .tags
                .values()
                .any(|tag| tag.digest == reference && tag.protected)
            {
                // GitLab's registry refuses every digest delete where a
                // tag rule exists.
                return rule_refusal(
                    state,
                    name,
                    "PROTECTED_MANIFEST",
                    "manifest delete is not allowed while tag protection or immutability rules exist; delete by tag",
                    json!({"digest": reference}),
                );
            }
            // GitLab's metadata database refuses to delete a manifest an index
            // still lists, and takes the subject's untagged referrers with it;
            // Distribution deletes it and leaves the index pointing at nothing.
            let database = state.config.gitlab_v1;
            let repository = state.repository_mut(id).expect("just found");
            if database {
                let indexes = repository.indexes_listing(reference);
                if !indexes.is_empty() {
                    return error(
                        409,
                        "MANIFEST_REFERENCED",
                        "manifest referenced by a manifest list",
                        json!({"digest": reference, "referenced_by": indexes}),
                    );
                }
            }
            repository.remove_manifest(reference, database);
            empty(202)
        }
        _ => error(
            405,
            "UNSUPPORTED",
            "The operation is unsupported.",
            json!(null),
        ),
    }
}

fn blobs(state: &mut State, req: &Req, name: &str, digest: &str) -> Resp {
    match req.method {
        Method::GET | Method::HEAD => {
            if let Err(response) = authorize(state, req, name, Need::Pull) {
                return response;
            }
            let Some(repository) = state.repository_by_path(name) else {
                return name_unknown(name);
            };
            match repository.blobs.get(digest) {
                Some(blob) => {
                    let mut response =
                        response(200, Some("application/octet-stream"), blob.clone());
                    set_header(&mut response, "docker-content-digest", digest);
                    response
                }
                None => error(
                    404,
                    "BLOB_UNKNOWN",
                    "blob unknown to registry",
                    json!({"digest": digest}),
                ),
            }
        }
        Method::DELETE => {
            if let Err(response) = authorize(state, req, name, Need::Delete) {
                return response;
            }
            error(
                405,
                "UNSUPPORTED",
                "The operation is unsupported.",
                json!(null),
            )
        }
        _ => error(
            405,
            "UNSUPPORTED",
            "The operation is unsupported.",
            json!(null),
        ),
    }
}

fn upload_location(req: &Req, name: &str, id: &str) -> String {
    let host = req.header("host").unwrap_or("localhost");
    format!("http://{host}/v2/{name}/blobs/uploads/{id}")
}

fn blob_created(name: &str, digest: &str) -> Resp {
    let mut response = empty(201);
    set_header(
        &mut response,
        "location",
        &format!("/v2/{name}/blobs/{digest}"),
    );
    set_header(&mut response, "docker-content-digest", digest);
    response
}

fn digest_invalid(detail: &str) -> Resp {
    error(
        400,
        "DIGEST_INVALID",
        "provided digest did not match uploaded content",
        json!(detail),
    )
}

fn blob_upload(state: &mut State, req: &Req, name: &str, upload_id: &str) -> Resp {
    if let Err(response) = authorize(state, req, name, Need::Push) {
        return response;
    }
    if !state.in_known_project(name, true) {
        return name_unknown(name);
    }
    let id = state.ensure_repository(name, None);
    match (&req.method, upload_id) {
        (&Method::POST, "") => {
            if let (Some(mount), Some(from)) = (req.param("mount"), req.param("from")) {
                let blob = state
                    .repository_by_path(&from)
                    .and_then(|repository| repository.blobs.get(&mount).cloned());
                if let Some(blob) = blob {
                    state.put_blob(id, blob);
                    return blob_created(name, &mount);
                }
            }
            if let Some(digest) = req.param("digest") {
                if sha256_digest(&req.body) != digest {
                    return digest_invalid(&digest);
                }
                state.put_blob(id, req.body.clone());
                return blob_created(name, &digest);
            }
            let upload = sha256_digest(
                format!("upload-{}-{}", state.uploads.len(), chrono::Utc::now()).as_bytes(),
            );
            let upload = URL_SAFE_NO_PAD.encode(&upload.as_bytes()[7..31]);
            state.uploads.insert(
                upload.clone(),
                Upload {
                    repository_id: id,
                    data: Vec::new(),
                },
            );
            let mut response = empty(202);
            set_header(
                &mut response,
                "location",
                &upload_location(req, name, &upload),
            );
            set_header(&mut response, "docker-upload-uuid", &upload);
            set_header(&mut response, "range", "0-0");
            response
        }
        (method, upload) if !upload.is_empty() => {
            let Some(pending) = state
                .uploads
                .get_mut(upload)
                .filter(|u| u.repository_id == id)
            else {
                return error(
                    404,
                    "BLOB_UPLOAD_UNKNOWN",
                    "blob upload unknown to registry",
                    json!(null),
                );
            };
            match *method {
                Method::PATCH => {
                    pending.data.extend_from_slice(&req.body);
                    let end = pending.data.len().saturating_sub(1);
                    let mut response = empty(202);
                    set_header(
                        &mut response,
                        "location",
                        &upload_location(req, name, upload),
                    );
                    set_header(&mut response, "docker-upload-uuid", upload);
                    set_header(&mut response, "range", &format!("0-{end}"));
                    response
                }
                Method::GET => {
                    let end = pending.data.len().saturating_sub(1);
                    let mut response = empty(204);
                    set_header(&mut response, "docker-upload-uuid", upload);
                    set_header(&mut response, "range", &format!("0-{end}"));
                    response
                }
                Method::PUT => {
                    pending.data.extend_from_slice(&req.body);
                    let Some(digest) = req.param("digest") else {
                        return digest_invalid("digest parameter missing");
                    };
                    if sha256_digest(&pending.data) != digest {
                        state.uploads.remove(upload);
                        return digest_invalid(&digest);
                    }
                    let data = Bytes::from(std::mem::take(&mut pending.data));
                    state.uploads.remove(upload);
                    state.put_blob(id, data);
                    blob_created(name, &digest)
                }
                Method::DELETE => {
                    state.uploads.remove(upload);
                    empty(204)
                }
                _ => error(
                    405,
                    "UNSUPPORTED",
                    "The operation is unsupported.",
                    json!(null),
                ),
            }
        }
        _ => error(
            405,
            "UNSUPPORTED",
            "The operation is unsupported.",
            json!(null),
        ),
    }
}

/// `GET /gitlab/v1/repositories/<path>/tags/list/`: GitLab's metadata-database
/// listing, with dates and digests.
fn gitlab_v1_tags(state: &mut State, req: &Req, name: &str) -> Resp {
    if let Err(response) = authorize(state, req, name, Need::Pull) {
        return response;
    }
    let Some(repository) = state.repository_by_path(name) else {
        return name_unknown(name);
    };
    let n = match req.param("n") {
        None => 100,
        Some(value) => match value.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return error(
                    400,
                    "PAGINATION_NUMBER_INVALID",
                    "invalid number of results requested",
                    json!({"n": value, "min": 1, "max": 1000}),
                )
            }
        },
    };
    let sort = req.param("sort").unwrap_or_else(|| "name".to_string());
    let (by_published, descending) = match sort.as_str() {
        "name" => (false, false),
        "-name" => (false, true),
        "published_at" => (true, false),
        "-published_at" => (true, true),
        _ => {
            return error(
                400,
                "INVALID_QUERY_PARAMETER_VALUE",
                "the value of a query parameter is invalid",
                json!({"parameter": "sort", "value": sort}),
            )
        }
    };
    let last = req.param("last");
    let before = req.param("before");
    if last.is_some() && before.is_some() {
        return error(
            400,
            "INVALID_QUERY_PARAMETER_TYPE",
            "the type of a query parameter is invalid",
            json!({"parameters": ["last", "before"]}),
        );
    }
    let filter = req.param("name").unwrap_or_default();
    let name_exact = req.param("name_exact");
    let with_referrers = req.param("referrers").as_deref() == Some("true");
    let referrer_types: Vec<String> = req
        .param("referrer_type")
        .map(|types| {
            types
                .split(',')
                .map(str::trim)
                .filter(|kind| !kind.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    // Sort key: (published_at, name) or name; a marker is that key.
    let key_of = |tag_name: &str, published: &chrono::DateTime<chrono::Utc>| -> String {
        if by_published {
            format!("{}|{tag_name}", published.format("%Y-%m-%dT%H:%M:%S%.9fZ"))
        } else {
            tag_name.to_string()
        }
    };
    let marker_key = |marker: &str| -> String {
        if !by_published {
            return marker.to_string();
        }
        // Markers are opaque base64 of the key; a bare tag name is accepted too.
        URL_SAFE_NO_PAD
            .decode(marker)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|key| key.contains('|'))
            .or_else(|| {
                repository
                    .tags
                    .get(marker)
                    .map(|tag| key_of(marker, &tag.published_at))
            })
            .unwrap_or_else(|| marker.to_string())
    };
    let mut entries: Vec<(String, &String)> = repository
        .tags
        .iter()
        .filter(|(tag_name, _)| tag_name.contains(&filter))
        .filter(|(tag_name, _)| name_exact.as_ref().is_none_or(|exact| *tag_name == exact))
        .map(|(tag_name, tag)| (key_of(tag_name, &tag.published_at), tag_name))
        .collect();
    entries.sort();
    if descending {
        entries.reverse();
    }
    let beyond = |key: &str, marker: &str| {
        if descending {
            key < marker
        } else {
            key > marker
        }
    };
    let page: Vec<&(String, &String)>;
    let has_next;
    if let Some(before) = &before {
        let marker = marker_key(before);
        let earlier: Vec<&(String, &String)> = entries
            .iter()
            .filter(|(key, _)| beyond(&marker, key))
            .collect();
        let skip = earlier.len().saturating_sub(n);
        page = earlier[skip..].to_vec();
        has_next = true;
    } else {
        let marker = last.as_deref().map(marker_key);
        let later: Vec<&(String, &String)> = entries
            .iter()
            .filter(|(key, _)| marker.as_ref().is_none_or(|marker| beyond(key, marker)))
            .collect();
        has_next = later.len() > n;
        page = later.into_iter().take(n).collect();
    }
    let body: Vec<Value> = page
        .iter()
        .map(|(_, tag_name)| {
            let tag = &repository.tags[*tag_name];
            let manifest = repository.manifests.get(&tag.digest);
            let mut entry = json!({
                "name": tag_name,
                "digest": tag.digest,
                "config_digest": manifest.and_then(|m| m.config_digest.clone()),
                "media_type": manifest.map_or(DOCKER_MANIFEST, |m| m.media_type.as_str()),
                "size_bytes": manifest.map_or(0, |m| m.total_size.unwrap_or(m.body.len() as u64)),
                // The database row's times: first push, last re-push
                // (null if none), and `updated_at || created_at`. The
                // build time is not listed here.
                "created_at": gitlab_time(&state.shown_time(tag, &tag.first_pushed_at)),
                "updated_at": (tag.published_at != tag.first_pushed_at)
                    .then(|| gitlab_time(&state.shown_time(tag, &tag.published_at))),
                "published_at": gitlab_time(&state.shown_time(tag, &tag.published_at)),
            });
            if with_referrers {
                entry["referrers"] = json!(repository.referrers_of(&tag.digest, &referrer_types));
            }
            entry
        })
        .collect();
    let mut response = json_response(200, &Value::Array(body));
    if let (true, Some((last_key, last_name))) = (has_next && !page.is_empty(), page.last()) {
        let marker = if by_published {
            URL_SAFE_NO_PAD.encode(last_key.as_bytes())
        } else {
            last_name.to_string()
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("last", &marker)
            .append_pair("n", &n.to_string());
        if sort != "name" {
            query.append_pair("sort", &sort);
        }
        if !filter.is_empty() {
            query.append_pair("name", &filter);
        }
        if with_referrers {
            query.append_pair("referrers", "true");
            if !referrer_types.is_empty() {
                query.append_pair("referrer_type", &referrer_types.join(","));
            }
        }
        set_header(
            &mut response,
            "link",
            &format!(
                "</gitlab/v1/repositories/{name}/tags/list/?{}>; rel=\"next\"",
                query.finish()
            ),
        );
    }
    response
}
