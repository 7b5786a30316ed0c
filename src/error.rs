//! Exit codes, and the one place an error that stopped a command is mapped
//! to one.
//!
//! Each module below `commands/` returns its own error type (`ConfigError`,
//! `PolicyError`, `HttpError`, `AuthError`, `RegistryError`, `GitLabError`,
//! `ListError`, `ReportError`, `MergeError`, the client engine's
//! `StreamError`); each knows its exit code ([`ExitCode`]), and
//! an error that wraps another asks the wrapped one. The commands add
//! `anyhow` context on top; [`exit_for`] finds the outermost typed error in
//! that chain and asks it.

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done: including a dry run, nothing to delete, tags already absent.
    Success = 0,
    /// The run failed or some deletions failed.
    Failed = 1,
    /// Usage, configuration or policy error: nothing was deleted.
    Usage = 2,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(exit as u8)
    }
}

/// An error that knows which exit code it ends a command with.
pub trait ExitCode {
    fn exit_code(&self) -> Exit;
}

/// The exit code for an error that stopped a command: the outermost typed
/// error in the chain decides; an error of no known type is a failure (1).
pub fn exit_for(error: &anyhow::Error) -> Exit {
    use crate::{auth, config, engine, gitlab, http, listing, merge, policy, registry, report};
    fn code<E: ExitCode + std::error::Error + 'static>(
        cause: &(dyn std::error::Error + 'static),
    ) -> Option<Exit> {
        cause.downcast_ref::<E>().map(ExitCode::exit_code)
    }
    error
        .chain()
        .find_map(|cause| {
            code::<config::ConfigError>(cause)
                .or_else(|| code::<policy::PolicyError>(cause))
                .or_else(|| code::<http::HttpError>(cause))
                .or_else(|| code::<auth::AuthError>(cause))
                .or_else(|| code::<registry::RegistryError>(cause))
                .or_else(|| code::<gitlab::GitLabError>(cause))
                .or_else(|| code::<listing::ListError>(cause))
                .or_else(|| code::<report::ReportError>(cause))
                .or_else(|| code::<merge::MergeError>(cause))
                .or_else(|| code::<engine::client::StreamError>(cause))
        })
        .unwrap_or(Exit::Failed)
}
