//! The GitLab origin: `/api/v4` container registry endpoints, `/jwt/auth`, and
//! the emulator's own `/_emulator/*` control endpoints.

use std::sync::atomic::Ordering;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use hyper::Method;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use crate::bulk;
use crate::jwt::{Access, Claims};
use crate::model::{gitlab_time, sha256_digest, GitRefs, Repository, State};
use crate::server::{empty, json_response, response, set_header, Req, Resp};
use crate::{BulkCall, Shared};

/// GitLab does not count beyond this: above it the totals are left out.
const COUNT_LIMIT: usize = 10_000;

pub(crate) fn message(status: u16, text: &str) -> Resp {
    json_response(status, &json!({"message": text}))
}

fn unauthorized() -> Resp {
    message(401, "401 Unauthorized")
}

pub(crate) fn decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

pub(crate) fn truthy(value: Option<String>) -> bool {
    matches!(value.as_deref(), Some("true" | "1" | "yes" | "t"))
}

/// Checks the REST credentials (a job token, or an access token as
/// `PRIVATE-TOKEN` or bearer); `Err` is the 401 to send.
pub(crate) fn authenticate(state: &State, req: &Req) -> Result<(), Resp> {
    if let Some(token) = req.header("job-token") {
        return if token == state.config.job_token {
            Ok(())
        } else {
            Err(unauthorized())
        };
    }
    if let Some(token) = req.header("private-token") {
        return if token == state.config.access_token {
            Ok(())
        } else {
            Err(unauthorized())
        };
    }
    if let Some(value) = req.header("authorization") {
        // GitLab also takes a personal access token as an OAuth-style bearer.
        let token = value.strip_prefix("Bearer ").unwrap_or("");
        return if !token.is_empty() && token == state.config.access_token {
            Ok(())
        } else {
            Err(unauthorized())
        };
    }
    Err(unauthorized())
}

