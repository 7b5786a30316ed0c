//! One module per command; this one builds what they share.

pub mod check;
pub mod delete;
pub mod inventory;
pub mod plan;
pub mod run;

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::{Cli, Command, CommonRunArgs};
use crate::config::{CleanupEnv, GitLabEnv, Settings};
use crate::deleter::Deleter;
use crate::error::Exit;
use crate::gitlab::GitLab;
use crate::http::{Http, HttpOptions};
use crate::policy::{Policy, DEFAULT_POLICY_PATH};
use crate::registry::Registry;
use crate::report::Report;

/// Runs the parsed command line; errors carry the exit code in their type.
pub async fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    let env = CleanupEnv::from_env()?;
    let allow_insecure_http = cli.global.allow_insecure_http || env.allow_insecure_http()?;
    // The report records what was deleted: find out now, not after the
    // deletions, that it cannot be written.
    let report = match &cli.command {
        Command::Run(args) => args.common.report.clone(),
        Command::Delete(args) => args.common.report.clone(),
        Command::Plan(args) => args.report.clone(),
        Command::Check(_) | Command::Inventory(_) => None,
    };
    let report_flag = report.is_some();
    if let Some(path) = report.or_else(|| match &cli.command {
        Command::Run(_) | Command::Delete(_) | Command::Plan(_) => env.path(&env.cleanup_report),
        Command::Check(_) | Command::Inventory(_) => None,
    }) {
        check_report_path(
            &path,
            if report_flag {
                "--report"
            } else {
                "CLEANUP_REPORT"
            },
        )?;
    }
    match cli.command {
        Command::Check(args) => check::check(args, &env),
        Command::Plan(args) => plan::plan(args, &env),
        Command::Delete(args) => delete::delete(args, &env, allow_insecure_http).await,
        Command::Run(args) => run::run(args, &env, allow_insecure_http).await,
        Command::Inventory(args) => inventory::inventory(args, &env, allow_insecure_http).await,
    }
}

/// The GitLab and registry clients, sharing one connection pool.
pub struct Context {
    pub settings: Settings,
    pub http: Http,
    pub registry: Arc<Registry>,
    /// `None` without REST credentials or a project.
    pub gitlab: Option<Arc<GitLab>>,
    pub concurrency: usize,
}

impl Context {
    pub fn from_env(allow_insecure_http: bool, concurrency: usize) -> anyhow::Result<Context> {
        let settings = Settings::from_env(&GitLabEnv::from_env()?, allow_insecure_http)?;
        let http = Http::new(HttpOptions {
            extra_ca_files: settings.extra_ca_files.clone(),
            pool_size: concurrency.max(8),
            max_in_flight: Some(concurrency),
            retry: CleanupEnv::from_env()?.retry_policy()?,
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
        Ok(Context {
            settings,
            http,
            registry,
            gitlab,
            concurrency,
        })
    }

    /// The REST client, or an error saying which variables it needs.
    pub fn require_gitlab(&self) -> anyhow::Result<Arc<GitLab>> {
        self.settings.require_project()?;
        self.settings.require_rest_auth()?;
        self.gitlab
            .clone()
            .ok_or_else(|| anyhow::anyhow!("internal error: GitLab client missing"))
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

/// The options `delete` and `run` share, each flag winning over its variable.
pub struct CommonOptions {
    pub dry_run: bool,
    pub report: Option<PathBuf>,
    pub concurrency: usize,
}

impl CommonOptions {
    pub fn resolve(args: &CommonRunArgs, env: &CleanupEnv) -> anyhow::Result<CommonOptions> {
        Ok(CommonOptions {
            dry_run: args.dry_run || env.dry_run()?,
            report: args
                .report
                .clone()
                .or_else(|| env.path(&env.cleanup_report)),
            concurrency: env.concurrency(args.concurrency)?,
        })
    }
}

/// `--policy`, else `CLEANUP_POLICY`, else the default path.
pub fn load_policy(flag: Option<PathBuf>, env: &CleanupEnv) -> anyhow::Result<(PathBuf, Policy)> {
    let path = flag
        .or_else(|| env.path(&env.cleanup_policy))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY_PATH));
    let policy = Policy::load(&path)?;
    Ok((path, policy))
}

/// Fails (exit 2) unless `path` can be written: an existing file opened for
/// appending (nothing truncated), or a new file created and removed again.
fn check_report_path(path: &std::path::Path, name: &str) -> anyhow::Result<()> {
    use std::fs::OpenOptions;
    let outcome = if path.exists() {
        OpenOptions::new().append(true).open(path).map(drop)
    } else {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|_| std::fs::remove_file(path))
    };
    outcome.map_err(|err| {
        crate::user_error!(
            "{name} {}: the report cannot be written there ({err}); nothing was done. Choose a file in an existing, writable directory",
            path.display()
        )
    })
}

/// Prints the summary and writes the report when asked to.
pub fn finish(report: &Report, report_path: Option<PathBuf>) -> anyhow::Result<Exit> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    report.print_summary(&mut out)?;
    if let Some(path) = report_path {
        report.write(&path)?;
        tracing::info!(path = %path.display(), "report written");
    }
    Ok(if report.has_failures() {
        Exit::Failed
    } else {
        Exit::Success
    })
}
