//! Every command's options, resolved once: flag, else `CLEANUP_*` variable,
//! else default. The commands receive these values and never look at the
//! environment or the flags again, so each setting has one source of truth
//! and each error names the flag or variable it came from.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::ValueEnum;

use crate::config::cli::{
    Cli, Command, CommonRunArgs, Engine, LedgerCommand, NetworkArgs, ReportCommand,
};
use crate::config::ledger::{LedgerServeOptions, LedgerTarget};
use crate::config::settings::CleanupEnv;
use crate::domain::config_error::ConfigError;
use crate::domain::names::{Reference, TagName};
use crate::domain::policy::DEFAULT_POLICY_PATH;
use crate::domain::shard::Shard;
use crate::wire::http::RetryPolicy;

/// One command line, resolved.
#[derive(Debug)]
pub enum Invocation {
    Check(CheckOptions),
    Plan(PlanOptions),
    Delete(DeleteOptions),
    Run(RunOptions),
    Inventory(InventoryOptions),
    Doctor(DoctorOptions),
    PolicyImport(ImportOptions),
    ReportMerge(ReportMergeOptions),
    LedgerServe(LedgerServeOptions),
    ReportHtml(ReportHtmlOptions),
    Restore(RestoreOptions),
}

/// `restore --report FILE [--repository PATH]... [--tag TAG]... [--dry-run] [--output FILE]`.
#[derive(Debug)]
pub struct RestoreOptions {
    pub connection: Connection,
    /// The run's report or journal (read, never written).
    pub record: PathBuf,
    /// As given (resolved against the project's root image later, before
    /// any request); empty: every repository of the record.
    pub repositories: Vec<String>,
    /// Empty: every tag of the record.
    pub tags: Vec<TagName>,
    pub dry_run: bool,
    /// `--output`/`CLEANUP_OUTPUT`: what restore did, as JSON.
    pub output: Option<PathBuf>,
}

#[derive(Debug)]
pub struct DoctorOptions {
    pub connection: Connection,
    pub policy: PathBuf,
    /// The policy path was given (flag or variable): then a missing file
    /// fails the check; the default path may be absent.
    pub policy_given: bool,
    /// `--group`/`CLEANUP_GROUP`: also check the group listing `run --group` needs.
    pub group: Option<String>,
}

#[derive(Debug)]
pub struct ImportOptions {
    pub connection: Connection,
    /// `None`: read the policy live from `GET /projects/:id`.
    pub from: Option<PathBuf>,
    pub output: Option<PathBuf>,
}

/// `report html REPORT [--output FILE]`.
#[derive(Debug)]
pub struct ReportHtmlOptions {
    pub report: PathBuf,
    /// Checked writable; the report's path with `.html` unless given.
    pub output: PathBuf,
}

#[derive(Debug)]
pub struct ReportMergeOptions {
    pub files: Vec<PathBuf>,
    pub report: Option<PathBuf>,
    pub counts: CountFiles,
}

/// How the commands that talk to GitLab connect.
#[derive(Debug, Clone)]
pub struct Connection {
    pub allow_insecure_http: bool,
    /// Requests in flight at once, in total.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// `--ledger` (`run`, `inventory`): where to read pulls from.
    pub ledger: Option<LedgerTarget>,
}

#[derive(Debug)]
pub struct CheckOptions {
    pub policy: PathBuf,
    /// `--engine`/`CLEANUP_ENGINE`: also check what that engine accepts.
    pub engine: Engine,
}

#[derive(Debug)]
pub struct PlanOptions {
    pub inventory: PathBuf,
    pub policy: PathBuf,
    pub now: DateTime<Utc>,
    pub report: Option<PathBuf>,
    /// `--html`/`CLEANUP_HTML`: the plan as an HTML page.
    pub html: Option<PathBuf>,
}

#[derive(Debug)]
pub struct DeleteOptions {
    pub connection: Connection,
    pub dry_run: bool,
    pub report: Option<PathBuf>,
    /// As given: relative paths are resolved against the project's root
    /// image once the GitLab settings are known, still before any request.
    pub repositories: Vec<String>,
    pub all_repositories: bool,
    pub references: Vec<Reference>,
    /// `--dotenv`/`--metrics` (or their variables): count files to write.
    pub counts: CountFiles,
}

