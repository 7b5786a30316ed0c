//! Which repositories a command covers — the project's, a group's, or the
//! whole registry's — with the clients and credentials each scope needs.
//!
//! Making the clients sends no request, so a command can still refuse bad
//! input before its first request; listing the repositories does.

use std::sync::Arc;

use crate::config::options::{Connection, Scope};
use crate::domain::config_error::ConfigError;
use crate::domain::exit::{Exit, ExitCode};
use crate::domain::model::RepositoryInfo;
use crate::execute::clients::{Clients, ClientsError};
use crate::gitlab::client::{GitLab, GitLabError, GROUP_TOKEN_ADVICE};
use crate::registry::client::RegistryError;

/// Why a scope's repositories could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error(transparent)]
    Clients(#[from] ClientsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("listing the project's container repositories")]
    Project(#[source] GitLabError),
    #[error("listing the container repositories of the group {group}")]
    Group {
        group: String,
        #[source]
        source: GitLabError,
    },
    #[error("asking the registry what it can do (GET /v2/)")]
    Capabilities(#[source] RegistryError),
    #[error("listing the registry's catalog")]
    Catalog(#[source] RegistryError),
}

impl ExitCode for ScopeError {
    fn exit_code(&self) -> Exit {
        match self {
            ScopeError::Clients(err) => err.exit_code(),
            ScopeError::Config(err) => err.exit_code(),
            ScopeError::Project(err) | ScopeError::Group { source: err, .. } => err.exit_code(),
            ScopeError::Capabilities(err) | ScopeError::Catalog(err) => err.exit_code(),
        }
    }
}

/// The clients a scope needs, and the REST client: the project's; for a
/// group or the instance, an access token's (refused before any request
/// without one).
// Called once per command: the error's size (a registry error inside)
// costs nothing worth boxing it for.
#[allow(clippy::result_large_err)]
pub fn clients_for(
    scope: &Scope,
    connection: &Connection,
) -> Result<(Clients, Arc<GitLab>), ScopeError> {
    match scope {
        Scope::Project => {
            let clients = Clients::new(connection)?;
            let gitlab = clients.require_gitlab()?;
            Ok((clients, gitlab))
        }
        Scope::Group(_) => {
            let clients = Clients::for_group(connection)?;
            let gitlab = clients
                .gitlab
                .clone()
                .ok_or_else(|| ConfigError::new(GROUP_TOKEN_ADVICE))?;
            Ok((clients, gitlab))
        }
        Scope::Instance => {
            let clients = Clients::for_instance(connection)?;
            let gitlab = clients
                .gitlab
                .clone()
                .ok_or_else(|| ConfigError::new("--instance needs GITLAB_TOKEN"))?;
            Ok((clients, gitlab))
        }
    }
}

/// The scope's repositories: the project's or the group's (every project's)
/// through REST, or every repository of the registry from its catalog.
pub async fn repositories(
    scope: &Scope,
    clients: &Clients,
    gitlab: &GitLab,
) -> Result<Vec<RepositoryInfo>, ScopeError> {
    match scope {
        Scope::Project => gitlab.repositories().await.map_err(ScopeError::Project),
        Scope::Group(group) => {
            gitlab
                .group_repositories(group)
                .await
                .map_err(|source| ScopeError::Group {
                    group: group.clone(),
                    source,
                })
        }
        Scope::Instance => instance_repositories(clients).await,
    }
}

/// Every repository of the registry, from its catalog. Catalog entries are
/// paths only: no project, no REST id, so this mode lists through
/// `/gitlab/v1` and deletes by tag through the registry, and refuses (exit
/// 2, before the catalog is read) a registry that does not say it can do
/// both.
async fn instance_repositories(clients: &Clients) -> Result<Vec<RepositoryInfo>, ScopeError> {
    let (tag_delete, gitlab_v1) = clients
        .registry
        .announced_capabilities()
        .await
        .map_err(ScopeError::Capabilities)?;
    if tag_delete != Some(true) {
        return Err(ConfigError::new(
            "--instance deletes through the registry API only (delete by tag), and this registry does not announce tag delete (gitlab-container-registry-features on GET /v2/): nothing was done. Clean groups with --group instead, which can fall back to GitLab's REST API",
        )
        .into());
    }
    if gitlab_v1 != Some(true) {
        return Err(ConfigError::new(
            "--instance lists tags through the registry's /gitlab/v1 API (GitLab's container registry with its metadata database), which this registry does not serve: nothing was done. Clean groups with --group instead",
        )
        .into());
    }
    let paths = clients
        .registry
        .catalog()
        .await
        .map_err(ScopeError::Catalog)?;
    Ok(paths
        .into_iter()
        .map(|path| RepositoryInfo {
            // Never used: nothing in instance mode goes through REST.
            id: 0,
            path,
            tags_count: None,
            project_id: None,
            created_at: None,
            status: None,
        })
        .collect())
}
