//! The command line. Flags only: the `CLEANUP_*` variables are read by
//! `config` with envy, so their errors can name the variable; a flag wins.
//! [`command`] names each option's variable in `--help`.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// The variable that sets an option: `--max-deletions` → `CLEANUP_MAX_DELETIONS`.
/// The pull ledger's settings share one prefix, as its URL and token go
/// together: `--ledger` → `CLEANUP_LEDGER_URL` (beside
/// `CLEANUP_LEDGER_TOKEN`), `ledger serve --db` → `CLEANUP_LEDGER_DB`.
pub fn env_name(long: &str) -> String {
    let name = match long {
        "ledger" => "ledger-url".to_string(),
        "listen" | "db" | "ignore-user-agent" => format!("ledger-{long}"),
        _ => long.to_string(),
    };
    format!("CLEANUP_{}", name.replace('-', "_").to_ascii_uppercase())
}

/// The command line, with each option's `CLEANUP_*` variable named in its
/// help (`[env: CLEANUP_DRY_RUN]`). Clap does not read the variables itself
/// (`options` does, so that a bad value names its variable), except for
/// `plan --inventory`, which is required.
pub fn command() -> clap::Command {
    fn name_variable(arg: clap::Arg) -> clap::Arg {
        match (arg.get_long(), arg.get_help()) {
            (Some(long), Some(help))
                if !matches!(long, "help" | "version") && arg.get_env().is_none() =>
            {
                let help = format!("{help} [env: {}]", env_name(long));
                arg.help(help)
            }
            _ => arg,
        }
    }
    // Every level: `policy import` and `report merge` are subcommands of
    // subcommands.
    fn name_variables(command: clap::Command) -> clap::Command {
        command
            .mut_args(name_variable)
            .mut_subcommands(name_variables)
    }
    name_variables(Cli::command())
}

/// What each command's `--help` says about the environment it reads.
const NETWORK_ENV_HELP: &str = "GitLab settings come from GitLab's CI/CD variables: CI_SERVER_URL, CI_API_V4_URL, CI_PROJECT_ID or CI_PROJECT_PATH, CI_REGISTRY, CI_REGISTRY_IMAGE, CI_REGISTRY_USER and CI_REGISTRY_PASSWORD, CI_JOB_TOKEN (in CI) or GITLAB_TOKEN (outside CI, wins over the job token), CI_SERVER_TLS_CA_FILE or SSL_CERT_FILE; CLEANUP_REGISTRY_URL for a plain-HTTP test registry. Retries: CLEANUP_RETRY_MAX_ATTEMPTS, CLEANUP_RETRY_BASE_MS. Logs: CLEANUP_LOG, CLEANUP_LOG_FORMAT.";
const OFFLINE_ENV_HELP: &str =
    "Offline: reads no CI_* variable and sends no request. Logs: CLEANUP_LOG, CLEANUP_LOG_FORMAT.";

#[derive(Debug, Parser)]
#[command(
    name = "registry-cleanup",
    version,
    about = "Delete container image tags from a GitLab container registry: by reference or by retention policy.",
    long_about = None,
    after_help = "Every option can also be set as CLEANUP_<OPTION> (e.g. CLEANUP_DRY_RUN=true); a flag wins.\nGitLab settings come from the CI_* variables (and GITLAB_TOKEN outside CI). Exit codes: 0 done, 1 failed, 2 usage/configuration/policy error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes. (Network options are in [`NetworkArgs`],
/// on the commands that talk to GitLab only.)
#[derive(Debug, Args)]
pub struct GlobalArgs {}

/// How the commands that talk to GitLab connect.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// How many requests may be in flight at once (default 16)
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Allow plain http:// to a host that is not loopback (credentials travel unencrypted)
    #[arg(long)]
    pub allow_insecure_http: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Delete named tags or sha256: digests from one or more repositories
    #[command(after_help = NETWORK_ENV_HELP)]
    Delete(DeleteArgs),
    /// Apply the retention policy to every repository of the project
    #[command(after_help = NETWORK_ENV_HELP)]
    Run(RunArgs),
    /// Plan the policy against an inventory file, offline (no network at all)
    #[command(after_help = OFFLINE_ENV_HELP)]
    Plan(PlanArgs),
    /// Write the project's repositories and tags (with digests and dates) as an inventory file
    #[command(after_help = NETWORK_ENV_HELP)]
    Inventory(InventoryArgs),
    /// Validate the policy file and print a summary of each rule
    #[command(after_help = OFFLINE_ENV_HELP)]
    Check(CheckArgs),
    /// Check, without writing anything, everything a run depends on (credentials, permissions, registry, GitLab's settings)
    Doctor(DoctorArgs),
    /// Policy file tools
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Work with report files
    #[command(subcommand)]
    Report(ReportCommand),
    /// The pull ledger: record the registry's pull notifications, for rules with unpulled_for
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Put the tags a run deleted back at their recorded digests, from its report or journal
    #[command(after_help = restore_help())]
    Restore(RestoreArgs),
}

