//! Registry authentication: the `WWW-Authenticate` challenge, GitLab's
//! `/jwt/auth` token service, and a per-repository token cache.
//!
//! GitLab answers `/jwt/auth` with 200 even when it drops actions the caller
//! may not have, so every token's (unverified) `access` claim is read and a
//! missing permission is reported by name before the registry refuses with a
//! bare 401. Tokens are refreshed shortly before `exp` and whenever the
//! registry says `invalid_token`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::Method;
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use crate::domain::config_error::ConfigError;
use crate::domain::exit::{Exit, ExitCode};
use crate::domain::tag_rules::TagRules;
use crate::wire::http::{display_url, Http, HttpError};
use crate::wire::secret::Secret;

/// Why no registry token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Our own configuration: no credentials, refused credentials.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry names a token service on another origin than
    /// `CI_SERVER_URL`: the credentials are not sent there.
    #[error("the registry sends clients to the token service {realm}, which is not on CI_SERVER_URL's origin ({server}); refusing to send registry credentials there. Check that CI_SERVER_URL and CI_REGISTRY / CLEANUP_REGISTRY_URL belong to the same GitLab")]
    ForeignRealm { realm: String, server: String },
    /// The challenge names no usable token service.
    #[error("{0}")]
    BadChallenge(String),
    /// The token service granted less than needed.
    #[error(transparent)]
    Permission(#[from] PermissionError),
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl ExitCode for AuthError {
    fn exit_code(&self) -> Exit {
        match self {
            AuthError::Config(_) | AuthError::ForeignRealm { .. } => Exit::Usage,
            AuthError::BadChallenge(_) | AuthError::Permission(_) => Exit::Failed,
            AuthError::Http(err) => err.exit_code(),
        }
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    pub fn service(&self) -> Option<&str> {
        self.param("service")
    }

    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }
}

/// Parses `Bearer realm="…",service="…",scope="repository:g/p:pull,delete"`.
///
/// Quoted values may contain commas and backslash escapes; unquoted values
/// end at the next comma. Returns `None` for a header that is not a challenge.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.find(char::is_whitespace) {
        Some(index) => (&header[..index], header[index..].trim_start()),
        None => (header, ""),
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return None;
    }
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        skip_while(&mut chars, |c| c.is_whitespace() || c == ',');
        if chars.peek().is_none() {
            break;
        }
        let key = take_while(&mut chars, |c| c != '=' && c != ',' && !c.is_whitespace());
        skip_while(&mut chars, char::is_whitespace);
        if chars.next_if_eq(&'=').is_none() || key.is_empty() {
            return None;
        }
        skip_while(&mut chars, char::is_whitespace);
        let value = if chars.next_if_eq(&'"').is_some() {
            quoted_value(&mut chars)?
        } else {
            take_while(&mut chars, |c| c != ',').trim_end().to_string()
        };
        params.push((key.to_ascii_lowercase(), value));
    }
    Some(Challenge {
        scheme: scheme.to_string(),
        params,
    })
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn skip_while(chars: &mut Chars<'_>, skip: impl Fn(char) -> bool) {
    while chars.next_if(|c| skip(*c)).is_some() {}
}

fn take_while(chars: &mut Chars<'_>, take: impl Fn(char) -> bool) -> String {
    let mut taken = String::new();
    while let Some(c) = chars.next_if(|c| take(*c)) {
        taken.push(c);
    }
    taken
}

/// The rest of a quoted value whose opening `"` was read, unescaped;
/// `None` when it never closes.
fn quoted_value(chars: &mut Chars<'_>) -> Option<String> {
    let mut value = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.extend(chars.next()),
            '"' => return Some(value),
            other => value.push(other),
        }
    }
    None
}

/// The claims of a registry JWT that we read (without verifying: the
/// registry verifies; we only want to explain refusals and expiry).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub access: Vec<Access>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Access {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
    /// GitLab's `meta` (project, tag rules). Read leniently: an odd shape
    /// must not cost the `actions` claim.
    #[serde(default)]
    pub meta: Option<serde_json::Value>,
}