/// Where `--dotenv` and `--metrics` (`CLEANUP_DOTENV`, `CLEANUP_METRICS`)
/// write the counts, and `--html` (`CLEANUP_HTML`) the page made from the
/// report: what is written beside the report; each checked writable before
/// anything is done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountFiles {
    pub dotenv: Option<PathBuf>,
    pub metrics: Option<PathBuf>,
    pub html: Option<PathBuf>,
}

impl CountFiles {
    /// With the report path, everything `commands::finish` writes.
    pub fn with_report(&self, report: Option<&PathBuf>) -> crate::config::options::Outputs {
        crate::config::options::Outputs {
            report: report.cloned(),
            dotenv: self.dotenv.clone(),
            metrics: self.metrics.clone(),
            html: self.html.clone(),
        }
    }
}

/// Which repositories `run` and `inventory` cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The project's (`CI_PROJECT_ID` / `CI_PROJECT_PATH`).
    Project,
    /// Those of every project in the group and its subgroups: the group's
    /// full path or numeric ID, as given.
    Group(String),
    /// Every repository of the registry (`GET /v2/_catalog`).
    Instance,
}

#[derive(Debug)]
pub struct RunOptions {
    pub connection: Connection,
    pub policy: PathBuf,
    pub engine: Engine,
    pub dry_run: bool,
    pub report: Option<PathBuf>,
    pub max_deletions: Option<usize>,
    pub counts: CountFiles,
    pub scope: Scope,
    /// Only the repositories of this shard (`None`: all of them).
    pub shard: Option<Shard>,
    /// `--plan`: the reviewed plan to apply, if any, and how old it may be.
    pub plan: crate::config::plan::PlanOptions,
}

#[derive(Debug)]
pub struct InventoryOptions {
    pub connection: Connection,
    pub repositories: Vec<String>,
    pub output: Option<PathBuf>,
    pub scope: Scope,
    pub shard: Option<Shard>,
}

/// Resolves the command line against the `CLEANUP_*` variables. Nothing
/// here touches the network; a report path that cannot be written is
/// refused here, before anything is deleted.
pub fn resolve(cli: Cli, env: &CleanupEnv) -> Result<Invocation, ConfigError> {
    let connection = |network: &NetworkArgs| -> Result<Connection, ConfigError> {
        Ok(Connection {
            allow_insecure_http: network.allow_insecure_http || env.allow_insecure_http()?,
            concurrency: env.concurrency(network.concurrency)?,
            retry: env.retry_policy()?,
            ledger: None,
        })
    };
    Ok(match cli.command {
        Command::Check(args) => Invocation::Check(CheckOptions {
            policy: policy_path(args.policy, env),
            engine: engine(args.engine, env)?,
        }),
        Command::Plan(args) => plan_options(args, env)?,
        Command::Delete(args) => delete_options(args, env, connection)?,
        Command::Run(args) => run_options(args, env, connection)?,
        Command::Doctor(args) => {
            let policy_given = args.policy.is_some() || env.path(&env.cleanup_policy).is_some();
            let group = match scope(args.group, false, env)? {
                Scope::Group(group) => Some(group),
                Scope::Project | Scope::Instance => None,
            };
            Invocation::Doctor(DoctorOptions {
                connection: connection(&args.network)?,
                policy: policy_path(args.policy, env),
                policy_given,
                group,
            })
        }
        Command::Policy(crate::config::cli::PolicyCommand::Import(args)) => {
            Invocation::PolicyImport(ImportOptions {
                connection: connection(&args.network)?,
                from: args.from.or_else(|| env.path(&env.cleanup_from)),
                output: args.output.or_else(|| env.path(&env.cleanup_output)),
            })
        }
        Command::Report(ReportCommand::Merge(args)) => {
            Invocation::ReportMerge(ReportMergeOptions {
                report: report_path(args.report, env)?,
                counts: count_files(&args.dotenv, &args.metrics, &args.html, env)?,
                files: args.files,
            })
        }
        Command::Ledger(LedgerCommand::Serve(args)) => {
            Invocation::LedgerServe(crate::config::ledger::serve_options(
                args.listen,
                args.db,
                args.ignore_user_agents,
                env,
            )?)
        }
        Command::Report(ReportCommand::Html(args)) => report_html_options(args, env)?,
        Command::Restore(args) => restore(args, env, connection)?,
        Command::Inventory(args) => inventory_options(args, env, connection)?,
    })
}

