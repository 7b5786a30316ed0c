//! The names the tool puts into URLs — tags, digests, repository paths —
//! parsed once, where they enter (a flag, a file, a server's answer), into
//! types that cannot hold anything else.
//!
//! A name that reaches a request has passed one of these parsers, so no
//! layer below the edge validates again, and no two layers can disagree on
//! what is valid (they once did: an upper-case digest, a `.x` path segment).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name was refused. Displayed as a sentence the caller prefixes with
/// where the name came from (`REF`, `--repository`, a file, a listing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} is not a tag name: tags are 1 to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'")]
    Tag(String),
    #[error("{0:?} is not a digest: a digest is sha256: followed by 64 lower-case hex digits")]
    Digest(String),
    #[error("{0:?} is not a repository path: use lower-case letters, digits, '.', '_' and '-' in '/'-separated segments that start and end with a letter or digit")]
    Repository(String),
}

/// A tag name as the OCI distribution spec allows it:
/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagName(String);

impl TagName {
    pub fn parse(text: &str) -> Result<TagName, NameError> {
        Self::parse_owned(text.to_string())
    }

    fn parse_owned(text: String) -> Result<TagName, NameError> {
        let mut bytes = text.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let valid = first_ok
            && text.len() <= 128
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(TagName(text))
        } else {
            Err(NameError::Tag(text))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `sha256:` digest with 64 lower-case hex digits (the OCI image spec's
/// form for sha256; registries never answer upper case).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, NameError> {
        Self::parse_owned(text.to_string())
    }

    fn parse_owned(text: String) -> Result<Digest, NameError> {
        let valid = text.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if valid {
            Ok(Digest(text))
        } else {
            Err(NameError::Digest(text))
        }
    }

    /// The digest of `bytes`, as a registry computes a manifest's.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(bytes);
        let mut text = String::with_capacity(71);
        text.push_str("sha256:");
        for byte in hash {
            text.push_str(&format!("{byte:02x}"));
        }
        Digest(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

/// A repository's full path in the registry (`group/project/api`): segments
/// of lower-case letters, digits, `.`, `_` and `-`, each starting and ending
/// with a letter or digit (so never `.`, `..`, `.x` or empty), at most 255
/// characters in all.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepositoryPath(String);

impl RepositoryPath {
    pub fn parse(text: &str) -> Result<RepositoryPath, NameError> {
        Self::parse_owned(text.to_string())
    }

    fn parse_owned(text: String) -> Result<RepositoryPath, NameError> {
        let valid =
            !text.is_empty() && text.len() <= 255 && text.split('/').all(|segment| {
                let bytes = segment.as_bytes();
                let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
                matches!((bytes.first(), bytes.last()), (Some(a), Some(z)) if edge(a) && edge(z))
                    && bytes.iter().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'.' | b'_' | b'-')
                    })
            });
        if valid {
            Ok(RepositoryPath(text))
        } else {
            Err(NameError::Repository(text))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What `delete` is given: a tag name or a digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    Tag(TagName),
    Digest(Digest),
}

impl Reference {
    /// A digest when it starts with `sha256:`, else a tag name.
    pub fn parse(text: &str) -> Result<Reference, NameError> {
        if text.starts_with("sha256:") {
            Digest::parse(text).map(Reference::Digest)
        } else {
            TagName::parse(text).map(Reference::Tag)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(tag) => tag.as_str(),
            Reference::Digest(digest) => digest.as_str(),
        }
    }
}

macro_rules! string_newtype {
    ($($name:ident),*) => {$(
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        /// As a string's: quoted, so messages read `tag "v1"`.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                // The deserialised string becomes the name: one allocation.
                let text = String::deserialize(deserializer)?;
                $name::parse_owned(text).map_err(serde::de::Error::custom)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }
    )*};
}

string_newtype!(TagName, Digest, RepositoryPath);

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_names() {
        for good in [
            "a",
            "A",
            "_",
            "v1.2.3",
            "mr-12_x",
            &"a".repeat(128),
            "sha256-abc.sig",
        ] {
            assert!(TagName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".x",
            "-x",
            "a/b",
            "a b",
            "..",
            "a:b",
            "tag;rm",
            &"a".repeat(129),
            "é",
        ] {
            assert_eq!(
                TagName::parse(bad),
                Err(NameError::Tag(bad.to_string())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn digests_are_lower_case_sha256() {
        let good = format!("sha256:{}", "0a".repeat(32));
        assert_eq!(Digest::parse(&good).expect("digest").hex(), "0a".repeat(32));
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("SHA256:{}", "a".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha512:{}", "a".repeat(64)),
            "sha256:".to_string(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn repository_paths() {
        for good in ["g/p", "group/project/api", "a", "a.b/c_d/e-f", "0/1"] {
            assert!(RepositoryPath::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/",
            "g//p",
            "g/p/",
            "g/./p",
            "g/../p",
            "g/p/.x",
            "g/p/x.",
            "g/P",
            "g/p:t",
            "g p",
            &"a".repeat(256),
        ] {
            assert!(RepositoryPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(
            Reference::parse(&digest),
            Ok(Reference::Digest(_))
        ));
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse(&format!("sha256:{}", "A".repeat(64))),
            Err(NameError::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("sha256:x"),
            Err(NameError::Digest(_))
        ));
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<TagName>("\"..\"").is_err());
        let tag: TagName = serde_json::from_str("\"v1\"").expect("tag");
        assert_eq!(serde_json::to_string(&tag).expect("json"), "\"v1\"");
    }
}
