//! GitLab's REST API for the project's container registry.

use crate::domain::model::RepositoryInfo;
use crate::domain::tag_rules::TagRule;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use std::sync::Arc;
use url::Url;

use crate::wire::secret::RestAuth;

use crate::wire::urls::join_path;

use crate::domain::config_error::ConfigError;
use crate::domain::exit::{Exit, ExitCode};
use crate::domain::model::{Refs, Tag};
use crate::domain::names::{Digest, RepositoryPath, TagName};
use crate::domain::refs::ref_slug;
use crate::wire::http::listed_names;
use crate::wire::http::{credential_header, display_url, Http, HttpError, HttpResponse};
use crate::wire::links::Pager;
use crate::wire::urls::encode_segment;

pub(super) const PER_PAGE: &str = "100";

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum GitLabError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// GitLab refused our credentials (401): the configuration's fault.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A redirect to another origin: the token is not sent there.
    #[error("refusing to send the GitLab token to {0}")]
    ForeignOrigin(String),
}

impl GitLabError {
    /// No answer at all after every retry: GitLab is not reachable at the
    /// configured URL, for every request alike.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, GitLabError::Http(HttpError::Transport { .. }))
    }
}

impl ExitCode for GitLabError {
    fn exit_code(&self) -> Exit {
        match self {
            GitLabError::Http(err) => err.exit_code(),
            GitLabError::Config(err) => err.exit_code(),
            GitLabError::ForeignOrigin(_) => Exit::Failed,
        }
    }
}

/// What `GET /projects/:id` says about the project's registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ProjectSettings {
    /// `enabled` (everyone with access to the project), `private`
    /// (members only) or `disabled`.
    #[serde(default)]
    pub container_registry_access_level: Option<String>,
    /// GitLab's built-in cleanup policy, `null` when never set up.
    #[serde(default)]
    pub container_expiration_policy: Option<crate::gitlab::policy_import::ExpirationPolicy>,
}

/// An access token as `GET /personal_access_tokens/self` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct TokenInfo {
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `YYYY-MM-DD`, or `null` for a token that never expires.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// `GET /projects/:id`'s answer and the rate limit GitLab announced with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectAnswer {
    pub read: ProjectRead,
    pub rate_limit: Option<RateLimitHeaders>,
}

/// GitLab's `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub limit: Option<u64>,
    pub remaining: u64,
    /// Unix time the window resets.
    pub reset: Option<u64>,
}

impl RateLimitHeaders {
    fn of(response: &HttpResponse) -> Option<RateLimitHeaders> {
        let number = |name: &str| {
            response
                .header(name)
                .and_then(|value| value.trim().parse::<u64>().ok())
        };
        Some(RateLimitHeaders {
            limit: number("ratelimit-limit"),
            remaining: number("ratelimit-remaining")?,
            reset: number("ratelimit-reset"),
        })
    }
}

/// The answer to `GET /projects/:id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRead {
    Found(ProjectSettings),
    /// 403/404: these credentials may not read the project (the job token).
    Refused(u16),
}

/// What to do when GitLab refuses a group listing: the job token never
/// works there.
pub const GROUP_TOKEN_ADVICE: &str = "group cleanup needs an access token, not the job token. Create a group access token (the group's Settings > Access tokens; role Maintainer; scopes api, read_registry and write_registry to delete, or read_api and read_registry for --dry-run and inventory) and set it as the masked CI/CD variable GITLAB_TOKEN";

/// A container repository as the REST lists answer it.
#[derive(Deserialize)]
struct ListedRepository {
    id: u64,
    path: String,
    #[serde(default)]
    tags_count: Option<u64>,
    #[serde(default)]
    project_id: Option<u64>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    status: Option<String>,
}

impl ListedRepository {
    /// Parsed at the edge: a path that is not a registry path fails the
    /// listing; so does (in group mode) a repository without its project,
    /// whose REST calls would go to the wrong project.
    fn parse(self, url: &Url, need_project: bool) -> Result<RepositoryInfo, GitLabError> {
        let invalid = |message: String| HttpError::InvalidResponse {
            method: Method::GET,
            url: display_url(url),
            message,
        };
        let path = RepositoryPath::parse(&self.path).map_err(|_| {
            invalid(format!(
                "GitLab listed a container repository with the path {:?}, which is not a valid repository path; refusing to work from this listing",
                self.path
            ))
        })?;
        if need_project && self.project_id.is_none() {
            return Err(invalid(format!(
                "GitLab listed the container repository {:?} without its project_id; refusing to work from this listing",
                self.path
            ))
            .into());
        }
        Ok(RepositoryInfo {
            id: self.id,
            path,
            tags_count: self.tags_count,
            project_id: self.project_id,
            created_at: self.created_at,
            status: self.status,
        })
    }
}