pub(crate) fn handle(state: &mut State, req: &Req) -> Resp {
    if req.path == "/jwt/auth" {
        return if req.method == Method::GET || req.method == Method::HEAD {
            jwt_auth(state, req)
        } else {
            json_response(405, &json!({"error": "405 Not Allowed"}))
        };
    }
    let Some(rest) = req.path.strip_prefix("/api/v4/") else {
        return response(404, Some("text/plain"), "Not Found\n");
    };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let method = &req.method;
    let get = *method == Method::GET || *method == Method::HEAD;
    match segments.as_slice() {
        ["projects", id, "registry", "repositories"] if get => {
            with_project_id(state, req, id, |state, project| {
                list_repositories(state, req, project)
            })
        }
        ["projects", id, "registry", "repositories", rid] if *method == Method::DELETE => {
            with_repository(state, req, id, rid, |state, rid| {
                state.repositories.remove(&rid);
                empty(202)
            })
        }
        ["projects", id, "registry", "repositories", rid, "tags"] if get => {
            with_repository(state, req, id, rid, |state, rid| list_tags(state, req, rid))
        }
        ["projects", id, "registry", "repositories", rid, "tags"] if *method == Method::DELETE => {
            with_repository(state, req, id, rid, |state, rid| {
                bulk_delete(state, req, rid)
            })
        }
        ["projects", id, "registry", "repositories", rid, "tags", tag] if get => {
            let tag = decode(tag);
            with_repository(state, req, id, rid, |state, rid| {
                tag_details(state, rid, &tag)
            })
        }
        ["projects", id, "registry", "repositories", rid, "tags", tag]
            if *method == Method::DELETE =>
        {
            let tag = decode(tag);
            with_repository(state, req, id, rid, |state, rid| {
                delete_tag(state, rid, &tag)
            })
        }
        ["projects", id] if get => with_project(state, req, id, |state| project(state, req)),
        ["personal_access_tokens", "self"] if get => {
            if let Err(response) = authenticate(state, req) {
                return response;
            }
            // Only an access token describes itself; GitLab answers the job
            // token 401 here.
            if req.header("job-token").is_some() {
                return message(401, "401 Unauthorized");
            }
            json_response(
                200,
                &json!({
                    "id": 1,
                    "name": "emulated access token",
                    "revoked": false,
                    "active": true,
                    "scopes": state.config.access_token_scopes,
                    "expires_at": state.config.access_token_expires_at,
                }),
            )
        }
        ["projects", id, "registry", "protection", "tag", "rules"] if get => {
            with_project(state, req, id, |state| tag_protection_rules(state, req))
        }
        ["groups", id, "registry", "repositories"] if get => group_repositories(state, req, id),
        ["projects", id, "repository", "branches"] if get => {
            with_refs(state, req, id, |state, git, _| {
                list_branches(state, req, git)
            })
        }
        ["projects", id, "repository", "tags"] if get => {
            with_refs(state, req, id, |state, git, _| {
                list_git_tags(state, req, git)
            })
        }
        ["projects", id, "merge_requests"] if get => {
            with_refs(state, req, id, |state, git, project| {
                list_merge_requests(state, req, git, project)
            })
        }
        ["projects", id, "merge_requests", iid] if get => {
            let iid = iid.parse::<u64>().ok();
            with_refs(state, req, id, |_, git, project| {
                match iid.and_then(|iid| Some((iid, git.merge_requests.get(&iid)?))) {
                    Some((iid, mr)) => json_response(200, &merge_request_json(project, iid, mr)),
                    None => message(404, "404 Not found"),
                }
            })
        }
        ["projects", id, "environments"] if get => crate::in_use::environments(state, req, id),
        ["projects", id, "deployments"] if get => crate::in_use::deployments(state, req, id),
        ["projects", id, "pipelines"] if get => crate::in_use::pipelines(state, req, id),
        ["registry", "repositories", rid] if get => {
            if let Err(response) = authenticate(state, req) {
                return response;
            }
            match rid
                .parse::<u64>()
                .ok()
                .and_then(|rid| state.repositories.get(&rid))
            {
                Some(repository) => json_response(200, &repository_json(state, repository, req)),
                None => message(404, "404 Repository Not Found"),
            }
        }
        ["projects", _, "registry", "repositories", ..]
        | ["groups", _, "registry", "repositories"]
        | ["registry", "repositories", _] => {
            json_response(405, &json!({"error": "405 Not Allowed"}))
        }
        _ => json_response(404, &json!({"error": "404 Not Found"})),
    }
}

/// `GET /projects/:id`, the registry part: refused to the job token (403),
/// which GitLab does not accept on this endpoint (gitlab-protocol.md §7).
fn project(state: &State, req: &Req) -> Resp {
    if req.header("job-token").is_some() {
        return message(403, "403 Forbidden");
    }
    let config = &state.config;
    let name = config
        .project_path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    json_response(
        200,
        &json!({
            "id": config.project_id,
            "name": name,
            "path": name,
            "path_with_namespace": config.project_path,
            "container_registry_enabled": config.container_registry_access_level != "disabled",
            "container_registry_access_level": config.container_registry_access_level,
            "container_expiration_policy": config.container_expiration_policy,
        }),
    )
}

/// `GET /projects/:id/registry/protection/tag/rules`: Maintainer only, so
/// the job token (a Developer's, and not allowed on this endpoint) gets 403.
/// Immutable rules have no access levels.
fn tag_protection_rules(state: &State, req: &Req) -> Resp {
    if req.header("job-token").is_some() {
        return message(403, "403 Forbidden");
    }
    let rules = &state.config.tag_rules;
    let protected = rules.delete_deny.iter().map(|pattern| {
        json!({
            "project_id": state.config.project_id,
            "tag_name_pattern": pattern,
            "minimum_access_level_for_push": "maintainer",
            "minimum_access_level_for_delete": "maintainer",
        })
    });
    let immutable = rules.immutable.iter().map(|pattern| {
        json!({
            "project_id": state.config.project_id,
            "tag_name_pattern": pattern,
            "minimum_access_level_for_push": null,
            "minimum_access_level_for_delete": null,
        })
    });
    let list: Vec<Value> = protected
        .chain(immutable)
        .enumerate()
        .map(|(index, mut rule)| {
            rule["id"] = json!(index + 1);
            rule
        })
        .collect();
    json_response(200, &Value::Array(list))
}

