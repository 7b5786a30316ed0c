//! Request budgets: the real binary against the emulator, every request counted.
//!
//! A client-engine run should sit at the request floor: with `/gitlab/v1`, one
//! request per deleted tag plus a handful per repository; through REST, one
//! details call per tag (only when a rule needs dates) and one delete per
//! deleted tag. Also: no 429 when the run fits in the announced rate budget,
//! and what ref discovery (git-aware rules) costs.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use common::*;
use gitlab_emulator::{Faults, RateLimit};

const ROOT: &str = "group/project";
const TAGS: usize = 1000;

/// Every `build-*` tag is 30 days old; `latest` is protected by default.
const DATED_POLICY: &str =
    "rules:\n  - name: old builds\n    delete: \"build-.*\"\n    older_than: 7d\n";
/// No rule looks at dates: the REST listing needs no details calls.
const NAME_POLICY: &str = "rules:\n  - name: builds\n    delete: \"build-.*\"\n";

fn seed(emulator: &Emulator, repository: &str, tags: usize) {
    let created = Utc::now() - chrono::Duration::days(30);
    emulator.add_repository(repository);
    emulator.add_tags(
        repository,
        (0..tags).map(|i| tag_at(&format!("build-{i:05}"), created)),
    );
    emulator.add_tags(repository, [tag("latest")]);
}

fn start(config: Config, repositories: &[(&str, usize)]) -> Emulator {
    let emulator = Emulator::start(config);
    for (repository, tags) in repositories {
        seed(&emulator, repository, *tags);
    }
    emulator
}

/// Requests by kind, for assertion messages and exact counts.
fn breakdown(emulator: &Emulator) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for request in emulator.requests() {
        let path = &request.path;
        let kind = if path.starts_with("/jwt/auth") {
            "jwt".to_string()
        } else if path == "/v2/" {
            "v2 challenge".to_string()
        } else if path.starts_with("/gitlab/v1/") {
            format!("gitlab/v1 list {}", request.status)
        } else if path.contains("/manifests/") {
            format!("registry {} manifest", request.method)
        } else if path.ends_with("/repository/branches") {
            "REST git branches".to_string()
        } else if path.ends_with("/repository/tags") {
            "REST git tags".to_string()
        } else if path.ends_with("/merge_requests") {
            "REST merge requests".to_string()
        } else if path.ends_with("/registry/repositories") {
            "REST repositories".to_string()
        } else if path.ends_with("/tags") && request.method == "GET" {
            "REST tag list".to_string()
        } else if path.contains("/tags/") {
            format!("REST tag {}", request.method)
        } else {
            format!("other {} {path}", request.method)
        };
        *kinds.entry(kind).or_insert(0) += 1;
        if request.status == 429 {
            *kinds.entry("429".to_string()).or_insert(0) += 1;
        }
    }
    kinds
}

fn kind(kinds: &BTreeMap<String, usize>, name: &str) -> usize {
    kinds.get(name).copied().unwrap_or(0)
}

struct Run {
    deleted: usize,
    requests: usize,
    kinds: BTreeMap<String, usize>,
    /// How often the tool waited for a nearly spent rate budget to reset.
    rate_limit_waits: u64,
}

impl Run {
    fn per_deleted(&self) -> f64 {
        self.requests as f64 / self.deleted.max(1) as f64
    }
}

fn cleanup(emulator: &Emulator, policy: &str, extra_env: &[(&str, &str)]) -> Run {
    let (out, report) = run_policy(&with(emulator.ci_env(), extra_env), policy, &["run"]);
    let deleted = report["totals"]["deleted"].as_u64().expect("deleted") as usize;
    Run {
        deleted,
        requests: emulator.requests().len(),
        kinds: breakdown(emulator),
        rate_limit_waits: http_stat(&out.stderr, "rate_limit_waits"),
    }
}

#[test]
fn gitlab_v1_costs_one_request_per_deleted_tag() {
    let emulator = start(Config::default(), &[(ROOT, TAGS)]);
    let run = cleanup(&emulator, DATED_POLICY, &[]);
    let kinds = &run.kinds;
    assert_eq!(run.deleted, TAGS, "{kinds:?}");
    assert_eq!(emulator.tags(ROOT).len(), 1, "only latest is left");
    assert_eq!(kind(kinds, "registry DELETE manifest"), TAGS, "{kinds:?}");
    assert_eq!(
        kind(kinds, "gitlab/v1 list 200"),
        2,
        "1001 tags: two pages of up to 1000; {kinds:?}"
    );
    assert_eq!(
        kind(kinds, "jwt"),
        1,
        "one registry token per repository; {kinds:?}"
    );
    // The challenge, then once with the first token: GitLab's registry
    // names what it can do only to an authorized `GET /v2/`.
    assert_eq!(kind(kinds, "v2 challenge"), 2, "{kinds:?}");
    assert_eq!(kind(kinds, "REST repositories"), 1, "{kinds:?}");
    assert_eq!(run.requests, TAGS + 6, "nothing else; {kinds:?}");
    assert!(
        run.per_deleted() <= 1.05,
        "{:.3} requests per deleted tag; {kinds:?}",
        run.per_deleted()
    );
}

