//! `registry-cleanup doctor`: everything a run depends on, checked with
//! reads only (REST GETs, registry tokens, `GET /v2/`), one line per check.

use crate::commands::doctor_findings::{plural, Findings, Level};
use crate::commands::exit::CommandResult;
use crate::config::options::DoctorOptions;
use crate::domain::exit::{Exit, ExitCode};
use crate::domain::model::RepositoryInfo;
use crate::domain::names::RepositoryPath;
use crate::domain::policy::Policy;
use crate::execute::clients::Clients;
use crate::gitlab::client::{GitLab, GitLabError, ProjectRead};
use crate::gitlab::policy_import::ExpirationPolicy;
use crate::registry::auth::AuthError;
use crate::registry::client::{Registry, RegistryError, PULL_DELETE};

/// Repositories checked one by one; beyond that, a summary line.
const MAX_REPOSITORY_LINES: usize = 25;

pub async fn doctor(options: DoctorOptions) -> CommandResult {
    let mut findings = Findings::default();
    let clients = match Clients::new(&options.connection)
        .and_then(|clients| clients.require_gitlab().map(|gitlab| (clients, gitlab)))
    {
        Ok(clients) => clients,
        Err(err) => {
            findings.add(
                Level::Fail,
                "configuration",
                err.to_string(),
                "set the variable named, then run doctor again",
            );
            findings.bad_configuration = true;
            check_policy(&options, &mut findings);
            return Ok(findings.exit());
        }
    };
    let (clients, gitlab) = clients;
    check_configuration(&clients, &gitlab, &mut findings);
    let policy = check_policy(&options, &mut findings);
    let repositories = check_rest(&gitlab, &mut findings).await;
    if let Some(group) = &options.group {
        check_group(&gitlab, group, &mut findings).await;
    }
    check_token_scopes(&gitlab, &mut findings).await;
    let root = clients
        .settings
        .root_repository
        .as_deref()
        .and_then(|root| RepositoryPath::parse(root).ok());
    let paths: Vec<RepositoryPath> = match &repositories {
        Some(list) if !list.is_empty() => list.iter().map(|r| r.path.clone()).collect(),
        _ => root.into_iter().collect(),
    };
    let granted = check_registry(&clients, &paths, &mut findings).await;
    if let Some(granted) = &granted {
        check_tag_rules(&clients.registry, &gitlab, granted, &mut findings).await;
    }
    if let Some(policy) = &policy {
        check_refs(&gitlab, policy, &mut findings).await;
    }
    check_project(&gitlab, &mut findings).await;
    if let Some(block) = policy
        .as_ref()
        .and_then(|policy| policy.protect_in_use.as_ref())
    {
        crate::commands::doctor_in_use::check_in_use(&gitlab, block, &mut findings).await;
    }
    clients.log_stats();
    Ok(findings.exit())
}

/// The settings doctor will use, in one line.
fn check_configuration(clients: &Clients, gitlab: &GitLab, findings: &mut Findings) {
    let settings = &clients.settings;
    findings.ok(
        "configuration",
        format!(
            "GitLab {}, project {}, registry {} (root image {})",
            settings.server_url.origin().ascii_serialization(),
            gitlab.project(),
            settings.registry_url.origin().ascii_serialization(),
            settings
                .root_repository
                .as_deref()
                .unwrap_or("read from the repository listing")
        ),
    );
}

/// The registry itself first: a wrong URL fails once here, not once per
/// repository. Then what the token grants on each repository and what
/// the registry announces; `None` when the registry was not reached.
async fn check_registry(
    clients: &Clients,
    paths: &[RepositoryPath],
    findings: &mut Findings,
) -> Option<Vec<RepositoryPath>> {
    match clients.probe_registry().await {
        Ok(()) => {
            let granted =
                check_registry_access(&clients.registry, paths, clients.concurrency, findings)
                    .await;
            check_capabilities(&clients.registry, findings).await;
            Some(granted)
        }
        Err(err) => {
            // A URL that is no registry is configuration: `run` exits 2.
            findings.bad_configuration |= err.exit_code() == Exit::Usage;
            findings.add(
                Level::Fail,
                "registry",
                format!("{err:#}", err = anyhow::Error::new(err)),
                format!(
                    "check {} and that this machine reaches the registry",
                    clients.settings.registry_url_from
                ),
            );
            None
        }
    }
}