fn with_project(
    state: &mut State,
    req: &Req,
    id: &str,
    then: impl FnOnce(&mut State) -> Resp,
) -> Resp {
    with_project_id(state, req, id, |state, project| {
        if project == state.config.project_id {
            then(state)
        } else {
            // The group's other projects have registry endpoints only.
            message(404, "404 Project Not Found")
        }
    })
}

/// Like [`with_project`], for the configured project or (with an access
/// token) one of `Config::group_projects`, whose id it passes on.
pub(crate) fn with_project_id(
    state: &mut State,
    req: &Req,
    id: &str,
    then: impl FnOnce(&mut State, u64) -> Resp,
) -> Resp {
    if let Err(response) = authenticate(state, req) {
        return response;
    }
    let id = decode(id);
    if id == state.config.project_id.to_string() || id == state.config.project_path {
        let project = state.config.project_id;
        return then(state, project);
    }
    let other = state
        .config
        .group_projects
        .iter()
        .find(|(known, path)| id == known.to_string() || id == *path)
        .map(|(known, _)| *known);
    match other {
        // A job token reaches its own project only.
        Some(project) if !req.headers.contains_key("job-token") => then(state, project),
        _ => message(404, "404 Project Not Found"),
    }
}

fn with_repository(
    state: &mut State,
    req: &Req,
    id: &str,
    rid: &str,
    then: impl FnOnce(&mut State, u64) -> Resp,
) -> Resp {
    with_project_id(state, req, id, |state, project| {
        match rid.parse::<u64>().ok().filter(|rid| {
            state.repositories.get(rid).is_some_and(|repository| {
                state.project_of(&repository.path).map(|(id, _)| id) == Some(project)
            })
        }) {
            Some(rid) => then(state, rid),
            None => message(404, "404 Repository Not Found"),
        }
    })
}

/// The project's git endpoints (branches, git tags, merge requests): like
/// [`with_project`], and with [`crate::Config::refs_refuse_job_token`] a
/// job token is refused with 403, as before GitLab 18.x.
/// The git refs endpoints of the configured project, or of a group project
/// an inventory gave refs to (`State::other_git`).
fn with_refs(
    state: &mut State,
    req: &Req,
    id: &str,
    then: impl FnOnce(&mut State, &GitRefs, u64) -> Resp,
) -> Resp {
    with_project_id(state, req, id, |state, project| {
        if state.config.refs_refuse_job_token && req.headers.contains_key("job-token") {
            return message(403, "403 Forbidden");
        }
        // Taken out while `then` reads the state beside it.
        let git = if project == state.config.project_id {
            std::mem::take(&mut state.git)
        } else {
            match state.other_git.remove(&project) {
                Some(git) => git,
                None => return message(404, "404 Project Not Found"),
            }
        };
        let response = then(state, &git, project);
        if project == state.config.project_id {
            state.git = git;
        } else {
            state.other_git.insert(project, git);
        }
        response
    })
}

/// A stable fake commit SHA for a ref.
fn commit_id(what: &str) -> String {
    sha256_digest(what.as_bytes())
        .trim_start_matches("sha256:")
        .chars()
        .take(40)
        .collect()
}

fn list_branches(state: &mut State, req: &Req, git: &GitRefs) -> Resp {
    let items: Vec<Value> = git
        .branches
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "merged": false,
                "protected": name == "main",
                "default": name == "main",
                "developers_can_push": false,
                "developers_can_merge": false,
                "can_push": true,
                "commit": {"id": commit_id(&format!("branch {name}"))},
            })
        })
        .collect();
    offset_page(state, req, items)
}

fn list_git_tags(state: &mut State, req: &Req, git: &GitRefs) -> Resp {
    let items: Vec<Value> = git
        .tags
        .iter()
        .map(|name| {
            let commit = commit_id(&format!("tag {name}"));
            json!({
                "name": name,
                "message": "",
                "target": commit,
                "commit": {"id": commit},
                "release": null,
                "protected": false,
            })
        })
        .collect();
    offset_page(state, req, items)
}