#[test]
fn rest_details_cost_two_requests_per_deleted_tag() {
    let emulator = start(
        Config {
            gitlab_v1: false,
            ..Config::default()
        },
        &[(ROOT, TAGS)],
    );
    let run = cleanup(&emulator, DATED_POLICY, &[]);
    let kinds = &run.kinds;
    assert_eq!(run.deleted, TAGS, "{kinds:?}");
    assert_eq!(
        kind(kinds, "REST tag GET"),
        TAGS + 1,
        "one details call per tag; {kinds:?}"
    );
    assert_eq!(
        kind(kinds, "REST tag list"),
        11,
        "1001 names, 100 per page; {kinds:?}"
    );
    assert_eq!(kind(kinds, "registry DELETE manifest"), TAGS, "{kinds:?}");
    // `GET /v2/` said `gitlab-container-registry-database-enabled: false`:
    // no `/gitlab/v1` probe (a registry without the headers gets one).
    assert_eq!(kind(kinds, "gitlab/v1 list 404"), 0, "no probe; {kinds:?}");
    assert!(kind(kinds, "jwt") <= 2, "{kinds:?}");
    assert!(
        run.per_deleted() <= 2.1,
        "{:.3} requests per deleted tag; {kinds:?}",
        run.per_deleted()
    );
}

