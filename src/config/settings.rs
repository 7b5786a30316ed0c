//! Configuration from the environment, validated once at start-up.
//!
//! GitLab's `CI_*` variables (and `GITLAB_TOKEN`) are read with envy into
//! [`GitLabEnv`]; the `CLEANUP_*` variables into [`CleanupEnv`]. Flags win over
//! variables. Every error names the variable (or flag) and says what to set.
//! Nothing here touches the network.

use crate::wire::secret::RestAuth;
use crate::wire::urls::join_path;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use crate::domain::config_error::ConfigError;
use crate::wire::http::RetryPolicy;
use crate::wire::secret::Secret;

/// Requests in flight: 16 is the smallest power of two that is 10× faster than
/// one request at a time on the benchmark (BENCHMARKS.md), kind to a small
/// GitLab; the throttle halves it on 429s.
pub const DEFAULT_CONCURRENCY: usize = 16;
const MAX_CONCURRENCY: usize = 256;

/// GitLab's predefined variables, as the job (or the user's shell) sets them.
#[derive(Debug, Default, Deserialize)]
pub struct GitLabEnv {
    pub ci_server_url: Option<String>,
    pub ci_api_v4_url: Option<String>,
    pub ci_project_id: Option<String>,
    pub ci_project_path: Option<String>,
    pub ci_registry: Option<String>,
    pub ci_registry_image: Option<String>,
    pub ci_default_branch: Option<String>,
    pub ci_registry_user: Option<String>,
    pub ci_registry_password: Option<Secret>,
    pub ci_job_token: Option<Secret>,
    pub gitlab_token: Option<Secret>,
    pub ci_server_tls_ca_file: Option<PathBuf>,
    pub ssl_cert_file: Option<PathBuf>,
    pub cleanup_registry_url: Option<String>,
}

/// The `CLEANUP_<OPTION>` twins of the command-line flags, kept as text so
/// that a malformed value is reported with the variable's name.
#[derive(Debug, Default, Deserialize)]
pub struct CleanupEnv {
    pub cleanup_policy: Option<String>,
    pub cleanup_dry_run: Option<String>,
    pub cleanup_engine: Option<String>,
    pub cleanup_report: Option<String>,
    pub cleanup_concurrency: Option<String>,
    pub cleanup_max_deletions: Option<String>,
    pub cleanup_inventory: Option<String>,
    pub cleanup_now: Option<String>,
    pub cleanup_output: Option<String>,
    pub cleanup_allow_insecure_http: Option<String>,
    pub cleanup_retry_max_attempts: Option<String>,
    pub cleanup_retry_base_ms: Option<String>,
    pub cleanup_repository: Option<String>,
    pub cleanup_all_repositories: Option<String>,
    pub cleanup_dotenv: Option<String>,
    pub cleanup_metrics: Option<String>,
    pub cleanup_html: Option<String>,
    pub cleanup_from: Option<String>,
    pub cleanup_group: Option<String>,
    pub cleanup_shard: Option<String>,
    pub cleanup_instance: Option<String>,
    /// `run --plan` and `--plan-max-age`.
    pub cleanup_plan: Option<String>,
    pub cleanup_plan_max_age: Option<String>,
    /// `restore --tag`: tag names separated by commas or white space.
    pub cleanup_tag: Option<String>,
    /// The pull ledger (`--ledger`, `ledger serve`; see `config::ledger`).
    pub cleanup_ledger_url: Option<String>,
    pub cleanup_ledger_token: Option<Secret>,
    pub cleanup_ledger_listen: Option<String>,
    /// A PostgreSQL URL may hold a password.
    pub cleanup_ledger_db: Option<Secret>,
    pub cleanup_ledger_ignore_user_agent: Option<String>,
    /// GitLab CI's `parallel:` job index and count: the default shard in
    /// group mode.
    pub ci_node_index: Option<String>,
    pub ci_node_total: Option<String>,
}

/// Bounds of the retry settings: enough to ride out a rate-limit window, never
/// a hammering loop or a job that hangs for hours.
const MAX_RETRY_ATTEMPTS: usize = 20;
const MAX_RETRY_BASE_MS: usize = 60_000;

/// GitLab sets unset CI/CD variables and empty component inputs to "": treat
/// an empty value as not set.
fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn non_empty_secret(value: &Option<Secret>) -> Option<Secret> {
    value
        .as_ref()
        .filter(|s| !s.expose().trim().is_empty())
        .cloned()
}

