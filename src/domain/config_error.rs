//! An error in what the user gave us — a variable, a flag, a file, the
//! credentials — with what to do about it (exit code 2: nothing was
//! deleted). Every layer can meet one, so it lives at the bottom.
//!
//! Each variant carries what it is about (the variable, the flag, the file
//! and line), so a caller can tell them apart without reading the text; the
//! text is the whole sentence the user reads, naming that too.

use crate::domain::exit::{Exit, ExitCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable (`CI_*`, `CLEANUP_*`, `GITLAB_TOKEN`) is
    /// missing, malformed, or at odds with another.
    #[error("{message}")]
    Variable { name: String, message: String },
    /// A flag or argument of the command line (or the `CLEANUP_*` variable
    /// that stands for a flag).
    #[error("{message}")]
    Argument { name: String, message: String },
    /// A file the command reads or writes: an inventory, a CA bundle, a
    /// project's JSON; `line` where the problem is at one.
    #[error("{message}")]
    File {
        path: String,
        line: Option<usize>,
        message: String,
    },
    /// The credentials that are set cannot do what the command needs (a job
    /// token for a group, a token GitLab refuses, no registry credentials).
    #[error("{message}")]
    Credentials { message: String },
    /// What GitLab or its registry answered, or holds, rules the command out
    /// (a registry that cannot delete by tag for `--instance`, a cleanup
    /// policy that cannot be written as a policy file).
    #[error("{message}")]
    Answer { message: String },
    /// This machine's set-up: the TLS client cannot be built.
    #[error("{message}")]
    Environment { message: String },
}

impl ConfigError {
    pub fn variable(name: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Variable {
            name: name.into(),
            message: message.into(),
        }
    }

    pub fn argument(name: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Argument {
            name: name.into(),
            message: message.into(),
        }
    }

    /// A setting known by the name it was given under: a flag (`--shard`)
    /// or a variable (`CLEANUP_SHARD`, `CI_NODE_TOTAL`).
    pub fn setting(name: &str, message: impl Into<String>) -> Self {
        if name.starts_with('-') || name.chars().any(|c| c.is_ascii_lowercase()) {
            ConfigError::argument(name, message)
        } else {
            ConfigError::variable(name, message)
        }
    }

    pub fn file(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::File {
            path: path.into(),
            line: None,
            message: message.into(),
        }
    }

    pub fn file_line(path: impl Into<String>, line: usize, message: impl Into<String>) -> Self {
        ConfigError::File {
            path: path.into(),
            line: Some(line),
            message: message.into(),
        }
    }

    pub fn credentials(message: impl Into<String>) -> Self {
        ConfigError::Credentials {
            message: message.into(),
        }
    }

    pub fn answer(message: impl Into<String>) -> Self {
        ConfigError::Answer {
            message: message.into(),
        }
    }

    pub fn environment(message: impl Into<String>) -> Self {
        ConfigError::Environment {
            message: message.into(),
        }
    }

    /// The variable or flag it is about, if it is about one.
    pub fn setting_name(&self) -> Option<&str> {
        match self {
            ConfigError::Variable { name, .. } | ConfigError::Argument { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl ExitCode for ConfigError {
    fn exit_code(&self) -> Exit {
        Exit::Usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_is_a_flag_or_a_variable_by_its_name() {
        assert!(matches!(
            ConfigError::setting("--shard", "bad"),
            ConfigError::Argument { .. }
        ));
        assert!(matches!(
            ConfigError::setting("CI_NODE_TOTAL", "bad"),
            ConfigError::Variable { .. }
        ));
        assert!(matches!(
            ConfigError::setting("CLEANUP_SHARD", "bad"),
            ConfigError::Variable { .. }
        ));
        let error = ConfigError::variable("CI_SERVER_URL", "CI_SERVER_URL is not set");
        assert_eq!(error.setting_name(), Some("CI_SERVER_URL"));
        assert_eq!(error.to_string(), "CI_SERVER_URL is not set");
    }
}
