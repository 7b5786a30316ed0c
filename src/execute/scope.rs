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
    Project(#[source] Box<GitLabError>),
    #[error("GitLab cannot be reached at {api}; nothing was done. Check {variable} (and that this machine can reach GitLab)")]
    GitLabUnreachable {
        api: String,
        variable: &'static str,
        #[source]
        source: Box<GitLabError>,
    },
    #[error("listing the container repositories of the group {group}")]
    Group {
        group: String,
        #[source]
        source: Box<GitLabError>,
    },
    #[error("asking the registry what it can do (GET /v2/)")]
    Capabilities(#[source] Box<RegistryError>),
    #[error("listing the registry's catalog")]
    Catalog(#[source] Box<RegistryError>),
}

impl ExitCode for ScopeError {
    fn exit_code(&self) -> Exit {
        match self {
            ScopeError::Clients(err) => err.exit_code(),
            ScopeError::Config(err) => err.exit_code(),
            ScopeError::Project(err)
            | ScopeError::Group { source: err, .. }
            | ScopeError::GitLabUnreachable { source: err, .. } => err.exit_code(),
            ScopeError::Capabilities(err) | ScopeError::Catalog(err) => err.exit_code(),
        }
    }
}

/// The clients a scope needs, and the REST client: the project's; for a
/// group or the instance, an access token's (refused before any request
/// without one).
// Called once per command: the error's size (a registry error inside)
// costs nothing worth boxing it for.
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
                .ok_or_else(|| ConfigError::credentials(GROUP_TOKEN_ADVICE))?;
            Ok((clients, gitlab))
        }
        Scope::Instance => {
            let clients = Clients::for_instance(connection)?;
            let gitlab = clients
                .gitlab
                .clone()
                .ok_or_else(|| ConfigError::credentials("--instance needs GITLAB_TOKEN"))?;
            Ok((clients, gitlab))
        }
    }
}

/// The scope's repositories: the project's or the group's (every project's)
/// through REST, or every repository of the registry from its catalog.
/// `deletes`: the command will delete (a run, dry or not: a dry run shows
/// what the run would do), so the instance's registry must delete by tag.
pub async fn repositories(
    scope: &Scope,
    clients: &Clients,
    gitlab: &GitLab,
    deletes: bool,
) -> Result<Vec<RepositoryInfo>, ScopeError> {
    listed(scope, clients, gitlab, deletes)
        .await
        .map_err(|err| match err {
            ScopeError::Project(source) | ScopeError::Group { source, .. }
                if source.is_unreachable() =>
            {
                let settings = &clients.settings;
                ScopeError::GitLabUnreachable {
                    api: settings.api_url.to_string(),
                    variable: settings.api_variable(),
                    source,
                }
            }
            err => err,
        })
}

async fn listed(
    scope: &Scope,
    clients: &Clients,
    gitlab: &GitLab,
    deletes: bool,
) -> Result<Vec<RepositoryInfo>, ScopeError> {
    match scope {
        Scope::Project => {
            let repositories = gitlab
                .repositories()
                .await
                .map_err(|err| ScopeError::Project(Box::new(err)))?;
            clients.check_project_agrees(&repositories)?;
            Ok(repositories)
        }
        Scope::Group(group) => {
            gitlab
                .group_repositories(group)
                .await
                .map_err(|source| ScopeError::Group {
                    group: group.clone(),
                    source: Box::new(source),
                })
        }
        Scope::Instance => instance_repositories(clients, deletes).await,
    }
}

/// Every repository of the registry, from its catalog. Catalog entries are
/// paths only: no project, no REST id, so this mode lists through
/// `/gitlab/v1` and deletes by tag through the registry, and refuses (exit
/// 2, before the catalog is read) a registry that does not say it can. What
/// it can do comes with the catalog token (one authorized `GET /v2/`).
async fn instance_repositories(
    clients: &Clients,
    deletes: bool,
) -> Result<Vec<RepositoryInfo>, ScopeError> {
    let registry = &clients.registry;
    let token = registry
        .catalog_access()
        .await
        .map_err(|err| ScopeError::Capabilities(Box::new(err)))?;
    let capabilities = &registry.capabilities;
    if deletes && capabilities.tag_delete.known() != Some(true) {
        return Err(ConfigError::answer(
            "--instance deletes through the registry API only (delete by tag), and this registry does not announce tag delete (gitlab-container-registry-features on GET /v2/): nothing was done. Clean groups with --group instead, which can fall back to GitLab's REST API",
        )
        .into());
    }
    if capabilities.gitlab_v1.known() != Some(true) {
        return Err(ConfigError::answer(
            "--instance lists tags through the registry's /gitlab/v1 API (GitLab's container registry with its metadata database), which this registry does not announce (gitlab-container-registry-database-enabled on GET /v2/): nothing was done. Clean groups with --group instead",
        )
        .into());
    }
    let paths = registry
        .catalog_pages(token)
        .await
        .map_err(|err| ScopeError::Catalog(Box::new(err)))?;
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

/// What a policy needs of a scope that the scope cannot give, refused
/// before any request (exit 2): `protect_in_use` needs each repository's
/// project, whose environments, deployments and pipelines it lists, and
/// `--instance` knows repositories by path only (the registry's catalog).
pub fn check_policy(
    policy: &crate::domain::policy::Policy,
    origin: &std::path::Path,
    scope: &Scope,
) -> Result<(), crate::domain::policy::PolicyError> {
    if *scope == Scope::Instance && policy.protect_in_use.is_some() {
        return Err(crate::domain::policy::PolicyError {
            message: format!(
                "{}: protect_in_use needs each repository's GitLab project (its environments, deployments and pipelines), and --instance knows repositories by path only (the registry's catalog): run with --group for each group, or remove the protect_in_use block",
                origin.display()
            ),
        });
    }
    Ok(())
}
