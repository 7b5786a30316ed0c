//! The retention policy file (version 1): parsing, validation and patterns.
//!
//! The planner reads [`Policy`] and its [`Rule`]s; `check` prints
//! [`Rule::summary`]; the server engine turns a rule back into GitLab's
//! bulk-delete form, so [`Pattern::source`] keeps the pattern as written.
//!
//! # Architecture
//!
//! The file is deserialised by `serde_yaml` straight into private `*File` structs.
//! Every check that can fail — a pattern, a duration, `keep_n`, an empty `rules`
//! list, `version`, a duplicate rule name — runs inside a `Deserialize` impl, so
//! `serde_yaml` attaches the key path, line and column of the offending value to
//! the error. [`format_yaml_error`] turns that into `file:line:column: path: what`.
//! Explicit nulls (`older_than:` with nothing after it) are rejected rather than
//! read as "not set": a half-written rule must not silently delete more.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use crate::domain::in_use::{InUseAsk, MAX_LAST_DEPLOYMENTS, MIN_SHA_PREFIX, SHA_GROUP};
pub use crate::domain::pattern::Pattern;
use crate::domain::pattern::PATTERN_HELP;
pub use crate::domain::refs::WhenRef;
use crate::domain::refs::{MR_GROUP, REF_GROUP};

/// Where the policy is looked for when neither `--policy` nor `CLEANUP_POLICY` is set.
pub const DEFAULT_POLICY_PATH: &str = ".gitlab/registry-cleanup.yml";

/// Longest accepted duration, in seconds: what `chrono::TimeDelta` can hold.
const MAX_DURATION_SECONDS: u64 = i64::MAX as u64 / 1000;

const DURATION_HELP: &str =
    "use <number><unit> with unit s, min, h, d, w, month, y — e.g. 90d, 1month, 2w3d";

/// A rule that can be pasted into a policy as it is: single quotes, because
/// in double quotes YAML reads `\d` as an (unknown) escape.
const EXAMPLE_RULES: &str = r"rules: [{delete: 'mr-\d+-.*', older_than: 14d}]";

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub message: String,
}

impl crate::domain::exit::ExitCode for PolicyError {
    fn exit_code(&self) -> crate::domain::exit::Exit {
        crate::domain::exit::Exit::Usage
    }
}

impl PolicyError {
    fn new(message: impl Into<String>) -> Self {
        PolicyError {
            message: message.into(),
        }
    }
}

/// An `older_than` value: the parsed length and the text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDuration {
    pub seconds: u64,
    pub source: String,
}

impl PolicyDuration {
    /// The length as a `chrono` duration (always in range: parsing caps it).
    pub fn to_timedelta(&self) -> chrono::TimeDelta {
        i64::try_from(self.seconds)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .unwrap_or(chrono::TimeDelta::MAX)
    }
}

impl fmt::Display for PolicyDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A duration's unit, as written (`min`, `month`…), with its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DurationUnit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl DurationUnit {
    /// The unit a suffix names. A bare `m` names none: it reads as minutes
    /// to a programmer and as months to someone cleaning a registry, and
    /// guessing minutes wrongly wipes the registry.
    fn parse(suffix: &str) -> Option<DurationUnit> {
        Some(match suffix {
            "s" => DurationUnit::Second,
            "min" | "mins" | "minute" | "minutes" => DurationUnit::Minute,
            "h" => DurationUnit::Hour,
            "d" => DurationUnit::Day,
            "w" => DurationUnit::Week,
            "month" | "months" => DurationUnit::Month,
            "y" | "year" | "years" => DurationUnit::Year,
            _ => return None,
        })
    }

    fn seconds(self) -> u64 {
        match self {
            DurationUnit::Second => 1,
            DurationUnit::Minute => 60,
            DurationUnit::Hour => 3_600,
            DurationUnit::Day => 86_400,
            DurationUnit::Week => 7 * 86_400,
            DurationUnit::Month => 30 * 86_400,
            DurationUnit::Year => 365 * 86_400,
        }
    }

    fn word(self, count: u64) -> String {
        let word = match self {
            DurationUnit::Second => "second",
            DurationUnit::Minute => "minute",
            DurationUnit::Hour => "hour",
            DurationUnit::Day => "day",
            DurationUnit::Week => "week",
            DurationUnit::Month => "month",
            DurationUnit::Year => "year",
        };
        format!("{count} {word}{}", if count == 1 { "" } else { "s" })
    }
}

/// Parses `90d`, `1month`, `2w3d`: one or more `<integer><unit>`, no spaces.
///
/// Units: `s`, `min`/`mins`/`minute(s)`, `h`, `d`, `w`, `month`/`months`
/// (30 days), `y`/`year`/`years` (365 days). Parts add up and may come in
/// any order; `0d` is allowed (every dated tag is old enough). A bare `m`
/// is refused (minutes or months?).
pub fn parse_duration(text: &str) -> Result<PolicyDuration, String> {
    duration_parts(text).and_then(|parts| {
        let mut seconds: u64 = 0;
        for (number, unit) in parts {
            match number
                .checked_mul(unit.seconds())
                .and_then(|part| seconds.checked_add(part))
            {
                Some(total) if total <= MAX_DURATION_SECONDS => seconds = total,
                _ => {
                    return Err(format!(
                        "{text:?} is not a duration (it is too large); {DURATION_HELP}"
                    ))
                }
            }
        }
        Ok(PolicyDuration {
            seconds,
            source: text.to_string(),
        })
    })
}

/// The `<integer><unit>` parts of a duration, in the order written.
fn duration_parts(text: &str) -> Result<Vec<(u64, DurationUnit)>, String> {
    let fail = |why: String| {
        Err(format!(
            "{text:?} is not a duration ({why}); {DURATION_HELP}"
        ))
    };
    if text.is_empty() {
        return fail("it is empty".into());
    }
    if text.chars().any(char::is_whitespace) {
        return fail("spaces are not allowed".into());
    }
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return match rest.chars().next() {
                Some('-') => fail("negative durations are not allowed".into()),
                Some(c) if c.is_ascii_alphabetic() => {
                    fail(format!("a number must come before the unit at {rest:?}"))
                }
                Some(c) => fail(format!("unexpected character {c:?}")),
                None => fail("it is empty".into()),
            };
        }
        let (number, after) = rest.split_at(digits);
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        let unit = match unit {
            "" => {
                return match after.chars().next() {
                    None if digits == text.len() => fail("a bare number has no unit".into()),
                    None => fail(format!("{number} at the end has no unit")),
                    Some(c) => fail(format!("unexpected character {c:?} after {number}")),
                }
            }
            "m" => {
                return Err(format!(
                    "{text:?} is ambiguous: \"m\" could mean minutes or months; write {number}min for minutes or {number}month for months (30 days)"
                ))
            }
            other => match DurationUnit::parse(other) {
                Some(unit) => unit,
                None => return fail(format!("unknown unit {other:?}")),
            },
        };
        match number.parse::<u64>() {
            Ok(number) => parts.push((number, unit)),
            Err(_) => return fail("it is too large".into()),
        }
        rest = after;
    }
    Ok(parts)
}

