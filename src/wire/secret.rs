//! A string that never prints itself.
//!
//! Tokens, passwords and JWTs live in [`Secret`] from the moment they are read
//! until the moment they are put into a header, so that no `{:?}`, `{}` or
//! error chain can ever show them.

use std::fmt;

use serde::{Deserialize, Deserializer};

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; only for building a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_value() {
        let secret = Secret::new("glpat-very-secret");
        assert_eq!(format!("{secret}"), "(redacted)");
        assert_eq!(format!("{secret:?}"), "(redacted)");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some((redacted))");
        assert_eq!(secret.expose(), "glpat-very-secret");
    }
}

/// How the REST API is authenticated: the header (`JOB-TOKEN` or
/// `PRIVATE-TOKEN`) and the token it carries.
#[derive(Debug, Clone)]
pub struct RestAuth {
    pub header: &'static str,
    pub token: Secret,
}
