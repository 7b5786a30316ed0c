//! A name pattern of the policy: RE2 syntax (the `regex` crate), matching
//! the whole name, with bounds on size and nesting so a hostile pattern is
//! refused instead of eating memory.

use std::fmt;

use regex::{Regex, RegexBuilder};
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Compiled-program and lazy-DFA budget of one pattern. Generous for any real
/// tag pattern; `(a{1000}){1000}` and friends are refused instead of eating memory.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Maximum nesting depth of groups and repetitions in one pattern.
const PATTERN_NEST_LIMIT: u32 = 64;

pub const PATTERN_HELP: &str =
    r"patterns are RE2 syntax and must match the whole name, e.g. 'mr-\d+-.*'";

/// A name pattern: RE2 syntax, matching the whole string (`\A(?:pattern)\z`).
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `source`; the error says what is wrong, without the pattern itself.
    pub fn new(source: &str) -> Result<Pattern, String> {
        if source.is_empty() {
            return Err(r#"an empty pattern matches no name; use ".*" to match every name"#.into());
        }
        // Compiled on its own first: once wrapped, a stray ")" in `a)|(b` would
        // close our group and silently turn the pattern into an unanchored one.
        build_regex(source, 0)?;
        let regex = build_regex(&format!(r"\A(?:{source})\z"), 1).map_err(|err| {
            format!("it cannot be anchored to the whole name ({err}); a trailing (?x) comment is the usual cause")
        })?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// The capture groups of a whole-name match, `None` when it does not match.
    pub fn captures<'t>(&self, text: &'t str) -> Option<regex::Captures<'t>> {
        self.regex.captures(text)
    }

    /// Whether the pattern has a capture group named `name`.
    pub fn has_group(&self, name: &str) -> bool {
        self.regex.capture_names().any(|group| group == Some(name))
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// `extra_nesting`: groups we add around the user's pattern, which must not
/// count against the user's nesting budget.
fn build_regex(source: &str, extra_nesting: u32) -> Result<Regex, String> {
    RegexBuilder::new(source)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .nest_limit(PATTERN_NEST_LIMIT + extra_nesting)
        .build()
        .map_err(describe_regex_error)
}

fn describe_regex_error(err: regex::Error) -> String {
    match err {
        regex::Error::CompiledTooBig(limit) => format!(
            "it is too large (over the {} MiB compiled-size limit); large counted repetitions such as {{1000}} are the usual cause",
            limit >> 20
        ),
        // The syntax error is a multi-line drawing of the pattern with a caret,
        // ending in "error: <what>"; the pattern is quoted by the caller already.
        regex::Error::Syntax(text) => {
            let what = text
                .lines()
                .rev()
                .find_map(|line| line.strip_prefix("error: "))
                .unwrap_or(text.as_str());
            if what.contains("maximum number of nested") {
                format!("it nests groups or repetitions too deeply (at most {PATTERN_NEST_LIMIT} levels)")
            } else {
                what.to_string()
            }
        }
        other => other.to_string(),
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PatternVisitor;
        impl Visitor<'_> for PatternVisitor {
            type Value = Pattern;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pattern (a string, RE2 syntax, matching the whole name)")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Pattern, E> {
                Pattern::new(value).map_err(|why| {
                    E::custom(format!(
                        "\"{value}\" is not a valid pattern: {why}; {PATTERN_HELP}"
                    ))
                })
            }
        }
        deserializer.deserialize_str(PatternVisitor)
    }
}
