//! Git refs for git-aware rules (`when_ref`, `per_ref`): GitLab's ref slug
//! and what a tag's name says about its ref. Pure: the planner asks, the
//! listing of branches, tags and merge requests lives elsewhere and hands
//! over a [`Refs`].
//!
//! A rule's `delete` pattern names the ref with a capture group: `ref` (a
//! ref slug, `CI_COMMIT_REF_SLUG`) or `mr` (a merge request IID). A tag's
//! [`RefKey`] is what those groups captured; its [`RefState`] is what the
//! project's refs say about it.

use std::fmt;

use crate::domain::model::Refs;
use crate::domain::pattern::Pattern;

/// The capture group naming a ref slug in a rule's `delete` pattern.
pub const REF_GROUP: &str = "ref";
/// The capture group naming a merge request IID in a rule's `delete` pattern.
pub const MR_GROUP: &str = "mr";

/// Longest slug GitLab makes (`CI_COMMIT_REF_SLUG`).
const SLUG_MAX_CHARS: usize = 63;

/// GitLab's `CI_COMMIT_REF_SLUG` of a branch or tag name
/// (`Gitlab::Utils.slugify`): lowercase, every character outside `a-z0-9`
/// replaced by `-`, the first 63 characters kept, then leading and trailing
/// `-` removed — in that order, so a slug may be shorter than 63 characters
/// when the cut lands next to a `-`.
///
/// Like GitLab (`str.downcase.gsub(/[^a-z0-9]/, '-')[0..62]` then the
/// strip), lowercasing is Unicode's and comes first, and the cut counts
/// characters: any non-ASCII character becomes one `-` per character of
/// its lowercase form — except the few whose lowercase is ASCII (the
/// Kelvin sign `K` becomes `k`; `İ` becomes `i` and a `-`).
pub fn ref_slug(name: &str) -> String {
    let replaced: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(SLUG_MAX_CHARS)
        .collect();
    replaced.trim_matches('-').to_string()
}

/// `when_ref`: which tags of a git-aware rule it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenRef {
    /// Only tags whose ref is gone (branch and tag deleted, MR merged or
    /// closed).
    Gone,
    /// Only tags whose ref still exists (with `keep_n`/`per_ref`: the
    /// surplus images of live branches).
    Exists,
}

impl fmt::Display for WhenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WhenRef::Gone => "gone",
            WhenRef::Exists => "exists",
        })
    }
}

/// What a tag's name captured in the `ref` and `mr` groups of a rule's
/// `delete` pattern. The `ref` capture is compared as its slug
/// ([`ref_slug`]), so `Feature.X` and `feature-x` name the same ref.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RefKey {
    /// The slug of the `ref` capture, when that group took part in the match.
    pub slug: Option<String>,
    /// The `mr` capture as written, when that group took part in the match.
    pub mr: Option<String>,
}

impl RefKey {
    /// What `pattern` captures of `name` in the `ref` and `mr` groups;
    /// `None` when the pattern does not match or neither group took part.
    pub fn of(pattern: &Pattern, name: &str) -> Option<RefKey> {
        let captures = pattern.captures(name)?;
        let slug = captures.name(REF_GROUP).map(|m| ref_slug(m.as_str()));
        let mr = captures.name(MR_GROUP).map(|m| m.as_str().to_string());
        (slug.is_some() || mr.is_some()).then_some(RefKey { slug, mr })
    }

    /// What the project's (complete) refs say about this key: gone when
    /// every captured part is gone, exists when any part exists, unknown
    /// when an `mr` capture is not an IID (and nothing exists).
    pub fn state(&self, refs: &Refs) -> RefState {
        let slug = self.slug.as_ref().map(|slug| {
            if refs.slugs.contains(slug) {
                RefState::Exists
            } else {
                RefState::Gone
            }
        });
        let mr = self.mr.as_ref().map(|mr| match mr.parse::<u64>() {
            Ok(iid) if refs.open_mrs.contains(&iid) => RefState::Exists,
            Ok(_) => RefState::Gone,
            Err(_) => RefState::Unknown,
        });
        let parts = [slug, mr];
        let parts = parts.iter().flatten();
        if parts.clone().any(|state| *state == RefState::Exists) {
            RefState::Exists
        } else if parts.clone().any(|state| *state == RefState::Unknown) {
            RefState::Unknown
        } else {
            RefState::Gone
        }
    }
}