/// The variables [`GitLabEnv`] reads (the `CLEANUP_*` ones are all ours).
const GITLAB_VARIABLES: &[&str] = &[
    "CI_SERVER_URL",
    "CI_API_V4_URL",
    "CI_PROJECT_ID",
    "CI_PROJECT_PATH",
    "CI_REGISTRY",
    "CI_REGISTRY_IMAGE",
    "CI_REGISTRY_USER",
    "CI_REGISTRY_PASSWORD",
    "CI_JOB_TOKEN",
    "GITLAB_TOKEN",
    "CI_SERVER_TLS_CA_FILE",
    "SSL_CERT_FILE",
];

/// The process environment as text. `std::env::vars` panics on a value that
/// is not UTF-8 — any variable, even one we never read (a commit message in
/// `CI_COMMIT_MESSAGE` can hold any bytes). Such variables are skipped,
/// unless they are ours: then the error names them.
fn environment(ours: impl Fn(&str) -> bool) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (key, value) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        match value.into_string() {
            Ok(value) => vars.push((key.to_string(), value)),
            Err(_) if ours(key) => {
                return Err(ConfigError::setting(
                    key,
                    format!("{key} is not valid UTF-8 text: set it to a plain value or unset it"),
                ))
            }
            Err(_) => {}
        }
    }
    Ok(vars)
}

impl GitLabEnv {
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars =
            environment(|key| GITLAB_VARIABLES.contains(&key) || key.starts_with("CLEANUP_"))?;
        Self::from_vars(vars)
    }

    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        envy::from_iter(vars).map_err(|err| {
            ConfigError::variable("CI_*", format!("reading GitLab's CI_* variables: {err}"))
        })
    }
}

impl CleanupEnv {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(environment(|key| {
            key.starts_with("CLEANUP_") || key == "CI_NODE_INDEX" || key == "CI_NODE_TOTAL"
        })?)
    }

    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        envy::from_iter(vars).map_err(|err| {
            ConfigError::variable(
                "CLEANUP_*",
                format!("reading the CLEANUP_* variables: {err}"),
            )
        })
    }

    pub fn string(&self, value: &Option<String>) -> Option<String> {
        non_empty(value).map(str::to_string)
    }

    pub fn path(&self, value: &Option<String>) -> Option<PathBuf> {
        non_empty(value).map(PathBuf::from)
    }

    pub fn dry_run(&self) -> Result<bool, ConfigError> {
        parse_bool("CLEANUP_DRY_RUN", &self.cleanup_dry_run)
    }

    pub fn all_repositories(&self) -> Result<bool, ConfigError> {
        parse_bool("CLEANUP_ALL_REPOSITORIES", &self.cleanup_all_repositories)
    }

    pub fn instance(&self) -> Result<bool, ConfigError> {
        parse_bool("CLEANUP_INSTANCE", &self.cleanup_instance)
    }

    pub fn allow_insecure_http(&self) -> Result<bool, ConfigError> {
        parse_bool(
            "CLEANUP_ALLOW_INSECURE_HTTP",
            &self.cleanup_allow_insecure_http,
        )
    }

    pub fn concurrency(&self, flag: Option<usize>) -> Result<usize, ConfigError> {
        let value = match flag {
            Some(value) => Some((value, "--concurrency")),
            None => parse_count("CLEANUP_CONCURRENCY", &self.cleanup_concurrency)?
                .map(|value| (value, "CLEANUP_CONCURRENCY")),
        };
        match value {
            None => Ok(DEFAULT_CONCURRENCY),
            Some((0, name)) => Err(ConfigError::setting(name, format!(
                "{name} is 0: set it to a number of parallel requests from 1 to {MAX_CONCURRENCY} (default {DEFAULT_CONCURRENCY})"
            ))
            ),
            Some((value, name)) if value > MAX_CONCURRENCY => Err(ConfigError::setting(name, format!(
                "{name} is {value}: set it to a number of parallel requests from 1 to {MAX_CONCURRENCY} (default {DEFAULT_CONCURRENCY})"
            ))
            ),
            Some((value, _)) => Ok(value),
        }
    }

    /// The retry policy, with `CLEANUP_RETRY_MAX_ATTEMPTS` (attempts per
    /// request, retries included) and `CLEANUP_RETRY_BASE_MS` (first backoff
    /// step) applied.
    pub fn retry_policy(&self) -> Result<RetryPolicy, ConfigError> {
        let mut policy = RetryPolicy::default();
        if let Some(attempts) = parse_count(
            "CLEANUP_RETRY_MAX_ATTEMPTS",
            &self.cleanup_retry_max_attempts,
        )? {
            if !(1..=MAX_RETRY_ATTEMPTS).contains(&attempts) {
                return Err(ConfigError::variable("CLEANUP_RETRY_MAX_ATTEMPTS", format!(
                    "CLEANUP_RETRY_MAX_ATTEMPTS is {attempts}: set it to a number of attempts per request from 1 (no retry) to {MAX_RETRY_ATTEMPTS} (default {})",
                    policy.max_attempts
                ))
                );
            }
            policy.max_attempts = attempts as u32;
        }
        if let Some(base) = parse_count("CLEANUP_RETRY_BASE_MS", &self.cleanup_retry_base_ms)? {
            if !(1..=MAX_RETRY_BASE_MS).contains(&base) {
                return Err(ConfigError::variable("CLEANUP_RETRY_BASE_MS", format!(
                    "CLEANUP_RETRY_BASE_MS is {base}: set it to the first backoff step in milliseconds, from 1 to {MAX_RETRY_BASE_MS} (default {})",
                    policy.base_delay.as_millis()
                ))
                );
            }
            policy.base_delay = std::time::Duration::from_millis(base as u64);
        }
        Ok(policy)
    }

    pub fn max_deletions(&self, flag: Option<usize>) -> Result<Option<usize>, ConfigError> {
        match flag {
            Some(value) => Ok(Some(value)),
            // 0 in the variable means "no limit", so a component input can default to it.
            None => Ok(
                parse_count("CLEANUP_MAX_DELETIONS", &self.cleanup_max_deletions)?
                    .filter(|value| *value > 0),
            ),
        }
    }
}

