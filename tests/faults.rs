//! Reliability under faults: the client engine against an emulator that drops
//! connections, answers 429/5xx (half of the write faults *after* the change
//! was made), answers slowly, and issues 2-second JWTs. The final state must
//! be exactly the plan the library computes for the same tags, no kept tag may
//! lose its tag or change its digest, and a re-run must write nothing.
//!
//! Run with `cargo test --test faults -- --nocapture` to see the figures.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use gitlab_emulator::{Faults, RecordedRequest, Server, Tamper};
use registry_cleanup::domain::planner::plan_repository;
use registry_cleanup::domain::policy::Policy;
use registry_cleanup::output::inventory::Inventory;
use registry_cleanup::output::report::Report;
use registry_cleanup::wire::http::{Http, HttpOptions, RetryPolicy};

const REPOSITORIES: [&str; 3] = ["group/project", "group/project/api", "group/project/worker"];

const POLICY: &str = r#"
protect:
  - "v\\d+\\.\\d+\\.\\d+"
  - "stable"
rules:
  - name: review images
    delete: "mr-\\d+-[0-9a-f]+"
    keep_n: 10
    older_than: 14d
  - name: commits
    repositories: "group/project/(api|worker)"
    delete: "[0-9a-f]{8}"
    keep_n: 20
  - name: features
    repositories: "group/project/worker"
    delete: "feature-.*"
    keep: "feature-0"
"#;

