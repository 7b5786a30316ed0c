//! `policy import`: GitLab's built-in cleanup policy
//! (`container_expiration_policy`) as a policy file that deletes exactly
//! what GitLab's deletes. Pure: JSON in, YAML text out.
//!
//! GitLab's cleanup (`Projects::ContainerRepository::CleanupTagsBaseService`)
//! drops `latest`, selects the tags matching
//! `UntrustedRegexp.new("\\A#{name_regex}\\z")` and not
//! `"\\A#{name_regex_keep}\\z"`, keeps the `keep_n` newest (undated counts
//! as newest), and of the rest deletes those pushed before `now -
//! older_than` (undated: kept). The planner does the same with one rule;
//! only the patterns need care, because GitLab anchors them by plain
//! concatenation: `\A` + `a|b|c` + `\z` is `\Aa` or `b` or `c\z` — "starts
//! with a, contains b, or ends with c" — while a policy pattern always
//! matches the whole name. [`gitlab_pattern`] rewrites a pattern so that the
//! whole-name match means what GitLab's concatenation means.

use serde::Deserialize;

use crate::domain::config_error::ConfigError;
use crate::domain::policy::Policy;

/// GitLab's `container_expiration_policy`, as `GET /projects/:id` answers it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ExpirationPolicy {
    #[serde(default)]
    pub cadence: Option<String>,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub keep_n: Option<u64>,
    #[serde(default)]
    pub older_than: Option<String>,
    #[serde(default)]
    pub name_regex: Option<String>,
    /// The API's newer name for `name_regex`; GitLab prefers it when set.
    #[serde(default)]
    pub name_regex_delete: Option<String>,
    #[serde(default)]
    pub name_regex_keep: Option<String>,
    #[serde(default)]
    pub next_run_at: Option<String>,
}

impl ExpirationPolicy {
    /// A JSON file of the policy: the bare `container_expiration_policy`
    /// object, or the whole project as `GET /projects/:id` answers it.
    pub fn from_json(text: &str, origin: &str) -> Result<ExpirationPolicy, ConfigError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|err| {
            ConfigError::file_line(origin.to_string(), err.line(), format!(
                "{origin}:{}:{}: not JSON ({err}); give the project as `GET /projects/:id` answers it, or its container_expiration_policy object",
                err.line(),
                err.column()
            ))
        })?;
        let policy = match value.get("container_expiration_policy") {
            Some(serde_json::Value::Null) => {
                return Err(ConfigError::file(origin.to_string(), format!(
                    "{origin}: the project has no container_expiration_policy (null): GitLab's cleanup policy was never set up, so there is nothing to import"
                )))
            }
            Some(policy) => policy.clone(),
            None => value,
        };
        if !policy.is_object() {
            return Err(ConfigError::file(origin.to_string(), format!(
                "{origin}: expected a JSON object with the container_expiration_policy fields (cadence, enabled, keep_n, older_than, name_regex, name_regex_keep)"
            )));
        }
        serde_json::from_value(policy).map_err(|err| {
            ConfigError::file(
                origin.to_string(),
                format!("{origin}: invalid container_expiration_policy: {err}"),
            )
        })
    }

    /// The pattern GitLab deletes by: `name_regex_delete || name_regex`
    /// (Ruby's `||`: an empty string counts as set).
    fn delete_source(&self) -> Option<&str> {
        self.name_regex_delete
            .as_deref()
            .or(self.name_regex.as_deref())
    }
}

/// A GitLab pattern rewritten for a whole-name match, and whether that
/// changed its meaning from what it looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// `None`: GitLab's pattern matches no tag name (`\A\z`: empty or absent).
    pub pattern: Option<String>,
    /// Set when the pattern has top-level alternatives: then GitLab
    /// anchors only the first to the start and the last to the end.
    pub alternatives: Option<Vec<String>>,
}

