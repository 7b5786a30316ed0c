//! The offline commands through the real binary: `plan` (no network at all) and `check`.

mod common;

use common::*;

/// `plan --inventory INVENTORY --policy POLICY` at 2026-11-01, which must
/// exit `code`: its output and report.
fn plan_on_the_first_of_november(
    inventory: &str,
    policy: &str,
    code: i32,
) -> (Output, serde_json::Value) {
    let args = [
        "plan",
        "--inventory",
        inventory,
        "--policy",
        policy,
        "--now",
        "2026-11-01T00:00:00Z",
    ];
    run_writing_json(&[], &args, "--report", code)
}

/// The README's first command: the examples planned at a fixed time equal the golden report.
#[test]
fn plan_of_the_examples_matches_the_golden_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("plan.json");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = run(
        &[],
        &[
            "plan",
            "--inventory",
            "examples/inventory.json",
            "--policy",
            "examples/policy.yml",
            "--now",
            "2026-11-01T00:00:00Z",
            "--report",
            report.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has(
        "total: 4 repositories, 191 tags, 91 would delete, 73 kept, 27 protected",
    );
    let golden =
        std::fs::read_to_string(format!("{root}/tests/golden/examples-plan.json")).expect("golden");
    // The golden file says VERSION where the report names the tool's version.
    let written = std::fs::read_to_string(&report).expect("report").replacen(
        &format!("\"tool_version\": \"{}\"", env!("CARGO_PKG_VERSION")),
        "\"tool_version\": \"VERSION\"",
        1,
    );
    assert_eq!(
        written, golden,
        "the plan report differs from tests/golden/examples-plan.json"
    );
}

#[test]
fn plan_reads_its_options_from_the_environment() {
    let root = env!("CARGO_MANIFEST_DIR");
    let env = vec![
        (
            "CLEANUP_INVENTORY".to_string(),
            format!("{root}/examples/inventory.json"),
        ),
        (
            "CLEANUP_POLICY".to_string(),
            format!("{root}/examples/policy.yml"),
        ),
        (
            "CLEANUP_NOW".to_string(),
            "2026-11-01T00:00:00Z".to_string(),
        ),
    ];
    let out = run(&env, &["plan"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("91 would delete");
    // The flag wins over the variable.
    let out = run(&env, &["plan", "--now", "2020-01-01T00:00:00Z"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_lacks("91 would delete");
}

#[test]
fn plan_says_loudly_when_a_repository_would_be_emptied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inventory = write_file(
        &dir,
        "inventory.json",
        r#"{"repositories": [{"path": "g/p", "tags": [{"name": "a"}, {"name": "b"}]}]}"#,
    );
    let policy = write_file(
        &dir,
        "p.yml",
        "protect_latest: false\nrules:\n  - delete: \".*\"\n",
    );
    let out = run(
        &[],
        &["plan", "--inventory", &inventory, "--policy", &policy],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("WARNING: the plan deletes every tag of g/p");
}

#[test]
fn plan_errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let policy = format!("{root}/examples/policy.yml");
    let broken = write_file(
        &dir,
        "broken.json",
        "{\"repositories\": [{\"path\": \"g/p\", \"tags\": [{\"nam\": \"a\"}]}]}",
    );
    for (args, expected) in [
        (vec!["plan", "--policy", &policy], "--inventory <FILE>"),
        (
            vec!["plan", "--inventory", &broken, "--policy", &policy],
            "broken.json:1:",
        ),
        (
            vec![
                "plan",
                "--inventory",
                "/nonexistent.json",
                "--policy",
                &policy,
            ],
            "/nonexistent.json",
        ),
        (
            vec![
                "plan",
                "--inventory",
                &broken,
                "--policy",
                &policy,
                "--now",
                "yesterday",
            ],
            "--now \"yesterday\" is not an RFC 3339 time",
        ),
        (
            vec!["plan", "--inventory", &broken],
            ".gitlab/registry-cleanup.yml",
        ),
    ] {
        let out = run(&[], &args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.all());
        assert!(
            out.stderr.contains(expected),
            "{args:?}: expected {expected:?}: {}",
            out.all()
        );
    }
}

#[test]
fn check_summarises_each_rule() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = run(
        &[],
        &["check", "--policy", &format!("{root}/examples/policy.yml")],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("valid, 5 rules");
    out.assert_stdout_has("review images: in repositories matching");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write_file(
        &dir,
        "bad.yml",
        "rules:\n  - delete: \"mr-.*\"\n    older_than: 14x\n",
    );
    let out = run(&[], &["check", "--policy", &bad]);
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("bad.yml:3:");
}

/// The README's signed example: signatures and attestations follow their
/// images, keep_n counts images, a kept index keeps its child's signature.
#[test]
fn signed_example_deletes_signatures_with_their_images_only() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (out, report) = plan_on_the_first_of_november(
        &format!("{root}/examples/signed-inventory.json"),
        &format!("{root}/examples/signed-policy.yml"),
        0,
    );
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stdout_has("acme/app: 19 tags, 3 would delete, plus 3 signatures/attestations with their images, 12 kept, 1 protected");
    let inventory: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/examples/signed-inventory.json"))
            .expect("inventory"),
    )
    .expect("json");
    let digest_of = |name: &str| -> String {
        inventory["repositories"][0]["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .find(|t| t["name"] == name)
            .and_then(|t| t["digest"].as_str())
            .expect("digest")
            .trim_start_matches("sha256:")
            .to_string()
    };
    let mut deleted: Vec<(String, String)> =
        field_pairs(&report["repositories"][0]["deleted"], "tag", "rule")
            .into_iter()
            .map(|(tag, rule)| (tag.to_string(), rule.to_string()))
            .collect();
    deleted.sort();
    let mut expected = vec![
        ("2.0.0-amd64".to_string(), "per-arch tags".to_string()),
        ("v1.0.0".to_string(), "releases".to_string()),
        ("v1.0.1".to_string(), "releases".to_string()),
        (
            format!("sha256-{}.sig", digest_of("v1.0.0")),
            "with its subject".to_string(),
        ),
        (
            format!("sha256-{}.sig", digest_of("v1.0.1")),
            "with its subject".to_string(),
        ),
        (
            format!("sha256-{}.att", digest_of("v1.0.1")),
            "with its subject".to_string(),
        ),
    ];
    expected.sort();
    assert_eq!(deleted, expected);
}

/// `tests/refs`: git-aware rules planned with the inventory's `refs`; a
/// project whose refs are incomplete, or missing, loses nothing through
/// `when_ref`, and the report says why.
#[test]
fn plan_uses_the_inventorys_refs() {
    let root = env!("CARGO_MANIFEST_DIR");
    // Two projects' refs are unknown or incomplete: part of the policy could
    // not be applied there, like a failed listing: exit 1.
    let (out, report) = plan_on_the_first_of_november(
        &format!("{root}/tests/refs/inventory.json"),
        &format!("{root}/tests/refs/policy.yml"),
        1,
    );
    assert!(report["repositories"][0].get("refs_incomplete").is_none());
    assert!(report["repositories"][1]["refs_incomplete"]
        .as_str()
        .is_some_and(|why| why.contains("403")));
    let repository = |path: &str| repository_entry(&report, path);
    let deleted = |path: &str| {
        let mut deleted = field_pairs(&repository(path)["deleted"], "tag", "rule");
        deleted.sort();
        deleted
    };
    assert_eq!(
        deleted("acme/shop"),
        [
            ("main-00000001", "live branches"),
            ("mr-13-0a1b2c3d", "merge request images"),
            ("old-branch-0000000b", "gone branches"),
        ]
    );
    assert!(repository("acme/shop").get("warnings").is_none());
    for path in ["acme/tools", "acme/legacy"] {
        assert_eq!(deleted(path), [], "{path}");
    }
    let warnings = |path: &str| repository(path)["warnings"].to_string();
    assert!(
        warnings("acme/tools").contains(
            "refs incomplete (GET /projects/8/merge_requests: 403 Forbidden): no tag claimed through when_ref"
        ),
        "{}",
        warnings("acme/tools")
    );
    assert!(
        warnings("acme/legacy")
            .contains("no refs known for the project: no tag claimed through when_ref"),
        "{}",
        warnings("acme/legacy")
    );
    out.assert_stdout_has("refs incomplete (GET /projects/8/merge_requests: 403 Forbidden)");
}

#[test]
fn inventory_refs_are_keyed_by_project_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let policy = format!("{root}/tests/refs/policy.yml");
    for (name, text, expected) in [
        (
            "not-an-id.json",
            r#"{"repositories": [], "refs": {"acme/shop": {"complete": true}}}"#,
            r#"refs: "acme/shop" is not a project id"#,
        ),
        (
            "unknown-field.json",
            r#"{"repositories": [], "refs": {"7": {"complete": true, "branches": []}}}"#,
            "unknown field `branches`",
        ),
        (
            "no-complete.json",
            r#"{"repositories": [], "refs": {"7": {"slugs": ["main"]}}}"#,
            "missing field `complete`",
        ),
    ] {
        let inventory = write_file(&dir, name, text);
        let out = run(
            &[],
            &["plan", "--inventory", &inventory, "--policy", &policy],
        );
        assert_eq!(out.code, 2, "{name}: {}", out.all());
        assert!(out.stderr.contains(expected), "{name}: {}", out.all());
        assert!(out.stderr.contains(name), "{name}: {}", out.all());
    }
}

/// `plan` streams the inventory: the `refs` section is found wherever it
/// is (before or after `repositories`, read first when rules need it), and
/// both orders give the same report, byte for byte.
#[test]
fn plan_gives_the_same_report_whether_refs_come_first_or_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let inventory: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/tests/refs/inventory.json")).expect("inventory"),
    )
    .expect("json");
    let refs_first = format!(
        "{{\"refs\": {}, \"repositories\": {}}}",
        inventory["refs"], inventory["repositories"]
    );
    let refs_last = format!(
        "{{\"repositories\": {}, \"refs\": {}}}",
        inventory["repositories"], inventory["refs"]
    );
    let mut reports = Vec::new();
    for (name, text) in [("first", refs_first), ("last", refs_last)] {
        let file = write_file(&dir, &format!("inventory-{name}.json"), &text);
        let report = dir.path().join(format!("report-{name}.json"));
        let out = run(
            &[],
            &[
                "plan",
                "--inventory",
                &file,
                "--policy",
                &format!("{root}/tests/refs/policy.yml"),
                "--now",
                "2026-11-01T00:00:00Z",
                "--report",
                report.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(
            out.code,
            1,
            "refs incomplete for one project: {}",
            out.all()
        );
        reports.push(std::fs::read_to_string(&report).expect("report"));
    }
    assert_eq!(reports[0], reports[1]);
    assert!(
        reports[0].contains("\"rule\": \"gone branches\""),
        "{}",
        reports[0]
    );
}

/// An inventory found bad half way through (a repository listed twice,
/// after others were planned) stops the plan with exit 2 and leaves no
/// report file, not half of one.
#[test]
fn a_bad_repository_late_in_the_inventory_leaves_no_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let inventory = write_file(
        &dir,
        "inventory.json",
        r#"{"repositories": [
            {"path": "g/a", "tags": [{"name": "mr-1"}]},
            {"path": "g/b", "tags": [{"name": "mr-1"}]},
            {"path": "g/a", "tags": []}]}"#,
    );
    let report = dir.path().join("report.json");
    let out = run(
        &[],
        &[
            "plan",
            "--inventory",
            &inventory,
            "--policy",
            &format!("{root}/examples/policy.yml"),
            "--report",
            report.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("repository g/a is listed twice");
    assert!(!report.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "only the inventory"
    );
}

/// Issue 20: the README, the docs and the components name versions that
/// exist: every pinned `@X.Y.Z` component and `:X.Y.Z` image is the version
/// this checkout builds (`registry-cleanup --version`), so a copied snippet
/// never names a release that is not there (a release bumps both).
#[test]
fn documented_versions_are_this_version() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "templates"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("read dir") {
            files.push(entry.expect("entry").path());
        }
    }
    let pinned =
        regex::Regex::new(r"(?:registry-cleanup/[a-z]+@|registry-cleanup:)(\d+\.\d+\.\d+)")
            .expect("regex");
    let mut seen = 0;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for found in pinned.captures_iter(&text) {
            seen += 1;
            assert_eq!(
                &found[1],
                env!("CARGO_PKG_VERSION"),
                "{} pins {} — not the version this checkout builds",
                file.display(),
                &found[0]
            );
        }
    }
    assert!(seen > 0, "the docs show how to pin a version");
}
