//! Repository paths: what `--repository` accepts and what the registry and
//! `/jwt/auth` need (the full path without the registry host).

use crate::domain::config_error::ConfigError;
use crate::domain::names::RepositoryPath;

/// Turns a `--repository` value into the repository's full path.
///
/// - `""` or `.` → the root image (`group/project`);
/// - a full path (`group/project/api`, or the root itself) stays as it is;
/// - `registry.example.com/group/project/api` loses the host when it is `CI_REGISTRY`;
/// - anything else is relative to the root (`api`, `tools/builder`).
pub fn normalise_repository(
    input: &str,
    root: &str,
    registry_host: Option<&str>,
) -> Result<RepositoryPath, ConfigError> {
    let trimmed = input.trim().trim_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return validate(input, root.to_string());
    }
    let without_host = match registry_host {
        Some(host) if trimmed.starts_with(&format!("{host}/")) => &trimmed[host.len() + 1..],
        _ => trimmed,
    };
    let path = without_host.to_ascii_lowercase();
    if path == root || path.starts_with(&format!("{root}/")) {
        return validate(input, path);
    }
    // A first segment that looks like a host (has a dot or a port) is another registry.
    let first = path.split('/').next().unwrap_or_default();
    if path.contains('/') && (first.contains(':') || first.contains('.')) && first != "." {
        return Err(ConfigError::argument("--repository", format!(
            "--repository {input:?} names a repository on another registry ({first}); give a path relative to the project (e.g. api) or the full path {root}/…"
        )));
    }
    let relative = path.strip_prefix("./").unwrap_or(&path);
    validate(input, format!("{root}/{relative}"))
}

fn validate(input: &str, path: String) -> Result<RepositoryPath, ConfigError> {
    RepositoryPath::parse(&path).map_err(|_| {
        ConfigError::argument("--repository", format!(
            "--repository {input:?} is not a valid repository path ({path}): use lower-case letters, digits, '.', '_', '-' in '/'-separated segments that start and end with a letter or digit, e.g. api or tools/builder"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "group/project";
    const HOST: Option<&str> = Some("registry.example.com:5050");

    #[test]
    fn normalises_every_accepted_form() {
        for (input, expected) in [
            ("", "group/project"),
            (".", "group/project"),
            ("./", "group/project"),
            ("api", "group/project/api"),
            ("./api", "group/project/api"),
            ("tools/builder", "group/project/tools/builder"),
            ("group/project", "group/project"),
            ("group/project/api", "group/project/api"),
            ("Group/Project/API", "group/project/api"),
            ("/group/project/api/", "group/project/api"),
            (
                "registry.example.com:5050/group/project/api",
                "group/project/api",
            ),
            ("registry.example.com:5050/group/project", "group/project"),
        ] {
            assert_eq!(
                normalise_repository(input, ROOT, HOST)
                    .expect(input)
                    .as_str(),
                expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejects_other_registries_and_junk() {
        for input in [
            "other.example.com/group/project/api",
            "localhost:5000/group/project",
            "api/../../other",
            "api//x",
            "api:latest",
            "a b",
            ".x",
            "group/project/.x",
            "api-",
        ] {
            let err = normalise_repository(input, ROOT, HOST).expect_err(input);
            assert!(err.to_string().contains("--repository"), "{input}: {err}");
            assert_eq!(err.setting_name(), Some("--repository"), "{input}");
        }
    }
}
