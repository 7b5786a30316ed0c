//! Instance mode (`--instance`): every repository of the registry from its
//! catalog, administrators only, deleted through the registry API and never
//! through REST. Counted requests against the emulator.

mod common;

use common::*;

const POLICY: &str = DELETE_REVIEW_TAGS;

const REPOSITORIES: &[&str] = &[
    "group/project",
    "group/project/api",
    "group/other",
    "elsewhere/tool/cli",
];

fn instance_emulator(admin: bool) -> Emulator {
    let emulator = Emulator::start(Config {
        group_projects: vec![(2, "group/other".into())],
        admin,
        ..Config::default()
    });
    // A project outside the group: the catalog lists every repository.
    emulator.set_config(|c| c.group_projects.push((5, "elsewhere/tool".into())));
    for repository in REPOSITORIES {
        emulator.add_tags(repository, [tag("mr-1"), tag("main")]);
    }
    emulator
}

fn admin_env(emulator: &Emulator) -> Vec<(String, String)> {
    without(emulator.laptop_env(), &["CI_PROJECT_ID", "CI_PROJECT_PATH"])
}

#[test]
fn an_administrator_cleans_every_repository_through_the_registry_only() {
    let emulator = instance_emulator(true);
    let (_, report) = run_policy(&admin_env(&emulator), POLICY, &["run", "--instance"]);
    for repository in REPOSITORIES {
        assert_eq!(names(&emulator, repository), vec!["main"], "{repository}");
    }
    assert_eq!(emulator.count("GET", "/v2/_catalog"), 1);
    assert_eq!(
        emulator.count("DELETE", "/manifests/mr-1"),
        REPOSITORIES.len()
    );
    // Not one REST call: catalog entries have no project.
    let requests = emulator.requests();
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.path.starts_with("/api/v4/"))
            .count(),
        0
    );
    assert_eq!(report["totals"]["deleted"], 4);
}

