//! `registry-cleanup run` (client and server engines), `inventory` and `plan`
//! against the emulator: the real binary, counted requests.

mod common;

use chrono::{Duration, Utc};
use common::*;

const ROOT: &str = "group/project";
const API: &str = "group/project/api";

const POLICY: &str = r#"
protect:
  - "v\\d+\\.\\d+\\.\\d+"
rules:
  - name: review images
    delete: "mr-\\d+-.*"
    keep_n: 2
  - name: commits
    repositories: "group/project/api"
    delete: "[0-9a-f]{8}"
    older_than: 30d
"#;

/// A root repository and an api repository with review, commit and release tags.
fn seeded(config: Config) -> Emulator {
    let emulator = Emulator::start(config);
    emulator.add_repository("");
    emulator.add_repository("api");
    let now = Utc::now();
    for repository in [ROOT, API] {
        emulator.add_tags(
            repository,
            (1..=6).map(|i| tag_at(&format!("mr-{i}-x"), now - Duration::days(i))),
        );
        emulator.add_tags(
            repository,
            [
                tag_at("v1.2.3", now - Duration::days(400)),
                tag("latest"),
                tag("main"),
            ],
        );
        emulator.add_tags(
            repository,
            [
                tag_at("deadbeef", now - Duration::days(60)),
                tag_at("cafebabe", now - Duration::days(3)),
            ],
        );
    }
    emulator
}

fn expected_after(repository: &str) -> Vec<&'static str> {
    let mut kept = vec!["cafebabe", "latest", "main", "mr-1-x", "mr-2-x", "v1.2.3"];
    if repository == ROOT {
        kept.push("deadbeef");
    }
    kept.sort();
    kept
}

fn deleted_names(report: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = report["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .flat_map(|r| {
            let path = r["path"].as_str().expect("path").to_string();
            r["deleted"]
                .as_array()
                .expect("deleted")
                .iter()
                .map(move |d| format!("{path}:{}", d["tag"].as_str().expect("tag")))
        })
        .collect();
    names.sort();
    names
}