fn parse_bool(name: &str, value: &Option<String>) -> Result<bool, ConfigError> {
    match non_empty(value).map(str::to_ascii_lowercase).as_deref() {
        None => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::setting(
            name,
            format!("{name}={other:?} is not a boolean: set it to true or false"),
        )),
    }
}

fn parse_count(name: &str, value: &Option<String>) -> Result<Option<usize>, ConfigError> {
    match non_empty(value) {
        None => Ok(None),
        Some(text) => text.parse::<usize>().map(Some).map_err(|_| {
            ConfigError::setting(
                name,
                format!("{name}={text:?} is not a whole number: set it to e.g. 8, or unset it"),
            )
        }),
    }
}

/// Everything needed to talk to GitLab and its registry, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `CI_SERVER_URL`: the only origin that ever receives credentials.
    pub server_url: Url,
    pub api_url: Url,
    /// `CI_PROJECT_ID` or the URL-encoded `CI_PROJECT_PATH`, as used in REST paths.
    pub project: Option<String>,
    pub registry_url: Url,
    /// The variable `registry_url` came from (`CLEANUP_REGISTRY_URL`,
    /// `CI_REGISTRY` or `CI_REGISTRY_IMAGE`), for errors about it.
    pub registry_url_from: &'static str,
    /// `CI_REGISTRY` (host[:port]), used to recognise host-prefixed repository paths.
    pub registry_host: Option<String>,
    /// Full path of the project's root image, e.g. `group/project`; `None`
    /// with `CI_PROJECT_ID` alone, when it is read from GitLab instead
    /// (`Clients::root_repository`).
    pub root_repository: Option<String>,
    pub rest_auth: Option<RestAuth>,
    /// Basic credentials for `/jwt/auth`.
    pub registry_credentials: Option<(String, Secret)>,
    pub extra_ca_files: Vec<PathBuf>,
    /// The variable each URL above came from, for error messages.
    pub url_variables: Vec<(Url, &'static str)>,
    /// The variable that named the project (`CI_PROJECT_ID` or `CI_PROJECT_PATH`).
    pub project_variable: Option<&'static str>,
    /// `CI_DEFAULT_BRANCH`: every branch listing of the project must hold it.
    pub default_branch: Option<String>,
    /// The variable `root_repository` came from (`CI_REGISTRY_IMAGE` or
    /// `CI_PROJECT_PATH`).
    pub root_variable: Option<&'static str>,
}