impl PolicyDuration {
    /// The duration in words, for `check` and the logs: "6 months (180
    /// days)", "90 minutes", "2 weeks 3 days (17 days)". Months and years
    /// are fixed numbers of days here, so the days are spelled out.
    pub fn in_words(&self) -> String {
        let Ok(parts) = duration_parts(&self.source) else {
            return DurationUnit::Second.word(self.seconds);
        };
        let words: Vec<String> = parts.iter().map(|(n, unit)| unit.word(*n)).collect();
        let mut text = words.join(" ");
        let only_days = parts.iter().all(|(_, unit)| *unit == DurationUnit::Day);
        let day = DurationUnit::Day.seconds();
        if !only_days && self.seconds >= day && self.seconds.is_multiple_of(day) {
            text.push_str(&format!(
                " ({})",
                DurationUnit::Day.word(self.seconds / day)
            ));
        }
        text
    }
}

impl<'de> Deserialize<'de> for PolicyDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = PolicyDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration; {DURATION_HELP}")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<PolicyDuration, E> {
                parse_duration(value).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub repositories: Pattern,
    pub delete: Pattern,
    pub keep: Option<Pattern>,
    pub keep_n: usize,
    pub older_than: Option<PolicyDuration>,
    /// Git-aware rules: claim only tags whose ref (the `delete` pattern's
    /// `ref` or `mr` group) is gone, or still exists.
    pub when_ref: Option<WhenRef>,
    /// `keep_n` counts per distinct ref (the `ref`/`mr` capture), not over
    /// the whole rule.
    pub per_ref: bool,
    /// A tag the rule would delete is deleted only when the pull ledger saw
    /// no pull of its manifest (or of any manifest its index lists) for
    /// this long, and has watched the repository at least this long.
    pub unpulled_for: Option<PolicyDuration>,
}

impl Rule {
    /// Whether the rule looks at git refs (`when_ref` or `per_ref`): the
    /// server engine cannot express it in a bulk call.
    pub fn is_git_aware(&self) -> bool {
        self.when_ref.is_some() || self.per_ref
    }

    /// The `delete` pattern's ref groups in words: "branch/tag (ref group)",
    /// "merge request (mr group)" or both.
    fn ref_groups(&self) -> &'static str {
        match (
            self.delete.has_group(REF_GROUP),
            self.delete.has_group(MR_GROUP),
        ) {
            (true, true) => "branch/tag (ref group) or merge request (mr group)",
            (false, true) => "merge request (mr group)",
            _ => "branch/tag (ref group)",
        }
    }

    /// One line for `check`, e.g. `review images: in repositories matching ".*",
    /// delete tags matching "mr-\d+-.*", keep "mr-1-.*", keep the 5 newest, only older than 14d`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{}: in repositories matching \"{}\", delete tags matching \"{}\"",
            self.name, self.repositories, self.delete
        );
        if let Some(keep) = &self.keep {
            line.push_str(&format!(", keep \"{keep}\""));
        }
        match self.keep_n {
            0 => {}
            1 => line.push_str(", keep the newest"),
            n => line.push_str(&format!(", keep the {n} newest")),
        }
        if let Some(older_than) = &self.older_than {
            line.push_str(&format!(", only older than {}", older_than.in_words()));
        }
        match self.when_ref {
            Some(WhenRef::Gone) => line.push_str(&format!(
                ", only when their {} is gone (never when the refs could not be listed in full)",
                self.ref_groups()
            )),
            Some(WhenRef::Exists) => line.push_str(&format!(
                ", only when their {} still exists (never when the refs could not be listed in full)",
                self.ref_groups()
            )),
            None => {}
        }
        if let Some(unpulled_for) = &self.unpulled_for {
            line.push_str(&format!(
                ", only when the pull ledger (--ledger) saw no pull of the image for {} and has watched the repository that long (never when the ledger cannot be read)",
                unpulled_for.in_words()
            ));
        }
        if self.per_ref {
            line.push_str("; keep_n counts per ref");
        }
        line
    }
}

/// What happens to a referrer tag (a signature, attestation or SBOM tag,
/// `sha256-<hex>[.suffix]`) whose subject no tag points at: `orphaned_referrers`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrphanedReferrers {
    /// Kept and reported (the default).
    #[default]
    Keep,
    /// Deleted with the rule "orphaned referrer".
    Delete,
}

impl fmt::Display for OrphanedReferrers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OrphanedReferrers::Keep => "keep",
            OrphanedReferrers::Delete => "delete",
        })
    }
}

impl<'de> Deserialize<'de> for OrphanedReferrers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrphanedVisitor;
        impl Visitor<'_> for OrphanedVisitor {
            type Value = OrphanedReferrers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("keep or delete")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<OrphanedReferrers, E> {
                match value {
                    "keep" => Ok(OrphanedReferrers::Keep),
                    "delete" => Ok(OrphanedReferrers::Delete),
                    // An empty value (`orphaned_referrers:` and nothing after it).
                    "" => Err(E::custom(
                        "no value given; write keep or delete, or leave the key out for keep",
                    )),
                    other => Err(E::custom(format!(
                        "{other:?} is not keep or delete; orphaned_referrers says what happens to \
                         signature/attestation tags whose image has no tag (default keep)"
                    ))),
                }
            }
        }
        deserializer.deserialize_str(OrphanedVisitor)
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub protect_latest: bool,
    pub protect: Vec<Pattern>,
    /// Step 6: what happens to referrer tags whose subject has no tag.
    pub orphaned_referrers: OrphanedReferrers,
    /// Delete a repository the run leaves without tags, or one already
    /// empty and older than a day (client engine; never in a dry run).
    pub remove_empty_repositories: bool,
    /// Tags naming a commit GitLab has in use are kept before any rule.
    pub protect_in_use: Option<ProtectInUse>,
    pub rules: Vec<Rule>,
}

/// `protect_in_use`: which commits GitLab has in use count, and how a tag
/// names one. A tag whose `sha` capture (7+ hex characters) starts the SHA
/// of such a commit, or whose `ref` capture has the slug of its ref, is
/// kept before any rule runs.
#[derive(Debug, Clone)]
pub struct ProtectInUse {
    /// Live environments whose deployments count, by name (default `.*`).
    pub environments: Pattern,
    /// Per environment, its newest successful deployments that count (what
    /// runs now and the rollback targets); 0: no deployment counts.
    pub last_deployments: usize,
    /// Whether the commits of running pipelines count.
    pub running_pipelines: bool,
    /// How a tag names a commit: named groups `sha` and/or `ref`.
    pub commit: Pattern,
}

/// `last_deployments` when not given: what runs now and two rollback targets.
pub const DEFAULT_LAST_DEPLOYMENTS: usize = 3;

