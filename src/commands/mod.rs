//! One module per command; this one resolves the options, builds the
//! clients the commands share and prints how a command ended.

pub mod check;
pub mod delete;
pub mod doctor;
pub mod inventory;
pub mod plan;
pub mod policy;
pub mod report_merge;
pub mod run;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::Context as _;

use crate::cli::Cli;
use crate::config::{CleanupEnv, ConfigError, GitLabEnv, Settings};
use crate::deleter::Deleter;
use crate::error::Exit;
use crate::gitlab::GitLab;
use crate::http::{Http, HttpOptions};
use crate::options::{self, Connection, Invocation};
use crate::outputs::{self, Outputs};
use crate::paths::normalise_repository;
use crate::registry::Registry;
use crate::report::Report;
use crate::sections;

/// When the command started, for the elapsed time in the summary.
static STARTED: OnceLock<Instant> = OnceLock::new();
use crate::report_stream::ReportStream;

/// Runs the parsed command line; errors carry the exit code in their type.
pub async fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    STARTED.get_or_init(Instant::now);
    let env = CleanupEnv::from_env()?;
    match options::resolve(cli, &env)? {
        Invocation::Check(options) => check::check(options),
        Invocation::Plan(options) => plan::plan(options),
        Invocation::Delete(options) => delete::delete(options).await,
        Invocation::Run(options) => run::run(options).await,
        Invocation::Inventory(options) => inventory::inventory(options).await,
        Invocation::Doctor(options) => doctor::doctor(options).await,
        Invocation::PolicyImport(options) => policy::import(options).await,
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
            url_variables: settings.url_variables.clone(),
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

    /// Contacts the registry once (`GET /v2/`) before any repository is
    /// worked on. No answer after the retries stops the run with one error
    /// naming the URL and the variable that set it (exit 1), instead of
    /// every repository waiting out the same retries. Other answers are
    /// left to the calls that need them, as before.
    pub async fn probe_registry(&self) -> anyhow::Result<()> {
        match self.registry.probe().await {
            Err(err) if err.is_unreachable() => Err(self.unreachable(err)),
            _ => Ok(()),
        }
    }

    /// The error that stops a run when the registry cannot be reached.
    pub fn unreachable(&self, err: crate::registry::RegistryError) -> anyhow::Error {
        let url = self.settings.registry_url.as_str();
        let from = self.settings.registry_url_from;
        anyhow::Error::new(err).context(format!(
            "the registry at {url} (from {from}) cannot be reached; nothing was deleted. \
             Check {from} (and that the registry runs and this machine can reach it)"
        ))
    }

    /// The full paths `--repository` values name, relative ones resolved
    /// against the project's root image. Malformed values are refused
    /// before any request, also when the root must first be read from
    /// GitLab (`CI_PROJECT_ID` alone).
    pub async fn repository_paths(
        &self,
        inputs: &[String],
    ) -> anyhow::Result<Vec<crate::names::RepositoryPath>> {
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
    pub async fn root_repository(&self) -> anyhow::Result<String> {
        if let Some(root) = &self.settings.root_repository {
            return Ok(root.clone());
        }
        let gitlab = self.require_gitlab()?;
        let path = gitlab
            .project_path()
            .await
            .context("reading the project's path from its container repositories")?;
        match path {
            Some(path) => {
                tracing::info!(project = %path, "project path read from its container repositories (CI_PROJECT_ID alone)");
                Ok(path)
            }
            None => Err(ConfigError::new(
                "cannot tell the project's image path: CI_PROJECT_ID alone names the project, and it has no container repository to read the path from; set CI_PROJECT_PATH (group/project) or CI_REGISTRY_IMAGE",
            )
            .into()),
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

/// How a command whose report was streamed ([`ReportStream`]: summary
/// lines and report entries written as each repository finished) ends: the
/// totals, the report put in place, then [`conclude`]. `counts`: the count
/// files to write from the totals.
pub fn finish_stream(
    stream: ReportStream,
    counts: &crate::options::CountFiles,
) -> anyhow::Result<Exit> {
    let (totals_only, failures) = stream.finish()?;
    print_elapsed(&mut std::io::stdout().lock())?;
    conclude(&totals_only, &counts.with_report(None), failures)
}

/// Prints the summary (in collapsible sections inside GitLab CI) and
/// writes the report and count files asked for: how every command that
/// deletes or plans ends (streamed ones: [`finish_stream`]). `outputs`: an
/// [`Outputs`], or just the report path (`Option<&PathBuf>`).
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
    print_elapsed(&mut out)?;
    if let Some(path) = &outputs.report {
        report.write(path)?;
        tracing::info!(path = %path.display(), "report written");
    }
    conclude(report, &outputs, report.has_failures())
}

/// The time since the command started, after the summary: apart from the
/// total line, whose figures tests and scripts compare.
fn print_elapsed(out: &mut impl std::io::Write) -> std::io::Result<()> {
    if let Some(elapsed) = STARTED.get().map(|started| started.elapsed()) {
        writeln!(out, "elapsed: {:.1} s", elapsed.as_secs_f64())?;
    }
    Ok(())
}

/// The end every reporting command shares, streamed or not. `report` has
/// the final totals, and its repositories only when it was not streamed:
/// anything made from the totals (the counts for later jobs…) belongs here,
/// not in [`finish`], so that streamed runs and plans get it too.
fn conclude(report: &Report, outputs: &Outputs, failures: bool) -> anyhow::Result<Exit> {
    if let Some(path) = &outputs.dotenv {
        outputs::write_dotenv(report, path)?;
        tracing::info!(path = %path.display(), "dotenv written");
    }
    if let Some(path) = &outputs.metrics {
        outputs::write_metrics(report, path)?;
        tracing::info!(path = %path.display(), "metrics written");
    }
    Ok(if failures {
        Exit::Failed
    } else {
        Exit::Success
    })
}