/// The id of the fork merge requests come from.
const FORK_PROJECT_ID: u64 = 4242;

fn merge_request_json(project_id: u64, iid: u64, mr: &crate::model::MergeRequest) -> Value {
    json!({
        "id": 100_000 + iid,
        "iid": iid,
        "project_id": project_id,
        "title": format!("MR {iid}"),
        "state": mr.state,
        "source_branch": mr.source_branch,
        "target_branch": "main",
        "source_project_id": if mr.from_fork { FORK_PROJECT_ID } else { project_id },
        "target_project_id": project_id,
    })
}

/// `GET /projects/:id/merge_requests`: `state` filters (`opened`, `closed`,
/// `locked`, `merged`, `all`: the default); newest (highest IID) first.
fn list_merge_requests(state: &mut State, req: &Req, git: &GitRefs, project: u64) -> Resp {
    let wanted = match req.param("state").as_deref() {
        None | Some("all") => None,
        Some(s @ ("opened" | "closed" | "locked" | "merged")) => Some(s.to_string()),
        Some(_) => {
            return json_response(400, &json!({"error": "state does not have a valid value"}))
        }
    };
    let items: Vec<Value> = git
        .merge_requests
        .iter()
        .rev()
        .filter(|(_, mr)| wanted.as_ref().is_none_or(|s| &mr.state == s))
        .map(|(iid, mr)| merge_request_json(project, *iid, mr))
        .collect();
    offset_page(state, req, items)
}

fn location(state: &State, path: &str) -> String {
    format!("{}/{}", state.registry_host, path)
}

pub(crate) fn tag_summary(state: &State, repository: &Repository, name: &str) -> Value {
    json!({
        "name": name,
        "path": format!("{}:{name}", repository.path),
        "location": format!("{}:{name}", location(state, &repository.path)),
    })
}

pub(crate) fn repository_json(state: &State, repository: &Repository, req: &Req) -> Value {
    let mut value = json!({
        "id": repository.id,
        "name": repository.name,
        "path": repository.path,
        "project_id": state.project_of(&repository.path).map_or(state.config.project_id, |(id, _)| id),
        "location": location(state, &repository.path),
        "created_at": gitlab_time(&repository.created_at),
        "cleanup_policy_started_at": null,
        "status": repository.status,
    });
    if truthy(req.param("tags_count")) {
        value["tags_count"] = json!(repository.tags.len());
    }
    if truthy(req.param("tags")) {
        value["tags"] = repository
            .tags
            .keys()
            .map(|name| tag_summary(state, repository, name))
            .collect();
    }
    if truthy(req.param("size")) {
        let size: u64 = repository
            .manifests
            .values()
            .filter_map(|manifest| manifest.total_size)
            .sum();
        value["size"] = json!(size);
    }
    value
}

fn list_repositories(state: &mut State, req: &Req, project: u64) -> Resp {
    list_repositories_where(state, req, |state, repository| {
        state.project_of(&repository.path).map(|(id, _)| id) == Some(project)
    })
}

fn list_repositories_where(
    state: &mut State,
    req: &Req,
    wanted: impl Fn(&State, &Repository) -> bool,
) -> Resp {
    let items: Vec<Value> = state
        .repositories
        .values()
        .filter(|repository| wanted(state, repository))
        .map(|repository| repository_json(state, repository, req))
        .collect();
    offset_page(state, req, items)
}

fn group_repositories(state: &mut State, req: &Req, id: &str) -> Resp {
    // The group endpoints do not take job tokens: the caller is anonymous there.
    if req.headers.contains_key("job-token") {
        return unauthorized();
    }
    if let Err(response) = authenticate(state, req) {
        return response;
    }
    let id = decode(id);
    let project = &state.config.project_path;
    let namespace = project
        .rsplit_once('/')
        .map_or("", |(namespace, _)| namespace);
    let ours = id == crate::GROUP_ID.to_string()
        || (!id.is_empty() && (namespace == id || namespace.starts_with(&format!("{id}/"))));
    if !ours {
        return message(404, "404 Group Not Found");
    }
    // The group given, or (by ID) the project's own namespace.
    let group = if id == crate::GROUP_ID.to_string() {
        namespace.to_string()
    } else {
        id
    };
    list_repositories_where(state, req, |state, repository| {
        state
            .project_of(&repository.path)
            .is_some_and(|(_, project)| project.starts_with(&format!("{group}/")))
    })
}

