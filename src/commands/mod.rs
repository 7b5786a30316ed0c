//! One module per command; this one resolves the options, builds the
//! clients the commands share and prints how a command ended.

pub mod check;
pub mod delete;
pub mod inventory;
pub mod plan;
pub mod report_merge;
pub mod run;

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::Cli;
use crate::config::{CleanupEnv, ConfigError, GitLabEnv, Settings};
use crate::deleter::Deleter;
use crate::error::Exit;
use crate::gitlab::GitLab;
use crate::http::{Http, HttpOptions};
use crate::options::{self, Connection, Invocation};
use crate::registry::Registry;
use crate::report::Report;
use crate::report_stream::ReportStream;

/// Runs the parsed command line; errors carry the exit code in their type.
pub async fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    let env = CleanupEnv::from_env()?;
    match options::resolve(cli, &env)? {
        Invocation::Check(options) => check::check(options),
        Invocation::Plan(options) => plan::plan(options),
        Invocation::Delete(options) => delete::delete(options).await,
        Invocation::Run(options) => run::run(options).await,
        Invocation::Inventory(options) => inventory::inventory(options).await,
        Invocation::ReportMerge(options) => report_merge::report_merge(options),
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
                crate::gitlab::GROUP_TOKEN_ADVICE
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
            Some(_) => return Err(ConfigError::new(refusal("only CI_JOB_TOKEN is set"))),
            None => return Err(ConfigError::new(refusal("no GitLab credentials are set"))),
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
            ..HttpOptions::default()
        })?;
        let registry = Arc::new(Registry::new(
            http.clone(),
            settings.registry_url.clone(),
            settings.server_url.clone(),
            settings.registry_credentials.clone(),
        ));
        let gitlab = match (&settings.project, &settings.rest_auth) {
            (Some(project), Some(auth)) => Some(Arc::new(GitLab::new(
                http.clone(),
                settings.api_url.clone(),
                project.clone(),
                auth.clone(),
            ))),
            _ => None,
        };
        Ok(Clients {
            settings,
            http,
            registry,
            gitlab,
            concurrency: connection.concurrency,
        })
    }

    /// The REST client, or an error saying which variables it needs.
    pub fn require_gitlab(&self) -> Result<Arc<GitLab>, ConfigError> {
        self.settings.require_project()?;
        let auth = self.settings.require_rest_auth()?;
        self.gitlab.clone().ok_or_else(|| {
            ConfigError::new(format!(
                "no GitLab client for the {} credentials",
                auth.header
            ))
        })
    }

    pub fn deleter(&self) -> Deleter {
        Deleter::new(self.registry.clone(), self.gitlab.clone(), self.concurrency)
    }

    pub fn log_stats(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let (lowest_in_flight, too_many_requests) = self
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
            lowest_in_flight,
            "HTTP requests sent"
        );
    }
}

/// How a command whose report was streamed ([`ReportStream`]: summary
/// lines and report entries written as each repository finished) ends: the
/// totals, the report put in place, then [`conclude`].
pub fn finish_stream(stream: ReportStream) -> anyhow::Result<Exit> {
    let (totals_only, failures) = stream.finish()?;
    conclude(&totals_only, failures)
}

/// Prints the summary and writes the report when asked to: how every
/// command that deletes or plans ends (streamed ones: [`finish_stream`]).
pub fn finish(report: &Report, report_path: Option<&PathBuf>) -> anyhow::Result<Exit> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    report.print_summary(&mut out)?;
    if let Some(path) = report_path {
        report.write(path)?;
        tracing::info!(path = %path.display(), "report written");
    }
    conclude(report, report.has_failures())
}

/// The end every reporting command shares, streamed or not. `report` has
/// the final totals, and its repositories only when it was not streamed:
/// anything made from the totals (the counts for later jobs…) belongs here,
/// not in [`finish`], so that streamed runs and plans get it too.
fn conclude(_report: &Report, failures: bool) -> anyhow::Result<Exit> {
    Ok(if failures {
        Exit::Failed
    } else {
        Exit::Success
    })
}
