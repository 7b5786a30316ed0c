//! The retention policy file (version 1): parsing, validation and patterns.
//!
//! CONTRACT (other modules rely on exactly this public API):
//! - `PolicyError` (Display = the full message, naming file, line and column).
//! - `Pattern`: a whole-string RE2 pattern; `Pattern::new(&str) -> Result<Pattern, String>`,
//!   `source()`, `is_match(&str)`.
//! - `Policy { protect_latest, protect, rules }`, `Policy::load(&Path)`,
//!   `Policy::parse(text, origin)`, `applicable_rules(repository_path)`,
//!   `is_protected(tag_name)`, `needs_dates(repository_path)`.
//! - `Rule { name, repositories, delete, keep, keep_n, older_than }`, `Rule::summary()`.
//! - `PolicyDuration { seconds, source }`, `parse_duration(&str)`.

use std::path::Path;

use regex::Regex;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    pub fn new(_source: &str) -> Result<Pattern, String> {
        todo!()
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDuration {
    pub seconds: u64,
    pub source: String,
}

pub fn parse_duration(_text: &str) -> Result<PolicyDuration, String> {
    todo!()
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub repositories: Pattern,
    pub delete: Pattern,
    pub keep: Option<Pattern>,
    pub keep_n: usize,
    pub older_than: Option<PolicyDuration>,
}

impl Rule {
    pub fn summary(&self) -> String {
        todo!()
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub protect_latest: bool,
    pub protect: Vec<Pattern>,
    pub rules: Vec<Rule>,
}

impl Policy {
    pub fn load(_path: &Path) -> Result<Policy, PolicyError> {
        todo!()
    }
    pub fn parse(_text: &str, _origin: &str) -> Result<Policy, PolicyError> {
        todo!()
    }
    pub fn applicable_rules<'a>(&'a self, repository: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |rule| rule.repositories.is_match(repository))
    }
    pub fn is_protected(&self, _tag: &str) -> bool {
        todo!()
    }
    pub fn needs_dates(&self, _repository: &str) -> bool {
        todo!()
    }
}
