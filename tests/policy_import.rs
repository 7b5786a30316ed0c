//! `registry-cleanup policy import` checked against GitLab's own semantics:
//! a table of GitLab-shaped cases (a `container_expiration_policy`, tags
//! with push dates → the tags GitLab's cleanup deletes), each run through
//! `policy import` and then `plan` (offline), and cross-checked with a
//! transcription of GitLab's `CleanupTagsBaseService`.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use common::*;
use serde_json::{json, Value};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
        .expect("a date")
        .with_timezone(&Utc)
}

/// A tag pushed `days` ago (`None`: no date known).
type Seed = (&'static str, Option<i64>);

/// GitLab's cleanup, transcribed from `CleanupTagsBaseService`: drop
/// `latest`; keep tags matching `\A#{name_regex_delete || name_regex}\z`
/// and not `\A#{name_regex_keep}\z`; order by push time, newest first
/// (undated = now); the first keep_n stay; of the rest, those pushed before
/// now - older_than go (undated stay).
fn gitlab_deletes(policy: &Value, tags: &[Seed]) -> BTreeSet<String> {
    let text = |key: &str| policy[key].as_str().map(str::to_string);
    let delete = text("name_regex_delete").or_else(|| text("name_regex"));
    let delete = regex::Regex::new(&format!(r"\A{}\z", delete.unwrap_or_default())).expect("re");
    let keep = regex::Regex::new(&format!(
        r"\A{}\z",
        text("name_regex_keep").unwrap_or_default()
    ))
    .expect("re");
    let mut candidates: Vec<&Seed> = tags
        .iter()
        .filter(|(name, _)| *name != "latest")
        .filter(|(name, _)| delete.is_match(name) && !keep.is_match(name))
        .collect();
    // Newest first; undated counts as now, i.e. newest.
    candidates.sort_by_key(|(_, days)| days.unwrap_or(-1));
    if let Some(keep_n) = policy["keep_n"].as_u64() {
        candidates = candidates.into_iter().skip(keep_n as usize).collect();
    }
    if let Some(older_than) = policy["older_than"].as_str() {
        let days: i64 = older_than
            .trim_end_matches('d')
            .parse()
            .expect("GitLab's values are days");
        candidates.retain(|(_, pushed)| pushed.is_some_and(|ago| ago > days));
    }
    candidates
        .iter()
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Imports `policy` and plans it over `tags`; the tags the plan deletes,
/// and the imported file's text.
fn import_and_plan(policy: &Value, tags: &[Seed]) -> (BTreeSet<String>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = write_file(
        &dir,
        "project.json",
        &json!({"id": 7, "container_expiration_policy": policy}).to_string(),
    );
    let imported = dir.path().join("imported.yml");
    let output = run(
        &[],
        &[
            "policy",
            "import",
            "--from",
            &from,
            "--output",
            imported.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(output.code, 0, "{}", output.all());
    let text = std::fs::read_to_string(&imported).expect("imported");
    let inventory = json!({"repositories": [{"path": "group/project", "tags": tags.iter().map(|(name, days)| {
        let mut tag = json!({"name": name});
        if let Some(days) = days {
            tag["pushed_at"] = json!((now() - Duration::days(*days)).to_rfc3339());
        }
        tag
    }).collect::<Vec<_>>()}]});
    let inventory = write_file(&dir, "inventory.json", &inventory.to_string());
    let report = dir.path().join("report.json");
    let output = run(
        &[],
        &[
            "plan",
            "--inventory",
            &inventory,
            "--policy",
            imported.to_str().expect("utf-8"),
            "--now",
            &now().to_rfc3339(),
            "--report",
            report.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(output.code, 0, "{}\n{text}", output.all());
    let deleted = report_json(&report)["repositories"][0]["deleted"]
        .as_array()
        .expect("deleted")
        .iter()
        .map(|d| d["tag"].as_str().expect("tag").to_string())
        .collect();
    (deleted, text)
}

struct Case {
    what: &'static str,
    policy: Value,
    tags: &'static [Seed],
    /// What GitLab deletes, by hand.
    deletes: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "every tag, keep the 5 newest; latest never",
            policy: json!({"enabled": true, "cadence": "1d", "name_regex": ".*", "keep_n": 5}),
            tags: &[
                ("a", Some(1)),
                ("b", Some(2)),
                ("c", Some(3)),
                ("d", Some(4)),
                ("e", Some(5)),
                ("f", Some(6)),
                ("g", Some(7)),
                ("latest", Some(100)),
            ],
            deletes: &["f", "g"],
        },
        Case {
            what: "older than 30 days, no keep_n",
            policy: json!({"enabled": true, "cadence": "7d", "name_regex": ".*", "older_than": "30d"}),
            tags: &[("new", Some(10)), ("old", Some(40)), ("older", Some(100))],
            deletes: &["old", "older"],
        },
        Case {
            what: "keep_n first, then older_than",
            policy: json!({"enabled": true, "cadence": "14d", "name_regex": ".*", "keep_n": 1, "older_than": "7d"}),
            tags: &[
                ("a", Some(20)),
                ("b", Some(10)),
                ("c", Some(3)),
                ("d", Some(30)),
            ],
            deletes: &["a", "b", "d"],
        },
        Case {
            what: "delete alternation: starts with mr- or ends with dev",
            policy: json!({"enabled": true, "cadence": "1d", "name_regex": "mr-.*|dev"}),
            tags: &[
                ("mr-1", Some(1)),
                ("feature-dev", Some(1)),
                ("dev", Some(1)),
                ("dev-1", Some(1)),
                ("x-mr-1", Some(1)),
                ("main", Some(1)),
            ],
            deletes: &["dev", "feature-dev", "mr-1"],
        },
        Case {
            what: "three alternatives: starts with a, contains b, ends with c",
            policy: json!({"enabled": true, "cadence": "1d", "name_regex": "a|b.*|c"}),
            tags: &[
                ("a", Some(1)),
                ("ab", Some(1)),
                ("xbx", Some(1)),
                ("xa", Some(1)),
                ("xc", Some(1)),
                ("cx", Some(1)),
                ("zzz", Some(1)),
            ],
            deletes: &["a", "ab", "xbx", "xc"],
        },
        Case {
            what: "keep alternation: keeps tags starting with v1 or ending with stable",
            policy: json!({"enabled": true, "cadence": "1month", "name_regex": ".*", "name_regex_keep": "v1|stable"}),
            tags: &[
                ("v1", Some(50)),
                ("v10", Some(50)),
                ("v2", Some(50)),
                ("x-stable", Some(50)),
                ("stable-2", Some(50)),
                ("old", Some(50)),
            ],
            deletes: &["old", "stable-2", "v2"],
        },
        Case {
            what: "alternations in both patterns with keep_n and older_than",
            policy: json!({"enabled": true, "cadence": "3month", "name_regex": "mr-|tmp", "name_regex_keep": "mr-1|keep",
                           "keep_n": 1, "older_than": "7d"}),
            tags: &[
                ("mr-1", Some(30)),
                ("mr-2", Some(30)),
                ("mr-3", Some(20)),
                ("a-tmp", Some(10)),
                ("mr-keep", Some(30)),
                ("mr-9", Some(1)),
                ("tmp-x", Some(30)),
            ],
            deletes: &["a-tmp", "mr-2", "mr-3"],
        },
        Case {
            what: "undated tags count as newest and are never old",
            policy: json!({"enabled": true, "cadence": "1d", "name_regex": ".*", "keep_n": 1, "older_than": "7d"}),
            tags: &[
                ("undated", None),
                ("dated-new", Some(1)),
                ("dated-old", Some(30)),
                ("undated-2", None),
            ],
            deletes: &["dated-old"],
        },
        Case {
            what: "name_regex_delete wins over name_regex",
            policy: json!({"enabled": true, "cadence": "1d", "name_regex": ".*", "name_regex_delete": "tmp-.*"}),
            tags: &[("tmp-1", Some(1)), ("main", Some(1))],
            deletes: &["tmp-1"],
        },
        Case {
            what: "no name_regex: GitLab deletes nothing",
            policy: json!({"enabled": true, "cadence": "1d", "name_regex": null, "keep_n": 1}),
            tags: &[("a", Some(100)), ("b", Some(200))],
            deletes: &[],
        },
        Case {
            what: "an empty name_regex: GitLab deletes nothing",
            policy: json!({"enabled": true, "cadence": "1d", "name_regex": ""}),
            tags: &[("a", Some(100))],
            deletes: &[],
        },
        Case {
            what: "a case-insensitive flag reaches across the alternation",
            policy: json!({"enabled": true, "cadence": "1d", "name_regex": "(?i)dev|prod"}),
            tags: &[
                ("DEV-1", Some(1)),
                ("x-PROD", Some(1)),
                ("prod-x", Some(1)),
                ("Dev", Some(1)),
            ],
            deletes: &["DEV-1", "Dev", "x-PROD"],
        },
    ]
}

#[test]
fn imported_policies_delete_exactly_what_gitlab_deletes() {
    for case in cases() {
        let expected: BTreeSet<String> = case.deletes.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            gitlab_deletes(&case.policy, case.tags),
            expected,
            "{}: the hand-written expectation disagrees with GitLab's algorithm",
            case.what
        );
        let (deleted, text) = import_and_plan(&case.policy, case.tags);
        assert_eq!(deleted, expected, "{}:\n{text}", case.what);
    }
}

#[test]
fn the_anchoring_traps_are_explained_in_the_file() {
    let (_, text) = import_and_plan(
        &json!({"enabled": true, "cadence": "1d", "name_regex": "a|b.*|c", "name_regex_keep": "v1|stable"}),
        &[("x", Some(1))],
    );
    assert!(
        text.contains("GitLab's name_regex \"a|b.*|c\" does not mean what it looks like"),
        "{text}"
    );
    assert!(
        text.contains("starts with \"a\", or contains \"b.*\", or ends with \"c\""),
        "{text}"
    );
    assert!(
        text.contains("GitLab's name_regex_keep \"v1|stable\" does not mean what it looks like"),
        "{text}"
    );
    assert!(text.contains("protect_latest: true"), "{text}");
    let (_, plain) = import_and_plan(
        &json!({"enabled": true, "cadence": "1d", "name_regex": "mr-.*"}),
        &[],
    );
    assert!(
        !plain.contains("does not mean what it looks like"),
        "{plain}"
    );
    assert!(plain.contains("delete: \"mr-.*\""), "{plain}");
}

#[test]
fn a_disabled_policy_says_so() {
    let (_, text) = import_and_plan(
        &json!({"enabled": false, "cadence": "1d", "name_regex": ".*", "keep_n": 10, "older_than": "90d"}),
        &[],
    );
    assert!(
        text.contains("GitLab's cleanup policy is DISABLED on this project"),
        "{text}"
    );
}

#[test]
fn every_gitlab_value_of_keep_n_older_than_and_cadence() {
    for (keep_n, older_than, cadence, cron) in [
        (json!(1), json!("7d"), "1d", "0 2 * * *"),
        (json!(5), json!("14d"), "7d", "0 2 * * 0"),
        (json!(10), json!("30d"), "14d", "0 2 1,15 * *"),
        (json!(25), json!("60d"), "1month", "0 2 1 * *"),
        (json!(50), json!("90d"), "3month", "0 2 1 1,4,7,10 *"),
        (json!(100), json!(null), "1d", "0 2 * * *"),
        (json!(null), json!(null), "7d", "0 2 * * 0"),
    ] {
        let policy = json!({"enabled": true, "cadence": cadence, "name_regex": ".*", "keep_n": keep_n, "older_than": older_than});
        const TAGS: &[Seed] = &[
            ("t1", Some(1)),
            ("t2", Some(8)),
            ("t3", Some(15)),
            ("t4", Some(31)),
            ("t5", Some(61)),
            ("t6", Some(91)),
        ];
        let (deleted, text) = import_and_plan(&policy, TAGS);
        assert_eq!(deleted, gitlab_deletes(&policy, TAGS), "{policy}:\n{text}");
        assert!(text.contains(&format!("cadence {cadence}")), "{text}");
        assert!(text.contains(&format!("cron \"{cron}\"")), "{text}");
    }
}

#[test]
fn live_import_reads_the_project_with_an_access_token() {
    let emulator = Emulator::start(Config {
        container_expiration_policy: Some(
            json!({"enabled": true, "cadence": "7d", "keep_n": 5, "older_than": "14d",
                                                 "name_regex": "mr-.*", "name_regex_keep": null, "next_run_at": null}),
        ),
        ..Config::default()
    });
    let output = run(&emulator.laptop_env(), &["policy", "import"]);
    assert_eq!(output.code, 0, "{}", output.all());
    output.assert_stdout_has("delete: \"mr-.*\"");
    output.assert_stdout_has("keep_n: 5");
    output.assert_stdout_has("older_than: \"14d\"");
    assert_eq!(emulator.count("GET", "/api/v4/projects/1"), 1);
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn live_import_with_the_job_token_says_what_to_set() {
    let emulator = Emulator::start(Config::default());
    let output = run(&emulator.ci_env(), &["policy", "import"]);
    assert_eq!(output.code, 2, "{}", output.all());
    assert!(
        output.stderr.contains("GITLAB_TOKEN") && output.stderr.contains("--from"),
        "{}",
        output.all()
    );
    assert!(
        emulator.requests().is_empty(),
        "nothing sent: the job token is refused there"
    );

    let emulator = Emulator::start(Config {
        container_expiration_policy: None,
        ..Config::default()
    });
    let output = run(&emulator.laptop_env(), &["policy", "import"]);
    assert_eq!(output.code, 2, "{}", output.all());
    output.assert_stderr_has("never set up");
}

#[test]
fn a_bad_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write_file(
        &dir,
        "bad.json",
        "{\"enabled\": true, \"name_regex\": \"a(\"}",
    );
    let output = run(&[], &["policy", "import", "--from", &bad]);
    assert_eq!(output.code, 2, "{}", output.all());
    assert!(
        output.stderr.contains("name_regex \"a(\""),
        "{}",
        output.all()
    );
    let output = run(&[], &["policy", "import", "--from", "/nonexistent.json"]);
    assert_eq!(output.code, 2, "{}", output.all());
    output.assert_stderr_has("--from /nonexistent.json");
}