impl ProtectInUse {
    /// What a listing of the project's commits in use must cover.
    pub fn ask(&self) -> InUseAsk<'_> {
        InUseAsk {
            environments: &self.environments,
            last_deployments: self.last_deployments,
            running_pipelines: self.running_pipelines,
        }
    }

    /// One line for `check`: what is kept, and what happens when GitLab
    /// cannot say.
    pub fn summary(&self) -> String {
        let mut what = Vec::new();
        if self.last_deployments > 0 {
            what.push(match self.last_deployments {
                1 => format!(
                    "the last successful deployment of each available environment matching \"{}\"",
                    self.environments
                ),
                n => format!(
                    "the last {n} successful deployments of each available environment matching \"{}\"",
                    self.environments
                ),
            });
        }
        if self.running_pipelines {
            what.push("running pipelines".to_string());
        }
        let mut how = Vec::new();
        if self.commit.has_group(SHA_GROUP) {
            how.push(format!(
                "whose sha group starts the commit's SHA ({MIN_SHA_PREFIX}+ characters)"
            ));
        }
        if self.commit.has_group(REF_GROUP) {
            how.push("whose ref group names the commit's branch or tag (as a slug)".to_string());
        }
        format!(
            "in use (protect_in_use): kept before any rule, tags matching \"{}\" {} — commits of {}; when GitLab cannot list them, nothing is deleted in the project",
            self.commit,
            how.join(" or "),
            what.join(" and of ")
        )
    }
}

impl Policy {
    /// Reads and validates a policy file; the error names the file (and the
    /// default location when the file does not exist).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let origin = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(PolicyError::new(format!(
                    "{origin}: policy file not found; the default is {DEFAULT_POLICY_PATH} \
                     (relative to the working directory), another file can be given with \
                     --policy FILE or CLEANUP_POLICY"
                )))
            }
            Err(err) => {
                return Err(PolicyError::new(format!(
                    "{origin}: cannot read the policy file: {err}"
                )))
            }
        };
        Self::parse(&text, &origin)
    }

    /// Parses a policy; `origin` (usually the file name) starts every error message.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        // An empty file (or only comments) is one null document; say so plainly
        // instead of "invalid type: unit value".
        if let Ok(serde_yaml::Value::Null) = serde_yaml::from_str::<serde_yaml::Value>(text) {
            return Err(PolicyError::new(format!(
                "{origin}: the policy is empty; it needs a `rules:` list with at least one rule, \
                 e.g. `{EXAMPLE_RULES}`"
            )));
        }
        let file: PolicyFile =
            serde_yaml::from_str(text).map_err(|err| format_yaml_error(origin, text, &err))?;
        Ok(Policy {
            protect_latest: file.protect_latest,
            protect: file.protect.0,
            orphaned_referrers: file.orphaned_referrers,
            remove_empty_repositories: file.remove_empty_repositories,
            protect_in_use: file.protect_in_use.map(|ProtectInUseFile(block)| block),
            rules: file.rules.0,
        })
    }

    pub fn applicable_rules<'a>(
        &'a self,
        repository: &'a str,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |rule| rule.repositories.is_match(repository))
    }

    /// Whether planning this repository looks at each tag's details (so
    /// they must be fetched): some applicable rule has `keep_n > 0` or
    /// `older_than` (dates), or `unpulled_for` (digests, and an index's
    /// children, to look their pulls up).
    pub fn needs_dates(&self, repository: &str) -> bool {
        self.applicable_rules(repository)
            .any(|rule| rule.keep_n > 0 || rule.older_than.is_some() || rule.unpulled_for.is_some())
    }

    /// Whether planning this repository asks the pull ledger: some
    /// applicable rule has `unpulled_for`.
    pub fn needs_pulls(&self, repository: &str) -> bool {
        self.applicable_rules(repository)
            .any(|rule| rule.unpulled_for.is_some())
    }

    /// Whether planning this repository looks at the project's git refs (so
    /// branches, git tags and open merge requests must be listed): some
    /// applicable rule has `when_ref` (`per_ref` alone only groups by the
    /// captured ref and needs no listing).
    pub fn needs_refs(&self, repository: &str) -> bool {
        self.applicable_rules(repository)
            .any(|rule| rule.when_ref.is_some())
    }

    /// Whether planning this repository looks at its project's commits in
    /// use (so environments, deployments and pipelines must be listed): the
    /// policy has `protect_in_use`, and could delete something here (an
    /// applicable rule, or `orphaned_referrers: delete`).
    pub fn needs_in_use(&self, repository: &str) -> bool {
        self.protect_in_use.is_some()
            && (self.orphaned_referrers == OrphanedReferrers::Delete
                || self.applicable_rules(repository).next().is_some())
    }
}

/// A tab in the indentation of the line a YAML error points at: YAML
/// indents with spaces only, and the parser's own words ("found character
/// that cannot start any token") do not say so. Returns the tab's column.
fn tab_in_indentation(text: &str, line: usize) -> Option<usize> {
    let line = text.lines().nth(line.checked_sub(1)?)?;
    let indentation = line.len() - line.trim_start_matches([' ', '\t']).len();
    line[..indentation].find('\t').map(|at| at + 1)
}

/// Turns a `serde_yaml` error into `origin:line:column: key.path: what is
/// wrong`, with a hint for the YAML mistakes people make (`text`: the file).
fn format_yaml_error(origin: &str, text: &str, err: &serde_yaml::Error) -> PolicyError {
    // Only a scanner error is the tab's fault: a tab inside a quoted or
    // block scalar is allowed, and a later error on that line is another one.
    let scanner_error = ["cannot start any token", "tab character"]
        .iter()
        .any(|needle| err.to_string().contains(needle));
    if let Some(location) = err.location().filter(|_| scanner_error) {
        if let Some(column) = tab_in_indentation(text, location.line()) {
            return PolicyError::new(format!(
                "{origin}:{}:{column}: a tab in the indentation; YAML indents with spaces only: replace the tab with spaces",
                location.line()
            ));
        }
    }
    let mut message = err.to_string();
    let prefix = match err.location() {
        Some(location) => {
            let suffixes = [
                format!(" at line {} column {}", location.line(), location.column()),
                format!(" at position {}", location.index()),
            ];
            // The location moves to the front; YAML syntax errors carry it
            // mid-sentence ("… at line 3 column 4, while parsing …").
            for suffix in &suffixes {
                if let Some(at) = message.find(suffix.as_str()) {
                    message.replace_range(at..at + suffix.len(), "");
                    break;
                }
            }
            format!("{origin}:{}:{}: ", location.line(), location.column())
        }
        None => format!("{origin}: "),
    };
    message = message
        .replace("invalid type: unit value", "no value given")
        .replace("expected a boolean", "expected true or false");
    if message.contains("missing field `delete`") {
        message.push_str(r"; every rule needs a `delete` pattern naming the tags it may delete, e.g. `delete: 'mr-\d+-.*'`");
    } else if message.contains("unknown escape character") {
        message.push_str(
            r#"; in double quotes a backslash starts an escape such as \n, so "v\d+" is not valid YAML: write the pattern in single quotes ('v\d+') or double each backslash ("v\\d+")"#,
        );
    } else if message.contains("missing field `rules`") {
        message.push_str("; a policy needs a `rules:` list with at least one rule");
    }
    PolicyError::new(format!("{prefix}{message}"))
}