/// `--group`: whether the credentials may list the group's repositories,
/// as `run --group` does first. GitLab refuses the job token there, so
/// with the job token nothing is asked: the line says which token to create.
async fn check_group(gitlab: &GitLab, group: &str, findings: &mut Findings) {
    let check = "group access";
    if gitlab.credentials() != "PRIVATE-TOKEN" {
        findings.add(
            Level::Fail,
            check,
            format!("--group {group}: the job token cannot list a group's repositories"),
            crate::gitlab::client::GROUP_TOKEN_ADVICE,
        );
        return;
    }
    match gitlab.group_repositories(group).await {
        Ok(repositories) => {
            let projects: std::collections::BTreeSet<Option<u64>> =
                repositories.iter().map(|r| r.project_id).collect();
            findings.ok(
                check,
                format!(
                    "GITLAB_TOKEN lists {} in {} of group {group}",
                    plural(
                        repositories.len(),
                        "container repository",
                        "container repositories"
                    ),
                    plural(projects.len(), "project", "projects")
                ),
            );
        }
        Err(err) => findings.add(Level::Fail, check, err.to_string(), ""),
    }
}

/// The policy file, when there is a valid one.
fn check_policy(options: &DoctorOptions, findings: &mut Findings) -> Option<Policy> {
    let path = &options.policy;
    if !options.policy_given && !path.exists() {
        // `run` would stop here (exit 2): doctor checks for `run`.
        findings.add(
            Level::Fail,
            "policy",
            format!("no policy file at {} (the default path): `run` would refuse to start", path.display()),
            "write one (by hand, or `registry-cleanup policy import` GitLab's) or name it with --policy / CLEANUP_POLICY; `delete` needs none",
        );
        return None;
    }
    match Policy::load(path) {
        Ok(policy) => {
            findings.ok(
                "policy",
                format!(
                    "{}: valid, {}; {}",
                    path.display(),
                    plural(policy.rules.len(), "rule", "rules"),
                    super::check::explanation(&policy).join("; ")
                ),
            );
            Some(policy)
        }
        Err(err) => {
            findings.add(
                Level::Fail,
                "policy",
                err.to_string(),
                "fix the file at the line and column named (`registry-cleanup check` says the same)",
            );
            findings.bad_configuration = true;
            None
        }
    }
}

/// The REST credentials: which they are, and that they can list the
/// project's container repositories (what `run` does first).
async fn check_rest(gitlab: &GitLab, findings: &mut Findings) -> Option<Vec<RepositoryInfo>> {
    let (kind, may) = match gitlab.credentials() {
        "PRIVATE-TOKEN" => (
            "access token (GITLAB_TOKEN)",
            "acts with its user's role; needs the api scope (read_api to read only) and, to delete, Developer or higher",
        ),
        _ => (
            "job token (CI_JOB_TOKEN)",
            "acts with the role of the user running the job, on its own project only; cannot read the project's settings or tag protection rules (set GITLAB_TOKEN with read_api for those checks)",
        ),
    };
    match gitlab.repositories().await {
        Ok(repositories) => {
            findings.ok(
                "REST credentials",
                format!(
                    "{kind}: lists {}; it {may}",
                    plural(
                        repositories.len(),
                        "container repository",
                        "container repositories"
                    )
                ),
            );
            Some(repositories)
        }
        // A project GitLab does not show these credentials: a wrong
        // CI_PROJECT_ID, or a token of another project. Only GitLab's answer
        // tells, so it is a finding (`run` would fail: exit 1), not a
        // configuration that could not be read (exit 2).
        Err(GitLabError::Config(err)) => {
            findings.add(
                Level::Fail,
                "REST credentials",
                format!("{kind}: {err}"),
                "",
            );
            None
        }
        Err(err) if err.is_unreachable() => {
            findings.add(
                Level::Fail,
                "GitLab",
                format!("GitLab cannot be reached: {err}"),
                "check CI_SERVER_URL (and CI_API_V4_URL if set), and that this machine reaches GitLab",
            );
            None
        }
        Err(err) => {
            findings.add(
                Level::Fail,
                "REST credentials",
                format!("{kind} cannot list project {}'s container repositories: {err}", gitlab.project()),
                "check that CI_PROJECT_ID / CI_PROJECT_PATH name the project the token belongs to: a job token only works for its own project",
            );
            None
        }
    }
}