/// GitLab's offset pagination with its headers.
pub(crate) fn offset_page(state: &State, req: &Req, items: Vec<Value>) -> Resp {
    if req.param("pagination").as_deref() == Some("keyset") {
        return message(405, "405 Method Not Allowed");
    }
    let parse = |name: &str, default: usize| -> Result<usize, Resp> {
        match req.param(name) {
            None => Ok(default),
            Some(value) if value.is_empty() => Ok(default),
            Some(value) => value
                .parse::<i64>()
                .map(|n| usize::try_from(n.max(0)).unwrap_or(0))
                .map_err(|_| json_response(400, &json!({"error": format!("{name} is invalid")}))),
        }
    };
    let page = match parse("page", 1) {
        Ok(page) => page.max(1),
        Err(response) => return response,
    };
    let per_page = match parse("per_page", 20) {
        Ok(0) => 20,
        Ok(per_page) => per_page.min(100),
        Err(response) => return response,
    };
    let total = items.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let start = (page - 1).saturating_mul(per_page).min(total);
    let end = (start + per_page).min(total);
    let has_next = end < total;
    let body: Vec<Value> = items[start..end].to_vec();

    let mut response = json_response(200, &Value::Array(body));
    let link = |n: usize| -> String {
        let mut pairs: Vec<(String, String)> = req
            .query_pairs()
            .into_iter()
            .filter(|(key, _)| key != "page" && key != "per_page")
            .collect();
        pairs.push(("page".to_string(), n.to_string()));
        pairs.push(("per_page".to_string(), per_page.to_string()));
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("{}{}?{query}", state.gitlab_url, req.path)
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link(page - 1)));
    }
    if has_next {
        links.push(format!("<{}>; rel=\"next\"", link(page + 1)));
    }
    links.push(format!("<{}>; rel=\"first\"", link(1)));
    let countable = total <= COUNT_LIMIT;
    if countable {
        links.push(format!("<{}>; rel=\"last\"", link(total_pages)));
    }
    set_header(&mut response, "link", &links.join(", "));
    set_header(&mut response, "x-page", &page.to_string());
    set_header(&mut response, "x-per-page", &per_page.to_string());
    set_header(
        &mut response,
        "x-next-page",
        &if has_next {
            (page + 1).to_string()
        } else {
            String::new()
        },
    );
    set_header(
        &mut response,
        "x-prev-page",
        &if page > 1 {
            (page - 1).to_string()
        } else {
            String::new()
        },
    );
    if countable {
        set_header(&mut response, "x-total", &total.to_string());
        set_header(&mut response, "x-total-pages", &total_pages.to_string());
    }
    response
}

fn list_tags(state: &mut State, req: &Req, rid: u64) -> Resp {
    let Some(repository) = state.repositories.get(&rid) else {
        return message(404, "404 Repository Not Found");
    };
    if req.param("pagination").as_deref() != Some("keyset") {
        let items: Vec<Value> = repository
            .tags
            .keys()
            .map(|name| tag_summary(state, repository, name))
            .collect();
        return offset_page(state, req, items);
    }
    if !state.config.keyset {
        return message(405, "405 Method Not Allowed");
    }
    let per_page = req
        .param("per_page")
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(20)
        .min(100);
    let descending = match req.param("sort").as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => {
            return json_response(400, &json!({"error": "sort does not have a valid value"}))
        }
    };
    let last = req.param("last");
    let mut names: Vec<&String> = repository.tags.keys().collect();
    if descending {
        names.reverse();
    }
    let after: Vec<&String> = names
        .into_iter()
        .filter(|name| match &last {
            None => true,
            Some(last) if descending => name.as_str() < last.as_str(),
            Some(last) => name.as_str() > last.as_str(),
        })
        .collect();
    let page: Vec<&String> = after.iter().take(per_page).copied().collect();
    let body: Vec<Value> = page
        .iter()
        .map(|name| tag_summary(state, repository, name))
        .collect();
    let mut response = json_response(200, &Value::Array(body));
    if after.len() > per_page {
        if let Some(last_name) = page.last() {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("last", last_name)
                .append_pair("pagination", "keyset")
                .append_pair("per_page", &per_page.to_string())
                .append_pair("sort", if descending { "desc" } else { "asc" })
                .finish();
            set_header(
                &mut response,
                "link",
                &format!("<{}{}?{query}>; rel=\"next\"", state.gitlab_url, req.path),
            );
        }
    }
    response
}

