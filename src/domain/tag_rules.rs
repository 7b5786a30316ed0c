//! GitLab's tag rules (protection and immutability, GitLab 17.11+ / 18.2+),
//! as the registry JWT carries them in `access[].meta`: the delete patterns
//! that apply to this token's user (`tag_deny_access_patterns.delete`) and
//! the immutable patterns (`tag_immutable_patterns`). Patterns are RE2; a tag
//! is covered when a pattern matches anywhere in its name (unanchored: the
//! more protective reading). A pattern that does not compile covers every
//! tag: what it protects cannot be told, so nothing is deleted against it.

use regex::Regex;

#[derive(Debug, Clone, Default)]
pub struct TagRules {
    delete_deny: Vec<Pattern>,
    immutable: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    regex: Option<Regex>,
}

impl Pattern {
    fn new(source: &str) -> Pattern {
        Pattern {
            source: source.to_string(),
            regex: regex::RegexBuilder::new(source)
                .size_limit(1 << 20)
                .build()
                .ok(),
        }
    }

    fn covers(&self, tag: &str) -> bool {
        self.regex.as_ref().is_none_or(|regex| regex.is_match(tag))
    }

    fn describe(&self) -> String {
        match self.regex {
            Some(_) => format!("{:?}", self.source),
            None => format!(
                "{:?}, which could not be read, so it covers every tag",
                self.source
            ),
        }
    }
}

impl TagRules {
    pub fn new(delete_deny: &[String], immutable: &[String]) -> TagRules {
        TagRules {
            delete_deny: delete_deny.iter().map(|p| Pattern::new(p)).collect(),
            immutable: immutable.iter().map(|p| Pattern::new(p)).collect(),
        }
    }

    /// No rule: digest deletes are allowed (GitLab's registry answers 401
    /// `PROTECTED_MANIFEST` to every digest delete while any rule exists).
    pub fn is_empty(&self) -> bool {
        self.delete_deny.is_empty() && self.immutable.is_empty()
    }

    /// The patterns, as `doctor` lists them: (delete-deny, immutable).
    pub fn patterns(&self) -> (Vec<String>, Vec<String>) {
        let sources = |patterns: &[Pattern]| patterns.iter().map(|p| p.source.clone()).collect();
        (sources(&self.delete_deny), sources(&self.immutable))
    }

    /// Why `tag` may not be deleted, or `None`. Immutability first: it
    /// binds every user.
    pub fn reason(&self, tag: &str) -> Option<String> {
        if let Some(pattern) = self.immutable.iter().find(|p| p.covers(tag)) {
            return Some(format!(
                "immutable (GitLab tag rule {})",
                pattern.describe()
            ));
        }
        self.delete_deny
            .iter()
            .find(|p| p.covers(tag))
            .map(|pattern| {
                format!(
                    "protected by a GitLab tag rule ({}) against deletion by this user",
                    pattern.describe()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_anywhere_and_immutability_wins() {
        let rules = TagRules::new(&["^v".into(), "stable".into()], &["rel-".into()]);
        assert!(rules.reason("v1").expect("v1").starts_with("protected"));
        assert!(rules.reason("x-stable-2").is_some(), "unanchored");
        assert!(rules.reason("mr-1").is_none());
        assert!(rules.reason("1v").is_none());
        assert!(rules
            .reason("v-rel-1")
            .expect("both")
            .starts_with("immutable"));
        assert!(!rules.is_empty());
        assert!(TagRules::default().is_empty());
        assert_eq!(TagRules::default().reason("anything"), None);
    }

    #[test]
    fn an_unreadable_pattern_covers_every_tag() {
        let rules = TagRules::new(&[], &["(".into()]);
        let reason = rules.reason("mr-1").expect("covered");
        assert!(reason.contains("could not be read"), "{reason}");
    }
}

/// One container tag protection rule. Immutable rules have no access
/// levels: nobody may push or delete matching tags.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TagRule {
    pub tag_name_pattern: String,
    #[serde(default)]
    pub minimum_access_level_for_push: Option<String>,
    #[serde(default)]
    pub minimum_access_level_for_delete: Option<String>,
}

impl TagRule {
    pub fn is_immutable(&self) -> bool {
        self.minimum_access_level_for_push.is_none()
            && self.minimum_access_level_for_delete.is_none()
    }
}