fn default_true() -> bool {
    true
}

#[derive(serde::Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a policy: a mapping with the keys version, protect_latest, protect, orphaned_referrers, remove_empty_repositories, protect_in_use and rules"
)]
struct PolicyFile {
    #[serde(default)]
    #[allow(dead_code)] // validated while parsing; there is only one version
    version: Option<Version>,
    #[serde(default = "default_true")]
    protect_latest: bool,
    #[serde(default)]
    protect: PatternList,
    #[serde(default)]
    orphaned_referrers: OrphanedReferrers,
    #[serde(default)]
    remove_empty_repositories: bool,
    #[serde(default, deserialize_with = "present")]
    protect_in_use: Option<ProtectInUseFile>,
    rules: Rules,
}

const PROTECT_IN_USE_KEYS: &str =
    "a protect_in_use block: a mapping with the keys environments, last_deployments, running_pipelines and commit";

const COMMIT_EXAMPLE: &str = r"commit: '(?P<sha>[0-9a-f]{7,40})'";

#[derive(serde::Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a protect_in_use block: a mapping with the keys environments, last_deployments, running_pipelines and commit"
)]
struct ProtectInUseFields {
    #[serde(default, deserialize_with = "present")]
    environments: Option<Pattern>,
    #[serde(default, deserialize_with = "present")]
    last_deployments: Option<LastDeployments>,
    #[serde(default = "default_true")]
    running_pipelines: bool,
    commit: CommitPattern,
}

/// The `protect_in_use` block, checked as a whole inside the mapping's
/// visitor (so the error carries the block's line and column): it must
/// protect something.
struct ProtectInUseFile(ProtectInUse);

impl<'de> Deserialize<'de> for ProtectInUseFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BlockVisitor;
        impl<'de> Visitor<'de> for BlockVisitor {
            type Value = ProtectInUseFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(PROTECT_IN_USE_KEYS)
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ProtectInUseFile, A::Error> {
                let fields =
                    ProtectInUseFields::deserialize(de::value::MapAccessDeserializer::new(map))
                        .map_err(|err| {
                            let text = err.to_string();
                            if text.contains("missing field `commit`") {
                                de::Error::custom(format!(
                                    "{text}; protect_in_use needs `commit`, a pattern whose named group `sha` is how a tag names its commit, e.g. {COMMIT_EXAMPLE}"
                                ))
                            } else {
                                err
                            }
                        })?;
                let last_deployments = fields
                    .last_deployments
                    .map_or(DEFAULT_LAST_DEPLOYMENTS, |LastDeployments(n)| n);
                if last_deployments == 0 && !fields.running_pipelines {
                    return Err(de::Error::custom(
                        "protect_in_use protects nothing with last_deployments: 0 and running_pipelines: false; \
                         count deployments (last_deployments: 1 or more), running pipelines (running_pipelines: true), or remove the block",
                    ));
                }
                let environments = match fields.environments {
                    Some(pattern) => pattern,
                    None => Pattern::new(crate::domain::in_use::EVERY_ENVIRONMENT)
                        .map_err(de::Error::custom)?,
                };
                Ok(ProtectInUseFile(ProtectInUse {
                    environments,
                    last_deployments,
                    running_pipelines: fields.running_pipelines,
                    commit: fields.commit.0,
                }))
            }
        }
        deserializer.deserialize_map(BlockVisitor)
    }
}

/// `protect_in_use.commit`: a pattern with a named group `sha` or `ref`.
struct CommitPattern(Pattern);

impl<'de> Deserialize<'de> for CommitPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, so that the error carries the value's
        // line and column.
        struct CommitVisitor;
        impl Visitor<'_> for CommitVisitor {
            type Value = CommitPattern;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a pattern with a named group `sha` (RE2 syntax, matching the whole tag name)",
                )
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<CommitPattern, E> {
                let pattern = Pattern::new(value).map_err(|why| {
                    E::custom(format!(
                        "\"{value}\" is not a valid pattern: {why}; {PATTERN_HELP}"
                    ))
                })?;
                if pattern.has_group(SHA_GROUP) || pattern.has_group(REF_GROUP) {
                    Ok(CommitPattern(pattern))
                } else {
                    Err(E::custom(format!(
                        "\"{pattern}\" has no named group `sha`: the group is how a tag names its commit \
                         (its first {MIN_SHA_PREFIX} or more hex characters), e.g. {COMMIT_EXAMPLE}; \
                         a group `ref` names the deployment's or pipeline's branch or tag instead"
                    )))
                }
            }
        }
        deserializer.deserialize_str(CommitVisitor)
    }
}

/// `protect_in_use.last_deployments`: 0 to [`MAX_LAST_DEPLOYMENTS`].
struct LastDeployments(usize);

