//! Exit codes, and the trait by which an error says which one it means.
//!
//! Each layer returns its own error type (`ConfigError`, `PolicyError`,
//! `HttpError`, `AuthError`, `RegistryError`, `GitLabError`, `ListError`,
//! `ReportError`, `MergeError`, …); each implements [`ExitCode`], and an
//! error that wraps another asks the wrapped one. The commands carry the
//! code along with their context (`commands::exit::Failure`).

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done: including a dry run, nothing to delete, tags already absent.
    Success = 0,
    /// The run failed or some deletions failed.
    Failed = 1,
    /// Usage, configuration or policy error: nothing was deleted.
    Usage = 2,
    /// Stopped by SIGINT (128 + 2): the report says what was done.
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + 15), as GitLab stops a cancelled or timed-out
    /// job: the report says what was done.
    Terminated = 143,
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

/// An error as one line, its causes included (each cause once: a message
/// that already says its cause is not repeated). What a report records as
/// a failed deletion's or restore's error.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
