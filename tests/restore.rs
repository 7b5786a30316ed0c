//! `restore`: the real binary puts back what a real run deleted, against
//! the emulator, with counted requests — on a registry that deletes by tag
//! (GitLab's) and on one that cannot (Distribution-like: the run deletes
//! through GitLab's REST API, or by digest with registry credentials only),
//! through signatures, an index with a per-arch tag, a tag pushed again
//! since, and the emulator's garbage collector.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{Duration, Utc};
use common::*;
use gitlab_emulator::{referrer_tag, Collect};
use registry_cleanup::output::journal::{Journal, JournalEntry};

const API: &str = "group/project/api";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Deletes the review tags and the 2.0.0 release with its per-arch tag.
const POLICY: &str = r#"
rules:
  - name: review images
    delete: "mr-.*"
  - name: old release
    delete: "2\\.0\\.0.*"
"#;

fn gitlab_like() -> Config {
    Config {
        grant_push: true,
        ..Config::default()
    }
}

/// Distribution 2.8: no tag delete, no `/gitlab/v1`.
fn distribution_like() -> Config {
    Config {
        tag_delete: false,
        gitlab_v1: false,
        grant_push: true,
        ..Config::default()
    }
}

/// Main (kept), mr-1, mr-2, mr-3 with a signature and an attestation, and
/// the index 2.0.0 over two children, the amd64 one also tagged 2.0.0-amd64.
fn seed(emulator: &Emulator) -> String {
    let repository = emulator.repository("api");
    let built = Utc::now() - Duration::days(3);
    repository.push_image(Some("main"), Some(built));
    repository.push_image(Some("mr-1"), Some(built));
    repository.push_docker_image(Some("mr-2"), Some(built));
    let signed = repository.push_image(Some("mr-3"), Some(built));
    repository.push_signature(&signed, "sig");
    repository.push_signature(&signed, "att");
    let amd64 = repository.push_platform_image(None, "linux", "amd64", Some(built));
    let arm64 = repository.push_platform_image(None, "linux", "arm64", Some(built));
    repository.push_index("2.0.0", &[&amd64, &arm64]);
    repository.tag("2.0.0-amd64", &amd64);
    signed
}

/// Runs `restore ARGS`, asserting the exit code, with no secret in the output.
fn restore(emulator: &Emulator, args: &[&str], code: i32) -> Output {
    let mut all = vec!["restore"];
    all.extend_from_slice(args);
    let out = run(&emulator.ci_env(), &all);
    assert_eq!(out.code, code, "{}", out.all());
    assert_no_secret(emulator, &out);
    out
}