#[test]
fn dry_run_writes_nothing_and_predicts_the_live_run_exactly() {
    let emulator = seeded(Config::default());
    let (out, dry) = run_policy(&emulator.ci_env(), POLICY, &["run", "--dry-run"]);
    assert_eq!(emulator.writes(), 0, "a dry run wrote");
    out.assert_stdout_has("group/project/api: 11 tags, 5 would delete, 4 kept, 2 protected");

    let (out, live) = run_policy(&emulator.ci_env(), POLICY, &["run"]);
    out.assert_stdout_has("group/project/api: 11 tags, 5 deleted, 4 kept, 2 protected");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(live["dry_run"], false);
    assert_eq!(deleted_names(&dry), deleted_names(&live));
    assert_eq!(live["totals"]["deleted"], 9);
    // The final state is exactly the plan.
    for repository in [ROOT, API] {
        assert_eq!(
            names(&emulator, repository),
            expected_after(repository),
            "{repository}"
        );
    }
    assert_eq!(emulator.count("DELETE", "/manifests/"), 9);

    // Converged: a second run deletes nothing and writes nothing.
    emulator.reset_requests();
    let out = run_with_policy(&emulator.ci_env(), POLICY, &["run"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn gitlab_v1_listing_saves_the_per_tag_requests() {
    let with_v1 = seeded(Config::default());
    let without_v1 = seeded(Config {
        gitlab_v1: false,
        ..Config::default()
    });
    for emulator in [&with_v1, &without_v1] {
        let out = run_with_policy(&emulator.ci_env(), POLICY, &["run", "--dry-run"]);
        assert_eq!(out.code, 0, "{}", out.all());
    }
    assert_eq!(with_v1.count("GET", "/gitlab/v1/repositories/"), 2);
    assert_eq!(
        with_v1.count("GET", "/registry/repositories/"),
        0,
        "no REST tag listing or details with /gitlab/v1"
    );
    // The 404 is remembered: at most one probe per repository listed at the same time (2).
    assert!(without_v1.count("GET", "/gitlab/v1/") <= 2);
    assert_eq!(
        without_v1.count("GET", "/registry/repositories/1/tags/"),
        11,
        "one details call per tag"
    );
    let total = |e: &Emulator| e.requests().len();
    assert!(
        total(&with_v1) * 3 < total(&without_v1),
        "{} vs {}",
        total(&with_v1),
        total(&without_v1)
    );
}

#[test]
fn no_details_when_no_rule_needs_dates() {
    let emulator = seeded(Config {
        gitlab_v1: false,
        ..Config::default()
    });
    let policy = "rules:\n  - delete: \"mr-.*\"\n";
    let out = run_with_policy(&emulator.ci_env(), policy, &["run"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        emulator.count("GET", "/tags/mr-"),
        0,
        "details fetched although no rule needs dates"
    );
    assert!(names(&emulator, ROOT).iter().all(|n| !n.starts_with("mr-")));
}

#[test]
fn keyset_405_falls_back_to_offset_pagination() {
    // 250 tags listed through REST: three pages of 100.
    let with_250_tags = |keyset: bool| {
        let emulator = Emulator::start(Config {
            keyset,
            gitlab_v1: false,
            ..Config::default()
        });
        emulator.add_repository("");
        emulator.add_tags(ROOT, (0..250).map(|i| tag(&format!("mr-{i:03}-x"))));
        emulator
    };
    let emulator = with_250_tags(false);
    let policy = "rules:\n  - delete: \"mr-.*\"\n    keep: \"mr-0.*\"\n";
    let out = run_with_policy(&emulator.ci_env(), policy, &["run"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(emulator.tags(ROOT).len(), 100);
    assert_eq!(
        count_query(&emulator, "GET", "/tags", "pagination=keyset"),
        1,
        "one keyset try"
    );
    assert_eq!(
        count_query(&emulator, "GET", "/tags", "page=3"),
        1,
        "three offset pages of 100"
    );

    let keyset = with_250_tags(true);
    let out = run_with_policy(&keyset.ci_env(), policy, &["run", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        count_query(&keyset, "GET", "/tags", "pagination=keyset"),
        3,
        "three keyset pages"
    );
    assert_eq!(
        count_query(&keyset, "GET", "/tags", "&page="),
        0,
        "no offset pages"
    );
}

#[test]
fn server_engine_sends_one_exact_bulk_call_per_repository() {
    let emulator = seeded(Config::default());
    let policy = "protect: [\"v\\\\d+\\\\.\\\\d+\\\\.\\\\d+\", \"stable|lts\"]\nrules:\n  - name: reviews\n    delete: \"mr-\\\\d+-.+|x+\"\n    keep: \"mr-1-.*\"\n    keep_n: 2\n    older_than: 2w\n";
    let server = ["run", "--engine", "server"];
    let out = run_with_policy(&emulator.ci_env(), policy, &server);
    assert_eq!(out.code, 0, "{}", out.all());
    let calls = emulator.bulk_calls();
    assert_eq!(calls.len(), 2, "{}", out.all());
    let call = &calls[0];
    assert_eq!(call.content_type, "application/x-www-form-urlencoded");
    assert_eq!(
        call.params,
        vec![
            (
                "name_regex_delete".to_string(),
                "(?:(?:mr-\\d+-.+|x+))".to_string()
            ),
            (
                "name_regex_keep".to_string(),
                "(?:(?:mr-1-.*)|(?:v\\d+\\.\\d+\\.\\d+)|(?:stable|lts)|(?:sha256-[0-9a-f]{64}(?:\\.[A-Za-z0-9_.-]+)?))".to_string()
            ),
            ("keep_n".to_string(), "2".to_string()),
            ("older_than".to_string(), "14d".to_string()),
        ]
    );
    assert!(
        call.raw_body.contains("%2B"),
        "a + must be percent-encoded: {}",
        call.raw_body
    );
    assert!(!call.raw_body.contains('+'), "{}", call.raw_body);

    // Within the hour GitLab refuses: a warning per repository, still exit 0.
    let out = run_with_policy(&emulator.ci_env(), policy, &server);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("at most once an hour");

    // A dry run shows the client plan and sends no bulk call.
    let before = emulator.bulk_calls().len();
    let out = run_with_policy(
        &emulator.ci_env(),
        policy,
        &["run", "--engine", "server", "--dry-run"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("would delete");
    assert_eq!(emulator.bulk_calls().len(), before);
}

#[test]
fn server_engine_refuses_two_rules_for_one_repository() {
    let emulator = seeded(Config::default());
    let out = run_with_policy(&emulator.ci_env(), POLICY, &["run", "--engine", "server"]);
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("group/project/api has 2 applicable rules");
    out.assert_stderr_has("policy.yml");
    assert!(emulator.bulk_calls().is_empty());
}

#[test]
fn max_deletions_refuses_the_whole_run() {
    let emulator = seeded(Config::default());
    let (out, report) = run_policy_exiting(
        &emulator.ci_env(),
        POLICY,
        &["run", "--max-deletions", "5"],
        1,
    );
    out.assert_stderr_has("more than the limit of 5");
    assert!(
        out.stdout.contains("would delete"),
        "the plan is still printed: {}",
        out.all()
    );
    assert_eq!(emulator.writes(), 0);
    assert_eq!(report["totals"]["deleted"], 9);

    let out = run_with_policy(
        &with(emulator.ci_env(), &[("CLEANUP_MAX_DELETIONS", "9")]),
        POLICY,
        &["run"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(emulator.count("DELETE", "/manifests/"), 9);
}

#[test]
fn protected_refusals_are_skipped_not_failed() {
    let emulator = Emulator::start(Config::default());
    emulator.add_repository("");
    emulator.add_tags(
        ROOT,
        [
            TagSpec {
                protected: true,
                ..tag("mr-1-a")
            },
            tag("mr-2-b"),
        ],
    );
    let policy = "rules:\n  - delete: \"mr-.*\"\n";
    let (_, report) = run_policy(&emulator.ci_env(), policy, &["run"]);
    assert_eq!(report["totals"]["skipped"], 1);
    assert_eq!(report["totals"]["failed"], 0);
    assert_eq!(report["repositories"][0]["skipped"][0]["tag"], "mr-1-a");
    assert_eq!(names(&emulator, ROOT), vec!["mr-1-a"]);
}

#[test]
fn inventory_snapshot_plans_like_the_live_run() {
    let emulator = seeded(Config::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, inventory, snapshot) = write_inventory(&emulator.ci_env(), &dir, &[]);
    assert_eq!(emulator.writes(), 0);
    assert_eq!(snapshot["repositories"].as_array().expect("repos").len(), 2);
    assert!(snapshot["repositories"][0]["tags"][0]["digest"]
        .as_str()
        .expect("digest")
        .starts_with("sha256:"));

    let (_, planned) = run_policy(&[], POLICY, &["plan", "--inventory", &inventory]);
    let (_, live) = run_policy(&emulator.ci_env(), POLICY, &["run"]);
    assert_eq!(deleted_names(&planned), deleted_names(&live));
}

/// `inventory` writes the project's refs (listed once), and `plan` decides
/// a git-aware rule from them, offline.
#[test]
fn inventory_writes_the_projects_refs() {
    let emulator = seeded(Config::default());
    emulator.add_branch("main");
    emulator.add_branch("Feature/X");
    emulator.add_git_tag("v1.0.0");
    emulator.add_merge_request(12, "feature/x", "opened", false);
    emulator.add_merge_request(40, "Fork/Fix", "opened", true);
    emulator.add_merge_request(41, "merged-branch", "merged", false);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, inventory, snapshot) = write_inventory(&emulator.ci_env(), &dir, &[]);
    assert_eq!(
        snapshot["refs"],
        serde_json::json!({"1": {
            "complete": true,
            "slugs": ["feature-x", "fork-fix", "main", "v1-0-0"],
            "open_mrs": [12, 40],
        }})
    );
    assert_eq!(emulator.count("GET", "/repository/branches"), 1);
    assert_eq!(emulator.count("GET", "/repository/tags"), 1);
    assert_eq!(emulator.count("GET", "/merge_requests"), 1);

    // `plan` reads the file back, and a git-aware rule is decided by its
    // refs: `main` is a live branch, `deadbeef` and `cafebabe` no ref at
    // all (`latest` is protected, the other tags do not match).
    let policy = "rules:\n  - name: gone refs\n    delete: '(?P<ref>[a-z]+)'\n    when_ref: gone\n";
    let (_, planned) = run_policy(&[], policy, &["plan", "--inventory", &inventory]);
    assert_eq!(
        deleted_names(&planned),
        [
            "group/project/api:cafebabe",
            "group/project/api:deadbeef",
            "group/project:cafebabe",
            "group/project:deadbeef",
        ]
    );
}

#[test]
fn inventory_with_a_job_token_gitlab_refuses_writes_incomplete_refs() {
    let emulator = seeded(Config {
        refs_refuse_job_token: true,
        ..Config::default()
    });
    emulator.add_branch("main");
    let dir = tempfile::tempdir().expect("tempdir");
    // A refusal does not stop the inventory (exit 0).
    let (out, _, snapshot) = write_inventory(&emulator.ci_env(), &dir, &[]);
    out.assert_stderr_has("GITLAB_TOKEN");
    let refs = &snapshot["refs"]["1"];
    assert_eq!(refs["complete"], false, "{snapshot}");
    assert_eq!(refs["slugs"], serde_json::json!([]));
    let reason = refs["incomplete_because"].as_str().expect("a reason");
    assert!(
        reason.contains("GITLAB_TOKEN") && reason.contains("read_api"),
        "{reason}"
    );
    assert!(
        reason.contains("/repository/branches") && reason.contains("403"),
        "{reason}"
    );
    assert_eq!(snapshot["repositories"].as_array().expect("repos").len(), 2);

    // With an access token the same GitLab lists them.
    let (_, _, snapshot) = write_inventory(&emulator.laptop_env(), &dir, &[]);
    assert_eq!(snapshot["refs"]["1"]["complete"], true);
}

#[test]
fn run_lists_no_refs_when_no_rule_needs_them() {
    let emulator = seeded(Config::default());
    emulator.add_branch("main");
    let out = run_with_policy(&emulator.ci_env(), POLICY, &["run", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(emulator.count("GET", "/repository/"), 0);
    assert_eq!(emulator.count("GET", "/merge_requests"), 0);
}

/// A bulk call whose answer was lost meets GitLab's once-an-hour refusal when
/// retried: that refusal is our own accepted call. After a 429 (which changed
/// nothing) the same refusal really is an earlier run's lock.
#[test]
fn server_engine_tells_its_own_lost_bulk_call_from_an_earlier_lock() {
    let bulk = "/projects/1/registry/repositories/1/tags";
    let emulator = seeded(Config {
        scripted_faults: vec![ScriptedFault::lost_answer("DELETE", bulk, Some(502))],
        ..Config::default()
    });
    let policy = "rules:\n  - name: reviews\n    delete: \"mr-.*\"\n    keep_n: 2\n";
    let args = ["run", "--engine", "server"];
    let out = run_with_policy(&emulator.ci_env(), policy, &args);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(emulator.count("DELETE", bulk), 2, "sent, lost, resent");
    let mut statuses: Vec<(u64, u16)> = emulator
        .bulk_calls()
        .iter()
        .map(|call| (call.repository_id, call.status))
        .collect();
    // Repositories run concurrently; each one's calls stay in order.
    statuses.sort_by_key(|&(repository_id, _)| repository_id);
    assert_eq!(
        statuses,
        vec![(1, 202), (1, 400), (2, 202)],
        "the lost call ran; its retry met the lock"
    );
    assert!(
        !out.stdout.contains("did not run the bulk delete"),
        "our own call was taken for an earlier one: {}",
        out.all()
    );
    assert_eq!(
        out.stdout.matches("accepted").count(),
        2,
        "both repositories accepted: {}",
        out.all()
    );

    emulator.set_config(|config| {
        config.scripted_faults = vec![ScriptedFault::refused("DELETE", bulk, 429)];
    });
    let out = run_with_policy(&emulator.ci_env(), policy, &args);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        out.stdout.matches("did not run the bulk delete").count(),
        2,
        "both repositories are under the earlier run's lock: {}",
        out.all()
    );
}

/// GitLab's bulk delete knows nothing of signatures: every call keeps
/// referrer tags out of it (so no kept image loses its signature and none
/// counts in keep_n), and a rule that would reach them says so.
#[test]
fn server_engine_keeps_signature_tags_out_of_the_bulk_delete() {
    let emulator = Emulator::start(Config::default());
    emulator.add_repository("");
    let now = Utc::now();
    let signatures: Vec<String> = (1..=3)
        .map(|i| format!("sha256-{}.sig", format!("{i:02x}").repeat(32)))
        .collect();
    emulator.add_tags(
        ROOT,
        (1..=3)
            .map(|i| tag_at(&format!("build-{i}"), now - Duration::days(40 + i)))
            .chain(signatures.iter().map(|name| tag(name))),
    );
    let out = run_with_policy(
        &emulator.ci_env(),
        "rules: [{name: all, delete: '.*', keep_n: 1}]\n",
        &["run", "--engine", "server"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("signature/attestation tags (sha256-…)");
    let left: Vec<String> = emulator.tags(ROOT).into_keys().collect();
    let mut expected: Vec<String> = signatures.clone();
    expected.push("build-1".into());
    expected.sort();
    assert_eq!(left, expected, "{}", out.all());
}

const AGES_POLICY: &str = r#"
rules:
  - name: old
    delete: ".*"
    older_than: 30d
"#;

fn stamp(year: i32) -> chrono::DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 1)
        .single()
        .expect("date")
}

/// Without `/gitlab/v1` only the build time is known, and reproducible
/// builders stamp a constant one (ko 1970, buildpacks 1980): such images,
/// however recently pushed, are undated — never deleted by `older_than`.
#[test]
fn reproducible_builds_are_not_old_on_a_registry_without_gitlab_v1() {
    let emulator = Emulator::start(Config {
        gitlab_v1: false,
        ..Config::default()
    });
    let repository = emulator.repository("api");
    let now = Utc::now();
    repository.push_image(Some("ko"), Some(stamp(1970)));
    repository.push_image(Some("pack"), Some(stamp(1980)));
    let amd64 = repository.push_platform_image(None, "linux", "amd64", Some(stamp(1970)));
    let arm64 = repository.push_platform_image(None, "linux", "arm64", Some(stamp(1970)));
    repository.push_index("multi", &[&amd64, &arm64]);
    repository.push_image(Some("old"), Some(now - Duration::days(60)));
    repository.push_image(Some("new"), Some(now - Duration::days(1)));

    let (_, report) = run_policy(&emulator.ci_env(), AGES_POLICY, &["run"]);
    assert_eq!(names(&emulator, API), ["ko", "multi", "new", "pack"]);
    let entry = &report["repositories"][0];
    assert_eq!(entry["age_source"], "built", "{report:#}");
    assert_eq!(entry["undated_build_stamps"], 3, "{report:#}");
    assert_eq!(report["totals"]["undated_build_stamps"], 3);
    assert_eq!(deleted_names(&report), [format!("{API}:old")]);
}

/// With `/gitlab/v1` the push time decides: an old build pushed yesterday is
/// kept, a recent build pushed 60 days ago is deleted, a reproducible build
/// is dated by its push.
#[test]
fn the_push_time_decides_on_a_registry_with_gitlab_v1() {
    let emulator = Emulator::start(Config::default());
    let repository = emulator.repository("api");
    let now = Utc::now();
    repository.push_image(Some("rebuilt"), Some(now - Duration::days(400)));
    repository.set_pushed_at("rebuilt", now - Duration::days(1));
    repository.push_image(Some("stale"), Some(now - Duration::days(2)));
    repository.set_pushed_at("stale", now - Duration::days(60));
    repository.push_image(Some("ko-new"), Some(stamp(1970)));
    repository.push_image(Some("ko-old"), Some(stamp(1970)));
    repository.set_pushed_at("ko-old", now - Duration::days(90));
    // Pushed long ago, re-pushed (updated) last week: the last push counts.
    repository.push_image(Some("moved"), Some(now - Duration::days(200)));
    repository.set_pushed_at("moved", now - Duration::days(200));
    repository.set_repushed_at("moved", now - Duration::days(7));

    let (_, report) = run_policy(&emulator.ci_env(), AGES_POLICY, &["run"]);
    assert_eq!(names(&emulator, API), ["ko-new", "moved", "rebuilt"]);
    let entry = &report["repositories"][0];
    assert_eq!(entry["age_source"], "pushed", "{report:#}");
    assert_eq!(entry["undated_build_stamps"], 0);
    assert_eq!(
        deleted_names(&report),
        [format!("{API}:ko-old"), format!("{API}:stale")]
    );
    let stale = entry["deleted"]
        .as_array()
        .expect("deleted")
        .iter()
        .find(|d| d["tag"] == "stale")
        .expect("stale deleted");
    assert!(stale["pushed_at"].is_string(), "{stale:#}");
}

/// `inventory` records each tag's push time (`pushed_at`, from `/gitlab/v1`)
/// and, without `/gitlab/v1`, its build time (`created_at`, REST); an offline
/// `plan` of it ages by the same dates as the live run: an old build pushed
/// yesterday stays, a recent build pushed 60 days ago goes.
#[test]
fn inventory_records_push_and_build_times_and_plans_by_them() {
    let whole_seconds = |at: chrono::DateTime<Utc>| {
        chrono::DateTime::<Utc>::from_timestamp(at.timestamp(), 0).expect("time")
    };
    let now = whole_seconds(Utc::now());
    for gitlab_v1 in [true, false] {
        let emulator = Emulator::start(Config {
            gitlab_v1,
            ..Config::default()
        });
        let repository = emulator.repository("api");
        repository.push_image(Some("rebuilt"), Some(now - Duration::days(400)));
        repository.set_pushed_at("rebuilt", now - Duration::days(1));
        repository.push_image(Some("stale"), Some(now - Duration::days(2)));
        repository.set_pushed_at("stale", now - Duration::days(60));

        let dir = tempfile::tempdir().expect("tempdir");
        let (_, inventory, snapshot) = write_inventory(&emulator.ci_env(), &dir, &[]);
        let tags = snapshot["repositories"][0]["tags"]
            .as_array()
            .expect("tags")
            .clone();
        let field = |name: &str, key: &str| -> Option<chrono::DateTime<Utc>> {
            let tag = tags
                .iter()
                .find(|t| t["name"] == name)
                .unwrap_or_else(|| panic!("{name} in {snapshot}"));
            tag[key].as_str().map(|at| at.parse().expect("RFC 3339"))
        };
        if gitlab_v1 {
            assert_eq!(field("rebuilt", "pushed_at"), Some(now - Duration::days(1)));
            assert_eq!(field("stale", "pushed_at"), Some(now - Duration::days(60)));
        } else {
            assert_eq!(
                field("rebuilt", "created_at"),
                Some(now - Duration::days(400))
            );
            assert_eq!(field("stale", "created_at"), Some(now - Duration::days(2)));
            assert_eq!(field("stale", "pushed_at"), None, "REST knows no push time");
        }

        let (_, planned) = run_policy(&[], AGES_POLICY, &["plan", "--inventory", &inventory]);
        let expected = if gitlab_v1 { "stale" } else { "rebuilt" };
        assert_eq!(deleted_names(&planned), [format!("{API}:{expected}")]);
        assert_eq!(
            planned["repositories"][0]["age_source"],
            if gitlab_v1 { "pushed" } else { "built" }
        );
        let (_, live) = run_policy(&emulator.ci_env(), AGES_POLICY, &["run", "--dry-run"]);
        assert_eq!(deleted_names(&live), deleted_names(&planned));
    }
}

/// A root repository holding `tags`, in a project whose GitLab tag rules
/// protect `v*` tags against deletion and make those matching `immutable`
/// immutable.
fn with_tag_rules(config: Config, immutable: &[&str], tags: Vec<TagSpec>) -> Emulator {
    let emulator = Emulator::start(Config {
        tag_rules: gitlab_emulator::TagRules {
            delete_deny: vec!["^v".into()],
            immutable: immutable
                .iter()
                .map(|pattern| pattern.to_string())
                .collect(),
        },
        ..config
    });
    emulator.add_repository("");
    emulator.add_tags(ROOT, tags);
    emulator
}

/// Issue 11's reproduction: `v*` tags protected against deletion by a GitLab
/// tag rule, `rel-*` immutable, `mr-*` unprotected, and a policy that
/// deletes everything. Returns the emulator, the policy's directory and path.
fn tag_rule_reproduction() -> (Emulator, tempfile::TempDir, String) {
    let now = Utc::now();
    let mut tags = Vec::new();
    for i in 1..=4 {
        tags.push(tag_at(&format!("v{i}"), now - Duration::days(i)));
        tags.push(tag_at(&format!("rel-{i}"), now - Duration::days(i)));
        tags.push(tag_at(&format!("mr-{i}"), now - Duration::days(i)));
    }
    let emulator = with_tag_rules(Config::default(), &["^rel-"], tags);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(
        &dir,
        "p.yml",
        "protect_latest: false\nrules:\n  - delete: \".*\"\n",
    );
    (emulator, dir, policy)
}

/// GitLab's tag rules (§7) reach the plan through the registry JWT's
/// `access[].meta`: `v*` tags protected against deletion, `rel-*` immutable,
/// and a policy that deletes everything. The dry run and the live run agree,
/// no refused delete is sent, and those tags are reported as protected.
#[test]
fn gitlab_tag_rules_protect_tags_in_the_plan() {
    let (emulator, dir, policy) = tag_rule_reproduction();
    let dry_report = dir.path().join("dry.json");
    let out = run(
        &emulator.ci_env(),
        &[
            "run",
            "--policy",
            &policy,
            "--dry-run",
            "--report",
            dry_report.to_str().expect("path"),
        ],
    );
    eprintln!(
        "dry run: exit {}, jwt {}, requests {}",
        out.code,
        emulator.count("GET", "/jwt/auth"),
        emulator.requests().len()
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(emulator.writes(), 0, "a dry run wrote");
    // Issue 11's "after" figure: GET /v2/, one pull,delete token (the tag
    // rules), the REST repository list, one /gitlab/v1 page; since issue 20
    // also GET /v2/ with that token (what the registry can do).
    assert_eq!(emulator.requests().len(), 5, "{:?}", emulator.requests());
    emulator.reset_requests();

    let live_report = dir.path().join("live.json");
    let out = run(
        &emulator.ci_env(),
        &[
            "run",
            "--policy",
            &policy,
            "--report",
            live_report.to_str().expect("path"),
        ],
    );
    let refused = emulator
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.status == 401)
        .count();
    eprintln!(
        "live run: exit {}, DELETE {}, refused {refused}, jwt {}, requests {}",
        out.code,
        emulator.count("DELETE", "/manifests/"),
        emulator.count("GET", "/jwt/auth"),
        emulator.requests().len()
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(refused, 0, "refused deletes were sent");
    assert_eq!(emulator.count("DELETE", "/manifests/"), 4);
    assert_eq!(emulator.count("GET", "/jwt/auth"), 1);
    // The same 5 requests as the dry run, and one delete per mr- tag.
    assert_eq!(emulator.requests().len(), 9, "{:?}", emulator.requests());
    assert!(
        out.stdout
            .contains("group/project: 12 tags, 4 deleted, 0 kept, 8 protected"),
        "{}",
        out.all()
    );
    let dry = report_json(&dry_report);
    let live = report_json(&live_report);
    assert_eq!(deleted_names(&dry), deleted_names(&live));
    assert_eq!(dry["totals"]["protected"], 8);
    assert_eq!(live["totals"]["protected"], 8);
    assert_eq!(live["totals"]["failed"], 0);
    let reasons = &live["repositories"][0]["protected_by_gitlab"];
    assert_eq!(reasons.as_array().map(Vec::len), Some(8), "{reasons}");
    assert!(reasons[0]["reason"]
        .as_str()
        .expect("reason")
        .contains("immutable"));
    // Each protected tag stays with the GitLab rule named as its reason.
    let kept_tags = live["repositories"][0]["kept_tags"]
        .as_array()
        .expect("kept_tags");
    assert_eq!(kept_tags.len(), 8, "{kept_tags:?}");
    for entry in kept_tags {
        assert_eq!(entry["kind"], "gitlab_tag_rule", "{entry}");
        let reason = entry["reason"].as_str().expect("reason");
        assert!(
            reason.starts_with("protected by GitLab's tag rules: ")
                && (reason.contains("immutable") || reason.contains("protected")),
            "{reason}"
        );
    }
    assert_eq!(
        names(&emulator, ROOT),
        ["rel-1", "rel-2", "rel-3", "rel-4", "v1", "v2", "v3", "v4"]
    );
}

/// `inventory` records which of GitLab's tag rules covers each tag, so an
/// offline `plan` sets them aside too, with the same reason a run gives.
#[test]
fn inventory_marks_rule_covered_tags_protected() {
    let emulator = with_tag_rules(
        Config::default(),
        &["rel-"],
        vec![tag("v1"), tag("x-rel-1"), tag("mr-1")],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, inventory, snapshot) = write_inventory(&emulator.ci_env(), &dir, &[]);
    assert_eq!(emulator.writes(), 0);
    assert_eq!(emulator.count("GET", "/jwt/auth"), 1);
    let covered: Vec<(String, Option<String>)> = snapshot["repositories"][0]["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_string(),
                t["gitlab_tag_rule"].as_str().map(str::to_string),
            )
        })
        .collect();
    let delete_deny = "protected by a GitLab tag rule (\"^v\") against deletion by this user";
    let immutable = "immutable (GitLab tag rule \"rel-\")";
    assert_eq!(
        covered,
        [
            ("mr-1".to_string(), None),
            ("v1".to_string(), Some(delete_deny.to_string())),
            ("x-rel-1".to_string(), Some(immutable.to_string())),
        ]
    );

    // Offline, everything but the covered tags goes, and they stay for
    // GitLab's rules, as in a run.
    let (_, report) = run_policy(
        &[],
        "rules: [{delete: '.*'}]\n",
        &["plan", "--inventory", &inventory],
    );
    assert_eq!(
        field_pairs(&report["repositories"][0]["kept_tags"], "tag", "kind"),
        [("v1", "gitlab_tag_rule"), ("x-rel-1", "gitlab_tag_rule")]
    );
    assert_eq!(
        report["repositories"][0]["protected_by_gitlab"][1]["reason"],
        immutable
    );
}

/// A dry run with credentials that may not delete: the tag rules cannot be
/// read (they come with a delete token), which is said; the refused
/// `pull,delete` token is asked for once, not again for the rules.
#[test]
fn a_dry_run_without_delete_permission_says_the_rules_are_unknown() {
    let emulator = with_tag_rules(
        Config {
            grant_delete: false,
            ..Config::default()
        },
        &[],
        vec![tag("v1"), tag("mr-1")],
    );
    let out = run_with_policy(
        &emulator.ci_env(),
        "rules:\n  - delete: \"mr-.*\"\n",
        &["run", "--dry-run"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.all().contains("tag rules could not be read"),
        "{}",
        out.all()
    );
    assert_eq!(
        emulator.count("GET", "/jwt/auth"),
        2,
        "pull,delete (refused) and pull"
    );
    assert_eq!(emulator.writes(), 0);
}

/// Where the credentials may read them (an access token of a Maintainer),
/// the report lists the project's tag rules from REST; the job token may
/// not, and no request is spent on it.
#[test]
fn the_report_lists_gitlab_tag_rules_where_the_token_may_read_them() {
    let emulator = with_tag_rules(
        Config::default(),
        &["^rel-"],
        vec![tag("v1"), tag("rel-1"), tag("mr-1")],
    );
    let policy = "rules: [{delete: 'mr-.*'}]\n";
    let (_, json) = run_policy(&emulator.laptop_env(), policy, &["run", "--dry-run"]);
    assert_eq!(
        json["gitlab_tag_rules"],
        serde_json::json!([
            {"pattern": "^v", "kind": "protected", "minimum_access_level_for_delete": "maintainer"},
            {"pattern": "^rel-", "kind": "immutable"},
        ])
    );
    assert_eq!(emulator.count("GET", "/registry/protection/tag/rules"), 1);

    emulator.reset_requests();
    let (_, json) = run_policy(&emulator.ci_env(), policy, &["run", "--dry-run"]);
    assert!(json.get("gitlab_tag_rules").is_none());
    assert_eq!(emulator.count("GET", "/registry/protection/tag/rules"), 0);
}

const GIT_POLICY: &str = r#"
rules:
  - name: merge request images
    delete: 'mr-(?P<mr>\d+)-[0-9a-f]{8}'
    when_ref: gone
  - name: gone branches
    delete: '(?P<ref>[a-z0-9-]+)-[0-9a-f]{8}'
    keep: 'mr-\d+-[0-9a-f]{8}'
    when_ref: gone
    older_than: 2d
  - name: live branches
    delete: '(?P<ref>[a-z0-9-]+)-[0-9a-f]{8}'
    keep: 'mr-\d+-[0-9a-f]{8}'
    when_ref: exists
    keep_n: 3
    per_ref: true
"#;

/// A project's live refs decide: branches (one renamed in upper case, one
/// over 63 characters), a git tag, open, merged, closed and fork merge
/// requests. The plan deletes exactly the gone refs' images and the live
/// branch's surplus, in both repositories, and the refs are listed once
/// per project (3 requests), not per repository.
#[test]
fn git_aware_rules_delete_the_images_of_gone_refs() {
    let emulator = Emulator::start(Config::default());
    emulator.add_repository("");
    emulator.add_repository("api");
    let long_branch = format!("feature/{}", "x".repeat(70));
    for branch in ["main", "Feature/Upper", long_branch.as_str()] {
        emulator.add_branch(branch);
    }
    emulator.add_git_tag("v1.0");
    emulator.add_merge_request(12, "feature-x", "opened", false);
    emulator.add_merge_request(13, "merged-branch", "merged", false);
    emulator.add_merge_request(14, "closed-branch", "closed", false);
    emulator.add_merge_request(15, "fork-branch", "opened", true);
    let long_slug = format!("feature-{}", "x".repeat(55));
    assert_eq!(long_slug.len(), 63);
    let now = Utc::now();
    let days = |d: i64| now - Duration::days(d);
    let tags = [
        ("mr-12-0a1b2c3d", days(5)),
        ("mr-13-0a1b2c3d", days(5)),
        ("mr-14-0a1b2c3d", days(5)),
        ("mr-15-0a1b2c3d", days(5)),
        ("main-00000001", days(5)),
        ("main-00000002", days(4)),
        ("main-00000003", days(3)),
        ("main-00000004", days(2)),
        ("feature-upper-0000000d", days(9)),
        (&*format!("{long_slug}-0000000f"), days(9)),
        ("v1-0-00000010", days(9)),
        ("fork-branch-0000000e", days(9)),
        ("feature-x-0000000a", days(9)),
        ("old-branch-0000000b", days(10)),
        ("just-merged-0000000c", now - Duration::hours(12)),
    ]
    .map(|(name, at)| (name.to_string(), at));
    for repository in [ROOT, API] {
        emulator.add_tags(repository, tags.iter().map(|(name, at)| tag_at(name, *at)));
    }
    let (out, _) = run_policy(&emulator.ci_env(), GIT_POLICY, &["run"]);
    let gone = [
        "main-00000001",
        "mr-13-0a1b2c3d",
        "mr-14-0a1b2c3d",
        "old-branch-0000000b",
    ];
    for repository in [ROOT, API] {
        let left: Vec<String> = emulator.tags(repository).into_keys().collect();
        let mut expected: Vec<String> = tags
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| !gone.contains(&name.as_str()))
            .collect();
        expected.sort();
        assert_eq!(left, expected, "{repository}: {}", out.all());
    }
    for endpoint in [
        "/repository/branches",
        "/repository/tags",
        "/merge_requests",
    ] {
        assert_eq!(emulator.count("GET", endpoint), 1, "{endpoint}");
    }

    // GitLab refuses the job token there: nothing is claimed through
    // when_ref, the report says why, and the run exits 1.
    let refused = Emulator::start(Config {
        refs_refuse_job_token: true,
        ..Config::default()
    });
    refused.add_repository("");
    refused.add_tags(ROOT, tags.iter().map(|(name, at)| tag_at(name, *at)));
    let (out, json) = run_policy_exiting(&refused.ci_env(), GIT_POLICY, &["run"], 1);
    assert_eq!(refused.tags(ROOT).len(), tags.len(), "nothing deleted");
    let why = json["repositories"][0]["refs_incomplete"]
        .as_str()
        .expect("the report says why");
    assert!(
        why.contains("GITLAB_TOKEN") && why.contains("read_api"),
        "{why}"
    );
    // So does the summary, on the repository's line.
    let line = out
        .stdout
        .lines()
        .find(|line| line.starts_with("group/project: "))
        .unwrap_or_else(|| panic!("a summary line: {}", out.all()));
    assert!(
        line.contains("GITLAB_TOKEN") && line.contains("read_api"),
        "{line}"
    );
}

/// The refs fail-safe through the real binary: the project's refs cannot be
/// listed (GitLab refuses the job token there), and a catch-all rule follows
/// the git-aware one. A tag the git-aware rule's `delete` matches must stay
/// (`refs_unknown`) — not fall through to the catch-all, which would delete
/// live branches' images — while tags only the catch-all matches go.
#[test]
fn unlistable_refs_keep_the_git_aware_rules_tags_from_a_later_catch_all() {
    let emulator = Emulator::start(Config {
        refs_refuse_job_token: true,
        ..Config::default()
    });
    emulator.add_repository("");
    emulator.add_branch("main");
    let ref_tags = ["feature-x-0000000a", "main-00000001", "old-branch-0000000b"];
    let other_tags = ["nightly", "scratch"];
    emulator.add_tags(
        ROOT,
        ref_tags.iter().chain(&other_tags).map(|name| tag(name)),
    );
    let policy = "rules:\n  - name: gone branches\n    delete: '(?P<ref>[a-z0-9-]+)-[0-9a-f]{8}'\n    when_ref: gone\n  - name: everything else\n    delete: '.*'\n";
    // Exit 1: the refs are incomplete.
    let (out, json) = run_policy_exiting(&emulator.ci_env(), policy, &["run"], 1);
    assert_eq!(names(&emulator, ROOT), ref_tags, "{}", out.all());
    let repository = &json["repositories"][0];
    assert_eq!(
        field_pairs(&repository["deleted"], "tag", "rule"),
        [
            ("nightly", "everything else"),
            ("scratch", "everything else")
        ]
    );
    assert_eq!(
        field_pairs(&repository["kept_tags"], "tag", "kind"),
        ref_tags.map(|tag| (tag, "refs_unknown")),
        "each kept for want of refs"
    );
    assert_eq!(emulator.count("DELETE", "/manifests/"), 2);
}

/// Issue 20: a project with a repository always has its default branch. An
/// empty branch listing — or one without `CI_DEFAULT_BRANCH` — is not "every
/// branch is gone": the refs are unknown, nothing is claimed through
/// `when_ref`, and the run says so where its exit code is explained: the
/// report's totals, the summary's total line, the dotenv counts (exit 1).
#[test]
fn an_empty_branch_list_means_the_refs_are_unknown() {
    for (branches, default_branch) in [(vec![], None), (vec!["feature-x"], Some("main"))] {
        let emulator = Emulator::start(Config::default());
        emulator.add_repository("");
        for branch in &branches {
            emulator.add_branch(branch);
        }
        let tags: Vec<String> = (1..=20).map(|i| format!("main-{i:08x}")).collect();
        emulator.add_tags(ROOT, tags.iter().map(|name| tag(name)));
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = write_file(
            &dir,
            "policy.yml",
            "rules:\n  - name: gone branches\n    delete: '(?P<ref>[a-z0-9-]+)-[0-9a-f]{8}'\n    when_ref: gone\n",
        );
        let report = dir.path().join("report.json");
        let dotenv = dir.path().join("counts.env");
        let mut env = emulator.ci_env();
        if let Some(branch) = default_branch {
            env = with(env, &[("CI_DEFAULT_BRANCH", branch)]);
        }
        let out = run(
            &env,
            &[
                "run",
                "--policy",
                &policy,
                "--report",
                report.to_str().expect("utf-8"),
                "--dotenv",
                dotenv.to_str().expect("utf-8"),
            ],
        );
        let case = format!("branches {branches:?}, default {default_branch:?}");
        assert_eq!(out.code, 1, "{case}: {}", out.all());
        assert_eq!(names(&emulator, ROOT).len(), 20, "{case}: nothing deleted");
        assert_eq!(emulator.count("DELETE", "/manifests/"), 0, "{case}");
        let json = report_json(&report);
        let why = json["repositories"][0]["refs_incomplete"]
            .as_str()
            .unwrap_or_else(|| panic!("{case}: the report says why: {json}"));
        assert!(
            why.contains("no branch") || why.contains("default branch \"main\""),
            "{case}: {why}"
        );
        assert_eq!(json["totals"]["incomplete_repositories"], 1, "{case}");
        let total = out
            .stdout
            .lines()
            .find(|line| line.starts_with("total: "))
            .unwrap_or_else(|| panic!("{case}: a total line: {}", out.all()));
        assert!(
            total.ends_with(", 1 repository not cleaned in full (refs or commits in use unknown)"),
            "{case}: {total}"
        );
        let counts = std::fs::read_to_string(&dotenv).expect("dotenv");
        assert!(
            counts.contains("CLEANUP_INCOMPLETE_REPOSITORIES=1\n"),
            "{case}: {counts}"
        );
    }
}

/// The report says why each tag stays (typed by the planner, a sentence and
/// a stable `kind` per tag) and what the plan was made from: the clock, the
/// policy file, the tool version and each repository's age source.
#[test]
fn the_report_says_why_each_tag_stays() {
    let emulator = seeded(Config::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let report_path = dir.path().join("report.json");
    let out = run(
        &emulator.ci_env(),
        &[
            "run",
            "--policy",
            &policy,
            "--dry-run",
            "--report",
            report_path.to_str().expect("path"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let report = report_json(&report_path);
    assert_eq!(report["tool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(report["policy_file"], policy.as_str());
    let now: chrono::DateTime<Utc> = report["now"]
        .as_str()
        .expect("now")
        .parse()
        .expect("an RFC 3339 time");
    assert!((Utc::now() - now).num_minutes() < 10, "{now}");
    let api = repository_entry(&report, API);
    assert_eq!(api["age_source"], "pushed");
    let kept_tags = field_pairs(&api["kept_tags"], "tag", "kind");
    assert_eq!(
        kept_tags,
        [
            ("cafebabe", "younger_than_older_than"),
            ("latest", "protected_latest"),
            ("main", "unclaimed"),
            ("mr-1-x", "keep_n"),
            ("mr-2-x", "keep_n"),
            ("v1.2.3", "protect_pattern"),
        ]
    );
    // kept + protected, each listed once.
    assert_eq!(
        api["kept"].as_u64().expect("kept") + api["protected"].as_u64().expect("protected"),
        kept_tags.len() as u64
    );
    let reason = |tag: &str| {
        api["kept_tags"]
            .as_array()
            .expect("kept_tags")
            .iter()
            .find(|k| k["tag"] == tag)
            .and_then(|k| k["reason"].as_str())
            .expect("reason")
            .to_string()
    };
    assert!(
        reason("mr-2-x").contains("number 2 of 6 candidates"),
        "{}",
        reason("mr-2-x")
    );
    assert!(
        reason("cafebabe").contains("older_than 30d")
            && reason("cafebabe").contains("pushed 3 days ago"),
        "{}",
        reason("cafebabe")
    );
}

/// In a CI job's dry run the log lists what would be deleted, per
/// repository, so a reviewer need not download the report; elsewhere the
/// summary stays one line per repository.
#[test]
fn a_dry_run_in_ci_lists_what_would_be_deleted() {
    let emulator = seeded(Config::default());
    let env = with(emulator.ci_env(), &[("GITLAB_CI", "true")]);
    let out = run_with_policy(&env, POLICY, &["run", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.all());
    // Each repository's section starts with its summary line, after the
    // section marker, and lists what would be deleted.
    let lines: Vec<&str> = out.stdout.lines().collect();
    let api = lines
        .iter()
        .position(|line| line.contains("\r\x1b[0Kgroup/project/api: "))
        .expect("api line");
    let listed: Vec<&str> = lines[api + 1..]
        .iter()
        .take_while(|line| line.starts_with("  would delete "))
        // "mr-3-x (rule \"review images\", 301 B)": the size varies.
        .map(|line| line.rsplit_once(", ").map_or(*line, |(head, _)| head))
        .collect();
    assert_eq!(
        listed,
        [
            "  would delete deadbeef (rule \"commits\"",
            "  would delete mr-3-x (rule \"review images\"",
            "  would delete mr-4-x (rule \"review images\"",
            "  would delete mr-5-x (rule \"review images\"",
            "  would delete mr-6-x (rule \"review images\"",
        ],
        "{}",
        out.all()
    );
    assert_eq!(emulator.writes(), 0);

    // Outside CI, no list.
    let out = run_with_policy(&emulator.ci_env(), POLICY, &["run", "--dry-run"]);
    out.assert_stdout_lacks("  would delete ");
}

/// Issue 11's reproduction measured with any build of the tool (the "before"
/// figure of its closing note came from the binary at 8fc08b2, just before
/// the tag-rule work): the same seeding as
/// `gitlab_tag_rules_protect_tags_in_the_plan`, a dry run then a live run,
/// every request counted and printed. Asserts nothing about the binary.
///
/// ```sh
/// REGISTRY_CLEANUP_BIN=/path/to/registry-cleanup \
///   cargo test --test run measure_the_tag_rule_reproduction -- --ignored --nocapture
/// ```
#[test]
#[ignore = "a measurement: set REGISTRY_CLEANUP_BIN to the binary to measure"]
fn measure_the_tag_rule_reproduction() {
    let binary = std::env::var("REGISTRY_CLEANUP_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_registry-cleanup").to_string());
    let (emulator, _dir, policy) = tag_rule_reproduction();
    for dry_run in [true, false] {
        emulator.reset_requests();
        let mut args = vec!["run", "--policy", policy.as_str()];
        if dry_run {
            args.push("--dry-run");
        }
        let out = std::process::Command::new(&binary)
            .env_clear()
            .envs(emulator.ci_env())
            .args(&args)
            .output()
            .expect("the binary runs");
        let mut kinds = std::collections::BTreeMap::new();
        for r in emulator.requests() {
            let what = if r.path.starts_with("/jwt/auth") {
                "jwt".to_string()
            } else if r.path.contains("/manifests/sha256:") {
                format!("{} manifest by digest {}", r.method, r.status)
            } else if r.path.contains("/manifests/") {
                format!("{} manifest by tag {}", r.method, r.status)
            } else if r.path.contains("/registry/repositories/") && r.path.contains("/tags") {
                format!("{} REST tags {}", r.method, r.status)
            } else {
                format!("{} {}", r.method, r.path)
            };
            *kinds.entry(what).or_insert(0usize) += 1;
        }
        let refused = emulator
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE" && r.status >= 400)
            .count();
        eprintln!(
            "{}: exit {}, {} requests, {} deletes sent, {refused} refused, tags left {}\n  {kinds:?}\n  {}",
            if dry_run { "dry run" } else { "live run" },
            out.status.code().unwrap_or(-1),
            emulator.requests().len(),
            emulator.requests().iter().filter(|r| r.method == "DELETE").count(),
            names(&emulator, ROOT).len(),
            String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("total") || l.starts_with("group/project:")).collect::<Vec<_>>().join("\n  "),
        );
    }
}