/// What the single-tag `DELETE` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestDelete {
    Deleted,
    NotFound,
    /// 403: a protected tag, or (newer GitLab) a tag that does not exist.
    Forbidden {
        message: String,
        /// The 403 came after a retry whose earlier attempt may have deleted
        /// the tag (its answer was lost).
        earlier_attempt_may_have_applied: bool,
    },
}

/// What a bulk-delete request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkDelete {
    Accepted,
    /// The once-an-hour limit for this repository.
    AlreadyRequested(String),
}

#[derive(Debug)]
pub struct GitLab {
    http: Http,
    api: Url,
    project: String,
    auth: RestAuth,
    /// The project's default branch where the job says it
    /// (`CI_DEFAULT_BRANCH`): a branch listing without it is incomplete.
    default_branch: Option<String>,
}

impl GitLab {
    pub fn new(http: Http, api: Url, project: String, auth: RestAuth) -> GitLab {
        GitLab {
            http,
            api,
            project,
            auth,
            default_branch: None,
        }
    }

    /// The project's default branch, which every branch listing of it must hold.
    pub fn with_default_branch(mut self, branch: Option<String>) -> GitLab {
        self.default_branch = branch;
        self
    }

    fn url(&self, path: &str) -> Url {
        join_path(&self.api, path)
    }

    pub(super) fn project_url(&self, rest: &str) -> Url {
        self.url(&format!("projects/{}/{rest}", self.project))
    }

    pub(super) async fn send(
        &self,
        method: Method,
        url: &Url,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<HttpResponse, GitLabError> {
        if url.origin() != self.api.origin() {
            return Err(GitLabError::ForeignOrigin(display_url(url)));
        }
        let (name, value) = credential_header(self.auth.header, &self.auth.token)?;
        let response = self
            .http
            .send(method, url, |request| {
                build(request).header(name.clone(), value.clone())
            })
            .await?;
        if response.status == StatusCode::UNAUTHORIZED {
            return Err(ConfigError::credentials(format!(
                "GitLab refused the {} credentials ({}): {}",
                self.auth.header,
                response.unexpected(),
                match self.auth.header {
                    "PRIVATE-TOKEN" => "check that GITLAB_TOKEN is a valid access token with the api scope",
                    _ => "the job token is only valid while its job runs, and only for its own project",
                }
            ))
            .into());
        }
        Ok(response)
    }

    /// Every page of an offset-paginated list: follows `x-next-page` or
    /// `Link rel="next"`, never `x-total` (absent above 10,000 records).
    pub(super) async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        first: Url,
    ) -> Result<Vec<T>, GitLabError> {
        let mut pager = Pager::new(&first);
        let mut url = first;
        let mut items = Vec::new();
        loop {
            let response = self.send(Method::GET, &url, |r| r).await?;
            if !response.status.is_success() {
                return Err(response.unexpected().into());
            }
            let page: Vec<T> = response.json()?;
            items.extend(page);
            match next_offset_page(&mut pager, &response, &url)? {
                Some(next) => url = next,
                None => return Ok(items),
            }
        }
    }

    /// The project's container repositories. A path that is not a registry
    /// path (`..`, empty segments, odd characters) fails the whole listing:
    /// in a URL it could name another repository.
    pub async fn repositories(&self) -> Result<Vec<RepositoryInfo>, GitLabError> {
        let mut url = self.project_url("registry/repositories");
        url.query_pairs_mut()
            .append_pair("per_page", PER_PAGE)
            .append_pair("tags_count", "true");
        let listed: Vec<ListedRepository> = match self.all_pages(url.clone()).await {
            Err(GitLabError::Http(HttpError::Status { status, .. }))
                if status == StatusCode::NOT_FOUND =>
            {
                return Err(self.project_not_found().into())
            }
            listed => listed?,
        };
        listed
            .into_iter()
            .map(|repository| repository.parse(&url, false))
            .collect()
    }

