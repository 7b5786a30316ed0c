//! A first run that explains itself (issue 15, "errors that teach"): the
//! real binary, against the emulator where the network matters.

mod common;

use common::*;

const GIT_AWARE: &str = "rules:\n  - name: branch images\n    delete: '(?P<ref>[a-z0-9-]+)-[0-9a-f]{8}'\n    when_ref: gone\n";

#[test]
fn check_with_the_server_engine_refuses_what_run_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", GIT_AWARE);
    // The client engine takes it.
    let out = run(&[], &["check", "--policy", &policy]);
    assert_eq!(out.code, 0, "{}", out.all());
    for (args, env) in [
        (
            vec!["check", "--policy", &policy, "--engine", "server"],
            vec![],
        ),
        (
            vec!["check", "--policy", &policy],
            vec![("CLEANUP_ENGINE".to_string(), "server".to_string())],
        ),
    ] {
        let out = run(&env, &args);
        assert_eq!(out.code, 2, "{}", out.all());
        out.assert_stderr_has(
            "rule \"branch images\" uses when_ref, which GitLab's bulk delete cannot express",
        );
    }
    // And `run --engine server` refuses the same policy.
    let emulator = Emulator::start(Config::default());
    emulator.add_repository("");
    emulator.add_tags("group/project", [tag("main-0123abcd")]);
    let out = run(
        &emulator.ci_env(),
        &["run", "--engine", "server", "--policy", &policy],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("uses when_ref");
    assert_eq!(emulator.count("DELETE", "/"), 0, "no bulk call, no delete");
    assert_eq!(emulator.tags("group/project").len(), 1);

    // Two rules where one applies everywhere: refused by both.
    let overlapping = write_file(
        &dir,
        "overlap.yml",
        "rules:\n  - delete: 'mr-.*'\n  - repositories: group/project\n    delete: 'x-.*'\n",
    );
    let out = run(
        &[],
        &["check", "--policy", &overlapping, "--engine", "server"],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("one rule per repository");
    let out = run(
        &emulator.ci_env(),
        &["run", "--engine", "server", "--policy", &overlapping],
    );
    assert_eq!(out.code, 2, "{}", out.all());
}

#[test]
fn the_server_engine_summary_shows_no_counts_it_never_had() {
    let emulator = Emulator::start(Config::default());
    emulator.add_repository("");
    emulator.add_tags("group/project", [tag("mr-1"), tag("main")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", "rules: [{delete: 'mr-.*'}]\n");
    let out = run(
        &emulator.ci_env(),
        &["run", "--engine", "server", "--policy", &policy],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(emulator.bulk_calls().len(), 1);
    out.assert_stdout_lacks("kept");
    out.assert_stdout_lacks("protected");
    assert!(
        out.stdout
            .contains("group/project: 2 tags (bulk delete for rule \"rule 1\" accepted"),
        "{}",
        out.all()
    );
    out.assert_stdout_has("reports no counts");
}

fn seeded() -> Emulator {
    let emulator = Emulator::start(Config::default());
    emulator.add_repository("");
    emulator.add_repository("api");
    emulator.add_tags("group/project", [tag("mr-1"), tag("main")]);
    emulator.add_tags("group/project/api", [tag("mr-1")]);
    emulator
}

fn policy(dir: &tempfile::TempDir) -> String {
    write_file(dir, "policy.yml", "rules: [{delete: 'mr-.*'}]\n")
}

#[test]
fn a_wrong_project_names_its_variable_and_how_to_check_it() {
    let emulator = seeded();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy(&dir);
    let env = with(emulator.ci_env(), &[("CI_PROJECT_ID", "4242")]);
    let out = run(&env, &["run", "--dry-run", "--policy", &policy]);
    assert_eq!(out.code, 2, "{}", out.all());
    let api = format!("{}/api/v4", emulator.gitlab_url());
    for needle in [
        "GitLab has no project CI_PROJECT_ID=4242",
        "check CI_PROJECT_ID",
        &format!("curl --header \"JOB-TOKEN: $CI_JOB_TOKEN\" {api}/projects/4242"),
    ] {
        out.assert_stderr_has(needle);
    }
    // Named by CI_PROJECT_PATH (no id), with an access token.
    let env = with(
        without(emulator.laptop_env(), &["CI_PROJECT_ID"]),
        &[("CI_PROJECT_PATH", "group/other")],
    );
    let out = run(&env, &["run", "--dry-run", "--policy", &policy]);
    assert_eq!(out.code, 2, "{}", out.all());
    for needle in [
        "GitLab has no project CI_PROJECT_PATH=group/other",
        &format!("curl --header \"PRIVATE-TOKEN: $GITLAB_TOKEN\" {api}/projects/group%2Fother"),
    ] {
        out.assert_stderr_has(needle);
    }
    assert_no_secret(&emulator, &out);
}

#[test]
fn a_server_url_with_the_api_suffix_is_a_configuration_error() {
    let emulator = seeded();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy(&dir);
    for suffix in ["/api/v4", "/api/v4/"] {
        let url = format!("{}{suffix}", emulator.gitlab_url());
        let env = with(
            without(emulator.ci_env(), &["CI_API_V4_URL"]),
            &[("CI_SERVER_URL", &url)],
        );
        let out = run(&env, &["run", "--dry-run", "--policy", &policy]);
        assert_eq!(out.code, 2, "{}", out.all());
        out.assert_stderr_has(&format!(
            "ends in /api/v4, but it is GitLab's base URL: drop the suffix (CI_SERVER_URL={})",
            emulator.gitlab_url()
        ));
    }
    assert!(emulator.requests().is_empty());
}

#[test]
fn https_to_a_plain_http_server_says_so() {
    let emulator = seeded();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy(&dir);
    let https = emulator.gitlab_url().replacen("http://", "https://", 1);
    let env = with(
        without(emulator.ci_env(), &["CI_API_V4_URL"]),
        &[("CI_SERVER_URL", &https)],
    );
    // Our configuration, not the server: exit 2 (nothing was deleted).
    let out = run(&env, &["run", "--dry-run", "--policy", &policy]);
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("the server speaks plain HTTP, not HTTPS: use http:// in CI_SERVER_URL");
    // The registry: its URL comes from CLEANUP_REGISTRY_URL.
    let registry = emulator.registry_url().replacen("http://", "https://", 1);
    let env = with(emulator.ci_env(), &[("CLEANUP_REGISTRY_URL", &registry)]);
    let out = run(&env, &["delete", "mr-1"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.all().contains(
            "the server speaks plain HTTP, not HTTPS: use http:// in CLEANUP_REGISTRY_URL"
        ),
        "{}",
        out.all()
    );
    assert_eq!(names(&emulator, "group/project"), ["main", "mr-1"]);
}

#[test]
fn ci_project_id_alone_is_enough() {
    let emulator = seeded();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy(&dir);
    let env = without(emulator.ci_env(), &["CI_PROJECT_PATH", "CI_REGISTRY_IMAGE"]);
    assert!(env.iter().any(|(k, _)| k == "CI_PROJECT_ID"));

    let out = run(&env, &["run", "--dry-run", "--policy", &policy]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project: 2 tags, 1 would delete");
    out.assert_stdout_has("group/project/api: 1 tag, 1 would delete");

    // The root image (the default) and a relative path need the project's
    // path: read from a one-entry page of the repository listing; the full
    // listing then checks the named repository exists (a typo is an error).
    emulator.reset_requests();
    let out = run(&env, &["delete", "mr-1"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project:mr-1: deleted");
    assert_eq!(emulator.count("GET", "/registry/repositories"), 2);
    let out = run(&env, &["delete", "--repository", "api", "mr-1"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project/api:mr-1: deleted");
    assert_eq!(names(&emulator, "group/project"), ["main"]);
    assert!(names(&emulator, "group/project/api").is_empty());

    // A malformed path is still refused before any request.
    emulator.reset_requests();
    let out = run(&env, &["delete", "--repository", "API--", "mr-1"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(emulator.requests().is_empty(), "{:?}", emulator.requests());
}

#[test]
fn ci_project_id_alone_without_any_repository_says_what_to_set() {
    let emulator = Emulator::start(Config::default());
    let env = without(emulator.ci_env(), &["CI_PROJECT_PATH", "CI_REGISTRY_IMAGE"]);
    let out = run(&env, &["delete", "mr-1"]);
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("set CI_PROJECT_PATH (group/project) or CI_REGISTRY_IMAGE");
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn rules_that_do_nothing_are_warned_about_in_run_and_check() {
    let emulator = seeded();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_text = "rules:\n  - name: api reviews\n    repositories: api\n    delete: 'mr-.*'\n  - name: everything\n    delete: '.*'\n    older_than: 30d\n  - name: too late\n    delete: 'mr-.*'\n";
    let policy = write_file(&dir, "policy.yml", policy_text);
    let relative = "rule \"api reviews\" applies to no repository of the project: its `repositories` pattern \"api\" matches none of group/project, group/project/api";
    let suggestion = "repositories: '.*/api'";
    let shadowed = "rule \"too late\" can never claim a tag: the earlier rule \"everything\" claims every tag in every repository";

    let (out, report) = run_policy(&emulator.ci_env(), policy_text, &["run", "--dry-run"]);
    for needle in [relative, suggestion, shadowed] {
        assert!(
            out.stderr.contains(needle),
            "log lacks {needle:?}: {}",
            out.all()
        );
        assert!(
            out.stdout.contains(needle),
            "summary lacks {needle:?}: {}",
            out.all()
        );
    }
    let warnings = report["warnings"].clone();
    let warnings: Vec<String> = serde_json::from_value(warnings).expect("warnings");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with(relative) && warnings[0].contains(suggestion),
        "{warnings:?}"
    );
    assert!(warnings[1].starts_with(shadowed), "{warnings:?}");

    // `check` does not know the repositories: the shadowed rule only.
    let out = run(&[], &["check", "--policy", &policy]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has(&format!("warning: {shadowed}"));
    out.assert_stdout_lacks("applies to no repository");

    // A policy without such mistakes: no warning anywhere.
    let fine = "rules:\n  - repositories: '.*/api'\n    delete: 'mr-.*'\n  - delete: '.*'\n    older_than: 30d\n";
    let (out, report) = run_policy(&emulator.ci_env(), fine, &["run", "--dry-run"]);
    assert!(!out.all().contains("warning:"), "{}", out.all());
    assert!(report.get("warnings").is_none());
    let out = run_with_policy(&[], fine, &["check"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(!out.all().contains("warning"), "{}", out.all());
}

#[test]
fn durations_are_spelled_out_in_check_and_run() {
    let emulator = seeded();
    let policy = "rules:\n  - name: old reviews\n    delete: 'mr-.*'\n    older_than: 6months\n  - name: scratch\n    delete: 'tmp-.*'\n    older_than: 90min\n";
    let out = run_with_policy(&[], policy, &["check"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("only older than 6 months (180 days)");
    out.assert_stdout_has("only older than 90 minutes");
    let out = run_with_policy(&emulator.ci_env(), policy, &["run", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stderr_has("rule old reviews: in repositories matching \".*\", delete tags matching \"mr-.*\", only older than 6 months (180 days)");
    out.assert_stderr_has("only older than 90 minutes");
    // And `6m` is refused, naming both readings.
    let dir = tempfile::tempdir().expect("tempdir");
    let ambiguous = write_file(
        &dir,
        "m.yml",
        "rules:\n  - delete: 'mr-.*'\n    older_than: 6m\n",
    );
    emulator.reset_requests();
    let out = run(
        &emulator.ci_env(),
        &["run", "--dry-run", "--policy", &ambiguous],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("m.yml:3:17: rules[0].older_than: \"6m\" is ambiguous");
    assert!(
        out.stderr.contains("6min") && out.stderr.contains("6month"),
        "{}",
        out.all()
    );
    assert!(emulator.requests().is_empty());
}
