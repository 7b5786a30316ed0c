//! The planner's tests: a table per step of the specification, then
//! property tests of its invariants against oracles written straight from
//! the definitions.

use std::collections::{BTreeMap, BTreeSet};

use chrono::TimeZone;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::*;
use crate::domain::names::{Digest, TagName};
use crate::domain::policy::{Pattern, PolicyDuration};

fn repo(path: &str) -> RepositoryPath {
    RepositoryPath::parse(path).expect("test repository path")
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// The digest a test alias stands for.
fn alias(alias: &str) -> Digest {
    Digest::of(alias.as_bytes())
}

/// `{alias}` in a name → the 64 hex digits of [`alias`]'s digest, so
/// `"sha256-{a}.sig"` is a signature of the image with digest alias `a`.
fn expand(name: &str) -> String {
    let mut out = String::new();
    let mut rest = name;
    while let Some((before, after)) = rest.split_once('{') {
        let (key, after) = after.split_once('}').expect("closing brace");
        out.push_str(before);
        out.push_str(alias(key).hex());
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The aliases a spec mentions (`{a}`, `#a`, `>a,b`), for [`abbreviate`].
fn aliases(spec: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = spec;
    while let Some((_, after)) = rest.split_once('{') {
        let (key, after) = after.split_once('}').expect("closing brace");
        found.push(key.to_string());
        rest = after;
    }
    let spec = spec.split_once('^').map_or(spec, |(spec, _)| spec);
    let spec = spec.split_once('@').map_or(spec, |(spec, _)| spec);
    let (spec, children) = spec.split_once('>').unwrap_or((spec, ""));
    found.extend(
        children
            .split(',')
            .filter(|c| !c.is_empty())
            .map(String::from),
    );
    if let Some((_, digest)) = spec.split_once('#') {
        found.push(digest.to_string());
    }
    found
}

/// The inverse of [`expand`] over the aliases of `specs`.
fn abbreviate(name: &str, specs: &[&str]) -> String {
    let mut name = name.to_string();
    for key in specs.iter().flat_map(|spec| aliases(spec)) {
        name = name.replace(alias(&key).hex(), &format!("{{{key}}}"));
    }
    name
}

/// `"mr-1@2026-10-01"` → tag built then; `"mr-1^2026-10-02"` → pushed then
/// (both: `"mr-1@2026-10-01^2026-10-02"`); `"mr-1"` → undated; `"!mr-1"` → protected
/// in the inventory. A date may carry a time: `2026-10-01T12:00:00`.
/// The digest is that of the name, or `#alias`'s: `"app#a@2026-10-01"`.
/// `>c1,c2` makes an image index with the children `c1` and `c2`
/// (aliases): `"multi#m>amd,arm"`. `{alias}` in a name is expanded
/// (see [`expand`]): `"sha256-{a}.sig"`.
fn tag(spec: &str) -> Tag {
    let (protected, spec) = match spec.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    let (spec, pushed) = match spec.split_once('^') {
        Some((spec, pushed)) => (spec, Some(pushed)),
        None => (spec, None),
    };
    let (spec, date) = match spec.split_once('@') {
        Some((spec, date)) => (spec, Some(date)),
        None => (spec, None),
    };
    let (spec, children) = match spec.split_once('>') {
        Some((spec, children)) => (spec, children.split(',').map(alias).collect()),
        None => (spec, Vec::new()),
    };
    let (name, digest) = match spec.split_once('#') {
        Some((name, digest)) => (expand(name), alias(digest)),
        None => (expand(spec), Digest::of(expand(spec).as_bytes())),
    };
    let parse = |date: &str| {
        let text = if date.contains('T') {
            format!("{date}Z")
        } else {
            format!("{date}T00:00:00Z")
        };
        text.parse::<DateTime<Utc>>().expect("test date")
    };
    let created_at = date.map(parse);
    let pushed_at = pushed.map(parse);
    Tag {
        name: TagName::parse(&name).expect("test tag name"),
        digest: Some(digest),
        created_at,
        pushed_at,
        protected,
        gitlab_rule: None,
        media_type: Some(if children.is_empty() {
            "application/vnd.oci.image.manifest.v1+json".to_string()
        } else {
            "application/vnd.oci.image.index.v1+json".to_string()
        }),
        children,
        image: false,
        referrers: 0,
        size_bytes: None,
        last_pulled_at: None,
    }
}

fn policy(yaml: &str) -> Policy {
    Policy::parse(yaml, "test.yml").unwrap_or_else(|err| panic!("{err}"))
}

/// One table row: a policy, the repository's tags, and the expected outcome.
struct Case {
    what: &'static str,
    policy: &'static str,
    repository: &'static str,
    tags: &'static [&'static str],
    protected: &'static [&'static str],
    delete: &'static [(&'static str, &'static str)],
    keep: &'static [(&'static str, &'static str)],
}

const DEFAULT_REPO: &str = "acme/shop";

fn reason_code(reason: &KeepReason) -> String {
    match reason {
        KeepReason::Unclaimed => "unclaimed".into(),
        KeepReason::KeepPattern { rule } => format!("keep:{rule}"),
        KeepReason::KeepN { rule, .. } => format!("keep_n:{rule}"),
        KeepReason::TooNew { rule, .. } => format!("too_new:{rule}"),
        KeepReason::Undated { rule } => format!("undated:{rule}"),
        KeepReason::RefsUnknown { rule } => format!("refs_unknown:{rule}"),
        KeepReason::WithSubject => "with_subject".into(),
        KeepReason::OrphanedReferrer => "orphan".into(),
        KeepReason::SubjectUnverifiable => "unverifiable".into(),
        KeepReason::InUseUnknown => "in_use_unknown".into(),
        KeepReason::LedgerUnreadable { rule } => format!("ledger_unreadable:{rule}"),
        KeepReason::LedgerTooYoung { rule, .. } => format!("ledger_too_young:{rule}"),
        KeepReason::PulledRecently { rule, .. } => format!("pulled:{rule}"),
        KeepReason::PullsUnverifiable { rule } => format!("pulls_unverifiable:{rule}"),
        KeepReason::NotInPlan => "not_in_plan".into(),
        KeepReason::ChangedSincePlan { .. } => "changed_since_plan".into(),
    }
}

fn run(case: &Case) {
    run_with_refs(case, None);
}

/// `"main feature-x #12"`: complete refs with the slugs `main` and
/// `feature-x` and the open merge request !12; `"? why | main"`: the
/// same, incomplete because of `why`.
fn refs(spec: &str) -> Refs {
    let (incomplete, spec) = match spec.strip_prefix('?') {
        Some(rest) => {
            let (why, rest) = rest.split_once('|').unwrap_or((rest, ""));
            (Some(why.trim().to_string()), rest)
        }
        None => (None, spec),
    };
    let mut refs = Refs {
        complete: incomplete.is_none(),
        incomplete_because: incomplete,
        ..Refs::default()
    };
    for word in spec.split_whitespace() {
        match word.strip_prefix('#') {
            Some(iid) => refs.open_mrs.insert(iid.parse().expect("test IID")),
            None => refs.slugs.insert(word.to_string()),
        };
    }
    refs
}

fn run_with_refs(case: &Case, refs_spec: Option<&str>) {
    let policy = policy(case.policy);
    let tags: Vec<Tag> = case.tags.iter().map(|spec| tag(spec)).collect();
    let refs = refs_spec.map(refs).map(ProjectFacts::with_refs);
    let plan = plan_repository(&policy, &repo(case.repository), &tags, refs.as_ref(), now());
    let short = |name: &str| abbreviate(name, case.tags);
    // Expected lists are written with aliases, in the order of the
    // expanded names (the plan's order).
    let in_plan_order = |mut list: Vec<(String, String)>| {
        list.sort_by(|a, b| expand(&a.0).as_bytes().cmp(expand(&b.0).as_bytes()));
        list
    };
    let protected: Vec<String> = plan.protected.iter().map(|p| short(&p.tag.name)).collect();
    let mut expected_protected: Vec<String> =
        case.protected.iter().map(|name| name.to_string()).collect();
    expected_protected.sort_by(|a, b| expand(a).as_bytes().cmp(expand(b).as_bytes()));
    let delete: Vec<(String, String)> = plan
        .delete
        .iter()
        .map(|d| (short(&d.tag.name), d.rule.to_string()))
        .collect();
    let expected_delete = in_plan_order(
        case.delete
            .iter()
            .map(|(name, rule)| (name.to_string(), rule.to_string()))
            .collect(),
    );
    let keep: Vec<(String, String)> = plan
        .keep
        .iter()
        .map(|k| (short(&k.tag.name), reason_code(&k.reason)))
        .collect();
    let expected_keep = in_plan_order(
        case.keep
            .iter()
            .map(|(name, reason)| (name.to_string(), reason.to_string()))
            .collect(),
    );
    assert_eq!(protected, expected_protected, "{}: protected", case.what);
    assert_eq!(delete, expected_delete, "{}: delete", case.what);
    assert_eq!(keep, expected_keep, "{}: keep", case.what);
    assert_eq!(plan.total(), tags.len(), "{}: total", case.what);
    for deletion in &plan.delete {
        let by_step_6 = &*deletion.rule == WITH_SUBJECT || &*deletion.rule == ORPHANED_REFERRER;
        assert_eq!(
            deletion.referrer, by_step_6,
            "{}: {}",
            case.what, deletion.tag.name
        );
    }
}

/// One `#[test]` per table row, named after it, so a case runs by name:
/// `cargo test planner::tests::step_1_protected_tags::latest_is_protected_by_default`.
macro_rules! plan_cases {
        ($($name:ident => $case:expr,)*) => {
            $(
                #[test]
                fn $name() {
                    run(&$case);
                }
            )*
        };
    }

const ALL: &str = "rules: [{name: all, delete: '.*'}]";

mod step_1_protected_tags {
    use super::*;

    plan_cases! {
        latest_is_protected_by_default => Case {
            what: "latest is protected by default",
            policy: ALL,
            repository: DEFAULT_REPO,
            tags: &["latest@2020-01-01", "main@2020-01-01"],
            protected: &["latest"],
            delete: &[("main", "all")],
            keep: &[],
        },
        protect_latest_false_lets_a_rule_delete_latest => Case {
            what: "protect_latest: false lets a rule delete latest",
            policy: "protect_latest: false\nrules: [{name: all, delete: '.*'}]",
            repository: DEFAULT_REPO,
            tags: &["latest@2020-01-01", "main@2020-01-01"],
            protected: &[],
            delete: &[("latest", "all"), ("main", "all")],
            keep: &[],
        },
        only_the_exact_name_latest => Case {
            what: "only the exact name latest",
            policy: ALL,
            repository: DEFAULT_REPO,
            tags: &["latest-arm64", "Latest", "latest"],
            protected: &["latest"],
            delete: &[("Latest", "all"), ("latest-arm64", "all")],
            keep: &[],
        },
        protect_patterns_match_whole_names => Case {
            what: "protect patterns match whole names",
            policy:
                "protect: ['v\\d+\\.\\d+\\.\\d+', stable]\nrules: [{name: all, delete: '.*'}]",
            repository: DEFAULT_REPO,
            tags: &["v1.2.3", "v1.2.3-rc.1", "stable", "unstable", "xv1.2.3"],
            protected: &["stable", "v1.2.3"],
            delete: &[
                ("unstable", "all"),
                ("v1.2.3-rc.1", "all"),
                ("xv1.2.3", "all"),
            ],
            keep: &[],
        },
        protected_in_the_inventory => Case {
            what: "protected in the inventory",
            policy: ALL,
            repository: DEFAULT_REPO,
            tags: &["!release", "main"],
            protected: &["release"],
            delete: &[("main", "all")],
            keep: &[],
        },
        protected_even_when_no_rule_applies => Case {
            what: "protected even when no rule applies",
            policy: "rules: [{repositories: other/repo, delete: '.*'}]",
            repository: DEFAULT_REPO,
            tags: &["latest", "main"],
            protected: &["latest"],
            delete: &[],
            keep: &[("main", "unclaimed")],
        },
    }
}

mod step_2_applicable_rules {
    use super::*;

    const POLICY: &str = "rules:\n  - {name: api, repositories: 'acme/shop/api', delete: 'mr-.*'}\n  - {name: sub, repositories: 'acme/shop/.+', delete: '.*'}\n";

    plan_cases! {
        repository_pattern_matches_the_full_path_exactly => Case {
            what: "repository pattern matches the full path exactly",
            policy: POLICY,
            repository: "acme/shop/api",
            tags: &["mr-1", "main"],
            protected: &[],
            delete: &[("main", "sub"), ("mr-1", "api")],
            keep: &[],
        },
        a_longer_path_does_not_match => Case {
            what: "a longer path does not match",
            policy: POLICY,
            repository: "acme/shop/api/v2",
            tags: &["mr-1", "main"],
            protected: &[],
            delete: &[("main", "sub"), ("mr-1", "sub")],
            keep: &[],
        },
        no_rule_applies_to_the_root_image => Case {
            what: "no rule applies to the root image",
            policy: POLICY,
            repository: "acme/shop",
            tags: &["mr-1", "main"],
            protected: &[],
            delete: &[],
            keep: &[("main", "unclaimed"), ("mr-1", "unclaimed")],
        },
    }
}

mod step_3_first_claim_wins {
    use super::*;

    plan_cases! {
        the_earlier_rule_claims_even_when_it_then_keeps_the_tag => Case {
            what: "the earlier rule claims, even when it then keeps the tag",
            policy: "rules:\n  - {name: first, delete: 'mr-.*', keep: 'mr-1'}\n  - {name: second, delete: '.*'}\n",
            repository: DEFAULT_REPO,
            tags: &["mr-1", "mr-2", "main"],
            protected: &[],
            delete: &[("main", "second"), ("mr-2", "first")],
            keep: &[("mr-1", "keep:first")],
        },
        a_claimed_tag_kept_by_keep_n_is_not_deleted_by_a_later_rule => Case {
            what: "a claimed tag kept by keep_n is not deleted by a later rule",
            policy: "rules:\n  - {name: first, delete: 'mr-.*', keep_n: 1}\n  - {name: second, delete: '.*'}\n",
            repository: DEFAULT_REPO,
            tags: &["mr-1@2026-01-01", "mr-2@2026-01-02"],
            protected: &[],
            delete: &[("mr-1", "first")],
            keep: &[("mr-2", "keep_n:first")],
        },
        an_inapplicable_earlier_rule_does_not_claim => Case {
            what: "an inapplicable earlier rule does not claim",
            policy: "rules:\n  - {name: first, repositories: other, delete: '.*'}\n  - {name: second, delete: 'mr-.*'}\n",
            repository: DEFAULT_REPO,
            tags: &["mr-1", "main"],
            protected: &[],
            delete: &[("mr-1", "second")],
            keep: &[("main", "unclaimed")],
        },
        unclaimed_tags_are_kept => Case {
            what: "unclaimed tags are kept",
            policy: "rules: [{name: r, delete: 'mr-.*'}]",
            repository: DEFAULT_REPO,
            tags: &["feature-x", "mr-3"],
            protected: &[],
            delete: &[("mr-3", "r")],
            keep: &[("feature-x", "unclaimed")],
        },
    }
}

mod step_4_keep_pattern_and_order {
    use super::*;

    plan_cases! {
        keep_pattern_keeps_and_does_not_count_towards_keep_n => Case {
            what: "keep pattern keeps, and does not count towards keep_n",
            policy: "rules: [{name: r, delete: 'mr-.*', keep: 'mr-1-.*', keep_n: 1}]",
            repository: DEFAULT_REPO,
            tags: &[
                "mr-1-a@2026-01-05",
                "mr-2-a@2026-01-04",
                "mr-3-a@2026-01-03",
            ],
            protected: &[],
            delete: &[("mr-3-a", "r")],
            keep: &[("mr-1-a", "keep:r"), ("mr-2-a", "keep_n:r")],
        },
        equal_dates_name_ascending_in_byte_order_uppercase_sorts_first => Case {
            what: "equal dates: name ascending in byte order (uppercase sorts first)",
            policy: "rules: [{name: r, delete: '.*', keep_n: 2}]",
            repository: DEFAULT_REPO,
            tags: &[
                "b@2026-01-01",
                "a@2026-01-01",
                "B@2026-01-01",
                "c@2026-01-01",
            ],
            protected: &[],
            delete: &[("b", "r"), ("c", "r")],
            keep: &[("B", "keep_n:r"), ("a", "keep_n:r")],
        },
        undated_tags_count_as_newer_than_any_dated_tag => Case {
            what: "undated tags count as newer than any dated tag",
            policy: "rules: [{name: r, delete: '.*', keep_n: 2}]",
            repository: DEFAULT_REPO,
            tags: &["new@2026-10-31", "z-index", "old@2025-01-01"],
            protected: &[],
            delete: &[("old", "r")],
            keep: &[("new", "keep_n:r"), ("z-index", "keep_n:r")],
        },
        several_undated_tags_order_by_name => Case {
            what: "several undated tags order by name",
            policy: "rules: [{name: r, delete: '.*', keep_n: 1}]",
            repository: DEFAULT_REPO,
            tags: &["y-index", "x-index", "dated@2026-10-31"],
            protected: &[],
            delete: &[("dated", "r"), ("y-index", "r")],
            keep: &[("x-index", "keep_n:r")],
        },
        later_time_on_the_same_day_is_newer => Case {
            what: "later time on the same day is newer",
            policy: "rules: [{name: r, delete: '.*', keep_n: 1}]",
            repository: DEFAULT_REPO,
            tags: &["a@2026-01-01T00:00:00", "b@2026-01-01T00:00:01"],
            protected: &[],
            delete: &[("a", "r")],
            keep: &[("b", "keep_n:r")],
        },
    }
}

/// Step 4 with git refs (`when_ref`) and step 5's `per_ref`: one test
/// per row, as [`plan_cases!`], with the project's refs ([`refs`]; `None`:
/// not known).
mod step_4_refs {
    use super::*;

    struct RefCase {
        refs: Option<&'static str>,
        case: Case,
    }

    macro_rules! ref_cases {
            ($($name:ident => $case:expr,)*) => {
                $(
                    #[test]
                    fn $name() {
                        let RefCase { refs, case } = $case;
                        run_with_refs(&case, refs);
                    }
                )*
            };
        }

    const GONE: &str =
        "rules: [{name: gone, delete: 'b-(?P<ref>[a-z0-9-]+)-[0-9]+', when_ref: gone}]";
    const GONE_THEN_OLD: &str = "rules:\n  - {name: gone, delete: 'b-(?P<ref>[a-z0-9-]+)-[0-9]+', when_ref: gone}\n  - {name: old, delete: '.*', older_than: 30d}";
    const MR_GONE: &str = "rules: [{name: mrs, delete: 'mr-(?P<mr>[0-9a-z]+)-.*', when_ref: gone}]";

    ref_cases! {
        gone_claims_the_tags_of_deleted_branches_only => RefCase {
            refs: Some("main feature-x"),
            case: Case {
                what: "when_ref: gone claims the tags of deleted branches only",
                policy: GONE,
                repository: DEFAULT_REPO,
                tags: &["b-main-1", "b-feature-x-2", "b-old-3", "b-feature-4", "other"],
                protected: &[],
                delete: &[("b-feature-4", "gone"), ("b-old-3", "gone")],
                keep: &[("b-feature-x-2", "unclaimed"), ("b-main-1", "unclaimed"), ("other", "unclaimed")],
            },
        },
        exists_claims_the_tags_of_live_branches_only => RefCase {
            refs: Some("main"),
            case: Case {
                what: "when_ref: exists claims the tags of live branches; keep_n over them",
                policy: "rules: [{name: live, delete: 'b-(?P<ref>[a-z0-9-]+)-[0-9]+', when_ref: exists, keep_n: 1}]",
                repository: DEFAULT_REPO,
                tags: &["b-main-1@2026-10-01", "b-main-2@2026-10-02", "b-old-3@2026-10-03"],
                protected: &[],
                delete: &[("b-main-1", "live")],
                keep: &[("b-main-2", "keep_n:live"), ("b-old-3", "unclaimed")],
            },
        },
        gone_mr_iids_are_claimed_open_ones_not => RefCase {
            refs: Some("main #12 #40"),
            case: Case {
                what: "when_ref: gone with an mr group: closed/merged/unknown IIDs are gone",
                policy: MR_GONE,
                repository: DEFAULT_REPO,
                tags: &["mr-12-abc", "mr-13-abc", "mr-40-x", "mr-040-y", "mr-7-z"],
                protected: &[],
                delete: &[("mr-13-abc", "mrs"), ("mr-7-z", "mrs")],
                keep: &[("mr-040-y", "unclaimed"), ("mr-12-abc", "unclaimed"), ("mr-40-x", "unclaimed")],
            },
        },
        exists_with_an_mr_group_claims_open_merge_requests => RefCase {
            refs: Some("#12"),
            case: Case {
                what: "when_ref: exists with an mr group claims the open merge requests' tags",
                policy: "rules: [{name: open, delete: 'mr-(?P<mr>[0-9]+)-.*', when_ref: exists}]",
                repository: DEFAULT_REPO,
                tags: &["mr-12-abc", "mr-13-abc"],
                protected: &[],
                delete: &[("mr-12-abc", "open")],
                keep: &[("mr-13-abc", "unclaimed")],
            },
        },
        an_mr_capture_that_is_no_iid_is_never_claimed => RefCase {
            refs: Some("#12"),
            case: Case {
                what: "an mr capture that is not an IID decides neither gone nor exists",
                policy: MR_GONE,
                repository: DEFAULT_REPO,
                tags: &["mr-abc-1"],
                protected: &[],
                delete: &[],
                keep: &[("mr-abc-1", "unclaimed")],
            },
        },
        the_ref_capture_is_compared_as_its_slug => RefCase {
            refs: Some("feature-x"),
            case: Case {
                what: "the ref capture is slugged before it is looked up",
                policy: "rules: [{name: gone, delete: '(?P<ref>[A-Za-z0-9._-]+)-build', when_ref: gone}]",
                repository: DEFAULT_REPO,
                tags: &["Feature.X-build", "feature_x-build", "Old.Branch-build"],
                protected: &[],
                delete: &[("Old.Branch-build", "gone")],
                keep: &[("Feature.X-build", "unclaimed"), ("feature_x-build", "unclaimed")],
            },
        },
        a_tag_whose_ref_holds_no_condition_goes_on_to_the_next_rule => RefCase {
            refs: Some("main"),
            case: Case {
                what: "a live branch's tag is not claimed by the gone rule; the next rule claims it",
                policy: GONE_THEN_OLD,
                repository: DEFAULT_REPO,
                tags: &["b-main-1@2026-01-01", "b-main-2@2026-10-31", "b-old-3@2026-10-31"],
                protected: &[],
                delete: &[("b-main-1", "old"), ("b-old-3", "gone")],
                keep: &[("b-main-2", "too_new:old")],
            },
        },
        a_ref_group_that_takes_no_part_passes_the_tag_on => RefCase {
            refs: None,
            case: Case {
                what: "an optional ref group that captures nothing: the rule passes the tag on, refs or not",
                policy: "rules:\n  - {name: gone, delete: '(?:(?P<ref>[a-z]+)_)?build-[0-9]+', when_ref: gone}\n  - {name: all, delete: '.*'}",
                repository: DEFAULT_REPO,
                tags: &["build-1", "main_build-2"],
                protected: &[],
                delete: &[("build-1", "all")],
                keep: &[("main_build-2", "refs_unknown:gone")],
            },
        },
        both_groups_are_gone_only_when_every_capture_is => RefCase {
            refs: Some("main #12"),
            case: Case {
                what: "with a ref and an mr group, a tag is gone when every capture is",
                policy: "rules: [{name: gone, delete: '(?P<ref>[a-z0-9-]+)_mr(?P<mr>[0-9]+)', when_ref: gone}]",
                repository: DEFAULT_REPO,
                tags: &["main_mr13", "old_mr12", "old_mr13"],
                protected: &[],
                delete: &[("old_mr13", "gone")],
                keep: &[("main_mr13", "unclaimed"), ("old_mr12", "unclaimed")],
            },
        },
        per_ref_keep_n_counts_per_distinct_ref => RefCase {
            refs: None,
            case: Case {
                what: "per_ref: keep_n counts per ref (no refs needed without when_ref)",
                policy: "rules: [{name: r, delete: 'b-(?P<ref>[a-z0-9-]+)-[0-9]+', keep_n: 2, per_ref: true}]",
                repository: DEFAULT_REPO,
                tags: &[
                    "b-main-1@2026-10-01", "b-main-2@2026-10-02", "b-main-3@2026-10-03",
                    "b-feature-x-4@2026-09-01", "b-feature-x-5@2026-09-02", "b-x-6@2020-01-01",
                ],
                protected: &[],
                delete: &[("b-main-1", "r")],
                keep: &[
                    ("b-feature-x-4", "keep_n:r"), ("b-feature-x-5", "keep_n:r"),
                    ("b-main-2", "keep_n:r"), ("b-main-3", "keep_n:r"), ("b-x-6", "keep_n:r"),
                ],
            },
        },
        per_ref_false_counts_over_the_whole_rule => RefCase {
            refs: None,
            case: Case {
                what: "per_ref: false (the default) counts keep_n over the whole rule",
                policy: "rules: [{name: r, delete: 'b-(?P<ref>[a-z0-9-]+)-[0-9]+', keep_n: 2, per_ref: false}]",
                repository: DEFAULT_REPO,
                tags: &["b-main-1@2026-10-01", "b-main-2@2026-10-02", "b-x-3@2026-09-01"],
                protected: &[],
                delete: &[("b-x-3", "r")],
                keep: &[("b-main-1", "keep_n:r"), ("b-main-2", "keep_n:r")],
            },
        },
        per_ref_counts_after_keep_and_protection => RefCase {
            refs: None,
            case: Case {
                what: "per_ref: protected and keep-pattern tags do not count towards a ref's keep_n",
                policy: "rules: [{name: r, delete: 'b-(?P<ref>[a-z0-9-]+)-[0-9]+', keep: 'b-main-1', keep_n: 1, per_ref: true}]",
                repository: DEFAULT_REPO,
                tags: &["b-main-1@2026-10-05", "!b-main-2@2026-10-04", "b-main-3@2026-10-03", "b-main-4@2026-10-02"],
                protected: &["b-main-2"],
                delete: &[("b-main-4", "r")],
                keep: &[("b-main-1", "keep:r"), ("b-main-3", "keep_n:r")],
            },
        },
        when_ref_gone_never_claims_protected_or_kept_tags => RefCase {
            refs: Some("main"),
            case: Case {
                what: "when_ref: gone claims a gone branch's tags after protection (policy and GitLab's rules) and the rule's keep",
                policy: "protect: ['b-old-1']\nrules: [{name: gone, delete: 'b-(?P<ref>[a-z0-9-]+)-[0-9]+', keep: 'b-old-3', when_ref: gone}]",
                repository: DEFAULT_REPO,
                tags: &["b-old-1", "!b-old-2", "b-old-3", "b-old-4", "b-main-5"],
                protected: &["b-old-1", "b-old-2"],
                delete: &[("b-old-4", "gone")],
                keep: &[("b-main-5", "unclaimed"), ("b-old-3", "keep:gone")],
            },
        },
        per_ref_with_older_than => RefCase {
            refs: None,
            case: Case {
                what: "per_ref: beyond each ref's keep_n, older_than decides",
                policy: "rules: [{name: r, delete: 'b-(?P<ref>[a-z0-9-]+)-[0-9]+', keep_n: 1, per_ref: true, older_than: 7d}]",
                repository: DEFAULT_REPO,
                tags: &["b-main-1@2026-10-01", "b-main-2@2026-10-30", "b-main-3@2026-10-31", "b-x-4@2026-01-01", "b-x-5"],
                protected: &[],
                delete: &[("b-main-1", "r"), ("b-x-4", "r")],
                keep: &[("b-main-2", "too_new:r"), ("b-main-3", "keep_n:r"), ("b-x-5", "keep_n:r")],
            },
        },
        keep_the_last_3_per_live_branch_and_nothing_of_gone_ones_after_a_grace => RefCase {
            refs: Some("main"),
            case: Case {
                what: "the docs' example: gone branches after 2d, the 3 newest per live branch",
                policy: "rules:\n  - {name: gone, delete: 'b-(?P<ref>[a-z0-9-]+)-[0-9]+', when_ref: gone, older_than: 2d}\n  - {name: live, delete: 'b-(?P<ref>[a-z0-9-]+)-[0-9]+', when_ref: exists, keep_n: 3, per_ref: true}",
                repository: DEFAULT_REPO,
                tags: &[
                    "b-main-1@2026-10-01", "b-main-2@2026-10-02", "b-main-3@2026-10-03", "b-main-4@2026-10-04",
                    "b-old-5@2026-10-01", "b-old-6@2026-10-31",
                ],
                protected: &[],
                delete: &[("b-main-1", "live"), ("b-old-5", "gone")],
                keep: &[
                    ("b-main-2", "keep_n:live"), ("b-main-3", "keep_n:live"), ("b-main-4", "keep_n:live"),
                    ("b-old-6", "too_new:gone"),
                ],
            },
        },
        incomplete_refs_claim_nothing_through_when_ref => RefCase {
            refs: Some("? branches: 403 | main"),
            case: Case {
                what: "incomplete refs: no tag claimed through when_ref, nor handed to later rules",
                policy: GONE_THEN_OLD,
                repository: DEFAULT_REPO,
                tags: &["b-main-1@2026-01-01", "b-old-2@2026-01-01", "other@2026-01-01"],
                protected: &[],
                delete: &[("other", "old")],
                keep: &[("b-main-1", "refs_unknown:gone"), ("b-old-2", "refs_unknown:gone")],
            },
        },
        no_refs_claim_nothing_through_when_ref => RefCase {
            refs: None,
            case: Case {
                what: "no refs: no tag claimed through when_ref",
                policy: GONE_THEN_OLD,
                repository: DEFAULT_REPO,
                tags: &["b-old-2@2026-01-01", "other@2026-01-01"],
                protected: &[],
                delete: &[("other", "old")],
                keep: &[("b-old-2", "refs_unknown:gone")],
            },
        },
        unknown_refs_claim_nothing_through_exists_either => RefCase {
            refs: Some("? merge requests: timed out"),
            case: Case {
                what: "incomplete refs: when_ref: exists claims nothing either",
                policy: "rules: [{name: live, delete: 'b-(?P<ref>[a-z0-9-]+)-[0-9]+', when_ref: exists, keep_n: 1, per_ref: true}]",
                repository: DEFAULT_REPO,
                tags: &["b-main-1@2026-10-01", "b-main-2@2026-10-02"],
                protected: &[],
                delete: &[],
                keep: &[("b-main-1", "refs_unknown:live"), ("b-main-2", "refs_unknown:live")],
            },
        },
    }

    #[test]
    fn the_plan_says_why_refs_were_unusable() {
        let policy = policy(GONE_THEN_OLD);
        let tags: Vec<Tag> = ["b-old-1", "b-old-2", "other"]
            .iter()
            .map(|s| tag(s))
            .collect();
        let incomplete = refs("? GET /projects/7/repository/branches: 403 Forbidden | main");
        let plan = plan_repository(
            &policy,
            &repo(DEFAULT_REPO),
            &tags,
            Some(&ProjectFacts::with_refs(incomplete)),
            now(),
        );
        let warning = "refs incomplete (GET /projects/7/repository/branches: 403 Forbidden): \
                           no tag claimed through when_ref (\"gone\"); 2 tags kept for it";
        assert_eq!(plan.refs_warning.as_deref(), Some(warning));
        assert!(plan.warnings().iter().any(|w| w == warning));
        assert_eq!(plan.clone().into_outline().warnings, plan.warnings());
        let plan = plan_repository(&policy, &repo(DEFAULT_REPO), &tags, None, now());
        assert_eq!(
                plan.refs_warning.as_deref(),
                Some("no refs known for the project: no tag claimed through when_ref (\"gone\"); 2 tags kept for it")
            );
        // Complete refs, or no rule with when_ref: nothing to say.
        let plan = plan_repository(
            &policy,
            &repo(DEFAULT_REPO),
            &tags,
            Some(&ProjectFacts::with_refs(refs("main"))),
            now(),
        );
        assert_eq!(plan.refs_warning, None);
        let plan = plan_repository(&super::policy(ALL), &repo(DEFAULT_REPO), &tags, None, now());
        assert_eq!(plan.refs_warning, None);
        assert_eq!(
            KeepReason::RefsUnknown {
                rule: "gone".into()
            }
            .to_string(),
            "\"gone\" deletes by git ref (when_ref), and the project's refs are not known in full"
        );
    }
}

mod step_5_keep_n_and_older_than {
    use super::*;

    plan_cases! {
        keep_n_larger_than_the_candidates_keeps_them_all => Case {
            what: "keep_n larger than the candidates keeps them all",
            policy: "rules: [{name: r, delete: 'mr-.*', keep_n: 10}]",
            repository: DEFAULT_REPO,
            tags: &["mr-1@2026-01-01", "mr-2"],
            protected: &[],
            delete: &[],
            keep: &[("mr-1", "keep_n:r"), ("mr-2", "keep_n:r")],
        },
        keep_n_0_and_no_older_than_deletes_every_candidate_dated_or_not => Case {
            what: "keep_n 0 and no older_than deletes every candidate, dated or not",
            policy: "rules: [{name: r, delete: 'mr-.*'}]",
            repository: DEFAULT_REPO,
            tags: &["mr-1@2026-10-31", "mr-2"],
            protected: &[],
            delete: &[("mr-1", "r"), ("mr-2", "r")],
            keep: &[],
        },
        older_than_strictly_earlier_than_now_older_than_is_deleted_equal_is_kept => Case {
            what:
                "older_than: strictly earlier than now - older_than is deleted, equal is kept",
            policy: "rules: [{name: r, delete: '.*', older_than: 1d}]",
            repository: DEFAULT_REPO,
            tags: &[
                "before@2026-10-30T23:59:59",
                "exact@2026-10-31T00:00:00",
                "after@2026-10-31T00:00:01",
                "future@2027-01-01",
            ],
            protected: &[],
            delete: &[("before", "r")],
            keep: &[
                ("after", "too_new:r"),
                ("exact", "too_new:r"),
                ("future", "too_new:r"),
            ],
        },
        undated_tags_are_never_deleted_by_age => Case {
            what: "undated tags are never deleted by age",
            policy: "rules: [{name: r, delete: '.*', older_than: 0s}]",
            repository: DEFAULT_REPO,
            tags: &["index", "old@2020-01-01"],
            protected: &[],
            delete: &[("old", "r")],
            keep: &[("index", "undated:r")],
        },
        keep_n_is_applied_before_older_than => Case {
            what: "keep_n is applied before older_than",
            policy: "rules: [{name: r, delete: '.*', keep_n: 1, older_than: 30d}]",
            repository: DEFAULT_REPO,
            tags: &["a@2025-01-01", "b@2025-02-01", "c@2026-10-20", "d"],
            protected: &[],
            delete: &[("a", "r"), ("b", "r")],
            keep: &[("c", "too_new:r"), ("d", "keep_n:r")],
        },
        an_older_than_reaching_before_the_calendar_deletes_nothing => Case {
            what: "an older_than reaching before the calendar deletes nothing",
            policy: "rules: [{name: r, delete: '.*', older_than: 1000000y}]",
            repository: DEFAULT_REPO,
            tags: &["a@2001-01-01"],
            protected: &[],
            delete: &[],
            keep: &[("a", "too_new:r")],
        },
    }
}

/// Ages (docs/policy.md): push time, else build time; a build time
/// before 2000 (ko's 1970, buildpacks' 1980) is unknown, never old.
mod step_5_ages {
    use super::*;

    plan_cases! {
        reproducible_build_stamps_are_never_old => Case {
            what: "1970 and 1980 build stamps are unknown: kept by older_than",
            policy: "rules: [{name: r, delete: '.*', older_than: 30d}]",
            repository: DEFAULT_REPO,
            tags: &["ko@1970-01-01", "pack@1980-01-01T00:00:01", "old@2020-01-01", "y2k@2000-01-01"],
            protected: &[],
            delete: &[("old", "r"), ("y2k", "r")],
            keep: &[("ko", "undated:r"), ("pack", "undated:r")],
        },
        reproducible_build_stamps_count_as_newest_for_keep_n => Case {
            what: "build stamps count as newest for keep_n, before any dated tag",
            policy: "rules: [{name: r, delete: '.*', keep_n: 2}]",
            repository: DEFAULT_REPO,
            tags: &["new@2026-10-31", "ko@1970-01-01", "pack@1980-01-01", "older@2026-10-01"],
            protected: &[],
            delete: &[("new", "r"), ("older", "r")],
            keep: &[("ko", "keep_n:r"), ("pack", "keep_n:r")],
        },
        the_push_time_wins_over_the_build_time => Case {
            what: "an old build pushed yesterday is kept, a recent build pushed 60 days ago is deleted",
            policy: "rules: [{name: r, delete: '.*', older_than: 30d}]",
            repository: DEFAULT_REPO,
            tags: &["rebuilt@2020-01-01^2026-10-31", "stale@2026-10-30^2026-09-02"],
            protected: &[],
            delete: &[("stale", "r")],
            keep: &[("rebuilt", "too_new:r")],
        },
        a_push_time_dates_a_reproducible_build => Case {
            what: "a push time dates a tag whose build time is a stamp",
            policy: "rules: [{name: r, delete: '.*', older_than: 30d}]",
            repository: DEFAULT_REPO,
            tags: &["ko-new@1970-01-01^2026-10-31", "ko-old@1970-01-01^2026-08-01", "pushed-only^2026-08-01"],
            protected: &[],
            delete: &[("ko-old", "r"), ("pushed-only", "r")],
            keep: &[("ko-new", "too_new:r")],
        },
        keep_n_orders_by_push_time => Case {
            what: "keep_n orders by push time, not build time",
            policy: "rules: [{name: r, delete: '.*', keep_n: 1}]",
            repository: DEFAULT_REPO,
            tags: &["built-late@2026-10-30^2026-01-01", "built-early@2020-01-01^2026-10-01"],
            protected: &[],
            delete: &[("built-late", "r")],
            keep: &[("built-early", "keep_n:r")],
        },
        unknown_ages_come_first_for_keep_n_then_by_name => Case {
            what: "undated and stamped tags are the newest for keep_n, ordered by name",
            policy: "rules: [{name: r, delete: '.*', keep_n: 2, older_than: 30d}]",
            repository: DEFAULT_REPO,
            tags: &["new^2026-10-31", "ko@1970-01-01", "index", "zz@1980-01-01", "old@2026-01-01"],
            protected: &[],
            delete: &[("old", "r")],
            keep: &[
                ("index", "keep_n:r"),
                ("ko", "keep_n:r"),
                ("new", "too_new:r"),
                ("zz", "undated:r"),
            ],
        },
    }

    fn tags(specs: &[&str]) -> Vec<Tag> {
        specs.iter().map(|spec| tag(spec)).collect()
    }

    #[test]
    fn the_plan_says_which_age_source_was_used_and_counts_build_stamps() {
        let policy = policy("rules: [{name: r, delete: 'none'}]");
        let plan = |specs: &[&str]| {
            plan_repository(&policy, &repo(DEFAULT_REPO), &tags(specs), None, now())
        };
        let pushed = plan(&["a^2026-10-01", "b^2026-10-02", "index"]);
        assert_eq!(
            (pushed.age_source, pushed.undated_build_stamps),
            (AgeSource::Pushed, 0)
        );
        let built = plan(&["a@2026-10-01", "ko@1970-01-01", "pack@1980-01-01"]);
        assert_eq!(
            (built.age_source, built.undated_build_stamps),
            (AgeSource::Built, 2)
        );
        let mixed = plan(&["a@2026-10-01", "b^2026-10-02", "ko@1970-01-01^2026-10-03"]);
        assert_eq!(
            (mixed.age_source, mixed.undated_build_stamps),
            (AgeSource::Mixed, 0)
        );
        let none = plan(&["ko@1970-01-01", "index"]);
        assert_eq!(
            (none.age_source, none.undated_build_stamps),
            (AgeSource::None, 1)
        );
    }
}

mod step_6_referrers {
    use super::*;

    plan_cases! {
        keep_n_counts_images_not_their_signatures => Case {
            what: "keep_n counts images, not their signatures",
            policy: "rules: [{name: r, delete: '.*', keep_n: 3}]",
            repository: DEFAULT_REPO,
            tags: &[
                "img1#i1@2026-01-01", "sha256-{i1}.sig@2026-01-01T00:01:00",
                "img2#i2@2026-01-02", "sha256-{i2}.sig@2026-01-02T00:01:00",
                "img3#i3@2026-01-03", "sha256-{i3}.sig@2026-01-03T00:01:00",
                "img4#i4@2026-01-04", "sha256-{i4}.sig@2026-01-04T00:01:00",
                "img5#i5@2026-01-05", "sha256-{i5}.sig@2026-01-05T00:01:00",
            ],
            protected: &[],
            delete: &[
                ("img1", "r"),
                ("img2", "r"),
                ("sha256-{i1}.sig", "with its subject"),
                ("sha256-{i2}.sig", "with its subject"),
            ],
            keep: &[
                ("img3", "keep_n:r"),
                ("img4", "keep_n:r"),
                ("img5", "keep_n:r"),
                ("sha256-{i3}.sig", "with_subject"),
                ("sha256-{i4}.sig", "with_subject"),
                ("sha256-{i5}.sig", "with_subject"),
            ],
        },
        every_referrer_of_a_subject_follows_it => Case {
            what: "every referrer of a subject follows it (sig, att, sbom, bare)",
            policy: "rules: [{name: r, delete: 'old'}]",
            repository: DEFAULT_REPO,
            tags: &[
                "old#o", "sha256-{o}.sig", "sha256-{o}.att", "sha256-{o}.sbom", "sha256-{o}",
                "new#n", "sha256-{n}.sig", "sha256-{n}.cosign.bundle_v0-3",
            ],
            protected: &[],
            delete: &[
                ("old", "r"),
                ("sha256-{o}", "with its subject"),
                ("sha256-{o}.att", "with its subject"),
                ("sha256-{o}.sbom", "with its subject"),
                ("sha256-{o}.sig", "with its subject"),
            ],
            keep: &[
                ("new", "unclaimed"),
                ("sha256-{n}.cosign.bundle_v0-3", "with_subject"),
                ("sha256-{n}.sig", "with_subject"),
            ],
        },
        a_rule_matching_a_referrer_does_not_claim_it => Case {
            what: "a rule whose delete pattern matches a referrer does not claim it",
            policy: "rules: [{name: r, delete: 'sha256-.*'}]",
            repository: DEFAULT_REPO,
            tags: &["app#a", "sha256-{a}.sig"],
            protected: &[],
            delete: &[],
            keep: &[("app", "unclaimed"), ("sha256-{a}.sig", "with_subject")],
        },
        an_orphan_is_kept_by_default => Case {
            what: "an orphan is kept by default",
            policy: ALL,
            repository: DEFAULT_REPO,
            tags: &["app#a", "sha256-{gone}.sig"],
            protected: &[],
            delete: &[("app", "all")],
            keep: &[("sha256-{gone}.sig", "orphan")],
        },
        an_orphan_is_deleted_with_orphaned_referrers_delete => Case {
            what: "an orphan is deleted with orphaned_referrers: delete",
            policy: "orphaned_referrers: delete\nrules: [{name: r, delete: 'nothing'}]",
            repository: DEFAULT_REPO,
            tags: &["app#a", "sha256-{a}.sig", "sha256-{gone}.sig"],
            protected: &[],
            delete: &[("sha256-{gone}.sig", "orphaned referrer")],
            keep: &[("app", "unclaimed"), ("sha256-{a}.sig", "with_subject")],
        },
        a_referrer_of_a_deleted_image_is_not_an_orphan => Case {
            what: "a referrer of a deleted image is deleted with it, not kept as an orphan",
            policy: ALL,
            repository: DEFAULT_REPO,
            tags: &["app#a", "sha256-{a}.sig"],
            protected: &[],
            delete: &[("app", "all"), ("sha256-{a}.sig", "with its subject")],
            keep: &[],
        },
        a_signature_of_an_attestation_of_a_deleted_image_goes_with_it => Case {
            what: "a signature of an attestation of a deleted image goes with it",
            policy: ALL,
            repository: DEFAULT_REPO,
            tags: &["app#a", "sha256-{a}.att#att", "sha256-{att}.sig"],
            protected: &[],
            delete: &[
                ("app", "all"),
                ("sha256-{a}.att", "with its subject"),
                ("sha256-{att}.sig", "with its subject"),
            ],
            keep: &[],
        },
        a_signature_of_an_attestation_of_a_kept_image_stays => Case {
            what: "a signature of an attestation of a kept image stays",
            policy: "rules: [{name: r, delete: 'mr-.*'}]",
            repository: DEFAULT_REPO,
            tags: &["main#a", "sha256-{att}.sig", "sha256-{a}.att#att"],
            protected: &[],
            delete: &[],
            keep: &[
                ("main", "unclaimed"),
                ("sha256-{a}.att", "with_subject"),
                ("sha256-{att}.sig", "with_subject"),
            ],
        },
        a_signature_of_an_orphaned_attestation_follows_the_attestation => Case {
            what: "a signature of an orphaned attestation follows the attestation",
            policy: "orphaned_referrers: delete\nrules: [{name: r, delete: x}]",
            repository: DEFAULT_REPO,
            tags: &["sha256-{gone}.att#att", "sha256-{att}.sig"],
            protected: &[],
            delete: &[
                ("sha256-{att}.sig", "with its subject"),
                ("sha256-{gone}.att", "orphaned referrer"),
            ],
            keep: &[],
        },
        a_signature_of_a_kept_orphaned_attestation_is_kept => Case {
            what: "a signature of a kept orphaned attestation is kept",
            policy: ALL,
            repository: DEFAULT_REPO,
            tags: &["sha256-{gone}.att#att", "sha256-{att}.sig"],
            protected: &[],
            delete: &[],
            keep: &[
                ("sha256-{att}.sig", "with_subject"),
                ("sha256-{gone}.att", "orphan"),
            ],
        },
        a_referrer_of_a_child_of_a_kept_index_is_kept => Case {
            what: "a referrer whose subject is a child of a kept index is kept",
            policy: "rules: [{name: r, delete: '.*', keep: 'multi'}]",
            repository: DEFAULT_REPO,
            tags: &["multi#m>amd,arm", "old#o", "sha256-{amd}.sig", "sha256-{m}.sig"],
            protected: &[],
            delete: &[("old", "r")],
            keep: &[
                ("multi", "keep:r"),
                ("sha256-{amd}.sig", "with_subject"),
                ("sha256-{m}.sig", "with_subject"),
            ],
        },
        a_referrer_of_a_child_of_a_deleted_index_goes_with_it => Case {
            what: "a referrer whose subject is a child of a deleted index goes with it",
            policy: ALL,
            repository: DEFAULT_REPO,
            tags: &["multi#m>amd,arm", "sha256-{arm}.sig"],
            protected: &[],
            delete: &[("multi", "all"), ("sha256-{arm}.sig", "with its subject")],
            keep: &[],
        },
        a_child_kept_by_one_index_keeps_its_referrer => Case {
            what: "a child kept by one index keeps its referrer, though another index is deleted",
            policy: "rules: [{name: r, delete: 'mr-.*'}]",
            repository: DEFAULT_REPO,
            tags: &["mr-1#m1>amd", "main#m2>amd", "sha256-{amd}.sig"],
            protected: &[],
            delete: &[("mr-1", "r")],
            keep: &[("main", "unclaimed"), ("sha256-{amd}.sig", "with_subject")],
        },
        a_subject_shared_by_a_kept_tag_keeps_its_referrer => Case {
            what: "a subject shared by a kept and a deleted tag keeps its referrer",
            policy: "rules: [{name: r, delete: 'mr-.*'}]",
            repository: DEFAULT_REPO,
            tags: &["mr-1#a", "main#a", "sha256-{a}.sig"],
            protected: &[],
            delete: &[("mr-1", "r")],
            keep: &[("main", "unclaimed"), ("sha256-{a}.sig", "with_subject")],
        },
        a_protected_referrer_is_never_deleted => Case {
            what: "a protected referrer is never deleted, orphan or not",
            policy: "protect: ['sha256-.*\\.att']\norphaned_referrers: delete\nrules: [{name: all, delete: '.*'}]",
            repository: DEFAULT_REPO,
            tags: &["app#a", "!sha256-{a}.sig", "sha256-{a}.att", "sha256-{gone}.att"],
            protected: &["sha256-{a}.att", "sha256-{a}.sig", "sha256-{gone}.att"],
            delete: &[("app", "all")],
            keep: &[],
        },
        a_protected_referrer_keeps_its_own_referrers => Case {
            what: "a protected referrer keeps its own referrers",
            policy: ALL,
            repository: DEFAULT_REPO,
            tags: &["app#a", "!sha256-{a}.att#att", "sha256-{att}.sig"],
            protected: &["sha256-{a}.att"],
            delete: &[("app", "all")],
            keep: &[("sha256-{att}.sig", "with_subject")],
        },
        a_referrer_of_a_protected_tag_is_kept => Case {
            what: "a referrer of a protected tag is kept",
            policy: "protect: ['v\\d+']\nrules: [{name: all, delete: '.*'}]",
            repository: DEFAULT_REPO,
            tags: &["v1#v", "!pinned#p", "latest#l", "sha256-{v}.sig", "sha256-{p}.sig", "sha256-{l}.sig"],
            protected: &["latest", "pinned", "v1"],
            delete: &[],
            keep: &[
                ("sha256-{l}.sig", "with_subject"),
                ("sha256-{p}.sig", "with_subject"),
                ("sha256-{v}.sig", "with_subject"),
            ],
        },
        referrers_naming_each_other_are_kept => Case {
            what: "referrers naming each other's digest (no image) are kept",
            policy: ALL,
            repository: DEFAULT_REPO,
            tags: &["sha256-{y}.sig#x", "sha256-{x}.sig#y"],
            protected: &[],
            delete: &[],
            keep: &[("sha256-{x}.sig", "with_subject"), ("sha256-{y}.sig", "with_subject")],
        },
        names_that_are_not_referrers_are_planned_by_the_rules => Case {
            what: "names that only look like referrers are planned by the rules",
            policy: ALL,
            repository: DEFAULT_REPO,
            tags: &[
                "sha256-abc.sig",
                "sha256-{a}x",
                "sha256-{a}.",
                "sha256-{a}-sig",
                "sha512-{a}.sig",
                "app#a",
            ],
            protected: &[],
            delete: &[
                ("app", "all"),
                ("sha256-abc.sig", "all"),
                ("sha256-{a}-sig", "all"),
                ("sha256-{a}.", "all"),
                ("sha256-{a}x", "all"),
                ("sha512-{a}.sig", "all"),
            ],
            keep: &[],
        },
    }
}

#[test]
fn referrer_subjects() {
    let hex = alias("a").hex().to_string();
    let subject = Some(alias("a"));
    assert_eq!(referrer_subject(&format!("sha256-{hex}")), subject);
    assert_eq!(referrer_subject(&format!("sha256-{hex}.sig")), subject);
    assert_eq!(referrer_subject(&format!("sha256-{hex}.a.b_c-d")), subject);
    assert_eq!(referrer_subject(&format!("sha256-{hex}..")), subject);
    assert_eq!(referrer_subject(&format!("sha256-{hex}.")), None);
    assert_eq!(referrer_subject(&format!("sha256-{hex}x")), None);
    assert_eq!(referrer_subject(&format!("sha256-{}.sig", &hex[1..])), None);
    assert_eq!(
        referrer_subject(&format!("sha256-{}.sig", hex.to_uppercase())),
        None
    );
    assert_eq!(referrer_subject(&format!("sha256:{hex}")), None);
    assert_eq!(referrer_subject(&format!("Sha256-{hex}")), None);
    assert_eq!(referrer_subject(&format!("sha256-{hex}.sig+x")), None);
    assert_eq!(referrer_subject("sha256-"), None);
    assert_eq!(referrer_subject(""), None);
}

#[test]
fn referrer_deletions_are_counted_apart() {
    let policy = policy("orphaned_referrers: delete\nrules: [{name: r, delete: '.*'}]");
    let tags: Vec<Tag> = ["app#a", "sha256-{a}.sig", "sha256-{gone}.sig", "other"]
        .iter()
        .map(|spec| tag(spec))
        .collect();
    let plan = plan_repository(&policy, &repo(DEFAULT_REPO), &tags, None, now());
    assert_eq!(plan.delete.len(), 4);
    assert_eq!(plan.referrer_deletions(), 2);
    let outline = plan.into_outline();
    assert_eq!(outline.referrer_deletions, 2);
    assert_eq!(outline.delete.len(), 4);
}

#[test]
fn keep_reasons_of_referrers_read_well() {
    assert_eq!(KeepReason::WithSubject.to_string(), "its subject is kept");
    assert_eq!(
        KeepReason::OrphanedReferrer.to_string(),
        "orphaned referrer: its subject has no tag; kept (orphaned_referrers: keep)"
    );
}

#[test]
fn every_rule_plans_its_own_claims() {
    let policy = policy(
            "rules:\n  - {name: review, delete: 'mr-.*', keep_n: 1}\n  - {name: nightly, delete: 'nightly-.*', keep_n: 1}\n",
        );
    let tags: Vec<Tag> = [
        "mr-1@2026-01-01",
        "mr-2@2026-01-02",
        "nightly-1@2026-01-03",
        "nightly-2@2026-01-04",
    ]
    .iter()
    .map(|spec| tag(spec))
    .collect();
    let plan = plan_repository(&policy, &repo(DEFAULT_REPO), &tags, None, now());
    let deleted: Vec<(&str, &str)> = plan
        .delete
        .iter()
        .map(|d| (d.tag.name.as_str(), &*d.rule))
        .collect();
    assert_eq!(deleted, [("mr-1", "review"), ("nightly-1", "nightly")]);
}

/// A listing without digests (REST names only) or without media types
/// (an index's children unknown) cannot prove that no kept image points
/// at a referrer's subject: such referrers are kept, whatever the policy.
#[test]
fn referrers_are_kept_when_the_listing_cannot_prove_their_subject_gone() {
    let policy = policy("orphaned_referrers: delete\nrules: [{name: all, delete: '.*'}]");
    let subject = Digest::of(b"image");
    let signature =
        Tag::named(TagName::parse(&format!("sha256-{}.sig", subject.hex())).expect("referrer"));
    for (what, other) in [
        ("no digest", Tag::named(TagName::parse("v1").expect("tag"))),
        (
            "no media type",
            Tag {
                digest: Some(Digest::of(b"index")),
                ..Tag::named(TagName::parse("v1").expect("tag"))
            },
        ),
        (
            "a date but no media type (an index is dated on /gitlab/v1)",
            Tag {
                digest: Some(Digest::of(b"index")),
                pushed_at: Some(now() - chrono::Duration::days(3)),
                ..Tag::named(TagName::parse("v1").expect("tag"))
            },
        ),
    ] {
        let plan = plan_repository(
            &policy,
            &repo(DEFAULT_REPO),
            &[signature.clone(), other],
            None,
            now(),
        );
        assert_eq!(plan.delete.len(), 1, "{what}: only the image is deleted");
        assert_eq!(plan.delete[0].tag.name.as_str(), "v1", "{what}");
        assert_eq!(
            plan.keep[0].reason,
            KeepReason::SubjectUnverifiable,
            "{what}"
        );
    }
}

/// The proof a referrer needs is about the *other* tags: here the signature
/// itself is fully known, its subject's only tag is deleted, but a kept tag
/// of unknown kind could be an index listing the subject — so the signature
/// stays. (A mutation that checked the referrer instead of the others
/// survived every earlier test.)
#[test]
fn an_unknown_kept_tag_keeps_a_fully_known_referrer() {
    let policy = policy("rules: [{name: apps, delete: 'app-.*'}]");
    let subject = Digest::of(b"app image");
    let image = Tag {
        digest: Some(subject.clone()),
        created_at: Some(now() - chrono::Duration::days(3)),
        image: true,
        ..Tag::named(TagName::parse("app-1").expect("tag"))
    };
    let maybe_an_index = Tag {
        digest: Some(Digest::of(b"v1")),
        ..Tag::named(TagName::parse("v1").expect("tag"))
    };
    let signature = Tag {
        digest: Some(Digest::of(b"signature")),
        media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
        ..Tag::named(TagName::parse(&format!("sha256-{}.sig", subject.hex())).expect("referrer"))
    };
    let plan = plan_repository(
        &policy,
        &repo(DEFAULT_REPO),
        &[image, maybe_an_index, signature.clone()],
        None,
        now(),
    );
    let deleted: Vec<&str> = plan.delete.iter().map(|d| d.tag.name.as_str()).collect();
    assert_eq!(deleted, ["app-1"]);
    let kept = plan
        .keep
        .iter()
        .find(|k| k.tag.name == signature.name)
        .expect("the signature stays");
    assert_eq!(kept.reason, KeepReason::SubjectUnverifiable);
}

/// A tag known to be an image (GitLab read its config on the REST path)
/// needs no media type: it is no index, so it has no children.
#[test]
fn an_image_without_media_type_lets_its_referrers_follow_it() {
    let policy = policy("rules: [{name: all, delete: '.*', keep_n: 1}]");
    let old = Digest::of(b"old");
    let new = Digest::of(b"new");
    let image = |name: &str, digest: &Digest, days: i64| Tag {
        digest: Some(digest.clone()),
        created_at: Some(now() - chrono::Duration::days(days)),
        image: true,
        ..Tag::named(TagName::parse(name).expect("tag"))
    };
    let signature = |subject: &Digest| Tag {
        digest: Some(Digest::of(subject.hex().as_bytes())),
        media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
        ..Tag::named(TagName::parse(&format!("sha256-{}.sig", subject.hex())).expect("referrer"))
    };
    let tags = [
        image("v1", &old, 9),
        image("v2", &new, 1),
        signature(&old),
        signature(&new),
    ];
    let plan = plan_repository(&policy, &repo(DEFAULT_REPO), &tags, None, now());
    let deleted: Vec<(&str, &str)> = plan
        .delete
        .iter()
        .map(|d| (d.tag.name.as_str(), &*d.rule))
        .collect();
    assert_eq!(
        deleted,
        [(tags[2].name.as_str(), WITH_SUBJECT), ("v1", "all"),]
    );
    assert_eq!(plan.keep.len(), 2);
    assert!(plan
        .keep
        .iter()
        .all(|k| k.reason != KeepReason::SubjectUnverifiable));
}

#[test]
fn duplicate_names_plan_the_same_in_any_order() {
    // An inventory never lists a name twice, but a live listing might race
    // with a push; the outcome must still not depend on the order.
    let policy = policy("rules: [{name: r, delete: '.*', keep_n: 1}]");
    let mut first = tag("a@2026-01-01");
    first.digest = Some(Digest::of(b"1"));
    let mut second = first.clone();
    second.digest = Some(Digest::of(b"2"));
    let forward = plan_repository(
        &policy,
        &repo(DEFAULT_REPO),
        &[first.clone(), second.clone()],
        None,
        now(),
    );
    let backward = plan_repository(&policy, &repo(DEFAULT_REPO), &[second, first], None, now());
    assert_eq!(forward, backward);
    assert_eq!(forward.keep[0].tag.digest, Some(Digest::of(b"1")));
}

#[test]
fn empty_repository() {
    let plan = plan_repository(&policy(ALL), &repo(DEFAULT_REPO), &[], None, now());
    assert_eq!(plan.total(), 0);
    assert!(plan.warnings().is_empty());
    assert_eq!(plan.into_outline().tags, 0);
}

// ---- property tests ---------------------------------------------------

const NAME_PREFIXES: &[&str] = &[
    "mr-1-", "mr-2-", "mr-", "v1.", "nightly-", "latest", "x", "",
];
const PATTERNS: &[&str] = &[
    ".*",
    "mr-.*",
    r"mr-\d+-.*",
    "mr-1-.*",
    r"v\d+\..*",
    "nightly-.*",
    "x.*",
    "latest",
    "[a-m].*",
    r".*\d",
];
const REPOSITORIES: &[&str] = &[".*", "g/p", "g/p/.+", "g/p/api"];
const REPOSITORY_PATHS: &[&str] = &["g/p", "g/p/api", "g/p/web"];

fn pattern(source: &str) -> Pattern {
    Pattern::new(source).expect("test pattern")
}

fn any_tags() -> impl Strategy<Value = Vec<Tag>> {
    let tag = (
        0..NAME_PREFIXES.len(),
        0u8..12,
        // Few distinct dates, so ties and the older_than boundary occur.
        // Day 40 stands for a reproducible build stamp (1980).
        proptest::option::weighted(0.8, 0i64..41),
        // A push time, for some.
        proptest::option::weighted(0.3, 0i64..40),
        0u8..4,
        proptest::bool::weighted(0.1),
    );
    proptest::collection::vec(tag, 0..40).prop_map(|raw| {
        let mut by_name = BTreeMap::new();
        for (prefix, suffix, day, pushed, digest, protected) in raw {
            let name = format!("{}{}", NAME_PREFIXES[prefix], suffix);
            let tag = Tag {
                name: TagName::parse(&name).expect("test tag name"),
                digest: Some(Digest::parse(&format!("sha256:{digest:064x}")).expect("digest")),
                created_at: day.map(|day| match day {
                    40 => "1980-01-01T00:00:01Z".parse().expect("stamp"),
                    day => now() - chrono::TimeDelta::hours(day * 12),
                }),
                pushed_at: pushed.map(|day| now() - chrono::TimeDelta::hours(day * 12)),
                protected,
                gitlab_rule: None,
                media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
                children: Vec::new(),
                image: false,
                referrers: 0,
                size_bytes: None,
                last_pulled_at: None,
            };
            by_name.insert(name, tag);
        }
        by_name.into_values().collect()
    })
}

fn any_rule(index: usize) -> impl Strategy<Value = Rule> {
    (
        0..REPOSITORIES.len(),
        0..PATTERNS.len(),
        proptest::option::of(0..PATTERNS.len()),
        0usize..5,
        proptest::option::of(0u64..12),
    )
        .prop_map(
            move |(repositories, delete, keep, keep_n, older_than)| Rule {
                name: format!("rule {}", index + 1),
                repositories: pattern(REPOSITORIES[repositories]),
                delete: pattern(PATTERNS[delete]),
                keep: keep.map(|keep| pattern(PATTERNS[keep])),
                keep_n,
                older_than: older_than.map(|half_days| PolicyDuration {
                    seconds: half_days * 12 * 3600,
                    source: format!("{}h", half_days * 12),
                }),
                when_ref: None,
                per_ref: false,
                unpulled_for: None,
            },
        )
}

fn any_rules(
    count: std::ops::Range<usize>,
    first_index: usize,
) -> impl Strategy<Value = Vec<Rule>> {
    count.prop_flat_map(move |count| {
        (0..count)
            .map(|index| any_rule(first_index + index))
            .collect::<Vec<_>>()
    })
}

fn any_policy() -> impl Strategy<Value = Policy> {
    (
        any::<bool>(),
        proptest::collection::vec(0..PATTERNS.len(), 0..2),
        any::<bool>(),
        any_rules(1..4, 0),
    )
        .prop_map(|(protect_latest, protect, delete_orphans, rules)| Policy {
            protect_latest,
            protect: protect.into_iter().map(|i| pattern(PATTERNS[i])).collect(),
            orphaned_referrers: if delete_orphans {
                OrphanedReferrers::Delete
            } else {
                OrphanedReferrers::Keep
            },
            remove_empty_repositories: false,
            protect_in_use: None,
            rules,
        })
}

fn any_repository() -> impl Strategy<Value = RepositoryPath> {
    proptest::sample::select(REPOSITORY_PATHS).prop_map(repo)
}

const REFERRER_SUFFIXES: &[&str] = &["", ".sig", ".att", ".sbom"];

/// Tags of [`any_tags`] (digests from `Digest::of(&[0..4])`), some of them
/// image indexes, plus referrer tags: subjects from `Digest::of(&[0..10])`
/// (so an image, an index's child, another referrer, or nothing — an
/// orphan), digests from `Digest::of(&[4..10])` (so referrers of
/// referrers, and cycles), some protected in the inventory.
fn any_tags_with_referrers() -> impl Strategy<Value = Vec<Tag>> {
    let children = proptest::option::weighted(0.2, proptest::collection::vec(0u8..10, 1..3));
    let referrer = (
        0u8..10,
        0..REFERRER_SUFFIXES.len(),
        4u8..10,
        proptest::bool::weighted(0.1),
        proptest::option::weighted(0.8, 0i64..40),
    );
    (
        any_tags(),
        proptest::collection::vec(children, 40),
        proptest::collection::vec(referrer, 0..16),
    )
        .prop_map(|(tags, children, referrers)| {
            let mut by_name = BTreeMap::new();
            for (mut tag, children) in tags.into_iter().zip(children) {
                if let Some(children) = children {
                    tag.children = children.iter().map(|c| Digest::of(&[*c])).collect();
                    tag.media_type = Some("application/vnd.oci.image.index.v1+json".into());
                }
                by_name.insert(tag.name.to_string(), tag);
            }
            for (subject, suffix, digest, protected, day) in referrers {
                let name = format!(
                    "sha256-{}{}",
                    Digest::of(&[subject]).hex(),
                    REFERRER_SUFFIXES[suffix]
                );
                let tag = Tag {
                    name: TagName::parse(&name).expect("referrer tag name"),
                    digest: Some(Digest::of(&[digest])),
                    created_at: day.map(|day| now() - chrono::TimeDelta::hours(day * 12)),
                    pushed_at: None,
                    protected,
                    gitlab_rule: None,
                    media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
                    children: Vec::new(),
                    image: false,
                    referrers: 0,
                    size_bytes: None,
                    last_pulled_at: None,
                };
                by_name.insert(name, tag);
            }
            by_name.into_values().collect()
        })
}

/// The other tags that point at `subject`: by digest, or as an index
/// containing it.
fn holders<'a>(tags: &'a [Tag], referrer: &Tag, subject: &Digest) -> Vec<&'a Tag> {
    tags.iter()
        .filter(|tag| tag.name != referrer.name)
        .filter(|tag| tag.digest.as_ref() == Some(subject) || tag.children.contains(subject))
        .collect()
}