fn tag_details(state: &State, rid: u64, name: &str) -> Resp {
    let Some(repository) = state.repositories.get(&rid) else {
        return message(404, "404 Repository Not Found");
    };
    let Some(tag) = repository.tags.get(name) else {
        return message(404, "404 Tag Not Found");
    };
    let manifest = repository.manifests.get(&tag.digest);
    let revision = manifest
        .and_then(|manifest| manifest.config_digest.as_deref())
        .map(|digest| digest.trim_start_matches("sha256:").to_string());
    let mut value = tag_summary(state, repository, name);
    value["revision"] = json!(revision);
    value["short_revision"] = json!(revision
        .as_ref()
        .map(|revision| revision.chars().take(9).collect::<String>()));
    value["digest"] = json!(tag.digest);
    // The image config's `created`, as GitLab answers without the metadata
    // database. (With it, GitLab answers the first push; the emulator keeps
    // the build time on both, which the client reads only without
    // `/gitlab/v1`.)
    value["created_at"] = json!(tag
        .created_at
        .as_ref()
        .map(|at| gitlab_time(&state.shown_time(tag, at))));
    value["total_size"] = json!(manifest.and_then(|manifest| manifest.total_size));
    json_response(200, &value)
}

fn delete_tag(state: &mut State, rid: u64, name: &str) -> Resp {
    let missing_status = state.config.missing_tag_delete_status;
    let rules = state.config.tag_rules.clone();
    let Some(repository) = state.repository_mut(rid) else {
        return message(404, "404 Repository Not Found");
    };
    match repository.tags.get(name) {
        None if missing_status == 403 => message(403, "403 Forbidden"),
        None => message(missing_status, "404 Tag Not Found"),
        Some(tag) if tag.protected => {
            message(403, "403 Forbidden - cannot delete protected tag(s)")
        }
        Some(_) if crate::rule_matches(&rules.delete_deny, name) => {
            message(403, "403 Forbidden - cannot delete protected tag(s)")
        }
        Some(_) if crate::rule_matches(&rules.immutable, name) => {
            message(403, "403 Forbidden - cannot delete immutable tag(s)")
        }
        Some(_) => {
            // GitLab removes only this tag, whatever the registry supports.
            repository.tags.remove(name);
            empty(200)
        }
    }
}