    /// The project's path (its root image's full path, `group/project`),
    /// read from its container repositories: each is listed with its full
    /// `path` and its `name` relative to the project (`""` for the root
    /// image), so the path is `path` without `/name`. `None` when the
    /// project has no repository. For `CI_PROJECT_ID` alone: the job token
    /// may list repositories but not read `GET /projects/:id`.
    pub async fn project_path(&self) -> Result<Option<String>, GitLabError> {
        #[derive(Deserialize)]
        struct Listed {
            path: String,
            #[serde(default)]
            name: String,
        }
        let mut url = self.project_url("registry/repositories");
        url.query_pairs_mut().append_pair("per_page", "1");
        let response = self.send(Method::GET, &url, |r| r).await?;
        if response.status == StatusCode::NOT_FOUND {
            return Err(self.project_not_found().into());
        }
        if !response.status.is_success() {
            return Err(response.unexpected().into());
        }
        let listed: Vec<Listed> = response.json()?;
        let Some(first) = listed.into_iter().next() else {
            return Ok(None);
        };
        let project = if first.name.is_empty() {
            Some(first.path.as_str())
        } else {
            first
                .path
                .strip_suffix(first.name.as_str())
                .and_then(|rest| rest.strip_suffix('/'))
        };
        match project.filter(|p| !p.is_empty()) {
            Some(project) => Ok(Some(project.to_string())),
            None => Err(HttpError::InvalidResponse {
                method: Method::GET,
                url: display_url(&url),
                message: format!(
                    "a container repository's path {:?} does not end with its name {:?}; cannot tell the project's path",
                    first.path, first.name
                ),
            }
            .into()),
        }
    }

    /// A 404 for the project: which variable named it and how to look.
    /// (The token goes in the command as a variable, never its value.)
    fn project_not_found(&self) -> ConfigError {
        // Settings take CI_PROJECT_ID when set; a URL-encoded path is never all digits.
        let variable = if self.project.bytes().all(|b| b.is_ascii_digit()) {
            "CI_PROJECT_ID"
        } else {
            "CI_PROJECT_PATH"
        };
        let named = percent_encoding::percent_decode_str(&self.project).decode_utf8_lossy();
        let token_variable = match self.auth.header {
            "PRIVATE-TOKEN" => "GITLAB_TOKEN",
            _ => "CI_JOB_TOKEN",
        };
        ConfigError::setting(variable, format!(
            "GitLab has no project {variable}={named} that the {header} credentials can see (404 listing its container repositories), or its container registry is disabled: check {variable}, e.g. with `curl --header \"{header}: ${token_variable}\" {url}`, which should answer the project",
            header = self.auth.header,
            url = display_url(&self.url(&format!("projects/{}", self.project))),
        ))
    }

    /// The container repositories of every project in `group` (a full path
    /// or a numeric ID; subgroups included): `GET /groups/:id/registry/repositories`,
    /// all pages. GitLab refuses the job token there, so the caller checks
    /// for an access token first; a refusal anyway (401, 403: a token
    /// without access to the group) is a configuration error saying which
    /// token to create. Each repository must name its project: the REST
    /// calls for it go to that project.
    pub async fn group_repositories(
        &self,
        group: &str,
    ) -> Result<Vec<RepositoryInfo>, GitLabError> {
        let mut url = self.url(&format!(
            "groups/{}/registry/repositories",
            percent_encoding::utf8_percent_encode(group, percent_encoding::NON_ALPHANUMERIC)
        ));
        url.query_pairs_mut().append_pair("per_page", PER_PAGE);
        let refused = |status: &str| {
            GitLabError::Config(ConfigError::credentials(format!(
                "GitLab refused to list the container repositories of the group {group:?} (GET /groups/:id/registry/repositories answered {status}): {GROUP_TOKEN_ADVICE}"
            )))
        };
        let listed: Vec<ListedRepository> = match self.all_pages(url.clone()).await {
            Ok(listed) => listed,
            // GitLab's 401, or credentials that could not be sent at all:
            // the cause first, then which token a group run needs.
            Err(GitLabError::Config(err)) => {
                return Err(GitLabError::Config(ConfigError::credentials(format!(
                    "{err} (listing the container repositories of the group {group:?}); {GROUP_TOKEN_ADVICE}"
                ))))
            }
            Err(GitLabError::Http(HttpError::Status { status, .. }))
                if status == StatusCode::FORBIDDEN =>
            {
                return Err(refused("403"))
            }
            Err(GitLabError::Http(HttpError::Status { status, .. }))
                if status == StatusCode::NOT_FOUND =>
            {
                return Err(GitLabError::Config(ConfigError::argument("--group", format!(
                    "--group {group}: GitLab knows no such group, or GITLAB_TOKEN may not see it (404): check the group's full path or ID, and that the token is the group's"
                ))))
            }
            Err(err) => return Err(err),
        };
        listed
            .into_iter()
            .map(|repository| repository.parse(&url, true))
            .collect()
    }

