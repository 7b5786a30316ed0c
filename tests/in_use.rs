//! `protect_in_use` (issue 22) through the real binary against the
//! emulator: tags naming a deployed commit (what runs now and the rollback
//! targets) or a running pipeline's commit survive a policy that deletes
//! everything else, each with its reason; a refused listing deletes
//! nothing and fails; `plan` from an inventory decides as `run --dry-run`;
//! requests counted.

mod common;

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use common::*;
use gitlab_emulator::{DeploymentSpec, InUseListing, PipelineSpec};
use serde_json::Value;

/// Deletes every tag but `latest`, except what is in use.
const POLICY: &str = r#"
protect_in_use:
  environments: '.*'
  last_deployments: 3
  running_pipelines: true
  commit: '(?P<sha>[0-9a-f]{7,40})'
rules:
  - name: everything
    delete: '.*'
"#;

/// A commit SHA of 40 hex digits; the first 7 differ for every `n` < 128
/// (real SHAs rarely share 7, these never do).
fn sha(n: u32) -> String {
    format!("{:08x}", n.reverse_bits()).repeat(5)
}

/// The project of the issue: 3 environments (one stopped), 12 deployments
/// and 2 running pipelines, and an image per commit in two repositories.
struct Project {
    emulator: Emulator,
    /// Tag → why it must survive (`None`: it must go).
    expected: BTreeMap<String, Option<String>>,
}

fn project(config: Config) -> Project {
    let emulator = Emulator::start(config);
    let mut expected = BTreeMap::new();
    let now = Utc::now();
    let mut commit = 0u32;
    let mut next = |environment: &str, status: &str, age_days: i64| {
        commit += 1;
        let finished = now - Duration::days(age_days);
        let spec = DeploymentSpec::new(environment, &sha(commit))
            .status(status)
            .finished(finished);
        (commit, emulator.add_deployment(spec), finished)
    };
    // production: 5 successful deployments and a failed one, newest last;
    // staging: 4 successful; review/old: 2, but the environment is stopped.
    let mut deployments = Vec::new();
    for (environment, status, age) in [
        ("production", "success", 30),
        ("staging", "success", 29),
        ("production", "success", 20),
        ("review/old", "success", 19),
        ("production", "success", 10),
        ("staging", "success", 9),
        ("production", "failed", 8),
        ("production", "success", 5),
        ("staging", "success", 4),
        ("review/old", "success", 3),
        ("production", "success", 2),
        ("staging", "success", 1),
    ] {
        deployments.push((environment, status, next(environment, status, age)));
    }
    emulator.add_environment("review/old", "stopped");
    // The last 3 successful of each available environment are in use.
    for environment in ["production", "staging"] {
        let successful: Vec<_> = deployments
            .iter()
            .filter(|(e, s, _)| *e == environment && *s == "success")
            .collect();
        for (index, (_, _, (commit, id, finished))) in successful.iter().rev().enumerate() {
            let reason = (index < 3).then(|| {
                format!(
                    "in use: deployed to {environment} (deployment {id}, finished {}), commit {} on main",
                    finished.format("%Y-%m-%dT%H:%M:%SZ"),
                    &sha(*commit)[..8]
                )
            });
            expected.insert(sha(*commit)[..8].to_string(), reason);
        }
    }
    for (_, status, (commit, _, _)) in &deployments {
        if *status == "failed"
            || deployments
                .iter()
                .any(|(e, _, (c, _, _))| c == commit && *e == "review/old")
        {
            expected.insert(sha(*commit)[..8].to_string(), None);
        }
    }
    // Two running pipelines (GitLab's status names), one finished, one
    // waiting for a person: the first two are in use.
    for (n, status, name) in [
        (50, "running", sha(50)),
        (51, "waiting_for_resource", sha(51)[..7].to_string()),
        (52, "success", sha(52)[..8].to_string()),
        (53, "manual", sha(53)[..8].to_string()),
    ] {
        let id = emulator.add_pipeline(PipelineSpec::new(&sha(n), status).git_ref("feature/x"));
        let in_use = matches!(status, "running" | "waiting_for_resource");
        expected.insert(
            name,
            in_use.then(|| {
                format!(
                    "in use: pipeline {id} {status}, commit {} on feature/x",
                    &sha(n)[..8]
                )
            }),
        );
    }
    expected.insert("branch-main".into(), None);
    // Every tag an image in both repositories; `latest` is protected.
    for repository in ["", "api"] {
        let repo = emulator.repository(repository);
        for name in expected.keys() {
            repo.push_image(Some(name), Some(now - Duration::days(40)));
        }
        repo.push_image(Some("latest"), Some(now));
    }
    Project { emulator, expected }
}