fn bulk_delete(state: &mut State, req: &Req, rid: u64) -> Resp {
    let content_type = req.header("content-type").unwrap_or("").to_string();
    let raw_body = String::from_utf8_lossy(&req.body).into_owned();
    // Grape merges query and body parameters.
    let mut params = req.query_pairs();
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media_type == "application/json" {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&req.body) {
            for (key, value) in map {
                let value = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                params.push((key, value));
            }
        }
    } else if media_type == "application/x-www-form-urlencoded" || media_type.is_empty() {
        params.extend(
            form_urlencoded::parse(&req.body)
                .map(|(key, value)| (key.into_owned(), value.into_owned())),
        );
    }
    let response = match bulk::validate(&params) {
        Err(error) => json_response(400, &json!({"error": error})),
        Ok(validated) => {
            let now = std::time::Instant::now();
            let locked = state.bulk_leases.get(&rid).is_some_and(|since| {
                now.duration_since(*since) < std::time::Duration::from_secs(3600)
            });
            if locked {
                message(
                    400,
                    "This request has already been made. You can run this at most once an hour for a given container repository",
                )
            } else {
                state.bulk_leases.insert(rid, now);
                // GitLab's cleanup skips tags its tag rules cover.
                let rules = state.config.tag_rules.clone();
                if let Some(repository) = state.repository_mut(rid) {
                    let candidates: Vec<bulk::Candidate<'_>> = repository
                        .tags
                        .iter()
                        .map(|(name, tag)| bulk::Candidate {
                            name,
                            created_at: tag.created_at,
                            protected: tag.protected
                                || crate::rule_matches(&rules.delete_deny, name)
                                || crate::rule_matches(&rules.immutable, name),
                        })
                        .collect();
                    let doomed = bulk::select(&validated, &candidates, Utc::now());
                    for name in doomed {
                        repository.tags.remove(&name);
                    }
                }
                empty(202)
            }
        }
    };
    state.bulk_calls.push(BulkCall {
        repository_id: rid,
        content_type,
        raw_body,
        params,
        status: response.status().as_u16(),
    });
    response
}