impl Settings {
    pub fn from_env(env: &GitLabEnv, allow_insecure_http: bool) -> Result<Settings, ConfigError> {
        let (server_url, api_url) = gitlab_urls(env, allow_insecure_http)?;
        let (project, project_variable) = project(env)?;
        let registry = registry_url(env, allow_insecure_http)?;
        let root_repository = root_repository(env, registry.host.as_deref())?;
        let api_variable = if non_empty(&env.ci_api_v4_url).is_some() {
            "CI_API_V4_URL"
        } else {
            "CI_SERVER_URL"
        };
        let url_variables = vec![
            (server_url.clone(), "CI_SERVER_URL"),
            (api_url.clone(), api_variable),
            // CI_REGISTRY is a host without a scheme: a scheme is set in
            // CLEANUP_REGISTRY_URL.
            (registry.url.clone(), "CLEANUP_REGISTRY_URL"),
        ];
        Ok(Settings {
            server_url,
            api_url,
            project,
            registry_url: registry.url,
            registry_url_from: registry.from,
            registry_host: registry.host,
            root_repository,
            rest_auth: rest_auth(env),
            registry_credentials: registry_credentials(env)?,
            extra_ca_files: extra_ca_files(env)?,
            url_variables,
            project_variable,
            default_branch: non_empty(&env.ci_default_branch).map(str::to_string),
            root_variable: if non_empty(&env.ci_registry_image).is_some() {
                Some("CI_REGISTRY_IMAGE")
            } else {
                non_empty(&env.ci_project_path).map(|_| "CI_PROJECT_PATH")
            },
        })
    }

    /// The variable the REST root came from: `CI_API_V4_URL`, or
    /// `CI_SERVER_URL` it was derived from.
    pub fn api_variable(&self) -> &'static str {
        self.url_variables
            .iter()
            .find(|(url, _)| *url == self.api_url)
            .map_or("CI_SERVER_URL", |(_, variable)| variable)
    }

    /// The REST project reference, or an error saying which variable to set.
    pub fn require_project(&self) -> Result<&str, ConfigError> {
        self.project.as_deref().ok_or_else(|| {
            ConfigError::variable("CI_PROJECT_PATH", 
                "neither CI_PROJECT_ID nor CI_PROJECT_PATH is set: set one of them to the project (e.g. CI_PROJECT_PATH=group/project)",
            )
        })
    }

    pub fn require_rest_auth(&self) -> Result<&RestAuth, ConfigError> {
        self.rest_auth.as_ref().ok_or_else(|| {
            ConfigError::variable("GITLAB_TOKEN", 
                "no REST API credentials: set GITLAB_TOKEN to an access token with the api scope (CI jobs have CI_JOB_TOKEN)",
            )
        })
    }
}

/// `CI_SERVER_URL` and the REST root (`CI_API_V4_URL`, else derived), on
/// one origin: the only one that ever receives credentials.
fn gitlab_urls(env: &GitLabEnv, allow_insecure_http: bool) -> Result<(Url, Url), ConfigError> {
    let server_url = parse_url(
        "CI_SERVER_URL",
        non_empty(&env.ci_server_url).ok_or_else(|| {
            ConfigError::variable("CI_SERVER_URL",
                "CI_SERVER_URL is not set: set it to your GitLab's base URL, e.g. https://gitlab.example.com (GitLab sets it in CI jobs)",
            )
        })?,
    )?;
    check_scheme("CI_SERVER_URL", &server_url, allow_insecure_http)?;
    // A common slip: the REST root given as the base URL. Every REST
    // call would then go to …/api/v4/api/v4/… and answer 404.
    if server_url.path().trim_end_matches('/').ends_with("/api/v4") {
        let base = server_url
            .as_str()
            .trim_end_matches('/')
            .trim_end_matches("/api/v4");
        return Err(ConfigError::variable("CI_SERVER_URL", format!(
            "CI_SERVER_URL={} ends in /api/v4, but it is GitLab's base URL: drop the suffix (CI_SERVER_URL={base}); the REST root is derived from it, or set in CI_API_V4_URL",
            server_url.as_str()
        )));
    }
    let api_url = match non_empty(&env.ci_api_v4_url) {
        Some(text) => parse_url("CI_API_V4_URL", text)?,
        None => join_path(&server_url, "api/v4"),
    };
    check_scheme("CI_API_V4_URL", &api_url, allow_insecure_http)?;
    if api_url.origin() != server_url.origin() {
        return Err(ConfigError::variable("CI_API_V4_URL", format!(
            "CI_API_V4_URL ({api_url}) is not on CI_SERVER_URL's origin ({}): credentials are only sent to CI_SERVER_URL; fix one of them",
            server_url.origin().ascii_serialization()
        )));
    }
    Ok((server_url, api_url))
}

