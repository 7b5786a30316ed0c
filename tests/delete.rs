//! `registry-cleanup delete` against the emulator: the real binary, counted requests.

mod common;

use common::*;

const ROOT: &str = "group/project";

fn emulator(config: Config) -> Emulator {
    let emulator = Emulator::start(config);
    emulator.add_repository("");
    emulator.add_repository("api");
    emulator
}

#[test]
fn deletes_named_tags_and_nothing_else() {
    let emulator = emulator(Config::default());
    emulator.add_tags(ROOT, [tag("mr-1"), tag("mr-2"), tag("main"), tag("latest")]);
    let out = run(&emulator.ci_env(), &["delete", "mr-1", "mr-2"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project:mr-1: deleted");
    out.assert_stdout_has("group/project:mr-2: deleted");
    assert_eq!(names(&emulator, ROOT), vec!["latest", "main"]);
    assert_eq!(emulator.count("DELETE", "/v2/group/project/manifests/"), 2);
    assert_eq!(emulator.writes(), 2);
}

#[test]
fn missing_tag_is_already_absent_not_an_error() {
    let emulator = emulator(Config::default());
    emulator.add_tags(ROOT, [tag("main")]);
    let out = run(&emulator.ci_env(), &["delete", "gone"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project:gone: already absent");
    out.assert_stdout_has("1 already absent");
}

#[test]
fn dry_run_sends_no_write() {
    let emulator = emulator(Config::default());
    emulator.add_tags(ROOT, [tag("mr-1"), tag("main")]);
    let out = run(&emulator.ci_env(), &["delete", "--dry-run", "mr-1", "nope"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project:mr-1: would delete");
    out.assert_stdout_has("group/project:nope: already absent");
    assert_eq!(emulator.writes(), 0);
    assert_eq!(names(&emulator, ROOT), vec!["main", "mr-1"]);

    let out = run(
        &with(emulator.ci_env(), &[("CLEANUP_DRY_RUN", "true")]),
        &["delete", "mr-1"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("would delete");
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn repositories_relative_full_and_all() {
    let emulator = emulator(Config::default());
    emulator.add_tags(ROOT, [tag("x"), tag("keep")]);
    emulator.add_tags("group/project/api", [tag("x"), tag("keep")]);
    let out = run(&emulator.ci_env(), &["delete", "--repository", "api", "x"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(names(&emulator, "group/project/api"), vec!["keep"]);
    assert_eq!(names(&emulator, ROOT), vec!["keep", "x"]);

    emulator.add_tag("group/project/api", tag("y"));
    let out = run(
        &emulator.ci_env(),
        &[
            "delete",
            "--repository",
            "group/project/api",
            "--repository",
            ".",
            "y",
            "x",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project/api:x: already absent");
    assert_eq!(names(&emulator, ROOT), vec!["keep"]);
    assert_eq!(names(&emulator, "group/project/api"), vec!["keep"]);

    emulator.add_tags(ROOT, [tag("z")]);
    emulator.add_tags("group/project/api", [tag("z")]);
    let out = run(&emulator.ci_env(), &["delete", "--all-repositories", "z"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(names(&emulator, ROOT), vec!["keep"]);
    assert_eq!(names(&emulator, "group/project/api"), vec!["keep"]);
}

#[test]
fn protected_tag_is_skipped_with_reason() {
    let emulator = emulator(Config::default());
    emulator.add_tags(
        ROOT,
        [
            TagSpec {
                protected: true,
                ..tag("v1.0.0")
            },
            tag("mr-3"),
        ],
    );
    let out = run(&emulator.ci_env(), &["delete", "v1.0.0", "mr-3"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project:v1.0.0: skipped: ");
    out.assert_stdout_has("protected");
    assert_eq!(names(&emulator, ROOT), vec!["v1.0.0"]);
}

#[test]
fn distribution_registry_falls_back_to_rest_and_keeps_shared_digest_siblings() {
    let emulator = emulator(Config {
        tag_delete: false,
        ..Config::default()
    });
    let shared = digest(7);
    emulator.add_tags(
        ROOT,
        [
            tag_with_digest("mr-1", &shared),
            tag_with_digest("v1.0.0", &shared),
            tag("other"),
        ],
    );
    let out = run(&emulator.ci_env(), &["delete", "mr-1"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project:mr-1: deleted");
    let tags = emulator.tags(ROOT);
    assert_eq!(tags.get("v1.0.0"), Some(&shared), "sibling kept its digest");
    assert!(!tags.contains_key("mr-1"));
    // One refused tag delete on the registry, then GitLab's single-tag delete.
    assert_eq!(emulator.count("DELETE", "/registry/repositories/"), 1);
    assert_eq!(emulator.count("DELETE", &format!("/manifests/{shared}")), 0);
}

#[test]
fn registry_only_deletes_unique_digests_and_moves_shared_tags_off() {
    let emulator = emulator(Config {
        tag_delete: false,
        grant_push: true,
        ..Config::default()
    });
    let shared = digest(8);
    emulator.add_tags(
        ROOT,
        [
            tag_with_digest("a", &shared),
            tag_with_digest("b", &shared),
            tag("unique"),
            tag("main"),
        ],
    );
    let env = without(emulator.ci_env(), &["CI_JOB_TOKEN", "GITLAB_TOKEN"]);
    let out = run(&env, &["delete", "a", "unique", "missing"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project:a: deleted");
    out.assert_stdout_has("group/project:unique: deleted");
    out.assert_stdout_has("group/project:missing: already absent");
    let tags = emulator.tags(ROOT);
    assert_eq!(tags.keys().collect::<Vec<_>>(), vec!["b", "main"]);
    assert_eq!(tags.get("b"), Some(&shared));
    assert_eq!(
        emulator.count("DELETE", "/registry/repositories/"),
        0,
        "no REST without REST credentials"
    );
}

#[test]
fn registry_only_without_push_refuses_a_shared_tag() {
    let emulator = emulator(Config {
        tag_delete: false,
        grant_push: false,
        ..Config::default()
    });
    let shared = digest(9);
    emulator.add_tags(
        ROOT,
        [tag_with_digest("a", &shared), tag_with_digest("b", &shared)],
    );
    let env = without(emulator.ci_env(), &["CI_JOB_TOKEN", "GITLAB_TOKEN"]);
    let out = run(&env, &["delete", "a"]);
    assert_eq!(out.code, 1, "{}", out.all());
    out.assert_stdout_has("group/project:a: failed: refused");
    out.assert_stdout_has("b share(s) its manifest");
    assert_eq!(emulator.tags(ROOT).len(), 2, "nothing deleted");
    assert_eq!(emulator.count("DELETE", &format!("/manifests/{shared}")), 0);
}

#[test]
fn deleting_both_sharing_tags_deletes_the_digest_once() {
    let emulator = emulator(Config {
        tag_delete: false,
        ..Config::default()
    });
    let shared = digest(10);
    emulator.add_tags(
        ROOT,
        [
            tag_with_digest("a", &shared),
            tag_with_digest("b", &shared),
            tag("c"),
        ],
    );
    let env = without(emulator.ci_env(), &["CI_JOB_TOKEN", "GITLAB_TOKEN"]);
    let out = run(&env, &["delete", "a", "b"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(names(&emulator, ROOT), vec!["c"]);
    assert_eq!(emulator.count("DELETE", &format!("/manifests/{shared}")), 1);
}

#[test]
fn missing_delete_permission_is_named() {
    let emulator = emulator(Config {
        grant_delete: false,
        ..Config::default()
    });
    emulator.add_tags(ROOT, [tag("mr-1")]);
    let out = run(&emulator.ci_env(), &["delete", "mr-1"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains("lacks delete (granted: pull)"),
        "{}",
        out.all()
    );
    assert_eq!(emulator.writes(), 0);
}

#[test]
fn foreign_realm_gets_no_credentials() {
    let foreign = Emulator::start(Config::default());
    let emulator = emulator(Config {
        realm_override: Some(format!("{}/jwt/auth", foreign.gitlab_url())),
        ..Config::default()
    });
    emulator.add_tags(ROOT, [tag("mr-1")]);
    let out = run(&emulator.ci_env(), &["delete", "mr-1"]);
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("not on CI_SERVER_URL's origin");
    assert!(
        foreign.requests().is_empty(),
        "the foreign realm was contacted"
    );
    assert_eq!(names(&emulator, ROOT), vec!["mr-1"]);
}

#[test]
fn report_lists_every_outcome() {
    let emulator = emulator(Config::default());
    emulator.add_tags(
        ROOT,
        [
            tag("mr-1"),
            TagSpec {
                protected: true,
                ..tag("v2")
            },
        ],
    );
    let (_, report) = run_writing_json(
        &emulator.ci_env(),
        &["delete", "mr-1", "v2", "gone"],
        "--report",
        0,
    );
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["totals"]["deleted"], 1);
    assert_eq!(report["totals"]["skipped"], 1);
    assert_eq!(report["totals"]["already_absent"], 1);
    assert_eq!(report["repositories"][0]["deleted"][0]["tag"], "mr-1");
    assert_eq!(report["repositories"][0]["skipped"][0]["tag"], "v2");
}

#[test]
fn bad_input_exits_2_before_any_request() {
    let emulator = emulator(Config::default());
    emulator.add_tags(ROOT, [tag("a")]);
    for (env, args, expected) in [
        (
            without(emulator.ci_env(), &["CI_SERVER_URL"]),
            vec!["delete", "a"],
            "CI_SERVER_URL is not set",
        ),
        (
            with(emulator.ci_env(), &[("CI_PROJECT_ID", "abc")]),
            vec!["delete", "a"],
            "CI_PROJECT_ID=\"abc\"",
        ),
        (
            with(emulator.ci_env(), &[("CLEANUP_CONCURRENCY", "many")]),
            vec!["delete", "a"],
            "CLEANUP_CONCURRENCY=\"many\"",
        ),
        (
            emulator.ci_env(),
            vec!["delete", "a/b"],
            "REF \"a/b\" is not a tag name",
        ),
        (
            emulator.ci_env(),
            vec!["delete", "--repository", "other.example.com/x/y", "a"],
            "another registry",
        ),
        (emulator.ci_env(), vec!["delete"], "REF"),
        (emulator.ci_env(), vec!["delete", "--bogus", "a"], "--bogus"),
        (
            with(emulator.ci_env(), &[("CLEANUP_LOG", "info,[")]),
            vec!["delete", "a"],
            "CLEANUP_LOG",
        ),
    ] {
        emulator.reset_requests();
        let out = run(&env, &args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(
            out.stderr.contains(expected),
            "{args:?}: expected {expected:?} in {}",
            out.all()
        );
        assert!(emulator.requests().is_empty(), "{args:?} sent requests");
    }
    assert_eq!(names(&emulator, ROOT), vec!["a"]);
}

/// A retried delete that finds the tag gone: after an attempt that may have got
/// through (a 5xx, a dropped connection) our own delete did it, and the report
/// says deleted; after a refusal that changed nothing (429) it was already absent.
#[test]
fn a_lost_answer_is_reported_as_deleted_and_a_refusal_is_not() {
    let manifests = "/v2/group/project/manifests/";
    let emulator = emulator(Config {
        scripted_faults: vec![
            ScriptedFault::lost_answer("DELETE", &format!("{manifests}mr-502"), Some(502)),
            ScriptedFault::lost_answer("DELETE", &format!("{manifests}mr-drop"), None),
            ScriptedFault::refused("DELETE", &format!("{manifests}gone"), 429),
        ],
        ..Config::default()
    });
    emulator.add_tags(ROOT, [tag("mr-502"), tag("mr-drop"), tag("main")]);
    let (out, report) = run_writing_json(
        &emulator.ci_env(),
        &["delete", "mr-502", "mr-drop", "gone"],
        "--report",
        0,
    );
    for line in [
        "group/project:mr-502: deleted",
        "group/project:mr-drop: deleted",
        "group/project:gone: already absent",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in {}", out.all());
    }
    // Each faulted delete really was sent twice, and the second found it gone.
    assert_eq!(emulator.count("DELETE", &format!("{manifests}mr-502")), 2);
    assert_eq!(emulator.count("DELETE", &format!("{manifests}mr-drop")), 2);
    assert_eq!(emulator.count("DELETE", &format!("{manifests}gone")), 2);
    assert_eq!(report["totals"]["deleted"], 2, "{report}");
    assert_eq!(report["totals"]["already_absent"], 1, "{report}");
    assert_eq!(names(&emulator, ROOT), vec!["main"]);
}

/// The same through GitLab's REST delete on a registry that cannot delete by
/// tag, where newer GitLab answers 403 for a tag that is not there.
#[test]
fn a_lost_rest_answer_followed_by_403_is_reported_as_deleted() {
    let emulator = emulator(Config {
        tag_delete: false,
        missing_tag_delete_status: 403,
        scripted_faults: vec![ScriptedFault::lost_answer(
            "DELETE",
            "/registry/repositories/1/tags/mr-1",
            Some(500),
        )],
        ..Config::default()
    });
    emulator.add_tags(ROOT, [tag("mr-1"), tag("main")]);
    let out = run(&emulator.ci_env(), &["delete", "mr-1", "gone"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project:mr-1: deleted");
    out.assert_stdout_has("group/project:gone: already absent");
    assert_eq!(
        emulator.count("DELETE", "/registry/repositories/1/tags/mr-1"),
        2
    );
    assert_eq!(names(&emulator, ROOT), vec!["main"]);
}

/// Names are parsed once, at the edge: every bad one is refused with exit 2
/// before the first request, whichever layer would have noticed it later.
/// (An upper-case digest and a `.x` path segment once got past one check to
/// fail another, the path after two requests with exit 1.)
#[test]
fn every_bad_name_exits_2_before_the_first_request() {
    let upper_case_digest = format!("sha256:{}", "AB".repeat(32));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["delete", &upper_case_digest], "is not a digest"),
        (vec!["delete", "sha256:abc"], "is not a digest"),
        (vec!["delete", "../x"], "is not a tag name"),
        (vec!["delete", ".hidden"], "is not a tag name"),
        (
            vec!["delete", "--repository", "group/project/.x", "mr-1"],
            "not a valid repository path",
        ),
        (
            vec!["delete", "--repository", ".x", "mr-1"],
            "not a valid repository path",
        ),
        (
            vec!["delete", "--repository", "api-", "mr-1"],
            "not a valid repository path",
        ),
        (
            vec![
                "delete",
                "--dry-run",
                "--repository",
                "group/project/x.",
                "mr-1",
            ],
            "not a valid repository path",
        ),
        (
            vec!["inventory", "--repository", "group/project/.x"],
            "not a valid repository path",
        ),
    ];
    for (args, message) in cases {
        let emulator = emulator(Config::default());
        emulator.add_tags(ROOT, [tag("mr-1")]);
        let out = run(&emulator.ci_env(), &args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(out.stderr.contains(message), "{args:?}: {}", out.all());
        assert!(
            emulator.requests().is_empty(),
            "{args:?}: {} requests before the name was refused",
            emulator.requests().len()
        );
    }
}

/// `delete` ends like `run`: per-repository summary lines from the report,
/// then the total, so the summary and the report cannot disagree.
#[test]
fn delete_summary_comes_from_its_report() {
    let emulator = emulator(Config::default());
    emulator.add_tags(ROOT, [tag("mr-1"), tag("main")]);
    let (out, json) = run_writing_json(
        &emulator.ci_env(),
        &["delete", "mr-1", "gone"],
        "--report",
        0,
    );
    assert_eq!(json["totals"]["deleted"], 1);
    assert_eq!(json["totals"]["already_absent"], 1);
    out.assert_stdout_has(
        "group/project: 2 tags, 1 deleted, 0 kept, 0 protected, 1 already absent",
    );
    let mut last = out.stdout.lines().rev();
    assert!(
        last.next()
            .is_some_and(|line| line.starts_with("elapsed: ") && line.ends_with(" s")),
        "the summary ends with the elapsed time: {}",
        out.all()
    );
    assert!(
        last.next().is_some_and(|line| line
            == "total: 1 repository, 2 tags, 1 deleted, 0 kept, 0 protected, 1 already absent"),
        "{}",
        out.all()
    );
}

/// A multi-arch index `2.0.0` (amd64 + arm64 children, by digest) with a
/// per-arch tag `2.0.0-amd64` on its amd64 child: (index, amd64, arm64).
fn multi_arch(emulator: &Emulator) -> (String, String, String) {
    let repo = emulator.repository("");
    let built = chrono::Utc::now() - chrono::Duration::days(3);
    let amd64 = repo.push_platform_image(None, "linux", "amd64", Some(built));
    let arm64 = repo.push_platform_image(None, "linux", "arm64", Some(built));
    let index = repo.push_index("2.0.0", &[&amd64, &arm64]);
    repo.tag("2.0.0-amd64", &amd64);
    (index, amd64, arm64)
}

fn registry_only(emulator: &Emulator) -> Vec<(String, String)> {
    without(emulator.ci_env(), &["CI_JOB_TOKEN", "GITLAB_TOKEN"])
}

/// Issue 10, reproduction 3: on a registry that cannot delete by tag, with
/// registry credentials only, deleting the per-arch tag of a kept index's
/// child must not delete the child's digest (Distribution would leave the
/// index pointing at nothing). The tag is moved onto a throw-away manifest
/// and that is deleted; the fresh listing costs one GET per tag, as many
/// requests as the HEADs it replaces, and no manifest is fetched twice.
#[test]
fn registry_only_keeps_the_child_of_a_kept_index() {
    let emulator = emulator(Config {
        tag_delete: false,
        gitlab_v1: false,
        grant_push: true,
        ..Config::default()
    });
    let (index, amd64, arm64) = multi_arch(&emulator);
    let out = run(&registry_only(&emulator), &["delete", "2.0.0-amd64"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project:2.0.0-amd64: deleted");
    let repo = emulator.repository("");
    assert_eq!(
        repo.tags().into_iter().collect::<Vec<_>>(),
        vec![("2.0.0".to_string(), index.clone())]
    );
    for digest in [&index, &amd64, &arm64] {
        assert!(repo.manifest(digest).is_some(), "{digest} is gone");
    }
    let manifests = "/v2/group/project/manifests/";
    // The refused tag delete, one tag list, one GET per tag (2), no HEAD, no
    // GET by digest; then the throw-away manifest: blob upload (POST, PUT),
    // manifest PUT onto the tag, DELETE of the throw-away digest.
    assert_eq!(
        emulator.count("DELETE", &format!("{manifests}2.0.0-amd64")),
        1
    );
    assert_eq!(emulator.count("GET", "/v2/group/project/tags/list"), 1);
    assert_eq!(emulator.count("GET", manifests), 2);
    assert_eq!(emulator.count("GET", &format!("{manifests}sha256:")), 0);
    assert_eq!(emulator.count("HEAD", manifests), 0);
    assert_eq!(emulator.count("PUT", &format!("{manifests}2.0.0-amd64")), 1);
    assert_eq!(emulator.count("DELETE", &format!("{manifests}{amd64}")), 0);
    assert_eq!(emulator.count("DELETE", &format!("{manifests}sha256:")), 1);
    assert_eq!(emulator.writes(), 5, "{:?}", emulator.requests());

    // The index and both children still resolve by digest through the tool.
    let out = run(
        &registry_only(&emulator),
        &["delete", "--dry-run", &index, &amd64, &arm64],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        out.stdout.matches(": would delete").count(),
        3,
        "{}",
        out.all()
    );
}

#[test]
fn registry_only_without_push_refuses_the_child_of_a_kept_index() {
    let emulator = emulator(Config {
        tag_delete: false,
        gitlab_v1: false,
        grant_push: false,
        ..Config::default()
    });
    let (index, amd64, arm64) = multi_arch(&emulator);
    let before = emulator.tags(ROOT);
    let out = run(&registry_only(&emulator), &["delete", "2.0.0-amd64"]);
    assert_eq!(out.code, 1, "{}", out.all());
    out.assert_stdout_has("group/project:2.0.0-amd64: failed: refused");
    out.assert_stdout_has("still part of the kept image index 2.0.0");
    out.assert_stdout_has("lack push permission");
    assert_eq!(emulator.tags(ROOT), before, "nothing changed");
    let repo = emulator.repository("");
    for digest in [&index, &amd64, &arm64] {
        assert!(repo.manifest(digest).is_some(), "{digest} is gone");
    }
    // Only the refused tag delete was sent.
    assert_eq!(emulator.writes(), 1, "{:?}", emulator.requests());
}

/// A signature tag `sha256-<hex>.sig` that stays names the image as subject:
/// deleting the image's tag moves it off instead of deleting the digest the
/// kept signature points at.
#[test]
fn registry_only_keeps_the_subject_of_a_kept_signature() {
    let emulator = emulator(Config {
        tag_delete: false,
        gitlab_v1: false,
        grant_push: true,
        ..Config::default()
    });
    let repo = emulator.repository("");
    let image = repo.push_image(Some("1.0.0"), Some(chrono::Utc::now()));
    let signature = repo.push_signature(&image, "sig");
    let signature_tag = gitlab_emulator::referrer_tag(&image, Some("sig"));
    let out = run(&registry_only(&emulator), &["delete", "1.0.0"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project:1.0.0: deleted");
    assert_eq!(
        repo.tags().into_iter().collect::<Vec<_>>(),
        vec![(signature_tag, signature)]
    );
    assert!(repo.manifest(&image).is_some(), "the signed image is gone");
    assert_eq!(
        emulator.count("DELETE", &format!("/manifests/{image}")),
        0,
        "the subject was deleted by digest"
    );
    assert_eq!(emulator.count("DELETE", "/manifests/sha256:"), 1);

    // Without push: refused, with the referrer named.
    let emulator = self::emulator(Config {
        tag_delete: false,
        gitlab_v1: false,
        ..Config::default()
    });
    let repo = emulator.repository("");
    let image = repo.push_image(Some("1.0.0"), Some(chrono::Utc::now()));
    repo.push_signature(&image, "sig");
    let out = run(&registry_only(&emulator), &["delete", "1.0.0"]);
    assert_eq!(out.code, 1, "{}", out.all());
    out.assert_stdout_has(&format!(
        "the kept referrer {} names it as subject",
        gitlab_emulator::referrer_tag(&image, Some("sig"))
    ));
    assert_eq!(emulator.count("DELETE", "/manifests/sha256:"), 0);
    assert_eq!(repo.tags().len(), 2);
}

/// Deleting an index and its child together by digest: the index goes first,
/// so GitLab's registry never answers 409 for the child.
#[test]
fn registry_only_deletes_an_index_before_its_children() {
    let emulator = emulator(Config {
        tag_delete: false,
        gitlab_v1: true,
        ..Config::default()
    });
    let (index, amd64, arm64) = multi_arch(&emulator);
    let out = run(
        &registry_only(&emulator),
        &["delete", "2.0.0-amd64", "2.0.0"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let repo = emulator.repository("");
    assert!(repo.tags().is_empty(), "{:?}", repo.tags());
    assert!(repo.manifest(&index).is_none());
    assert!(repo.manifest(&amd64).is_none());
    assert!(repo.manifest(&arm64).is_some(), "an untagged child stays");
    assert_eq!(emulator.count("DELETE", "/manifests/sha256:"), 2);
}

/// GitLab's registry refuses to delete a manifest an index lists (409
/// MANIFEST_REFERENCED): reported failed, exit 1, sent once.
#[test]
fn a_manifest_referenced_answer_is_a_failure_not_retried() {
    let emulator = emulator(Config::default());
    let (index, amd64, _) = multi_arch(&emulator);
    let out = run(&emulator.ci_env(), &["delete", &amd64]);
    assert_eq!(out.code, 1, "{}", out.all());
    out.assert_stdout_has(&format!(
        "group/project@{amd64}: failed: not deleted: still part of an image index"
    ));
    assert_eq!(emulator.count("DELETE", "/manifests/"), 1);
    let repo = emulator.repository("");
    assert!(repo.manifest(&amd64).is_some());
    assert_eq!(repo.tags().get("2.0.0"), Some(&index));

    // The same on the registry-only fallback, where only an untagged index
    // lists the tagged manifest (so the fresh listing cannot know of it).
    let emulator = self::emulator(Config {
        tag_delete: false,
        ..Config::default()
    });
    let repo = emulator.repository("");
    let image = repo.push_image(Some("solo"), Some(chrono::Utc::now()));
    repo.push_index_of(None, gitlab_emulator::OCI_INDEX, &[&image]);
    let out = run(&registry_only(&emulator), &["delete", "solo"]);
    assert_eq!(out.code, 1, "{}", out.all());
    out.assert_stdout_has("group/project:solo: failed: not deleted: still part of an image index");
    assert_eq!(emulator.count("DELETE", &format!("/manifests/{image}")), 1);
    assert_eq!(repo.tags().get("solo"), Some(&image));
}

/// GitLab deletes a tag on a registry without tag delete by pointing it at
/// one shared dummy manifest and deleting that: two at once in the same
/// repository race (a tag can be left pointing at nothing). So the REST
/// fallback sends them one at a time: with 10 tags and room for 8 requests,
/// never more than one request in flight once the fallback starts.
#[test]
fn rest_fallback_deletes_one_tag_at_a_time_per_repository() {
    let emulator = emulator(Config {
        tag_delete: false,
        latency: std::time::Duration::from_millis(5),
        ..Config::default()
    });
    let names: Vec<String> = (0..10).map(|i| format!("mr-{i}")).collect();
    emulator.add_tags(ROOT, names.iter().map(|name| tag(name)));
    let mut args = vec!["delete", "--concurrency", "8"];
    args.extend(names.iter().map(String::as_str));
    let out = run(&emulator.ci_env(), &args);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(emulator.tags(ROOT).is_empty(), "{}", out.all());
    assert_eq!(emulator.count("DELETE", "/registry/repositories/"), 10);
    assert_eq!(emulator.max_in_flight(), 1, "{}", out.all());
}

fn ruled(config: Config) -> Config {
    Config {
        tag_rules: gitlab_emulator::TagRules {
            delete_deny: vec!["^v".into()],
            immutable: vec!["^rel-".into()],
        },
        ..config
    }
}

/// GitLab's registry refuses every digest delete where tag rules exist (401
/// `PROTECTED_MANIFEST`). On a registry without tag delete and without REST
/// credentials no tag can go: each fails with the reason, and no digest
/// delete (nor throw-away manifest) is sent, since the token carries rules.
#[test]
fn tag_rules_close_the_digest_path_for_registry_only_credentials() {
    let emulator = emulator(ruled(Config {
        tag_delete: false,
        grant_push: true,
        ..Config::default()
    }));
    let shared = digest(8);
    emulator.add_tags(
        ROOT,
        [
            tag_with_digest("a", &shared),
            tag_with_digest("b", &shared),
            tag("unique"),
            tag("v1"),
        ],
    );
    let out = run(&registry_only(&emulator), &["delete", "a", "unique"]);
    assert_eq!(out.code, 1, "{}", out.all());
    for tag in ["a", "unique"] {
        assert!(
            out.all().contains(&format!("group/project:{tag}: failed"))
                && out.all().contains("PROTECTED_MANIFEST"),
            "{}",
            out.all()
        );
    }
    assert_eq!(emulator.count("DELETE", "/manifests/sha256:"), 0);
    assert_eq!(emulator.count("PUT", "/manifests/"), 0);
    assert_eq!(emulator.tags(ROOT).len(), 4);

    // A token without the rules (issued before them): the registry's first
    // 401 PROTECTED_MANIFEST closes the path; no throw-away manifest follows.
    emulator.set_config(|config| config.tag_rules_in_jwt = false);
    emulator.reset_requests();
    let out = run(&registry_only(&emulator), &["delete", "a", "unique"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("PROTECTED_MANIFEST"), "{}", out.all());
    assert_eq!(emulator.count("DELETE", "/manifests/sha256:"), 1);
    assert_eq!(emulator.count("PUT", "/manifests/"), 0);
    assert_eq!(emulator.count("GET", "/jwt/auth"), 1, "no token refresh");
    assert_eq!(emulator.tags(ROOT).len(), 4);
}

/// Rules created after the token was issued: the registry's 401
/// `IMMUTABLE_TAG` / `PROTECTED_TAG` mark the tag skipped, not failed, and
/// never make the client fetch new tokens.
#[test]
fn rule_refusals_are_skipped_without_a_token_refresh() {
    let emulator = emulator(ruled(Config {
        tag_rules_in_jwt: false,
        ..Config::default()
    }));
    emulator.add_tags(ROOT, [tag("rel-1"), tag("v2"), tag("mr-1")]);
    let (_, report) = run_writing_json(
        &emulator.ci_env(),
        &["delete", "rel-1", "v2", "mr-1"],
        "--report",
        0,
    );
    assert_eq!(report["totals"]["skipped"], 2, "{report}");
    assert_eq!(report["totals"]["failed"], 0, "{report}");
    let reasons: Vec<String> = report["repositories"][0]["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| s["reason"].as_str().expect("reason").to_string())
        .collect();
    // Each named for what it is: immutable binds everyone, a protection
    // rule this user.
    let mut reasons = reasons;
    reasons.sort();
    assert!(
        reasons[0].starts_with("immutable: the registry refused to delete it (401 IMMUTABLE_TAG"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with(
            "protected by a GitLab tag rule: the registry refused to delete it (401 PROTECTED_TAG"
        ),
        "{reasons:?}"
    );
    assert_eq!(emulator.count("GET", "/jwt/auth"), 1, "no refresh loop");
    assert_eq!(emulator.count("DELETE", "/manifests/"), 3);
    assert_eq!(names(&emulator, ROOT), ["rel-1", "v2"]);
}

/// REST single-tag delete of a rule-protected tag (403): skipped.
#[test]
fn rest_refusal_of_a_rule_protected_tag_is_skipped() {
    let emulator = emulator(ruled(Config {
        tag_delete: false,
        ..Config::default()
    }));
    emulator.add_tags(ROOT, [tag("rel-1"), tag("v2"), tag("mr-1")]);
    let out = run(&emulator.ci_env(), &["delete", "rel-1", "v2", "mr-1"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project:rel-1: skipped");
    out.assert_stdout_has("group/project:v2: skipped");
    assert_eq!(names(&emulator, ROOT), ["rel-1", "v2"]);
    assert_eq!(emulator.count("DELETE", "/manifests/sha256:"), 0);
}

/// GitLab's registry names its capabilities on `GET /v2/`: no probe is sent
/// for what it already said (a refused tag delete, a `/gitlab/v1` 404).
#[test]
fn capability_headers_replace_the_probes() {
    for (headers, probes) in [(true, 0), (false, 1)] {
        // GitLab's registry without the metadata database.
        let emulator = emulator(Config {
            gitlab_v1: false,
            capability_headers: headers,
            ..Config::default()
        });
        emulator.add_tags(ROOT, [tag("mr-1"), tag("main")]);
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = write_file(&dir, "p.yml", "rules:\n  - delete: \"mr-.*\"\n");
        let out = run(&emulator.ci_env(), &["run", "--policy", &policy]);
        assert_eq!(out.code, 0, "{}", out.all());
        assert_eq!(
            emulator.count("GET", "/gitlab/v1/"),
            probes,
            "headers {headers}"
        );
        assert_eq!(names(&emulator, ROOT), ["main"]);

        // A registry whose features do not include tag delete.
        let tamper = gitlab_emulator::Tamper::on(Some("GET"), "/v2/")
            .header("gitlab-container-registry-features", "other_feature");
        let emulator = emulator_with(Config {
            tag_delete: false,
            gitlab_v1: false,
            tamper: if headers { vec![tamper] } else { vec![] },
            ..Config::default()
        });
        emulator.add_tags(ROOT, [tag("mr-1"), tag("main")]);
        let out = run(&emulator.ci_env(), &["delete", "mr-1"]);
        assert_eq!(out.code, 0, "{}", out.all());
        let refused = emulator
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path.contains("/manifests/") && r.status == 400)
            .count();
        assert_eq!(refused, probes, "headers {headers}");
        assert_eq!(names(&emulator, ROOT), ["main"]);
    }
}

fn emulator_with(config: Config) -> Emulator {
    emulator(config)
}

/// A misspelt `--repository` is an error naming the project's repositories
/// (exit 2), found through the REST listing before any registry request —
/// not "already absent" and green, which an `on_stop` job would repeat forever.
#[test]
fn a_repository_the_project_does_not_have_is_refused_naming_the_ones_it_has() {
    let emulator = emulator(Config::default());
    emulator.add_tags(ROOT, [tag("mr-1")]);
    emulator.add_tags("group/project/api", [tag("mr-1")]);
    let out = run(
        &emulator.ci_env(),
        &[
            "delete",
            "--repository",
            "api",
            "--repository",
            "apii",
            "mr-1",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    for needle in [
        "--repository \"apii\"",
        "no container repository group/project/apii",
        "it has group/project, group/project/api",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.all());
    }
    assert_eq!(emulator.count("GET", "/registry/repositories"), 1);
    assert_eq!(emulator.count("GET", "/jwt/auth"), 0, "no token asked for");
    assert!(
        !emulator
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/v2/")),
        "no registry request"
    );
    assert_eq!(emulator.writes(), 0);
    assert_eq!(names(&emulator, "group/project/api"), vec!["mr-1"]);

    // The default repository is the root image: named as such when missing.
    let empty = Emulator::start(Config::default());
    empty.add_repository("api");
    let out = run(&empty.ci_env(), &["delete", "mr-1"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("the default repository (no --repository")
            && out.stderr.contains("it has group/project/api"),
        "{}",
        out.all()
    );

    // Correct names still delete (and the REST ids are known).
    let out = run(
        &emulator.ci_env(),
        &["delete", "--repository", ".", "--repository", "api", "mr-1"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(names(&emulator, "group/project/api"), Vec::<String>::new());
}

/// With registry credentials only, the project's repositories cannot be
/// listed (that is REST): the name is not checked, and a tag that is not
/// there is "already absent" as before (docs: README, "delete").
#[test]
fn without_rest_credentials_the_repository_name_is_not_checked() {
    let emulator = emulator(Config::default());
    let env = without(emulator.ci_env(), &["CI_JOB_TOKEN", "GITLAB_TOKEN"]);
    let out = run(&env, &["delete", "--repository", "apii", "mr-1"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("group/project/apii:mr-1: already absent");
    assert_eq!(emulator.count("GET", "/registry/repositories"), 0);
}

/// Issue 25 (2): an OCI 1.1 artifact tagged by name (`sbom-1.0.0`, as `oras
/// push … --subject` leaves it) names `1.0.0` as its subject in its manifest
/// only — no `sha256-<hex>` tag says so. On a registry that deletes by digest
/// only, deleting `1.0.0` must not delete the image's manifest: the kept
/// artifact's subject would dangle. With push, the tag is moved off onto a
/// throw-away manifest; without, it is refused, naming the artifact.
#[test]
fn registry_only_keeps_the_subject_a_tagged_artifact_names_in_its_manifest() {
    for grant_push in [true, false] {
        let emulator = emulator(Config {
            tag_delete: false,
            gitlab_v1: false,
            grant_push,
            ..Config::default()
        });
        let repo = emulator.repository("");
        let image = repo.push_image(Some("1.0.0"), Some(chrono::Utc::now()));
        let sbom = repo.push_tagged_artifact("sbom-1.0.0", &image, "application/spdx+json");
        let out = run(&registry_only(&emulator), &["delete", "1.0.0"]);
        assert_eq!(
            emulator.count("DELETE", &format!("/manifests/{image}")),
            0,
            "push {grant_push}: the artifact's subject was deleted by digest: {}",
            out.all()
        );
        assert!(
            repo.manifest(&image).is_some(),
            "push {grant_push}: the subject is gone"
        );
        assert_eq!(
            repo.tags().get("sbom-1.0.0"),
            Some(&sbom),
            "push {grant_push}"
        );
        if grant_push {
            assert_eq!(out.code, 0, "{}", out.all());
            out.assert_stdout_has("group/project:1.0.0: deleted");
            assert_eq!(repo.tags().len(), 1, "{:?}", repo.tags());
        } else {
            assert_eq!(out.code, 1, "{}", out.all());
            out.assert_stdout_has("the kept referrer sbom-1.0.0 names it as subject");
            assert_eq!(repo.tags().len(), 2, "{:?}", repo.tags());
            assert_eq!(emulator.count("DELETE", "/manifests/sha256:"), 0);
        }
    }
}

/// Issue 25 (3): on a registry that deletes by digest only, `drop-me` shares
/// its manifest with the kept `keep-me`. The deleter's fresh listing `GET`s
/// every tag to find who shares the digest; when `keep-me`'s `GET` fails (500
/// on every attempt) it cannot prove the digest is unshared, so it must
/// refuse — deleting the digest would take `keep-me` with it.
#[test]
fn registry_only_refuses_when_a_kept_siblings_fetch_fails() {
    let emulator = emulator(Config {
        tag_delete: false,
        gitlab_v1: false,
        grant_push: true,
        ..Config::default()
    });
    let shared = digest(7);
    emulator.add_tags(
        ROOT,
        [
            tag_with_digest("keep-me", &shared),
            tag_with_digest("drop-me", &shared),
        ],
    );
    let before = emulator.tags(ROOT);
    emulator.set_config(|config| {
        config.scripted_faults =
            vec![ScriptedFault::refused("GET", "/manifests/keep-me", 500).times(usize::MAX)];
    });
    let env = with(
        registry_only(&emulator),
        &[
            ("CLEANUP_RETRY_MAX_ATTEMPTS", "2"),
            ("CLEANUP_RETRY_BASE_MS", "1"),
        ],
    );
    let out = run(&env, &["delete", "drop-me"]);
    assert_eq!(out.code, 1, "{}", out.all());
    out.assert_stdout_has("group/project:drop-me: failed: not deleted");
    assert_eq!(emulator.tags(ROOT), before, "nothing may change");
    assert_eq!(emulator.count("DELETE", "/manifests/sha256:"), 0);
    assert_eq!(
        emulator.count("PUT", "/manifests/"),
        0,
        "no tag moved either"
    );
    assert!(
        emulator.count("GET", "/manifests/keep-me") >= 2,
        "the fault was met"
    );
}

/// Issue 20: a 403 is not GitLab's word for protection. A proxy's plain
/// HTML 403 on every tag delete is a failure, counted (report, summary,
/// dotenv) and exit 1 — not "skipped: a protected tag" and exit 0.
#[test]
fn a_plain_403_on_delete_is_a_failure_not_a_protected_tag() {
    let emulator = emulator(Config {
        tamper: vec![gitlab_emulator::Tamper::on(Some("DELETE"), "/manifests/")
            .status(403)
            .header("content-type", "text/html")
            .body(gitlab_emulator::TamperBody::Replace(
                b"<html><body><h1>403 Forbidden</h1></body></html>".to_vec(),
            ))],
        ..Config::default()
    });
    emulator.add_tags(ROOT, (1..=6).map(|i| tag(&format!("mr-{i}"))));
    let dir = tempfile::tempdir().expect("tempdir");
    let dotenv = dir.path().join("counts.env");
    let args: Vec<String> = ["delete", "--dotenv", dotenv.to_str().expect("path")]
        .into_iter()
        .map(String::from)
        .chain((1..=6).map(|i| format!("mr-{i}")))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&emulator.ci_env(), &args);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(
        out.stdout
            .matches(": failed: the registry refused to delete it (403")
            .count(),
        6,
        "{}",
        out.all()
    );
    assert!(!out.stdout.contains("skipped"), "{}", out.all());
    assert!(
        out.stdout
            .contains("total: 1 repository, 6 tags, 0 deleted, 0 kept, 0 protected, 6 failed"),
        "{}",
        out.all()
    );
    let counts = std::fs::read_to_string(&dotenv).expect("dotenv");
    assert!(counts.contains("CLEANUP_FAILED=6\n"), "{counts}");
    assert!(counts.contains("CLEANUP_SKIPPED=0\n"), "{counts}");
    assert_eq!(emulator.tags(ROOT).len(), 6);
}

/// Issue 20: `delete --dry-run` of a tag GitLab's tag rules protect says so
/// (from the `pull,delete` token, as `run` does), where it said "would
/// delete"; the live delete is then refused as the dry run said.
#[test]
fn a_dry_run_names_the_tags_gitlab_rules_protect() {
    let emulator = emulator(ruled(Config::default()));
    emulator.add_tags(ROOT, [tag("stable-2026"), tag("rel-1"), tag("mr-1")]);
    emulator.set_config(|c| c.tag_rules.delete_deny = vec!["^stable-".into()]);
    let out = run(
        &emulator.ci_env(),
        &["delete", "--dry-run", "stable-2026", "rel-1", "mr-1"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("group/project:stable-2026: skipped: protected by GitLab's tag rules: protected by a GitLab tag rule"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout
            .contains("group/project:rel-1: skipped: protected by GitLab's tag rules: immutable"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains("group/project:mr-1: would delete"),
        "{}",
        out.all()
    );
    assert_eq!(emulator.writes(), 0);

    let out = run(
        &emulator.ci_env(),
        &["delete", "stable-2026", "rel-1", "mr-1"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        out.stdout.matches(": skipped: ").count(),
        2,
        "{}",
        out.all()
    );
    assert_eq!(names(&emulator, ROOT), ["rel-1", "stable-2026"]);
}

/// Issue 20: `CI_PROJECT_PATH` naming one project and `CI_PROJECT_ID`
/// another is a configuration error naming both, before anything is
/// deleted — not a quiet clean-up of the id's project.
#[test]
fn a_project_path_and_id_that_disagree_are_refused() {
    let emulator = emulator(Config::default());
    emulator.add_tags(ROOT, [tag("mr-1")]);
    let env = with(
        emulator.ci_env(),
        &[
            ("CI_PROJECT_PATH", "acme/billing"),
            ("CI_REGISTRY_IMAGE", ""),
        ],
    );
    for args in [
        vec!["delete", "mr-1"],
        vec!["delete", "--all-repositories", "mr-1"],
    ] {
        let out = run(&env, &args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(
            out.stderr
                .contains("CI_PROJECT_ID=1 and CI_PROJECT_PATH name different projects")
                && out.stderr.contains("group/project"),
            "{args:?}: {}",
            out.all()
        );
        assert_eq!(emulator.writes(), 0, "{args:?}");
    }
}