impl fmt::Display for RefKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.slug, &self.mr) {
            (Some(slug), Some(mr)) => write!(f, "ref {slug}, MR !{mr}"),
            (Some(slug), None) => write!(f, "ref {slug}"),
            (None, Some(mr)) => write!(f, "MR !{mr}"),
            (None, None) => f.write_str("no ref"),
        }
    }
}

/// Whether a tag's ref is gone or still exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefState {
    Gone,
    Exists,
    /// The `mr` capture is not a merge request IID.
    Unknown,
}

/// Why `refs` cannot decide any `when_ref` condition: not given, or a
/// listing failed or was cut short. `None`: the refs are complete.
pub fn refs_unusable(refs: Option<&Refs>) -> Option<String> {
    match refs {
        None => Some("no refs known for the project".to_string()),
        Some(refs) if !refs.complete => Some(format!(
            "refs incomplete ({})",
            refs.incomplete_because
                .as_deref()
                .unwrap_or("a listing of branches, tags or merge requests did not finish")
        )),
        Some(_) => None,
    }
}

/// Whether a tag with this key meets `when`, given the project's refs.
/// Unknown refs (see [`refs_unusable`]) meet neither `gone` nor `exists`:
/// nothing is claimed through `when_ref` on a guess. A tag with no key (its
/// name does not capture `ref` or `mr`) meets neither either.
pub fn condition_holds(when: WhenRef, key: Option<&RefKey>, refs: Option<&Refs>) -> bool {
    let (Some(key), Some(refs)) = (key, refs) else {
        return false;
    };
    if !refs.complete {
        return false;
    }
    matches!(
        (when, key.state(refs)),
        (WhenRef::Gone, RefState::Gone) | (WhenRef::Exists, RefState::Exists)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitLab's own examples (`spec/lib/gitlab/utils_spec.rb`, `slugify`,
    /// and `CI_COMMIT_REF_SLUG` in `spec/models/ci/build_spec.rb`), and the
    /// corners the algorithm's order decides.
    #[test]
    fn slugs_match_gitlab() {
        let cases: &[(&str, &str)] = &[
            // Gitlab::Utils.slugify
            ("TEST", "test"),
            ("project_with_underscores", "project-with-underscores"),
            ("namespace/project", "namespace-project"),
            ("test_trailing_", "test-trailing"),
            // Ci::Build#ref_slug
            ("master", "master"),
            ("1-foo", "1-foo"),
            ("fix/1-foo", "fix-1-foo"),
            ("fix-1-foo", "fix-1-foo"),
            ("FOO", "foo"),
            ("a.b", "a-b"),
            // More corners.
            ("feature/JIRA-123_Login.Page", "feature-jira-123-login-page"),
            ("v1.2.3", "v1-2-3"),
            ("/leading/and/trailing/", "leading-and-trailing"),
            ("--a--", "a"),
            ("a//b", "a--b"),
            ("", ""),
            // Non-ASCII: one `-` per character of the lowercase form.
            ("café", "caf"),
            ("\u{212A}elvin", "kelvin"),
            ("\u{130}x", "i-x"),
            ("über-fix", "ber-fix"),
            ("ÄB", "b"),
            ("日本語-x", "x"),
            ("x🚀y", "x-y"),
        ];
        for (name, slug) in cases {
            assert_eq!(ref_slug(name), *slug, "{name:?}");
        }
        // Long names (GitLab's examples: 'a' * 70 → 'a' * 63, and the cut at 63).
        let a = |n: usize| "a".repeat(n);
        let long: [(String, String); 6] = [
            (a(70), a(63)),
            (a(63), a(63)),
            (a(64), a(63)),
            ("-".repeat(63), String::new()),
            (format!("{}-a", a(62)), a(62)),
            (format!("-{}-", a(61)), a(61)),
        ];
        for (name, slug) in &long {
            assert_eq!(&ref_slug(name), slug, "{name:?}");
        }
    }

    #[test]
    fn the_cut_comes_before_the_strip() {
        // 62 letters, then "/x": the cut keeps "…a-" and the strip then
        // drops the "-"; stripping first would keep 63 characters "…a-x"[..63].
        let name = format!("{}/x", "a".repeat(62));
        assert_eq!(ref_slug(&name), "a".repeat(62));
        // A leading separator counts towards the 63.
        let name = format!("/{}", "b".repeat(63));
        assert_eq!(ref_slug(&name), "b".repeat(62));
    }

    #[test]
    fn slugs_are_idempotent_and_within_bounds() {
        for name in ["Feature/X", "a.b.c", "-x-", "日本", &"Z/".repeat(40)] {
            let slug = ref_slug(name);
            assert_eq!(ref_slug(&slug), slug, "{name:?}");
            assert!(slug.len() <= 63);
            assert!(!slug.starts_with('-') && !slug.ends_with('-'));
            assert!(slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        }
    }

    fn refs(slugs: &[&str], mrs: &[u64]) -> Refs {
        Refs {
            complete: true,
            slugs: slugs.iter().map(|s| s.to_string()).collect(),
            open_mrs: mrs.iter().copied().collect(),
            incomplete_because: None,
        }
    }

    #[test]
    fn keys_and_states() {
        let pattern = Pattern::new(r"(?:mr-(?P<mr>\w+)|(?P<ref>[A-Za-z0-9._-]+))-[0-9a-f]{8}")
            .expect("pattern");
        let refs = refs(&["main", "feature-x"], &[12]);
        let cases: &[(&str, Option<&str>, Option<RefState>)] = &[
            ("main-0123abcd", Some("ref main"), Some(RefState::Exists)),
            (
                "Feature.X-0123abcd",
                Some("ref feature-x"),
                Some(RefState::Exists),
            ),
            ("old-0123abcd", Some("ref old"), Some(RefState::Gone)),
            ("mr-12-0123abcd", Some("MR !12"), Some(RefState::Exists)),
            ("mr-13-0123abcd", Some("MR !13"), Some(RefState::Gone)),
            ("mr-x1-0123abcd", Some("MR !x1"), Some(RefState::Unknown)),
            ("main", None, None),
        ];
        for (name, key, state) in cases {
            let found = RefKey::of(&pattern, name);
            assert_eq!(found.as_ref().map(ToString::to_string).as_deref(), *key);
            assert_eq!(found.map(|key| key.state(&refs)), *state, "{name}");
        }
        // A group that does not take part gives no key.
        let optional = Pattern::new(r"(?:(?P<ref>[a-z]+)-)?build").expect("pattern");
        assert_eq!(RefKey::of(&optional, "build"), None);
    }

    #[test]
    fn unknown_refs_meet_no_condition() {
        let key = RefKey {
            slug: Some("gone".into()),
            mr: None,
        };
        let mut incomplete = refs(&[], &[]);
        incomplete.complete = false;
        for when in [WhenRef::Gone, WhenRef::Exists] {
            assert!(!condition_holds(when, Some(&key), None));
            assert!(!condition_holds(when, Some(&key), Some(&incomplete)));
            assert!(!condition_holds(when, None, Some(&refs(&[], &[]))));
        }
        assert!(condition_holds(
            WhenRef::Gone,
            Some(&key),
            Some(&refs(&[], &[]))
        ));
        assert!(condition_holds(
            WhenRef::Exists,
            Some(&key),
            Some(&refs(&["gone"], &[]))
        ));
        assert_eq!(
            refs_unusable(Some(&incomplete)).as_deref(),
            Some("refs incomplete (a listing of branches, tags or merge requests did not finish)")
        );
        incomplete.incomplete_because = Some("GET /projects/7/repository/branches: 403".into());
        assert_eq!(
            refs_unusable(Some(&incomplete)).as_deref(),
            Some("refs incomplete (GET /projects/7/repository/branches: 403)")
        );
        assert_eq!(refs_unusable(Some(&refs(&[], &[]))), None);
    }
}
