//! Signatures, attestations and indexes in live listings: the real binary
//! against the emulator, with counted requests. The listing must give the
//! planner every tag's digest and kind (and an index's children), so that a
//! referrer tag can follow its image; and an index is dated by its newest
//! child where only REST dates tags.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use common::*;
use gitlab_emulator::referrer_tag;

const API: &str = "group/project/api";
const KEEP_3: &str = "rules: [{name: all, delete: \".*\", keep_n: 3}]\n";
const KEEP_1: &str = "rules: [{name: all, delete: \".*\", keep_n: 1}]\n";

fn rest_only() -> Config {
    Config {
        gitlab_v1: false,
        ..Config::default()
    }
}

/// `tag → rule` of every tag a report deletes.
fn deleted(report: &serde_json::Value) -> BTreeMap<String, String> {
    report["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .flat_map(|r| r["deleted"].as_array().expect("deleted").iter())
        .map(|d| {
            (
                d["tag"].as_str().expect("tag").to_string(),
                d["rule"].as_str().expect("rule").to_string(),
            )
        })
        .collect()
}

/// Whole-second instants measured from one clock reading per test process,
/// so a date seeded into the emulator and the same date expected later are
/// equal even when a second ticks over between the two calls.
fn days_ago(days: i64) -> DateTime<Utc> {
    static START: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *START.get_or_init(|| Utc::now().trunc_subsecs(0)) - Duration::days(days)
}

/// The report of `run EXTRA` with `policy` as a CI job (exit 0).
fn run_report(emulator: &Emulator, policy: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    run_policy(&emulator.ci_env(), policy, &args).1
}

/// (a) Five signed images under `keep_n: 3`: the three newest and their
/// signatures stay, the two oldest go with theirs — with `/gitlab/v1` and on
/// REST alike.
#[test]
fn signatures_follow_their_images_under_keep_n() {
    for gitlab_v1 in [true, false] {
        let emulator = Emulator::start(Config {
            gitlab_v1,
            ..Config::default()
        });
        let repository = emulator.repository("api");
        let mut signatures = Vec::new();
        for i in 1..=5 {
            let tag = format!("img-{i}");
            let image = repository.push_image(Some(&tag), Some(days_ago(i)));
            // Built and pushed the same day (`/gitlab/v1` ages by the push).
            repository.set_pushed_at(&tag, days_ago(i));
            repository.push_signature(&image, "sig");
            signatures.push(referrer_tag(&image, Some("sig")));
        }
        let report = run_report(&emulator, KEEP_3, &[]);
        let expected: BTreeMap<String, String> = [
            ("img-4".to_string(), "all".to_string()),
            ("img-5".to_string(), "all".to_string()),
            (signatures[3].clone(), "with its subject".to_string()),
            (signatures[4].clone(), "with its subject".to_string()),
        ]
        .into();
        assert_eq!(deleted(&report), expected, "gitlab_v1 {gitlab_v1}");
        let mut left: Vec<String> = ["img-1", "img-2", "img-3"]
            .iter()
            .map(|s| s.to_string())
            .chain(signatures[..3].iter().cloned())
            .collect();
        left.sort();
        assert_eq!(names(&emulator, API), left, "gitlab_v1 {gitlab_v1}");
        // GET /v2/ (anonymous, then with the token), one token, the
        // repository list, then: with /gitlab/v1 one listing page; on REST
        // one tag-list page, 10 details calls and each (undated) signature's
        // manifest. Then the 4 deletes.
        let kinds = kinds(&emulator);
        assert_eq!(kinds.get("DELETE manifest by tag"), Some(&4), "{kinds:?}");
        let expected = if gitlab_v1 { 5 + 4 } else { 5 + 10 + 5 + 4 };
        assert_eq!(emulator.requests().len(), expected, "{kinds:?}");
    }
}

/// (b) A narrower rule: `1.0.0` and `1.0.1` go with their `.sig` and `.att`
/// tags, the three newest stay with theirs, and tags no rule names stay.
#[test]
fn a_narrow_rule_deletes_images_with_their_signatures_and_attestations() {
    for gitlab_v1 in [true, false] {
        let emulator = Emulator::start(Config {
            gitlab_v1,
            ..Config::default()
        });
        let repository = emulator.repository("api");
        let mut referrers = BTreeMap::new();
        for i in 0..5 {
            let tag = format!("1.0.{i}");
            let image = repository.push_image(Some(&tag), Some(days_ago(10 - i)));
            repository.set_pushed_at(&tag, days_ago(10 - i));
            repository.push_signature(&image, "sig");
            repository.push_signature(&image, "att");
            referrers.insert(
                tag,
                [
                    referrer_tag(&image, Some("sig")),
                    referrer_tag(&image, Some("att")),
                ],
            );
        }
        let main = repository.push_image(Some("main"), Some(days_ago(20)));
        repository.set_pushed_at("main", days_ago(20));
        repository.push_signature(&main, "sig");
        let policy = "rules: [{name: releases, delete: '1\\.0\\.\\d+', keep_n: 3}]\n";
        let report = run_report(&emulator, policy, &[]);

        let mut expected = BTreeMap::new();
        for tag in ["1.0.0", "1.0.1"] {
            expected.insert(tag.to_string(), "releases".to_string());
            for referrer in &referrers[tag] {
                expected.insert(referrer.clone(), "with its subject".to_string());
            }
        }
        assert_eq!(deleted(&report), expected, "gitlab_v1 {gitlab_v1}");
        let mut left: Vec<String> = ["1.0.2", "1.0.3", "1.0.4"]
            .iter()
            .flat_map(|tag| {
                let mut tags = vec![tag.to_string()];
                tags.extend(referrers[*tag].iter().cloned());
                tags
            })
            .chain(["main".to_string(), referrer_tag(&main, Some("sig"))])
            .collect();
        left.sort();
        assert_eq!(names(&emulator, API), left, "gitlab_v1 {gitlab_v1}");
        // The summary counts the referrers apart from the images.
        assert_eq!(report["totals"]["deleted"], 6, "{report}");
        assert_eq!(report["totals"]["referrers_deleted"], 4, "{report}");
        // 17 tags. GET /v2/ twice (anonymous, then with the token), one
        // token, the repository list, then: with /gitlab/v1 one listing
        // page; on REST one tag-list page, 17 details calls and the 11
        // (undated) referrer manifests. Then 6 deletes.
        let kinds = kinds(&emulator);
        assert_eq!(kinds.get("DELETE manifest by tag"), Some(&6), "{kinds:?}");
        let expected = if gitlab_v1 { 5 + 6 } else { 5 + 17 + 11 + 6 };
        assert_eq!(emulator.requests().len(), expected, "{kinds:?}");
    }
}

/// A multi-arch index `2.0.0` (children untagged, built 10 and 5 days ago),
/// its signature, and an image `1.0.0` built 2 days ago.
fn index_and_image(config: Config) -> (Emulator, String, [String; 2]) {
    let emulator = Emulator::start(config);
    let repository = emulator.repository("api");
    let amd64 = repository.push_platform_image(None, "linux", "amd64", Some(days_ago(10)));
    let arm64 = repository.push_platform_image(None, "linux", "arm64", Some(days_ago(5)));
    let index = repository.push_index("2.0.0", &[&amd64, &arm64]);
    repository.push_signature(&index, "sig");
    repository.push_image(Some("1.0.0"), Some(days_ago(2)));
    (emulator, index, [amd64, arm64])
}

/// (b) On REST, the index is dated by its newest child (5 days), so the
/// image of 2 days is the one `keep_n: 1` keeps; the index goes, and its
/// signature with it. Each manifest and config is fetched once: the index
/// and the signature (both undated on REST) and each child by digest, one
/// config per child — the dated image costs nothing beyond its details.
#[test]
fn an_index_is_dated_by_its_newest_child_on_rest() {
    let (emulator, index, _) = index_and_image(rest_only());
    // A second tag on the same index: still one fetch per digest.
    emulator.repository("api").tag("2.0", &index);
    let report = run_report(&emulator, KEEP_1, &["--dry-run"]);
    let signature = referrer_tag(&index, Some("sig"));
    let expected: BTreeMap<String, String> = [
        ("2.0".to_string(), "all".to_string()),
        ("2.0.0".to_string(), "all".to_string()),
        (signature, "with its subject".to_string()),
    ]
    .into();
    assert_eq!(deleted(&report), expected);
    assert_eq!(
        emulator.count("GET", "/manifests/sha256:"),
        4,
        "the index, its two children and the signature, once each"
    );
    assert_eq!(
        emulator.count("GET", "/blobs/sha256:"),
        2,
        "one config per child"
    );
    assert_eq!(emulator.count("GET", "/manifests/"), 4, "nothing by tag");
    assert_eq!(emulator.count("HEAD", "/manifests/"), 0);
}

/// With `/gitlab/v1`, media types come with the listing: only the index's
/// manifest is fetched (for its children), no config.
#[test]
fn gitlab_v1_fetches_only_the_index_manifest() {
    let (emulator, index, _) = index_and_image(Config::default());
    emulator.repository("api").tag("2.0", &index);
    run_report(&emulator, KEEP_1, &["--dry-run"]);
    assert_eq!(emulator.count("GET", "/manifests/"), 1, "the index, once");
    assert_eq!(emulator.count("GET", "/blobs/"), 0);
    assert_eq!(
        count_query(&emulator, "GET", "/gitlab/v1/", "referrers=true"),
        1
    );
}

/// (c) A repository without referrer tags costs what it cost before: with
/// no rule needing dates, names only (no details, no manifests); with
/// dates, one details call per tag and nothing else for dated images. One
/// referrer tag makes the names-only listing fetch details.
#[test]
fn repositories_without_referrers_cost_the_same() {
    const NAMES_ONLY: &str = "rules: [{name: all, delete: \"mr-.*\"}]\n";
    let emulator = Emulator::start(rest_only());
    let repository = emulator.repository("api");
    let mut images = Vec::new();
    for i in 1..=4 {
        images.push(repository.push_image(Some(&format!("mr-{i}")), Some(days_ago(i))));
    }
    let id = repository.id();
    let details = format!("/registry/repositories/{id}/tags/");

    run_report(&emulator, NAMES_ONLY, &["--dry-run"]);
    // Names only; the report (a plan `run --plan` may apply) then records
    // each planned deletion's digest: one details call per deletion.
    assert_eq!(
        emulator.count("GET", &details),
        4,
        "names, then the deletions' digests"
    );
    assert_eq!(emulator.count("GET", "/manifests/"), 0);
    assert_eq!(emulator.count("GET", "/blobs/"), 0);

    emulator.reset_requests();
    run_report(&emulator, KEEP_3, &["--dry-run"]);
    assert_eq!(
        emulator.count("GET", &details),
        4,
        "one details call per tag"
    );
    assert_eq!(emulator.count("GET", "/manifests/"), 0);
    assert_eq!(emulator.count("GET", "/blobs/"), 0);

    // A signature: details are needed to tell whose it is (5 tags), and the
    // signature's own manifest (undated: its config has no `created`).
    repository.push_signature(&images[0], "sig");
    emulator.reset_requests();
    let report = run_report(&emulator, NAMES_ONLY, &["--dry-run"]);
    assert_eq!(emulator.count("GET", &details), 5);
    assert_eq!(emulator.count("GET", "/manifests/sha256:"), 1);
    assert_eq!(emulator.count("GET", "/blobs/"), 0);
    assert_eq!(
        deleted(&report).len(),
        5,
        "every mr- image, and the signature with its image: {report}"
    );
}

/// (d) `inventory` records the index's media type and children (and its
/// date from its newest child), the images as images; `plan` over it
/// decides like the live run.
#[test]
fn inventory_records_kinds_and_children_and_plans_like_the_live_run() {
    for gitlab_v1 in [true, false] {
        let (emulator, index, [amd64, arm64]) = index_and_image(Config {
            gitlab_v1,
            ..Config::default()
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, inventory, snapshot) = write_inventory(&emulator.ci_env(), &dir, &[]);
        let tags = snapshot["repositories"][0]["tags"]
            .as_array()
            .expect("tags");
        let tag = |name: &str| {
            tags.iter()
                .find(|t| t["name"] == name)
                .unwrap_or_else(|| panic!("{name} in {snapshot}"))
        };
        let index_tag = tag("2.0.0");
        assert_eq!(index_tag["digest"], index.as_str());
        assert_eq!(index_tag["media_type"], gitlab_emulator::OCI_INDEX);
        assert_eq!(
            index_tag["children"],
            serde_json::json!([amd64, arm64]),
            "gitlab_v1 {gitlab_v1}"
        );
        let image = tag("1.0.0");
        if gitlab_v1 {
            assert!(image["media_type"].is_string(), "{image}");
        } else {
            // REST: the index is dated by its newest child; the image is
            // known to be one (GitLab read its config), its type unguessed.
            let built: DateTime<Utc> = index_tag["created_at"]
                .as_str()
                .expect("dated")
                .parse()
                .expect("time");
            assert_eq!(built, days_ago(5));
            assert_eq!(image["image"], true, "{image}");
            assert!(image.get("media_type").is_none(), "{image}");
        }

        let (_, planned) = run_policy(&[], KEEP_1, &["plan", "--inventory", &inventory]);
        let live = run_report(&emulator, KEEP_1, &[]);
        assert_eq!(deleted(&planned), deleted(&live));
        assert!(
            deleted(&live).contains_key(&referrer_tag(&index, Some("sig")))
                || deleted(&live).contains_key("1.0.0"),
            "{live}"
        );
    }
}

/// Requests per deleted tag over `images` signed images and `indexes`
/// signed two-child indexes, all dated, under `keep_n: 5`: printed (run
/// with `--nocapture`) and pinned by kind. On REST the index ages cost one
/// child manifest and one config per child; without them an index would
/// still cost its own manifest (its kind and children).
#[test]
fn requests_per_deleted_tag_with_indexes_and_signatures() {
    const IMAGES: usize = 40;
    const INDEXES: usize = 10;
    for gitlab_v1 in [true, false] {
        let emulator = Emulator::start(Config {
            gitlab_v1,
            ..Config::default()
        });
        let repository = emulator.repository("api");
        for i in 0..IMAGES {
            let image =
                repository.push_image(Some(&format!("img-{i:02}")), Some(days_ago(i as i64 + 1)));
            repository.push_signature(&image, "sig");
        }
        for i in 0..INDEXES {
            let built = days_ago(i as i64 + 1) - Duration::hours(12);
            let amd64 = repository.push_platform_image(None, "linux", "amd64", Some(built));
            let arm64 = repository.push_platform_image(
                None,
                "linux",
                "arm64",
                Some(built - Duration::hours(1)),
            );
            let index = repository.push_index(&format!("idx-{i:02}"), &[&amd64, &arm64]);
            repository.push_signature(&index, "sig");
        }
        let report = run_report(
            &emulator,
            "rules: [{name: all, delete: \".*\", keep_n: 5}]\n",
            &[],
        );
        let deleted = deleted(&report).len();
        let total = emulator.requests().len();
        let manifests = emulator.count("GET", "/manifests/sha256:");
        let configs = emulator.count("GET", "/blobs/sha256:");
        let signatures = IMAGES + INDEXES;
        // keep_n 5 keeps 5 images or indexes (and their signatures).
        assert_eq!(deleted, 2 * (IMAGES + INDEXES - 5), "{report}");
        let age_fetches = if gitlab_v1 {
            assert_eq!((manifests, configs), (INDEXES, 0));
            0
        } else {
            // Each index and each (undated) signature once, each child once,
            // one config per child.
            assert_eq!(manifests, INDEXES + signatures + 2 * INDEXES);
            assert_eq!(configs, 2 * INDEXES);
            4 * INDEXES
        };
        eprintln!(
            "gitlab_v1 {gitlab_v1}: {IMAGES} signed images + {INDEXES} signed 2-child indexes, {deleted} deleted, \
             {total} requests = {:.3}/deleted tag ({manifests} manifest GETs, {configs} config GETs); \
             without the index-age fetches ({age_fetches}): {} = {:.3}/deleted tag",
            total as f64 / deleted as f64,
            total - age_fetches,
            (total - age_fetches) as f64 / deleted as f64,
        );
    }
}

/// With `/gitlab/v1`, the report says how many untagged referrers (OCI 1.1
/// artifacts) each deleted image carried — GitLab's registry deletes them
/// with it — at no extra request.
#[test]
fn the_report_counts_the_untagged_referrers_of_deleted_images() {
    let emulator = Emulator::start(Config::default());
    let repository = emulator.repository("api");
    let old = repository.push_image(Some("old"), Some(days_ago(9)));
    repository.push_artifact(&old, "application/vnd.dev.sigstore.bundle.v0.3+json");
    repository.push_image(Some("new"), Some(days_ago(1)));
    let report = run_report(&emulator, KEEP_1, &["--dry-run"]);
    let entries = report["repositories"][0]["deleted"]
        .as_array()
        .expect("deleted")
        .clone();
    let old_entry = entries
        .iter()
        .find(|d| d["tag"] == "old")
        .expect("old is deleted");
    assert_eq!(old_entry["untagged_referrers"], 1, "{entries:?}");
}

/// Requests by kind, keyed `"METHOD what"`.
fn kinds(emulator: &Emulator) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for request in emulator.requests() {
        let path = &request.path;
        let what = if path.starts_with("/jwt/auth") {
            "jwt"
        } else if path == "/v2/" {
            "v2 challenge"
        } else if path.starts_with("/gitlab/v1/") {
            "gitlab/v1 list"
        } else if path.contains("/manifests/sha256:") {
            "manifest by digest"
        } else if path.contains("/manifests/") {
            "manifest by tag"
        } else if path.contains("/blobs/") {
            "config"
        } else if path.ends_with("/registry/repositories") {
            "REST repositories"
        } else if path.ends_with("/tags") {
            "REST tag list"
        } else if path.contains("/tags/") {
            "REST tag"
        } else {
            path.as_str()
        };
        *kinds
            .entry(format!("{} {what}", request.method))
            .or_insert(0) += 1;
    }
    kinds
}

/// Issue 10's closing figure: the request cost per deleted tag with and
/// without the index-age fetches, on one repository of 20 images and 10
/// two-child multi-arch indexes (children untagged) under `keep_n: 5`,
/// which keeps the 5 newest (3 images, 2 indexes) and deletes 25 tags.
///
/// - REST, no `/gitlab/v1` (index ages from their children's configs):
///   30 details calls, the 10 index manifests, 20 child manifests and 20
///   configs (one per child digest), 25 deletes: 109 requests.
/// - The same repository, a name-only rule deleting the same 25 tags (no
///   dates, so no details and no manifest): 29 requests.
/// - `/gitlab/v1` (push times), the same `keep_n: 5`: the index manifests
///   only (for their children), 39 requests.
///
/// Print with `cargo test --test referrers index_age_fetches -- --nocapture`.
#[test]
fn the_cost_of_index_age_fetches_per_deleted_tag() {
    const IMAGES: usize = 20;
    const INDEXES: usize = 10;
    const DELETED: usize = IMAGES + INDEXES - 5;
    let seeded = |gitlab_v1: bool| {
        let emulator = Emulator::start(Config {
            gitlab_v1,
            ..Config::default()
        });
        let repository = emulator.repository("api");
        for i in 0..IMAGES {
            let tag = format!("img-{i:02}");
            repository.push_image(Some(&tag), Some(days_ago(i as i64 + 1)));
            repository.set_pushed_at(&tag, days_ago(i as i64 + 1));
        }
        for i in 0..INDEXES {
            let built = days_ago(i as i64 + 1) - Duration::hours(12);
            let amd64 = repository.push_platform_image(None, "linux", "amd64", Some(built));
            let arm64 = repository.push_platform_image(
                None,
                "linux",
                "arm64",
                Some(built - Duration::hours(1)),
            );
            let tag = format!("idx-{i:02}");
            repository.push_index(&tag, &[&amd64, &arm64]);
            repository.set_pushed_at(&tag, built);
        }
        emulator
    };
    let keep_5 = "rules: [{name: all, delete: \".*\", keep_n: 5}]\n";
    let expected_deleted: BTreeMap<String, String> = (3..IMAGES)
        .map(|i| format!("img-{i:02}"))
        .chain((2..INDEXES).map(|i| format!("idx-{i:02}")))
        .map(|tag| (tag, "all".to_string()))
        .collect();
    assert_eq!(expected_deleted.len(), DELETED);
    let count = |kinds: &BTreeMap<String, usize>, kind: &str| kinds.get(kind).copied().unwrap_or(0);

    // With the index-age fetches: REST only.
    let with = seeded(false);
    let report = run_report(&with, keep_5, &[]);
    assert_eq!(deleted(&report), expected_deleted, "{report}");
    let with_kinds = kinds(&with);
    let manifests = count(&with_kinds, "GET manifest by digest");
    let configs = count(&with_kinds, "GET config");
    let deletes = count(&with_kinds, "DELETE manifest by tag");
    assert_eq!(
        count(&with_kinds, "GET REST tag"),
        IMAGES + INDEXES,
        "{with_kinds:?}"
    );
    assert_eq!(manifests, INDEXES + 2 * INDEXES, "{with_kinds:?}");
    assert_eq!(configs, 2 * INDEXES, "{with_kinds:?}");
    assert_eq!(deletes, DELETED, "{with_kinds:?}");
    assert_eq!(
        count(&with_kinds, "GET jwt"),
        1,
        "one pull,delete token; {with_kinds:?}"
    );
    // With GET /v2/ twice: anonymous, then with the token.
    assert_eq!(with.requests().len(), 110, "{with_kinds:?}");

    // Without: the same repository, a rule that needs no dates. The run
    // writes a report, so each deleted tag's details are read for the
    // digest it records (what `restore` puts back); nothing else.
    let without = seeded(false);
    let names: Vec<&str> = expected_deleted.keys().map(String::as_str).collect();
    let by_name = format!("rules: [{{name: all, delete: \"{}\"}}]\n", names.join("|"));
    let report = run_report(&without, &by_name, &[]);
    assert_eq!(deleted(&report), expected_deleted, "{report}");
    let without_kinds = kinds(&without);
    assert_eq!(
        count(&without_kinds, "GET REST tag"),
        DELETED,
        "{without_kinds:?}"
    );
    assert_eq!(count(&without_kinds, "GET manifest by digest"), 0);
    assert_eq!(count(&without_kinds, "GET config"), 0);
    assert_eq!(count(&without_kinds, "DELETE manifest by tag"), DELETED);
    assert_eq!(without.requests().len(), 30 + DELETED, "{without_kinds:?}");

    // With `/gitlab/v1`: push times, no age fetches; each index's own
    // manifest (its children) is still read.
    let gitlab_v1 = seeded(true);
    let report = run_report(&gitlab_v1, keep_5, &[]);
    assert_eq!(deleted(&report), expected_deleted, "{report}");
    let v1_kinds = kinds(&gitlab_v1);
    assert_eq!(
        count(&v1_kinds, "GET manifest by digest"),
        INDEXES,
        "{v1_kinds:?}"
    );
    assert_eq!(count(&v1_kinds, "GET config"), 0, "{v1_kinds:?}");
    assert_eq!(count(&v1_kinds, "DELETE manifest by tag"), DELETED);
    assert_eq!(gitlab_v1.requests().len(), 40, "{v1_kinds:?}");

    for (what, emulator, kinds) in [
        ("REST, keep_n (index-age fetches)", &with, &with_kinds),
        ("REST, by name (no dates)", &without, &without_kinds),
        ("/gitlab/v1, keep_n", &gitlab_v1, &v1_kinds),
    ] {
        let total = emulator.requests().len();
        eprintln!(
            "{what}: {DELETED} deleted, {total} requests = {:.2}/deleted tag: {kinds:?}",
            total as f64 / DELETED as f64
        );
    }
}