/// Every tag that stays carries why, as data and as a sentence: which
/// protection, which keep pattern, the rank within keep_n, the age
/// against older_than, unclaimed, a referrer following its subject.
#[test]
fn each_staying_tag_says_why() {
    let policy = policy(
        r#"
protect: ["v\\d+", "stable"]
rules:
  - name: review
    delete: "mr-.*"
    keep: "mr-0"
    keep_n: 1
    older_than: 14d
"#,
    );
    let tags: Vec<Tag> = [
        "latest",
        "v1",
        "stable",
        "!locked",
        "mr-0@2026-01-01",
        "mr-1@2026-10-30",
        "mr-2^2026-10-25T00:00:00",
        "mr-3@2026-09-01",
        "main#m@2026-01-01",
        "sha256-{m}.sig",
    ]
    .iter()
    .map(|spec| tag(spec))
    .chain([Tag {
        gitlab_rule: Some("immutable (GitLab tag rule ^rel-)".into()),
        ..tag("rel-1")
    }])
    .collect();
    let plan = plan_repository(&policy, &repo("g/p"), &tags, None, now());
    assert_eq!(
        plan.delete
            .iter()
            .map(|d| d.tag.name.as_str())
            .collect::<Vec<_>>(),
        ["mr-3"]
    );
    let outline = plan.into_outline();
    let why: Vec<(String, &str, String)> = outline
        .staying
        .iter()
        .map(|s| {
            (
                abbreviate(&s.tag, &["sha256-{m}.sig"]),
                s.reason.kind(),
                s.reason.to_string(),
            )
        })
        .collect();
    let expected = [
        (
            "latest",
            "protected_latest",
            "protected: latest (protect_latest)",
        ),
        (
            "locked",
            "protected",
            "protected: marked so in the inventory",
        ),
        ("main", "unclaimed", "no rule deletes it"),
        (
            "mr-0",
            "keep_pattern",
            "matches the keep pattern of \"review\"",
        ),
        (
            "mr-1",
            "keep_n",
            "within keep_n 1 of \"review\": number 1 of 3 candidates, newest first",
        ),
        (
            "mr-2",
            "younger_than_older_than",
            "younger than older_than 14d of \"review\": pushed 7 days ago",
        ),
        (
            "rel-1",
            "gitlab_tag_rule",
            "protected by GitLab's tag rules: immutable (GitLab tag rule ^rel-)",
        ),
        (
            "sha256-{m}.sig",
            "referrer_of_kept_subject",
            "its subject is kept",
        ),
        (
            "stable",
            "protect_pattern",
            "protected: matches the protect pattern \"stable\"",
        ),
        (
            "v1",
            "protect_pattern",
            "protected: matches the protect pattern \"v\\\\d+\"",
        ),
    ];
    let expected: Vec<(String, &str, String)> = expected
        .iter()
        .map(|(tag, kind, reason)| (tag.to_string(), *kind, reason.to_string()))
        .collect();
    assert_eq!(why, expected);
    assert_eq!((outline.kept, outline.protected), (5, 5));
}