    /// The REST client for `info`'s repository: its own project's in group
    /// mode (`per_project`), else this one.
    pub fn for_repository(
        self: &Arc<Self>,
        info: &RepositoryInfo,
        per_project: bool,
    ) -> Arc<GitLab> {
        match (per_project, info.project_id) {
            (true, Some(project)) => Arc::new(self.for_project(project)),
            _ => self.clone(),
        }
    }

    /// A client for another project on the same GitLab with the same
    /// credentials: in group mode each repository's REST calls (tag list,
    /// details, deletes, refs) go to its own project.
    pub fn for_project(&self, project: u64) -> GitLab {
        GitLab {
            http: self.http.clone(),
            api: self.api.clone(),
            project: project.to_string(),
            auth: self.auth.clone(),
            // Another project's default branch is not the job's.
            default_branch: None,
        }
    }

    /// The project's REST reference: its numeric id, or its URL-encoded path.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// What the project's git refs say (for `when_ref`/`per_ref` rules):
    /// every branch, git tag and open merge request, all pages. Never an
    /// error: a listing that fails or is refused gives `complete: false`
    /// and the reason, so that no tag is claimed through refs (fail safe)
    /// and the run goes on.
    pub async fn refs(&self) -> Refs {
        match self.list_refs().await {
            Ok(refs) => refs,
            Err(reason) => {
                tracing::warn!(reason = %reason, "the project's git refs are incomplete; no tag is deleted because its ref is gone");
                Refs {
                    complete: false,
                    incomplete_because: Some(reason),
                    ..Refs::default()
                }
            }
        }
    }

    /// Branches, git tags, then open merge requests; the first listing
    /// that fails ends it, with the reason.
    async fn list_refs(&self) -> Result<Refs, String> {
        #[derive(Deserialize)]
        struct Named {
            name: String,
        }
        #[derive(Deserialize)]
        struct MergeRequest {
            iid: u64,
            source_branch: String,
        }
        let mut refs = Refs {
            complete: true,
            ..Refs::default()
        };
        for (what, path) in [
            ("branches", "repository/branches"),
            ("git tags", "repository/tags"),
        ] {
            let mut url = self.project_url(path);
            url.query_pairs_mut().append_pair("per_page", PER_PAGE);
            let listed: Vec<Named> = self
                .all_pages(url)
                .await
                .map_err(|err| self.refs_failure(what, path, err))?;
            if what == "branches" {
                self.check_branches_listed(
                    &listed.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
                )?;
            }
            refs.slugs
                .extend(listed.iter().map(|named| ref_slug(&named.name)));
        }
        let path = "merge_requests";
        let mut url = self.project_url(path);
        url.query_pairs_mut()
            .append_pair("state", "opened")
            .append_pair("per_page", PER_PAGE);
        let listed: Vec<MergeRequest> = self
            .all_pages(url)
            .await
            .map_err(|err| self.refs_failure("open merge requests", path, err))?;
        for mr in listed {
            // A fork's source branch is no branch here, yet its pipelines
            // push images under its slug: an open MR keeps its slug alive.
            refs.slugs.insert(ref_slug(&mr.source_branch));
            refs.open_mrs.insert(mr.iid);
        }
        Ok(refs)
    }

    /// A project with a repository always has its default branch: a branch
    /// listing that is empty, or lacks the default branch, is not the whole
    /// truth (whatever GitLab's status said), and deciding that every
    /// branch is gone on it would delete the images of live branches.
    fn check_branches_listed(&self, names: &[&str]) -> Result<(), String> {
        if names.is_empty() {
            return Err("GitLab listed no branch (GET /projects/:id/repository/branches answered an empty list), yet a project with a repository always has its default branch: the refs are not known".to_string());
        }
        match &self.default_branch {
            Some(default) if !names.contains(&default.as_str()) => Err(format!(
                "GitLab's branch listing (GET /projects/:id/repository/branches) lacks the default branch {default:?} (CI_DEFAULT_BRANCH): the refs are not known"
            )),
            _ => Ok(()),
        }
    }