impl<'de> Deserialize<'de> for LastDeployments {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        const ALLOWED: &str = "last_deployments is how many of each environment's newest successful deployments are kept, 0 to 100 (e.g. last_deployments: 3)";
        impl Visitor<'_> for CountVisitor {
            type Value = LastDeployments;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number from 0 to 100")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<LastDeployments, E> {
                match usize::try_from(value) {
                    Ok(n) if n <= MAX_LAST_DEPLOYMENTS => Ok(LastDeployments(n)),
                    _ => Err(E::custom(format!(
                        "{value} is too large: GitLab lists at most {MAX_LAST_DEPLOYMENTS} deployments a page; {ALLOWED}"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<LastDeployments, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::custom(format!("{value} is negative; {ALLOWED}"))),
                }
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<LastDeployments, E> {
                Err(E::custom(format!(
                    "{value} is not a whole number; {ALLOWED}"
                )))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<LastDeployments, E> {
                Err(E::custom(format!("{value:?} is not a number; {ALLOWED}")))
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<LastDeployments, E> {
                Err(E::custom(format!("{value} is not a number; {ALLOWED}")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LastDeployments, E> {
                Err(E::custom(format!(
                    "no value given; {ALLOWED}, or leave the key out for {DEFAULT_LAST_DEPLOYMENTS}"
                )))
            }
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

#[derive(serde::Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a rule: a mapping with the keys name, repositories, delete, keep, keep_n, older_than, when_ref, per_ref and unpulled_for"
)]
struct RuleFields {
    #[serde(default, deserialize_with = "present")]
    name: Option<RuleName>,
    #[serde(default, deserialize_with = "present")]
    repositories: Option<Pattern>,
    delete: Pattern,
    #[serde(default, deserialize_with = "present")]
    keep: Option<Pattern>,
    #[serde(default)]
    keep_n: KeepN,
    #[serde(default, deserialize_with = "present")]
    older_than: Option<PolicyDuration>,
    #[serde(default, deserialize_with = "present")]
    when_ref: Option<WhenRefValue>,
    #[serde(default)]
    per_ref: bool,
    #[serde(default, deserialize_with = "present")]
    unpulled_for: Option<PolicyDuration>,
}

/// One rule as written, checked as a whole: `when_ref`/`per_ref` need a
/// `ref` or `mr` group in `delete`.
struct RuleFile(RuleFields);

impl<'de> Deserialize<'de> for RuleFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The check runs inside the mapping's visitor, so that `serde_yaml`
        // gives the error the rule's line, column and key path.
        struct RuleVisitor;
        impl<'de> Visitor<'de> for RuleVisitor {
            type Value = RuleFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // As `RuleFields`' own `expecting`.
                f.write_str("a rule: a mapping with the keys name, repositories, delete, keep, keep_n, older_than, when_ref, per_ref and unpulled_for")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RuleFile, A::Error> {
                let rule = RuleFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                check_ref_groups(&rule).map_err(de::Error::custom)?;
                Ok(RuleFile(rule))
            }
        }
        deserializer.deserialize_map(RuleVisitor)
    }
}

/// `when_ref`/`per_ref: true` need a `ref` or `mr` group in `delete`.
fn check_ref_groups(rule: &RuleFields) -> Result<(), String> {
    let keys: Vec<&str> = [
        rule.when_ref.is_some().then_some("when_ref"),
        rule.per_ref.then_some("per_ref"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if keys.is_empty() || rule.delete.has_group(REF_GROUP) || rule.delete.has_group(MR_GROUP) {
        return Ok(());
    }
    Err(format!(
        "{} needs a named group `ref` (a ref slug) or `mr` (a merge request IID) in `delete`, \
         e.g. delete: '(?P<ref>[a-z0-9-]+)-[0-9a-f]{{8}}' or 'mr-(?P<mr>\\d+)-.*'",
        keys.join(" and ")
    ))
}

struct WhenRefValue(WhenRef);

impl<'de> Deserialize<'de> for WhenRefValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WhenRefVisitor;
        impl Visitor<'_> for WhenRefVisitor {
            type Value = WhenRefValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("gone or exists")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<WhenRefValue, E> {
                match value {
                    "gone" => Ok(WhenRefValue(WhenRef::Gone)),
                    "exists" => Ok(WhenRefValue(WhenRef::Exists)),
                    "" => Err(E::custom(
                        "no value given; write gone or exists, or leave the key out",
                    )),
                    other => Err(E::custom(format!(
                        "{other:?} is not gone or exists; when_ref: gone claims only tags whose \
                         branch, tag or merge request is gone, exists only those whose ref still exists"
                    ))),
                }
            }
        }
        deserializer.deserialize_str(WhenRefVisitor)
    }
}

/// For optional keys: absent is `None`, but an explicit null is an error (it
/// reaches `T`'s visitor) rather than a silent "not set".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

struct Version;

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VersionVisitor;
        impl Visitor<'_> for VersionVisitor {
            type Value = Version;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("version 1 (the number 1), or no `version` key")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Version, E> {
                if value == 1 {
                    Ok(Version)
                } else {
                    Err(E::custom(format!(
                        "policy version {value} is not supported; this tool reads version 1 \
                         (write `version: 1` or leave the key out)"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Version, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(value), &self)),
                }
            }
        }
        deserializer.deserialize_any(VersionVisitor)
    }
}

#[derive(Default)]
struct PatternList(Vec<Pattern>);

impl<'de> Deserialize<'de> for PatternList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = PatternList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a list of patterns, e.g. ["v\\d+\\.\\d+\\.\\d+"]"#)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PatternList, A::Error> {
                let mut patterns = Vec::new();
                while let Some(pattern) = seq.next_element()? {
                    patterns.push(pattern);
                }
                Ok(PatternList(patterns))
            }
        }
        deserializer.deserialize_seq(ListVisitor)
    }
}

/// The `rules` list: non-empty, names defaulted to "rule N" and unique.
struct Rules(Vec<Rule>);

impl<'de> Deserialize<'de> for Rules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RulesVisitor;
        impl<'de> Visitor<'de> for RulesVisitor {
            type Value = Rules;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of rules, each a mapping with at least `delete`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rules, A::Error> {
                let mut rules: Vec<Rule> = Vec::new();
                let mut names = HashSet::new();
                while let Some(RuleFile(rule)) = seq.next_element::<RuleFile>()? {
                    let index = rules.len();
                    let name = match rule.name {
                        Some(RuleName(name)) => name,
                        None => format!("rule {}", index + 1),
                    };
                    if !names.insert(name.clone()) {
                        return Err(de::Error::custom(format!(
                            "two rules are named {name:?} (the second is rules[{index}]); \
                             rule names must be unique, reports name the rule that deleted each tag"
                        )));
                    }
                    rules.push(Rule {
                        name,
                        repositories: match rule.repositories {
                            Some(pattern) => pattern,
                            None => Pattern::new(".*").map_err(de::Error::custom)?,
                        },
                        delete: rule.delete,
                        keep: rule.keep,
                        keep_n: rule.keep_n.0,
                        older_than: rule.older_than,
                        when_ref: rule.when_ref.map(|WhenRefValue(when)| when),
                        per_ref: rule.per_ref,
                        unpulled_for: rule.unpulled_for,
                    });
                }
                if rules.is_empty() {
                    return Err(de::Error::custom(
                        format!("the list is empty; a policy needs at least one rule, e.g. `{EXAMPLE_RULES}`"),
                    ));
                }
                Ok(Rules(rules))
            }
        }
        deserializer.deserialize_seq(RulesVisitor)
    }
}

struct RuleName(String);

impl<'de> Deserialize<'de> for RuleName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = RuleName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rule name (a non-empty string)")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RuleName, E> {
                if value.trim().is_empty() {
                    Err(E::custom(
                        "a rule name cannot be empty; leave `name` out to get \"rule N\"",
                    ))
                } else {
                    Ok(RuleName(value.to_string()))
                }
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

#[derive(Default)]
struct KeepN(usize);

