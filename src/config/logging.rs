//! Logs on stderr through tracing-subscriber: the filter from `CLEANUP_LOG`
//! (or `RUST_LOG`, default `info`), JSON lines with `CLEANUP_LOG_FORMAT=json`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::domain::config_error::ConfigError;

pub fn init() -> Result<(), ConfigError> {
    let (variable, directives) = ["CLEANUP_LOG", "RUST_LOG"]
        .iter()
        .find_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (*name, v))
        })
        .unwrap_or(("CLEANUP_LOG", "info".to_string()));
    let filter = EnvFilter::builder().parse(&directives).map_err(|err| {
        ConfigError::setting(variable, format!(
            "{variable}={directives:?} is not a log filter ({err}): use a level such as error, warn, info, debug or trace"
        ))
    })?;
    let format = std::env::var("CLEANUP_LOG_FORMAT").unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // CI logs are not terminals: no colour codes there.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_target(false);
    let installed = match format.trim() {
        "" | "text" => builder.try_init(),
        "json" => builder.json().flatten_event(true).try_init(),
        other => {
            return Err(ConfigError::variable(
                "CLEANUP_LOG_FORMAT",
                format!("CLEANUP_LOG_FORMAT={other:?} is not a log format: use text or json"),
            ))
        }
    };
    // A second init (tests calling the library twice) keeps the first subscriber.
    let _ = installed;
    Ok(())
}
