//! Group mode (`--group`, `--shard`) against the emulator: the group's
//! repositories across several projects, the job token refused before any
//! request, shards that cover every repository once. Counted requests.

mod common;

use std::collections::BTreeSet;

use common::*;
use registry_cleanup::domain::shard::shard_of;

const POLICY: &str = DELETE_REVIEW_TAGS;

/// The group's repositories: two in the CI job's own project, one in a
/// sibling project's root image, one in a sibling project, one in a
/// subgroup's project.
const REPOSITORIES: &[&str] = &[
    "group/project",
    "group/project/api",
    "group/other",
    "group/other/web",
    "group/sub/deep/tools",
];

fn group_emulator() -> Emulator {
    let emulator = Emulator::start(Config {
        group_projects: vec![(2, "group/other".into()), (3, "group/sub/deep".into())],
        ..Config::default()
    });
    for repository in REPOSITORIES {
        emulator.add_tags(repository, [tag("mr-1"), tag("mr-2"), tag("main")]);
    }
    emulator
}

/// A CI job of the group's cleanup project, with a group access token.
fn group_job_env(emulator: &Emulator) -> Vec<(String, String)> {
    let token = emulator.config().access_token;
    with(emulator.ci_env(), &[("GITLAB_TOKEN", token.as_str())])
}

#[test]
fn a_group_run_cleans_every_project_of_the_group_and_its_subgroups() {
    let emulator = group_emulator();
    let (output, report) = run_policy(
        &group_job_env(&emulator),
        POLICY,
        &["run", "--group", "group"],
    );
    for repository in REPOSITORIES {
        assert_eq!(
            names(&emulator, repository),
            vec!["main"],
            "{repository}: {}",
            output.all()
        );
    }
    // One group listing (one page), no project listing; each deletion one
    // request, through the registry (tag delete).
    assert_eq!(
        emulator.count("GET", "/api/v4/groups/group/registry/repositories"),
        1
    );
    assert_eq!(
        emulator.count("GET", "/api/v4/projects/1/registry/repositories"),
        0
    );
    assert_eq!(
        emulator.count("DELETE", "/manifests/"),
        2 * REPOSITORIES.len()
    );
    let paths: Vec<&str> = report["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|r| r["path"].as_str().expect("path"))
        .collect();
    let mut expected = REPOSITORIES.to_vec();
    expected.sort();
    assert_eq!(paths, expected);
    assert_eq!(report["totals"]["deleted"], 10);
    assert!(report.get("shard").is_none(), "{report}");
}

#[test]
fn the_group_id_works_as_well_as_its_path_and_rest_calls_go_to_each_project() {
    let emulator = group_emulator();
    // No tag delete: deletions go through each repository's own project.
    emulator.set_config(|c| {
        c.tag_delete = false;
        c.gitlab_v1 = false;
        c.capability_headers = false;
    });
    let id = gitlab_emulator::GROUP_ID.to_string();
    let output = run_with_policy(&group_job_env(&emulator), POLICY, &["run", "--group", &id]);
    assert_eq!(output.code, 0, "{}", output.all());
    for repository in REPOSITORIES {
        assert_eq!(names(&emulator, repository), vec!["main"], "{repository}");
    }
    for project in ["/projects/1/", "/projects/2/", "/projects/3/"] {
        assert!(
            emulator.count("DELETE", project) > 0 || emulator.count("GET", project) > 0,
            "no REST call to {project}: {}",
            output.all()
        );
    }
    assert_eq!(emulator.count("GET", &format!("/groups/{id}/registry")), 1);
}

#[test]
fn the_job_token_alone_is_refused_before_any_request_with_what_to_create() {
    let emulator = group_emulator();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    for args in [
        vec!["run", "--group", "group", "--policy", policy.as_str()],
        vec!["inventory", "--group", "group"],
    ] {
        let output = run(&emulator.ci_env(), &args);
        assert_eq!(output.code, 2, "{args:?}: {}", output.all());
        for needle in [
            "job token",
            "group access token",
            "GITLAB_TOKEN",
            "read_registry",
        ] {
            output.assert_stderr_has(needle);
        }
    }
    // CLEANUP_GROUP does the same as --group.
    let env = with(emulator.ci_env(), &[("CLEANUP_GROUP", "group")]);
    let output = run(&env, &["run", "--policy", &policy]);
    assert_eq!(output.code, 2, "{}", output.all());
    assert!(emulator.requests().is_empty(), "{:?}", emulator.requests());
    assert_eq!(
        names(&emulator, "group/other"),
        vec!["main", "mr-1", "mr-2"]
    );
}

#[test]
fn a_token_gitlab_refuses_on_the_group_costs_one_request_and_exits_2() {
    let emulator = group_emulator();
    let env = with(
        emulator.ci_env(),
        &[("GITLAB_TOKEN", "glpat-not-the-groups-0000")],
    );
    let output = run_with_policy(&env, POLICY, &["run", "--group", "group"]);
    assert_eq!(output.code, 2, "{}", output.all());
    assert!(
        output.stderr.contains("answered 401") && output.stderr.contains("group access token"),
        "{}",
        output.all()
    );
    assert_eq!(emulator.requests().len(), 1, "{:?}", emulator.requests());
    assert!(!output.all().contains("glpat-not-the-groups-0000"));
}

#[test]
fn shards_cover_every_repository_exactly_once_and_reports_record_the_shard() {
    let emulator = group_emulator();
    let mut seen = BTreeSet::new();
    for index in 1..=3u32 {
        // In a `parallel:` job GitLab sets CI_NODE_INDEX/CI_NODE_TOTAL.
        let env = with(
            group_job_env(&emulator),
            &[
                ("CI_NODE_INDEX", index.to_string().as_str()),
                ("CI_NODE_TOTAL", "3"),
            ],
        );
        let (_, report) = run_policy(&env, POLICY, &["run", "--dry-run", "--group", "group"]);
        assert_eq!(
            report["shard"],
            serde_json::json!({"index": index, "total": 3})
        );
        for repository in report["repositories"].as_array().expect("repositories") {
            let path = repository["path"].as_str().expect("path").to_string();
            assert_eq!(shard_of(&path, 3), index, "{path}");
            assert!(seen.insert(path.clone()), "{path} in two shards");
        }
    }
    let all: BTreeSet<String> = REPOSITORIES.iter().map(|p| p.to_string()).collect();
    assert_eq!(seen, all);
    // Each shard listed the group once; a dry run deletes nothing.
    assert_eq!(
        emulator.count("GET", "/groups/group/registry/repositories"),
        3
    );
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn a_group_inventory_ties_each_repository_to_its_project() {
    let emulator = group_emulator();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, _, inventory) = write_inventory(&group_job_env(&emulator), &dir, &["--group", "group"]);
    let mut projects: Vec<(String, u64)> = inventory["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|r| {
            (
                r["path"].as_str().expect("path").to_string(),
                r["project_id"].as_u64().expect("project_id"),
            )
        })
        .collect();
    projects.sort();
    assert_eq!(
        projects,
        vec![
            ("group/other".to_string(), 2),
            ("group/other/web".to_string(), 2),
            ("group/project".to_string(), 1),
            ("group/project/api".to_string(), 1),
            ("group/sub/deep/tools".to_string(), 3),
        ]
    );
    for repository in inventory["repositories"].as_array().expect("repositories") {
        assert_eq!(repository["tags"].as_array().expect("tags").len(), 3);
    }
}