/// The outcome of one tag, as a comparable value.
fn outcomes(plan: &RepositoryPlan) -> BTreeMap<String, String> {
    let mut outcomes = BTreeMap::new();
    for protected in &plan.protected {
        outcomes.insert(protected.tag.name.to_string(), "protected".to_string());
    }
    for deletion in &plan.delete {
        outcomes.insert(
            deletion.tag.name.to_string(),
            format!("delete:{}", deletion.rule),
        );
    }
    for kept in &plan.keep {
        outcomes.insert(kept.tag.name.to_string(), reason_code(&kept.reason));
    }
    outcomes
}

/// Whether the policy protects a tag name (step 1: `latest`, `protect`),
/// straight from the definition: the oracle the planner's own
/// [`protect_reason`] is checked against.
fn policy_protects(policy: &Policy, name: &str) -> bool {
    (policy.protect_latest && name == "latest") || policy.protect.iter().any(|p| p.is_match(name))
}

/// The rule that claims a tag, straight from the definition of step 3.
fn claiming_rule<'a>(policy: &'a Policy, repository: &str, tag: &Tag) -> Option<&'a Rule> {
    if tag.protected || policy_protects(policy, &tag.name) {
        return None;
    }
    policy
        .rules
        .iter()
        .find(|rule| rule.repositories.is_match(repository) && rule.delete.is_match(&tag.name))
}

