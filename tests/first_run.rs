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
        assert!(
            out.stderr.contains(
                "rule \"branch images\" uses when_ref, which GitLab's bulk delete cannot express"
            ),
            "{}",
            out.all()
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
    assert!(out.stderr.contains("uses when_ref"), "{}", out.all());

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
    assert!(
        out.stderr.contains("one rule per repository"),
        "{}",
        out.all()
    );
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
    assert!(!out.stdout.contains("kept"), "{}", out.all());
    assert!(!out.stdout.contains("protected"), "{}", out.all());
    assert!(
        out.stdout
            .contains("group/project: 2 tags (bulk delete for rule \"rule 1\" accepted"),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains("reports no counts"), "{}", out.all());
}
