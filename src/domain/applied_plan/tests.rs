//! The reviewed plan's checks and its intersection with the live plan.

use chrono::TimeZone;

use super::*;
use crate::domain::names::{RepositoryPath, TagName};
use crate::domain::planner::plan_owned_repository_gated;
use crate::domain::policy::Policy;
use crate::domain::pulls::LedgerView;

const REPO: &str = "group/project/api";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

fn digest(seed: &str) -> Digest {
    Digest::of(seed.as_bytes())
}

fn image(name: &str, seed: &str) -> Tag {
    Tag {
        digest: Some(digest(seed)),
        media_type: Some("application/vnd.oci.image.manifest.v1+json".to_string()),
        ..Tag::named(TagName::parse(name).expect("tag name"))
    }
}

/// A signature of the image whose digest is `digest(subject)`.
fn signature(subject: &str) -> Tag {
    image(
        &format!("sha256-{}.sig", digest(subject).hex()),
        &format!("sig of {subject}"),
    )
}

fn policy(yaml: &str) -> Policy {
    Policy::parse(yaml, "test.yml").unwrap_or_else(|err| panic!("{err}"))
}

fn project() -> RunScope {
    RunScope {
        kind: RunScope::PROJECT.to_string(),
        project_id: Some(42),
        project_path: Some("group/project".to_string()),
        group: None,
        server: Some("https://gitlab.example.com".to_string()),
    }
}

/// A reviewed plan listing `deletions` (tag, digest seed) in [`REPO`].
fn reviewed(deletions: &[(&str, &str)]) -> ReviewedPlan {
    let tags = deletions
        .iter()
        .map(|(tag, seed)| (tag.to_string(), Some(digest(seed))))
        .collect();
    ReviewedPlan {
        dry_run: true,
        made_at: Some(now() - TimeDelta::days(1)),
        policy_digest: Some("abc".to_string()),
        scope: Some(project()),
        deletions: BTreeMap::from([(REPO.to_string(), tags)]),
        ..ReviewedPlan::default()
    }
}

fn against<'a>(scope: &'a RunScope) -> ApplyAgainst<'a> {
    ApplyAgainst {
        now: now(),
        max_age: TimeDelta::days(7),
        max_age_text: "7d",
        policy_digest: "abc",
        policy_file: "policy.yml",
        scope,
        shard: None,
    }
}

/// The live plan of `tags` through the reviewed plan's gate: the names
/// deleted, and the skipped reviewed deletions (tag, kind).
fn apply(
    policy_yaml: &str,
    plan: &ReviewedPlan,
    tags: Vec<Tag>,
) -> (Vec<String>, Vec<(String, String)>) {
    let gate = plan.clone().into_gate();
    let repository = gate.repository(REPO);
    let outline = plan_owned_repository_gated(
        &policy(policy_yaml),
        &RepositoryPath::parse(REPO).expect("path"),
        tags,
        None,
        &LedgerView::NotRead,
        now(),
        Some(&repository),
    )
    .into_outline();
    let skipped = repository
        .skipped(&outline)
        .into_iter()
        .map(|s| (s.tag, s.kind))
        .collect();
    let deleted = outline
        .delete
        .iter()
        .map(|d| d.tag.name.to_string())
        .collect();
    (deleted, skipped)
}

const REVIEW: &str = "rules: [{name: review, delete: 'mr-.*'}]";

#[test]
fn only_the_listed_deletions_at_their_digests_go() {
    let plan = reviewed(&[("mr-1", "one"), ("mr-2", "two"), ("mr-3", "three")]);
    let tags = vec![
        image("mr-1", "one"),
        // Moved to another image since the review.
        image("mr-2", "moved"),
        // Pushed since the review: the policy would delete it, the plan does not list it.
        image("mr-4", "four"),
        image("main", "main"),
    ];
    let (deleted, skipped) = apply(REVIEW, &plan, tags);
    assert_eq!(deleted, ["mr-1"]);
    assert_eq!(
        skipped,
        [
            ("mr-2".to_string(), "changed_since_plan".to_string()),
            ("mr-3".to_string(), "changed_since_plan".to_string()),
        ]
    );
}

#[test]
fn a_reviewed_deletion_the_live_plan_keeps_stays_with_the_live_reason() {
    let plan = reviewed(&[("mr-1", "one"), ("mr-2", "two")]);
    let now_protected = "protect: ['mr-2']\nrules: [{name: review, delete: 'mr-.*'}]";
    let (deleted, skipped) = apply(
        now_protected,
        &plan,
        vec![image("mr-1", "one"), image("mr-2", "two")],
    );
    assert_eq!(deleted, ["mr-1"]);
    assert_eq!(
        skipped,
        [("mr-2".to_string(), "protect_pattern".to_string())]
    );
}