/// The project as REST paths name it (`CI_PROJECT_ID`, else the URL-encoded
/// `CI_PROJECT_PATH`), and the variable that named it.
fn project(env: &GitLabEnv) -> Result<(Option<String>, Option<&'static str>), ConfigError> {
    match (
        non_empty(&env.ci_project_id),
        non_empty(&env.ci_project_path),
    ) {
        (Some(id), _) => {
            let id: u64 = id.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
                ConfigError::variable("CI_PROJECT_ID", format!(
                    "CI_PROJECT_ID={id:?} is not a project ID: set it to the numeric ID shown on the project's overview page, or unset it and set CI_PROJECT_PATH"
                ))
            })?;
            Ok((Some(id.to_string()), Some("CI_PROJECT_ID")))
        }
        (None, Some(path)) => Ok((
            Some(
                percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            ),
            Some("CI_PROJECT_PATH"),
        )),
        (None, None) => Ok((None, None)),
    }
}

/// Where the registry is, and which variable said so.
struct RegistryLocation {
    url: Url,
    /// `CLEANUP_REGISTRY_URL`, `CI_REGISTRY` or `CI_REGISTRY_IMAGE`.
    from: &'static str,
    /// `CI_REGISTRY` (host[:port]).
    host: Option<String>,
}

fn registry_url(
    env: &GitLabEnv,
    allow_insecure_http: bool,
) -> Result<RegistryLocation, ConfigError> {
    let host = non_empty(&env.ci_registry).map(str::to_string);
    let (url, from) = match (non_empty(&env.cleanup_registry_url), &host) {
        (Some(text), _) => (parse_url("CLEANUP_REGISTRY_URL", text)?, "CLEANUP_REGISTRY_URL"),
        (None, Some(host)) => (parse_url("CI_REGISTRY", &format!("https://{host}"))?, "CI_REGISTRY"),
        (None, None) => match non_empty(&env.ci_registry_image).and_then(|i| i.split_once('/')) {
            Some((host, _)) => (
                parse_url("CI_REGISTRY_IMAGE", &format!("https://{host}"))?,
                "CI_REGISTRY_IMAGE",
            ),
            None => {
                return Err(ConfigError::variable("CI_REGISTRY",
                    "CI_REGISTRY is not set: set it to the registry's host[:port], e.g. registry.example.com (or CLEANUP_REGISTRY_URL to a full URL)",
                ))
            }
        },
    };
    // A scheme is the URL's variable's; CI_REGISTRY_IMAGE's host counts as CI_REGISTRY.
    let scheme_variable = if from == "CLEANUP_REGISTRY_URL" {
        "CLEANUP_REGISTRY_URL"
    } else {
        "CI_REGISTRY"
    };
    check_scheme(scheme_variable, &url, allow_insecure_http)?;
    Ok(RegistryLocation { url, from, host })
}

/// The REST credentials: an access token (`GITLAB_TOKEN`) wins over the
/// job token.
fn rest_auth(env: &GitLabEnv) -> Option<RestAuth> {
    match (
        non_empty_secret(&env.gitlab_token),
        non_empty_secret(&env.ci_job_token),
    ) {
        (Some(token), _) => Some(RestAuth {
            header: "PRIVATE-TOKEN",
            token,
        }),
        (None, Some(token)) => Some(RestAuth {
            header: "JOB-TOKEN",
            token,
        }),
        (None, None) => None,
    }
}

/// Basic credentials for `/jwt/auth`: the registry's, or outside CI the
/// access token.
fn registry_credentials(env: &GitLabEnv) -> Result<Option<(String, Secret)>, ConfigError> {
    Ok(match non_empty_secret(&env.ci_registry_password) {
        Some(password) => {
            let user = non_empty(&env.ci_registry_user).ok_or_else(|| {
                ConfigError::variable("CI_REGISTRY_USER",
                    "CI_REGISTRY_PASSWORD is set but CI_REGISTRY_USER is not: set it to your GitLab username (gitlab-ci-token in CI)",
                )
            })?;
            Some((user.to_string(), password))
        }
        // Outside CI an access token is also the registry password.
        None => non_empty_secret(&env.gitlab_token).map(|token| {
            let user = non_empty(&env.ci_registry_user).unwrap_or("registry-cleanup");
            (user.to_string(), token)
        }),
    })
}