/// `GET /jwt/auth`: Basic credentials in, a JWT with whatever subset of the
/// requested scopes the caller may have out.
fn jwt_auth(state: &mut State, req: &Req) -> Resp {
    if req.param("service").as_deref() != Some("container_registry") {
        return empty(404);
    }
    let credentials = req
        .header("authorization")
        .and_then(|value| {
            value
                .get(..6)
                .filter(|scheme| scheme.eq_ignore_ascii_case("basic "))
                .map(|_| value[6..].trim())
        })
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|decoded| {
            decoded
                .split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let config = &state.config.clone();
    let denied = || {
        json_response(
            401,
            &json!({"errors": [{"code": "UNAUTHORIZED", "message": "HTTP Basic: Access denied"}]}),
        )
    };
    let Some((user, password)) = credentials else {
        return denied();
    };
    let is_deploy = config
        .deploy_token
        .as_ref()
        .is_some_and(|(deploy_user, deploy_password)| {
            *deploy_user == user && *deploy_password == password
        });
    let valid = (user == "gitlab-ci-token" && password == config.job_token)
        || password == config.access_token
        || is_deploy;
    if !valid {
        return denied();
    }

    let mut access = Vec::new();
    for scope in req
        .query_pairs()
        .into_iter()
        .filter(|(key, _)| key == "scope")
        .flat_map(|(_, value)| value.split(' ').map(str::to_string).collect::<Vec<_>>())
    {
        // GitLab splits `type:name:actions` on the first two colons, so a
        // host-prefixed name (`host:port/group/project`) ends up unrecognisable.
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        // The catalog: administrators only (their access token).
        if kind == "registry" && name == "catalog" {
            if config.admin
                && password == config.access_token
                && actions.split(',').any(|a| a == "*")
            {
                access.push(Access {
                    kind: "registry".to_string(),
                    name: "catalog".to_string(),
                    actions: vec!["*".to_string()],
                    meta: None,
                });
            }
            continue;
        }
        // A job token's scopes cover its own project; an access token's
        // every project of the group it may reach.
        let job_token = user == "gitlab-ci-token" && password == config.job_token;
        if kind != "repository" || !state.in_known_project(name, !job_token) {
            continue;
        }
        let mut granted: Vec<String> = Vec::new();
        for action in actions.split(',') {
            let allowed = match action {
                "pull" => true,
                "push" => config.grant_push && !is_deploy,
                "delete" => config.grant_delete && !is_deploy,
                _ => false,
            };
            if allowed && !granted.iter().any(|known| known == action) {
                granted.push(action.to_string());
            }
        }
        if granted.is_empty() {
            continue;
        }
        // GitLab creates the container repository record when it issues a push
        // token; in front of a third-party registry that record is all it knows.
        if state.config.upstream_registry.is_some() && granted.iter().any(|a| a == "push") {
            state.ensure_repository(name, None);
        }
        match access
            .iter_mut()
            .find(|entry: &&mut Access| entry.name == name)
        {
            Some(entry) => {
                for action in granted {
                    if !entry.actions.contains(&action) {
                        entry.actions.push(action);
                    }
                }
            }
            None => access.push(Access {
                kind: "repository".to_string(),
                name: name.to_string(),
                actions: granted,
                meta: None,
            }),
        }
    }
    // GitLab's `meta` (§7): the project, and with push or delete the tag
    // rules that apply to this token's user.
    for entry in &mut access {
        let (project_id, project_path) = state
            .project_of(&entry.name)
            .unwrap_or_else(|| (config.project_id, config.project_path.clone()));
        let mut meta = json!({
            "project_path": project_path,
            "project_id": project_id,
            "root_namespace_id": config.project_id + 1000,
        });
        let writes = entry.actions.iter().any(|a| a == "push" || a == "delete");
        if writes && config.tag_rules_in_jwt {
            meta["tag_deny_access_patterns"] =
                json!({"push": [], "delete": config.tag_rules.delete_deny});
            meta["tag_immutable_patterns"] = json!(config.tag_rules.immutable);
        }
        entry.meta = Some(meta);
    }

    let now = Utc::now();
    let issued_at = now.timestamp();
    let lifetime = chrono::Duration::from_std(config.jwt_lifetime).unwrap_or_default();
    let jti = sha256_digest(
        format!(
            "{}-{}",
            now.timestamp_nanos_opt().unwrap_or(0),
            state.jwts.len()
        )
        .as_bytes(),
    );
    let claims = Claims {
        iss: config.issuer.clone(),
        aud: "container_registry".to_string(),
        sub: user,
        iat: issued_at,
        nbf: issued_at - 5,
        exp: (now + lifetime).timestamp(),
        jti: jti.trim_start_matches("sha256:")[..32].to_string(),
        access,
    };
    let token = state.keys.sign(&claims);
    state.jwts.push(token.clone());
    json_response(200, &json!({"token": token}))
}

/// `/_emulator/*`: state and recorded requests for shell scripts.
pub(crate) fn control(shared: &Shared, req: &Req) -> Resp {
    let state = shared.lock();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_emulator/state") => {
            let repositories: Vec<Value> = state
                .repositories
                .values()
                .map(|repository| {
                    let tags: serde_json::Map<String, Value> = repository
                        .tags
                        .iter()
                        .map(|(name, tag)| (name.clone(), json!(tag.digest)))
                        .collect();
                    json!({"path": repository.path, "id": repository.id, "tags": tags})
                })
                .collect();
            let max_in_flight = shared.max_in_flight.load(Ordering::SeqCst);
            json_response(
                200,
                &json!({"repositories": repositories, "max_in_flight": max_in_flight}),
            )
        }
        ("GET", "/_emulator/requests") => json_response(200, &json!(state.requests)),
        // Counts only, for benchmarks too large to list every request.
        ("GET", "/_emulator/summary") => {
            let tags: usize = state.repositories.values().map(|r| r.tags.len()).sum();
            let jwt_auth = state
                .requests
                .iter()
                .filter(|r| r.path == "/jwt/auth")
                .count();
            json_response(
                200,
                &json!({
                    "requests": state.requests.len(),
                    "jwt_auth": jwt_auth,
                    "repositories": state.repositories.len(),
                    "tags": tags,
                    "max_in_flight": shared.max_in_flight.load(Ordering::SeqCst),
                }),
            )
        }
        ("POST", "/_emulator/garbage-collect") => {
            drop(state);
            let collect = if req.param("untagged").as_deref() == Some("true") {
                crate::Collect::UntaggedManifests
            } else {
                crate::Collect::Blobs
            };
            json_response(200, &json!(shared.garbage_collect(collect)))
        }
        ("POST", "/_emulator/reset-requests") => {
            drop(state);
            shared.reset_requests();
            empty(204)
        }
        _ => json_response(404, &json!({"error": "unknown emulator control endpoint"})),
    }
}