/// Every input tag is in exactly one of the plan's lists.
fn each_tag_once(plan: &RepositoryPlan, tags: &[Tag]) -> Result<(), TestCaseError> {
    let mut seen: Vec<Tag> = plan.protected.iter().map(|p| p.tag.clone()).collect();
    seen.extend(plan.delete.iter().map(|d| d.tag.clone()));
    seen.extend(plan.keep.iter().map(|k| k.tag.clone()));
    let mut expected = tags.to_vec();
    seen.sort_by(by_name);
    expected.sort_by(by_name);
    prop_assert_eq!(seen, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_tag_appears_exactly_once(policy in any_policy(), repository in any_repository(), tags in any_tags()) {
        each_tag_once(&plan_repository(&policy, &repository, &tags, None, now()), &tags)?;
    }

    #[test]
    fn nothing_protected_or_kept_by_pattern_is_deleted(policy in any_policy(), repository in any_repository(), tags in any_tags()) {
        let plan = plan_repository(&policy, &repository, &tags, None, now());
        for deletion in &plan.delete {
            let tag = &deletion.tag;
            prop_assert!(!tag.protected, "{} is protected in the inventory", tag.name);
            prop_assert!(!policy_protects(&policy, &tag.name), "{} is protected by the policy", tag.name);
            prop_assert!(!(policy.protect_latest && tag.name == "latest"));
            let rule = claiming_rule(&policy, &repository, tag);
            prop_assert!(rule.is_some(), "{} deleted but unclaimed", tag.name);
            let rule = rule.expect("checked");
            prop_assert_eq!(&*deletion.rule, rule.name.as_str());
            prop_assert!(!rule.keep.as_ref().is_some_and(|keep| keep.is_match(&tag.name)));
            if let Some(older_than) = &rule.older_than {
                let age = tag.age().date();
                prop_assert!(age.is_some(), "{} deleted by age without a date", tag.name);
                prop_assert!(age.expect("checked") < now() - older_than.to_timedelta());
                // A reproducible build stamp is never old.
                prop_assert!(tag.pushed_at.is_some() || tag.created_at.is_some_and(|at| at >= crate::domain::model::build_time_floor()));
            }
        }
        for protected in &plan.protected {
            let tag = &protected.tag;
            prop_assert!(tag.protected || policy_protects(&policy, &tag.name));
        }
    }

    #[test]
    fn each_rule_keeps_its_keep_n_newest_candidates(policy in any_policy(), repository in any_repository(), tags in any_tags()) {
        let plan = plan_repository(&policy, &repository, &tags, None, now());
        let outcomes = outcomes(&plan);
        for rule in policy.applicable_rules(&repository) {
            let mut candidates: Vec<&Tag> = tags
                .iter()
                .filter(|tag| claiming_rule(&policy, &repository, tag).is_some_and(|r| r.name == rule.name))
                .filter(|tag| !rule.keep.as_ref().is_some_and(|keep| keep.is_match(&tag.name)))
                .collect();
            candidates.sort_by(|a, b| newest_first(a, b));
            let kept = candidates
                .iter()
                .filter(|tag| !outcomes[tag.name.as_str()].starts_with("delete:"))
                .count();
            prop_assert!(kept >= rule.keep_n.min(candidates.len()));
            for tag in candidates.iter().take(rule.keep_n) {
                prop_assert_eq!(&outcomes[tag.name.as_str()], &format!("keep_n:{}", rule.name));
            }
            // Newest first really is newest first.
            for pair in candidates.windows(2) {
                let (newer, older) = (pair[0], pair[1]);
                let newer_first = match (newer.age().date(), older.age().date()) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(a), Some(b)) => a > b || (a == b && newer.name < older.name),
                };
                prop_assert!(newer_first, "{} before {}", newer.name, older.name);
            }
        }
    }

    #[test]
    fn planning_is_deterministic_and_ignores_input_order(
        policy in any_policy(),
        repository in any_repository(),
        (tags, shuffled) in any_tags().prop_flat_map(|tags| (Just(tags.clone()), Just(tags).prop_shuffle())),
    ) {
        let plan = plan_repository(&policy, &repository, &tags, None, now());
        prop_assert_eq!(&plan, &plan_repository(&policy, &repository, &tags, None, now()));
        prop_assert_eq!(&plan, &plan_repository(&policy, &repository, &shuffled, None, now()));
        let names = |list: Vec<&str>| list.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes());
        prop_assert!(names(plan.protected.iter().map(|p| p.tag.name.as_str()).collect()));
        prop_assert!(names(plan.delete.iter().map(|d| d.tag.name.as_str()).collect()));
        prop_assert!(names(plan.keep.iter().map(|k| k.tag.name.as_str()).collect()));
    }

    /// With no refs (or incomplete ones), `when_ref: gone` claims
    /// nothing: turning rules into git-aware ones (same tags matched,
    /// the whole name captured as `ref`) never deletes a tag the plain
    /// policy kept, and nothing is deleted by a git-aware rule.
    #[test]
    fn without_refs_when_ref_gone_claims_nothing(
        policy in any_policy(),
        git_aware in proptest::collection::vec(any::<bool>(), 3),
        incomplete in any::<bool>(),
        repository in any_repository(),
        tags in any_tags_with_referrers(),
    ) {
        let mut gone = policy.clone();
        for (rule, git) in gone.rules.iter_mut().zip(&git_aware) {
            if *git {
                rule.delete = pattern(&format!("(?P<ref>{})", rule.delete.source()));
                rule.when_ref = Some(crate::domain::refs::WhenRef::Gone);
            }
        }
        let refs = incomplete.then(|| ProjectFacts::with_refs(refs("? cut short | main")));
        let plain = outcomes(&plan_repository(&policy, &repository, &tags, None, now()));
        let plan = plan_repository(&gone, &repository, &tags, refs.as_ref(), now());
        for deletion in &plan.delete {
            let rule = gone.rules.iter().find(|rule| *rule.name == *deletion.rule);
            prop_assert!(rule.is_none_or(|rule| rule.when_ref.is_none()), "{}", deletion.rule);
            prop_assert!(plain[deletion.tag.name.as_str()].starts_with("delete:"), "{}", deletion.tag.name);
        }
        each_tag_once(&plan, &tags)?;
    }

    #[test]
    fn later_rules_never_touch_tags_claimed_earlier(
        policy in any_policy(),
        extra in any_rules(1..3, 10),
        repository in any_repository(),
        tags in any_tags(),
    ) {
        let mut extended = policy.clone();
        extended.rules.extend(extra);
        let before = outcomes(&plan_repository(&policy, &repository, &tags, None, now()));
        let after = outcomes(&plan_repository(&extended, &repository, &tags, None, now()));
        for tag in &tags {
            let claimed_before = claiming_rule(&policy, &repository, tag);
            if claimed_before.is_some() || tag.protected || policy_protects(&policy, &tag.name) {
                prop_assert_eq!(&before[tag.name.as_str()], &after[tag.name.as_str()], "{}", tag.name);
            }
            // And every decision names the claiming rule.
            let claimer = claiming_rule(&extended, &repository, tag).map(|rule| rule.name.clone());
            let decided_by = after[tag.name.as_str()].split_once(':').map(|(_, rule)| rule.to_string());
            prop_assert_eq!(claimer, decided_by, "{}", tag.name);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn with_referrers_every_tag_appears_exactly_once(policy in any_policy(), repository in any_repository(), tags in any_tags_with_referrers()) {
        each_tag_once(&plan_repository(&policy, &repository, &tags, None, now()), &tags)?;
    }

    /// Referrers are never claimed, never counted by keep_n: every other
    /// tag is planned exactly as without them.
    #[test]
    fn referrers_do_not_change_the_plan_of_other_tags(policy in any_policy(), repository in any_repository(), tags in any_tags_with_referrers()) {
        let images: Vec<Tag> = tags
            .iter()
            .filter(|tag| referrer_subject(&tag.name).is_none())
            .cloned()
            .collect();
        let with = outcomes(&plan_repository(&policy, &repository, &tags, None, now()));
        let without = outcomes(&plan_repository(&policy, &repository, &images, None, now()));
        for tag in &images {
            prop_assert_eq!(&with[tag.name.as_str()], &without[tag.name.as_str()], "{}", tag.name);
        }
    }

    #[test]
    fn each_referrer_follows_its_subject(policy in any_policy(), repository in any_repository(), tags in any_tags_with_referrers()) {
        let plan = plan_repository(&policy, &repository, &tags, None, now());
        let outcomes = outcomes(&plan);
        let alive = |tag: &Tag| !outcomes[tag.name.as_str()].starts_with("delete:");
        for tag in &tags {
            let Some(subject) = referrer_subject(&tag.name) else { continue };
            let outcome = &outcomes[tag.name.as_str()];
            if tag.protected || policy_protects(&policy, &tag.name) {
                prop_assert_eq!(outcome, "protected", "{}", tag.name);
                continue;
            }
            let holders = holders(&tags, tag, &subject);
            if holders.is_empty() {
                let expected = match policy.orphaned_referrers {
                    OrphanedReferrers::Keep => "orphan",
                    OrphanedReferrers::Delete => "delete:orphaned referrer",
                };
                prop_assert_eq!(outcome, expected, "{}", tag.name);
            } else if holders.iter().any(|h| alive(h)) {
                // No kept or protected image loses a referrer of it.
                prop_assert_eq!(outcome, "with_subject", "{}", tag.name);
            } else {
                // No deleted image keeps a referrer.
                prop_assert_eq!(outcome, "delete:with its subject", "{}", tag.name);
            }
        }
        for deletion in &plan.delete {
            prop_assert_eq!(deletion.referrer, referrer_subject(&deletion.tag.name).is_some());
        }
        prop_assert_eq!(
            plan.referrer_deletions(),
            plan.delete.iter().filter(|d| referrer_subject(&d.tag.name).is_some()).count()
        );
    }
}

#[test]
fn generated_tag_names_are_unique() {
    // Guard for the property helpers: `outcomes` keys by name, so the
    // generator must never produce duplicate names.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..50 {
        let tags = any_tags().new_tree(&mut runner).expect("tree").current();
        let names: BTreeSet<&str> = tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), tags.len());
    }
}

