//! `registry-cleanup policy import`: GitLab's cleanup policy, from a file
//! or live from `GET /projects/:id`, as a policy file.

use crate::commands::exit::Context as _;
use crate::commands::exit::{CommandResult, Failure};

use crate::config::options::ImportOptions;
use crate::domain::config_error::ConfigError;
use crate::domain::exit::Exit;
use crate::execute::clients::Clients;
use crate::gitlab::client::ProjectRead;
use crate::gitlab::policy_import::{import as import_policy, ExpirationPolicy};

pub async fn import(options: ImportOptions) -> CommandResult {
    let (policy, source) = match &options.from {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                ConfigError::file(path.display().to_string(), format!(
                    "--from {}: cannot read it ({err}); give a JSON file of the project (GET /projects/:id) or of its container_expiration_policy",
                    path.display()
                ))
            })?;
            let origin = path.display().to_string();
            (ExpirationPolicy::from_json(&text, &origin)?, origin)
        }
        None => live(&options).await?,
    };
    let text = import_policy(&policy, &source)?;
    match &options.output {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("writing the policy to {}", path.display()))?;
            eprintln!(
                "registry-cleanup: wrote {}; preview it with `registry-cleanup run --dry-run --policy {}`",
                path.display(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(Exit::Success)
}

/// The project's policy through REST: an access token only, as GitLab
/// refuses the job token on `GET /projects/:id`.
async fn live(options: &ImportOptions) -> Result<(ExpirationPolicy, String), Failure> {
    let clients = Clients::new(&options.connection)?;
    let gitlab = clients.require_gitlab()?;
    if gitlab.credentials() != "PRIVATE-TOKEN" {
        return Err(ConfigError::credentials(
            "policy import reads GET /projects/:id, which GitLab refuses to the job token: set GITLAB_TOKEN (an access token with read_api), or pass --from FILE with the project's JSON (GitLab UI or `curl $CI_API_V4_URL/projects/<id>`)",
        )
        .into());
    }
    let answer = gitlab
        .project_settings()
        .await
        .context("reading the project (GET /projects/:id)")?;
    let settings = match answer.read {
        ProjectRead::Found(settings) => settings,
        ProjectRead::Refused(status) => {
            return Err(ConfigError::credentials(format!(
                "GitLab answered {status} to GET /projects/{}: GITLAB_TOKEN may not read the project; it needs read_api and at least the Reporter role",
                gitlab.project()
            ))
            .into())
        }
    };
    let policy = settings.container_expiration_policy.ok_or_else(|| {
        ConfigError::answer(format!(
            "project {} has no container_expiration_policy: GitLab's cleanup policy was never set up, so there is nothing to import",
            gitlab.project()
        ))
    })?;
    Ok((policy, format!("project {}", gitlab.project())))
}
