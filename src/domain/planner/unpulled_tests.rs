//! `unpulled_for`: what the planner deletes on the pull ledger's word.

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::domain::names::{Digest, RepositoryPath, TagName};
use crate::domain::policy::Policy;
use crate::domain::pulls::LedgerView;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn now() -> DateTime<Utc> {
    "2026-12-07T12:00:00Z".parse().expect("time")
}

fn days_ago(days: i64) -> DateTime<Utc> {
    now() - TimeDelta::days(days)
}

fn policy(yaml: &str) -> Policy {
    Policy::parse(yaml, "test.yml").unwrap_or_else(|err| panic!("{err}"))
}

/// An image pushed `pushed` days ago, last pulled `pulled` days ago.
fn image(name: &str, pushed: i64, pulled: Option<i64>) -> Tag {
    Tag {
        digest: Some(Digest::of(name.as_bytes())),
        pushed_at: Some(days_ago(pushed)),
        media_type: Some(MANIFEST.into()),
        last_pulled_at: pulled.map(days_ago),
        ..Tag::named(TagName::parse(name).expect("tag"))
    }
}

fn watched(days: i64) -> LedgerView {
    LedgerView::Read {
        watched_since: Some(days_ago(days)),
    }
}

fn plan(policy: &Policy, tags: &[Tag], ledger: &LedgerView) -> RepositoryPlan {
    let repository = RepositoryPath::parse("g/p").expect("path");
    plan_repository_with_ledger(policy, &repository, tags, None, ledger, now())
}

fn deleted(plan: &RepositoryPlan) -> Vec<&str> {
    plan.delete.iter().map(|d| d.tag.name.as_str()).collect()
}

fn kept(plan: &RepositoryPlan) -> Vec<(&str, &'static str)> {
    plan.keep
        .iter()
        .map(|k| (k.tag.name.as_str(), k.reason.kind()))
        .collect()
}

const RULE: &str = "rules: [{name: stale, delete: '.*', unpulled_for: 90d}]";

#[test]
fn deletes_only_what_nobody_pulled_within_the_time() {
    let tags = [
        image("pulled-recently", 200, Some(3)),
        image("pulled-long-ago", 200, Some(120)),
        image("never-pulled", 200, None),
        // Exactly at the limit: pulled within the time, kept.
        image("at-the-limit", 200, Some(90)),
    ];
    let plan = plan(&policy(RULE), &tags, &watched(365));
    assert_eq!(deleted(&plan), ["never-pulled", "pulled-long-ago"]);
    assert_eq!(
        kept(&plan),
        [
            ("at-the-limit", "pulled_recently"),
            ("pulled-recently", "pulled_recently")
        ]
    );
    let reason = plan.keep[1].reason.to_string();
    assert_eq!(
        reason,
        "pulled 3 days ago, within unpulled_for 90d of \"stale\""
    );
    assert_eq!(plan.ledger_warning, None);
}

#[test]
fn an_index_stays_while_any_manifest_it_lists_is_pulled() {
    let (amd, arm) = (Digest::of(b"amd"), Digest::of(b"arm"));
    let mut multi = image("multi", 200, None);
    multi.media_type = Some(INDEX.into());
    multi.children = vec![amd.clone(), arm];
    // What `RepositoryPulls::apply` gives an index whose amd64 child was
    // pulled by digest 2 days ago.
    multi.last_pulled_at = Some(days_ago(2));
    let mut unpulled = image("multi-old", 200, None);
    unpulled.media_type = Some(INDEX.into());
    unpulled.children = vec![Digest::of(b"old-amd")];
    let plan = plan(&policy(RULE), &[multi, unpulled], &watched(365));
    assert_eq!(deleted(&plan), ["multi-old"]);
    assert_eq!(kept(&plan), [("multi", "pulled_recently")]);
}

#[test]
fn a_ledger_that_has_not_watched_long_enough_decides_nothing() {
    let tags = [image("old", 400, None), image("pulled", 400, Some(1))];
    let young = plan(&policy(RULE), &tags, &watched(30));
    assert!(young.delete.is_empty());
    assert_eq!(
        kept(&young),
        [("old", "ledger_too_young"), ("pulled", "pulled_recently")]
    );
    assert_eq!(
        young.keep[0].reason.to_string(),
        "the pull ledger has watched this repository for 30 days, less than unpulled_for 90d of \"stale\""
    );
    let unseen = plan(
        &policy(RULE),
        &tags,
        &LedgerView::Read {
            watched_since: None,
        },
    );
    assert!(unseen.delete.is_empty());
    assert!(unseen.keep[0]
        .reason
        .to_string()
        .starts_with("the pull ledger has seen no event of this repository yet"));
    // Watched exactly that long: enough.
    let enough = plan(&policy(RULE), &tags, &watched(90));
    assert_eq!(deleted(&enough), ["old"]);
}

