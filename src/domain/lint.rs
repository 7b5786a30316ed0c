//! Warnings about a policy that is valid but does not do what it seems to:
//! a rule that can never claim a tag, a rule for repositories the project
//! does not have. Pure functions: `check` and the client engine's `run`
//! call them and show what they return.
//!
//! Only what is certain is reported: a false warning teaches people to
//! ignore warnings, which is worse than none.

use crate::domain::policy::{Policy, Rule};

/// Rules an earlier rule leaves nothing to claim: the earlier rule claims
/// (step 4) every tag the later one could, in every repository the later
/// one applies to. Certain when the earlier rule has no `when_ref` (which
/// could let a tag through to later rules), its `delete` is `.*`/`.+` or
/// the later rule's own pattern, and its `repositories` is `.*` or the
/// later rule's own pattern.
pub fn shadowed_rules(policy: &Policy) -> Vec<String> {
    let mut warnings = Vec::new();
    for (index, later) in policy.rules.iter().enumerate() {
        let shadowing = policy.rules[..index]
            .iter()
            .find(|earlier| claims_everything_of(earlier, later));
        if let Some(earlier) = shadowing {
            let tags = if is_everything(earlier.delete.source()) {
                "every tag".to_string()
            } else {
                format!("every tag matching \"{}\"", earlier.delete)
            };
            let repositories = if is_everything(earlier.repositories.source()) {
                "every repository".to_string()
            } else {
                format!("the repositories matching \"{}\"", earlier.repositories)
            };
            warnings.push(format!(
                "rule {later:?} can never claim a tag: the earlier rule {earlier:?} claims {tags} in {repositories}, and each tag goes to the first rule that matches it; move {later:?} above {earlier:?}, or narrow {earlier:?}'s `delete`",
                later = later.name,
                earlier = earlier.name,
            ));
        }
    }
    warnings
}

fn claims_everything_of(earlier: &Rule, later: &Rule) -> bool {
    let covers = |wide: &str, narrow: &str| is_everything(wide) || wide == narrow;
    earlier.when_ref.is_none()
        && covers(earlier.delete.source(), later.delete.source())
        && covers(earlier.repositories.source(), later.repositories.source())
}

/// A pattern that matches every tag name or repository path (both are
/// never empty).
fn is_everything(pattern: &str) -> bool {
    matches!(pattern, ".*" | ".+" | "(.*)" | "(.+)" | "(?:.*)" | "(?:.+)")
}

/// Rules whose `repositories` pattern matches none of the project's
/// repositories (`paths`: their full paths). A pattern without `/` looks
/// like a relative name (`api`), which the `delete` component accepts but
/// a pattern does not: the warning suggests `.*/api`. Nothing is said for
/// a project without repositories.
pub fn rules_matching_no_repository(policy: &Policy, paths: &[&str]) -> Vec<String> {
    if paths.is_empty() {
        return Vec::new();
    }
    policy
        .rules
        .iter()
        .filter(|rule| !paths.iter().any(|path| rule.repositories.is_match(path)))
        .map(|rule| {
            let pattern = rule.repositories.source();
            let mut warning = format!(
                "rule {:?} applies to no repository of the project: its `repositories` pattern \"{pattern}\" matches none of {}",
                rule.name,
                listed(paths)
            );
            if !pattern.contains('/') && !pattern.starts_with(".*") {
                let suggestion = format!(".*/{pattern}");
                if paths.iter().any(|path| {
                    crate::domain::policy::Pattern::new(&suggestion).is_ok_and(|p| p.is_match(path))
                }) {
                    warning.push_str(&format!(
                        "; patterns match the full path (group/project/api), so a relative name needs a prefix: repositories: '{suggestion}'"
                    ));
                }
            }
            warning
        })
        .collect()
}