#[test]
fn a_tag_not_in_the_plan_stays_and_is_said_so() {
    let plan = reviewed(&[("mr-1", "one")]);
    let gate = plan.into_gate();
    let reason = gate.repository(REPO).holds_back(&image("mr-9", "nine"));
    assert_eq!(reason, Some(KeepReason::NotInPlan));
    let reason = gate
        .repository("other/repo")
        .holds_back(&image("mr-1", "one"));
    assert_eq!(reason, Some(KeepReason::NotInPlan));
    let without_digest = Tag::named(TagName::parse("mr-1").expect("name"));
    assert!(matches!(
        gate.repository(REPO).holds_back(&without_digest),
        Some(KeepReason::ChangedSincePlan { now: None, .. })
    ));
}

#[test]
fn a_signature_goes_only_when_listed_and_stays_with_a_held_back_image() {
    let tags = || {
        vec![
            image("mr-1", "one"),
            signature("one"),
            image("mr-2", "two"),
            signature("two"),
        ]
    };
    // The plan lists both images and mr-1's signature only: mr-2's
    // signature, although its image goes, was not reviewed.
    let sig_one = signature("one").name.to_string();
    let sig_two = signature("two").name.to_string();
    let mut plan = reviewed(&[("mr-1", "one"), ("mr-2", "two")]);
    let listed = plan.deletions.get_mut(REPO).expect("repository");
    listed.insert(sig_one.clone(), signature("one").digest);
    let (deleted, _) = apply(REVIEW, &plan, tags());
    assert_eq!(deleted, ["mr-1", "mr-2", sig_one.as_str()]);

    // mr-1 moved since the review: it stays, and its signature with it.
    let mut plan = reviewed(&[("mr-1", "moved"), ("mr-2", "two")]);
    let listed = plan.deletions.get_mut(REPO).expect("repository");
    listed.insert(sig_one.clone(), signature("one").digest);
    listed.insert(sig_two.clone(), signature("two").digest);
    let (deleted, skipped) = apply(REVIEW, &plan, tags());
    assert_eq!(deleted, ["mr-2", sig_two.as_str()]);
    assert_eq!(
        skipped,
        [
            ("mr-1".to_string(), "changed_since_plan".to_string()),
            (sig_one, "referrer_of_kept_subject".to_string()),
        ]
    );
}

#[test]
fn a_fitting_plan_is_accepted() {
    let scope = project();
    assert_eq!(reviewed(&[]).refusal(&against(&scope)), None);
    // Named by path alone on one side: the paths decide.
    let by_path = RunScope {
        project_id: None,
        project_path: Some("Group/Project".to_string()),
        ..project()
    };
    assert_eq!(reviewed(&[]).refusal(&against(&by_path)), None);
}

#[test]
fn a_plan_made_for_something_else_is_refused() {
    let scope = project();
    let refused = |plan: ReviewedPlan, needle: &str| {
        let why = plan.refusal(&against(&scope)).expect("refused");
        assert!(why.contains(needle), "{needle:?} not in {why:?}");
    };
    refused(
        ReviewedPlan {
            dry_run: false,
            ..reviewed(&[])
        },
        "live run",
    );
    refused(
        ReviewedPlan {
            interrupted: true,
            ..reviewed(&[])
        },
        "interrupted",
    );
    refused(
        ReviewedPlan {
            policy_digest: None,
            ..reviewed(&[])
        },
        "older registry-cleanup",
    );
    refused(
        ReviewedPlan {
            made_at: Some(now() - TimeDelta::days(8)),
            ..reviewed(&[])
        },
        "8 days ago, more than --plan-max-age 7d",
    );
    refused(
        ReviewedPlan {
            policy_digest: Some("def".to_string()),
            ..reviewed(&[])
        },
        "another policy",
    );
    refused(
        ReviewedPlan {
            scope: Some(RunScope {
                project_id: Some(43),
                ..project()
            }),
            ..reviewed(&[])
        },
        "made for project 43",
    );
    refused(
        ReviewedPlan {
            scope: Some(RunScope {
                kind: RunScope::GROUP.to_string(),
                group: Some("group".to_string()),
                ..RunScope::default()
            }),
            ..reviewed(&[])
        },
        "made for group group",
    );
    refused(
        ReviewedPlan {
            scope: Some(RunScope {
                server: Some("https://other.example.com".to_string()),
                ..project()
            }),
            ..reviewed(&[])
        },
        "other.example.com",
    );
    refused(
        ReviewedPlan {
            shard: Some(Shard::parse("1/2").expect("shard")),
            ..reviewed(&[])
        },
        "shard 1/2",
    );
}

#[test]
fn a_project_that_cannot_be_told_is_refused() {
    let by_id = RunScope {
        project_path: None,
        ..project()
    };
    let by_path = RunScope {
        project_id: None,
        ..project()
    };
    assert!(by_id.mismatch(&by_path).is_some());
    assert!(by_path.mismatch(&by_id).is_some());
}

#[test]
fn deletions_in_repositories_not_listed_are_counted() {
    let gate = reviewed(&[("mr-1", "one"), ("mr-2", "two")]).into_gate();
    assert_eq!(gate.outside([REPO]), []);
    assert_eq!(gate.outside(["group/project"]), [(REPO.to_string(), 2)]);
}