fn policy_file(dir: &tempfile::TempDir) -> String {
    write_file(dir, "policy.yml", POLICY)
}

/// The report's kept tags of the first repository: tag → (kind, reason).
fn kept(report: &Value, repository: usize) -> BTreeMap<String, (String, String)> {
    report["repositories"][repository]["kept_tags"]
        .as_array()
        .expect("kept_tags")
        .iter()
        .map(|entry| {
            (
                entry["tag"].as_str().expect("tag").to_string(),
                (
                    entry["kind"].as_str().expect("kind").to_string(),
                    entry["reason"].as_str().expect("reason").to_string(),
                ),
            )
        })
        .collect()
}

/// Requests of the listings of commits in use: (environments, deployments, pipelines).
fn in_use_requests(emulator: &Emulator) -> (usize, usize, usize) {
    (
        emulator.count("GET", "/environments"),
        emulator.count("GET", "/deployments"),
        emulator.count("GET", "/pipelines"),
    )
}

#[test]
fn the_images_deployed_and_running_survive_a_policy_that_deletes_everything_else() {
    let Project { emulator, expected } = project(Config::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_file(&dir);
    let report = dir.path().join("report.json");
    let out = run(
        &emulator.ci_env(),
        &[
            "run",
            "--policy",
            &policy,
            "--report",
            report.to_str().expect("path"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let json = report_json(&report);
    let survivors: Vec<&String> = expected
        .iter()
        .filter(|(_, why)| why.is_some())
        .map(|(t, _)| t)
        .collect();
    assert_eq!(survivors.len(), 8, "3 + 3 deployments, 2 pipelines");
    for (index, repository) in ["group/project", "group/project/api"].iter().enumerate() {
        let mut left = names(&emulator, repository);
        left.sort();
        let mut want: Vec<String> = survivors.iter().map(|t| t.to_string()).collect();
        want.push("latest".into());
        want.sort();
        assert_eq!(left, want, "{repository}");
        assert_eq!(json["repositories"][index]["path"], *repository);
        let kept = kept(&json, index);
        for (tag, why) in &expected {
            match why {
                Some(why) => assert_eq!(
                    kept.get(tag),
                    Some(&("in_use".to_string(), why.clone())),
                    "{repository}: {tag}"
                ),
                None => assert!(
                    !kept.contains_key(tag),
                    "{repository}: {tag} kept: {kept:?}"
                ),
            }
        }
        assert_eq!(
            json["repositories"][index]["deleted"]
                .as_array()
                .map(Vec::len),
            Some(expected.len() - 8)
        );
        assert_eq!(
            json["repositories"][index]["protected"], 9,
            "8 in use and latest"
        );
    }
    // The sources, as data: environment, deployment id and finish time, or
    // the pipeline id and status.
    let entry = json["repositories"][0]["kept_tags"]
        .as_array()
        .expect("kept")
        .iter()
        .find(|e| e["tag"] == sha(50).as_str())
        .expect("the running pipeline's tag");
    assert_eq!(entry["in_use"][0]["sha"], sha(50).as_str());
    assert_eq!(entry["in_use"][0]["ref"], "feature/x");
    assert_eq!(entry["in_use"][0]["source"]["kind"], "pipeline");
    assert_eq!(entry["in_use"][0]["source"]["status"], "running");
    let production = json["repositories"][0]["kept_tags"]
        .as_array()
        .expect("kept")
        .iter()
        .find(|e| e["in_use"][0]["source"]["environment"] == "production")
        .expect("a production deployment");
    assert!(production["in_use"][0]["source"]["deployment_id"].is_u64());
    assert!(production["in_use"][0]["source"]["finished_at"].is_string());
    // Listed once for the project, not per repository: the live
    // environments (available, stopping: one page each), one page of
    // deployments per live environment (production, staging; not the
    // stopped one), one listing per running status (8, one page each).
    assert_eq!(in_use_requests(&emulator), (2, 2, 8), "{}", out.all());
    for status in [
        "scheduled",
        "created",
        "waiting_for_resource",
        "preparing",
        "waiting_for_callback",
        "pending",
        "running",
        "canceling",
    ] {
        assert_eq!(
            count_query(&emulator, "GET", "/pipelines", &format!("status={status}&")),
            1,
            "{status}"
        );
    }
    assert_eq!(
        count_query(
            &emulator,
            "GET",
            "/deployments",
            "environment=production&status=success&order_by=id&sort=desc&per_page=3"
        ),
        1
    );
    assert_eq!(
        count_query(&emulator, "GET", "/deployments", "environment=staging&"),
        1
    );
    assert_eq!(
        count_query(&emulator, "GET", "/deployments", "environment=review"),
        0
    );
}

#[test]
fn a_signature_of_an_image_in_use_follows_it() {
    let emulator = Emulator::start(Config::default());
    emulator.add_deployment(DeploymentSpec::new("production", &sha(1)));
    let repo = emulator.repository("");
    let deployed = repo.push_image(Some(&sha(1)[..8]), None);
    repo.push_signature(&deployed, "sig");
    let gone = repo.push_image(Some(&sha(2)[..8]), None);
    repo.push_signature(&gone, "sig");
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_file(&dir);
    let out = run(&emulator.ci_env(), &["run", "--policy", &policy]);
    assert_eq!(out.code, 0, "{}", out.all());
    let mut left = names(&emulator, "");
    left.sort();
    let mut want = vec![sha(1)[..8].to_string(), referrer_tag(&deployed)];
    want.sort();
    assert_eq!(left, want);
}

fn referrer_tag(digest: &str) -> String {
    gitlab_emulator::referrer_tag(digest, Some("sig"))
}

#[test]
fn a_refused_deployments_listing_deletes_nothing_and_fails() {
    let Project { emulator, .. } = project(Config {
        job_token_refused: vec![(InUseListing::Deployments, 403)],
        ..Config::default()
    });
    let before = (names(&emulator, ""), names(&emulator, "api"));
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_file(&dir);
    for dry_run in [true, false] {
        emulator.reset_requests();
        let report = dir.path().join(format!("report-{dry_run}.json"));
        let mut args = vec![
            "run",
            "--policy",
            &policy,
            "--report",
            report.to_str().expect("path"),
        ];
        if dry_run {
            args.push("--dry-run");
        }
        let out = run(&emulator.ci_env(), &args);
        assert_eq!(out.code, 1, "{}", out.all());
        assert_eq!(emulator.writes(), 0, "nothing deleted: {}", out.all());
        assert_eq!((names(&emulator, ""), names(&emulator, "api")), before);
        let json = report_json(&report);
        for repository in json["repositories"].as_array().expect("repositories") {
            let why = repository["in_use_incomplete"]
                .as_str()
                .expect("the reason");
            for needle in [
                "GET /projects/:id/deployments answered 403 to the JOB-TOKEN credentials",
                "GITLAB_TOKEN",
                "Deployments: Read",
                "nothing deleted here",
            ] {
                assert!(why.contains(needle), "{needle}: {why}");
            }
            assert_eq!(repository["deleted"].as_array().map(Vec::len), Some(0));
            let kinds: Vec<&str> = repository["kept_tags"]
                .as_array()
                .expect("kept")
                .iter()
                .map(|e| e["kind"].as_str().expect("kind"))
                .collect();
            assert!(
                kinds
                    .iter()
                    .all(|k| *k == "in_use_unknown" || *k == "protected_latest"),
                "{kinds:?}"
            );
        }
        // The summary says why, per repository.
        assert!(
            out.stdout.contains("nothing deleted here (protect_in_use)")
                && out
                    .stdout
                    .contains("GET /projects/:id/deployments answered 403"),
            "{}",
            out.all()
        );
        assert!(!out.all().contains(&emulator.config().job_token));
        // The first refusal ends the listing: environments, then one refused deployments request.
        assert_eq!(in_use_requests(&emulator), (2, 1, 0));
    }
    // With an access token the same run cleans.
    let token = emulator.config().access_token;
    let out = run(
        &with(emulator.ci_env(), &[("GITLAB_TOKEN", token.as_str())]),
        &["run", "--policy", &policy],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(names(&emulator, "").len(), 9);
}

#[test]
fn a_failing_pipelines_listing_deletes_nothing_either() {
    let Project { emulator, .. } = project(Config {
        scripted_faults: vec![ScriptedFault::refused("GET", "/pipelines", 502).times(usize::MAX)],
        ..Config::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_file(&dir);
    let env = with(
        emulator.ci_env(),
        &[
            ("CLEANUP_RETRY_MAX_ATTEMPTS", "2"),
            ("CLEANUP_RETRY_BASE_MS", "10"),
        ],
    );
    let out = run(&env, &["run", "--policy", &policy]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(emulator.writes(), 0);
    assert!(
        out.stdout
            .contains("listing the project's pipelines (GET /projects/:id/pipelines) failed"),
        "{}",
        out.all()
    );
}

/// `inventory` records the commits in use (all of them, with their
/// sources), and `plan` then decides offline exactly as `run --dry-run`.
#[test]
fn plan_from_an_inventory_decides_as_run_dry_run() {
    let Project { emulator, .. } = project(Config::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_file(&dir);
    let inventory = dir.path().join("inventory.json");
    let out = run(
        &emulator.ci_env(),
        &["inventory", "--output", inventory.to_str().expect("path")],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let snapshot = report_json(&inventory);
    let in_use = &snapshot["in_use"]["1"];
    assert_eq!(in_use["complete"], true, "{snapshot}");
    assert_eq!(in_use["listed"]["last_deployments"], 100);
    assert_eq!(in_use["listed"]["environments"], ".*");
    // Every successful deployment of the live environments (5 + 4) and the
    // two running pipelines.
    assert_eq!(
        in_use["commits"].as_array().map(Vec::len),
        Some(11),
        "{in_use}"
    );
    // The inventory asks each listing once: 2 + 2 + 8.
    assert_eq!(in_use_requests(&emulator), (2, 2, 8));

    let dry = dir.path().join("dry.json");
    let out = run(
        &emulator.ci_env(),
        &[
            "run",
            "--policy",
            &policy,
            "--dry-run",
            "--report",
            dry.to_str().expect("path"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let planned = dir.path().join("plan.json");
    let out = run(
        &[],
        &[
            "plan",
            "--inventory",
            inventory.to_str().expect("path"),
            "--policy",
            &policy,
            "--report",
            planned.to_str().expect("path"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let (dry, planned) = (report_json(&dry), report_json(&planned));
    assert_eq!(dry["repositories"], planned["repositories"]);
    assert_eq!(dry["totals"], planned["totals"]);
    assert_eq!(planned["totals"]["protected"], 18);

    // An inventory without the section, or one that lists less than the
    // policy asks: nothing deleted, exit 1, and why.
    let mut without = snapshot.clone();
    without.as_object_mut().expect("object").remove("in_use");
    let mut less = snapshot.clone();
    less["in_use"]["1"]["listed"]["last_deployments"] = 2.into();
    for (name, inventory, why) in [
        (
            "without.json",
            without,
            "the project's commits in use are not known",
        ),
        (
            "less.json",
            less,
            "has 2 deployments per environment, and protect_in_use asks for the last 3",
        ),
    ] {
        let path = write_file(&dir, name, &inventory.to_string());
        let report = dir.path().join(format!("{name}.report"));
        let out = run(
            &[],
            &[
                "plan",
                "--inventory",
                &path,
                "--policy",
                &policy,
                "--report",
                report.to_str().expect("path"),
            ],
        );
        assert_eq!(out.code, 1, "{name}: {}", out.all());
        let json = report_json(&report);
        assert_eq!(json["totals"]["deleted"], 0, "{name}");
        assert!(
            json["repositories"][0]["in_use_incomplete"]
                .as_str()
                .is_some_and(|w| w.contains(why)),
            "{name}: {json}"
        );
    }
}

/// A group run lists each project's commits in use from that project.
#[test]
fn a_group_run_asks_each_project() {
    let emulator = Emulator::start(Config {
        group_projects: vec![(2, "group/other".into())],
        ..Config::default()
    });
    emulator.add_deployment(DeploymentSpec::new("production", &sha(1)));
    emulator.add_deployment(DeploymentSpec::new("production", &sha(2)).in_project(2));
    emulator.add_pipeline(PipelineSpec::new(&sha(3), "running").in_project(2));
    for repository in ["group/project", "group/other"] {
        let repo = emulator.repository(repository);
        for n in 1..=4 {
            repo.push_image(Some(&sha(n)[..8]), None);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_file(&dir);
    let token = emulator.config().access_token;
    let env = with(emulator.ci_env(), &[("GITLAB_TOKEN", token.as_str())]);
    let out = run(&env, &["run", "--group", "group", "--policy", &policy]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        names(&emulator, "group/project"),
        vec![sha(1)[..8].to_string()]
    );
    let mut other = names(&emulator, "group/other");
    other.sort();
    assert_eq!(
        other,
        vec![sha(2)[..8].to_string(), sha(3)[..8].to_string()]
    );
    for project in [1, 2] {
        assert_eq!(
            emulator.count("GET", &format!("/projects/{project}/environments")),
            2
        );
        assert_eq!(
            emulator.count("GET", &format!("/projects/{project}/deployments")),
            1
        );
        assert_eq!(
            emulator.count("GET", &format!("/projects/{project}/pipelines")),
            8
        );
    }
}

#[test]
fn the_server_engine_and_instance_mode_refuse_the_block() {
    let emulator = Emulator::start(Config::default());
    emulator.add_tags("", [tag("a"), tag("b")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_file(&dir);
    for (args, needle) in [
        (
            vec!["run", "--engine", "server", "--policy", policy.as_str()],
            "GitLab's bulk delete cannot honour",
        ),
        (
            vec!["check", "--engine", "server", "--policy", policy.as_str()],
            "GitLab's bulk delete cannot honour",
        ),
        (
            vec!["run", "--instance", "--policy", policy.as_str()],
            "--instance knows repositories by path only",
        ),
    ] {
        emulator.reset_requests();
        let out = run(&emulator.laptop_env(), &args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(
            out.stderr.contains(needle) && out.stderr.contains("protect_in_use"),
            "{args:?}: {}",
            out.all()
        );
        assert!(
            out.stderr.contains(&policy),
            "names the file: {}",
            out.all()
        );
        assert_eq!(emulator.writes(), 0);
        assert_eq!(in_use_requests(&emulator), (0, 0, 0));
        if args[1] != "--engine" || args[0] == "check" {
            assert!(
                emulator.requests().is_empty(),
                "{args:?}: {:?}",
                emulator.requests()
            );
        }
    }
    assert_eq!(names(&emulator, "").len(), 2);
}

#[test]
fn check_explains_the_block_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_file(&dir);
    let out = run(&[], &["check", "--policy", &policy]);
    assert_eq!(out.code, 0, "{}", out.all());
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("protect_in_use"))
        .collect();
    assert_eq!(
        lines,
        [
            r#"  in use (protect_in_use): kept before any rule, tags matching "(?P<sha>[0-9a-f]{7,40})" whose sha group starts the commit's SHA (7+ characters) — commits of the last 3 successful deployments of each available environment matching ".*" and of running pipelines; when GitLab cannot list them, nothing is deleted in the project"#
        ]
    );
    // A bad block: file, line and column, exit 2.
    let bad = write_file(&dir, "bad.yml", "protect_in_use:\n  last_deployments: 1000\n  commit: '(?P<sha>[0-9a-f]{7,40})'\nrules: [{delete: a}]\n");
    let out = run(&[], &["check", "--policy", &bad]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains(&format!(
            "{bad}:2:21: protect_in_use.last_deployments: 1000 is too large"
        )),
        "{}",
        out.all()
    );
}

#[test]
fn doctor_checks_each_listing_and_names_the_token() {
    let emulator = Emulator::start(Config::default());
    emulator.add_tags("", [tag("a")]);
    emulator.add_deployment(DeploymentSpec::new("production", &sha(1)));
    emulator.add_pipeline(PipelineSpec::new(&sha(2), "running"));
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_file(&dir);
    let out = run(&emulator.ci_env(), &["doctor", "--policy", &policy]);
    assert_eq!(out.code, 0, "{}", out.all());
    let line = |out: &Output, check: &str| -> String {
        out.stdout
            .lines()
            .find(|l| {
                l.get(6..)
                    .is_some_and(|rest| rest.starts_with(&format!("{check}:")))
            })
            .unwrap_or_else(|| panic!("no {check} line: {}", out.all()))
            .to_string()
    };
    assert!(line(&out, "in use: environments").starts_with("ok    in use: environments: the job token lists 1 available environment (1 matching \".*\")"), "{}", out.all());
    assert!(line(&out, "in use: deployments")
        .starts_with("ok    in use: deployments: the job token reads successful deployments"));
    assert!(line(&out, "in use: pipelines")
        .starts_with("ok    in use: pipelines: the job token lists pipelines (1 running now)"));
    assert_eq!(emulator.writes(), 0);

    emulator.set_config(|c| c.job_token_refused = vec![(InUseListing::Pipelines, 401)]);
    let out = run(&emulator.ci_env(), &["doctor", "--policy", &policy]);
    assert_eq!(out.code, 1, "{}", out.all());
    let refused = line(&out, "in use: pipelines");
    for needle in [
        "fail",
        "GET /projects/:id/pipelines answered 401",
        "GITLAB_TOKEN",
        "read_api",
        "Pipelines: Read",
        "deletes nothing",
    ] {
        assert!(refused.contains(needle), "{needle}: {refused}");
    }
    assert!(line(&out, "in use: deployments").starts_with("ok"));
    // Without the block, doctor asks nothing of these listings.
    emulator.reset_requests();
    let plain = write_file(&dir, "plain.yml", "rules: [{delete: a}]\n");
    let out = run(&emulator.ci_env(), &["doctor", "--policy", &plain]);
    assert!(!out.stdout.contains("in use:"), "{}", out.all());
    assert_eq!(in_use_requests(&emulator), (0, 0, 0));
}