    /// Why a ref listing failed, for `incomplete_because`. A refusal (401,
    /// 403) says which token can read it: GitLab lets the job token list
    /// them only since 18.x (and only where fine-grained job token
    /// permissions grant it).
    fn refs_failure(&self, what: &str, path: &str, err: GitLabError) -> String {
        let endpoint = format!("GET /projects/:id/{path}");
        let refused = match &err {
            GitLabError::Config(_) => Some("401".to_string()),
            GitLabError::Http(HttpError::Status { status, .. })
                if *status == StatusCode::FORBIDDEN =>
            {
                Some(status.as_u16().to_string())
            }
            _ => None,
        };
        match refused {
            Some(status) => format!(
                "GitLab refused to list the project's {what} ({endpoint} answered {status} to the {} credentials): set GITLAB_TOKEN to an access token with the read_api scope (the job token may read refs only on GitLab 18.x and later)",
                self.auth.header
            ),
            None => format!("listing the project's {what} ({endpoint}) failed: {err}"),
        }
    }

    /// Every tag name: keyset pagination (GitLab 16.10+ with the registry
    /// database), falling back to offset pagination where it answers 405/400.
    pub async fn tag_names(&self, repository_id: u64) -> Result<Vec<TagName>, GitLabError> {
        #[derive(Deserialize)]
        struct Listed {
            name: String,
        }
        let base = self.project_url(&format!("registry/repositories/{repository_id}/tags"));
        let mut url = base.clone();
        url.query_pairs_mut()
            .append_pair("pagination", "keyset")
            .append_pair("per_page", PER_PAGE)
            .append_pair("sort", "asc");
        let mut names = Vec::new();
        let mut pager = Pager::new(&url);
        let mut pages = 0usize;
        loop {
            let response = self.send(Method::GET, &url, |r| r).await?;
            if pages == 0 && matches!(response.status.as_u16(), 400 | 405) {
                tracing::debug!(
                    repository_id,
                    status = response.status.as_u16(),
                    "keyset pagination not available; using offset pagination"
                );
                let mut offset = base;
                offset.query_pairs_mut().append_pair("per_page", PER_PAGE);
                let tags: Vec<Listed> = self.all_pages(offset).await?;
                return Ok(listed_names(
                    &response,
                    tags.into_iter().map(|t| t.name).collect(),
                )?);
            }
            if !response.status.is_success() {
                return Err(response.unexpected().into());
            }
            let page: Vec<Listed> = response.json()?;
            names.extend(listed_names(
                &response,
                page.into_iter().map(|t| t.name).collect(),
            )?);
            pages += 1;
            match pager.next_from_link(&response, &url)? {
                Some(next) => url = next,
                None => return Ok(names),
            }
        }
    }