/// Rewrites `source` so that matching it against the whole name (`\A(?:…)\z`,
/// as policy patterns do) means what GitLab's `\A` + `source` + `\z` means.
pub fn gitlab_pattern(source: &str, field: &str) -> Result<Translated, ConfigError> {
    // GitLab (RE2) refuses what does not compile once concatenated; so do we.
    regex::Regex::new(&format!(r"\A{source}\z")).map_err(|err| {
        ConfigError::answer(format!(
            "{field} {source:?} is not a valid RE2 pattern once GitLab anchors it ({err}): GitLab's own cleanup fails on it too; fix it in GitLab's settings or write the policy by hand"
        ))
    })?;
    if source.is_empty() {
        return Ok(Translated {
            pattern: None,
            alternatives: None,
        });
    }
    let scan = scan_top_level(source);
    if scan.alternatives.len() == 1 {
        return Ok(Translated {
            pattern: Some(source.to_string()),
            alternatives: None,
        });
    }
    let last = scan.alternatives.len() - 1;
    let pattern = if scan.inline_flags {
        // A top-level `(?i)` reaches across `|` into the later alternatives:
        // splitting would change it. Keep GitLab's concatenation whole and
        // let it match anywhere inside a whole-name match.
        format!(r".*(?:\A{source}\z).*")
    } else {
        scan.alternatives
            .iter()
            .enumerate()
            .map(|(index, alternative)| match index {
                0 => format!("(?:{alternative}).*"),
                i if i == last => format!(".*(?:{alternative})"),
                _ => format!(".*(?:{alternative}).*"),
            })
            .collect::<Vec<_>>()
            .join("|")
    };
    Ok(Translated {
        pattern: Some(pattern),
        alternatives: Some(scan.alternatives),
    })
}

struct Scan {
    alternatives: Vec<String>,
    /// A flag group such as `(?i)` outside any group.
    inline_flags: bool,
}

/// Splits `source` at its top-level `|` (outside groups, classes and
/// escapes). The pattern compiles (checked before), so brackets balance.
fn scan_top_level(source: &str) -> Scan {
    let chars: Vec<char> = source.chars().collect();
    let mut alternatives = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut inline_flags = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                i = copy_escape(&chars, i, &mut current);
                continue;
            }
            '[' => {
                i = copy_class(&chars, i, &mut current);
                continue;
            }
            '(' => {
                inline_flags |= depth == 0 && is_flag_group(&chars, i);
                depth += 1;
            }
            ')' => depth = depth.saturating_sub(1),
            '|' if depth == 0 => {
                alternatives.push(std::mem::take(&mut current));
                i += 1;
                continue;
            }
            _ => {}
        }
        current.push(c);
        i += 1;
    }
    alternatives.push(current);
    Scan {
        alternatives,
        inline_flags,
    }
}

/// Copies the escape at `start` (`\` and the character it escapes) to
/// `out`; returns where the pattern goes on.
fn copy_escape(chars: &[char], start: usize, out: &mut String) -> usize {
    out.push(chars[start]);
    if let Some(&next) = chars.get(start + 1) {
        out.push(next);
    }
    start + 2
}

