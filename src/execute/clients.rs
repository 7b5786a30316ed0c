//! The GitLab and registry clients a run shares: one connection pool, one
//! budget of requests in flight, and the credentials each mode needs.

use std::sync::Arc;

use crate::config::options::Connection;
use crate::config::paths::normalise_repository;
use crate::config::settings::{GitLabEnv, Settings};
use crate::domain::config_error::ConfigError;
use crate::domain::exit::{Exit, ExitCode};
use crate::domain::model::RepositoryInfo;
use crate::domain::names::RepositoryPath;
use crate::execute::deleter::Deleter;
use crate::gitlab::client::GitLab;
use crate::gitlab::client::GitLabError;
use crate::ledger::client::LedgerClient;
use crate::registry::client::{Registry, RegistryError};
use crate::wire::http::{Http, HttpError, HttpOptions};

/// Why the clients could not be made ready for a command.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reading the project's path from its container repositories")]
    ProjectPath(#[source] Box<GitLabError>),
    #[error(
        "the registry at {url} (from {from}) cannot be reached; nothing was deleted. \
         Check {from} (and that the registry runs and this machine can reach it)"
    )]
    Unreachable {
        url: String,
        from: &'static str,
        #[source]
        source: Box<RegistryError>,
    },
}

impl ExitCode for ClientsError {
    fn exit_code(&self) -> Exit {
        match self {
            ClientsError::Config(err) => err.exit_code(),
            ClientsError::ProjectPath(err) => err.exit_code(),
            ClientsError::Unreachable { source, .. } => source.exit_code(),
        }
    }
}

/// The GitLab and registry clients, sharing one connection pool and one
/// budget of requests in flight.
pub struct Clients {
    pub settings: Settings,
    pub http: Http,
    pub registry: Arc<Registry>,
    /// `None` without REST credentials or a project.
    pub gitlab: Option<Arc<GitLab>>,
    /// The pull ledger (`--ledger`), on the same pool and request budget.
    pub ledger: Option<Arc<LedgerClient>>,
    pub concurrency: usize,
}

impl Clients {
    pub fn new(connection: &Connection) -> Result<Clients, ConfigError> {
        let settings = Settings::from_env(&GitLabEnv::from_env()?, connection.allow_insecure_http)?;
        Clients::with_settings(settings, connection)
    }

    /// The clients for group mode. GitLab refuses the job token on the
    /// group endpoint, and a job token's registry JWTs cover its own project
    /// only: without an access token, refused here, before any request.
    /// The access token then also asks for the registry tokens, which may
    /// then cover the repositories of every project it can reach.
    pub fn for_group(connection: &Connection) -> Result<Clients, ConfigError> {
        Clients::with_access_token(connection, |no_token| {
            format!(
                "{no_token}, and GitLab refuses the job token for a group: {}",
                crate::gitlab::client::GROUP_TOKEN_ADVICE
            )
        })
    }

    /// The clients for instance mode: like [`Clients::for_group`], with an
    /// administrator's access token (only it may read the catalog).
    pub fn for_instance(connection: &Connection) -> Result<Clients, ConfigError> {
        Clients::with_access_token(connection, |no_token| {
            format!(
                "{no_token}: --instance needs an administrator's access token (scopes api, read_registry, write_registry) in GITLAB_TOKEN; only administrators may read the registry's catalog"
            )
        })
    }

    fn with_access_token(
        connection: &Connection,
        refusal: impl Fn(&str) -> String,
    ) -> Result<Clients, ConfigError> {
        let mut settings =
            Settings::from_env(&GitLabEnv::from_env()?, connection.allow_insecure_http)?;
        let token = match &settings.rest_auth {
            Some(auth) if auth.header == "PRIVATE-TOKEN" => auth.token.clone(),
            Some(_) => {
                return Err(ConfigError::credentials(refusal(
                    "only CI_JOB_TOKEN is set",
                )))
            }
            None => {
                return Err(ConfigError::credentials(refusal(
                    "no GitLab credentials are set",
                )))
            }
        };
        // GitLab accepts an access token with any user name on /jwt/auth.
        settings.registry_credentials = Some(("registry-cleanup".to_string(), token));
        let mut clients = Clients::with_settings(settings, connection)?;
        if clients.gitlab.is_none() {
            // No project set (outside CI): the group client still needs a
            // GitLab; its project is never used, each repository's is.
            let auth = clients.settings.require_rest_auth()?.clone();
            clients.gitlab = Some(Arc::new(GitLab::new(
                clients.http.clone(),
                clients.settings.api_url.clone(),
                String::new(),
                auth,
            )));
        }
        Ok(clients)
    }