pub fn decode_claims(jwt: &str) -> Option<Claims> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl Claims {
    /// Actions granted on `repository` (GitLab never grants `*` to a job token,
    /// but an admin's token may carry it).
    pub fn granted(&self, repository: &str) -> Vec<String> {
        self.access
            .iter()
            .filter(|a| a.kind == "repository" && a.name == repository)
            .flat_map(|a| a.actions.iter().cloned())
            .collect()
    }

    /// GitLab's tag rules for `repository` (§7): the delete-deny patterns
    /// for this token's user and the immutable patterns, from
    /// `access[].meta`. Empty when the token carries none.
    pub fn tag_rules(&self, repository: &str) -> TagRules {
        let mut delete_deny = Vec::new();
        let mut immutable = Vec::new();
        let strings = |value: Option<&serde_json::Value>| -> Vec<String> {
            value
                .and_then(serde_json::Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        for meta in self
            .access
            .iter()
            .filter(|a| a.kind == "repository" && a.name == repository)
            .filter_map(|a| a.meta.as_ref())
        {
            delete_deny.extend(strings(
                meta.get("tag_deny_access_patterns")
                    .and_then(|patterns| patterns.get("delete")),
            ));
            immutable.extend(strings(meta.get("tag_immutable_patterns")));
        }
        TagRules::new(&delete_deny, &immutable)
    }

    pub fn missing(&self, repository: &str, wanted: &[&str]) -> Vec<String> {
        let granted = self.granted(repository);
        if granted.iter().any(|a| a == "*") {
            return Vec::new();
        }
        wanted
            .iter()
            .filter(|w| !granted.iter().any(|g| g == *w))
            .map(|w| w.to_string())
            .collect()
    }

    /// When to stop using the token: a quarter of its lifetime (at most 30 s)
    /// before `exp`, so a request never leaves with a token about to expire.
    ///
    /// The claims come from the network: no value of `exp` or `iat` may
    /// overflow (an `exp` beyond what the clock can hold means "no expiry
    /// known", and the registry's `invalid_token` then triggers the refresh).
    pub fn refresh_at(&self) -> Option<SystemTime> {
        let exp = self.exp?;
        let lifetime = self
            .iat
            .map(|iat| exp.saturating_sub(iat).max(0))
            .unwrap_or(300);
        let margin_ms = u64::try_from(lifetime).unwrap_or(0).saturating_mul(1000) / 4;
        let margin = Duration::from_millis(margin_ms.min(30_000));
        let exp = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(u64::try_from(exp.max(0)).unwrap_or(0)))?;
        Some(exp.checked_sub(margin).unwrap_or(exp))
    }
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: Secret,
    refresh_at: Option<SystemTime>,
}

/// Where the registry sends us for tokens, as its challenge says.
#[derive(Debug, Clone)]
pub struct TokenService {
    pub realm: Url,
    pub service: Option<String>,
}

/// A repository and a comma-joined list of actions.
type TokenKey = (String, String);

/// Fetches and caches registry JWTs per repository and set of actions.
#[derive(Debug)]
pub struct RegistryAuth {
    http: Http,
    service: TokenService,
    credentials: Option<(String, Secret)>,
    cache: Mutex<HashMap<(String, String), CachedToken>>,
    /// One fetch at a time per key: requests that start together for the
    /// same repository share one token instead of each fetching its own.
    fetching: Mutex<HashMap<TokenKey, Arc<Mutex<()>>>>,
    /// Keys the token service answered with fewer actions than asked: asked
    /// again (the dry run's `pull,delete` for the tag rules, after listing
    /// warmed it), the same answer without another request.
    refused: Mutex<HashMap<TokenKey, PermissionError>>,
}

impl RegistryAuth {
    /// Refuses a realm that is not on `server_url`'s origin: the registry
    /// credentials (often the job token) go to GitLab and nowhere else.
    pub fn new(
        http: Http,
        challenge: &Challenge,
        server_url: &Url,
        credentials: Option<(String, Secret)>,
    ) -> Result<RegistryAuth, AuthError> {
        let realm_text = challenge.realm().ok_or_else(|| {
            AuthError::BadChallenge(
                "the registry's authentication challenge names no realm (token service)".into(),
            )
        })?;
        let realm = Url::parse(realm_text).map_err(|err| {
            AuthError::BadChallenge(format!(
                "the registry's token realm {realm_text:?} is not a URL: {err}"
            ))
        })?;
        if realm.origin() != server_url.origin() {
            return Err(AuthError::ForeignRealm {
                realm: display_url(&realm),
                server: server_url.origin().ascii_serialization(),
            });
        }
        Ok(RegistryAuth {
            http,
            service: TokenService {
                realm,
                service: challenge.service().map(str::to_string),
            },
            credentials,
            cache: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        })
    }

    /// A token for `repository` granting every one of `actions`.
    pub async fn token(&self, repository: &str, actions: &[&str]) -> Result<Secret, AuthError> {
        let key = (repository.to_string(), actions.join(","));
        if let Some(token) = self.cached(&key, actions).await {
            return Ok(token);
        }
        let gate = Arc::clone(self.fetching.lock().await.entry(key.clone()).or_default());
        let _turn = gate.lock().await;
        if let Some(token) = self.cached(&key, actions).await {
            return Ok(token);
        }
        if let Some(refused) = self.refused.lock().await.get(&key) {
            return Err(AuthError::Permission(refused.clone()));
        }
        let token = self.fetch(repository, actions).await?;
        let claims = decode_claims(token.expose()).unwrap_or_default();
        let missing = claims.missing(repository, actions);
        if !missing.is_empty() {
            let granted = claims.granted(repository);
            let refused = PermissionError {
                repository: repository.to_string(),
                missing,
                granted,
            };
            self.refused.lock().await.insert(key, refused.clone());
            return Err(AuthError::Permission(refused));
        }
        self.cache.lock().await.insert(
            key,
            CachedToken {
                token: token.clone(),
                refresh_at: claims.refresh_at(),
            },
        );
        Ok(token)
    }

    /// GitLab's tag rules for `repository`, from its `pull,delete` token
    /// (cached, or fetched: a dry run asks for delete too, so that the token
    /// carries them; nothing is written with it).
    pub async fn tag_rules(
        &self,
        repository: &str,
        actions: &[&str],
    ) -> Result<TagRules, AuthError> {
        let token = self.token(repository, actions).await?;
        Ok(decode_claims(token.expose())
            .unwrap_or_default()
            .tag_rules(repository))
    }

    /// A live cached token for the key, else one for the same repository
    /// granting more (a `pull,delete` token serves a `pull` request).
    async fn cached(&self, key: &TokenKey, actions: &[&str]) -> Option<Secret> {
        let cache = self.cache.lock().await;
        let now = SystemTime::now();
        let live = |cached: &&CachedToken| cached.refresh_at.is_none_or(|at| now < at);
        if let Some(cached) = cache.get(key).filter(live) {
            return Some(cached.token.clone());
        }
        cache
            .iter()
            .find(|((repository, granted), cached)| {
                *repository == key.0 && covers(granted, actions) && live(cached)
            })
            .map(|(_, cached)| cached.token.clone())
    }

    /// Forgets a token the registry called invalid (expired early, revoked):
    /// every cached token that could have served `actions` on `repository`.
    pub async fn invalidate(&self, repository: &str, actions: &[&str]) {
        self.cache
            .lock()
            .await
            .retain(|(cached_repository, granted), _| {
                cached_repository != repository || !covers(granted, actions)
            });
    }

    /// Asks for one token covering `actions` on many repositories (GitLab's
    /// `/jwt/auth` takes many `scope=` parameters), in batches of at most
    /// [`MAX_SCOPES_PER_TOKEN`] scopes and [`MAX_SCOPE_BYTES`] of them, so
    /// that the token — sent in every registry request's header — stays
    /// bounded. Each repository the token grants every action on gets it in
    /// the cache; the others are left to [`RegistryAuth::token`], which asks
    /// for them alone and says what was refused. Repositories with a live
    /// token are skipped. Returns how many calls were made.
    pub async fn prefetch(
        &self,
        repositories: &[&str],
        actions: &[&str],
    ) -> Result<usize, AuthError> {
        let joined = actions.join(",");
        let mut wanted = Vec::new();
        for repository in repositories {
            let key = (repository.to_string(), joined.clone());
            if self.cached(&key, actions).await.is_none() {
                wanted.push(*repository);
            }
        }
        let mut calls = 0;
        for batch in scope_batches(&wanted, &joined) {
            let scopes: Vec<String> = batch
                .iter()
                .map(|repository| format!("repository:{repository}:{joined}"))
                .collect();
            let token = self.fetch_scopes(&scopes).await?;
            calls += 1;
            let claims = decode_claims(token.expose()).unwrap_or_default();
            let refresh_at = claims.refresh_at();
            let mut cache = self.cache.lock().await;
            for repository in batch {
                if claims.missing(repository, actions).is_empty() {
                    cache.insert(
                        (repository.to_string(), joined.clone()),
                        CachedToken {
                            token: token.clone(),
                            refresh_at,
                        },
                    );
                }
            }
        }
        Ok(calls)
    }

    /// A token for the registry's catalog (`registry:catalog:*`), which
    /// GitLab grants administrators only; anyone else gets a token without
    /// it, refused here as a configuration error (exit 2).
    pub async fn catalog_token(&self) -> Result<Secret, AuthError> {
        let token = self
            .fetch_scopes(&["registry:catalog:*".to_string()])
            .await?;
        let granted = decode_claims(token.expose())
            .unwrap_or_default()
            .access
            .iter()
            .any(|a| {
                a.kind == "registry" && a.name == "catalog" && a.actions.iter().any(|x| x == "*")
            });
        if !granted {
            return Err(ConfigError::credentials(
                "the registry's token service did not grant registry:catalog:* (the repository catalog): --instance needs an administrator's access token (scopes api, read_registry, write_registry) in GITLAB_TOKEN; for one group use --group",
            )
            .into());
        }
        Ok(token)
    }

    /// A token for no scope at all, as `docker login` asks for: enough for
    /// the registry's base route (`GET /v2/`), and nothing else.
    pub async fn scopeless_token(&self) -> Result<Secret, AuthError> {
        self.fetch_scopes(&[]).await
    }

    async fn fetch(&self, repository: &str, actions: &[&str]) -> Result<Secret, AuthError> {
        self.fetch_scopes(&[format!("repository:{repository}:{}", actions.join(","))])
            .await
    }

    async fn fetch_scopes(&self, scopes: &[String]) -> Result<Secret, AuthError> {
        let (user, password) = self.credentials.as_ref().ok_or_else(|| {
            ConfigError::credentials(
                "the registry needs a token but no registry credentials are set: set CI_REGISTRY_USER and CI_REGISTRY_PASSWORD (GitLab sets them in CI jobs), or GITLAB_TOKEN",
            )
        })?;
        let mut url = self.service.realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &self.service.service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let response = self
            .http
            .send(Method::GET, &url, |request| {
                request.basic_auth(user, Some(password.expose()))
            })
            .await?;
        if response.status.as_u16() == 401 || response.status.as_u16() == 403 {
            return Err(ConfigError::credentials(format!(
                "GitLab refused the registry credentials of user {user:?} at {} ({}): check CI_REGISTRY_USER / CI_REGISTRY_PASSWORD (an access token needs the read_registry and write_registry scopes)",
                display_url(&self.service.realm),
                response.status
            ))
            .into());
        }
        if !response.status.is_success() {
            return Err(response.unexpected().into());
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        // Never `response.json()`: its error quotes the body, and this body
        // holds a token.
        let answer: TokenAnswer = serde_json::from_slice(&response.body).map_err(|err| {
            response.invalid(format!(
                "the token service's answer is not {{\"token\": \"…\"}} ({} at line {} column {}; body not shown: it may hold a token)",
                describe_json_error(&err),
                err.line(),
                err.column()
            ))
        })?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| response.invalid("the token service's answer has no token"))?;
        Ok(Secret::new(token))
    }
}

/// At most this many repositories share one registry token. The token goes
/// in the `Authorization` header of every registry request, and GitLab's
/// JWT lists each repository with its `meta` (project, tag rules): about
/// 310 bytes per repository once base64-encoded, so 50 repositories made a
/// 16 KB header, beyond the 8 KiB many proxies accept in one header line
/// (nginx's default `large_client_header_buffers`, in front of GitLab's
/// registry in Omnibus installs). 16 keep it near 5 KB; the cost is one
/// `/jwt/auth` call per 16 repositories instead of per 50.
pub const MAX_SCOPES_PER_TOKEN: usize = 16;
/// At most this many bytes of `scope=` values in one `/jwt/auth` call, so
/// that long repository paths keep the URL and the token as small.
pub const MAX_SCOPE_BYTES: usize = 2 * 1024;

/// `repositories` in batches of at most [`MAX_SCOPES_PER_TOKEN`], and of
/// at most [`MAX_SCOPE_BYTES`] of scopes (a longer single scope alone).
fn scope_batches<'a>(repositories: &[&'a str], actions: &str) -> Vec<Vec<&'a str>> {
    let mut batches: Vec<Vec<&str>> = Vec::new();
    let mut bytes = 0;
    for repository in repositories {
        let size = "repository:".len() + repository.len() + 1 + actions.len();
        match batches.last_mut() {
            Some(batch)
                if batch.len() < MAX_SCOPES_PER_TOKEN && bytes + size <= MAX_SCOPE_BYTES =>
            {
                batch.push(repository);
                bytes += size;
            }
            _ => {
                batches.push(vec![repository]);
                bytes = size;
            }
        }
    }
    batches
}

