//! The shipped examples, planned through the library, must give exactly the
//! checked-in report `tests/golden/examples-plan.json` — the same bytes
//! `registry-cleanup plan --inventory examples/inventory.json --policy
//! examples/policy.yml --now 2026-11-01T00:00:00Z --report FILE` writes.
//!
//! After an intended change: `UPDATE_GOLDEN=1 cargo test --test planner_golden`,
//! then review the diff of the golden file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use registry_cleanup::domain::model::Tag;
use registry_cleanup::domain::names::TagName;
use registry_cleanup::domain::planner::{plan_repository, protect_reason};
use registry_cleanup::domain::policy::Policy;
use registry_cleanup::domain::project::ProjectFacts;
use registry_cleanup::output::inventory::{Inventory, InventoryRepository};
use registry_cleanup::output::report::{Report, RepositoryReport};

const NOW: &str = "2026-11-01T00:00:00Z";

fn path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn facts(inventory: &Inventory, repository: &InventoryRepository) -> Option<ProjectFacts> {
    let key = repository.project_id?.to_string();
    let facts = ProjectFacts {
        refs: inventory.refs.get(&key).cloned(),
        in_use: inventory.in_use.get(&key).cloned(),
    };
    (facts.refs.is_some() || facts.in_use.is_some()).then_some(facts)
}

fn examples_report() -> (Policy, Report) {
    let policy = Policy::load(&path("examples/policy.yml")).expect("example policy");
    let inventory = Inventory::load(&path("examples/inventory.json")).expect("example inventory");
    let now: DateTime<Utc> = NOW.parse().expect("now");
    let mut report = Report::new("client", true);
    // As `plan` records it when run from the checkout, as the README does.
    report.planned_with(now, Path::new("examples/policy.yml"));
    for repository in &inventory.repositories {
        let plan = plan_repository(
            &policy,
            &repository.path,
            &repository.tags,
            // The refs and commits in use of the repository's project, keyed by its id.
            facts(&inventory, repository).as_ref(),
            now,
        );
        report.push(RepositoryReport::from_plan(plan.into_outline(), None));
    }
    (policy, report)
}

/// The report with its `tool_version` replaced by `VERSION`, so that a
/// release does not change the golden file.
pub fn without_version(report: String) -> String {
    report.replacen(
        &format!("\"tool_version\": \"{}\"", env!("CARGO_PKG_VERSION")),
        "\"tool_version\": \"VERSION\"",
        1,
    )
}

/// `UPDATE_GOLDEN=1` rewrites the golden file instead of comparing with it —
/// never under CI, where a rewritten file would make the test pass whatever
/// the plan says.
fn updating_golden() -> bool {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|value| value == "1");
    let ci = std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false");
    assert!(
        !(update && ci),
        "UPDATE_GOLDEN=1 is refused under CI: the golden file is what the plan is checked against"
    );
    update
}

/// Panics with the first line where `actual` and the golden file differ.
fn assert_golden(actual: &str, what: &str) {
    let golden = path("tests/golden/examples-plan.json");
    let expected = std::fs::read_to_string(&golden)
        .unwrap_or_else(|err| panic!("{}: {err} (UPDATE_GOLDEN=1 creates it)", golden.display()));
    if actual != expected {
        let first_difference = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .map_or_else(
                || "at the end".to_string(),
                |line| format!("at line {}", line + 1),
            );
        panic!(
            "{what} differs from {} {first_difference}; if the change is intended, \
             run `UPDATE_GOLDEN=1 cargo test --test planner_golden` and review the diff",
            golden.display()
        );
    }
}

#[test]
fn examples_plan_matches_the_golden_report() {
    let (_, report) = examples_report();
    let actual = without_version(serde_json::to_string_pretty(&report).expect("serialise") + "\n");
    if updating_golden() {
        let golden = path("tests/golden/examples-plan.json");
        std::fs::create_dir_all(golden.parent().expect("parent")).expect("create tests/golden");
        std::fs::write(&golden, &actual).expect("write the golden file");
        return;
    }
    assert_golden(&actual, "the plan of the examples");
}

/// The file `registry-cleanup plan --report` writes, byte for byte: the real
/// binary, run from the checkout as the README shows it.
#[test]
fn the_report_file_is_the_golden_bytes() {
    if updating_golden() {
        return; // the other test rewrites the file
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let written = dir.path().join("report.json");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_registry-cleanup"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .args(["plan", "--inventory", "examples/inventory.json"])
        .args(["--policy", "examples/policy.yml", "--now", NOW, "--report"])
        .arg(&written)
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{output:?}");
    let written = std::fs::read_to_string(&written).expect("the report is written");
    assert_golden(&without_version(written), "the report `plan` wrote");
}

/// The examples are meant to show every rule at work; keep them that way.
#[test]
fn the_examples_exercise_every_rule() {
    let (policy, report) = examples_report();
    let totals = &report.totals;
    assert_eq!(totals.repositories, 4);
    assert!(
        totals.deleted * 4 > totals.tags && totals.deleted * 2 < totals.tags,
        "deletes {} of {} tags",
        totals.deleted,
        totals.tags
    );
    assert!(totals.protected > 0 && totals.kept > 0);
    let rules_that_delete: BTreeSet<&str> = report
        .repositories
        .iter()
        .flat_map(|repository| &repository.deleted)
        .filter_map(|deleted| deleted.rule.as_deref())
        .collect();
    let all_rules: BTreeSet<&str> = policy.rules.iter().map(|rule| rule.name.as_str()).collect();
    assert_eq!(rules_that_delete, all_rules);
    for repository in &report.repositories {
        let deleted: BTreeSet<&str> = repository.deleted.iter().map(|d| d.tag.as_str()).collect();
        assert!(!deleted.contains("latest"), "{}", repository.path);
        assert!(!deleted.contains("main"), "{}", repository.path);
        assert!(
            !deleted.iter().any(|tag| {
                let tag = Tag::named(TagName::parse(tag).expect("tag name"));
                protect_reason(&policy, &tag).is_some()
            }),
            "{}",
            repository.path
        );
    }
}