    fn with_settings(settings: Settings, connection: &Connection) -> Result<Clients, ConfigError> {
        let http = Http::new(HttpOptions {
            extra_ca_files: settings.extra_ca_files.clone(),
            pool_size: connection.concurrency.max(8),
            max_in_flight: Some(connection.concurrency),
            retry: connection.retry.clone(),
            url_variables: settings
                .url_variables
                .iter()
                .cloned()
                .chain(
                    connection
                        .ledger
                        .iter()
                        .map(|ledger| (ledger.url.clone(), "CLEANUP_LEDGER_URL")),
                )
                .collect(),
            ..HttpOptions::default()
        })?;
        let registry = Arc::new(Registry::new(
            http.clone(),
            settings.registry_url.clone(),
            settings.server_url.clone(),
            settings.registry_credentials.clone(),
        ));
        let gitlab = match (&settings.project, &settings.rest_auth) {
            (Some(project), Some(auth)) => Some(Arc::new(
                GitLab::new(
                    http.clone(),
                    settings.api_url.clone(),
                    project.clone(),
                    auth.clone(),
                )
                .with_default_branch(settings.default_branch.clone()),
            )),
            _ => None,
        };
        let ledger = connection.ledger.as_ref().map(|ledger| {
            Arc::new(LedgerClient::new(
                http.clone(),
                ledger.url.clone(),
                ledger.token.clone(),
            ))
        });
        Ok(Clients {
            settings,
            http,
            registry,
            gitlab,
            ledger,
            concurrency: connection.concurrency,
        })
    }

    /// The REST client, or an error saying which variables it needs.
    pub fn require_gitlab(&self) -> Result<Arc<GitLab>, ConfigError> {
        self.settings.require_project()?;
        let auth = self.settings.require_rest_auth()?;
        self.gitlab.clone().ok_or_else(|| {
            ConfigError::credentials(format!(
                "no GitLab client for the {} credentials",
                auth.header
            ))
        })
    }

    /// Contacts the registry once (`GET /v2/`) before any repository is
    /// worked on. No answer after the retries stops the run with one error
    /// naming the URL and the variable that set it (exit 1), instead of
    /// every repository waiting out the same retries. Other answers are
    /// left to the calls that need them, as before.
    pub async fn probe_registry(&self) -> Result<(), ClientsError> {
        match self.registry.probe().await {
            Err(err) if err.is_unreachable() => Err(self.unreachable(err)),
            // No registry answers 404 on its base route: the URL names
            // something else (often GitLab itself). Said once, before any
            // repository, instead of once per repository.
            Err(RegistryError::Http(HttpError::Status { status, .. }))
                if status == reqwest::StatusCode::NOT_FOUND =>
            {
                let from = self.settings.registry_url_from;
                Err(ConfigError::variable(
                    from,
                    format!(
                        "the registry at {} (from {from}) answered 404 to GET /v2/: that is no container registry (is it GitLab's own URL?); nothing was done. Set {from} to the registry's host (GitLab shows it under Deploy > Container registry), or CLEANUP_REGISTRY_URL to its full URL",
                        self.settings.registry_url
                    ),
                )
                .into())
            }
            _ => Ok(()),
        }
    }

    /// The error that stops a run when the registry cannot be reached.
    pub fn unreachable(&self, source: RegistryError) -> ClientsError {
        ClientsError::Unreachable {
            url: self.settings.registry_url.to_string(),
            from: self.settings.registry_url_from,
            source: Box::new(source),
        }
    }