/// An access token's scopes and expiry, where GitLab describes the token.
async fn check_token_scopes(gitlab: &GitLab, findings: &mut Findings) {
    let check = "access token scopes";
    let info = match gitlab.token_info().await {
        Ok(Some(info)) => info,
        Ok(None) if gitlab.credentials() == "PRIVATE-TOKEN" => {
            findings.add(
                Level::Warn,
                check,
                "GitLab did not describe the token (GET /personal_access_tokens/self)",
                "make sure it has the api scope (read_api to only read)",
            );
            return;
        }
        Ok(None) => return,
        Err(err) => {
            findings.add(Level::Warn, check, format!("not checked: {err}"), "");
            return;
        }
    };
    let has = |scope: &str| info.scopes.iter().any(|s| s == scope);
    let scopes = if info.scopes.is_empty() {
        "none".to_string()
    } else {
        info.scopes.join(", ")
    };
    if has("api") {
        findings.ok(check, format!("{scopes}: REST reads and deletes"));
    } else if has("read_api") {
        findings.add(
            Level::Warn,
            check,
            format!("{scopes}: REST is read-only"),
            "tags are still deleted through the registry, but REST deletes (the fallback where the registry cannot delete by tag) and --engine server need the api scope",
        );
    } else {
        findings.add(
            Level::Fail,
            check,
            format!("{scopes}: neither api nor read_api, so GitLab refuses REST calls"),
            "create a token with the api scope (read_api to only read)",
        );
    }
    if let Some(expires) = info
        .expires_at
        .as_deref()
        .and_then(|at| chrono::NaiveDate::parse_from_str(at, "%Y-%m-%d").ok())
    {
        let days = (expires - chrono::Utc::now().date_naive()).num_days();
        if days < 7 {
            findings.add(
                Level::Warn,
                "access token expiry",
                format!("expires on {expires} ({days} days)"),
                "rotate it before a scheduled run fails",
            );
        }
    }
}

/// The registry JWT each repository gets for `pull,delete`: what `run`
/// asks for before it deletes. Returns the repositories granted delete.
async fn check_registry_access(
    registry: &Registry,
    paths: &[RepositoryPath],
    concurrency: usize,
    findings: &mut Findings,
) -> Vec<RepositoryPath> {
    use futures::stream::{self, StreamExt};
    // Token requests in parallel (the client's budget bounds them), answers
    // in the repositories' order.
    let answers: Vec<(&RepositoryPath, Result<(), RegistryError>)> = stream::iter(paths)
        .map(|path| async move { (path, registry.check_access(path, PULL_DELETE).await) })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut granted = Vec::new();
    let mut quiet_ok = 0;
    for (index, (path, answer)) in answers.into_iter().enumerate() {
        let check = format!("registry access ({path})");
        let verbose = index < MAX_REPOSITORY_LINES;
        match answer {
            Ok(()) => {
                granted.push(path.clone());
                if verbose {
                    findings.ok(check, "the registry token grants pull, delete");
                } else {
                    quiet_ok += 1;
                }
            }
            Err(RegistryError::Auth(AuthError::Permission(refused))) => {
                let granted = if refused.granted.is_empty() {
                    "nothing".to_string()
                } else {
                    refused.granted.join(", ")
                };
                let todo = if refused.missing.iter().any(|m| m == "delete") {
                    "deleting needs delete: the Developer role (or higher) on this project for the token's user, or an access token with the write_registry or api scope as CI_REGISTRY_PASSWORD; deploy tokens never delete, and a job token of another project gets nothing here"
                } else {
                    "check that the repository belongs to the project and the credentials can read its registry (read_registry)"
                };
                findings.add(
                    Level::Fail,
                    check,
                    format!(
                        "the registry token grants {granted}, not {}",
                        refused.missing.join(", ")
                    ),
                    todo,
                );
            }
            Err(RegistryError::Auth(AuthError::Config(err))) => {
                findings.add(Level::Fail, check, err.to_string(), "");
                findings.bad_configuration = true;
                break;
            }
            Err(err) => findings.add(
                Level::Fail,
                check,
                format!("no registry token: {err}"),
                "check CI_REGISTRY / CLEANUP_REGISTRY_URL and the registry credentials",
            ),
        }
    }
    if quiet_ok > 0 {
        findings.ok(
            "registry access (the other repositories)",
            format!(
                "{} more granted pull, delete",
                plural(quiet_ok, "repository", "repositories")
            ),
        );
    }
    granted
}