/// Copies the bracket class opening at `start` through its closing `]`
/// (classes nest, `[:alpha:]` included) to `out`: a `|` inside is a
/// literal. Returns where the pattern goes on.
fn copy_class(chars: &[char], start: usize, out: &mut String) -> usize {
    out.push('[');
    let mut i = start + 1;
    // A `]` right after `[` or `[^` is a literal.
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        out.push(']');
        i += 1;
    }
    let mut depth = 1usize;
    while i < chars.len() && depth > 0 {
        let c = chars[i];
        match c {
            '\\' => {
                i = copy_escape(chars, i, out);
                continue;
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                // `[:alpha:]` inside a class: copy to its closing `:]`.
                let mut j = i + 2;
                while j + 1 < chars.len() && !(chars[j] == ':' && chars[j + 1] == ']') {
                    j += 1;
                }
                let end = (j + 2).min(chars.len());
                out.extend(&chars[i..end]);
                i = end;
                continue;
            }
            '[' => depth += 1,
            ']' => depth -= 1,
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    i
}

/// Whether the `(` at `start` opens a flag group such as `(?i)` or `(?-s)`.
fn is_flag_group(chars: &[char], start: usize) -> bool {
    if chars.get(start + 1) != Some(&'?') {
        return false;
    }
    let flags = chars[start + 2..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic() || **c == '-')
        .count();
    chars.get(start + 2 + flags) == Some(&')')
}

/// The schedule matching GitLab's `cadence`, as a pipeline schedule's cron.
fn schedule_for(cadence: &str) -> Option<(&'static str, &'static str)> {
    Some(match cadence {
        "1d" => ("0 2 * * *", "every day"),
        "7d" => ("0 2 * * 0", "every week"),
        "14d" => (
            "0 2 1,15 * *",
            "twice a month (cron cannot say every 14 days; this is the nearest)",
        ),
        "1month" => ("0 2 1 * *", "every month"),
        "3month" => ("0 2 1 1,4,7,10 *", "every three months"),
        _ => return None,
    })
}

fn quoted(text: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::Value::String(text.to_string()).to_string()
}

/// The policy file for `policy`; `source` says where it came from (for the
/// header comment). The text is parsed back as a policy before it is
/// returned, so what is written is always a valid policy.
pub fn import(policy: &ExpirationPolicy, source: &str) -> Result<String, ConfigError> {
    let mut out = header(policy, source);
    out.push_str("\nprotect_latest: true\nrules:\n");
    out.push_str(&rule(policy)?);
    Policy::parse(&out, "the imported policy").map_err(|err| {
        ConfigError::answer(format!(
            "GitLab's policy cannot be written as a policy file: {err}"
        ))
    })?;
    Ok(out)
}

/// The comment the policy file opens with: where it came from, what it
/// deletes, and what GitLab's policy said about when it runs.
fn header(policy: &ExpirationPolicy, source: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Imported from GitLab's cleanup policy ({source}) by `registry-cleanup policy import`.\n\
         # It deletes what GitLab's policy deletes: every repository of the project, the tag\n\
         # `latest` never, tags matching `delete` (as GitLab anchors it) and not `keep`, the\n\
         # keep_n newest kept, of the rest those pushed more than older_than ago.\n"
    ));
    if !policy.enabled {
        out.push_str(
            "#\n# GitLab's cleanup policy is DISABLED on this project: GitLab deletes nothing today.\n\
             # The rule below is what it would delete once enabled.\n",
        );
    }
    match policy.cadence.as_deref() {
        Some(cadence) => match schedule_for(cadence) {
            Some((cron, what)) => out.push_str(&format!(
                "#\n# GitLab ran it with cadence {cadence}: {what}. For the same rhythm, run this policy from a\n\
                 # pipeline schedule with cron \"{cron}\" (and disable GitLab's policy: two cleaners on one\n\
                 # project race each other).\n"
            )),
            None => out.push_str(&format!(
                "#\n# GitLab's cadence {cadence:?} is not one GitLab offers (1d, 7d, 14d, 1month, 3month): choose a pipeline schedule yourself.\n"
            )),
        },
        None => out.push_str("#\n# GitLab's policy has no cadence: choose a pipeline schedule yourself.\n"),
    }
    if let Some(next) = &policy.next_run_at {
        out.push_str(&format!("# GitLab's next run was due at {next}.\n"));
    }
    out
}

