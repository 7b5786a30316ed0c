//! The pull ledger's settings, resolved like every other option (flag, else
//! variable): where `run`/`inventory --ledger` read it (`CLEANUP_LEDGER_URL`
//! and `CLEANUP_LEDGER_TOKEN`), and how `ledger serve` runs (`--listen`,
//! `--db`, `--ignore-user-agent`; the same token).

use std::net::SocketAddr;
use std::path::PathBuf;

use url::Url;

use crate::config::cli::Engine;
use crate::config::settings::{is_loopback, CleanupEnv};
use crate::domain::config_error::ConfigError;
use crate::domain::policy::Policy;
use crate::wire::secret::Secret;

/// Where `--ledger` reads pulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTarget {
    pub url: Url,
    pub token: Secret,
}

/// Where `ledger serve` keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerDb {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (it may hold a password: never printed).
    Postgres(Secret),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerServeOptions {
    pub listen: SocketAddr,
    pub db: LedgerDb,
    pub token: Secret,
    /// Prefixes of user agents whose pulls do not count, besides the
    /// defaults (the tool itself, GitLab).
    pub ignored_user_agents: Vec<String>,
}

/// `ledger serve`'s default address: loopback only, until told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// A token shorter than this is refused: it guards what may delete images.
const MIN_TOKEN_LENGTH: usize = 16;

/// `CLEANUP_LEDGER_TOKEN`, required and long enough to be a secret.
fn token(env: &CleanupEnv, needed_by: &str) -> Result<Secret, ConfigError> {
    let token = env
        .cleanup_ledger_token
        .as_ref()
        .map(|token| token.expose().trim())
        .unwrap_or("");
    if token.is_empty() {
        return Err(ConfigError::variable("CLEANUP_LEDGER_TOKEN", format!(
            "{needed_by} needs CLEANUP_LEDGER_TOKEN: the bearer token the ledger and its readers share (e.g. openssl rand -hex 32)"
        )));
    }
    if token.len() < MIN_TOKEN_LENGTH || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::variable("CLEANUP_LEDGER_TOKEN", format!(
            "CLEANUP_LEDGER_TOKEN must be at least {MIN_TOKEN_LENGTH} printable characters without spaces (e.g. openssl rand -hex 32)"
        )));
    }
    Ok(Secret::new(token))
}

/// `--ledger URL`, else `CLEANUP_LEDGER_URL`: `None` when neither is set.
/// Plain `http://` only to loopback or with `--allow-insecure-http`: the
/// token travels with each request.
pub fn target(
    flag: Option<String>,
    env: &CleanupEnv,
    allow_insecure_http: bool,
) -> Result<Option<LedgerTarget>, ConfigError> {
    let (text, name) = match flag {
        Some(text) => (text, "--ledger"),
        None => match env.string(&env.cleanup_ledger_url) {
            Some(text) => (text, "CLEANUP_LEDGER_URL"),
            None => return Ok(None),
        },
    };
    let url = Url::parse(text.trim()).map_err(|err| {
        ConfigError::setting(name, format!(
            "{name} {text:?} is not a URL ({err}): give the ledger's base URL, e.g. https://ledger.example.com"
        ))
    })?;
    if url.host_str().is_none() || !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::setting(
            name,
            format!(
            "{name} {text:?} must be an http(s) URL with a host, e.g. https://ledger.example.com"
        ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::setting(
            name,
            format!("{name} must not contain credentials: the token goes in CLEANUP_LEDGER_TOKEN"),
        ));
    }
    if url.scheme() == "http" && !allow_insecure_http && !is_loopback(&url) {
        return Err(ConfigError::setting(name, format!(
            "{name} ({url}) uses plain http:// to a host that is not loopback: the ledger token would travel unencrypted. Use https://, or pass --allow-insecure-http (CLEANUP_ALLOW_INSECURE_HTTP=true) if you really mean it"
        )));
    }
    Ok(Some(LedgerTarget {
        url,
        token: token(env, name)?,
    }))
}

/// What `run` checks before its first request when the policy has rules
/// with `unpulled_for`: the client engine needs `--ledger` to read pulls
/// from; the server engine cannot apply them (GitLab keeps no pull times).
pub fn check_run(
    policy: &Policy,
    origin: &str,
    engine: Engine,
    ledger: Option<&LedgerTarget>,
) -> Result<(), ConfigError> {
    let Some(rule) = policy.rules.iter().find(|rule| rule.unpulled_for.is_some()) else {
        return Ok(());
    };
    match (engine, ledger) {
        (Engine::Server, _) => Err(ConfigError::argument("--engine", format!(
            "{origin}: rule {:?} uses unpulled_for, which GitLab's bulk delete cannot express (GitLab keeps no pull times): use --engine client (the default) with --ledger URL",
            rule.name
        ))),
        (Engine::Client, None) => Err(ConfigError::argument("--ledger", format!(
            "{origin}: rule {:?} uses unpulled_for, which needs the pull ledger: pass --ledger URL (CLEANUP_LEDGER_URL) with CLEANUP_LEDGER_TOKEN (see docs/ledger.md); nothing was done",
            rule.name
        ))),
        (Engine::Client, Some(_)) => Ok(()),
    }
}