fn extra_ca_files(env: &GitLabEnv) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    for (name, file) in [
        ("CI_SERVER_TLS_CA_FILE", &env.ci_server_tls_ca_file),
        ("SSL_CERT_FILE", &env.ssl_cert_file),
    ] {
        if let Some(file) = file.as_ref().filter(|f| !f.as_os_str().is_empty()) {
            if !file.is_file() {
                return Err(ConfigError::setting(name, format!(
                    "{name}={} does not name a readable file: point it at a PEM CA bundle or unset it",
                    file.display()
                )));
            }
            files.push(file.clone());
        }
    }
    Ok(files)
}

fn root_repository(
    env: &GitLabEnv,
    registry_host: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    if let Some(image) = non_empty(&env.ci_registry_image) {
        let path = match registry_host {
            Some(host) => image
                .strip_prefix(host)
                .and_then(|rest| rest.strip_prefix('/')),
            None => image.split_once('/').map(|(_, path)| path),
        };
        return path
            .filter(|path| !path.is_empty())
            .map(|path| Some(path.trim_end_matches('/').to_string()))
            .ok_or_else(|| {
                ConfigError::variable("CI_REGISTRY_IMAGE", format!(
                    "CI_REGISTRY_IMAGE={image:?} is not CI_REGISTRY followed by the project path: set it to e.g. registry.example.com/group/project"
                ))
            });
    }
    match non_empty(&env.ci_project_path) {
        // Registry paths are the project path in lower case.
        Some(path) => Ok(Some(path.trim_matches('/').to_ascii_lowercase())),
        // The project's path is read from GitLab when it is needed.
        None if non_empty(&env.ci_project_id).is_some() => Ok(None),
        None => Err(ConfigError::variable("CI_REGISTRY_IMAGE", 
            "cannot tell the project's image: set CI_REGISTRY_IMAGE (registry.example.com/group/project) or CI_PROJECT_PATH (group/project)",
        )
        ),
    }
}

fn parse_url(name: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|err| {
        ConfigError::setting(
            name,
            format!(
                "{name}={text:?} is not a URL ({err}): set it to e.g. https://gitlab.example.com"
            ),
        )
    })?;
    if url.host_str().is_none() || !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::setting(
            name,
            format!(
            "{name}={text:?} must be an http(s) URL with a host, e.g. https://gitlab.example.com"
        ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::setting(name, format!(
            "{name} must not contain credentials: use CI_REGISTRY_USER/CI_REGISTRY_PASSWORD and GITLAB_TOKEN instead"
        ))
        );
    }
    Ok(url)
}