/// `protect_in_use`: the facts of a project whose production runs commit
/// `a1…` (deployment 12) with `b2…` as its rollback target (deployment 11),
/// staging runs `c3…`, and pipeline 90 is running on `d4…`.
mod in_use {
    use super::*;
    use crate::domain::in_use::{CommitInUse, InUse, InUseListed, InUseSource};

    const IN_USE_POLICY: &str = "protect_in_use:\n  environments: production\n  last_deployments: 2\n  commit: '(?:(?P<ref>[a-z0-9-]+)-)?(?P<sha>[0-9a-f]{7,40})'\nrules: [{name: all, delete: '.*'}]";

    fn sha(letter: char, digit: char) -> String {
        format!("{letter}{digit}").repeat(20)
    }

    fn deployment(environment: &str, id: u64, commit: String) -> CommitInUse {
        CommitInUse {
            sha: commit,
            git_ref: Some("main".into()),
            source: InUseSource::Deployment {
                environment: environment.into(),
                deployment_id: id,
                finished_at: Some(now() - chrono::TimeDelta::days(id as i64 % 5)),
            },
        }
    }

    fn facts() -> ProjectFacts {
        let mut in_use = InUse {
            complete: true,
            listed: InUseListed::everything(),
            commits: vec![
                deployment("production", 12, sha('a', '1')),
                deployment("production", 11, sha('b', '2')),
                deployment("production", 10, sha('e', '5')),
                deployment("staging", 13, sha('c', '3')),
                CommitInUse {
                    sha: sha('d', '4'),
                    git_ref: Some("feature/x".into()),
                    source: InUseSource::Pipeline {
                        pipeline_id: 90,
                        status: "running".into(),
                    },
                },
            ],
            incomplete_because: None,
        };
        in_use.sort();
        ProjectFacts {
            refs: None,
            in_use: Some(in_use),
        }
    }