/// A deterministic 8-hex-digit name part.
fn hex8(repository: usize, kind: u64, i: u64) -> String {
    let mut x = (repository as u64 + 1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(kind.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(i.wrapping_mul(0x94D0_49BB_1331_11EB));
    x ^= x >> 31;
    format!("{:08x}", x as u32)
}

fn fake_digest(repository: usize, i: usize) -> String {
    format!("sha256:{:02x}{:062x}", repository + 0xa0, i + 1)
}

/// 300 tags per repository: 140 review tags (every 10th undated, every 7th
/// sharing the manifest of a release tag), 100 commit tags, 50 release tags,
/// `latest`, `main`, `stable` and 7 feature tags. Dates sit half a day away
/// from any day boundary, so the plan is the same a few seconds later.
fn seed(emulator: &Emulator) {
    let now = Utc::now();
    for (r, repository) in REPOSITORIES.iter().enumerate() {
        let at = |hours: i64| -> DateTime<Utc> { now - chrono::Duration::hours(hours) };
        let mut tags = Vec::new();
        for i in 0..50 {
            tags.push(
                tag_at(&format!("v1.{i}.0"), at(24 * 5 * i as i64 + 12)).digest(fake_digest(r, i)),
            );
        }
        for i in 0..140u64 {
            let name = format!("mr-{i}-{}", hex8(r, 1, i));
            let mut spec = if i % 10 == 3 {
                undated(&name)
            } else {
                tag_at(&name, at(12 * i as i64 + 6))
            };
            if i % 7 == 0 {
                spec = spec.digest(fake_digest(r, (i as usize / 7) % 50));
            }
            tags.push(spec);
        }
        for i in 0..100u64 {
            tags.push(tag_at(&hex8(r, 2, i), at(24 * i as i64 + 12)));
        }
        for name in ["latest", "main", "stable"] {
            tags.push(tag(name));
        }
        for i in 0..7 {
            tags.push(tag_at(&format!("feature-{i}"), at(24 * i + 12)));
        }
        assert_eq!(tags.len(), 300);
        emulator.add_tags(repository, tags);
    }
}

/// The tags that must remain, per repository: the library's plan for the
/// inventory snapshot taken (without faults) right before the run.
fn expected_survivors(
    inventory: &Inventory,
    policy: &Policy,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut expected = BTreeMap::new();
    for repository in &inventory.repositories {
        let plan = plan_repository(policy, &repository.path, &repository.tags, None, Utc::now());
        let deleted: BTreeSet<&str> = plan.delete.iter().map(|d| d.tag.name.as_str()).collect();
        assert!(
            !deleted.is_empty() && deleted.len() < repository.tags.len(),
            "{}: a test plan deletes some tags, not all",
            repository.path
        );
        let survivors = repository
            .tags
            .iter()
            .map(|t| t.name.to_string())
            .filter(|n| !deleted.contains(n.as_str()))
            .collect();
        expected.insert(repository.path.to_string(), survivors);
    }
    expected
}

/// `registry-cleanup inventory` before the faults are switched on.
fn snapshot(emulator: &Emulator, dir: &tempfile::TempDir) -> Inventory {
    let path = dir.path().join("inventory.json");
    let out = run(
        &emulator.ci_env(),
        &["inventory", "--output", path.to_str().expect("utf-8")],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let inventory = Inventory::load(&path).expect("inventory");
    assert_eq!(inventory.repositories.len(), REPOSITORIES.len());
    inventory
}

fn is_retryable(status: u16) -> bool {
    matches!(status, 0 | 429 | 500 | 502 | 503 | 504)
}

/// Requests that repeat an identical request (method, origin, path, query)
/// whose previous answer was retryable: the retries as the server saw them.
fn retries_seen(requests: &[RecordedRequest]) -> usize {
    let mut last: HashMap<(String, String, String, bool), u16> = HashMap::new();
    let mut retries = 0;
    for request in requests {
        let key = (
            request.method.clone(),
            request.path.clone(),
            request.query.clone(),
            request.server == Server::Gitlab,
        );
        if last.get(&key).is_some_and(|status| is_retryable(*status)) {
            retries += 1;
        }
        last.insert(key, request.status);
    }
    retries
}

struct Figures {
    requests: usize,
    faults: BTreeMap<String, usize>,
    retries: usize,
    wall: Duration,
    jwts: usize,
    registry_401s: usize,
    tool_stats: String,
}

impl Figures {
    fn collect(emulator: &Emulator, wall: Duration, jwts_before: usize, stderr: &str) -> Figures {
        let requests = emulator.requests();
        let mut faults = BTreeMap::new();
        for request in &requests {
            if let Some(fault) = &request.fault {
                *faults.entry(fault.clone()).or_insert(0) += 1;
            }
        }
        Figures {
            requests: requests.len(),
            faults,
            retries: retries_seen(&requests),
            wall,
            jwts: emulator.issued_jwts() - jwts_before,
            registry_401s: requests
                .iter()
                .filter(|r| r.server == Server::Registry && r.status == 401 && r.path != "/v2/")
                .count(),
            tool_stats: stderr
                .lines()
                .find(|line| line.contains("HTTP requests sent"))
                .unwrap_or("(no stats line)")
                .trim()
                .to_string(),
        }
    }

    fn print(&self, label: &str) {
        let injected: usize = self.faults.values().sum();
        eprintln!("=== {label}");
        eprintln!("requests seen by the emulator: {}", self.requests);
        eprintln!(
            "faults injected: {injected} ({:.1}% of requests)",
            100.0 * injected as f64 / self.requests.max(1) as f64
        );
        for (kind, count) in &self.faults {
            eprintln!("  {kind:<28} {count}");
        }
        eprintln!(
            "retries seen by the emulator (identical request after a retryable answer): {}",
            self.retries
        );
        eprintln!(
            "registry 401s outside /v2/ (token refused): {}",
            self.registry_401s
        );
        eprintln!("JWTs issued: {}", self.jwts);
        eprintln!("wall time: {:.1} s", self.wall.as_secs_f64());
        eprintln!("tool: {}", self.tool_stats);
    }
}

fn report_of(path: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written"))
        .expect("report parses")
}

/// Seeds, runs the policy under faults, and checks the outcome exactly.
/// `expect_refresh`: the registry is used for the whole run (deletes by tag),
/// so its 2 s tokens must be refreshed along the way.
fn converges_under_faults(config: Config, label: &str, expect_refresh: bool) {
    let emulator = Emulator::start(config.clone());
    for repository in REPOSITORIES {
        emulator.add_repository(repository);
    }
    seed(&emulator);
    let dir = tempfile::tempdir().expect("tempdir");
    let inventory = snapshot(&emulator, &dir);
    let policy_path = write_file(&dir, "policy.yml", POLICY);
    let policy = Policy::parse(POLICY, "policy.yml").expect("policy");
    let before: BTreeMap<String, BTreeMap<String, String>> = REPOSITORIES
        .iter()
        .map(|r| (r.to_string(), emulator.tags(r)))
        .collect();
    let expected = expected_survivors(&inventory, &policy);
    let planned: usize = REPOSITORIES
        .iter()
        .map(|r| before[*r].len() - expected[*r].len())
        .sum();

    emulator.set_config(|c| {
        c.faults = Some(Faults {
            seed: 0x5eed_1234,
            rate: 0.15,
            slow: Duration::from_millis(300),
        });
        c.jwt_lifetime = Duration::from_secs(2);
        // Some latency per request, as on a real network, so the run
        // outlives its tokens.
        c.latency = Duration::from_millis(40);
    });
    emulator.reset_requests();
    let jwts_before = emulator.issued_jwts();
    let env = with(
        emulator.ci_env(),
        &[("CLEANUP_RETRY_BASE_MS", "20"), ("CLEANUP_LOG", "info")],
    );
    let report_path = dir.path().join("report.json");
    let started = Instant::now();
    let out = run(
        &env,
        &[
            "run",
            "--policy",
            &policy_path,
            "--report",
            report_path.to_str().expect("utf-8"),
        ],
    );
    let wall = started.elapsed();
    let figures = Figures::collect(&emulator, wall, jwts_before, &out.stderr);
    figures.print(label);
    assert_eq!(out.code, 0, "{}", out.all());
    out.assert_stderr_lacks("panicked");

    // Exactly the plan: every planned tag gone, every other tag still there
    // with the digest it had.
    for repository in REPOSITORIES {
        let after = emulator.tags(repository);
        let survivors: BTreeSet<String> = after.keys().cloned().collect();
        assert_eq!(
            survivors, expected[repository],
            "{repository}: the final state is not the plan"
        );
        for (name, digest) in &after {
            assert_eq!(
                Some(digest),
                before[repository].get(name),
                "{repository}:{name} changed its digest"
            );
        }
    }
    let report = report_of(&report_path);
    assert_eq!(report.totals.failed, 0, "{}", out.all());
    assert_eq!(report.totals.skipped, 0, "{}", out.all());
    // Nobody else deletes here: a tag found gone when a delete is retried after
    // a lost answer was deleted by our own earlier attempt, and says so.
    assert_eq!(
        (report.totals.deleted, report.totals.already_absent),
        (planned, 0),
        "every planned tag is reported deleted, including those whose answer was lost"
    );

    // The faults really happened, retries really were needed, and the 2 s
    // tokens really expired during the run.
    let injected: usize = figures.faults.values().sum();
    assert!(
        injected * 100 >= figures.requests * 8,
        "fewer faults than configured: {injected}/{}",
        figures.requests
    );
    assert!(
        figures.faults.keys().any(|k| k.contains("after-effect")),
        "no write fault after the effect"
    );
    assert!(
        figures.faults.keys().any(|k| k.starts_with("drop")),
        "no dropped connection"
    );
    assert!(
        figures.faults.keys().any(|k| k.starts_with("429")),
        "no 429"
    );
    assert!(figures.retries > 0);
    if expect_refresh {
        // Without expiry one token per repository (and one for the probe)
        // would do: more means the 2 s tokens ran out during the run.
        assert!(
            figures.jwts > REPOSITORIES.len() + 1,
            "tokens were not refreshed: {} issued",
            figures.jwts
        );
    }

    // Bounded effort, counted by the client rather than timed: one retry per
    // injected fault (a slow answer is still an answer), no wait longer than
    // the emulator asks for (Retry-After of at most 1 s) or the backoff of 8
    // attempts from 20 ms allows (1.28 s), and no rate-limit wait.
    let faults_to_retry: usize = figures
        .faults
        .iter()
        .filter(|(kind, _)| kind.as_str() != "slow")
        .map(|(_, count)| count)
        .sum();
    assert_eq!(
        http_stat(&out.stderr, "retries") as usize,
        faults_to_retry,
        "retries by the tool against faults injected; {}",
        figures.tool_stats
    );
    assert!(
        http_stat(&out.stderr, "longest_retry_wait_ms") <= 1280,
        "{}",
        figures.tool_stats
    );
    assert_eq!(
        http_stat(&out.stderr, "rate_limit_waits"),
        0,
        "{}",
        figures.tool_stats
    );

    // Converged: a second run under the same faults deletes nothing and writes nothing.
    emulator.reset_requests();
    let out = run(&env, &["run", "--policy", &policy_path]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(emulator.writes(), 0, "a re-run wrote: {}", out.all());
    for repository in REPOSITORIES {
        assert_eq!(
            emulator.tags(repository),
            before[repository]
                .iter()
                .filter(|(n, _)| expected[repository].contains(*n))
                .map(|(n, d)| (n.clone(), d.clone()))
                .collect::<BTreeMap<_, _>>()
        );
    }
}

#[test]
fn gitlab_registry_converges_exactly_under_faults_and_2s_tokens() {
    converges_under_faults(
        Config::default(),
        "GitLab registry (tag delete, /gitlab/v1 listing)",
        true,
    );
}

#[test]
fn distribution_registry_converges_exactly_through_rest_under_faults() {
    converges_under_faults(
        Config {
            tag_delete: false,
            gitlab_v1: false,
            keyset: false,
            missing_tag_delete_status: 403,
            ..Config::default()
        },
        "Distribution-like registry (no tag delete: REST single-tag delete; offset pages, per-tag details)",
        false,
    );
}

#[test]
fn a_repository_whose_listing_fails_is_untouched_and_the_others_are_processed() {
    let emulator = Emulator::start(Config {
        tamper: vec![Tamper::on(
            Some("GET"),
            "/gitlab/v1/repositories/group/project/api/tags/list/",
        )
        .status(500)],
        ..Config::default()
    });
    for repository in REPOSITORIES {
        emulator.add_repository(repository);
    }
    seed(&emulator);
    let before: BTreeMap<String, BTreeMap<String, String>> = REPOSITORIES
        .iter()
        .map(|r| (r.to_string(), emulator.tags(r)))
        .collect();
    let env = with(
        emulator.ci_env(),
        &[
            ("CLEANUP_RETRY_MAX_ATTEMPTS", "3"),
            ("CLEANUP_RETRY_BASE_MS", "10"),
        ],
    );
    let (out, report) = run_policy_exiting(&env, POLICY, &["run"], 1);
    assert_eq!(
        emulator.tags("group/project/api"),
        before["group/project/api"],
        "the unlisted repository was touched"
    );
    assert_eq!(emulator.count("DELETE", "/v2/group/project/api/"), 0);
    assert_eq!(
        emulator.count("GET", "/gitlab/v1/repositories/group/project/api/"),
        3,
        "bounded attempts"
    );
    for repository in ["group/project", "group/project/worker"] {
        assert!(
            emulator.tags(repository).len() < before[repository].len(),
            "{repository} was not processed"
        );
    }
    assert!(
        out.stdout.contains("group/project/api")
            && out
                .stdout
                .contains("FAILED: listing failed, nothing deleted"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains("500"),
        "the summary says why: {}",
        out.all()
    );
    let report: Report = serde_json::from_value(report).expect("report parses");
    let api = report
        .repositories
        .iter()
        .find(|r| r.path == "group/project/api")
        .expect("api in the report");
    let error = api.error.as_deref().expect("api has an error");
    assert!(
        error.contains("listing failed") && error.contains("500"),
        "{error}"
    );
    assert!(api.deleted.is_empty());
    // The failed repository is in the totals and the total line, not only
    // on its own line: a summary or a dotenv reading the totals sees it.
    assert_eq!(report.totals.failed_repositories, 1);
    assert_eq!(report.totals.failed, 0, "no tag failed");
    let total = out
        .stdout
        .lines()
        .find(|line| line.starts_with("total: "))
        .expect("a total line");
    assert!(total.ends_with(", 1 repository failed"), "{total}");
}

fn http(policy: RetryPolicy) -> Http {
    Http::new(HttpOptions {
        retry: policy,
        ..HttpOptions::default()
    })
    .expect("client")
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        budget: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_never_retried_and_server_errors_are_bounded() {
    let mut tamper = Vec::new();
    for status in [400u16, 401, 403, 404, 405, 500, 502, 503, 504, 429] {
        tamper.push(Tamper::on(Some("GET"), &format!("/api/v4/status/{status}")).status(status));
    }
    let emulator = Emulator::start(Config {
        tamper,
        ..Config::default()
    });
    let http = http(fast_policy());
    for status in [400u16, 401, 403, 404, 405, 500, 502, 503, 504, 429] {
        let url = url::Url::parse(&format!("{}/api/v4/status/{status}", emulator.gitlab_url()))
            .expect("url");
        let response = http
            .send(reqwest::Method::GET, &url, |r| r)
            .await
            .expect("an answer");
        assert_eq!(response.status.as_u16(), status);
        let expected = if status >= 429 { 4 } else { 1 };
        assert_eq!(
            emulator.count("GET", &format!("/status/{status}")),
            expected,
            "{status}"
        );
        assert_eq!(response.attempts as usize, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_capped_by_the_call_budget() {
    let emulator = Emulator::start(Config {
        tamper: vec![Tamper::on(None, "/api/v4/limited")
            .status(429)
            .header("retry-after", "3600")],
        ..Config::default()
    });
    let http = http(RetryPolicy {
        budget: Duration::from_secs(2),
        ..fast_policy()
    });
    let url = url::Url::parse(&format!("{}/api/v4/limited", emulator.gitlab_url())).expect("url");
    let response = http
        .send(reqwest::Method::GET, &url, |r| r)
        .await
        .expect("an answer");
    assert_eq!(response.status.as_u16(), 429);
    assert_eq!(response.attempts, 1);
    assert_eq!(
        emulator.count("GET", "/limited"),
        1,
        "a wait beyond the budget is not worth a retry"
    );
    assert_eq!(
        (
            http.stats.retries.load(Relaxed),
            http.stats.retry_wait_ms.load(Relaxed)
        ),
        (0, 0),
        "no wait at all for a Retry-After of an hour"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_cannot_outlast_the_call_budget() {
    let emulator = Emulator::start(Config {
        latency: Duration::from_secs(30),
        ..Config::default()
    });
    // Only the call's budget can cut an attempt short: the per-request
    // timeout is longer than the server's silence, which would end in an answer.
    let http = Http::new(HttpOptions {
        retry: RetryPolicy {
            budget: Duration::from_secs(2),
            ..fast_policy()
        },
        timeout: Duration::from_secs(120),
        ..HttpOptions::default()
    })
    .expect("client");
    let url = url::Url::parse(&format!(
        "{}/api/v4/projects/1/registry/repositories",
        emulator.gitlab_url()
    ))
    .expect("url");
    let error = http
        .send(reqwest::Method::GET, &url, |r| r)
        .await
        .expect_err("no answer in time");
    let message = error.to_string();
    assert!(message.contains("timed out"), "{message}");
    // The one attempt spent the budget: no time was left for a retry.
    assert!(message.contains("gave up after 1 attempts"), "{message}");
    assert_eq!(
        (
            http.stats.requests.load(Relaxed),
            http.stats.retries.load(Relaxed)
        ),
        (1, 0)
    );
}

fn refusing(error: &str) -> Emulator {
    let challenge = format!(
        "Bearer realm=\"http://127.0.0.1:1/jwt/auth\",service=\"container_registry\",scope=\"repository:group/project:delete\",error=\"{error}\""
    );
    let emulator = Emulator::start(Config {
        tamper: vec![Tamper::on(Some("DELETE"), "/v2/group/project/manifests/")
            .status(401)
            .header("www-authenticate", &challenge)],
        ..Config::default()
    });
    emulator.add_repository("");
    emulator.add_tags("group/project", [tag("mr-1"), tag("main")]);
    emulator
}

#[test]
fn an_invalid_token_is_replaced_a_bounded_number_of_times() {
    let emulator = refusing("invalid_token");
    let out = run(&emulator.ci_env(), &["delete", "mr-1"]);
    assert_eq!(out.code, 1, "{}", out.all());
    out.assert_stdout_has("group/project:mr-1: failed");
    // The first attempt and three with a fresh token each.
    assert_eq!(
        emulator.count("DELETE", "/manifests/mr-1"),
        4,
        "{}",
        out.all()
    );
    assert!(
        emulator.issued_jwts() >= 4,
        "{} tokens",
        emulator.issued_jwts()
    );
    assert_eq!(emulator.tags("group/project").len(), 2);
}

#[test]
fn insufficient_scope_is_not_mistaken_for_an_expired_token() {
    let emulator = refusing("insufficient_scope");
    let out = run(&emulator.ci_env(), &["delete", "mr-1"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(
        emulator.count("DELETE", "/manifests/mr-1"),
        1,
        "{}",
        out.all()
    );
}

/// A port nothing listens on (bound, then released).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// An unreachable registry stops the run after one probe and its retries —
/// not once per repository — with one error naming the URL and the variable
/// that set it (exit 1). Counted: the retries the log announces (each with
/// its attempt number), and the GitLab-side requests.
#[test]
fn an_unreachable_registry_is_probed_once_per_run() {
    let emulator = Emulator::start(Config::default());
    for repository in REPOSITORIES {
        emulator.add_repository(repository);
    }
    seed(&emulator);
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_path = write_file(&dir, "policy.yml", POLICY);
    let registry = closed_port_url();
    let env = with(
        emulator.ci_env(),
        &[
            ("CLEANUP_REGISTRY_URL", registry.as_str()),
            ("CLEANUP_RETRY_MAX_ATTEMPTS", "3"),
            ("CLEANUP_RETRY_BASE_MS", "10"),
        ],
    );
    for args in [
        vec!["run", "--policy", policy_path.as_str()],
        vec!["run", "--policy", policy_path.as_str(), "--dry-run"],
        vec!["delete", "--all-repositories", "mr-1"],
        vec!["inventory"],
    ] {
        emulator.reset_requests();
        let out = run(&env, &args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.all());
        let retries: Vec<&str> = out
            .stderr
            .lines()
            .filter(|line| line.contains("retrying after no answer"))
            .collect();
        assert_eq!(
            retries.len(),
            2,
            "{args:?}: 3 attempts, once: {}",
            out.all()
        );
        for (attempt, line) in retries.iter().enumerate() {
            assert!(
                line.contains(&format!("attempt={}", attempt + 1))
                    && line.contains("max_attempts=3")
                    && line.contains("WARN")
                    && line.contains(&format!("{registry}/v2/")),
                "{args:?}: {line}"
            );
        }
        assert!(
            out.stderr.contains(&format!(
                "the registry at {registry}/ (from CLEANUP_REGISTRY_URL) cannot be reached"
            )),
            "{args:?}: {}",
            out.all()
        );
        assert_eq!(emulator.count("GET", "/jwt/auth"), 0, "{args:?}");
        assert_eq!(emulator.writes(), 0, "{args:?}");
        assert!(
            !out.stdout.contains("group/project"),
            "{args:?}: no repository was worked on: {}",
            out.all()
        );
    }
}

/// Issue 25 (1): the `GET` of a kept index's manifest, made while listing to
/// learn its children, fails (500 on every attempt). Without the children the
/// planner cannot see that the kept index `2.0.0` holds the amd64 image, so
/// the amd64 image's signature would look like it follows `build-amd64`
/// (deleted by the rule) and go "with its subject". The listing must fail
/// instead: nothing deleted in that repository, exit 1.
#[test]
fn a_failed_index_fetch_while_listing_deletes_nothing() {
    let emulator = Emulator::start(Config::default());
    let repo = emulator.repository("");
    let built = Utc::now() - chrono::Duration::days(3);
    let amd64 = repo.push_platform_image(None, "linux", "amd64", Some(built));
    let arm64 = repo.push_platform_image(None, "linux", "arm64", Some(built));
    let index = repo.push_index("2.0.0", &[&amd64, &arm64]);
    repo.tag("build-amd64", &amd64);
    repo.push_signature(&amd64, "sig");
    let before = emulator.tags("group/project");
    emulator.set_config(|config| {
        config.scripted_faults =
            vec![
                ScriptedFault::refused("GET", &format!("/manifests/{index}"), 500)
                    .times(usize::MAX),
            ];
    });
    let env = with(
        emulator.ci_env(),
        &[
            ("CLEANUP_RETRY_MAX_ATTEMPTS", "2"),
            ("CLEANUP_RETRY_BASE_MS", "1"),
        ],
    );
    let (_, report) = run_policy_exiting(
        &env,
        "rules: [{name: builds, delete: \"build-.*\"}]\n",
        &["run"],
        1,
    );
    assert_eq!(emulator.tags("group/project"), before, "nothing may change");
    assert_eq!(emulator.writes(), 0, "{:?}", emulator.requests());
    assert!(
        emulator.count("GET", &format!("/manifests/{index}")) >= 2,
        "the fault was met (and retried)"
    );
    let repository = &report["repositories"][0];
    assert!(
        repository["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("listing failed, nothing deleted")),
        "{repository:#}"
    );
    assert_eq!(
        repository["deleted"].as_array().map(Vec::len),
        Some(0),
        "{repository:#}"
    );
}
