//! `bench-serial`: the cleanup `registry-cleanup run` does, one request at a
//! time, as a shell loop around curl would do it. The baseline of
//! `scripts/bench.sh`.
//!
//! Same work, same plan: it lists the project's repositories; per repository
//! it fetches a `pull,delete` registry token, lists the tags through the
//! registry's `/gitlab/v1` list (else the REST names, plus one details call
//! per tag when a rule needs dates), plans with the very planner the tool
//! uses, and deletes the planned tags one by one
//! (`DELETE /v2/<path>/manifests/<tag>`). It remembers a `/gitlab/v1` 404
//! and keeps its connections alive, which a curl loop would not: if anything
//! the baseline is flattered.
//!
//! Reads the same variables as the tool (`CI_SERVER_URL`, `CI_API_V4_URL`,
//! `CI_PROJECT_ID`, `CLEANUP_REGISTRY_URL`, `CI_REGISTRY_USER`,
//! `CI_REGISTRY_PASSWORD`, `CI_JOB_TOKEN` or `GITLAB_TOKEN`), takes
//! `--policy FILE`, and prints one JSON line:
//! `{"requests": N, "deleted": N, "tags": N, "seconds": S}`.
//! Tag names are sent as they are: the benchmark's names need no escaping.

use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use registry_cleanup::domain::model::Tag;
use registry_cleanup::domain::names::{Digest, RepositoryPath, TagName};
use registry_cleanup::domain::planner::plan_repository;
use registry_cleanup::domain::policy::Policy;

enum Auth<'a> {
    Rest,
    Basic,
    Bearer(&'a str),
}

struct Serial {
    http: reqwest::Client,
    requests: u64,
    server: String,
    api: String,
    registry: String,
    project: String,
    rest_header: (&'static str, String),
    user: String,
    password: String,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body).context("parsing an answer")
    }

    /// The `Link: <…>; rel="next"` target, if any.
    fn next_link(&self) -> Option<String> {
        let header = self.header("link")?;
        header.split(',').find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            params.contains("rel=\"next\"").then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
        })
    }
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| anyhow!("{name} is not set"))
}

impl Serial {
    fn from_env() -> anyhow::Result<Serial> {
        let server = env("CI_SERVER_URL")?.trim_end_matches('/').to_string();
        let api = std::env::var("CI_API_V4_URL").unwrap_or_else(|_| format!("{server}/api/v4"));
        let rest_header = match std::env::var("GITLAB_TOKEN") {
            Ok(token) => ("PRIVATE-TOKEN", token),
            Err(_) => ("JOB-TOKEN", env("CI_JOB_TOKEN")?),
        };
        Ok(Serial {
            http: reqwest::Client::builder().build()?,
            requests: 0,
            server,
            api: api.trim_end_matches('/').to_string(),
            registry: env("CLEANUP_REGISTRY_URL")?
                .trim_end_matches('/')
                .to_string(),
            project: env("CI_PROJECT_ID")?,
            rest_header,
            user: env("CI_REGISTRY_USER")?,
            password: env("CI_REGISTRY_PASSWORD")?,
        })
    }