/// `restore --help`'s notes: the window, the permission, the exit codes,
/// then the environment every network command reads.
fn restore_help() -> String {
    format!(
        "A deleted tag can be put back while the registry still has its manifest: GitLab's registry keeps an untagged manifest until online garbage collection reviews it (24 hours after untagging by default), a Distribution registry until its garbage collector runs; where the deletion removed the manifest itself, from the copy in the journal while the registry still has its blobs. A tag pushed again since is left as it is and reported. Needs push permission on the repositories. Exit codes: 0 every tag back (or left alone), 1 some tag could not be put back (\"gone: garbage-collected\"), 2 bad input (nothing done). See docs/undo.md.\n\n{NETWORK_ENV_HELP}"
    )
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The run's report (`run --report FILE`) or its journal (FILE.journal); with a report, FILE.journal is read too when it exists
    // Required, so `--help` says so; clap takes it from CLEANUP_REPORT
    // then (the variable the run wrote the report to).
    #[arg(
        long,
        value_name = "FILE",
        env = "CLEANUP_REPORT",
        hide_env_values = true,
        required = true
    )]
    pub report: Option<PathBuf>,
    /// Only the tags of this repository (relative to the project, `.` for the root image, or a full path); repeatable
    #[arg(long = "repository", value_name = "PATH")]
    pub repositories: Vec<String>,
    /// Only this tag; repeatable
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Say what would be put back (and what could not be); write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Write what restore did with each tag as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Receive the registry's notifications (POST /events) and answer --ledger (GET /v1/repositories/<path>/pulls)
    #[command(after_help = LEDGER_ENV_HELP)]
    Serve(LedgerServeArgs),
}

const LEDGER_ENV_HELP: &str = "The bearer token comes from CLEANUP_LEDGER_TOKEN (required: the registry sends it in its notifications' Authorization header, and run/inventory --ledger with it). Stops gracefully on SIGTERM or SIGINT. Logs: CLEANUP_LOG, CLEANUP_LOG_FORMAT. See docs/ledger.md.";

#[derive(Debug, Args)]
pub struct LedgerServeArgs {
    /// The address to listen on, IP:PORT (default 127.0.0.1:8080; 0.0.0.0:8080 in a container)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Where to keep the records: a SQLite file (created if missing) or a postgres://user:password@host/database URL (prefer the variable: a password on the command line is visible to other users)
    #[arg(long, value_name = "PATH|URL")]
    pub db: Option<String>,
    /// Pulls by a user agent starting with PREFIX do not count (a scanner, a mirror); repeatable. registry-cleanup/ and GitLab/ are always ignored
    #[arg(long = "ignore-user-agent", value_name = "PREFIX")]
    pub ignore_user_agents: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Turn GitLab's built-in cleanup policy (container_expiration_policy) into a policy file that deletes what it deletes
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A JSON file: the project as GET /projects/:id answers it, or its container_expiration_policy (default: read it live with GITLAB_TOKEN)
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Write the policy to FILE instead of stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Policy file (default .gitlab/registry-cleanup.yml; checked when present)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Also check that the credentials may list this group's repositories (as `run --group` needs)
    #[arg(long, value_name = "PATH|ID")]
    pub group: Option<String>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Join the reports of a sharded run (`run --shard I/N`) into one report and summary
    Merge(MergeArgs),
    /// Turn a JSON report into one self-contained HTML page (totals, storage, rules, reasons, every tag)
    Html(HtmlArgs),
}