/// Whether a comma-joined action list grants every one of `actions`.
fn covers(granted: &str, actions: &[&str]) -> bool {
    actions.iter().all(|a| granted.split(',').any(|g| g == *a))
}

/// What kind of JSON problem, without serde's own text (which can quote
/// the offending value).
fn describe_json_error(err: &serde_json::Error) -> &'static str {
    match err.classify() {
        serde_json::error::Category::Io => "a read error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "a value of the wrong type",
        serde_json::error::Category::Eof => "truncated JSON",
    }
}

/// The token service silently dropped actions we need.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", permission_message(.repository, .missing, .granted))]
pub struct PermissionError {
    pub repository: String,
    pub missing: Vec<String>,
    pub granted: Vec<String>,
}

fn permission_message(repository: &str, missing: &[String], granted: &[String]) -> String {
    let granted = if granted.is_empty() {
        "nothing".to_string()
    } else {
        granted.join(", ")
    };
    let hint = if missing.iter().any(|m| m == "delete") {
        "deleting needs the Developer role (or higher) on the project for the token's user; deploy tokens can never delete"
    } else if missing.iter().any(|m| m == "push") {
        "putting a tag back (restore) or moving it off a shared manifest needs push (write_registry) permission: the Developer role or higher"
    } else {
        "check that the repository belongs to the project and the credentials can read its registry"
    };
    format!(
        "the registry token for {repository} lacks {} (granted: {granted}): {hint}",
        missing.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gitlab_challenges() {
        let challenge = parse_challenge(
            r#"Bearer realm="https://gitlab.example.com/jwt/auth",service="container_registry",scope="repository:g/p:pull,delete",error="insufficient_scope""#,
        )
        .expect("challenge");
        assert_eq!(challenge.scheme, "Bearer");
        assert_eq!(
            challenge.realm(),
            Some("https://gitlab.example.com/jwt/auth")
        );
        assert_eq!(challenge.service(), Some("container_registry"));
        assert_eq!(challenge.param("scope"), Some("repository:g/p:pull,delete"));
        assert_eq!(challenge.error(), Some("insufficient_scope"));
    }

    #[test]
    fn parses_spaces_unquoted_values_and_escapes() {
        let challenge = parse_challenge(
            r#"Bearer  realm = "https://h/jwt/auth" , service=container_registry, scope="repository:a/b:pull repository:a/c:pull,delete", note="say \"hi\"""#,
        )
        .expect("challenge");
        assert_eq!(challenge.realm(), Some("https://h/jwt/auth"));
        assert_eq!(challenge.service(), Some("container_registry"));
        assert_eq!(
            challenge.param("scope"),
            Some("repository:a/b:pull repository:a/c:pull,delete")
        );
        assert_eq!(challenge.param("note"), Some(r#"say "hi""#));
        assert_eq!(parse_challenge("Basic").expect("bare").params.len(), 0);
    }

    #[test]
    fn rejects_broken_challenges() {
        for header in [
            "",
            r#"Bearer realm="unterminated"#,
            "Bearer =x",
            "Bearer realm",
            "Be@rer x=y",
        ] {
            assert!(parse_challenge(header).is_none(), "{header:?}");
        }
    }

    fn jwt(claims: serde_json::Value) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.signature",
            engine.encode(br#"{"alg":"RS256"}"#),
            engine.encode(claims.to_string())
        )
    }

    #[test]
    fn reads_access_and_reports_missing_actions() {
        let token = jwt(serde_json::json!({
            "exp": 2_000_000_000, "iat": 1_999_999_700,
            "access": [{"type": "repository", "name": "g/p", "actions": ["pull"]}]
        }));
        let claims = decode_claims(&token).expect("claims");
        assert_eq!(claims.granted("g/p"), vec!["pull"]);
        assert_eq!(claims.missing("g/p", &["pull", "delete"]), vec!["delete"]);
        assert_eq!(claims.missing("g/other", &["pull"]), vec!["pull"]);
        let message = permission_message("g/p", &["delete".into()], &["pull".into()]);
        assert!(
            message.contains("lacks delete (granted: pull)"),
            "{message}"
        );

        let dropped = decode_claims(&jwt(serde_json::json!({"access": []}))).expect("claims");
        assert_eq!(
            dropped.missing("g/p", &["pull", "delete"]),
            vec!["pull", "delete"]
        );

        let star = decode_claims(&jwt(serde_json::json!({
            "access": [{"type": "repository", "name": "g/p", "actions": ["*"]}]
        })))
        .expect("claims");
        assert!(star.missing("g/p", &["pull", "delete", "push"]).is_empty());
        assert!(decode_claims("not-a-jwt").is_none());
        assert!(decode_claims("a.!!!.c").is_none());
    }

    #[test]
    fn reads_gitlab_tag_rules_from_meta() {
        let token = jwt(serde_json::json!({
            "access": [
                {"type": "repository", "name": "g/p", "actions": ["pull", "delete"],
                 "meta": {"project_path": "g/p", "project_id": 1, "root_namespace_id": 9,
                          "tag_deny_access_patterns": {"push": ["^x"], "delete": ["^v"]},
                          "tag_immutable_patterns": ["rel-"]}},
                {"type": "repository", "name": "g/q", "actions": ["pull"], "meta": "odd"}
            ]
        }));
        let claims = decode_claims(&token).expect("claims");
        let rules = claims.tag_rules("g/p");
        assert!(rules
            .reason("v1")
            .expect("protected")
            .starts_with("protected"));
        assert!(rules
            .reason("a-rel-1")
            .expect("immutable")
            .starts_with("immutable"));
        assert!(
            rules.reason("x1").is_none(),
            "push patterns do not protect deletes"
        );
        assert!(claims.tag_rules("g/q").is_empty());
        assert_eq!(claims.granted("g/q"), vec!["pull"]);
        assert!(claims.tag_rules("g/other").is_empty());
    }

    #[test]
    fn scopes_are_batched_by_count_and_size() {
        let names: Vec<String> = (0..120).map(|i| format!("g/p/r{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let sizes: Vec<usize> = scope_batches(&names, "pull,delete")
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [16, 16, 16, 16, 16, 16, 16, 8]);
        // Long paths: the byte bound comes first.
        let long: Vec<String> = (0..30)
            .map(|i| format!("{}{i}", "a/".repeat(100)))
            .collect();
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        let batches = scope_batches(&long, "pull,delete");
        assert!(batches.len() > 1, "{}", batches.len());
        for batch in &batches {
            let bytes: usize = batch
                .iter()
                .map(|r| format!("repository:{r}:pull,delete").len())
                .sum();
            assert!(bytes <= MAX_SCOPE_BYTES, "{bytes}");
        }
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 30);
        assert!(scope_batches(&[], "pull").is_empty());
    }

    #[test]
    fn a_token_with_more_actions_covers_fewer() {
        assert!(covers("pull,delete", &["pull"]));
        assert!(covers("pull,delete", &["pull", "delete"]));
        assert!(covers("pull,push,delete", &["pull", "delete"]));
        assert!(!covers("pull", &["pull", "delete"]));
        assert!(!covers("pullx,delete", &["pull"]));
    }

    #[test]
    fn refreshes_before_expiry() {
        let claims = Claims {
            exp: Some(1_000_300),
            iat: Some(1_000_000),
            access: vec![],
        };
        // 300 s lifetime: refresh 30 s early.
        assert_eq!(
            claims.refresh_at(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_270))
        );
        let short = Claims {
            exp: Some(1_000_002),
            iat: Some(1_000_000),
            access: vec![],
        };
        // 2 s lifetime: refresh half a second early.
        assert_eq!(
            short.refresh_at(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_001_500))
        );
        assert_eq!(Claims::default().refresh_at(), None);
        // Hostile claims: no overflow, no panic.
        for (exp, iat) in [
            (i64::MAX, Some(i64::MIN)),
            (i64::MAX, None),
            (i64::MIN, Some(i64::MAX)),
            (0, Some(-1)),
        ] {
            let claims = Claims {
                exp: Some(exp),
                iat,
                access: vec![],
            };
            let _ = claims.refresh_at();
        }
    }
}