/// Runs `run --dry-run --group group` (sharded when `shard` is given) and
/// returns the report file.
fn dry_run_report(
    emulator: &Emulator,
    dir: &tempfile::TempDir,
    policy: &str,
    shard: Option<&str>,
) -> String {
    let name = format!(
        "report-{}.json",
        shard.unwrap_or("all").replace('/', "-of-")
    );
    let report = dir.path().join(name).display().to_string();
    let mut args = vec![
        "run",
        "--dry-run",
        "--group",
        "group",
        "--policy",
        policy,
        "--report",
        &report,
    ];
    if let Some(shard) = shard {
        args.extend(["--shard", shard]);
    }
    let output = run(&group_job_env(emulator), &args);
    assert_eq!(output.code, 0, "{}", output.all());
    report
}

#[test]
fn merged_shard_reports_equal_the_single_process_plan() {
    let emulator = group_emulator();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let single = report_json(std::path::Path::new(&dry_run_report(
        &emulator, &dir, &policy, None,
    )));
    let shards: Vec<String> = ["3/3", "1/3", "2/3"]
        .iter()
        .map(|shard| dry_run_report(&emulator, &dir, &policy, Some(shard)))
        .collect();
    let merged_path = dir.path().join("merged.json");
    let merged_arg = merged_path.display().to_string();
    let mut args = vec!["report", "merge", "--report", merged_arg.as_str()];
    args.extend(shards.iter().map(String::as_str));
    // No GitLab needed: the merge reads files only.
    let output = run(&[], &args);
    assert_eq!(output.code, 0, "{}", output.all());
    let mut merged = report_json(&merged_path);
    let mut single = single;
    // Each process read its own clock.
    assert!(merged["now"].is_string(), "{merged}");
    merged["now"].take();
    single["now"].take();
    assert_eq!(merged, single);
    output.assert_stdout_has("total: 5 repositories, 15 tags, 10 would delete");
}