/// What the registry announced on `GET /v2/` (learnt while getting tokens).
async fn check_capabilities(registry: &Registry, findings: &mut Findings) {
    // GitLab's registry names them to an authorized `GET /v2/` only: asked
    // with a token already held, or one of no scope.
    if let Err(err) = registry.announced_capabilities().await {
        tracing::debug!(error = %err, "the registry's capabilities could not be asked for");
    }
    let capabilities = &registry.capabilities;
    match capabilities.tag_delete.known() {
        Some(true) => findings.ok("registry: tag delete", "supported: each tag is deleted on its own"),
        Some(false) => findings.add(
            Level::Warn,
            "registry: tag delete",
            "not supported (a registry without GitLab's tag delete)",
            "tags are deleted through REST (one request each) or by digest where safe; expect more requests",
        ),
        None => findings.ok(
            "registry: tag delete",
            "not announced (no gitlab-container-registry-features header): a run finds out on its first delete",
        ),
    }
    match capabilities.gitlab_v1.known() {
        Some(true) => findings.ok(
            "registry: metadata database",
            "enabled: /gitlab/v1 lists tags with push times and sizes, 1000 a request",
        ),
        Some(false) => findings.add(
            Level::Warn,
            "registry: metadata database",
            "not enabled (no /gitlab/v1): tags are listed through REST, one details request per tag when dates are needed; ages are build times",
            "fine for small registries; GitLab's metadata database makes large runs much cheaper",
        ),
        None => findings.ok(
            "registry: metadata database",
            "not announced (no gitlab-container-registry-database-enabled header): a run probes /gitlab/v1 once",
        ),
    }
}