impl<'de> Deserialize<'de> for KeepN {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeepNVisitor;
        const ALLOWED: &str = "keep_n is a whole number of tags, 0 or more (e.g. keep_n: 5)";
        impl Visitor<'_> for KeepNVisitor {
            type Value = KeepN;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number, 0 or more")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<KeepN, E> {
                usize::try_from(value)
                    .map(KeepN)
                    .map_err(|_| E::custom(format!("{value} is too large; {ALLOWED}")))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<KeepN, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::custom(format!("{value} is negative; {ALLOWED}"))),
                }
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<KeepN, E> {
                Err(E::custom(format!(
                    "{value} is not a whole number; {ALLOWED}"
                )))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<KeepN, E> {
                Err(E::custom(format!("{value:?} is not a number; {ALLOWED}")))
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<KeepN, E> {
                Err(E::custom(format!("{value} is not a number; {ALLOWED}")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeepN, E> {
                Err(E::custom(format!(
                    "no value given; {ALLOWED}, or leave the key out for 0"
                )))
            }
        }
        deserializer.deserialize_any(KeepNVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, String> {
        Policy::parse(text, "policy.yml").map_err(|err| err.message)
    }

    #[test]
    fn durations() {
        let day = 86_400;
        let good: &[(&str, u64)] = &[
            ("90d", 90 * day),
            ("1month", 30 * day),
            ("2months", 60 * day),
            ("2w3d", 17 * day),
            ("3d2w", 17 * day),
            ("1y", 365 * day),
            ("1year", 365 * day),
            ("2years", 730 * day),
            ("36h", 36 * 3600),
            ("90min", 90 * 60),
            ("1mins", 60),
            ("1minute", 60),
            ("5minutes", 300),
            ("45s", 45),
            ("0d", 0),
            ("007d", 7 * day),
            ("1h30min", 5400),
        ];
        for (text, seconds) in good {
            let duration = parse_duration(text).map_err(|e| format!("{text}: {e}"));
            assert_eq!(duration.map(|d| d.seconds), Ok(*seconds), "{text}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "it is empty"),
            ("90", "a bare number has no unit"),
            ("0", "a bare number has no unit"),
            ("d", "a number must come before the unit"),
            ("14x", "unknown unit \"x\""),
            ("1mo", "unknown unit \"mo\""),
            ("1D", "unknown unit \"D\""),
            ("1dd", "unknown unit \"dd\""),
            ("-1d", "negative"),
            ("1d-1h", "negative"),
            ("90 d", "spaces are not allowed"),
            (" 90d", "spaces are not allowed"),
            ("1.5d", "unexpected character '.' after 1"),
            ("2w3", "3 at the end has no unit"),
            ("99999999999999999999d", "too large"),
            ("300000000y", "too large"),
            ("1d+1h", "unexpected character '+'"),
        ];
        for (text, why) in bad {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.contains("e.g. 90d, 1month, 2w3d"), "{err}");
            assert!(
                err.starts_with(&format!("{text:?} is not a duration")),
                "{err}"
            );
        }
    }

    #[test]
    fn patterns_match_the_whole_name() {
        let cases: &[(&str, &str, bool)] = &[
            (r"mr-\d+-.*", "mr-12-fix", true),
            (r"mr-\d+-.*", "x-mr-12-fix", false),
            ("v1", "v10", false),
            ("v1", "v1", true),
            ("a|b", "ab", false),
            ("a|b", "b", true),
            ("(?m)^a$", "a\nb", false),
            ("(?i)Latest", "latest", true),
            (".*", "anything", true),
            (&format!("{}a{}", "(".repeat(63), ")".repeat(63)), "a", true),
        ];
        for (source, text, expected) in cases {
            let pattern = Pattern::new(source).expect(source);
            assert_eq!(pattern.is_match(text), *expected, "{source} on {text:?}");
            assert_eq!(pattern.source(), *source);
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("", "empty pattern"),
            ("mr-(\\d+", "unclosed group"),
            ("a)|(b", "unopened group"),
            (r"(?<=a)b", "look-around"),
            ("a{1000}{1000}", "too large"),
            (
                &format!("{}a{}", "(".repeat(65), ")".repeat(65)),
                "too deeply",
            ),
            ("(?x)a # comment", "anchored"),
        ];
        for (source, why) in cases {
            let err = Pattern::new(source).expect_err(source);
            assert!(err.contains(why), "{source:?}: {err}");
        }
    }

    #[test]
    fn defaults() {
        let policy = parse("rules:\n  - delete: mr-.*\n").expect("parses");
        assert!(policy.protect_latest);
        assert!(policy.protect.is_empty());
        assert_eq!(policy.orphaned_referrers, OrphanedReferrers::Keep);
        let rule = &policy.rules[0];
        assert_eq!(rule.name, "rule 1");
        assert_eq!(rule.repositories.source(), ".*");
        assert_eq!(rule.keep, None);
        assert_eq!(rule.keep_n, 0);
        assert_eq!(rule.older_than, None);
    }

    #[test]
    fn default_names_count_from_one_in_file_order() {
        let policy =
            parse("rules:\n  - delete: a\n  - name: named\n    delete: b\n  - delete: c\n")
                .expect("parses");
        let names: Vec<&str> = policy.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["rule 1", "named", "rule 3"]);
    }

    #[test]
    fn a_full_policy() {
        let text = r#"
version: 1
protect_latest: false
protect:
  - "v\\d+\\.\\d+\\.\\d+"
  - stable
rules:
  - name: review images
    repositories: "group/project(/.*)?"
    delete: mr-\d+-.*
    keep: "mr-1-.*"
    keep_n: 5
    older_than: 14d
"#;
        let policy = parse(text).expect("parses");
        assert!(!policy.protect_latest);
        let protects = |name: &str| policy.protect.iter().any(|pattern| pattern.is_match(name));
        assert!(protects("v1.2.3"));
        assert!(protects("stable"));
        assert!(!protects("v1.2.3-rc1"));
        assert!(!protects("latest"));
        let rule = &policy.rules[0];
        assert_eq!(
            rule.summary(),
            r#"review images: in repositories matching "group/project(/.*)?", delete tags matching "mr-\d+-.*", keep "mr-1-.*", keep the 5 newest, only older than 14 days"#
        );
        assert_eq!(
            rule.older_than.as_ref().map(|d| d.seconds),
            Some(14 * 86_400)
        );
    }

    #[test]
    fn latest_is_protected_by_default() {
        let policy = parse("rules: [{delete: '.*'}]").expect("parses");
        assert!(policy.protect_latest);
        assert!(policy.protect.is_empty());
    }

    #[test]
    fn summaries() {
        let policy = parse(
            "rules:\n  - delete: a\n  - delete: b\n    keep_n: 1\n  - delete: c\n    older_than: 1month\n",
        )
        .expect("parses");
        let summaries: Vec<String> = policy.rules.iter().map(Rule::summary).collect();
        assert_eq!(
            summaries,
            [
                r#"rule 1: in repositories matching ".*", delete tags matching "a""#,
                r#"rule 2: in repositories matching ".*", delete tags matching "b", keep the newest"#,
                r#"rule 3: in repositories matching ".*", delete tags matching "c", only older than 1 month (30 days)"#,
            ]
        );
    }

    #[test]
    fn needs_dates_looks_at_applicable_rules_only() {
        let policy = parse(
            "rules:\n  - repositories: g/p/api\n    delete: a\n    keep_n: 3\n  - repositories: g/p/web\n    delete: b\n    older_than: 1d\n  - repositories: g/p/tools\n    delete: c\n",
        )
        .expect("parses");
        assert!(policy.needs_dates("g/p/api"));
        assert!(policy.needs_dates("g/p/web"));
        assert!(!policy.needs_dates("g/p/tools"));
        assert!(!policy.needs_dates("g/p"));
        // Whole-path match: "g/p/api" does not apply to "g/p/api/v2".
        assert!(!policy.needs_dates("g/p/api/v2"));
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let text = "rules:\n  - name: review\n    delete: mr-.*\n    older_than: 14x\n";
        let err = parse(text).expect_err("bad duration");
        assert_eq!(
            err,
            r#"policy.yml:4:17: rules[0].older_than: "14x" is not a duration (unknown unit "x"); use <number><unit> with unit s, min, h, d, w, month, y — e.g. 90d, 1month, 2w3d"#
        );
    }

    #[test]
    fn a_bare_m_is_refused_as_ambiguous() {
        for (text, number) in [("6m", "6"), ("1h30m", "30"), ("6m1d", "6")] {
            let err = parse_duration(text).expect_err(text);
            assert!(
                err.contains("ambiguous")
                    && err.contains(&format!("{number}min"))
                    && err.contains(&format!("{number}month")),
                "{text}: {err}"
            );
        }
        let err = parse("rules:\n  - delete: a\n    older_than: 6m\n").expect_err("6m");
        assert!(
            err.starts_with("policy.yml:3:17: rules[0].older_than:"),
            "{err}"
        );
        assert!(err.contains("6min") && err.contains("6month"), "{err}");
    }

    #[test]
    fn a_tab_in_the_indentation_is_named_as_such() {
        for (text, at) in [
            ("rules:\n\t- delete: a\n", "policy.yml:2:1:"),
            ("rules:\n  - delete: a\n \t keep: b\n", "policy.yml:3:2:"),
        ] {
            let err = parse(text).expect_err("tab");
            assert!(
                err.starts_with(&format!(
                    "{at} a tab in the indentation; YAML indents with spaces only"
                )),
                "{text:?}: {err}"
            );
        }
        // A tab inside a value is no indentation, and not the error here.
        let err = parse("rules:\n  - delete: \"a\tb\"\n    keep_n: x\n").expect_err("keep_n");
        assert!(err.contains("keep_n") && !err.contains("tab"), "{err}");
    }

    #[test]
    fn durations_in_words() {
        let cases = [
            ("6months", "6 months (180 days)"),
            ("1month", "1 month (30 days)"),
            ("90min", "90 minutes"),
            ("1min", "1 minute"),
            ("14d", "14 days"),
            ("1d", "1 day"),
            ("2w3d", "2 weeks 3 days (17 days)"),
            ("1y", "1 year (365 days)"),
            ("36h", "36 hours"),
            ("48h", "48 hours (2 days)"),
            ("1h30min", "1 hour 30 minutes"),
            ("0d", "0 days"),
            ("45s", "45 seconds"),
        ];
        for (text, words) in cases {
            let duration = parse_duration(text).expect(text);
            assert_eq!(duration.in_words(), words, "{text}");
        }
    }

    #[test]
    fn orphaned_referrers() {
        let policy = parse("orphaned_referrers: delete\nrules: [{delete: a}]\n").expect("parses");
        assert_eq!(policy.orphaned_referrers, OrphanedReferrers::Delete);
        let policy = parse("orphaned_referrers: keep\nrules: [{delete: a}]\n").expect("parses");
        assert_eq!(policy.orphaned_referrers, OrphanedReferrers::Keep);
        let err = parse("rules: [{delete: a}]\norphaned_referrers: drop\n").expect_err("bad value");
        assert!(
            err.starts_with(r#"policy.yml:2:21: orphaned_referrers: "drop" is not keep or delete"#),
            "{err}"
        );
        let err = parse("orphaned_referrers:\nrules: [{delete: a}]\n").expect_err("null");
        assert!(err.starts_with("policy.yml:1:"), "{err}");
        assert!(err.contains("orphaned_referrers"), "{err}");
    }

    #[test]
    fn git_aware_rules() {
        let text = r#"
rules:
  - name: branch images
    delete: "(?P<ref>[a-z0-9-]+)-[0-9a-f]{8}"
    when_ref: gone
    keep_n: 3
    per_ref: true
  - name: mr images
    delete: 'mr-(?P<mr>\d+)-.*'
    when_ref: exists
  - name: per ref only
    delete: "(?P<ref>.+)-build"
    keep_n: 2
    per_ref: true
  - name: both
    delete: '(?:mr-(?P<mr>\d+)|(?P<ref>[a-z0-9-]+))-[0-9a-f]{8}'
    when_ref: gone
    per_ref: false
"#;
        let policy = parse(text).expect("parses");
        let rules = &policy.rules;
        assert_eq!(rules[0].when_ref, Some(WhenRef::Gone));
        assert!(rules[0].per_ref && rules[0].is_git_aware());
        assert_eq!(rules[1].when_ref, Some(WhenRef::Exists));
        assert!(!rules[1].per_ref);
        assert_eq!(rules[2].when_ref, None);
        assert!(rules[2].per_ref && rules[2].is_git_aware());
        assert!(!rules[3].per_ref);
        let summaries: Vec<String> = rules.iter().map(Rule::summary).collect();
        assert_eq!(
            summaries,
            [
                r#"branch images: in repositories matching ".*", delete tags matching "(?P<ref>[a-z0-9-]+)-[0-9a-f]{8}", keep the 3 newest, only when their branch/tag (ref group) is gone (never when the refs could not be listed in full); keep_n counts per ref"#,
                r#"mr images: in repositories matching ".*", delete tags matching "mr-(?P<mr>\d+)-.*", only when their merge request (mr group) still exists (never when the refs could not be listed in full)"#,
                r#"per ref only: in repositories matching ".*", delete tags matching "(?P<ref>.+)-build", keep the 2 newest; keep_n counts per ref"#,
                r#"both: in repositories matching ".*", delete tags matching "(?:mr-(?P<mr>\d+)|(?P<ref>[a-z0-9-]+))-[0-9a-f]{8}", only when their branch/tag (ref group) or merge request (mr group) is gone (never when the refs could not be listed in full)"#,
            ]
        );
        // Plain rules are not git-aware.
        let plain = parse("rules: [{delete: a}]").expect("parses");
        assert!(!plain.rules[0].is_git_aware());
    }

    #[test]
    fn git_aware_keys_need_a_ref_or_mr_group() {
        let err = parse("rules:\n  - delete: a\n  - name: branches\n    delete: \"(?P<branch>.+)-x\"\n    when_ref: gone\n")
            .expect_err("no ref group");
        assert!(
            err.starts_with("policy.yml:3:5: rules[1]: when_ref needs a named group `ref` (a ref slug) or `mr` (a merge request IID) in `delete`"),
            "{err}"
        );
        let err =
            parse("rules:\n  - delete: \"(.+)-x\"\n    per_ref: true\n").expect_err("no group");
        assert!(
            err.starts_with("policy.yml:2:5: rules[0]: per_ref needs a named group"),
            "{err}"
        );
        let err = parse("rules:\n  - delete: x\n    per_ref: true\n    when_ref: exists\n")
            .expect_err("no group");
        assert!(err.contains("when_ref and per_ref needs"), "{err}");
        // `per_ref: false` alone asks nothing of the pattern.
        parse("rules:\n  - delete: x\n    per_ref: false\n").expect("parses");
    }

    #[test]
    fn protect_in_use_with_its_defaults_and_in_full() {
        let policy =
            parse("protect_in_use:\n  commit: '(?P<sha>[0-9a-f]{7,40})'\nrules: [{delete: a}]\n")
                .expect("parses");
        let block = policy.protect_in_use.as_ref().expect("the block");
        assert_eq!(block.environments.source(), ".*");
        assert_eq!(block.last_deployments, DEFAULT_LAST_DEPLOYMENTS);
        assert!(block.running_pipelines);
        assert_eq!(
            block.summary(),
            r#"in use (protect_in_use): kept before any rule, tags matching "(?P<sha>[0-9a-f]{7,40})" whose sha group starts the commit's SHA (7+ characters) — commits of the last 3 successful deployments of each available environment matching ".*" and of running pipelines; when GitLab cannot list them, nothing is deleted in the project"#
        );
        let text = "protect_in_use:\n  environments: 'production|staging'\n  last_deployments: 1\n  running_pipelines: false\n  commit: '(?P<ref>[a-z0-9-]+)-(?P<sha>[0-9a-f]{8})'\nrules: [{delete: a}]\n";
        let block = parse(text)
            .expect("parses")
            .protect_in_use
            .expect("the block");
        assert_eq!(block.last_deployments, 1);
        assert!(!block.running_pipelines);
        assert_eq!(
            block.summary(),
            r#"in use (protect_in_use): kept before any rule, tags matching "(?P<ref>[a-z0-9-]+)-(?P<sha>[0-9a-f]{8})" whose sha group starts the commit's SHA (7+ characters) or whose ref group names the commit's branch or tag (as a slug) — commits of the last successful deployment of each available environment matching "production|staging"; when GitLab cannot list them, nothing is deleted in the project"#
        );
        // Pipelines only.
        let block = parse("protect_in_use: {last_deployments: 0, commit: '(?P<sha>[0-9a-f]{40})'}\nrules: [{delete: a}]")
            .expect("parses")
            .protect_in_use
            .expect("the block");
        assert!(
            block.summary().contains("commits of running pipelines;"),
            "{}",
            block.summary()
        );
        assert!(parse("rules: [{delete: a}]")
            .expect("parses")
            .protect_in_use
            .is_none());
    }

    #[test]
    fn protect_in_use_errors_name_the_line_and_column() {
        let cases: &[(&str, &str)] = &[
            (
                "protect_in_use:\n  environments: '.*'\nrules: [{delete: a}]\n",
                "policy.yml:2:3: protect_in_use: missing field `commit`; protect_in_use needs `commit`",
            ),
            (
                "protect_in_use:\n  commit: '[0-9a-f]{7,40}'\nrules: [{delete: a}]\n",
                "policy.yml:2:11: protect_in_use.commit: \"[0-9a-f]{7,40}\" has no named group `sha`",
            ),
            (
                "protect_in_use:\n  commit: '(?P<sha>[0-9a-f]{7,40}'\nrules: [{delete: a}]\n",
                "policy.yml:2:11: protect_in_use.commit: \"(?P<sha>[0-9a-f]{7,40}\" is not a valid pattern",
            ),
            (
                "protect_in_use:\n  last_deployments: 101\n  commit: '(?P<sha>[0-9a-f]{7})'\nrules: [{delete: a}]\n",
                "policy.yml:2:21: protect_in_use.last_deployments: 101 is too large: GitLab lists at most 100 deployments a page",
            ),
            (
                "protect_in_use:\n  last_deployments: -1\n  commit: '(?P<sha>[0-9a-f]{7})'\nrules: [{delete: a}]\n",
                "policy.yml:2:21: protect_in_use.last_deployments: -1 is negative",
            ),
            (
                "protect_in_use:\n  last_deployments: three\n  commit: '(?P<sha>[0-9a-f]{7})'\nrules: [{delete: a}]\n",
                "policy.yml:2:21: protect_in_use.last_deployments: \"three\" is not a number",
            ),
            (
                "protect_in_use:\n  running_pipelines: sometimes\n  commit: '(?P<sha>[0-9a-f]{7})'\nrules: [{delete: a}]\n",
                "policy.yml:2:22: protect_in_use.running_pipelines: invalid type: string \"sometimes\", expected true or false",
            ),
            (
                "protect_in_use:\n  last_deployments: 0\n  running_pipelines: false\n  commit: '(?P<sha>[0-9a-f]{7})'\nrules: [{delete: a}]\n",
                "policy.yml:2:3: protect_in_use: protect_in_use protects nothing with last_deployments: 0 and running_pipelines: false",
            ),
            (
                "protect_in_use:\n  environment: production\n  commit: '(?P<sha>[0-9a-f]{7})'\nrules: [{delete: a}]\n",
                "policy.yml:2:3: protect_in_use: unknown field `environment`, expected one of `environments`, `last_deployments`, `running_pipelines`, `commit`",
            ),
            (
                "protect_in_use:\nrules: [{delete: a}]\n",
                "policy.yml:1:16: protect_in_use: missing field `commit`; protect_in_use needs `commit`",
            ),
            (
                "protect_in_use:\n  environments:\n  commit: '(?P<sha>[0-9a-f]{7})'\nrules: [{delete: a}]\n",
                "policy.yml:2:16: protect_in_use.environments: \"\" is not a valid pattern: an empty pattern",
            ),
        ];
        for (text, start) in cases {
            let err = parse(text).expect_err(text);
            assert!(
                err.starts_with(start),
                "{text:?}:\n  got  {err}\n  want {start}…"
            );
        }
    }

    #[test]
    fn bad_when_ref_and_per_ref_values() {
        let err = parse("rules:\n  - delete: \"(?P<ref>.+)\"\n    when_ref: merged\n")
            .expect_err("bad value");
        assert!(
            err.starts_with(
                r#"policy.yml:3:15: rules[0].when_ref: "merged" is not gone or exists"#
            ),
            "{err}"
        );
        let err = parse("rules:\n  - delete: \"(?P<ref>.+)\"\n    when_ref:\n").expect_err("null");
        assert!(err.starts_with("policy.yml:3:"), "{err}");
        assert!(err.contains("when_ref"), "{err}");
        let err = parse("rules:\n  - delete: \"(?P<ref>.+)\"\n    per_ref: yes please\n")
            .expect_err("not a bool");
        assert!(
            err.starts_with("policy.yml:3:14: rules[0].per_ref:"),
            "{err}"
        );
        assert!(err.contains("true or false"), "{err}");
    }
}