    /// A tag's digest and date; `None` when the tag no longer exists.
    pub async fn tag_details(
        &self,
        repository_id: u64,
        tag: &TagName,
    ) -> Result<Option<Tag>, GitLabError> {
        #[derive(Deserialize)]
        struct Details {
            name: String,
            #[serde(default)]
            digest: Option<String>,
            #[serde(default)]
            created_at: Option<DateTime<Utc>>,
            /// The image's bytes (config and layers); `null` for an index.
            #[serde(default)]
            total_size: Option<u64>,
        }
        let url = self.project_url(&format!(
            "registry/repositories/{repository_id}/tags/{}",
            encode_segment(tag)
        ));
        let response = self.send(Method::GET, &url, |r| r).await?;
        match response.status.as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(response.unexpected().into()),
        }
        let details: Details = response.json()?;
        if details.name != tag.as_str() {
            return Err(response
                .invalid(format!("asked for tag {tag:?}, got {:?}", details.name))
                .into());
        }
        let digest = match details.digest {
            Some(digest) => Some(Digest::parse(&digest).map_err(|_| {
                response.invalid(format!(
                    "tag {tag}: digest {digest:?} is not a sha256 digest"
                ))
            })?),
            None => None,
        };
        Ok(Some(Tag {
            name: tag.clone(),
            digest,
            created_at: details.created_at,
            // REST is read only without the metadata database (no
            // `/gitlab/v1`), where `created_at` is the build time and no
            // push time is known.
            pushed_at: None,
            protected: false,
            gitlab_rule: None,
            media_type: None,
            children: Vec::new(),
            image: false,
            referrers: 0,
            size_bytes: details.total_size,
            last_pulled_at: None,
        }))
    }

    /// Whether the repository has any tag right now (one page of one tag):
    /// `None` when it is gone. Asked just before removing a repository, in
    /// case a push came after it was listed.
    pub async fn repository_has_tags(
        &self,
        repository_id: u64,
    ) -> Result<Option<bool>, GitLabError> {
        #[derive(Deserialize)]
        struct Listed {}
        let mut url = self.project_url(&format!("registry/repositories/{repository_id}/tags"));
        url.query_pairs_mut().append_pair("per_page", "1");
        let response = self.send(Method::GET, &url, |r| r).await?;
        match response.status.as_u16() {
            200 => {
                let page: Vec<Listed> = response.json()?;
                Ok(Some(!page.is_empty()))
            }
            404 => Ok(None),
            _ => Err(response.unexpected().into()),
        }
    }

    /// `DELETE /projects/:id/registry/repositories/:rid`: GitLab schedules
    /// the repository's deletion (202). `Ok(false)`: it was already gone.
    pub async fn delete_repository(&self, repository_id: u64) -> Result<bool, GitLabError> {
        let url = self.project_url(&format!("registry/repositories/{repository_id}"));
        let response = self.send(Method::DELETE, &url, |r| r).await?;
        match response.status.as_u16() {
            200..=299 => Ok(true),
            404 if response.earlier_attempt_may_have_applied => Ok(true),
            404 => Ok(false),
            _ => Err(response.unexpected().into()),
        }
    }

    /// `DELETE …/tags/:tag`: GitLab deletes one tag, on any registry.
    pub async fn delete_tag(
        &self,
        repository_id: u64,
        tag: &TagName,
    ) -> Result<RestDelete, GitLabError> {
        let url = self.project_url(&format!(
            "registry/repositories/{repository_id}/tags/{}",
            encode_segment(tag)
        ));
        let response = self.send(Method::DELETE, &url, |r| r).await?;
        Ok(match response.status.as_u16() {
            200..=299 => RestDelete::Deleted,
            // Our own earlier attempt got through and only its answer was lost.
            404 if response.earlier_attempt_may_have_applied => RestDelete::Deleted,
            404 => RestDelete::NotFound,
            403 => RestDelete::Forbidden {
                message: crate::wire::http::error_message(&response.body),
                earlier_attempt_may_have_applied: response.earlier_attempt_may_have_applied,
            },
            _ => return Err(response.unexpected().into()),
        })
    }

    /// The project's container tag protection and immutability rules
    /// (`GET /projects/:id/registry/protection/tag/rules`, Maintainer),
    /// for the report. `None` where the credentials may not read them (a job
    /// token, a Developer): the registry JWT carries what the plan needs.
    pub async fn tag_rules(&self) -> Result<Option<Vec<TagRule>>, GitLabError> {
        // The job token may not call this endpoint: not worth a request.
        if self.auth.header != "PRIVATE-TOKEN" {
            return Ok(None);
        }
        let url = self.project_url("registry/protection/tag/rules");
        let response = match self.send(Method::GET, &url, |r| r).await {
            Ok(response) => response,
            // `send` calls a 401 our credentials' fault; here it only means
            // these credentials may not read the rules.
            Err(GitLabError::Config(_)) => return Ok(None),
            Err(err) => return Err(err),
        };
        match response.status.as_u16() {
            200 => Ok(Some(response.json()?)),
            401 | 403 | 404 => {
                tracing::debug!(
                    status = response.status.as_u16(),
                    "the tag protection rules cannot be read with these credentials"
                );
                Ok(None)
            }
            _ => Err(response.unexpected().into()),
        }
    }

    /// `GET /projects/:id`: the registry settings `doctor` and `policy
    /// import` read, and GitLab's `RateLimit-*` headers on the answer.
    /// GitLab refuses the job token there: `Refused`, like any 403/404
    /// answer (these credentials may not read the project).
    pub async fn project_settings(&self) -> Result<ProjectAnswer, GitLabError> {
        let url = self.url(&format!("projects/{}", self.project));
        let response = match self.send(Method::GET, &url, |r| r).await {
            Ok(response) => response,
            // `send` calls a 401 our credentials' fault; for the job token
            // here it only means this endpoint does not take it.
            Err(GitLabError::Config(_)) if self.auth.header != "PRIVATE-TOKEN" => {
                return Ok(ProjectAnswer {
                    read: ProjectRead::Refused(401),
                    rate_limit: None,
                })
            }
            Err(err) => return Err(err),
        };
        let rate_limit = RateLimitHeaders::of(&response);
        let read = match response.status.as_u16() {
            200 => ProjectRead::Found(response.json()?),
            status @ (403 | 404) => ProjectRead::Refused(status),
            _ => return Err(response.unexpected().into()),
        };
        Ok(ProjectAnswer { read, rate_limit })
    }

    /// `GET /personal_access_tokens/self`: the access token's scopes and
    /// expiry (personal, project and group access tokens). `None` for the
    /// job token, or where GitLab does not answer it (older GitLab, 404).
    pub async fn token_info(&self) -> Result<Option<TokenInfo>, GitLabError> {
        if self.auth.header != "PRIVATE-TOKEN" {
            return Ok(None);
        }
        let url = self.url("personal_access_tokens/self");
        let response = self.send(Method::GET, &url, |r| r).await?;
        match response.status.as_u16() {
            200 => Ok(Some(response.json()?)),
            403 | 404 => Ok(None),
            _ => Err(response.unexpected().into()),
        }
    }

    /// Which REST credentials this client sends (`JOB-TOKEN`, `PRIVATE-TOKEN`).
    pub fn credentials(&self) -> &'static str {
        self.auth.header
    }

    /// `DELETE …/tags` with a form body: GitLab's asynchronous bulk delete.
    pub async fn bulk_delete(
        &self,
        repository_id: u64,
        form: &[(String, String)],
    ) -> Result<BulkDelete, GitLabError> {
        let url = self.project_url(&format!("registry/repositories/{repository_id}/tags"));
        let body = form_encode(form);
        let response = self
            .send(Method::DELETE, &url, |r| {
                r.header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.clone())
            })
            .await?;
        match response.status.as_u16() {
            200..=299 => Ok(BulkDelete::Accepted),
            400 => {
                let message = crate::wire::http::error_message(&response.body);
                if message.contains("already been made") || message.contains("once an hour") {
                    if response.earlier_attempt_may_have_applied {
                        // Our own earlier attempt got through; only its answer was lost.
                        tracing::debug!(
                            repository_id,
                            attempts = response.attempts,
                            "bulk delete: an earlier attempt was accepted"
                        );
                        return Ok(BulkDelete::Accepted);
                    }
                    Ok(BulkDelete::AlreadyRequested(message))
                } else {
                    Err(response.unexpected().into())
                }
            }
            _ => Err(response.unexpected().into()),
        }
    }
}