    async fn call(&mut self, method: Method, url: &str, auth: Auth<'_>) -> anyhow::Result<Answer> {
        self.requests += 1;
        let request = self.http.request(method.clone(), url);
        let request = match auth {
            Auth::Rest => request.header(self.rest_header.0, &self.rest_header.1),
            Auth::Basic => request.basic_auth(&self.user, Some(&self.password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Every page of an offset-paginated REST list.
    async fn rest_pages<T: serde::de::DeserializeOwned>(
        &mut self,
        first: String,
    ) -> anyhow::Result<Vec<T>> {
        let mut items = Vec::new();
        let mut url = first;
        loop {
            let answer = self.call(Method::GET, &url, Auth::Rest).await?;
            if !answer.status.is_success() {
                bail!("GET {url}: {}", answer.status);
            }
            items.extend(answer.json::<Vec<T>>()?);
            match answer
                .header("x-next-page")
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                Some(page) => {
                    let base = url.split("&page=").next().unwrap_or(&url).to_string();
                    url = format!("{base}&page={page}");
                }
                None => return Ok(items),
            }
        }
    }
}

#[derive(Deserialize)]
struct Repository {
    id: u64,
    path: RepositoryPath,
}

#[derive(Deserialize)]
struct Listed {
    name: TagName,
    #[serde(default)]
    digest: Option<Digest>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
}

impl From<Listed> for Tag {
    fn from(listed: Listed) -> Tag {
        Tag {
            name: listed.name,
            digest: listed.digest,
            created_at: listed.created_at,
            pushed_at: None,
            protected: false,
            gitlab_rule: None,
            media_type: None,
            children: Vec::new(),
            image: false,
            referrers: 0,
            size_bytes: None,
            last_pulled_at: None,
        }
    }
}

async fn cleanup(policy: &Policy) -> anyhow::Result<(u64, usize, usize)> {
    let mut client = Serial::from_env()?;
    let now = Utc::now();
    let repositories: Vec<Repository> = client
        .rest_pages(format!(
            "{}/projects/{}/registry/repositories?per_page=100",
            client.api, client.project
        ))
        .await?;
    let (mut deleted, mut listed) = (0, 0);
    let mut gitlab_v1 = true;
    for repository in repositories {
        let path = &repository.path;
        let token_url = format!(
            "{}/jwt/auth?service=container_registry&scope=repository:{path}:pull,delete",
            client.server
        );
        let answer = client.call(Method::GET, &token_url, Auth::Basic).await?;
        #[derive(Deserialize)]
        struct Token {
            token: String,
        }
        let token = answer.json::<Token>()?.token;

        let mut tags: Vec<Tag> = Vec::new();
        if gitlab_v1 {
            let mut url = format!(
                "{}/gitlab/v1/repositories/{path}/tags/list/?n=1000",
                client.registry
            );
            loop {
                let answer = client.call(Method::GET, &url, Auth::Bearer(&token)).await?;
                if answer.status == StatusCode::NOT_FOUND {
                    gitlab_v1 = false;
                    break;
                }
                if !answer.status.is_success() {
                    bail!("GET {url}: {}", answer.status);
                }
                tags.extend(answer.json::<Vec<Listed>>()?.into_iter().map(Tag::from));
                match answer.next_link() {
                    Some(next) => url = format!("{}{next}", client.registry),
                    None => break,
                }
            }
        }
        if !gitlab_v1 {
            let base = format!(
                "{}/projects/{}/registry/repositories/{}/tags",
                client.api, client.project, repository.id
            );
            let names: Vec<Listed> = client.rest_pages(format!("{base}?per_page=100")).await?;
            if policy.needs_dates(path) {
                for listed in names {
                    let url = format!("{base}/{}", listed.name);
                    let answer = client.call(Method::GET, &url, Auth::Rest).await?;
                    if answer.status.is_success() {
                        tags.push(answer.json::<Listed>()?.into());
                    }
                }
            } else {
                tags.extend(names.into_iter().map(Tag::from));
            }
        }
        listed += tags.len();

        let plan = plan_repository(policy, path, &tags, None, now);
        for deletion in &plan.delete {
            let url = format!(
                "{}/v2/{path}/manifests/{}",
                client.registry, deletion.tag.name
            );
            let answer = client
                .call(Method::DELETE, &url, Auth::Bearer(&token))
                .await?;
            match answer.status.as_u16() {
                200..=299 => deleted += 1,
                404 => {}
                status => bail!("DELETE {url}: {status}"),
            }
        }
    }
    Ok((client.requests, deleted, listed))
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let policy = match (args.next().as_deref(), args.next()) {
        (Some("--policy"), Some(path)) => path,
        _ => {
            eprintln!(
                "usage: bench-serial --policy FILE  (with the CI_* variables of registry-cleanup)"
            );
            return std::process::ExitCode::from(2);
        }
    };
    let outcome = (|| -> anyhow::Result<(u64, usize, usize, f64)> {
        let policy = Policy::load(std::path::Path::new(&policy)).map_err(|err| anyhow!("{err}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let started = Instant::now();
        let (requests, deleted, tags) = runtime.block_on(cleanup(&policy))?;
        Ok((requests, deleted, tags, started.elapsed().as_secs_f64()))
    })();
    match outcome {
        Ok((requests, deleted, tags, seconds)) => {
            println!(
                "{}",
                serde_json::json!({"requests": requests, "deleted": deleted, "tags": tags, "seconds": seconds})
            );
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench-serial: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