/// The one rule that deletes what GitLab's policy deletes, with what its
/// patterns mean as comments.
fn rule(policy: &ExpirationPolicy) -> Result<String, ConfigError> {
    let delete = gitlab_pattern(policy.delete_source().unwrap_or(""), "name_regex")?;
    let keep = gitlab_pattern(
        policy.name_regex_keep.as_deref().unwrap_or(""),
        "name_regex_keep",
    )?;
    let mut rule = String::new();
    rule.push_str("  - name: gitlab cleanup policy\n");
    rule.push_str("    repositories: \".*\"\n");
    match (&delete.pattern, policy.delete_source()) {
        (Some(pattern), Some(original)) => {
            rule.push_str(&alternatives_comment(
                "name_regex",
                original,
                delete.alternatives.as_deref(),
            ));
            rule.push_str(&format!("    delete: {}\n", quoted(pattern)));
        }
        (_, original) => {
            rule.push_str(&format!(
                "    # GitLab's name_regex is {}: anchored, it matches no tag name, so GitLab deletes nothing.\n",
                match original {
                    Some(_) => "empty",
                    None => "not set",
                }
            ));
            // A class that nothing is in: matches no name.
            rule.push_str("    delete: \"[^\\\\s\\\\S]\"\n");
        }
    }
    if let (Some(pattern), Some(original)) = (&keep.pattern, &policy.name_regex_keep) {
        rule.push_str(&alternatives_comment(
            "name_regex_keep",
            original,
            keep.alternatives.as_deref(),
        ));
        rule.push_str(&format!("    keep: {}\n", quoted(pattern)));
    }
    if let Some(keep_n) = policy.keep_n {
        rule.push_str(&format!("    keep_n: {keep_n}\n"));
    }
    if let Some(older_than) = &policy.older_than {
        rule.push_str(&format!("    older_than: {}\n", quoted(older_than)));
    }
    Ok(rule)
}