/// `ledger serve`'s options.
pub fn serve_options(
    listen: Option<String>,
    db: Option<String>,
    ignore_user_agents: Vec<String>,
    env: &CleanupEnv,
) -> Result<LedgerServeOptions, ConfigError> {
    let (listen_text, listen_name) = match listen {
        Some(text) => (text, "--listen"),
        None => match env.string(&env.cleanup_ledger_listen) {
            Some(text) => (text, "CLEANUP_LEDGER_LISTEN"),
            None => (DEFAULT_LISTEN.to_string(), "the default address"),
        },
    };
    let listen: SocketAddr = listen_text.trim().parse().map_err(|_| {
        ConfigError::setting(listen_name, format!(
            "{listen_name} {listen_text:?} is not an address to listen on: give IP:PORT, e.g. 0.0.0.0:8080 (default {DEFAULT_LISTEN})"
        ))
    })?;
    let (db_text, db_name) = match db {
        Some(text) => (Secret::new(text), "--db"),
        None => match env
            .cleanup_ledger_db
            .as_ref()
            .filter(|db| !db.expose().trim().is_empty())
        {
            Some(db) => (db.clone(), "CLEANUP_LEDGER_DB"),
            None => {
                return Err(ConfigError::argument("--db", 
                    "ledger serve needs --db (CLEANUP_LEDGER_DB): a SQLite file (e.g. /var/lib/ledger/pulls.db) or a postgres://user:password@host/database URL",
                ))
            }
        },
    };
    let text = db_text.expose().trim();
    let db = if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        // Checked here, so a typo is a configuration error (exit 2).
        // The parser's message names a part, never the password.
        text.parse::<tokio_postgres::Config>().map_err(|err| {
            ConfigError::setting(db_name, format!(
                "{db_name} is not a PostgreSQL URL (postgres://user:password@host:port/database): {err}"
            ))
        })?;
        LedgerDb::Postgres(Secret::new(text))
    } else if text.contains("://") {
        return Err(ConfigError::setting(
            db_name,
            format!("{db_name}: only SQLite files and postgres:// URLs are supported"),
        ));
    } else {
        LedgerDb::Sqlite(PathBuf::from(text))
    };
    let mut ignored_user_agents = ignore_user_agents;
    if ignored_user_agents.is_empty() {
        if let Some(text) = env.string(&env.cleanup_ledger_ignore_user_agent) {
            ignored_user_agents = text
                .split(',')
                .map(str::trim)
                .filter(|prefix| !prefix.is_empty())
                .map(str::to_string)
                .collect();
        }
    }
    if let Some(empty) = ignored_user_agents.iter().find(|p| p.trim().is_empty()) {
        return Err(ConfigError::argument(
            "--ignore-user-agent",
            format!("--ignore-user-agent {empty:?}: an empty prefix would ignore every pull"),
        ));
    }
    Ok(LedgerServeOptions {
        listen,
        db,
        token: token(env, "ledger serve")?,
        ignored_user_agents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> CleanupEnv {
        CleanupEnv::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("variables")
    }

    const TOKEN: (&str, &str) = ("CLEANUP_LEDGER_TOKEN", "0123456789abcdef0123");

    #[test]
    fn the_ledger_url_needs_its_token_and_https_off_loopback() {
        assert_eq!(target(None, &env(&[TOKEN]), false), Ok(None));
        let err =
            target(Some("http://127.0.0.1:8080".into()), &env(&[]), false).expect_err("no token");
        assert!(
            err.to_string()
                .contains("--ledger needs CLEANUP_LEDGER_TOKEN"),
            "{err}"
        );
        let err = target(
            None,
            &env(&[("CLEANUP_LEDGER_URL", "http://ledger.internal"), TOKEN]),
            false,
        )
        .expect_err("plain http");
        assert!(
            err.to_string()
                .starts_with("CLEANUP_LEDGER_URL (http://ledger.internal/) uses plain http://"),
            "{err}"
        );
        let ok = target(
            None,
            &env(&[("CLEANUP_LEDGER_URL", "http://ledger.internal"), TOKEN]),
            true,
        )
        .expect("opted in")
        .expect("set");
        assert_eq!(ok.url.as_str(), "http://ledger.internal/");
        let err = target(
            Some("https://ledger".into()),
            &env(&[("CLEANUP_LEDGER_TOKEN", "short")]),
            false,
        )
        .expect_err("short token");
        assert!(err.to_string().contains("at least 16"), "{err}");
        // The token is never shown.
        assert!(!format!("{ok:?}").contains(TOKEN.1));
    }

    #[test]
    fn serve_options_name_their_source() {
        let err = serve_options(None, None, vec![], &env(&[TOKEN])).expect_err("no db");
        assert!(
            err.to_string().contains("--db (CLEANUP_LEDGER_DB)"),
            "{err}"
        );
        let err = serve_options(
            Some("localhost:80".into()),
            Some("x.db".into()),
            vec![],
            &env(&[TOKEN]),
        )
        .expect_err("bad listen");
        assert!(
            err.to_string().starts_with("--listen \"localhost:80\""),
            "{err}"
        );
        let err =
            serve_options(None, Some("x.db".into()), vec![], &env(&[])).expect_err("no token");
        assert!(
            err.to_string()
                .contains("ledger serve needs CLEANUP_LEDGER_TOKEN"),
            "{err}"
        );
        let options = serve_options(
            None,
            None,
            vec![],
            &env(&[
                TOKEN,
                (
                    "CLEANUP_LEDGER_DB",
                    "postgres://ledger:hunter2@127.0.0.1/ledger",
                ),
                (
                    "CLEANUP_LEDGER_IGNORE_USER_AGENT",
                    "trivy/, Go-http-client/",
                ),
            ]),
        )
        .expect("valid");
        assert_eq!(options.listen.to_string(), DEFAULT_LISTEN);
        assert!(matches!(options.db, LedgerDb::Postgres(_)));
        assert_eq!(options.ignored_user_agents, ["trivy/", "Go-http-client/"]);
        assert!(!format!("{options:?}").contains("hunter2"));
        let err = serve_options(None, Some("mysql://x".into()), vec![], &env(&[TOKEN]))
            .expect_err("mysql");
        assert!(
            err.to_string()
                .contains("only SQLite files and postgres://"),
            "{err}"
        );
    }
}