/// The next page of an offset-paginated list: `x-next-page` (empty on the
/// last page), else `Link rel="next"`.
fn next_offset_page(
    pager: &mut Pager,
    response: &HttpResponse,
    url: &Url,
) -> Result<Option<Url>, HttpError> {
    if let Some(next) = response.header("x-next-page") {
        let next = next.trim();
        if next.is_empty() {
            return Ok(None);
        }
        let page: u64 = next
            .parse()
            .map_err(|_| response.invalid(format!("x-next-page {next:?} is not a page number")))?;
        let mut next_url = url.clone();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        next_url
            .query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("page", &page.to_string());
        return pager.follow(response, url, next_url).map(Some);
    }
    pager.next_from_link(response, url)
}

/// `application/x-www-form-urlencoded`: `+` in a regex must become `%2B`.
pub fn form_encode(form: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use crate::wire::secret::Secret;
    use gitlab_emulator::{Config, Emulator};

    /// A REST client for the emulator, with its job token or (laptop) its
    /// access token.
    pub(crate) fn emulated(emulator: &Emulator, job_token: bool) -> GitLab {
        let config = emulator.config();
        let auth = if job_token {
            RestAuth {
                header: "JOB-TOKEN",
                token: Secret::new(config.job_token),
            }
        } else {
            RestAuth {
                header: "PRIVATE-TOKEN",
                token: Secret::new(config.access_token),
            }
        };
        GitLab::new(
            Http::new(crate::wire::http::HttpOptions::default()).expect("client"),
            Url::parse(&format!("{}/api/v4", emulator.gitlab_url())).expect("url"),
            config.project_id.to_string(),
            auth,
        )
    }

    pub(crate) fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    /// The requests ref discovery made: (branches, git tags, merge requests).
    fn ref_requests(emulator: &Emulator) -> (usize, usize, usize) {
        (
            emulator.count("GET", "/repository/branches"),
            emulator.count("GET", "/repository/tags"),
            emulator.count("GET", "/merge_requests"),
        )
    }

    #[test]
    fn refs_list_every_page_of_branches_tags_and_open_mrs() {
        let emulator = Emulator::start(Config::default());
        for i in 0..1000 {
            emulator.add_branch(&format!("feature/T-{i:04}"));
        }
        for i in 0..50 {
            emulator.add_git_tag(&format!("v1.{i}.0"));
        }
        for iid in 1..=30 {
            emulator.add_merge_request(iid, &format!("feature/T-{iid:04}"), "opened", false);
        }
        emulator.add_merge_request(31, "done", "merged", false);
        emulator.add_merge_request(32, "dropped", "closed", false);

        let refs = block_on(emulated(&emulator, true).refs());
        assert!(refs.complete, "{:?}", refs.incomplete_because);
        assert_eq!(refs.incomplete_because, None);
        assert_eq!(refs.slugs.len(), 1050);
        assert!(refs.slugs.contains("feature-t-0999"));
        assert!(refs.slugs.contains("v1-49-0"));
        assert!(!refs.slugs.contains("done"));
        assert_eq!(refs.open_mrs, (1..=30).collect());
        // 1,000 branches: 10 pages of 100; 50 tags and 30 MRs: one page each.
        assert_eq!(ref_requests(&emulator), (10, 1, 1));
        assert_eq!(emulator.requests().len(), 12, "nothing else");
        assert!(emulator
            .requests()
            .iter()
            .all(|r| r.query.contains("per_page=100")));
    }

    #[test]
    fn a_fork_mrs_source_branch_counts_as_existing() {
        let emulator = Emulator::start(Config::default());
        emulator.add_branch("main");
        emulator.add_merge_request(7, "Fix/Typo_1", "opened", true);
        emulator.add_merge_request(8, "stale-fork-branch", "closed", true);
        let refs = block_on(emulated(&emulator, false).refs());
        assert!(refs.complete);
        assert_eq!(
            refs.slugs.iter().map(String::as_str).collect::<Vec<_>>(),
            ["fix-typo-1", "main"]
        );
        assert_eq!(refs.open_mrs, [7].into());
    }

    #[test]
    fn a_refused_job_token_gives_incomplete_refs_with_the_reason() {
        let emulator = Emulator::start(Config {
            refs_refuse_job_token: true,
            ..Config::default()
        });
        emulator.add_branch("main");
        let refs = block_on(emulated(&emulator, true).refs());
        assert!(!refs.complete);
        assert!(refs.slugs.is_empty() && refs.open_mrs.is_empty());
        let reason = refs.incomplete_because.expect("a reason");
        assert!(reason.contains("GITLAB_TOKEN"), "{reason}");
        assert!(reason.contains("read_api"), "{reason}");
        assert!(
            reason.contains("GET /projects/:id/repository/branches"),
            "{reason}"
        );
        assert!(reason.contains("403"), "{reason}");
        assert!(!reason.contains(&emulator.config().job_token), "{reason}");
        // The first refusal ends ref discovery.
        assert_eq!(ref_requests(&emulator), (1, 0, 0));

        // An access token reads them.
        let refs = block_on(emulated(&emulator, false).refs());
        assert!(refs.complete);
    }

    #[test]
    fn a_failing_listing_gives_incomplete_refs() {
        let emulator = Emulator::start(Config {
            tamper: vec![gitlab_emulator::Tamper::on(Some("GET"), "/merge_requests").status(404)],
            ..Config::default()
        });
        emulator.add_branch("main");
        let refs = block_on(emulated(&emulator, true).refs());
        assert!(!refs.complete);
        let reason = refs.incomplete_because.expect("a reason");
        assert!(
            reason.contains("open merge requests (GET /projects/:id/merge_requests) failed"),
            "{reason}"
        );
    }

    #[test]
    fn ref_slugs_are_gitlabs() {
        assert_eq!(ref_slug("main"), "main");
        assert_eq!(ref_slug("Feature/JIRA-12_x"), "feature-jira-12-x");
        assert_eq!(ref_slug("-leading/"), "leading");
        assert_eq!(ref_slug("über"), "ber");
        // Cut to 63, then trimmed: a `-` at position 63 goes.
        let long = format!("{}/{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(ref_slug(&long), "a".repeat(62));
        // Trimming first would have kept 63 characters.
        let dashed = format!("{}{}", "-".repeat(5), "c".repeat(70));
        assert_eq!(ref_slug(&dashed), "c".repeat(58));
    }

    #[test]
    fn form_bodies_encode_plus_and_pipes() {
        let body = form_encode(&[
            ("name_regex_delete".into(), "(?:v\\d+)".into()),
            ("name_regex_keep".into(), "(?:(?:a+)|(?:b))".into()),
        ]);
        assert_eq!(
            body,
            "name_regex_delete=%28%3F%3Av%5Cd%2B%29&name_regex_keep=%28%3F%3A%28%3F%3Aa%2B%29%7C%28%3F%3Ab%29%29"
        );
    }
}