fn alternatives_comment(field: &str, original: &str, alternatives: Option<&[String]>) -> String {
    let Some(alternatives) = alternatives else {
        return format!("    # GitLab's {field}: {}\n", quoted(original));
    };
    let last = alternatives.len() - 1;
    let parts: Vec<String> = alternatives
        .iter()
        .enumerate()
        .map(|(index, alternative)| match index {
            0 => format!("starts with {}", quoted(alternative)),
            i if i == last => format!("ends with {}", quoted(alternative)),
            _ => format!("contains {}", quoted(alternative)),
        })
        .collect();
    format!(
        "    # GitLab's {field} {} does not mean what it looks like: GitLab anchors it by\n    \
         #   concatenation (\\A + pattern + \\z), so it matches a tag that {}.\n    \
         #   The pattern below reproduces that. If you meant one of them as the whole name,\n    \
         #   write \"(?:{})\" instead (and change it in GitLab too).\n",
        quoted(original),
        parts.join(", or "),
        alternatives.join("|")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitLab's match: the concatenation, searched.
    fn gitlab_matches(source: &str, name: &str) -> bool {
        regex::Regex::new(&format!(r"\A{source}\z"))
            .expect("valid")
            .is_match(name)
    }

    fn imported_matches(source: &str, name: &str) -> bool {
        match gitlab_pattern(source, "name_regex").expect("valid").pattern {
            None => false,
            Some(pattern) => crate::domain::policy::Pattern::new(&pattern)
                .expect("a valid policy pattern")
                .is_match(name),
        }
    }

    #[test]
    fn the_rewrite_matches_what_gitlab_matches() {
        let patterns = [
            ".*",
            "mr-.*",
            "a|b|c",
            "a|b.*|c",
            "C|D",
            "(a|b)-x",
            "[|]x|y",
            r"\|x|y",
            "(?i)dev|prod",
            "dev-(?i)x|y",
            "|x",
            "x|",
            "^main|release-.*$",
            "[[:digit:]]+|v.*",
            "[]|]a|b",
            "",
        ];
        // Tag names are never empty: "" (which `\A\z` matches) is left out.
        let names = [
            "a",
            "b",
            "c",
            "xbx",
            "xb",
            "bx",
            "ab",
            "abc",
            "cx",
            "xc",
            "C",
            "Cx",
            "xD",
            "D",
            "a-x",
            "b-x",
            "c-x",
            "|x",
            "|xz",
            "zy",
            "y",
            "x",
            "xx",
            "DEV",
            "dev-1",
            "Prod",
            "zprod",
            "PRODx",
            "dev-X",
            "main",
            "main-2",
            "release-1",
            "xrelease-1",
            "123",
            "12a",
            "v1",
            "xv1",
            "]a",
            "|a",
            "ab|",
        ];
        for pattern in patterns {
            for name in names {
                assert_eq!(
                    imported_matches(pattern, name),
                    gitlab_matches(pattern, name),
                    "pattern {pattern:?} on {name:?}: rewritten as {:?}",
                    gitlab_pattern(pattern, "name_regex")
                        .expect("valid")
                        .pattern
                );
            }
        }
    }

    #[test]
    fn alternations_are_explained() {
        let translated = gitlab_pattern("a|b.*|c", "name_regex").expect("valid");
        assert_eq!(
            translated.pattern.as_deref(),
            Some("(?:a).*|.*(?:b.*).*|.*(?:c)")
        );
        let text = import(
            &ExpirationPolicy {
                enabled: true,
                cadence: Some("7d".into()),
                name_regex: Some("a|b.*|c".into()),
                ..ExpirationPolicy::default()
            },
            "test",
        )
        .expect("imports");
        assert!(text.contains("does not mean what it looks like"), "{text}");
        assert!(
            text.contains(r#"starts with "a", or contains "b.*", or ends with "c""#),
            "{text}"
        );
        assert!(text.contains("cron \"0 2 * * 0\""), "{text}");
    }

    #[test]
    fn an_invalid_gitlab_pattern_is_refused() {
        let err = gitlab_pattern("a(", "name_regex_keep").expect_err("invalid");
        assert!(
            err.to_string().starts_with("name_regex_keep \"a(\""),
            "{err}"
        );
    }

    #[test]
    fn the_whole_project_or_the_bare_policy() {
        let bare = r#"{"enabled": true, "keep_n": 5, "name_regex": ".*"}"#;
        let project = format!(r#"{{"id": 7, "container_expiration_policy": {bare}}}"#);
        assert_eq!(
            ExpirationPolicy::from_json(bare, "f").expect("bare"),
            ExpirationPolicy::from_json(&project, "f").expect("project")
        );
        let err = ExpirationPolicy::from_json(r#"{"container_expiration_policy": null}"#, "f.json")
            .expect_err("no policy");
        assert!(err.to_string().contains("never set up"), "{err}");
        let err = ExpirationPolicy::from_json("{", "f.json").expect_err("not json");
        assert!(err.to_string().starts_with("f.json:1:"), "{err}");
        assert!(
            matches!(err, ConfigError::File { line: Some(1), .. }),
            "{err:?}"
        );
    }

    #[test]
    fn every_gitlab_value_imports() {
        for keep_n in [
            None,
            Some(1),
            Some(5),
            Some(10),
            Some(25),
            Some(50),
            Some(100),
        ] {
            for older_than in [
                None,
                Some("7d"),
                Some("14d"),
                Some("30d"),
                Some("60d"),
                Some("90d"),
            ] {
                for cadence in ["1d", "7d", "14d", "1month", "3month"] {
                    let policy = ExpirationPolicy {
                        enabled: true,
                        cadence: Some(cadence.into()),
                        keep_n,
                        older_than: older_than.map(str::to_string),
                        name_regex: Some(".*".into()),
                        name_regex_keep: Some("v.+".into()),
                        ..ExpirationPolicy::default()
                    };
                    let text = import(&policy, "test").expect("imports");
                    let parsed = Policy::parse(&text, "t").expect("valid policy");
                    let rule = &parsed.rules[0];
                    assert_eq!(rule.keep_n as u64, keep_n.unwrap_or(0), "{text}");
                    assert_eq!(rule.older_than.is_some(), older_than.is_some(), "{text}");
                    assert!(text.contains("cron \""), "{cadence}: {text}");
                }
            }
        }
    }
}
