//! `registry-cleanup doctor` against the emulator: one line per check, the
//! exit code `run` would have, and never a write.

mod common;

use common::*;

const POLICY: &str = KEEP_THE_NEWEST_REVIEW_TAG;

fn seeded(config: Config) -> Emulator {
    let emulator = Emulator::start(config);
    for repository in ["", "api"] {
        emulator.add_repository(repository);
        emulator.add_tags(repository, [tag("mr-1"), tag("mr-2"), tag("latest")]);
    }
    emulator
}

/// Runs `doctor --policy <valid policy>` with `env`.
fn doctor(env: &[(String, String)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    run(env, &["doctor", "--policy", &policy])
}

/// The line of check `check` (`ok    check: …`), or a panic showing them all.
fn line<'a>(output: &'a Output, check: &str) -> &'a str {
    output
        .stdout
        .lines()
        .find(|line| {
            line.get(6..)
                .is_some_and(|rest| rest.starts_with(&format!("{check}:")))
        })
        .unwrap_or_else(|| panic!("no {check:?} line in:\n{}", output.all()))
}

fn assert_every_line_is_a_verdict(output: &Output) {
    for line in output.stdout.lines() {
        assert!(
            line.starts_with("ok    ") || line.starts_with("warn  ") || line.starts_with("fail  "),
            "not a verdict line: {line:?}\n{}",
            output.all()
        );
    }
}

#[test]
fn a_working_setup_passes_with_the_job_token() {
    let emulator = seeded(Config::default());
    let output = doctor(&emulator.ci_env());
    assert_eq!(output.code, 0, "{}", output.all());
    assert_every_line_is_a_verdict(&output);
    assert!(line(&output, "configuration").starts_with("ok"));
    assert!(
        line(&output, "policy").contains("valid, 1 rule"),
        "{}",
        output.all()
    );
    assert!(
        line(&output, "REST credentials").contains("job token"),
        "{}",
        output.all()
    );
    assert!(line(&output, "registry access (group/project)").starts_with("ok"));
    assert!(line(&output, "registry access (group/project/api)").contains("pull, delete"));
    assert!(line(&output, "registry: tag delete").starts_with("ok"));
    assert!(line(&output, "registry: metadata database").contains("enabled"));
    // The job token cannot read the project: said, as a warning.
    let policy = line(&output, "GitLab cleanup policy");
    assert!(
        policy.starts_with("warn") && policy.contains("GITLAB_TOKEN"),
        "{policy}"
    );
    assert_eq!(emulator.writes(), 0);
    // GitLab's answer was asked for, not assumed.
    let project_reads = emulator
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v4/projects/1")
        .count();
    assert_eq!(project_reads, 1);
}