#[test]
fn without_the_catalog_scope_an_instance_run_stops_with_exit_2() {
    let emulator = instance_emulator(false);
    let output = run_with_policy(&admin_env(&emulator), POLICY, &["run", "--instance"]);
    assert_eq!(output.code, 2, "{}", output.all());
    output.assert_stderr_has("administrator");
    assert_eq!(emulator.count("GET", "/v2/_catalog"), 0);
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn a_registry_without_tag_delete_is_refused_before_the_catalog() {
    let emulator = instance_emulator(true);
    emulator.set_config(|c| c.tag_delete = false);
    let output = run_with_policy(&admin_env(&emulator), POLICY, &["run", "--instance"]);
    assert_eq!(output.code, 2, "{}", output.all());
    assert!(output.stderr.contains("tag delete"), "{}", output.all());
    // The challenge, the catalog token, and GET /v2/ with it to learn what
    // the registry can do; no catalog, no write.
    let requests: Vec<String> = emulator
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(requests, ["GET /v2/", "GET /jwt/auth", "GET /v2/"]);
    assert_eq!(emulator.writes(), 0);
}

/// Issue 20: GitLab's registry names what it can do only on an authorized
/// `GET /v2/` (the emulator answers as it does: nothing on the challenge).
/// A dry run plans every repository of the catalog, `inventory --instance`
/// writes them, for one request more than the catalog needs: `GET /v2/`
/// again with the catalog token.
#[test]
fn capabilities_come_from_the_authorized_base_route() {
    let emulator = instance_emulator(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let report = dir.path().join("report.json");
    let output = run(
        &admin_env(&emulator),
        &[
            "run",
            "--instance",
            "--dry-run",
            "--policy",
            &policy,
            "--report",
            report.to_str().expect("path"),
        ],
    );
    assert_eq!(output.code, 0, "{}", output.all());
    let report = report_json(&report);
    let planned: Vec<&str> = report["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|r| r["path"].as_str().expect("path"))
        .collect();
    let mut expected = REPOSITORIES.to_vec();
    expected.sort();
    assert_eq!(planned, expected);
    assert_eq!(report["totals"]["deleted"], 4, "mr-1 in each, would delete");
    assert_eq!(emulator.writes(), 0);
    assert_eq!(emulator.count("GET", "/v2/_catalog"), 1);
    // Anonymous, then once with a token: no probe of tag delete or /gitlab/v1.
    let base_route = emulator
        .requests()
        .iter()
        .filter(|r| r.path == "/v2/")
        .count();
    assert_eq!(base_route, 2, "{:?}", emulator.requests());

    emulator.reset_requests();
    let inventory = dir.path().join("inventory.json");
    let output = run(
        &admin_env(&emulator),
        &[
            "inventory",
            "--instance",
            "--output",
            inventory.to_str().expect("path"),
        ],
    );
    assert_eq!(output.code, 0, "{}", output.all());
    let inventory = report_json(&inventory);
    assert_eq!(
        inventory["repositories"].as_array().map(Vec::len),
        Some(REPOSITORIES.len())
    );
    assert_eq!(
        emulator
            .requests()
            .iter()
            .filter(|r| r.path == "/v2/")
            .count(),
        2
    );
}

/// `inventory --instance` deletes nothing, so it needs no tag delete: only
/// the `/gitlab/v1` listing (and the catalog) it reads with. A registry that
/// announces its database but not tag delete is listed; `run --instance` is
/// refused there, before any write.
#[test]
fn an_instance_inventory_needs_no_tag_delete() {
    let emulator = instance_emulator(true);
    emulator.set_config(|c| {
        c.tamper = vec![gitlab_emulator::Tamper::on(Some("GET"), "/v2/")
            .on_server(gitlab_emulator::Server::Registry)
            .header("gitlab-container-registry-features", "other_feature")]
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let inventory = dir.path().join("inventory.json");
    let output = run(
        &admin_env(&emulator),
        &[
            "inventory",
            "--instance",
            "--output",
            inventory.to_str().expect("path"),
        ],
    );
    assert_eq!(output.code, 0, "{}", output.all());
    assert_eq!(
        report_json(&inventory)["repositories"]
            .as_array()
            .map(Vec::len),
        Some(REPOSITORIES.len())
    );

    emulator.reset_requests();
    let policy = write_file(&dir, "policy.yml", POLICY);
    let output = run(
        &admin_env(&emulator),
        &["run", "--instance", "--policy", &policy],
    );
    assert_eq!(output.code, 2, "{}", output.all());
    assert!(
        output.stderr.contains("does not announce tag delete"),
        "{}",
        output.all()
    );
    assert_eq!(emulator.count("GET", "/v2/_catalog"), 0);
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn the_job_token_alone_is_refused_before_any_request() {
    let emulator = instance_emulator(true);
    let env = with(emulator.ci_env(), &[("CLEANUP_INSTANCE", "true")]);
    let output = run_with_policy(&env, POLICY, &["run"]);
    assert_eq!(output.code, 2, "{}", output.all());
    output.assert_stderr_has("administrator's access token");
    assert!(emulator.requests().is_empty());
}

/// The catalog is read page by page (`n=1000`, `Link: rel="next"`): 1,004
/// repositories take two pages, and every one of them is planned.
#[test]
fn the_catalog_is_followed_page_by_page() {
    let emulator = instance_emulator(true);
    for i in 0..1000 {
        emulator.add_repository(&format!("group/project/many/r{i:04}"));
    }
    let (_, report) = run_policy(
        &admin_env(&emulator),
        POLICY,
        &["run", "--instance", "--dry-run"],
    );
    assert_eq!(emulator.count("GET", "/v2/_catalog"), 2);
    assert_eq!(report["totals"]["repositories"], 1004);
    assert_eq!(report["totals"]["deleted"], 4);
}
