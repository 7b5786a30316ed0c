//! Review, then apply: `run --plan REPORT.json` deletes exactly what a dry
//! run's report lists, re-checking each tag against the live listing — the
//! real binary against the emulator, with counted requests. And the dry
//! run's early word on `--max-deletions`.

mod common;

use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use common::*;
use gitlab_emulator::referrer_tag;

const API: &str = "group/project/api";

/// Deletes every review tag.
const POLICY: &str = r#"
rules:
  - name: review images
    delete: "mr-.*"
"#;

/// main (kept), mr-1, mr-2, mr-3 and a signature of mr-3; returns mr-3's digest.
fn seed(emulator: &Emulator) -> String {
    let repository = emulator.repository("api");
    let built = Some(Utc::now() - Duration::days(3));
    repository.push_image(Some("main"), built);
    repository.push_image(Some("mr-1"), built);
    repository.push_image(Some("mr-2"), built);
    let signed = repository.push_image(Some("mr-3"), built);
    repository.push_signature(&signed, "sig");
    signed
}

/// A directory with the policy file and room for reports.
struct Workspace {
    dir: tempfile::TempDir,
    policy: String,
}

impl Workspace {
    fn new(policy: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = write_file(&dir, "policy.yml", policy);
        Workspace { dir, policy }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `registry-cleanup run --policy POLICY ARGS --report NAME`.
    fn run(&self, env: &[(String, String)], args: &[&str], report: &str, code: i32) -> Output {
        let report = self.path(report);
        let mut all = vec!["run", "--policy", &self.policy];
        all.extend_from_slice(args);
        all.extend(["--report", report.to_str().expect("path")]);
        let out = run(env, &all);
        assert_eq!(out.code, code, "{}", out.all());
        out
    }

    /// The dry run whose report is the plan (`plan.json`).
    fn plan(&self, emulator: &Emulator) -> String {
        self.run(&emulator.ci_env(), &["--dry-run"], "plan.json", 0);
        self.path("plan.json").display().to_string()
    }
}

fn deleted(report: &serde_json::Value) -> Vec<String> {
    let entry = repository_entry(report, API);
    let mut names: Vec<String> = entry["deleted"]
        .as_array()
        .expect("deleted")
        .iter()
        .map(|d| d["tag"].as_str().expect("tag").to_string())
        .collect();
    names.sort();
    names
}

fn kind_of(entries: &serde_json::Value, tag: &str) -> String {
    entries
        .as_array()
        .expect("entries")
        .iter()
        .find(|entry| entry["tag"] == tag)
        .unwrap_or_else(|| panic!("{tag} not in {entries}"))["kind"]
        .as_str()
        .expect("kind")
        .to_string()
}

/// The plan's deletions go, exactly: between the review and the apply, mr-2
/// moved to another image (skipped: "changed since the plan") and mr-4 was
/// pushed (the policy would delete it, the plan does not list it: kept).
#[test]
fn a_plan_deletes_exactly_its_deletions_rechecked() {
    let emulator = Emulator::start(Config::default());
    let signed = seed(&emulator);
    let sig = referrer_tag(&signed, Some("sig"));
    let work = Workspace::new(POLICY);
    let plan = work.plan(&emulator);
    let reviewed = report_json(Path::new(&plan));
    assert_eq!(deleted(&reviewed), ["mr-1", "mr-2", "mr-3", sig.as_str()]);
    assert!(reviewed["policy_digest"].is_string(), "{reviewed}");
    assert_eq!(reviewed["scope"]["kind"], "project", "{reviewed}");

    let repository = emulator.repository("api");
    let other = repository.push_image(None, Some(Utc::now() - Duration::days(1)));
    repository.tag("mr-2", &other);
    repository.push_image(Some("mr-4"), Some(Utc::now() - Duration::days(3)));
    let before = emulator.tags(API);

    // Reviewed again with --dry-run: what the apply would do, nothing sent.
    emulator.reset_requests();
    let out = work.run(
        &emulator.ci_env(),
        &["--plan", &plan, "--dry-run"],
        "preview.json",
        0,
    );
    assert_eq!(emulator.writes(), 0, "{}", out.all());
    let preview = report_json(&work.path("preview.json"));
    assert_eq!(deleted(&preview), ["mr-1", "mr-3", sig.as_str()]);

    emulator.reset_requests();
    let out = work.run(&emulator.ci_env(), &["--plan", &plan], "applied.json", 0);
    assert_eq!(
        names(&emulator, API),
        ["main", "mr-2", "mr-4"],
        "{}",
        out.all()
    );
    assert_eq!(emulator.count("DELETE", "/manifests/"), 3, "{}", out.all());
    assert_eq!(emulator.tags(API)["mr-2"], before["mr-2"]);

    let applied = report_json(&work.path("applied.json"));
    assert_eq!(deleted(&applied), ["mr-1", "mr-3", sig.as_str()]);
    let entry = repository_entry(&applied, API);
    assert_eq!(
        kind_of(&entry["plan_skipped"], "mr-2"),
        "changed_since_plan"
    );
    let skipped = entry["plan_skipped"].to_string();
    assert!(skipped.contains("changed since the plan"), "{skipped}");
    assert_eq!(entry["plan_skipped"].as_array().map(Vec::len), Some(1));
    assert_eq!(kind_of(&entry["kept_tags"], "mr-4"), "not_in_plan");
    assert_eq!(applied["totals"]["plan_skipped"], 1);
    let head = &applied["applied_plan"];
    assert_eq!(head["file"], plan.as_str());
    assert_eq!(head["deletions"], 4);
    let bytes = std::fs::read(&plan).expect("plan");
    let sha256 = registry_cleanup::domain::names::Digest::of(&bytes);
    assert_eq!(head["sha256"], sha256.hex(), "{head}");
    out.assert_stdout_has("applied the plan ");
    out.assert_stdout_has("4 deletions listed, 1 not deleted");
    out.assert_stderr_has("changed since the plan");
}

/// Without `/gitlab/v1` and with a policy of names only, the listing gives
/// no digest: the dry run that writes a report reads each planned
/// deletion's digest all the same, so that its plan can be applied.
#[test]
fn a_dry_run_without_gitlab_v1_records_digests_its_plan_can_be_applied() {
    let emulator = Emulator::start(Config {
        gitlab_v1: false,
        ..Config::default()
    });
    // No signature: nothing else makes the listing read digests.
    let repository = emulator.repository("api");
    for tag in ["main", "mr-1", "mr-2"] {
        repository.push_image(Some(tag), Some(Utc::now() - Duration::days(3)));
    }
    let work = Workspace::new(POLICY);
    let plan = work.plan(&emulator);
    let reviewed = report_json(Path::new(&plan));
    let entry = repository_entry(&reviewed, API);
    for deletion in entry["deleted"].as_array().expect("deleted") {
        assert!(deletion["digest"].is_string(), "{deletion}");
    }
    emulator.reset_requests();
    work.run(&emulator.ci_env(), &["--plan", &plan], "applied.json", 0);
    assert_eq!(names(&emulator, API), ["main"]);
}

/// A reviewed deletion whose tag a protect pattern covers by the time of
/// the apply stays: the live plan keeps it. (A changed policy file refuses
/// the plan, so the protection comes from GitLab's tag rules here.)
#[test]
fn a_reviewed_tag_protected_since_stays() {
    let emulator = Emulator::start(Config::default());
    seed(&emulator);
    let work = Workspace::new(POLICY);
    let plan = work.plan(&emulator);
    emulator.set_config(|config| {
        config.tag_rules = gitlab_emulator::TagRules {
            delete_deny: vec!["^mr-1$".to_string()],
            immutable: Vec::new(),
        };
    });
    emulator.reset_requests();
    work.run(&emulator.ci_env(), &["--plan", &plan], "applied.json", 0);
    assert!(names(&emulator, API).contains(&"mr-1".to_string()));
    let applied = report_json(&work.path("applied.json"));
    let entry = repository_entry(&applied, API);
    assert_eq!(kind_of(&entry["plan_skipped"], "mr-1"), "gitlab_tag_rule");
    assert_eq!(emulator.count("DELETE", "/manifests/"), 3);
}

/// Refused before any request, exit 2: a live run's report, one too old,
/// one made for another policy or another project, an interrupted dry run's.
#[test]
fn plans_that_do_not_fit_are_refused_before_any_request() {
    let emulator = Emulator::start(Config::default());
    seed(&emulator);
    let work = Workspace::new(POLICY);
    let plan = work.plan(&emulator);
    let reviewed = report_json(Path::new(&plan));
    let variant = |name: &str, change: &dyn Fn(&mut serde_json::Value)| {
        let mut json = reviewed.clone();
        change(&mut json);
        let path = work.path(name);
        std::fs::write(&path, json.to_string()).expect("write");
        path.display().to_string()
    };
    let too_old = variant("old.json", &|json| {
        json["now"] = (Utc::now() - Duration::days(8)).to_rfc3339().into();
    });
    let interrupted = variant("interrupted.json", &|json| {
        json["interrupted"] = true.into();
    });
    let older_tool = variant("older.json", &|json| {
        json.as_object_mut().expect("object").remove("scope");
    });
    let other_policy = Workspace::new("rules: [{name: review images, delete: 'mr-1'}]");

    let refused = |env: Vec<(String, String)>, work: &Workspace, plan: &str, needle: &str| {
        emulator.reset_requests();
        let out = work.run(&env, &["--plan", plan], "refused.json", 2);
        out.assert_stderr_has("refusing to apply this plan");
        out.assert_stderr_has(needle);
        assert!(
            emulator.requests().is_empty(),
            "{needle}: {:?}",
            emulator.requests()
        );
        assert!(!work.path("refused.json").exists());
    };
    refused(
        emulator.ci_env(),
        &work,
        &too_old,
        "more than --plan-max-age 7d",
    );
    refused(
        with(emulator.ci_env(), &[("CLEANUP_PLAN_MAX_AGE", "1h")]),
        &work,
        &too_old,
        "more than --plan-max-age 1h",
    );
    refused(emulator.ci_env(), &work, &interrupted, "interrupted");
    refused(
        emulator.ci_env(),
        &work,
        &older_tool,
        "older registry-cleanup",
    );
    refused(
        emulator.ci_env(),
        &other_policy,
        &plan,
        "made with another policy",
    );
    refused(
        with(
            emulator.ci_env(),
            &[
                ("CI_PROJECT_ID", "999"),
                ("CI_PROJECT_PATH", "other/project"),
            ],
        ),
        &work,
        &plan,
        "made for project 1",
    );

    // A live run's report is a record of deletions, not a plan.
    work.run(&emulator.ci_env(), &[], "live.json", 0);
    let live = work.path("live.json").display().to_string();
    refused(emulator.ci_env(), &work, &live, "the report of a live run");
    assert_eq!(emulator.tags(API).len(), 1);
}

/// `CLEANUP_PLAN` stands for `--plan`; a malformed `--plan-max-age` is a
/// usage error naming the flag.
#[test]
fn the_plan_from_the_environment_and_a_bad_max_age() {
    let emulator = Emulator::start(Config::default());
    seed(&emulator);
    let work = Workspace::new(POLICY);
    let plan = work.plan(&emulator);
    emulator.reset_requests();
    let out = work.run(
        &emulator.ci_env(),
        &["--plan", &plan, "--plan-max-age", "7m"],
        "bad.json",
        2,
    );
    out.assert_stderr_has("--plan-max-age");
    assert!(emulator.requests().is_empty());
    let env = with(emulator.ci_env(), &[("CLEANUP_PLAN", plan.as_str())]);
    work.run(&env, &[], "applied.json", 0);
    let applied = report_json(&work.path("applied.json"));
    assert_eq!(applied["applied_plan"]["deletions"], 4);
    assert_eq!(names(&emulator, API), ["main"]);
}

/// A dry run says when the live run's guard would refuse it.
#[test]
fn a_dry_run_says_max_deletions_would_refuse_the_live_run() {
    let emulator = Emulator::start(Config::default());
    seed(&emulator);
    let work = Workspace::new(POLICY);
    let out = work.run(
        &emulator.ci_env(),
        &["--dry-run", "--max-deletions", "2"],
        "plan.json",
        0,
    );
    let needle =
        "the live run would be refused: the plan deletes 4 tags, more than --max-deletions 2";
    out.assert_stdout_has(&format!("warning: {needle}"));
    out.assert_stderr_has(needle);
    let report = report_json(&work.path("plan.json"));
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains(needle), "{warnings}");
    // Within the limit: not a word.
    let out = work.run(
        &emulator.ci_env(),
        &["--dry-run", "--max-deletions", "4"],
        "plan.json",
        0,
    );
    out.assert_stdout_lacks("would be refused");
    assert_eq!(emulator.writes(), 0);
}