#[test]
fn report_merge_refuses_a_missing_shard_and_fails_with_a_failed_shard() {
    let emulator = group_emulator();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let one = dry_run_report(&emulator, &dir, &policy, Some("1/3"));
    let three = dry_run_report(&emulator, &dir, &policy, Some("3/3"));
    let merged = dir.path().join("merged.json");
    let merged_arg = merged.display().to_string();
    let output = run(
        &[],
        &["report", "merge", &one, &three, "--report", &merged_arg],
    );
    assert_eq!(output.code, 2, "{}", output.all());
    output.assert_stderr_has("shard 2/3 missing");
    assert!(!merged.exists(), "nothing written on a refused merge");

    let output = run(&[], &["report", "merge", &one, &one]);
    assert_eq!(output.code, 2, "{}", output.all());
    output.assert_stderr_has("shard 1/3 is given twice");

    // A shard whose run failed somewhere makes the merge exit 1.
    let two = dry_run_report(&emulator, &dir, &policy, Some("2/3"));
    let mut failed = report_json(std::path::Path::new(&two));
    failed["repositories"][0]["failed"] = serde_json::json!([{"tag": "mr-1", "error": "500"}]);
    let two_failed = write_file(&dir, "two-failed.json", &failed.to_string());
    let output = run(
        &[],
        &[
            "report",
            "merge",
            &one,
            &two_failed,
            &three,
            "--report",
            &merged_arg,
        ],
    );
    assert_eq!(output.code, 1, "{}", output.all());
    assert_eq!(report_json(&merged)["totals"]["failed"], 1);

    let output = run(&[], &["report", "merge", "nope.json"]);
    assert_eq!(output.code, 2, "{}", output.all());
    output.assert_stderr_has("nope.json");
}

/// A group run streams its repositories; a configuration problem (here a
/// registry token service on another origin) shows on the first one, before
/// anything is deleted: exit 2, no write, no report file.
#[test]
fn a_configuration_problem_stops_a_streamed_group_run_before_any_delete() {
    let foreign = Emulator::start(Config::default());
    let emulator = group_emulator();
    emulator.set_config(|c| c.realm_override = Some(format!("{}/jwt/auth", foreign.gitlab_url())));
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let report = dir.path().join("report.json");
    let report_arg = report.display().to_string();
    let output = run(
        &group_job_env(&emulator),
        &[
            "run",
            "--group",
            "group",
            "--policy",
            &policy,
            "--report",
            &report_arg,
        ],
    );
    assert_eq!(output.code, 2, "{}", output.all());
    output.assert_stderr_has("not on CI_SERVER_URL's origin");
    assert_eq!(emulator.writes(), 0);
    assert!(foreign.requests().is_empty());
    assert!(!report.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "only the policy"
    );
}

/// `--max-deletions` must see the group's whole plan before the first
/// delete: over the limit, nothing is deleted anywhere in the group.
#[test]
fn max_deletions_guards_the_whole_group() {
    let emulator = group_emulator();
    let output = run_with_policy(
        &group_job_env(&emulator),
        POLICY,
        &["run", "--group", "group", "--max-deletions", "9"],
    );
    assert_eq!(output.code, 1, "{}", output.all());
    output.assert_stderr_has("more than the limit of 9");
    assert_eq!(emulator.writes(), 0);
    let output = run_with_policy(
        &group_job_env(&emulator),
        POLICY,
        &["run", "--group", "group", "--max-deletions", "10"],
    );
    assert_eq!(output.code, 0, "{}", output.all());
    assert_eq!(emulator.count("DELETE", "/manifests/"), 10);
}

/// Registry tokens come in batches: one `/jwt/auth` call carries the
/// scopes of up to 16 repositories, so 120 repositories (of two projects)
/// take 8 calls, not 120 — and every tag is still deleted. (The emulator,
/// like nginx in front of GitLab's registry, refuses a header line over
/// 8 KiB: a batch's token must fit.)
#[test]
fn registry_tokens_are_asked_for_sixteen_repositories_at_a_time() {
    let emulator = Emulator::start(Config {
        group_projects: vec![(2, "group/other".into())],
        ..Config::default()
    });
    let mut paths = Vec::new();
    for i in 0..120 {
        let project = if i % 2 == 0 {
            "group/project"
        } else {
            "group/other"
        };
        let path = format!("{project}/r{i:03}");
        emulator.add_tags(&path, [tag("mr-1"), tag("main")]);
        paths.push(path);
    }
    let output = run_with_policy(
        &group_job_env(&emulator),
        POLICY,
        &["run", "--group", "group"],
    );
    assert_eq!(output.code, 0, "{}", output.all());
    assert_eq!(emulator.count("GET", "/jwt/auth"), 8, "{}", output.all());
    let mut scopes: Vec<usize> = emulator
        .requests()
        .iter()
        .filter(|r| r.path == "/jwt/auth")
        .map(|r| r.query.matches("scope=").count())
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, [8, 16, 16, 16, 16, 16, 16, 16]);
    for path in &paths {
        assert_eq!(names(&emulator, path), vec!["main"], "{path}");
    }
    assert_eq!(emulator.count("DELETE", "/manifests/"), 120);
}
