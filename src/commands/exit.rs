//! How a command that stopped on an error ends: [`Failure`] carries the exit
//! code the typed error decided (each error type says its own, through
//! [`ExitCode`]) together with the context the commands added, so nothing
//! has to find the code again by guessing the error's type.

use std::fmt;

use crate::domain::exit::{Exit, ExitCode};

/// The error a command stops with: its exit code and its story.
pub struct Failure {
    exit: Exit,
    error: anyhow::Error,
}

/// What every command returns.
pub type CommandResult = Result<Exit, Failure>;

impl Failure {
    /// A failure with an explicit exit code, for errors of no typed kind.
    pub fn new(
        exit: Exit,
        error: impl fmt::Display + fmt::Debug + Send + Sync + 'static,
    ) -> Failure {
        Failure {
            exit,
            error: anyhow::Error::msg(error),
        }
    }

    pub fn exit_code(&self) -> Exit {
        self.exit
    }

    fn context<C>(self, context: C) -> Failure
    where
        C: fmt::Display + Send + Sync + 'static,
    {
        Failure {
            exit: self.exit,
            error: self.error.context(context),
        }
    }
}

/// `{:#}` prints the whole chain on one line, as anyhow does.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Failure({:?}, {:?})", self.exit, self.error)
    }
}

impl<E> From<E> for Failure
where
    E: ExitCode + std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Failure {
        Failure {
            exit: error.exit_code(),
            error: anyhow::Error::new(error),
        }
    }
}

/// Writing a summary or a file the command was asked for failed.
impl ExitCode for std::io::Error {
    fn exit_code(&self) -> Exit {
        Exit::Failed
    }
}

/// `anyhow::Context` for typed errors: the exit code stays the typed error's.
pub trait Context<T> {
    fn context<C>(self, context: C) -> Result<T, Failure>
    where
        C: fmt::Display + Send + Sync + 'static;

    fn with_context<C, F>(self, context: F) -> Result<T, Failure>
    where
        C: fmt::Display + Send + Sync + 'static,
        F: FnOnce() -> C;
}

impl<T, E: Into<Failure>> Context<T> for Result<T, E> {
    fn context<C>(self, context: C) -> Result<T, Failure>
    where
        C: fmt::Display + Send + Sync + 'static,
    {
        self.map_err(|error| error.into().context(context))
    }

    fn with_context<C, F>(self, context: F) -> Result<T, Failure>
    where
        C: fmt::Display + Send + Sync + 'static,
        F: FnOnce() -> C,
    {
        self.map_err(|error| error.into().context(context()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("bad flag")]
    struct Bad;

    impl ExitCode for Bad {
        fn exit_code(&self) -> Exit {
            Exit::Usage
        }
    }

    #[test]
    fn context_keeps_the_typed_errors_exit_code() {
        let failed: Result<(), Bad> = Err(Bad);
        let failure = failed.context("reading the policy").expect_err("an error");
        assert_eq!(failure.exit_code(), Exit::Usage);
        assert_eq!(format!("{failure:#}"), "reading the policy: bad flag");
        assert!(failure.error.chain().any(|cause| cause.is::<Bad>()));
    }
}