#[test]
fn without_a_readable_ledger_the_rule_deletes_nothing_and_says_why() {
    let policy = policy(
        "rules:\n  - {name: stale, repositories: g/p, delete: 'build-.*', unpulled_for: 90d}\n  - {name: reviews, delete: 'mr-.*'}",
    );
    let tags = [
        image("build-1", 400, None),
        image("build-2", 400, None),
        image("mr-1", 400, None),
    ];
    for (ledger, why) in [
        (LedgerView::NotRead, "the pull ledger was not read"),
        (
            LedgerView::Unreadable("GET …/pulls: connection refused".into()),
            "the pull ledger could not be read: GET …/pulls: connection refused",
        ),
    ] {
        let plan = plan(&policy, &tags, &ledger);
        // The other rule is not held back.
        assert_eq!(deleted(&plan), ["mr-1"], "{why}");
        assert_eq!(
            kept(&plan),
            [
                ("build-1", "ledger_unreadable"),
                ("build-2", "ledger_unreadable")
            ]
        );
        let warning = plan.ledger_warning.clone().expect("a warning");
        assert!(warning.starts_with(why), "{warning}");
        assert!(
            warning
                .ends_with("nothing deleted through unpulled_for (\"stale\"); 2 tags kept for it"),
            "{warning}"
        );
        let outline = plan.into_outline();
        assert_eq!(outline.ledger_unusable, Some(warning.clone()));
        assert!(outline.warnings.contains(&warning));
    }
    // No applicable rule uses the ledger: nothing to warn about.
    let other = RepositoryPath::parse("g/other").expect("path");
    let plan =
        plan_repository_with_ledger(&policy, &other, &tags, None, &LedgerView::NotRead, now());
    assert_eq!(plan.ledger_warning, None);
    assert_eq!(plan.delete.len(), 1);
}

#[test]
fn keep_n_and_older_than_decide_first() {
    let policy = policy(
        "rules: [{name: stale, delete: '.*', keep_n: 1, older_than: 30d, unpulled_for: 90d}]",
    );
    let tags = [
        image("newest", 1, None),
        image("young", 10, None),
        image("old-pulled", 300, Some(5)),
        image("old", 300, None),
    ];
    let plan = plan(&policy, &tags, &watched(365));
    assert_eq!(deleted(&plan), ["old"]);
    assert_eq!(
        kept(&plan),
        [
            ("newest", "keep_n"),
            ("old-pulled", "pulled_recently"),
            ("young", "younger_than_older_than")
        ]
    );
}

#[test]
fn tags_whose_pulls_cannot_be_told_are_kept() {
    let mut no_digest = image("no-digest", 200, None);
    no_digest.digest = None;
    // Could be an index whose children were pulled by digest.
    let mut no_kind = image("no-kind", 200, None);
    no_kind.media_type = None;
    let mut known_image = image("known-image", 200, None);
    known_image.media_type = None;
    known_image.image = true;
    let plan = plan(
        &policy(RULE),
        &[no_digest, no_kind, known_image],
        &watched(365),
    );
    assert_eq!(deleted(&plan), ["known-image"]);
    assert_eq!(
        kept(&plan),
        [
            ("no-digest", "pulls_unverifiable"),
            ("no-kind", "pulls_unverifiable")
        ]
    );
}

#[test]
fn a_signature_follows_its_pulled_image() {
    let pulled = image("app", 200, Some(1));
    let digest = pulled.digest.clone().expect("digest");
    let signature = Tag {
        digest: Some(Digest::of(b"signature")),
        media_type: Some(MANIFEST.into()),
        ..Tag::named(TagName::parse(&format!("sha256-{}.sig", digest.hex())).expect("name"))
    };
    let plan = plan(&policy(RULE), &[pulled, signature], &watched(365));
    assert!(plan.delete.is_empty());
    assert_eq!(plan.keep[1].reason.kind(), "referrer_of_kept_subject");
}

#[test]
fn a_rule_without_unpulled_for_ignores_the_ledger() {
    let policy = policy("rules: [{name: all, delete: '.*'}]");
    let tags = [image("pulled", 1, Some(0))];
    let plan = plan(&policy, &tags, &LedgerView::NotRead);
    assert_eq!(deleted(&plan), ["pulled"]);
    assert_eq!(plan.ledger_warning, None);
}