/// GitLab's tag protection and immutability patterns: from the registry
/// tokens (what the registry will enforce) and, with an access token, the
/// project's rules endpoint.
async fn check_tag_rules(
    registry: &Registry,
    gitlab: &GitLab,
    granted: &[RepositoryPath],
    findings: &mut Findings,
) {
    if granted.is_empty() && gitlab.credentials() != "PRIVATE-TOKEN" {
        findings.add(
            Level::Warn,
            "GitLab tag rules",
            "not checked: no repository granted delete (the token carries the rules that apply to deleting), and the job token cannot read the project's rules",
            "fix the registry access above, then run doctor again",
        );
        return;
    }
    let Some(seen) = read_tag_rules(registry, gitlab, granted).await else {
        // Neither source answered: "none in effect" would be a guess.
        findings.add(
            Level::Warn,
            "GitLab tag rules",
            "not read: no registry token with delete was granted (it carries the rules that apply to deleting), and the project's rules endpoint did not answer",
            "fix the registry access above (or give GITLAB_TOKEN read_api and the Maintainer role), then run doctor again",
        );
        return;
    };
    let SeenTagRules {
        delete_deny,
        immutable,
        from_api,
    } = seen;
    let list = |set: &std::collections::BTreeSet<String>| {
        set.iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let source = if from_api {
        "the registry token and the project's rules"
    } else {
        "the registry token"
    };
    if delete_deny.is_empty() && immutable.is_empty() {
        findings.ok(
            "GitLab tag rules",
            format!("none in effect (from {source})"),
        );
    } else {
        let mut parts = Vec::new();
        if !delete_deny.is_empty() {
            parts.push(format!(
                "protected against deletion: {}",
                list(&delete_deny)
            ));
        }
        if !immutable.is_empty() {
            parts.push(format!("immutable: {}", list(&immutable)));
        }
        findings.ok(
            "GitLab tag rules",
            format!(
                "{} (from {source}); matching tags are kept and reported as protected, and digest deletes are closed in these repositories",
                parts.join("; ")
            ),
        );
    }
    if !from_api && gitlab.credentials() != "PRIVATE-TOKEN" {
        findings.add(
            Level::Warn,
            "GitLab tag rules (project settings)",
            "not readable with the job token (Maintainer only); the registry token's patterns above are what the registry enforces for this user",
            "set GITLAB_TOKEN (read_api, Maintainer) to list every rule",
        );
    }
}

/// GitLab's tag rules as the registry tokens carry them and, where the
/// credentials may read them, as the project's settings list them.
struct SeenTagRules {
    delete_deny: std::collections::BTreeSet<String>,
    immutable: std::collections::BTreeSet<String>,
    /// The project's rules endpoint answered.
    from_api: bool,
}

/// `None` when neither a token nor the rules endpoint answered.
async fn read_tag_rules(
    registry: &Registry,
    gitlab: &GitLab,
    granted: &[RepositoryPath],
) -> Option<SeenTagRules> {
    let mut delete_deny = std::collections::BTreeSet::new();
    let mut immutable = std::collections::BTreeSet::new();
    let mut read_from_tokens = 0;
    for path in granted {
        // The token is cached since the access check: no request.
        match registry.tag_rules(path).await {
            Ok(rules) => {
                read_from_tokens += 1;
                let (deny, fixed) = rules.patterns();
                delete_deny.extend(deny);
                immutable.extend(fixed);
            }
            Err(err) => {
                tracing::debug!(repository = %path, error = %err, "tag rules not readable from the token")
            }
        }
    }
    let from_api = match gitlab.tag_rules().await {
        Ok(Some(rules)) => Some(rules),
        Ok(None) => None,
        Err(err) => {
            tracing::debug!(error = %err, "tag rules not readable");
            None
        }
    };
    if read_from_tokens == 0 && from_api.is_none() {
        return None;
    }
    for rule in from_api.iter().flatten() {
        if rule.is_immutable() {
            immutable.insert(rule.tag_name_pattern.clone());
        } else {
            delete_deny.insert(rule.tag_name_pattern.clone());
        }
    }
    Some(SeenTagRules {
        delete_deny,
        immutable,
        from_api: from_api.is_some(),
    })
}

/// The project's git refs, where the policy's rules look at them
/// (`when_ref`, `per_ref`): listed with the token the run uses; a listing
/// `run` could not use fails here, with the reason and the token to use.
async fn check_refs(gitlab: &GitLab, policy: &Policy, findings: &mut Findings) {
    if !policy
        .rules
        .iter()
        .any(|rule| rule.when_ref.is_some() || rule.per_ref)
    {
        return;
    }
    let refs = gitlab.refs().await;
    match &refs.incomplete_because {
        None => findings.ok(
            "git refs",
            format!(
                "{} and {} listed with the {} credentials (for the policy's git-aware rules)",
                plural(refs.slugs.len(), "branch or tag", "branches and tags"),
                plural(
                    refs.open_mrs.len(),
                    "open merge request",
                    "open merge requests"
                ),
                gitlab.credentials()
            ),
        ),
        Some(reason) => findings.add(
            Level::Fail,
            "git refs",
            reason.clone(),
            "without them `run` deletes nothing through when_ref rules and exits 1",
        ),
    }
}

/// `GET /projects/:id`: GitLab's own cleanup policy, the registry's
/// visibility, and the rate limit announced on the answer.
async fn check_project(gitlab: &GitLab, findings: &mut Findings) {
    let answer = match gitlab.project_settings().await {
        Ok(answer) => answer,
        Err(err) => {
            findings.add(
                Level::Warn,
                "project settings",
                format!("GET /projects/{} failed: {err}", gitlab.project()),
                "GitLab's cleanup policy, the registry's visibility and the rate limit were not checked",
            );
            return;
        }
    };
    match &answer.read {
        ProjectRead::Refused(status) => {
            let why = if gitlab.credentials() == "PRIVATE-TOKEN" {
                "GITLAB_TOKEN may not read the project"
            } else {
                "GitLab does not take the job token there"
            };
            let todo = "set GITLAB_TOKEN (an access token with read_api) to check them";
            for check in ["GitLab cleanup policy", "registry visibility"] {
                findings.add(
                    Level::Warn,
                    check,
                    format!("not checked: GET /projects/:id answered {status} ({why})"),
                    todo,
                );
            }
        }
        ProjectRead::Found(settings) => {
            check_gitlab_policy(settings.container_expiration_policy.as_ref(), findings);
            check_visibility(
                settings.container_registry_access_level.as_deref(),
                findings,
            );
        }
    }
    check_rate_limit(answer.rate_limit.as_ref(), findings);
}

/// Whether the project's container registry is on, and for whom.
fn check_visibility(level: Option<&str>, findings: &mut Findings) {
    match level {
        Some("disabled") => findings.add(
            Level::Fail,
            "registry visibility",
            "container_registry_access_level: disabled — the project's container registry is turned off",
            "enable it in Settings > General > Visibility, or there is nothing to clean",
        ),
        Some(level @ ("enabled" | "private")) => findings.ok(
            "registry visibility",
            format!(
                "container_registry_access_level: {level} ({})",
                if level == "private" {
                    "project members only"
                } else {
                    "everyone with access to the project"
                }
            ),
        ),
        Some(other) => findings.ok(
            "registry visibility",
            format!("container_registry_access_level: {other}"),
        ),
        None => findings.ok(
            "registry visibility",
            "GitLab did not say (container_registry_access_level absent)",
        ),
    }
}

/// The REST budget GitLab announced, and whether a run has headroom.
fn check_rate_limit(
    rate_limit: Option<&crate::gitlab::client::RateLimitHeaders>,
    findings: &mut Findings,
) {
    match rate_limit {
        None => findings.ok(
            "rate limit",
            "GitLab announced no RateLimit-* headers on the answer",
        ),
        Some(rate) => {
            let limit = rate.limit.unwrap_or(rate.remaining.max(1));
            let headroom = format!(
                "{} of {limit} requests left in the window{}",
                rate.remaining,
                rate.reset
                    .map(|reset| format!(" (resets at unix time {reset})"))
                    .unwrap_or_default()
            );
            if rate.remaining.saturating_mul(10) < limit {
                findings.add(
                    Level::Warn,
                    "rate limit",
                    headroom,
                    "a run waits for the reset when the budget runs low; lower CLEANUP_CONCURRENCY or run at a quieter time",
                );
            } else {
                findings.ok("rate limit", headroom);
            }
        }
    }
}

fn check_gitlab_policy(policy: Option<&ExpirationPolicy>, findings: &mut Findings) {
    let Some(policy) = policy.filter(|policy| policy.enabled) else {
        findings.ok(
            "GitLab cleanup policy",
            "disabled: registry-cleanup is the only cleaner",
        );
        return;
    };
    let mut rule = vec![format!(
        "name_regex {:?}",
        policy
            .name_regex_delete
            .as_deref()
            .or(policy.name_regex.as_deref())
            .unwrap_or("")
    )];
    if let Some(keep) = &policy.name_regex_keep {
        rule.push(format!("name_regex_keep {keep:?}"));
    }
    if let Some(keep_n) = policy.keep_n {
        rule.push(format!("keep_n {keep_n}"));
    }
    if let Some(older_than) = &policy.older_than {
        rule.push(format!("older_than {older_than}"));
    }
    findings.add(
        Level::Warn,
        "GitLab cleanup policy",
        format!(
            "enabled, cadence {}{}, {}: two cleaners on one project — GitLab's may delete tags this policy keeps",
            policy.cadence.as_deref().unwrap_or("unknown"),
            policy
                .next_run_at
                .as_deref()
                .map(|at| format!(" (next run {at})"))
                .unwrap_or_default(),
            rule.join(", ")
        ),
        "disable it (Settings > Packages and registries > Cleanup policies), after `registry-cleanup policy import` if you want its rule",
    );
}
