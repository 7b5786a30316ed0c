//! An error in what the user gave us — a flag, a variable, a policy or
//! inventory file, a name — with what to do about it (exit code 2: nothing
//! was deleted). Every layer can meet one, so it lives at the bottom.

use crate::domain::exit::{Exit, ExitCode};

/// An error in what the user gave us — a flag, a variable, a policy or
/// inventory file, a name — with what to do about it. Exit code 2: nothing
/// was deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

impl ExitCode for ConfigError {
    fn exit_code(&self) -> Exit {
        Exit::Usage
    }
}
