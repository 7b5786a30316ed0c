//! One module per command; this one resolves the options, builds the
//! clients the commands share and prints how a command ended.

pub mod check;
pub mod delete;
pub mod doctor;
pub mod inventory;
pub mod plan;
pub mod policy;
pub mod run;

use std::sync::Arc;

use crate::cli::Cli;
use crate::config::{CleanupEnv, ConfigError, GitLabEnv, Settings};
use crate::deleter::Deleter;
use crate::error::Exit;
use crate::gitlab::GitLab;
use crate::http::{Http, HttpOptions};
use crate::options::{self, Connection, Invocation};
use crate::outputs::{self, Outputs};
use crate::registry::Registry;
use crate::report::Report;
use crate::sections;

/// Runs the parsed command line; errors carry the exit code in their type.
pub async fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    let env = CleanupEnv::from_env()?;
    match options::resolve(cli, &env)? {
        Invocation::Check(options) => check::check(options),
        Invocation::Plan(options) => plan::plan(options),
        Invocation::Delete(options) => delete::delete(options).await,
        Invocation::Run(options) => run::run(options).await,
        Invocation::Inventory(options) => inventory::inventory(options).await,
        Invocation::Doctor(options) => doctor::doctor(options).await,
        Invocation::PolicyImport(options) => policy::import(options).await,
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

/// Prints the summary (in collapsible sections inside GitLab CI) and
/// writes the report and count files asked for: how every command that
/// deletes or plans ends. `outputs`: an [`Outputs`], or just the report
/// path (`Option<&PathBuf>`).
pub fn finish(report: &Report, outputs: impl Into<Outputs>) -> anyhow::Result<Exit> {
    let outputs: Outputs = outputs.into();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    sections::print_summary(
        report,
        sections::in_gitlab_ci(),
        chrono::Utc::now().timestamp(),
        &mut out,
    )?;
    if let Some(path) = &outputs.report {
        report.write(path)?;
        tracing::info!(path = %path.display(), "report written");
    }
    if let Some(path) = &outputs.dotenv {
        outputs::write_dotenv(report, path)?;
        tracing::info!(path = %path.display(), "dotenv written");
    }
    if let Some(path) = &outputs.metrics {
        outputs::write_metrics(report, path)?;
        tracing::info!(path = %path.display(), "metrics written");
    }
    Ok(if report.has_failures() {
        Exit::Failed
    } else {
        Exit::Success
    })
}
