//! The command line. Flags only: the `CLEANUP_*` variables are read by
//! `config` with envy, so their errors can name the variable; a flag wins.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Allow plain http:// to a host that is not loopback (credentials travel unencrypted)
    #[arg(long, global = true)]
    pub allow_insecure_http: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Delete named tags or sha256: digests from one or more repositories
    Delete(DeleteArgs),
    /// Apply the retention policy to every repository of the project
    Run(RunArgs),
    /// Plan the policy against an inventory file, offline (no network at all)
    Plan(PlanArgs),
    /// Write the project's repositories and tags (with digests and dates) as an inventory file
    Inventory(InventoryArgs),
    /// Validate the policy file and print a summary of each rule
    Check(CheckArgs),
    /// Work with report files
    #[command(subcommand)]
    Report(ReportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Join the reports of a sharded run (`run --shard I/N`) into one report and summary
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shard reports, one per shard
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Write the merged JSON report to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
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
    /// How many requests may be in flight at once (default 16)
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
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
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Inventory file (as written by `registry-cleanup inventory`)
    #[arg(long, value_name = "FILE")]
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
    /// How many requests may be in flight at once (default 16)
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy file (default .gitlab/registry-cleanup.yml)
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}