#[test]
fn an_access_token_reads_the_project_settings_and_gitlab_s_policy_warns() {
    let emulator = seeded(Config {
        container_expiration_policy: Some(serde_json::json!({
            "cadence": "7d",
            "enabled": true,
            "keep_n": 5,
            "older_than": "14d",
            "name_regex": ".*",
            "name_regex_keep": "v.*",
            "next_run_at": "2026-12-08T00:00:00.000Z",
        })),
        container_registry_access_level: "private".into(),
        tag_rules: gitlab_emulator::TagRules {
            delete_deny: vec!["^release-".into()],
            immutable: vec!["^v\\d".into()],
        },
        ..Config::default()
    });
    let output = doctor(&emulator.laptop_env());
    assert_eq!(output.code, 0, "{}", output.all());
    assert_every_line_is_a_verdict(&output);
    let policy = line(&output, "GitLab cleanup policy");
    assert!(policy.starts_with("warn"), "{policy}");
    for part in [
        "enabled, cadence 7d",
        "two cleaners",
        "keep_n 5",
        "older_than 14d",
        "\"v.*\"",
    ] {
        assert!(policy.contains(part), "{part:?} in {policy}");
    }
    assert!(
        line(&output, "registry visibility").contains("private"),
        "{}",
        output.all()
    );
    let rules = line(&output, "GitLab tag rules");
    assert!(
        rules.contains("\"^release-\"") && rules.contains("immutable: \"^v\\\\d\""),
        "{rules}"
    );
    assert!(
        line(&output, "REST credentials").contains("access token"),
        "{}",
        output.all()
    );
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn a_disabled_gitlab_policy_is_ok_and_a_disabled_registry_fails() {
    let emulator = seeded(Config {
        container_registry_access_level: "disabled".into(),
        ..Config::default()
    });
    let output = doctor(&emulator.laptop_env());
    assert!(
        line(&output, "GitLab cleanup policy").starts_with("ok"),
        "{}",
        output.all()
    );
    assert!(
        line(&output, "registry visibility").starts_with("fail"),
        "{}",
        output.all()
    );
    assert_eq!(output.code, 1, "{}", output.all());
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn a_job_token_of_another_project_fails_naming_delete() {
    let emulator = seeded(Config::default());
    let host = emulator.registry_host();
    let env = with(
        emulator.ci_env(),
        &[
            ("CI_PROJECT_ID", "2"),
            ("CI_PROJECT_PATH", "other/project"),
            ("CI_REGISTRY_IMAGE", &format!("{host}/other/project")),
        ],
    );
    let output = doctor(&env);
    assert_eq!(output.code, 1, "{}", output.all());
    assert_every_line_is_a_verdict(&output);
    assert!(
        line(&output, "REST credentials").starts_with("fail"),
        "{}",
        output.all()
    );
    let access = line(&output, "registry access (other/project)");
    assert!(access.starts_with("fail"), "{access}");
    assert!(
        access.contains("grants nothing, not pull, delete"),
        "{access}"
    );
    assert!(access.contains("Developer"), "{access}");
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn a_token_without_delete_fails_naming_the_role_and_scope() {
    let emulator = seeded(Config {
        grant_delete: false,
        ..Config::default()
    });
    let output = doctor(&emulator.ci_env());
    assert_eq!(output.code, 1, "{}", output.all());
    let access = line(&output, "registry access (group/project/api)");
    assert!(access.starts_with("fail"), "{access}");
    assert!(access.contains("grants pull, not delete"), "{access}");
    assert!(access.contains("write_registry"), "{access}");
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn bad_configuration_exits_2_without_a_request() {
    let emulator = seeded(Config::default());
    emulator.reset_requests();
    let output = doctor(&without(emulator.ci_env(), &["CI_SERVER_URL"]));
    assert_eq!(output.code, 2, "{}", output.all());
    let configuration = line(&output, "configuration");
    assert!(
        configuration.starts_with("fail") && configuration.contains("CI_SERVER_URL"),
        "{configuration}"
    );
    assert!(emulator.requests().is_empty());

    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", "rules: [{delete: '('}]\n");
    let output = run(&emulator.ci_env(), &["doctor", "--policy", &policy]);
    assert_eq!(output.code, 2, "{}", output.all());
    assert!(
        line(&output, "policy").starts_with("fail"),
        "{}",
        output.all()
    );
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn an_access_token_s_scopes_are_checked() {
    let emulator = seeded(Config::default());
    let output = doctor(&emulator.laptop_env());
    assert!(
        line(&output, "access token scopes").starts_with("ok    access token scopes: api"),
        "{}",
        output.all()
    );
    // The job token has no scopes to show.
    let output = doctor(&emulator.ci_env());
    output.assert_stdout_lacks("access token scopes");

    emulator.set_config(|c| {
        c.access_token_scopes = vec!["read_api".into(), "read_registry".into()];
        c.access_token_expires_at = Some(
            (chrono::Utc::now() + chrono::Duration::days(2))
                .format("%Y-%m-%d")
                .to_string(),
        );
    });
    let output = doctor(&emulator.laptop_env());
    assert_eq!(output.code, 0, "{}", output.all());
    let scopes = line(&output, "access token scopes");
    assert!(
        scopes.starts_with("warn") && scopes.contains("read_api, read_registry: REST is read-only"),
        "{scopes}"
    );
    assert!(
        line(&output, "access token expiry").starts_with("warn"),
        "{}",
        output.all()
    );

    emulator.set_config(|c| c.access_token_scopes = vec!["read_registry".into()]);
    let output = doctor(&emulator.laptop_env());
    assert_eq!(output.code, 1, "{}", output.all());
    assert!(
        line(&output, "access token scopes").starts_with("fail"),
        "{}",
        output.all()
    );
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn rate_limit_headroom_is_reported() {
    let emulator = seeded(Config {
        rate_limit: Some(gitlab_emulator::RateLimit {
            limit: 1000,
            window: std::time::Duration::from_secs(60),
        }),
        ..Config::default()
    });
    let output = doctor(&emulator.laptop_env());
    assert_eq!(output.code, 0, "{}", output.all());
    let rate = line(&output, "rate limit");
    assert!(
        rate.starts_with("ok") && rate.contains("of 1000 requests left"),
        "{rate}"
    );
}

#[test]
fn no_secret_in_the_output() {
    let emulator = seeded(Config {
        grant_delete: false,
        ..Config::default()
    });
    for env in [emulator.ci_env(), emulator.laptop_env()] {
        assert_no_secret(&emulator, &doctor(&env));
    }
}

/// `doctor --group`: with the job token (which GitLab refuses on group
/// listings) a `fail` line saying which token to create, and no request to
/// the group endpoint; with a group access token, the repositories it lists.
#[test]
fn group_access_is_checked_for_a_group_run() {
    let emulator = seeded(Config {
        group_projects: vec![(2, "group/other".into())],
        ..Config::default()
    });
    emulator.add_tags("group/other/web", [tag("mr-1")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let args = ["doctor", "--policy", policy.as_str(), "--group", "group"];

    let output = run(&emulator.ci_env(), &args);
    assert_eq!(output.code, 1, "{}", output.all());
    assert_every_line_is_a_verdict(&output);
    let group = line(&output, "group access");
    assert!(
        group.starts_with("fail") && group.contains("group access token"),
        "{}",
        output.all()
    );
    assert_eq!(emulator.count("GET", "/groups/"), 0);

    let token = emulator.config().access_token;
    let env = with(emulator.ci_env(), &[("GITLAB_TOKEN", token.as_str())]);
    let output = run(&env, &args);
    let group = line(&output, "group access");
    assert!(
        group.starts_with("ok") && group.contains("3 container repositories in 2 projects"),
        "{}",
        output.all()
    );
    assert_eq!(emulator.count("GET", "/groups/"), 1);
    assert_eq!(emulator.writes(), 0);
}

const GIT_AWARE: &str = "rules:\n  - name: branches\n    delete: '(?P<ref>[a-z0-9-]+)-[0-9a-f]{8}'\n    when_ref: gone\n";

/// Issue 20: a policy with git-aware rules needs the project's refs; doctor
/// lists them with the token the run will use, and fails where `run` would
/// refuse them (and exit 1 in every repository).
#[test]
fn git_aware_rules_make_doctor_check_the_refs() {
    for (refuse, verdict) in [(false, "ok"), (true, "fail")] {
        let emulator = seeded(Config {
            refs_refuse_job_token: refuse,
            ..Config::default()
        });
        emulator.add_branch("main");
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = write_file(&dir, "policy.yml", GIT_AWARE);
        let output = run(&emulator.ci_env(), &["doctor", "--policy", &policy]);
        assert_every_line_is_a_verdict(&output);
        let refs = line(&output, "git refs");
        assert!(refs.starts_with(verdict), "refuse {refuse}: {refs}");
        if refuse {
            assert_eq!(output.code, 1, "{}", output.all());
            assert!(
                refs.contains("GITLAB_TOKEN") && refs.contains("read_api"),
                "{refs}"
            );
        } else {
            assert_eq!(output.code, 0, "{}", output.all());
        }
        assert_eq!(emulator.count("GET", "/repository/branches"), 1);
    }
    // Without git-aware rules, no ref is listed.
    let emulator = seeded(Config::default());
    let output = doctor(&emulator.ci_env());
    assert!(!output.stdout.contains("git refs"), "{}", output.all());
    assert_eq!(emulator.count("GET", "/repository/branches"), 0);
}

/// Issue 20: when neither a registry token with delete nor the project's
/// rules endpoint answers, doctor says the tag rules could not be read —
/// not "none in effect" while a rule exists.
#[test]
fn unread_tag_rules_are_not_reported_as_none() {
    let emulator = seeded(Config {
        grant_delete: false,
        tag_rules: gitlab_emulator::TagRules {
            delete_deny: vec!["^v".into()],
            immutable: vec![],
        },
        tamper: vec![
            gitlab_emulator::Tamper::on(Some("GET"), "/registry/protection/tag/rules").status(403),
        ],
        ..Config::default()
    });
    let output = doctor(&emulator.laptop_env());
    let rules = line(&output, "GitLab tag rules");
    assert!(
        rules.starts_with("warn") && rules.contains("not read"),
        "{rules}"
    );
    assert!(
        !output.stdout.contains("none in effect"),
        "{}",
        output.all()
    );
}

/// Issue 20: a registry URL that points at GitLab itself (404 on `GET
/// /v2/`) gets one line naming the variable to fix, not one per
/// repository; `run` stops on it before any repository, exit 2.
#[test]
fn a_registry_url_that_is_no_registry_is_named_once() {
    let emulator = seeded(Config::default());
    let env = with(
        emulator.ci_env(),
        &[("CLEANUP_REGISTRY_URL", emulator.gitlab_url().as_str())],
    );
    let output = doctor(&env);
    assert_eq!(output.code, 2, "{}", output.all());
    let registry = line(&output, "registry");
    assert!(
        registry.starts_with("fail")
            && registry.contains("CLEANUP_REGISTRY_URL")
            && registry.contains("404"),
        "{registry}"
    );
    assert!(
        !output.stdout.contains("registry access ("),
        "{}",
        output.all()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let out = run(&env, &["run", "--policy", &policy]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert_eq!(
        out.stderr.matches("answered 404 to GET /v2/").count(),
        1,
        "{}",
        out.all()
    );
    assert!(!out.stdout.contains("group/project"), "{}", out.all());
    assert_eq!(emulator.writes(), 0);
}

/// Issue 20: doctor checks for `run`, and `run` without a policy file at the
/// default path exits 2: doctor fails (exit 1) there.
#[test]
fn no_policy_at_the_default_path_fails() {
    let emulator = seeded(Config::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run_in(dir.path(), &emulator.ci_env(), &["doctor"]);
    assert_eq!(output.code, 1, "{}", output.all());
    let policy = line(&output, "policy");
    assert!(
        policy.starts_with("fail") && policy.contains(".gitlab/registry-cleanup.yml"),
        "{policy}"
    );
    let run = run_in(dir.path(), &emulator.ci_env(), &["run"]);
    assert_eq!(run.code, 2, "{}", run.all());
}

/// Issue 20: GitLab's registry names what it can do only to an authorized
/// `GET /v2/`; doctor asks it so, for one request more than the challenge.
#[test]
fn doctor_reads_the_capabilities_from_the_authorized_base_route() {
    let emulator = seeded(Config::default());
    let output = doctor(&emulator.ci_env());
    assert!(
        line(&output, "registry: tag delete").contains("supported"),
        "{}",
        output.all()
    );
    assert!(
        line(&output, "registry: metadata database").contains("enabled"),
        "{}",
        output.all()
    );
    let base_route: Vec<String> = emulator
        .requests()
        .iter()
        .filter(|r| r.path == "/v2/")
        .map(|r| format!("{:?} {}", r.auth, r.status))
        .collect();
    assert_eq!(base_route, ["None 401", "Bearer 200"]);
}

/// Issue 20: an unreachable GitLab is named by its variable, in doctor and
/// in a run (not "check CI_PROJECT_ID").
#[test]
fn an_unreachable_gitlab_names_ci_server_url() {
    let emulator = seeded(Config::default());
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        format!("http://127.0.0.1:{port}")
    };
    let env = with(
        without(emulator.ci_env(), &["CI_API_V4_URL"]),
        &[
            ("CI_SERVER_URL", closed.as_str()),
            ("CLEANUP_RETRY_MAX_ATTEMPTS", "1"),
        ],
    );
    let output = doctor(&env);
    assert_eq!(output.code, 1, "{}", output.all());
    let gitlab = line(&output, "GitLab");
    assert!(
        gitlab.starts_with("fail") && gitlab.contains("CI_SERVER_URL"),
        "{gitlab}"
    );
    assert!(
        !output.stdout.contains("CI_PROJECT_ID / CI_PROJECT_PATH"),
        "{}",
        output.all()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let out = run(&env, &["run", "--policy", &policy]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("GitLab cannot be reached")
            && out.stderr.contains("Check CI_SERVER_URL"),
        "{}",
        out.all()
    );
}