/// The first few paths, for a message.
fn listed(paths: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut text = paths
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        text.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &str) -> Policy {
        Policy::parse(&format!("rules:\n{rules}"), "p.yml").expect("policy")
    }

    #[test]
    fn a_rule_after_a_catch_all_is_shadowed() {
        let cases: &[(&str, &[&str])] = &[
            // Earlier rule claims everything, everywhere.
            ("  - {name: all, delete: '.*'}\n  - {name: reviews, delete: 'mr-.*'}\n", &["reviews"]),
            // .+ too; and the later rule's narrower repositories are covered.
            ("  - {name: all, delete: '.+'}\n  - {name: api, repositories: 'g/p/api', delete: 'x'}\n", &["api"]),
            // The same delete pattern, the same repositories.
            ("  - {name: a, repositories: g/p, delete: 'mr-.*', keep_n: 3}\n  - {name: b, repositories: g/p, delete: 'mr-.*', older_than: 1d}\n", &["b"]),
            // keep/keep_n/older_than do not stop a claim.
            ("  - {name: all, delete: '.*', keep: 'v.*', keep_n: 5, older_than: 30d}\n  - {name: later, delete: 'v.*'}\n", &["later"]),
            // Several later rules.
            ("  - {name: all, delete: '.*'}\n  - {name: x, delete: 'x'}\n  - {name: y, delete: 'y'}\n", &["x", "y"]),
        ];
        for (rules, shadowed) in cases {
            let warnings = shadowed_rules(&policy(rules));
            assert_eq!(warnings.len(), shadowed.len(), "{rules}: {warnings:?}");
            for (warning, name) in warnings.iter().zip(shadowed.iter()) {
                assert!(
                    warning.starts_with(&format!("rule {name:?} can never claim a tag")),
                    "{warning}"
                );
            }
        }
    }

    #[test]
    fn no_warning_unless_certain() {
        for rules in [
            // A catch-all last: fine, the usual shape.
            "  - {delete: 'mr-.*'}\n  - {delete: '.*', older_than: 90d}\n",
            // Earlier rule narrower in repositories.
            "  - {repositories: g/p/api, delete: '.*'}\n  - {delete: 'mr-.*'}\n",
            // Earlier rule's delete might not cover (we cannot tell): silent.
            "  - {delete: 'mr-.+'}\n  - {delete: 'mr-1.*'}\n",
            // Earlier rule with when_ref lets tags through.
            "  - {delete: '(?P<ref>.*)', when_ref: gone}\n  - {delete: 'mr-.*'}\n",
            // Different repositories patterns that may overlap: silent.
            "  - {repositories: 'g/.*', delete: '.*'}\n  - {repositories: '.*/api', delete: 'x'}\n",
        ] {
            assert_eq!(
                shadowed_rules(&policy(rules)),
                Vec::<String>::new(),
                "{rules}"
            );
        }
    }

    #[test]
    fn rules_for_repositories_the_project_does_not_have() {
        let paths = ["group/project", "group/project/api", "group/project/web"];
        let policy = policy(
            "  - {name: relative, repositories: api, delete: 'x'}\n  - {name: typo, repositories: 'group/project/apii', delete: 'x'}\n  - {name: fine, repositories: 'group/project/.*', delete: 'x'}\n  - {name: nothing like it, repositories: tools, delete: 'x'}\n",
        );
        let warnings = rules_matching_no_repository(&policy, &paths);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].starts_with(r#"rule "relative" applies to no repository of the project: its `repositories` pattern "api" matches none of group/project, group/project/api, group/project/web"#), "{}", warnings[0]);
        assert!(
            warnings[0].ends_with("repositories: '.*/api'"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].starts_with(r#"rule "typo""#) && !warnings[1].contains("'.*/"),
            "{}",
            warnings[1]
        );
        // No suggestion that would match nothing either.
        assert!(
            warnings[2].starts_with(r#"rule "nothing like it""#)
                && !warnings[2].contains("'.*/tools'"),
            "{}",
            warnings[2]
        );
        // No repositories at all: nothing to say.
        assert!(rules_matching_no_repository(&policy, &[]).is_empty());
    }
}