#[derive(Debug, Args)]
pub struct HtmlArgs {
    /// The JSON report (`--report FILE` of run, plan, delete or report merge), or a run's journal (REPORT.journal, also read when REPORT was never written): the run as far as it got, interrupted
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,
    /// Write the page to FILE (default: the report's path with .html)
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shard reports, one per shard
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Write the merged JSON report to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the merged counts as a dotenv file (CLEANUP_DELETED=…) for artifacts:reports:dotenv
    #[arg(long, value_name = "FILE")]
    pub dotenv: Option<PathBuf>,
    /// Write the merged counts as OpenMetrics text for artifacts:reports:metrics
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Write the merged report as a self-contained HTML page too
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Repository: "." or "" for the root image, a path relative to the project (api, tools/builder) or a full path; repeatable
    #[arg(long = "repository", value_name = "PATH")]
    pub repositories: Vec<String>,
    /// Apply to every repository of the project (listed through the REST API)
    #[arg(long, conflicts_with = "repositories")]
    pub all_repositories: bool,
    #[command(flatten)]
    pub common: CommonRunArgs,
    /// Tag names or sha256: digests
    #[arg(value_name = "REF", required = true)]
    pub refs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CommonRunArgs {
    /// Do every read, plan, print and report; send no write
    #[arg(long)]
    pub dry_run: bool,
    /// Write the JSON report to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Write the counts as a dotenv file (CLEANUP_DELETED=…) for artifacts:reports:dotenv
    #[arg(long, value_name = "FILE")]
    pub dotenv: Option<PathBuf>,
    /// Write the counts as OpenMetrics text for artifacts:reports:metrics
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Write the report as a self-contained HTML page too (whenever the report is written)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// List, plan and delete tag by tag (exact, reportable)
    Client,
    /// Hand each repository's rule to GitLab's bulk-delete API (asynchronous, once an hour)
    Server,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Client => "client",
            Engine::Server => "server",
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Policy file (default .gitlab/registry-cleanup.yml)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// client: tag by tag; server: GitLab's bulk-delete API
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    #[command(flatten)]
    pub common: CommonRunArgs,
    /// Refuse the whole run (nothing deleted, exit 1) when the plan deletes more than N tags
    #[arg(long, value_name = "N")]
    pub max_deletions: Option<usize>,
    /// Every repository of the group's projects (subgroups included): a group path or ID; needs GITLAB_TOKEN
    #[arg(long, value_name = "PATH|ID")]
    pub group: Option<String>,
    /// Every repository of the registry (its catalog; administrators only), deleting through the registry API
    #[arg(long, conflicts_with = "group")]
    pub instance: bool,
    /// Only the repositories of shard I of N (FNV-1a of the path); default CI_NODE_INDEX/CI_NODE_TOTAL with --group or --instance
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// The pull ledger's URL (`registry-cleanup ledger serve`), for rules with unpulled_for; its token in CLEANUP_LEDGER_TOKEN
    #[arg(long, value_name = "URL")]
    pub ledger: Option<String>,
    /// Apply a reviewed plan: delete only the deletions a dry run's report (--dry-run --report FILE) lists, each only if its tag still names the recorded digest and the policy still deletes it
    #[arg(long, value_name = "REPORT.json")]
    pub plan: Option<PathBuf>,
    /// Refuse a --plan made longer ago than this (e.g. 7d, 12h; default 7d)
    #[arg(long, value_name = "DURATION")]
    pub plan_max_age: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Inventory file, as written by `registry-cleanup inventory --output FILE` (or try examples/inventory.json)
    // Required, so `--help` says so; clap itself takes it from
    // CLEANUP_INVENTORY then (a path cannot be malformed), so the variable
    // still satisfies it.
    #[arg(
        long,
        value_name = "FILE",
        env = "CLEANUP_INVENTORY",
        hide_env_values = true,
        required = true
    )]
    pub inventory: Option<PathBuf>,
    /// Policy file (default .gitlab/registry-cleanup.yml)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The time to plan at, RFC 3339 (default: now)
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Write the JSON report to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the plan as a self-contained HTML page too
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Only these repositories (relative or full paths); default: all of the project's
    #[arg(long = "repository", value_name = "PATH")]
    pub repositories: Vec<String>,
    /// Write to FILE instead of stdout
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Every repository of the group's projects (subgroups included): a group path or ID; needs GITLAB_TOKEN
    #[arg(long, value_name = "PATH|ID", conflicts_with = "repositories")]
    pub group: Option<String>,
    /// Every repository of the registry (its catalog; administrators only), deleting through the registry API
    #[arg(long, conflicts_with = "group")]
    pub instance: bool,
    /// Only the repositories of shard I of N (FNV-1a of the path); default CI_NODE_INDEX/CI_NODE_TOTAL with --group or --instance
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Also record each tag's last pull and each repository's ledger_watched_since from the pull ledger at URL (token in CLEANUP_LEDGER_TOKEN)
    #[arg(long, value_name = "URL")]
    pub ledger: Option<String>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy file (default .gitlab/registry-cleanup.yml)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Also check what this engine accepts (server: one rule per repository, no git-aware rules)
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
}
