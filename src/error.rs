//! Exit codes and the errors that decide them.
//!
//! Anything the user can fix (a flag, a variable, a policy or inventory file)
//! is a [`UserError`] somewhere in the `anyhow` chain and exits 2; everything
//! else that stops a run exits 1.

use std::process::ExitCode;

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

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// An error in what the user gave us: flags, environment, policy, inventory.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        UserError(message.into())
    }
}

/// Shorthand for returning a [`UserError`] from a function returning `anyhow::Result`.
#[macro_export]
macro_rules! user_error {
    ($($arg:tt)*) => {
        ::anyhow::Error::new($crate::error::UserError::new(format!($($arg)*)))
    };
}

/// Exit code for an error that stopped the run.
pub fn exit_for(error: &anyhow::Error) -> Exit {
    let is_user_error = error
        .chain()
        .any(|cause| cause.is::<UserError>() || cause.is::<crate::policy::PolicyError>());
    if is_user_error {
        Exit::Usage
    } else {
        Exit::Failed
    }
}