fn plan_options(
    args: crate::config::cli::PlanArgs,
    env: &CleanupEnv,
) -> Result<Invocation, ConfigError> {
    let report = report_path(args.report, env)?;
    let inventory = args
        .inventory
        .or_else(|| env.path(&env.cleanup_inventory))
        .ok_or_else(|| {
            ConfigError::argument("--inventory", 
                "plan needs an inventory: pass --inventory FILE (write one with `registry-cleanup inventory --output FILE`, or try examples/inventory.json)",
            )
        })?;
    let now = match (&args.now, env.string(&env.cleanup_now)) {
        (Some(text), _) => parse_now("--now", text)?,
        (None, Some(text)) => parse_now("CLEANUP_NOW", &text)?,
        (None, None) => Utc::now(),
    };
    let html = output_file(&args.html, "--html", &env.cleanup_html, "CLEANUP_HTML", env)?;
    Ok(Invocation::Plan(PlanOptions {
        inventory,
        policy: policy_path(args.policy, env),
        now,
        report,
        html,
    }))
}

fn delete_options(
    args: crate::config::cli::DeleteArgs,
    env: &CleanupEnv,
    connection: impl Fn(&NetworkArgs) -> Result<Connection, ConfigError>,
) -> Result<Invocation, ConfigError> {
    let (report, counts, dry_run, connection) = common(&args.common, env, connection)?;
    let references = args
        .refs
        .iter()
        .map(|text| {
            Reference::parse(text).map_err(|err| {
                ConfigError::argument("REF", format!("REF {err} (or give a sha256: digest)"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let all_repositories = args.all_repositories || env.all_repositories()?;
    let repositories = repositories(args.repositories, env);
    if all_repositories && !repositories.is_empty() {
        return Err(ConfigError::argument("--all-repositories", 
            "--all-repositories (CLEANUP_ALL_REPOSITORIES) and --repository (CLEANUP_REPOSITORY) exclude each other: give one of them",
        ));
    }
    Ok(Invocation::Delete(DeleteOptions {
        connection,
        dry_run,
        report,
        repositories,
        all_repositories,
        references,
        counts,
    }))
}

fn run_options(
    args: crate::config::cli::RunArgs,
    env: &CleanupEnv,
    connection: impl Fn(&NetworkArgs) -> Result<Connection, ConfigError>,
) -> Result<Invocation, ConfigError> {
    let (report, counts, dry_run, mut connection) = common(&args.common, env, connection)?;
    connection.ledger =
        crate::config::ledger::target(args.ledger, env, connection.allow_insecure_http)?;
    let max_deletions = env.max_deletions(args.max_deletions)?;
    let engine = engine(args.engine, env)?;
    let scope = scope(args.group, args.instance, env)?;
    let shard = shard(args.shard.as_deref(), env, &scope)?;
    if engine == Engine::Server && scope != Scope::Project {
        return Err(ConfigError::argument("--engine", 
            "--engine server works on one project: with --group or --instance use the client engine (unset CLEANUP_ENGINE or pass --engine client)",
        ));
    }
    let plan = crate::config::plan::resolve(args.plan, args.plan_max_age, env, engine)?;
    Ok(Invocation::Run(RunOptions {
        connection,
        policy: policy_path(args.policy, env),
        engine,
        dry_run,
        report,
        max_deletions,
        counts,
        scope,
        shard,
        plan,
    }))
}

fn report_html_options(
    args: crate::config::cli::HtmlArgs,
    env: &CleanupEnv,
) -> Result<Invocation, ConfigError> {
    let output = match output_file(
        &args.output,
        "--output",
        &env.cleanup_output,
        "CLEANUP_OUTPUT",
        env,
    )? {
        Some(output) => output,
        None => {
            let output = args.report.with_extension("html");
            check_writable(&output, "the page (REPORT with .html)")?;
            output
        }
    };
    if output == args.report {
        return Err(ConfigError::argument("--output", format!(
            "report html {}: the page would overwrite the report; give another file with --output FILE",
            args.report.display()
        )));
    }
    Ok(Invocation::ReportHtml(ReportHtmlOptions {
        report: args.report,
        output,
    }))
}

fn inventory_options(
    args: crate::config::cli::InventoryArgs,
    env: &CleanupEnv,
    connection: impl Fn(&NetworkArgs) -> Result<Connection, ConfigError>,
) -> Result<Invocation, ConfigError> {
    let scope = scope(args.group, args.instance, env)?;
    let shard = shard(args.shard.as_deref(), env, &scope)?;
    let mut connection = connection(&args.network)?;
    connection.ledger =
        crate::config::ledger::target(args.ledger, env, connection.allow_insecure_http)?;
    Ok(Invocation::Inventory(InventoryOptions {
        connection,
        repositories: repositories(args.repositories, env),
        output: args.output.or_else(|| env.path(&env.cleanup_output)),
        scope,
        shard,
    }))
}

/// `restore`: the record to read (clap took it from `--report` or
/// `CLEANUP_REPORT`), the tags to pick, where to write what was done.
fn restore(
    args: crate::config::cli::RestoreArgs,
    env: &CleanupEnv,
    connection: impl Fn(&NetworkArgs) -> Result<Connection, ConfigError>,
) -> Result<Invocation, ConfigError> {
    let record = args
        .report
        .or_else(|| env.path(&env.cleanup_report))
        .ok_or_else(|| {
            ConfigError::argument(
                "--report",
                "restore needs the run's report: pass --report FILE (the file `run --report` wrote, or its FILE.journal)",
            )
        })?;
    let output = output_file(
        &args.output,
        "--output",
        &env.cleanup_output,
        "CLEANUP_OUTPUT",
        env,
    )?;
    if output.as_ref() == Some(&record) {
        return Err(ConfigError::argument(
            "--output",
            format!(
                "restore --output {}: that is the report to restore from; give another file",
                record.display()
            ),
        ));
    }
    let (tags, tags_from) = if args.tags.is_empty() {
        (names_list(&env.cleanup_tag, env), "CLEANUP_TAG")
    } else {
        (args.tags, "--tag")
    };
    let tags = tags
        .iter()
        .map(|text| {
            TagName::parse(text)
                .map_err(|err| ConfigError::setting(tags_from, format!("{tags_from} {err}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Invocation::Restore(RestoreOptions {
        connection: connection(&args.network)?,
        record,
        repositories: repositories(args.repositories, env),
        tags,
        dry_run: args.dry_run || env.dry_run()?,
        output,
    }))
}

/// A variable holding several names, separated by commas or white space.
fn names_list(variable: &Option<String>, env: &CleanupEnv) -> Vec<String> {
    env.string(variable)
        .map(|text| {
            text.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// What `run` and `delete` share: the report, the count files, dry run and
/// the connection. The files are checked writable before anything else.
fn common(
    args: &CommonRunArgs,
    env: &CleanupEnv,
    connection: impl Fn(&NetworkArgs) -> Result<Connection, ConfigError>,
) -> Result<(Option<PathBuf>, CountFiles, bool, Connection), ConfigError> {
    let report = report_path(args.report.clone(), env)?;
    let counts = count_files(&args.dotenv, &args.metrics, &args.html, env)?;
    let dry_run = args.dry_run || env.dry_run()?;
    Ok((report, counts, dry_run, connection(&args.network)?))
}

/// `--engine`, else `CLEANUP_ENGINE`, else the client engine.
fn engine(flag: Option<Engine>, env: &CleanupEnv) -> Result<Engine, ConfigError> {
    if let Some(engine) = flag {
        return Ok(engine);
    }
    match env.string(&env.cleanup_engine) {
        None => Ok(Engine::Client),
        Some(text) => <Engine as ValueEnum>::from_str(&text, false).map_err(|_| {
            ConfigError::variable(
                "CLEANUP_ENGINE",
                format!(
                    "CLEANUP_ENGINE={text:?} is not an engine: use {}",
                    Engine::value_variants()
                        .iter()
                        .map(|engine| engine.name())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )
        }),
    }
}

/// `--repository` (repeatable), else `CLEANUP_REPOSITORY`: one or more
/// paths separated by commas or white space (no repository path contains
/// either; `.` is the root image).
fn repositories(flags: Vec<String>, env: &CleanupEnv) -> Vec<String> {
    if !flags.is_empty() {
        return flags;
    }
    names_list(&env.cleanup_repository, env)
}

/// `--group` or `--instance`, else `CLEANUP_GROUP` or `CLEANUP_INSTANCE`,
/// else the project.
fn scope(flag: Option<String>, instance: bool, env: &CleanupEnv) -> Result<Scope, ConfigError> {
    let instance_variable = env.instance()?;
    if instance || (flag.is_none() && instance_variable) {
        if flag.is_none() && env.string(&env.cleanup_group).is_some() {
            return Err(ConfigError::variable("CLEANUP_GROUP", format!(
                "{} and CLEANUP_GROUP are both set: clean one group or the whole instance, not both",
                if instance { "--instance" } else { "CLEANUP_INSTANCE" }
            )));
        }
        return Ok(Scope::Instance);
    }
    let (text, name) = match flag {
        Some(text) => (text, "--group"),
        None => match env.string(&env.cleanup_group) {
            Some(text) => (text, "CLEANUP_GROUP"),
            None => return Ok(Scope::Project),
        },
    };
    let group = text.trim().trim_matches('/');
    let valid = !group.is_empty()
        && !group.split('/').any(|segment| {
            segment.is_empty()
                || segment == "."
                || segment == ".."
                || segment.contains(char::is_whitespace)
        });
    if !valid {
        return Err(ConfigError::setting(name, format!(
            "{name} {text:?} is not a group: give its full path (e.g. platform or platform/backend) or its numeric ID"
        )));
    }
    Ok(Scope::Group(group.to_string()))
}

/// `--shard`, else `CLEANUP_SHARD`, else (in group mode) GitLab CI's
/// `parallel:` variables `CI_NODE_INDEX`/`CI_NODE_TOTAL`.
fn shard(
    flag: Option<&str>,
    env: &CleanupEnv,
    scope: &Scope,
) -> Result<Option<Shard>, ConfigError> {
    let parse = |name: &str, text: &str| {
        Shard::parse(text)
            .map(Some)
            .map_err(|err| ConfigError::setting(name, format!("{name} {err}")))
    };
    if let Some(text) = flag {
        return parse("--shard", text);
    }
    if let Some(text) = env.string(&env.cleanup_shard) {
        return parse("CLEANUP_SHARD", &text);
    }
    if *scope == Scope::Project {
        return Ok(None);
    }
    match (env.string(&env.ci_node_index), env.string(&env.ci_node_total)) {
        (None, None) => Ok(None),
        (Some(index), Some(total)) => Shard::new(&index, &total).map(Some).ok_or_else(|| {
            ConfigError::variable("CI_NODE_INDEX", format!(
                "CI_NODE_INDEX={index:?} and CI_NODE_TOTAL={total:?} are not a shard: the index must be from 1 to the total (GitLab sets both in a job with parallel:); or pass --shard I/N"
            ))
        }),
        (index, total) => Err(ConfigError::variable("CI_NODE_INDEX", format!(
            "only one of CI_NODE_INDEX ({}) and CI_NODE_TOTAL ({}) is set: set both (GitLab does in a job with parallel:), or pass --shard I/N",
            index.as_deref().unwrap_or("unset"),
            total.as_deref().unwrap_or("unset")
        ))),
    }
}

/// `--policy`, else `CLEANUP_POLICY`, else the default path.
fn policy_path(flag: Option<PathBuf>, env: &CleanupEnv) -> PathBuf {
    flag.or_else(|| env.path(&env.cleanup_policy))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY_PATH))
}

/// `--report`, else `CLEANUP_REPORT`; refused (exit 2) unless it can be written.
fn report_path(flag: Option<PathBuf>, env: &CleanupEnv) -> Result<Option<PathBuf>, ConfigError> {
    let (path, name) = match flag {
        Some(path) => (path, "--report"),
        None => match env.path(&env.cleanup_report) {
            Some(path) => (path, "CLEANUP_REPORT"),
            None => return Ok(None),
        },
    };
    check_writable(&path, name)?;
    Ok(Some(path))
}

/// `--dotenv`/`--metrics`/`--html`, else `CLEANUP_DOTENV`/`CLEANUP_METRICS`/
/// `CLEANUP_HTML`; each refused (exit 2) unless it can be written.
pub fn count_files(
    dotenv: &Option<PathBuf>,
    metrics: &Option<PathBuf>,
    html: &Option<PathBuf>,
    env: &CleanupEnv,
) -> Result<CountFiles, ConfigError> {
    Ok(CountFiles {
        dotenv: output_file(
            dotenv,
            "--dotenv",
            &env.cleanup_dotenv,
            "CLEANUP_DOTENV",
            env,
        )?,
        metrics: output_file(
            metrics,
            "--metrics",
            &env.cleanup_metrics,
            "CLEANUP_METRICS",
            env,
        )?,
        html: output_file(html, "--html", &env.cleanup_html, "CLEANUP_HTML", env)?,
    })
}

/// A file to write: the flag, else its variable; refused (exit 2, naming
/// the one it came from) unless it can be written.
fn output_file(
    flag: &Option<PathBuf>,
    flag_name: &str,
    variable: &Option<String>,
    variable_name: &str,
    env: &CleanupEnv,
) -> Result<Option<PathBuf>, ConfigError> {
    let (path, name) = match (flag, env.path(variable)) {
        (Some(path), _) => (path.clone(), flag_name),
        (None, Some(path)) => (path, variable_name),
        (None, None) => return Ok(None),
    };
    check_writable(&path, name)?;
    Ok(Some(path))
}

/// Fails unless `path` can be written: an existing file opened for
/// appending (nothing truncated), or a new file created and removed again.
fn check_writable(path: &Path, name: &str) -> Result<(), ConfigError> {
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
        ConfigError::setting(name, format!(
            "{name} {}: the file cannot be written there ({err}); nothing was done. Choose a file in an existing, writable directory",
            path.display()
        ))
    })
}

fn parse_now(name: &str, text: &str) -> Result<DateTime<Utc>, ConfigError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| {
            ConfigError::setting(
                name,
                format!(
                "{name} {text:?} is not an RFC 3339 time ({err}): use e.g. 2026-11-01T00:00:00Z"
            ),
            )
        })
}

/// Where a command's results go besides stdout: the JSON report, its HTML
/// page and the count files, each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    pub report: Option<PathBuf>,
    pub dotenv: Option<PathBuf>,
    pub metrics: Option<PathBuf>,
    pub html: Option<PathBuf>,
}

/// A command with only a report path (`plan`) ends the same way.
impl From<Option<&PathBuf>> for Outputs {
    fn from(report: Option<&PathBuf>) -> Self {
        Outputs {
            report: report.cloned(),
            ..Outputs::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn resolve_with(args: &[&str], vars: &[(&str, &str)]) -> Result<Invocation, ConfigError> {
        let cli =
            Cli::try_parse_from(std::iter::once("registry-cleanup").chain(args.iter().copied()))
                .expect("valid command line");
        let env = CleanupEnv::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("valid variables");
        resolve(cli, &env)
    }

    #[test]
    fn a_flag_wins_over_its_variable() {
        let Ok(Invocation::Run(run)) = resolve_with(
            &[
                "run",
                "--engine",
                "client",
                "--concurrency",
                "3",
                "--policy",
                "p.yml",
            ],
            &[
                ("CLEANUP_ENGINE", "server"),
                ("CLEANUP_CONCURRENCY", "9"),
                ("CLEANUP_POLICY", "q.yml"),
            ],
        ) else {
            panic!("run options")
        };
        assert_eq!(run.engine, Engine::Client);
        assert_eq!(run.connection.concurrency, 3);
        assert_eq!(run.policy, PathBuf::from("p.yml"));
    }

    #[test]
    fn variables_fill_what_flags_leave() {
        let Ok(Invocation::Run(run)) = resolve_with(
            &["run"],
            &[
                ("CLEANUP_ENGINE", "server"),
                ("CLEANUP_DRY_RUN", "true"),
                ("CLEANUP_MAX_DELETIONS", "5"),
            ],
        ) else {
            panic!("run options")
        };
        assert_eq!(run.engine, Engine::Server);
        assert!(run.dry_run);
        assert_eq!(run.max_deletions, Some(5));
        assert_eq!(run.policy, PathBuf::from(DEFAULT_POLICY_PATH));
    }

    /// A value for each option that differs from its default (by long name).
    fn sample_value(long: &str) -> Option<&'static str> {
        Some(match long {
            "dry-run" | "all-repositories" | "allow-insecure-http" => "true",
            "report" => "report-sample.json",
            "concurrency" | "max-deletions" => "3",
            "policy" | "inventory" | "output" => "sample-file",
            "engine" => "server",
            "now" => "2026-01-02T03:04:05Z",
            "repository" => "api",
            "dotenv" | "metrics" | "from" | "html" => "sample-file",
            "group" => "platform",
            "ledger" => "http://127.0.0.1:9/",
            "listen" => "127.0.0.1:9999",
            "db" => "sample.db",
            "ignore-user-agent" => "trivy/",
            "instance" => "true",
            "shard" => "1/2",
            "tag" => "v1",
            "plan" => "plan-sample.json",
            "plan-max-age" => "3d",
            _ => return None,
        })
    }

    /// Every command that takes options (`policy import`, not `policy`),
    /// with the words that name it.
    fn leaf_commands() -> Vec<(Vec<String>, clap::Command)> {
        use clap::CommandFactory;
        fn walk(
            prefix: &[String],
            command: &clap::Command,
            out: &mut Vec<(Vec<String>, clap::Command)>,
        ) {
            for sub in command.get_subcommands() {
                let mut words = prefix.to_vec();
                words.push(sub.get_name().to_string());
                if sub.has_subcommands() {
                    walk(&words, sub, out);
                } else {
                    out.push((words, sub.clone()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&[], &Cli::command(), &mut out);
        out
    }

    /// Every option of every command can be set as `CLEANUP_<OPTION>`:
    /// setting the variable (and nothing else) changes what the command
    /// line resolves to. A new option without a variable fails here.
    #[test]
    fn every_option_has_its_cleanup_variable() {
        let required: &[(&str, &[&str])] = &[
            ("delete", &["v1"]),
            ("plan", &["--inventory", "i.json"]),
            ("report merge", &["shard-1.json"]),
            ("report html", &["report.json"]),
            ("restore", &["--report", "report.json"]),
        ];
        // The token every ledger option needs (an environment variable only).
        let token = ("CLEANUP_LEDGER_TOKEN", "0123456789abcdef0123");
        let mut checked = 0;
        for (words, command) in leaf_commands() {
            let name = words.join(" ");
            let name = name.as_str();
            let base: Vec<&str> = words
                .iter()
                .map(String::as_str)
                .chain(
                    required
                        .iter()
                        .filter(|(command, _)| *command == name)
                        .flat_map(|(_, args)| args.iter().copied()),
                )
                .collect();
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if matches!(long, "help" | "version") {
                    continue;
                }
                let variable = crate::config::cli::env_name(long);
                if let Some(read_by_clap) = arg.get_env() {
                    // `plan --inventory`: required, so clap reads it.
                    assert_eq!(
                        read_by_clap.to_str(),
                        Some(variable.as_str()),
                        "{name} --{long}"
                    );
                    checked += 1;
                    continue;
                }
                let value = sample_value(long)
                    .unwrap_or_else(|| panic!("no sample value for {name} --{long}: add one"));
                // `ledger serve` needs a store; its own test sets it alone.
                let mut vars = vec![token];
                if name == "ledger serve" && long != "db" {
                    vars.push(("CLEANUP_LEDGER_DB", "base.db"));
                }
                let without = format!("{:?}", resolve_with(&base, &vars));
                vars.push((&variable, value));
                let with = format!("{:?}", resolve_with(&base, &vars));
                assert_ne!(
                    without, with,
                    "{name} --{long}: {variable}={value} changes nothing"
                );
                checked += 1;
            }
        }
        assert!(checked >= 15, "only {checked} options checked");
    }

    #[test]
    fn cleanup_repository_and_all_repositories() {
        let Ok(Invocation::Delete(delete)) = resolve_with(
            &["delete", "v1"],
            &[("CLEANUP_REPOSITORY", "api, tools/builder .")],
        ) else {
            panic!("delete options")
        };
        assert_eq!(delete.repositories, ["api", "tools/builder", "."]);
        let Ok(Invocation::Delete(delete)) = resolve_with(
            &["delete", "--repository", "web", "v1"],
            &[("CLEANUP_REPOSITORY", "api")],
        ) else {
            panic!("delete options")
        };
        assert_eq!(delete.repositories, ["web"]);
        let Ok(Invocation::Delete(delete)) =
            resolve_with(&["delete", "v1"], &[("CLEANUP_ALL_REPOSITORIES", "true")])
        else {
            panic!("delete options")
        };
        assert!(delete.all_repositories);
        let err = resolve_with(
            &["delete", "--repository", "api", "v1"],
            &[("CLEANUP_ALL_REPOSITORIES", "true")],
        )
        .expect_err("both");
        assert!(
            err.to_string().contains("CLEANUP_ALL_REPOSITORIES")
                && err.to_string().contains("--repository")
                && err.setting_name() == Some("--all-repositories"),
            "{err}"
        );
    }

    #[test]
    fn network_options_only_on_commands_that_use_the_network() {
        for (_, command) in leaf_commands() {
            let longs: Vec<&str> = command
                .get_arguments()
                .filter_map(|a| a.get_long())
                .collect();
            let network = ["concurrency", "allow-insecure-http"];
            let offline = matches!(
                command.get_name(),
                "plan" | "check" | "merge" | "serve" | "html"
            );
            for flag in network {
                assert_eq!(
                    longs.contains(&flag),
                    !offline,
                    "{} --{flag}",
                    command.get_name()
                );
            }
        }
    }

    #[test]
    fn errors_name_their_source() {
        let err = resolve_with(&["run"], &[("CLEANUP_ENGINE", "cloud")]).expect_err("bad engine");
        assert!(resolve_with(&["run"], &[("CLEANUP_ENGINE", "Client")]).is_err());
        assert!(
            err.to_string().contains("CLEANUP_ENGINE=\"cloud\"")
                && err.to_string().contains("client or server")
                && err.setting_name() == Some("CLEANUP_ENGINE"),
            "{err}"
        );
        let err = resolve_with(&["delete", "sha256:ABC"], &[]).expect_err("bad digest");
        assert!(err.to_string().starts_with("REF \"sha256:ABC\""), "{err}");
        assert_eq!(err.setting_name(), Some("REF"));
        // Without it, clap refuses the command line: `--inventory` is required.
        let err = Cli::try_parse_from(["registry-cleanup", "plan"]).expect_err("required");
        assert!(err.to_string().contains("--inventory"), "{err}");
    }

    fn run_shard(
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Result<(Scope, Option<Shard>), ConfigError> {
        let args: Vec<&str> = std::iter::once("run").chain(args.iter().copied()).collect();
        match resolve_with(&args, vars)? {
            Invocation::Run(run) => Ok((run.scope, run.shard)),
            other => panic!("run options, got {other:?}"),
        }
    }

    #[test]
    fn the_shard_comes_from_the_flag_the_variable_or_ci_node_in_group_mode() {
        let node = [("CI_NODE_INDEX", "3"), ("CI_NODE_TOTAL", "4")];
        let shard = |index, total| Some(Shard { index, total });
        // CI_NODE_* only count in group mode: a parallel project job is not sharded.
        assert_eq!(run_shard(&[], &node), Ok((Scope::Project, None)));
        assert_eq!(
            run_shard(&["--group", "platform/"], &node),
            Ok((Scope::Group("platform".into()), shard(3, 4)))
        );
        assert_eq!(
            run_shard(&[], &[("CLEANUP_GROUP", "42"), node[0], node[1]]),
            Ok((Scope::Group("42".into()), shard(3, 4)))
        );
        assert_eq!(
            run_shard(
                &["--group", "g", "--shard", "1/2"],
                &[("CLEANUP_SHARD", "2/2"), node[0], node[1]]
            ),
            Ok((Scope::Group("g".into()), shard(1, 2)))
        );
        assert_eq!(
            run_shard(
                &["--group", "g"],
                &[("CLEANUP_SHARD", "2/2"), node[0], node[1]]
            ),
            Ok((Scope::Group("g".into()), shard(2, 2)))
        );
    }

    #[test]
    fn shard_and_group_errors_name_their_source() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&["--shard", "5/4"], &[], "--shard \"5/4\""),
            (&["--shard", "two"], &[], "--shard \"two\" is not a shard"),
            (&[], &[("CLEANUP_SHARD", "0/3")], "CLEANUP_SHARD \"0/3\""),
            (
                &["--group", "g"],
                &[("CI_NODE_INDEX", "5"), ("CI_NODE_TOTAL", "4")],
                "CI_NODE_INDEX=\"5\" and CI_NODE_TOTAL=\"4\"",
            ),
            (
                &["--group", "g"],
                &[("CI_NODE_TOTAL", "4")],
                "only one of CI_NODE_INDEX (unset) and CI_NODE_TOTAL (4)",
            ),
            (&["--group", "a//b"], &[], "--group \"a//b\" is not a group"),
            (
                &[],
                &[("CLEANUP_GROUP", "../x")],
                "CLEANUP_GROUP \"../x\" is not a group",
            ),
            (
                &["--group", "g", "--engine", "server"],
                &[],
                "--engine server works on one project",
            ),
            (
                &["--instance"],
                &[("CLEANUP_GROUP", "g")],
                "--instance and CLEANUP_GROUP are both set",
            ),
            (
                &[],
                &[("CLEANUP_INSTANCE", "maybe")],
                "CLEANUP_INSTANCE=\"maybe\" is not a boolean",
            ),
        ];
        for (args, vars, expected) in cases {
            let err = run_shard(args, vars).expect_err("refused");
            assert!(
                err.to_string().contains(expected),
                "{args:?} {vars:?}: {err}"
            );
        }
    }
}
