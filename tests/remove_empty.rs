//! `remove_empty_repositories: true` against the emulator: a repository the
//! run emptied, or one already empty for more than a day, is removed
//! (`DELETE /projects/:id/registry/repositories/:rid`); one GitLab is
//! already deleting, a young empty one, or one with a tag left stays; a dry
//! run removes nothing and says what it would remove.

mod common;

use chrono::{Duration, Utc};
use common::*;
use gitlab_emulator::{Server, Tamper, TamperBody};

const POLICY: &str = r#"
remove_empty_repositories: true
rules:
  - name: review images
    delete: "mr-.*"
"#;

fn seeded() -> Emulator {
    let emulator = Emulator::start(Config::default());
    let now = Utc::now();
    // Emptied by the run.
    emulator.add_tags("review", [tag("mr-1"), tag("mr-2")]);
    // Something left: stays.
    emulator.add_tags("api", [tag("mr-1"), tag("main")]);
    // Already empty: old goes, young stays, one being deleted stays.
    emulator.set_repository_state("old-empty", None, now - Duration::hours(48));
    emulator.set_repository_state("new-empty", None, now - Duration::hours(2));
    emulator.set_repository_state(
        "scheduled",
        Some("delete_scheduled"),
        now - Duration::hours(48),
    );
    emulator
}

/// `DELETE …/registry/repositories/:rid` (not its tags).
fn repository_deletes(emulator: &Emulator) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|r| {
            r.method == "DELETE"
                && r.path.contains("/registry/repositories/")
                && !r.path.contains("/tags")
        })
        .count()
}

fn removal(report: &serde_json::Value, path: &str) -> serde_json::Value {
    repository_entry(report, path)
        .get("removal")
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn removes_what_the_run_emptied_and_old_empty_repositories_only() {
    let emulator = seeded();
    let (output, report) = run_policy(&emulator.ci_env(), POLICY, &["run"]);
    assert!(!emulator.has_repository("review"), "{}", output.all());
    assert!(!emulator.has_repository("old-empty"));
    assert!(emulator.has_repository("api"));
    assert!(emulator.has_repository("new-empty"));
    assert!(emulator.has_repository("scheduled"));
    assert_eq!(repository_deletes(&emulator), 2);
    for emptied in ["group/project/review", "group/project/old-empty"] {
        assert_eq!(removal(&report, emptied)["outcome"], "removed", "{emptied}");
    }
    assert_eq!(
        removal(&report, "group/project/api"),
        serde_json::Value::Null
    );
    assert_eq!(
        removal(&report, "group/project/new-empty")["outcome"],
        "skipped"
    );
    let scheduled = removal(&report, "group/project/scheduled");
    assert_eq!(scheduled["outcome"], "skipped");
    assert!(scheduled["reason"]
        .as_str()
        .is_some_and(|r| r.contains("delete_scheduled")));
    assert_eq!(report["totals"]["repositories_removed"], 2);
    assert!(
        output.stdout.contains(
            "group/project/review: 2 tags, 2 deleted, 0 kept, 0 protected (repository removed)"
        ),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("2 empty repositories removed"),
        "{}",
        output.stdout
    );
}

#[test]
fn a_dry_run_removes_nothing_and_says_what_it_would_remove() {
    let emulator = seeded();
    let (output, report) = run_policy(&emulator.ci_env(), POLICY, &["run", "--dry-run"]);
    assert_eq!(emulator.writes(), 0);
    for emptied in ["group/project/review", "group/project/old-empty"] {
        assert_eq!(
            removal(&report, emptied)["outcome"],
            "would remove",
            "{emptied}"
        );
    }
    assert!(
        output
            .stdout
            .contains("2 empty repositories would be removed"),
        "{}",
        output.stdout
    );
}

#[test]
fn without_the_key_no_repository_is_removed() {
    let emulator = seeded();
    let policy = POLICY.replace("remove_empty_repositories: true\n", "");
    let output = run_with_policy(&emulator.ci_env(), &policy, &["run"]);
    assert_eq!(output.code, 0, "{}", output.all());
    assert_eq!(repository_deletes(&emulator), 0);
    assert!(emulator.has_repository("review"));
    assert!(emulator.has_repository("old-empty"));
}

/// A push between the listing and the removal: the re-check just before the
/// `DELETE` (one page of one tag through REST) sees the new tag, and the
/// repository stays — whatever the listing said.
#[test]
fn a_repository_pushed_to_since_its_listing_is_not_removed() {
    let config = Config {
        tamper: vec![Tamper::on(Some("GET"), "/tags")
            .on_server(Server::Gitlab)
            .query("per_page=1")
            .body(TamperBody::Replace(
                br#"[{"name": "pushed-later"}]"#.to_vec(),
            ))],
        ..Config::default()
    };
    let emulator = Emulator::start(config);
    let now = Utc::now();
    emulator.add_tags("review", [tag("mr-1"), tag("mr-2")]);
    emulator.set_repository_state("old-empty", None, now - Duration::hours(48));
    let (output, report) = run_policy(&emulator.ci_env(), POLICY, &["run"]);
    assert_eq!(repository_deletes(&emulator), 0, "{}", output.all());
    assert!(emulator.has_repository("review"));
    assert!(emulator.has_repository("old-empty"));
    for path in ["group/project/review", "group/project/old-empty"] {
        let removal = removal(&report, path);
        assert_eq!(removal["outcome"], "skipped", "{path}: {report}");
        assert!(
            removal["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("pushed")),
            "{path}: {removal}"
        );
    }
}