/// The paths (`PUT /v2/…/manifests/<reference>`) of the manifest PUTs, in order.
fn puts(emulator: &Emulator) -> Vec<String> {
    emulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/"))
        .map(|r| r.path.rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}

fn position(list: &[String], item: &str) -> usize {
    list.iter()
        .position(|entry| entry == item)
        .unwrap_or_else(|| panic!("{item} not in {list:?}"))
}

fn json(path: &Path) -> serde_json::Value {
    report_json(path)
}

/// The run deletes 7 tags; restore puts every one back at its digest, the
/// index before its per-arch tag, the signed image before its signature and
/// attestation; a second restore finds them all back and writes nothing.
#[test]
fn a_run_is_undone_tag_for_tag() {
    for (name, config) in [
        ("tag delete", gitlab_like()),
        ("REST delete", distribution_like()),
    ] {
        let emulator = Emulator::start(config);
        let signed = seed(&emulator);
        let before = emulator.tags(API);
        let dir = tempfile::tempdir().expect("tempdir");
        let report = dir.path().join("r.json");
        let report_arg = report.to_str().expect("path");
        let out = run_with_policy(&emulator.ci_env(), POLICY, &["run", "--report", report_arg]);
        assert_eq!(out.code, 0, "{name}: {}", out.all());
        let sig = referrer_tag(&signed, Some("sig"));
        let att = referrer_tag(&signed, Some("att"));
        assert_eq!(names(&emulator, API), ["main"], "{name}: {}", out.all());

        emulator.reset_requests();
        let output = dir.path().join("restored.json");
        let out = restore(
            &emulator,
            &[
                "--report",
                report_arg,
                "--output",
                output.to_str().expect("path"),
            ],
            0,
        );
        assert_eq!(emulator.tags(API), before, "{name}: {}", out.all());
        for tag in ["mr-1", "mr-2", "mr-3", "2.0.0", "2.0.0-amd64", &sig, &att] {
            out.assert_stdout_has(&format!("{API}:{tag}@{}: restored\n", before[tag]));
        }
        out.assert_stdout_has("restore: 7 tags, 7 restored\n");
        let written = json(&output);
        assert_eq!(written["totals"]["restored"], 7, "{written}");
        assert_eq!(written["tags"][0]["from"], "registry", "{written}");

        // The order the registry needs.
        let puts = puts(&emulator);
        assert_eq!(puts.len(), 7, "{name}: {puts:?}");
        assert!(
            position(&puts, "2.0.0") < position(&puts, "2.0.0-amd64"),
            "{puts:?}"
        );
        assert!(position(&puts, "mr-3") < position(&puts, &sig), "{puts:?}");
        assert!(position(&puts, "mr-3") < position(&puts, &att), "{puts:?}");
        // Counted: per tag one HEAD (is the tag back?), one GET by digest
        // (the manifest the registry kept), one PUT; GET /v2/ twice
        // (anonymous, then what a token may learn) and one pull,push token.
        assert_eq!(emulator.count("HEAD", "/manifests/"), 7, "{name}");
        assert_eq!(emulator.count("GET", "/manifests/sha256:"), 7, "{name}");
        assert_eq!(emulator.count("DELETE", "/"), 0, "{name}");
        assert_eq!(emulator.count("GET", "/jwt/auth"), 1, "{name}");
        assert_eq!(emulator.requests().len(), 7 * 3 + 2 + 1, "{name}");

        // Again: every tag is back already, and nothing is written.
        emulator.reset_requests();
        let out = restore(&emulator, &["--report", report_arg], 0);
        out.assert_stdout_has("restore: 7 tags, 0 restored, 7 already back\n");
        assert_eq!(emulator.writes(), 0, "{name}");
        assert_eq!(emulator.count("HEAD", "/manifests/"), 7, "{name}");
        assert_eq!(emulator.requests().len(), 7 + 2 + 1, "{name}");
    }
}

/// A dry run says what it would put back, and writes nothing; `--tag` and
/// `--repository` pick; a name the record does not have is refused before
/// any request.
#[test]
fn a_dry_run_and_the_picks() {
    let emulator = Emulator::start(gitlab_like());
    seed(&emulator);
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("r.json");
    let report_arg = report.to_str().expect("path");
    let out = run_with_policy(&emulator.ci_env(), POLICY, &["run", "--report", report_arg]);
    assert_eq!(out.code, 0, "{}", out.all());
    let after_run = emulator.tags(API);

    emulator.reset_requests();
    let out = restore(&emulator, &["--report", report_arg, "--dry-run"], 0);
    out.assert_stdout_has("restore: 7 tags, 7 would be restored\n");
    out.assert_stdout_has(":mr-1@sha256:");
    out.assert_stdout_has(": would restore\n");
    assert_eq!(emulator.writes(), 0);
    assert_eq!(emulator.tags(API), after_run);

    emulator.reset_requests();
    let out = restore(
        &emulator,
        &[
            "--report",
            report_arg,
            "--repository",
            "api",
            "--tag",
            "mr-2",
            "--tag",
            "mr-1",
        ],
        0,
    );
    out.assert_stdout_has("restore: 2 tags, 2 restored\n");
    // Two independent tags: put back concurrently, in either order.
    let mut put = puts(&emulator);
    put.sort();
    assert_eq!(put, ["mr-1", "mr-2"]);
    assert_eq!(names(&emulator, API), ["main", "mr-1", "mr-2"]);

    // Names the record does not have: exit 2, no request at all.
    emulator.reset_requests();
    for (args, needle) in [
        (&["--tag", "main"][..], "--tag main: "),
        (&["--repository", "web"][..], "--repository \"web\": "),
    ] {
        let mut all = vec!["--report", report_arg];
        all.extend_from_slice(args);
        let out = restore(&emulator, &all, 2);
        out.assert_stderr_has(needle);
        out.assert_stderr_has("Nothing was restored");
        assert_eq!(emulator.requests().len(), 0, "{}", out.all());
    }
}

/// A tag pushed again since the run is left as it is, and said so; a tag
/// another push put back at the same digest is "already back".
#[test]
fn a_tag_pushed_again_is_left_alone() {
    let emulator = Emulator::start(gitlab_like());
    let repository = emulator.repository("api");
    let built = Utc::now() - Duration::days(3);
    repository.push_image(Some("main"), Some(built));
    repository.push_image(Some("mr-1"), Some(built));
    let two = repository.push_image(Some("mr-2"), Some(built));
    repository.push_image(Some("mr-3"), Some(built));
    let (_, report) = run_policy(&emulator.ci_env(), DELETE_REVIEW_TAGS, &["run"]);
    assert_eq!(names(&emulator, API), ["main"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(&dir, "r.json", &report.to_string());

    let newer = repository.push_image(Some("mr-1"), Some(Utc::now()));
    repository.tag("mr-2", &two);
    emulator.reset_requests();
    let out = restore(&emulator, &["--report", &path], 0);
    out.assert_stdout_has(":mr-1@sha256:");
    out.assert_stdout_has(&format!(": left alone: pushed again since, now {newer}\n"));
    out.assert_stdout_has(&format!("{API}:mr-2@{two}: already back\n"));
    out.assert_stdout_has(
        "restore: 3 tags, 1 restored, 1 already back, 1 left alone (pushed again since)\n",
    );
    assert_eq!(puts(&emulator), ["mr-3"]);
    assert_eq!(emulator.tags(API)["mr-1"], newer);
}

/// The garbage collector removed one deleted tag's manifest: that tag
/// fails ("gone: garbage-collected", exit 1) and its signature stays away;
/// the tag whose image another tag still names comes back.
#[test]
fn a_garbage_collected_manifest_fails_alone() {
    let emulator = Emulator::start(gitlab_like());
    let repository = emulator.repository("api");
    let built = Utc::now() - Duration::days(3);
    let shared = repository.push_image(Some("stable"), Some(built));
    repository.tag("mr-2", &shared);
    let lost = repository.push_image(Some("mr-1"), Some(built));
    let signature = repository.push_signature(&lost, "sig");
    // The signature's manifest outlives the collection (another tag names it).
    repository.tag("signature-copy", &signature);
    let (_, report) = run_policy(&emulator.ci_env(), DELETE_REVIEW_TAGS, &["run"]);
    let sig = referrer_tag(&lost, Some("sig"));
    assert_eq!(names(&emulator, API), ["signature-copy", "stable"]);

    let collected = emulator.garbage_collect(Collect::UntaggedManifests);
    assert_eq!(collected.manifests, 1, "mr-1's manifest alone");
    assert!(repository.manifest(&lost).is_none());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(&dir, "r.json", &report.to_string());
    emulator.reset_requests();
    let out = restore(&emulator, &["--report", &path], 1);
    out.assert_stdout_has(&format!(
        "{API}:mr-1@{lost}: FAILED: gone: garbage-collected (the registry no longer has the manifest {lost}"
    ));
    out.assert_stdout_has(&format!("{API}:mr-2@{shared}: restored\n"));
    out.assert_stdout_has(&format!(
        "{API}:{sig}@{signature}: skipped: not put back: its subject {lost} (mr-1) could not be restored\n"
    ));
    out.assert_stdout_has("restore: 3 tags, 1 restored, 1 failed, 1 skipped\n");
    // Nothing else was touched.
    assert_eq!(puts(&emulator), ["mr-2"]);
    assert_eq!(emulator.count("DELETE", "/"), 0);
    assert_eq!(names(&emulator, API), ["mr-2", "signature-copy", "stable"]);
}

/// A report of a dry run: nothing was deleted, nothing is restored, and no
/// request is sent.
#[test]
fn a_dry_runs_report_restores_nothing() {
    let emulator = Emulator::start(gitlab_like());
    seed(&emulator);
    let (_, report) = run_policy(&emulator.ci_env(), POLICY, &["run", "--dry-run"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(&dir, "plan.json", &report.to_string());
    let output = dir.path().join("out.json");
    emulator.reset_requests();
    let out = restore(
        &emulator,
        &[
            "--report",
            &path,
            "--output",
            output.to_str().expect("path"),
        ],
        0,
    );
    out.assert_stdout_has("nothing was deleted, so nothing is restored");
    assert_eq!(emulator.requests().len(), 0);
    assert_eq!(json(&output)["totals"]["tags"], 0);
}

/// Bad input: exit 2, naming the file, no request.
#[test]
fn a_file_that_is_no_record_is_refused() {
    let emulator = Emulator::start(gitlab_like());
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", DELETE_REVIEW_TAGS);
    let out = restore(&emulator, &["--report", &policy], 2);
    out.assert_stderr_has("policy.yml is neither a registry-cleanup report nor its journal");
    let missing = dir.path().join("missing.json");
    let out = restore(&emulator, &["--report", missing.to_str().expect("path")], 2);
    out.assert_stderr_has("missing.json");
    let out = run(&emulator.ci_env(), &["restore"]);
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("--report");
    assert_eq!(emulator.requests().len(), 0);
}

/// An image made of given blobs, told apart by an annotation: two such
/// images share their blobs and differ in digest.
fn image_of(emulator: &Emulator, tag: &str, config: &[u8], layer: &[u8]) -> (String, Vec<u8>) {
    let config_digest = emulator.put_blob("api", config);
    let layer_digest = emulator.put_blob("api", layer);
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": layer.len(), "digest": layer_digest}],
        "annotations": {"org.opencontainers.image.ref.name": tag},
    })
    .to_string()
    .into_bytes();
    let digest = emulator
        .put_manifest("api", tag, OCI_MANIFEST, &body)
        .expect("pushed");
    (digest, body)
}

/// What a live run's journal holds for a digest delete: the entry with
/// the manifest's bytes.
fn journal_entry(tag: &str, digest: &str, media_type: &str, body: &[u8]) -> JournalEntry {
    JournalEntry {
        repository: API.to_string(),
        tag: tag.to_string(),
        digest: Some(digest.to_string()),
        media_type: Some(media_type.to_string()),
        outcome: "deleted".to_string(),
        time: Utc::now(),
        rule: None,
        referrer: false,
        manifest: Some(base64::engine::general_purpose::STANDARD.encode(body)),
    }
}

/// `delete` with registry credentials only, on Distribution: by digest.
fn delete_by_digest(emulator: &Emulator, tags: &[&str]) {
    let env = without(emulator.ci_env(), &["CI_JOB_TOKEN"]);
    let mut args = vec!["delete", "--repository", "api"];
    args.extend_from_slice(tags);
    let out = run(&env, &args);
    assert_eq!(out.code, 0, "{}", out.all());
}

fn journal_beside(dir: &tempfile::TempDir, entries: &[JournalEntry]) -> PathBuf {
    let report = dir.path().join("r.json");
    let journal = Journal::create(&registry_cleanup::output::journal::journal_path(&report))
        .expect("journal");
    for entry in entries {
        journal.append(entry).expect("append");
    }
    report
}

/// Where the deletion removed the manifest itself (a digest delete with
/// registry credentials only), the journal's copy puts it back while the
/// registry has its blobs. Once the garbage collector has taken the blobs
/// of one image, that image fails alone — in the dry run already, which
/// checks the blobs a copy needs. The run was "killed": there is no report,
/// only its journal, which `--report r.json` finds beside it.
#[test]
fn the_journals_copy_puts_back_a_manifest_deleted_by_digest() {
    let emulator = Emulator::start(distribution_like());
    // `main` and `mr-2` share their blobs; `mr-1`'s are its own.
    image_of(&emulator, "main", b"{\"shared\":1}", b"shared layer");
    let (two, two_body) = image_of(&emulator, "mr-2", b"{\"shared\":1}", b"shared layer");
    let (one, one_body) = image_of(&emulator, "mr-1", b"{\"own\":1}", b"own layer");
    let dir = tempfile::tempdir().expect("tempdir");
    let report = journal_beside(
        &dir,
        &[
            journal_entry("mr-1", &one, OCI_MANIFEST, &one_body),
            journal_entry("mr-2", &two, OCI_MANIFEST, &two_body),
        ],
    );
    let report = report.to_str().expect("path");
    delete_by_digest(&emulator, &["mr-1", "mr-2"]);
    let repository = emulator.repository("api");
    assert!(repository.manifest(&one).is_none() && repository.manifest(&two).is_none());

    emulator.reset_requests();
    let out = restore(&emulator, &["--report", report, "--dry-run"], 0);
    out.assert_stdout_has(&format!(
        "{API}:mr-1@{one}: would restore from the journal's copy of the manifest\n"
    ));
    assert_eq!(emulator.writes(), 0);
    // Each copy's two blobs checked.
    assert_eq!(emulator.count("HEAD", "/blobs/"), 4);

    let collected = emulator.garbage_collect(Collect::Blobs);
    assert_eq!(collected.blobs, 2, "mr-1's config and layer");
    let out = restore(&emulator, &["--report", report, "--dry-run"], 1);
    out.assert_stdout_has(&format!("{API}:mr-1@{one}: FAILED: gone: garbage-collected (the journal kept the manifest, but the registry no longer has the blob"));
    assert_eq!(emulator.writes(), 0);

    emulator.reset_requests();
    let out = restore(&emulator, &["--report", report], 1);
    out.assert_stdout_has(&format!(
        "{API}:mr-2@{two}: restored from the journal's copy of the manifest\n"
    ));
    out.assert_stdout_has(&format!("{API}:mr-1@{one}: FAILED: gone: garbage-collected (the registry refused the manifest: MANIFEST_BLOB_UNKNOWN"));
    out.assert_stdout_has("restore: 2 tags, 1 restored, 1 failed\n");
    // The copy is put back as it is: no GET by digest, one PUT per tag.
    assert_eq!(emulator.count("GET", "/manifests/"), 0);
    assert_eq!(puts(&emulator).len(), 2);
    let tags = emulator.tags(API);
    assert_eq!(tags.get("mr-2"), Some(&two));
    assert_eq!(tags.get("mr-1"), None);
}

/// An index and its per-arch tag deleted by digest: the index's child is
/// gone with the per-arch tag. The index is put back first — its missing
/// child by digest, from the per-arch tag's copy — then the per-arch tag.
#[test]
fn an_index_comes_back_with_the_child_it_lost() {
    let emulator = Emulator::start(distribution_like());
    let repository = emulator.repository("api");
    let built = Utc::now() - Duration::days(3);
    let amd64 = repository.push_platform_image(None, "linux", "amd64", Some(built));
    let arm64 = repository.push_platform_image(None, "linux", "arm64", Some(built));
    let index = repository.push_index("3.0.0", &[&amd64, &arm64]);
    repository.tag("3.0.0-amd64", &amd64);
    repository.push_image(Some("main"), Some(built));
    let index_body = repository.manifest(&index).expect("index");
    let child_body = repository.manifest(&amd64).expect("child");
    let dir = tempfile::tempdir().expect("tempdir");
    let report = journal_beside(
        &dir,
        &[
            journal_entry("3.0.0-amd64", &amd64, OCI_MANIFEST, &child_body),
            journal_entry("3.0.0", &index, gitlab_emulator::OCI_INDEX, &index_body),
        ],
    );
    delete_by_digest(&emulator, &["3.0.0", "3.0.0-amd64"]);
    assert!(
        repository.manifest(&amd64).is_none(),
        "the child went by digest"
    );
    let before: BTreeMap<String, String> =
        [("main".to_string(), emulator.tags(API)["main"].clone())].into();
    assert_eq!(emulator.tags(API), before);

    emulator.reset_requests();
    let out = restore(&emulator, &["--report", report.to_str().expect("path")], 0);
    out.assert_stdout_has("restore: 2 tags, 2 restored\n");
    // Refused for its missing child, the child by digest, the index again,
    // then the per-arch tag.
    assert_eq!(
        puts(&emulator),
        ["3.0.0", amd64.as_str(), "3.0.0", "3.0.0-amd64"]
    );
    let tags = emulator.tags(API);
    assert_eq!(tags["3.0.0"], index);
    assert_eq!(tags["3.0.0-amd64"], amd64);
    assert!(repository.manifest(&arm64).is_some());
}

/// A registry that answers a digest with other bytes (here the emulator's
/// seeded tags: a declared digest over bytes made up for it) gets nothing
/// put back: under the tag, those bytes would name another manifest.
#[test]
fn a_manifest_that_is_not_the_recorded_one_is_not_put_back() {
    let emulator = Emulator::start(gitlab_like());
    let declared = format!("sha256:{}", "ab".repeat(32));
    emulator.add_tags(
        "api",
        [
            TagSpec {
                digest: Some(declared.clone()),
                ..tag("mr-1")
            },
            tag("main"),
        ],
    );
    let (_, report) = run_policy(&emulator.ci_env(), DELETE_REVIEW_TAGS, &["run"]);
    assert_eq!(names(&emulator, API), ["main"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(&dir, "r.json", &report.to_string());
    emulator.reset_requests();
    let out = restore(&emulator, &["--report", &path], 1);
    out.assert_stdout_has(&format!(
        "{API}:mr-1@{declared}: FAILED: not put back: the registry answered for {declared} with other bytes"
    ));
    out.assert_stdout_has("restore: 1 tag, 0 restored, 1 failed\n");
    assert_eq!(puts(&emulator), Vec::<String>::new());
    assert_eq!(names(&emulator, API), ["main"]);
}
