//! GitLab's REST API for the project's container registry.

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::config::{join_path, ConfigError, RestAuth};
use crate::error::{Exit, ExitCode};
use crate::http::{credential_header, display_url, Http, HttpError, HttpResponse};
use crate::links::Pager;
use crate::model::Tag;
use crate::names::{Digest, RepositoryPath, TagName};
use crate::registry::{encode_segment, listed_names};

const PER_PAGE: &str = "100";

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

impl ExitCode for GitLabError {
    fn exit_code(&self) -> Exit {
        match self {
            GitLabError::Http(err) => err.exit_code(),
            GitLabError::Config(err) => err.exit_code(),
            GitLabError::ForeignOrigin(_) => Exit::Failed,
        }
    }
}

/// A container repository as REST lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub id: u64,
    pub path: RepositoryPath,
    pub tags_count: Option<u64>,
}

/// One container tag protection rule. Immutable rules have no access
/// levels: nobody may push or delete matching tags.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct TagRule {
    pub tag_name_pattern: String,
    #[serde(default)]
    pub minimum_access_level_for_push: Option<String>,
    #[serde(default)]
    pub minimum_access_level_for_delete: Option<String>,
}

impl TagRule {
    pub fn is_immutable(&self) -> bool {
        self.minimum_access_level_for_push.is_none()
            && self.minimum_access_level_for_delete.is_none()
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
}

impl GitLab {
    pub fn new(http: Http, api: Url, project: String, auth: RestAuth) -> GitLab {
        GitLab {
            http,
            api,
            project,
            auth,
        }
    }

    fn url(&self, path: &str) -> Url {
        join_path(&self.api, path)
    }

    fn project_url(&self, rest: &str) -> Url {
        self.url(&format!("projects/{}/{rest}", self.project))
    }

    async fn send(
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
            return Err(ConfigError::new(format!(
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
    async fn all_pages<T: serde::de::DeserializeOwned>(
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
        #[derive(Deserialize)]
        struct Listed {
            id: u64,
            path: String,
            #[serde(default)]
            tags_count: Option<u64>,
        }
        let mut url = self.project_url("registry/repositories");
        url.query_pairs_mut()
            .append_pair("per_page", PER_PAGE)
            .append_pair("tags_count", "true");
        let listed: Vec<Listed> = self.all_pages(url.clone()).await?;
        listed
            .into_iter()
            .map(|repository| {
                let path = RepositoryPath::parse(&repository.path).map_err(|_| {
                    HttpError::InvalidResponse {
                        method: Method::GET,
                        url: display_url(&url),
                        message: format!(
                            "GitLab listed a container repository with the path {:?}, which is not a valid repository path; refusing to work from this listing",
                            repository.path
                        ),
                    }
                })?;
                Ok(RepositoryInfo {
                    id: repository.id,
                    path,
                    tags_count: repository.tags_count,
                })
            })
            .collect()
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
            media_type: None,
            children: Vec::new(),
            image: false,
            referrers: 0,
        }))
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
                message: crate::http::error_message(&response.body),
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
                let message = crate::http::error_message(&response.body);
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
mod tests {
    use super::*;

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
