//! Options set through `CLEANUP_*` variables, and what `--help` says about
//! the environment: the real binary, against the emulator where it matters.

mod common;

use common::*;

#[test]
fn cleanup_repository_picks_the_repository_like_the_flag() {
    let emulator = Emulator::start(Config::default());
    emulator.add_repository("");
    emulator.add_repository("api");
    emulator.add_tags("group/project", [tag("mr-1")]);
    emulator.add_tags("group/project/api", [tag("mr-1"), tag("main")]);
    let env = with(emulator.ci_env(), &[("CLEANUP_REPOSITORY", "api")]);
    let out = run(&env, &["delete", "mr-1"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project/api:mr-1: deleted");
    assert_eq!(names(&emulator, "group/project/api"), ["main"]);
    // The root image, the default without the variable, is untouched.
    assert_eq!(names(&emulator, "group/project"), ["mr-1"]);
    assert_eq!(emulator.count("DELETE", "/v2/group/project/manifests/"), 0);
}

#[test]
fn cleanup_all_repositories_reaches_every_repository() {
    let emulator = Emulator::start(Config::default());
    emulator.add_repository("");
    emulator.add_repository("api");
    emulator.add_tags("group/project", [tag("mr-1")]);
    emulator.add_tags("group/project/api", [tag("mr-1")]);
    let env = with(emulator.ci_env(), &[("CLEANUP_ALL_REPOSITORIES", "true")]);
    let out = run(&env, &["delete", "mr-1"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        names(&emulator, "group/project").is_empty(),
        "{}",
        out.all()
    );
    assert!(
        names(&emulator, "group/project/api").is_empty(),
        "{}",
        out.all()
    );
}

#[test]
fn help_names_the_variables_each_command_reads() {
    for command in ["delete", "run", "inventory"] {
        let out = run(&[], &[command, "--help"]);
        assert_eq!(out.code, 0, "{}", out.all());
        for variable in [
            "CI_SERVER_URL",
            "CI_PROJECT_ID",
            "CI_JOB_TOKEN",
            "GITLAB_TOKEN",
            "CI_REGISTRY",
            "CLEANUP_CONCURRENCY",
            "--allow-insecure-http",
        ] {
            assert!(
                out.stdout.contains(variable),
                "{command} --help lacks {variable}:\n{}",
                out.stdout
            );
        }
    }
    for command in ["plan", "check"] {
        let out = run(&[], &[command, "--help"]);
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(
            out.stdout.contains("reads no CI_* variable"),
            "{}",
            out.stdout
        );
        for network in ["--concurrency", "--allow-insecure-http"] {
            assert!(
                !out.stdout.contains(network),
                "{command} --help offers {network}:\n{}",
                out.stdout
            );
        }
    }
    let out = run(&[], &["plan", "--help"]);
    assert!(
        out.stdout
            .contains("Usage: registry-cleanup plan [OPTIONS] --inventory <FILE>"),
        "--inventory is not shown as required:\n{}",
        out.stdout
    );
    assert!(out.stdout.contains("CLEANUP_POLICY"), "{}", out.stdout);
}

#[test]
fn cleanup_inventory_satisfies_the_required_flag() {
    let inventory = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/inventory.json");
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.yml");
    let env = vec![
        ("CLEANUP_INVENTORY".to_string(), inventory.to_string()),
        ("CLEANUP_POLICY".to_string(), policy.to_string()),
    ];
    let out = run(&env, &["plan", "--now", "2026-11-01T00:00:00Z"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("total:");
    let out = run(&[], &["plan"]);
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("--inventory");
}