    /// The full paths `--repository` values name, relative ones resolved
    /// against the project's root image. Malformed values are refused
    /// before any request, also when the root must first be read from
    /// GitLab (`CI_PROJECT_ID` alone).
    pub async fn repository_paths(
        &self,
        inputs: &[String],
    ) -> Result<Vec<RepositoryPath>, ClientsError> {
        let host = self.settings.registry_host.as_deref();
        if self.settings.root_repository.is_none() {
            // Any valid root gives the same verdict on a value's syntax.
            for input in inputs {
                normalise_repository(input, "group/project", host)?;
            }
        }
        let root = self.root_repository().await?;
        let mut paths = Vec::with_capacity(inputs.len());
        for input in inputs {
            paths.push(normalise_repository(input, &root, host)?);
        }
        Ok(paths)
    }

    /// The project's root image path: from `CI_REGISTRY_IMAGE` or
    /// `CI_PROJECT_PATH`, else (`CI_PROJECT_ID` alone) read from the
    /// project's repository listing.
    pub async fn root_repository(&self) -> Result<String, ClientsError> {
        if let Some(root) = &self.settings.root_repository {
            return Ok(root.clone());
        }
        let gitlab = self.require_gitlab()?;
        let path = gitlab
            .project_path()
            .await
            .map_err(|err| ClientsError::ProjectPath(Box::new(err)))?;
        match path {
            Some(path) => {
                tracing::info!(project = %path, "project path read from its container repositories (CI_PROJECT_ID alone)");
                Ok(path)
            }
            None => Err(ConfigError::variable("CI_PROJECT_PATH", 
                "cannot tell the project's image path: CI_PROJECT_ID alone names the project, and it has no container repository to read the path from; set CI_PROJECT_PATH (group/project) or CI_REGISTRY_IMAGE",
            )
            .into()),
        }
    }

    /// The project named twice — by id (`CI_PROJECT_ID`) and by path
    /// (`CI_PROJECT_PATH`, `CI_REGISTRY_IMAGE`) — must be one project: the
    /// id's repositories must lie under the path. Otherwise a run would
    /// clean another project than the one the path names, without a word.
    pub fn check_project_agrees(&self, repositories: &[RepositoryInfo]) -> Result<(), ConfigError> {
        let settings = &self.settings;
        let (Some("CI_PROJECT_ID"), Some(root), Some(project)) = (
            settings.project_variable,
            settings.root_repository.as_deref(),
            settings.project.as_deref(),
        ) else {
            return Ok(());
        };
        let under_root = |path: &str| {
            path == root
                || path
                    .strip_prefix(root)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        match repositories
            .iter()
            .find(|info| !under_root(info.path.as_str()))
        {
            None => Ok(()),
            Some(other) => {
                let variable = settings.root_variable.unwrap_or("CI_PROJECT_PATH");
                Err(ConfigError::variable(
                    "CI_PROJECT_ID",
                    format!(
                        "CI_PROJECT_ID={project} and {variable} name different projects: project {project} has the container repository {}, which is not {root} or under it; nothing was done. Fix the one that is wrong (GitLab sets both consistently in CI jobs)",
                        other.path
                    ),
                ))
            }
        }
    }

    pub fn deleter(&self) -> Deleter {
        Deleter::new(self.registry.clone(), self.gitlab.clone(), self.concurrency)
    }

    pub fn log_stats(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        // After 429s the throttle lowers how many requests it lets out at
        // once: the lowest it went is what a user can compare with
        // CLEANUP_CONCURRENCY.
        let (fewest_requests_at_once, too_many_requests) = self
            .http
            .throttle()
            .map(|throttle| throttle.summary())
            .unwrap_or((self.concurrency, 0));
        tracing::info!(
            requests = self.http.stats.requests.load(Relaxed),
            retries = self.http.stats.retries.load(Relaxed),
            retry_wait_ms = self.http.stats.retry_wait_ms.load(Relaxed),
            longest_retry_wait_ms = self.http.stats.longest_retry_wait_ms.load(Relaxed),
            rate_limit_waits = self.http.stats.rate_limit_waits.load(Relaxed),
            too_many_requests,
            fewest_requests_at_once,
            "HTTP requests sent"
        );
    }
}