    fn tags() -> Vec<Tag> {
        [
            format!("{}#a1", &sha('a', '1')[..8]),
            format!("main-{}#b2", &sha('b', '2')[..7]),
            "sha256-{a1}.sig".to_string(),
            sha('d', '4'),
            format!("{}#e5", &sha('e', '5')[..8]),
            format!("{}#c3", &sha('c', '3')[..8]),
            "feature-x-old".to_string(),
            "latest".to_string(),
        ]
        .iter()
        .map(|spec| tag(spec))
        .collect()
    }

    #[test]
    fn tags_naming_a_commit_in_use_are_kept_before_any_rule() {
        let policy = policy(IN_USE_POLICY);
        let facts = facts();
        let plan = plan_repository(&policy, &repo(DEFAULT_REPO), &tags(), Some(&facts), now());
        let protected: Vec<(String, String)> = plan
            .protected
            .iter()
            .map(|p| {
                (
                    abbreviate(p.tag.name.as_str(), &["x#a1"]),
                    StayReason::Protected(p.reason.clone()).kind().to_string(),
                )
            })
            .collect();
        let a1 = sha('a', '1')[..8].to_string();
        let b2 = format!("main-{}", &sha('b', '2')[..7]);
        let d4 = sha('d', '4');
        let mut expected = vec![
            (a1.clone(), "in_use".to_string()),
            (b2.clone(), "in_use".to_string()),
            (d4.clone(), "in_use".to_string()),
            ("latest".to_string(), "protected_latest".to_string()),
        ];
        expected.sort();
        assert_eq!(protected, expected);
        // Deployment 10 is production's third, staging is not asked for:
        // deleted, as the rule says; so is a ref that only the tag names.
        let deleted: Vec<&str> = plan.delete.iter().map(|d| d.tag.name.as_str()).collect();
        let e5 = sha('e', '5')[..8].to_string();
        let c3 = sha('c', '3')[..8].to_string();
        let mut want = vec![e5.as_str(), c3.as_str(), "feature-x-old"];
        want.sort();
        assert_eq!(deleted, want);
        // The signature of an in-use image follows it.
        let sig = expand("sha256-{a1}.sig");
        assert!(
            plan.keep
                .iter()
                .any(|k| k.tag.name.as_str() == sig && k.reason == KeepReason::WithSubject),
            "{:?}",
            plan.keep
        );
        // The reason names each source; the `main-` tag names a commit by
        // its SHA and, through its ref, production's two deployments on main.
        let reason = |name: &str| {
            plan.protected
                .iter()
                .find(|p| p.tag.name.as_str() == name)
                .map(|p| p.reason.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            reason(&a1),
            format!(
                "in use: deployed to production (deployment 12, finished 2026-10-30T00:00:00Z), commit {a1} on main"
            )
        );
        assert_eq!(
            reason(&b2),
            format!(
                "in use: deployed to production (deployment 12, finished 2026-10-30T00:00:00Z), commit {a1} on main; deployed to production (deployment 11, finished 2026-10-31T00:00:00Z), commit {} on main",
                &sha('b', '2')[..8]
            )
        );
        assert_eq!(
            reason(&d4),
            format!(
                "in use: pipeline 90 running, commit {} on feature/x",
                &d4[..8]
            )
        );
        assert_eq!(plan.in_use_warning, None);
        assert!(plan.warnings().is_empty());
    }

    #[test]
    fn unknown_commits_in_use_delete_nothing_and_say_why() {
        let policy = policy(IN_USE_POLICY);
        let mut refused = facts();
        if let Some(in_use) = &mut refused.in_use {
            *in_use = InUse::failed(
                InUseListed::everything(),
                "GitLab refused to list the project's deployments (GET /projects/:id/deployments answered 403 to the JOB-TOKEN credentials)".into(),
            );
        }
        let listed_less = ProjectFacts {
            refs: None,
            in_use: facts().in_use.map(|mut in_use| {
                in_use.listed.last_deployments = 1;
                in_use
            }),
        };
        let cases: [(Option<&ProjectFacts>, &str); 3] = [
            (None, "the project's commits in use are not known: nothing deleted here (protect_in_use); 7 tags the plan would delete kept"),
            (Some(&refused), "the project's commits in use are not known in full (GitLab refused to list the project's deployments (GET /projects/:id/deployments answered 403 to the JOB-TOKEN credentials)): nothing deleted here (protect_in_use); 7 tags the plan would delete kept"),
            (Some(&listed_less), "the listing of commits in use has 1 deployments per environment, and protect_in_use asks for the last 2: nothing deleted here (protect_in_use); 7 tags the plan would delete kept"),
        ];
        for (facts, warning) in cases {
            let plan = plan_repository(&policy, &repo(DEFAULT_REPO), &tags(), facts, now());
            assert!(plan.delete.is_empty(), "{:?}", plan.delete);
            assert_eq!(plan.in_use_warning.as_deref(), Some(warning));
            assert!(plan.warnings().iter().any(|w| w == warning));
            let unknown = plan
                .keep
                .iter()
                .filter(|k| k.reason == KeepReason::InUseUnknown)
                .count();
            assert_eq!(unknown, 7, "every tag the rule deletes, the signature too");
            assert!(plan
                .protected
                .iter()
                .all(|p| p.reason == ProtectReason::Latest));
            let outline = plan.into_outline();
            assert_eq!(outline.in_use_unusable.as_deref(), Some(warning));
        }
    }

    #[test]
    fn without_a_rule_that_applies_the_commits_in_use_are_not_needed() {
        let elsewhere = policy(
            "protect_in_use: {commit: '(?P<sha>[0-9a-f]{7,40})'}\nrules: [{repositories: other/.*, delete: '.*'}]",
        );
        assert!(!elsewhere.needs_in_use(DEFAULT_REPO));
        assert!(elsewhere.needs_in_use("other/x"));
        let plan = plan_repository(&elsewhere, &repo(DEFAULT_REPO), &tags(), None, now());
        assert_eq!(plan.in_use_warning, None);
        assert!(plan.delete.is_empty());
        // `orphaned_referrers: delete` can delete without a rule.
        let orphans = policy(
            "orphaned_referrers: delete\nprotect_in_use: {commit: '(?P<sha>[0-9a-f]{7,40})'}\nrules: [{repositories: other/.*, delete: '.*'}]",
        );
        assert!(orphans.needs_in_use(DEFAULT_REPO));
    }

    #[test]
    fn in_use_reasons_read_well() {
        assert_eq!(
            StayReason::Kept(KeepReason::InUseUnknown).kind(),
            "in_use_unknown"
        );
        assert_eq!(
            KeepReason::InUseUnknown.to_string(),
            "the plan would delete it, but the project's commits in use (protect_in_use) are not known in full: nothing is deleted in the project"
        );
    }
}