/// `https://` always; `http://` only to loopback, or with the explicit opt-in.
fn check_scheme(name: &str, url: &Url, allow_insecure_http: bool) -> Result<(), ConfigError> {
    if url.scheme() == "https" || allow_insecure_http || is_loopback(url) {
        return Ok(());
    }
    Err(ConfigError::setting(name, format!(
        "{name} ({url}) uses plain http:// to a host that is not loopback: credentials would travel unencrypted. Use https://, or pass --allow-insecure-http (CLEANUP_ALLOW_INSECURE_HTTP=true) if you really mean it"
    ))
    )
}

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> GitLabEnv {
        GitLabEnv::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("env parses")
    }

    fn ci_vars() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CI_SERVER_URL", "https://gitlab.example.com"),
            ("CI_PROJECT_ID", "42"),
            ("CI_PROJECT_PATH", "Group/Project"),
            ("CI_REGISTRY", "registry.example.com"),
            ("CI_REGISTRY_IMAGE", "registry.example.com/group/project"),
            ("CI_REGISTRY_USER", "gitlab-ci-token"),
            ("CI_REGISTRY_PASSWORD", "job-secret"),
            ("CI_JOB_TOKEN", "job-secret"),
        ]
    }

    fn error_of(result: Result<Settings, ConfigError>) -> String {
        format!("{:#}", result.expect_err("should fail"))
    }

    #[test]
    fn ci_job_settings() {
        let settings = Settings::from_env(&env(&ci_vars()), false).expect("valid");
        assert_eq!(
            settings.api_url.as_str(),
            "https://gitlab.example.com/api/v4"
        );
        assert_eq!(settings.project.as_deref(), Some("42"));
        assert_eq!(
            settings.registry_url.as_str(),
            "https://registry.example.com/"
        );
        assert_eq!(settings.root_repository.as_deref(), Some("group/project"));
        let auth = settings.rest_auth.expect("job token");
        assert_eq!(auth.header, "JOB-TOKEN");
        let (user, _) = settings.registry_credentials.expect("registry credentials");
        assert_eq!(user, "gitlab-ci-token");
    }

    #[test]
    fn access_token_wins_over_job_token() {
        let mut vars = ci_vars();
        vars.push(("GITLAB_TOKEN", "glpat-x"));
        let settings = Settings::from_env(&env(&vars), false).expect("valid");
        let auth = settings.rest_auth.expect("auth");
        assert_eq!(auth.header, "PRIVATE-TOKEN");
        assert_eq!(auth.token.expose(), "glpat-x");
    }

    #[test]
    fn project_path_is_url_encoded_when_there_is_no_id() {
        let vars: Vec<_> = ci_vars()
            .into_iter()
            .filter(|(k, _)| *k != "CI_PROJECT_ID" && *k != "CI_REGISTRY_IMAGE")
            .collect();
        let settings = Settings::from_env(&env(&vars), false).expect("valid");
        assert_eq!(settings.project.as_deref(), Some("Group%2FProject"));
        assert_eq!(settings.root_repository.as_deref(), Some("group/project"));
    }

    #[test]
    fn missing_server_url_names_the_variable() {
        let vars: Vec<_> = ci_vars()
            .into_iter()
            .filter(|(k, _)| *k != "CI_SERVER_URL")
            .collect();
        let message = error_of(Settings::from_env(&env(&vars), false));
        assert!(message.contains("CI_SERVER_URL is not set"), "{message}");
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let mut vars = ci_vars();
        vars.retain(|(k, _)| *k != "CI_SERVER_URL");
        vars.push(("CI_SERVER_URL", ""));
        let message = error_of(Settings::from_env(&env(&vars), false));
        assert!(message.contains("CI_SERVER_URL is not set"), "{message}");
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (name, value, expected) in [
            (
                "CI_PROJECT_ID",
                "forty-two",
                "CI_PROJECT_ID=\"forty-two\" is not a project ID",
            ),
            (
                "CI_PROJECT_ID",
                "0",
                "CI_PROJECT_ID=\"0\" is not a project ID",
            ),
            (
                "CI_SERVER_URL",
                "gitlab.example.com",
                "CI_SERVER_URL=\"gitlab.example.com\" is not a URL",
            ),
            (
                "CI_SERVER_URL",
                "ftp://gitlab.example.com",
                "must be an http(s) URL",
            ),
            (
                "CI_SERVER_URL",
                "https://user:pw@gitlab.example.com",
                "must not contain credentials",
            ),
            (
                "CI_API_V4_URL",
                "https://elsewhere.example.com/api/v4",
                "is not on CI_SERVER_URL's origin",
            ),
            (
                "CI_REGISTRY_IMAGE",
                "other.example.com/group/project",
                "CI_REGISTRY_IMAGE=",
            ),
            (
                "CI_SERVER_TLS_CA_FILE",
                "/nonexistent/ca.pem",
                "CI_SERVER_TLS_CA_FILE=/nonexistent/ca.pem does not name a readable file",
            ),
        ] {
            let mut vars = ci_vars();
            vars.retain(|(k, _)| *k != name);
            vars.push((name, value));
            let message = error_of(Settings::from_env(&env(&vars), false));
            assert!(message.contains(expected), "{name}={value}: {message}");
        }
    }

    #[test]
    fn plain_http_needs_loopback_or_opt_in() {
        let mut vars = ci_vars();
        vars.retain(|(k, _)| *k != "CI_SERVER_URL");
        vars.push(("CI_SERVER_URL", "http://gitlab.example.com"));
        let message = error_of(Settings::from_env(&env(&vars), false));
        assert!(message.contains("--allow-insecure-http"), "{message}");
        assert!(Settings::from_env(&env(&vars), true).is_ok());

        let mut vars = ci_vars();
        vars.retain(|(k, _)| *k != "CI_SERVER_URL");
        vars.push(("CI_SERVER_URL", "http://127.0.0.1:8080"));
        vars.push(("CLEANUP_REGISTRY_URL", "http://[::1]:5000"));
        let settings = Settings::from_env(&env(&vars), false).expect("loopback is fine");
        assert_eq!(settings.registry_url.as_str(), "http://[::1]:5000/");
    }

    #[test]
    fn gitlab_under_a_path_prefix_keeps_it() {
        let mut vars = ci_vars();
        vars.retain(|(k, _)| *k != "CI_SERVER_URL");
        vars.push(("CI_SERVER_URL", "https://example.com/gitlab"));
        let settings = Settings::from_env(&env(&vars), false).expect("valid");
        assert_eq!(
            settings.api_url.as_str(),
            "https://example.com/gitlab/api/v4"
        );
    }

    #[test]
    fn registry_password_without_user_is_an_error() {
        let mut vars = ci_vars();
        vars.retain(|(k, _)| *k != "CI_REGISTRY_USER");
        let message = error_of(Settings::from_env(&env(&vars), false));
        assert!(message.contains("CI_REGISTRY_USER is not"), "{message}");
    }

    fn cleanup(vars: &[(&str, &str)]) -> CleanupEnv {
        CleanupEnv::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("env parses")
    }

    #[test]
    fn cleanup_variables_are_validated_by_name() {
        assert!(cleanup(&[("CLEANUP_DRY_RUN", "TRUE")])
            .dry_run()
            .expect("bool"));
        assert!(!cleanup(&[("CLEANUP_DRY_RUN", "")]).dry_run().expect("bool"));
        let message = format!(
            "{:#}",
            cleanup(&[("CLEANUP_DRY_RUN", "maybe")])
                .dry_run()
                .expect_err("bad")
        );
        assert!(
            message.contains("CLEANUP_DRY_RUN=\"maybe\" is not a boolean"),
            "{message}"
        );

        let env = cleanup(&[("CLEANUP_CONCURRENCY", "16")]);
        assert_eq!(env.concurrency(None).expect("n"), 16);
        assert_eq!(env.concurrency(Some(2)).expect("flag wins"), 2);
        assert_eq!(
            cleanup(&[]).concurrency(None).expect("default"),
            DEFAULT_CONCURRENCY
        );
        let message = format!(
            "{:#}",
            cleanup(&[("CLEANUP_CONCURRENCY", "lots")])
                .concurrency(None)
                .expect_err("bad")
        );
        assert!(
            message.contains("CLEANUP_CONCURRENCY=\"lots\""),
            "{message}"
        );
        let message = format!("{:#}", cleanup(&[]).concurrency(Some(0)).expect_err("zero"));
        assert!(message.contains("--concurrency is 0"), "{message}");

        assert_eq!(
            cleanup(&[("CLEANUP_MAX_DELETIONS", "0")])
                .max_deletions(None)
                .expect("n"),
            None
        );
        assert_eq!(
            cleanup(&[("CLEANUP_MAX_DELETIONS", "50")])
                .max_deletions(None)
                .expect("n"),
            Some(50)
        );
        let retry = cleanup(&[
            ("CLEANUP_RETRY_MAX_ATTEMPTS", "3"),
            ("CLEANUP_RETRY_BASE_MS", "10"),
        ])
        .retry_policy()
        .expect("retry");
        assert_eq!(retry.max_attempts, 3);
        assert_eq!(retry.base_delay, std::time::Duration::from_millis(10));
        assert_eq!(
            cleanup(&[]).retry_policy().expect("default").max_attempts,
            RetryPolicy::default().max_attempts
        );
        for (name, value, expected) in [
            (
                "CLEANUP_RETRY_MAX_ATTEMPTS",
                "0",
                "CLEANUP_RETRY_MAX_ATTEMPTS is 0",
            ),
            (
                "CLEANUP_RETRY_MAX_ATTEMPTS",
                "21",
                "CLEANUP_RETRY_MAX_ATTEMPTS is 21",
            ),
            (
                "CLEANUP_RETRY_MAX_ATTEMPTS",
                "many",
                "CLEANUP_RETRY_MAX_ATTEMPTS=\"many\" is not a whole number",
            ),
            ("CLEANUP_RETRY_BASE_MS", "0", "CLEANUP_RETRY_BASE_MS is 0"),
            (
                "CLEANUP_RETRY_BASE_MS",
                "1.5",
                "CLEANUP_RETRY_BASE_MS=\"1.5\" is not a whole number",
            ),
        ] {
            let message = format!(
                "{:#}",
                cleanup(&[(name, value)]).retry_policy().expect_err(value)
            );
            assert!(message.contains(expected), "{name}={value}: {message}");
        }

        let message = format!(
            "{:#}",
            cleanup(&[("CLEANUP_MAX_DELETIONS", "-1")])
                .max_deletions(None)
                .expect_err("bad")
        );
        assert!(message.contains("CLEANUP_MAX_DELETIONS"), "{message}");
    }
}