/// No rule needs dates, and the listing names tags only: a run without a
/// report makes no details call; a run with one (its record, which
/// `restore` reads) makes one per deleted tag, for its digest, and none
/// for the tag it keeps.
#[test]
fn details_calls_only_for_the_digests_a_report_records() {
    let config = || Config {
        gitlab_v1: false,
        ..Config::default()
    };
    let emulator = start(config(), &[(ROOT, TAGS)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", NAME_POLICY);
    let out = run(&emulator.ci_env(), &["run", "--policy", &policy]);
    assert_eq!(out.code, 0, "{}", out.all());
    let kinds = breakdown(&emulator);
    assert_eq!(emulator.tags(ROOT).len(), 1, "only latest is left");
    assert_eq!(
        kind(&kinds, "REST tag GET"),
        0,
        "details fetched although no rule needs dates and no report records digests; {kinds:?}"
    );
    assert_eq!(kind(&kinds, "registry DELETE manifest"), TAGS, "{kinds:?}");
    let requests = emulator.requests().len() as f64 / TAGS as f64;
    assert!(
        requests <= 1.05,
        "{requests:.3} requests per deleted tag; {kinds:?}"
    );

    let emulator = start(config(), &[(ROOT, TAGS)]);
    let digests = emulator.tags(ROOT);
    let (_, report) = run_policy(&emulator.ci_env(), NAME_POLICY, &["run"]);
    let run = Run {
        deleted: report["totals"]["deleted"].as_u64().expect("deleted") as usize,
        requests: emulator.requests().len(),
        kinds: breakdown(&emulator),
        rate_limit_waits: 0,
    };
    let kinds = &run.kinds;
    assert_eq!(run.deleted, TAGS, "{kinds:?}");
    for deleted in report["repositories"][0]["deleted"]
        .as_array()
        .expect("deleted")
    {
        let tag = deleted["tag"].as_str().expect("tag");
        assert_eq!(
            deleted["digest"].as_str(),
            Some(digests[tag].as_str()),
            "{deleted}"
        );
    }
    assert_eq!(
        kind(kinds, "REST tag GET"),
        TAGS,
        "one details call per deleted tag, for the digest its report records; {kinds:?}"
    );
    assert_eq!(kind(kinds, "registry DELETE manifest"), TAGS, "{kinds:?}");
    assert!(
        run.per_deleted() <= 2.1,
        "{:.3} requests per deleted tag; {kinds:?}",
        run.per_deleted()
    );
}

#[test]
fn many_repositories_share_the_probe_and_fetch_one_token_each() {
    let repositories: Vec<(String, usize)> =
        (0..6).map(|i| (format!("{ROOT}/svc{i}"), 50)).collect();
    let specs: Vec<(&str, usize)> = repositories.iter().map(|(p, n)| (p.as_str(), *n)).collect();
    for (gitlab_v1, capability_headers) in [(true, true), (false, true), (false, false)] {
        let emulator = start(
            Config {
                gitlab_v1,
                capability_headers,
                ..Config::default()
            },
            &specs,
        );
        let run = cleanup(&emulator, DATED_POLICY, &[]);
        let kinds = &run.kinds;
        assert_eq!(run.deleted, 300, "{kinds:?}");
        assert_eq!(kind(kinds, "registry DELETE manifest"), 300, "{kinds:?}");
        assert_eq!(
            kind(kinds, "jwt"),
            6,
            "one registry token per repository (gitlab_v1 {gitlab_v1}); {kinds:?}"
        );
        // The challenge and, once for the run, the authorized base route
        // (a registry that announces nothing is asked too: it might).
        assert_eq!(kind(kinds, "v2 challenge"), 2, "{kinds:?}");
        if gitlab_v1 {
            assert_eq!(kind(kinds, "gitlab/v1 list 200"), 6, "{kinds:?}");
        } else {
            // The capability headers on `GET /v2/` say there is no
            // metadata database: not even one probe. Without them, one
            // probe, remembered for every repository.
            assert_eq!(
                kind(kinds, "gitlab/v1 list 404"),
                usize::from(!capability_headers),
                "the 404 is remembered, or GET /v2/ said so; {kinds:?}"
            );
        }
    }
}

#[test]
fn a_registry_without_tag_delete_is_probed_once() {
    // Distribution 2.8: tag deletes answer DIGEST_INVALID; GitLab's REST API
    // deletes the tags instead. Only one tag delete may be wasted on learning that.
    let emulator = start(
        Config {
            tag_delete: false,
            ..Config::default()
        },
        &[(ROOT, 200)],
    );
    let run = cleanup(&emulator, NAME_POLICY, &[]);
    let kinds = &run.kinds;
    assert_eq!(run.deleted, 200, "{kinds:?}");
    assert_eq!(kind(kinds, "registry DELETE manifest"), 1, "{kinds:?}");
    assert_eq!(kind(kinds, "REST tag DELETE"), 200, "{kinds:?}");
}

#[test]
fn a_run_that_fits_in_the_rate_budget_sees_no_429() {
    // Through REST, nearly every request goes to the GitLab origin, which
    // announces the budget: about 1020 GitLab requests against a budget of 1200.
    let config = Config {
        gitlab_v1: false,
        rate_limit: Some(RateLimit {
            limit: 1200,
            window: Duration::from_secs(60),
        }),
        ..Config::default()
    };
    let emulator = start(config, &[(ROOT, TAGS)]);
    let run = cleanup(&emulator, DATED_POLICY, &[("CLEANUP_CONCURRENCY", "16")]);
    let kinds = &run.kinds;
    assert_eq!(run.deleted, TAGS, "{kinds:?}");
    assert_eq!(kind(kinds, "429"), 0, "{kinds:?}");

    // With /gitlab/v1 the registry deletes do not spend GitLab's budget: a
    // budget of 20 is plenty, and the run must not wait for a reset.
    let config = Config {
        rate_limit: Some(RateLimit {
            limit: 20,
            window: Duration::from_secs(60),
        }),
        ..Config::default()
    };
    let emulator = start(config, &[(ROOT, TAGS)]);
    let run = cleanup(&emulator, DATED_POLICY, &[]);
    let kinds = &run.kinds;
    assert_eq!(run.deleted, TAGS, "{kinds:?}");
    assert_eq!(kind(kinds, "429"), 0, "{kinds:?}");
    assert_eq!(
        run.rate_limit_waits, 0,
        "waited for a rate-limit reset it did not need; {kinds:?}"
    );
}

#[test]
fn a_run_over_the_rate_budget_slows_down_and_finishes() {
    // 1000 details calls against 300 requests per 2 s: the run has to wait
    // for resets and may meet 429s; it must back off and still delete everything.
    let config = Config {
        gitlab_v1: false,
        rate_limit: Some(RateLimit {
            limit: 300,
            window: Duration::from_secs(2),
        }),
        ..Config::default()
    };
    let emulator = start(config, &[(ROOT, TAGS)]);
    let run = cleanup(&emulator, DATED_POLICY, &[("CLEANUP_CONCURRENCY", "32")]);
    let kinds = &run.kinds;
    assert_eq!(run.deleted, TAGS, "{kinds:?}");
    assert_eq!(emulator.tags(ROOT).len(), 1);
    assert!(
        kind(kinds, "429") <= 10,
        "the announced budget should have been waited for; {kinds:?}"
    );
}

#[test]
fn unannounced_429s_halve_the_requests_in_flight() {
    // Injected 429s come without RateLimit headers (some of GitLab's do):
    // nothing predicts them, so the throttle must react to them.
    let config = Config {
        faults: Some(Faults {
            seed: 7,
            rate: 0.1,
            slow: Duration::ZERO,
        }),
        ..Config::default()
    };
    let emulator = start(config, &[(ROOT, TAGS)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", NAME_POLICY);
    let out = run(
        &with(emulator.ci_env(), &[("CLEANUP_CONCURRENCY", "16")]),
        &["run", "--policy", &policy],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        emulator.tags(ROOT).len(),
        1,
        "everything but latest is gone"
    );
    let too_many = emulator
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert!(too_many > 0, "the seeded faults should include 429s");
    out.assert_stderr_has("fewer requests at once");
    let lowest = http_stat(&out.stderr, "fewest_requests_at_once");
    assert!(lowest <= 8, "one 429 at least halves 16: {lowest}");
}

/// Git-aware rules list the project's refs once per project, 100 a page
/// (GitLab's largest `per_page`): for 1,000 branches, 50 git tags and 30
/// open merge requests that is 10 + 1 + 1 = 12 requests, however many
/// repositories the project has. The closing note of the git-aware rules
/// quotes this figure.
#[test]
fn ref_discovery_for_1000_branches_costs_12_requests() {
    let emulator = Emulator::start(Config::default());
    for i in 0..1000 {
        emulator.add_branch(&format!("feature/T-{i:04}"));
    }
    for i in 0..50 {
        emulator.add_git_tag(&format!("v1.{i}.0"));
    }
    for iid in 1..=30 {
        emulator.add_merge_request(iid, &format!("feature/T-{iid:04}"), "opened", false);
    }
    emulator.add_merge_request(31, "done", "merged", false);
    emulator.add_merge_request(32, "dropped", "closed", false);
    let created = Utc::now() - chrono::Duration::days(30);
    // Images of live branches (every 10th), of gone ones, and of MRs.
    let images: Vec<String> = (0..100)
        .map(|i| format!("feature-t-{:04}-0a1b2c3d", i * 10))
        .chain((0..100).map(|i| format!("gone-{i:03}-0a1b2c3d")))
        .chain((25..=35).map(|iid| format!("mr-{iid}-0a1b2c3d")))
        .collect();
    for repository in [ROOT, "group/project/api"] {
        emulator.add_repository(repository);
        emulator.add_tags(repository, images.iter().map(|name| tag_at(name, created)));
    }
    let policy = "rules:\n  - name: merge requests\n    delete: 'mr-(?P<mr>\\d+)-[0-9a-f]{8}'\n    when_ref: gone\n  - name: gone branches\n    delete: '(?P<ref>[a-z0-9-]+)-[0-9a-f]{8}'\n    keep: 'mr-.*'\n    when_ref: gone\n    older_than: 2d\n";
    let run = cleanup(&emulator, policy, &[]);
    let kinds = &run.kinds;
    // Per repository: the 100 gone branches' images and MRs 31-35 (merged,
    // closed or unknown); open MRs 25-30 and live branches stay.
    assert_eq!(run.deleted, 2 * (100 + 5), "{kinds:?}");
    assert_eq!(kind(kinds, "REST git branches"), 10, "{kinds:?}");
    assert_eq!(kind(kinds, "REST git tags"), 1, "{kinds:?}");
    assert_eq!(kind(kinds, "REST merge requests"), 1, "{kinds:?}");
    let refs: Vec<_> = emulator
        .requests()
        .into_iter()
        .filter(|r| {
            [
                "/repository/branches",
                "/repository/tags",
                "/merge_requests",
            ]
            .iter()
            .any(|endpoint| r.path.ends_with(endpoint))
        })
        .collect();
    assert_eq!(refs.len(), 12, "{kinds:?}");
    assert!(
        refs.iter()
            .all(|r| r.status == 200 && r.query.contains("per_page=100")),
        "{refs:?}"
    );
    assert!(refs
        .iter()
        .filter(|r| r.path.ends_with("/merge_requests"))
        .all(|r| r.query.contains("state=opened")));
}
