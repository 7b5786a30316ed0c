//! The pull ledger end to end with SQLite: `ledger serve` (the real binary)
//! refusing hostile input and keeping what it committed across a restart;
//! `run --ledger`, `inventory --ledger` and `plan` deleting only what nobody
//! pulled, against the emulator; an unreadable ledger deleting nothing
//! through `unpulled_for` (exit 1). PostgreSQL and a real Distribution
//! registry: scripts/ledger-test.sh.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "test-ledger-token-0123456789";
const ENVELOPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// A `ledger serve` process on a free port, with a SQLite file.
struct Ledger {
    child: Child,
    url: String,
}

impl Ledger {
    fn start(db: &std::path::Path) -> Ledger {
        Ledger::start_with(db, &[])
    }

    fn start_with(db: &std::path::Path, args: &[&str]) -> Ledger {
        let mut child = Command::new(env!("CARGO_BIN_EXE_registry-cleanup"))
            .env_clear()
            .env("CLEANUP_LEDGER_TOKEN", TOKEN)
            .args(["ledger", "serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ledger serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("the address line");
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Ledger { child, url }
    }

    /// SIGTERM, then the exit code and what it logged.
    fn stop(mut self) -> (i32, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let code = self.child.wait().expect("exits").code().unwrap_or(-1);
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        (code, stderr)
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection: the status and the body.
fn request(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    // The server may answer (and close) before the body is all sent.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn post_events(ledger: &Ledger, events: &[Value]) -> u16 {
    let body = serde_json::to_vec(&json!({ "events": events })).expect("json");
    let auth = bearer();
    request(
        &ledger.url,
        "POST",
        "/events",
        &[("Authorization", &auth), ("Content-Type", ENVELOPE)],
        &body,
    )
    .0
}

fn pulls(ledger: &Ledger, repository: &str) -> Value {
    let auth = bearer();
    let (status, body) = request(
        &ledger.url,
        "GET",
        &format!("/v1/repositories/{repository}/pulls"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(body.trim()).unwrap_or_else(|err| panic!("{err}: {body:?}"))
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A registry event as Distribution 2.8 sends it.
fn event(
    id: &str,
    action: &str,
    repository: &str,
    digest: &str,
    at: DateTime<Utc>,
    agent: &str,
) -> Value {
    json!({
        "id": id,
        "timestamp": time(at),
        "action": action,
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 525,
            "digest": digest,
            "length": 525,
            "repository": repository,
            "url": format!("http://registry:5000/v2/{repository}/manifests/{digest}"),
        },
        "request": {"id": "r", "addr": "127.0.0.1:1", "host": "registry", "method": "GET", "useragent": agent},
        "actor": {},
        "source": {"addr": "registry:5000", "instanceID": "i"}
    })
}

fn pull(id: &str, repository: &str, digest: &str, days_ago: i64) -> Value {
    event(
        id,
        "pull",
        repository,
        digest,
        Utc::now() - Duration::days(days_ago),
        "docker/27.3.1 go/go1.22",
    )
}

const REPO: &str = "group/project/app";

#[test]
fn hostile_input_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::start(&dir.path().join("ledger.db"));
    let digest = digest(1);
    let good =
        serde_json::to_vec(&json!({"events": [pull("e1", REPO, &digest, 1)]})).expect("json");
    let unknown = {
        let mut e = pull("e2", REPO, &digest, 1);
        e["action"] = "teleport".into();
        serde_json::to_vec(&json!({"events": [pull("e3", REPO, &digest, 1), e]})).expect("json")
    };
    let oversized = {
        let padding = "x".repeat(2 * 1024 * 1024);
        let mut e = pull("e4", REPO, &digest, 1);
        e["padding"] = padding.into();
        serde_json::to_vec(&json!({"events": [e]})).expect("json")
    };
    let auth = bearer();
    let wrong = format!("Bearer {TOKEN}x");
    let short = "Bearer test-ledger-token";
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "no token",
            vec![("Content-Type", ENVELOPE)],
            good.clone(),
            401,
        ),
        (
            "wrong token",
            vec![("Authorization", &wrong), ("Content-Type", ENVELOPE)],
            good.clone(),
            401,
        ),
        (
            "a prefix of the token",
            vec![("Authorization", short), ("Content-Type", ENVELOPE)],
            good.clone(),
            401,
        ),
        (
            "the token not as a bearer",
            vec![("Authorization", TOKEN), ("Content-Type", ENVELOPE)],
            good.clone(),
            401,
        ),
        (
            "malformed JSON",
            vec![("Authorization", &auth), ("Content-Type", ENVELOPE)],
            b"{\"events\": [".to_vec(),
            400,
        ),
        (
            "not an envelope",
            vec![("Authorization", &auth), ("Content-Type", ENVELOPE)],
            b"[1, 2]".to_vec(),
            400,
        ),
        (
            "an unknown action in the batch",
            vec![("Authorization", &auth), ("Content-Type", ENVELOPE)],
            unknown,
            400,
        ),
        (
            "another media type",
            vec![("Authorization", &auth), ("Content-Type", "text/plain")],
            good.clone(),
            415,
        ),
        (
            "oversized",
            vec![("Authorization", &auth), ("Content-Type", ENVELOPE)],
            oversized.clone(),
            413,
        ),
    ];
    for (what, headers, body, expected) in &cases {
        let (status, answer) = request(&ledger.url, "POST", "/events", headers, body);
        assert_eq!(status, *expected, "{what}: {answer}");
    }
    // Oversized without a Content-Length: the body is cut off as it comes.
    let mut chunked = format!("{:x}\r\n", oversized.len()).into_bytes();
    chunked.extend_from_slice(&oversized);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, _) = request(
        &ledger.url,
        "POST",
        "/events",
        &[
            ("Authorization", &auth),
            ("Content-Type", ENVELOPE),
            ("Transfer-Encoding", "chunked"),
        ],
        &chunked,
    );
    assert_eq!(status, 413, "oversized, chunked");
    // Reading needs the token too.
    let (status, _) = request(
        &ledger.url,
        "GET",
        &format!("/v1/repositories/{REPO}/pulls"),
        &[],
        b"",
    );
    assert_eq!(status, 401);
    // Nothing of it was stored.
    assert_eq!(
        pulls(&ledger, REPO),
        json!({"repository": REPO, "watched_since": null, "pulls": []})
    );

    // A good batch, then the same batch again (the registry redelivers when
    // an answer is lost): counted once.
    for _ in 0..2 {
        let (status, answer) = request(
            &ledger.url,
            "POST",
            "/events",
            &[("Authorization", &auth), ("Content-Type", ENVELOPE)],
            &good,
        );
        assert_eq!(status, 200, "{answer}");
    }
    let record = pulls(&ledger, REPO);
    assert_eq!(
        record["pulls"].as_array().expect("pulls").len(),
        1,
        "{record}"
    );
    assert_eq!(record["pulls"][0]["count"], 1, "{record}");
    assert_eq!(record["pulls"][0]["digest"], digest.as_str());
    // Still serving.
    let (status, _) = request(&ledger.url, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
}

#[test]
fn ignored_agents_and_blobs_are_not_pulls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::start_with(
        &dir.path().join("ledger.db"),
        &["--ignore-user-agent", "trivy/"],
    );
    let (a, b, c, d) = (digest(1), digest(2), digest(3), digest(4));
    let mut blob = event("b", "pull", REPO, &d, Utc::now(), "docker/27");
    blob["target"]["mediaType"] = "application/octet-stream".into();
    blob["target"]["url"] = format!("http://registry:5000/v2/{REPO}/blobs/{d}").into();
    let status = post_events(
        &ledger,
        &[
            event("1", "pull", REPO, &a, Utc::now(), "GitLab/17.5.0"),
            event("2", "pull", REPO, &b, Utc::now(), "registry-cleanup/0.1.0"),
            event("3", "pull", REPO, &c, Utc::now(), "trivy/0.57"),
            blob,
            event(
                "4",
                "push",
                REPO,
                &a,
                Utc::now() - Duration::days(3),
                "docker/27",
            ),
        ],
    );
    assert_eq!(status, 200);
    let record = pulls(&ledger, REPO);
    assert_eq!(record["pulls"], json!([]), "{record}");
    // The push says the repository is watched since then.
    assert!(record["watched_since"].is_string(), "{record}");
}

#[test]
fn a_restarted_ledger_keeps_what_it_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("ledger.db");
    let ledger = Ledger::start(&db);
    assert_eq!(post_events(&ledger, &[pull("1", REPO, &digest(1), 2)]), 200);
    let (code, stderr) = ledger.stop();
    assert_eq!(code, 0, "SIGTERM ends it cleanly:\n{stderr}");
    assert!(
        stderr.contains("stopping: finishing the requests in flight"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "the token was logged:\n{stderr}");
    let ledger = Ledger::start(&db);
    let record = pulls(&ledger, REPO);
    assert_eq!(record["pulls"][0]["digest"], digest(1).as_str(), "{record}");
    // The same event again after the restart: still counted once.
    assert_eq!(post_events(&ledger, &[pull("1", REPO, &digest(1), 2)]), 200);
    assert_eq!(pulls(&ledger, REPO)["pulls"][0]["count"], 1);
}

#[test]
fn serve_refuses_bad_settings_before_listening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("ledger.db");
    let db = db.to_str().expect("utf-8");
    let out = run(&[], &["ledger", "serve", "--db", db]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("CLEANUP_LEDGER_TOKEN"), "{}", out.all());
    let token = [("CLEANUP_LEDGER_TOKEN".to_string(), TOKEN.to_string())];
    let out = run(
        &token,
        &["ledger", "serve", "--db", db, "--listen", "nowhere"],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("--listen \"nowhere\""), "{}", out.all());
    let out = run(
        &token,
        &["ledger", "serve", "--db", "postgres://u:hunter2@/x?bogus=1"],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(!out.all().contains("hunter2"), "{}", out.all());
}

/// The registry, seen from the ledger: an image `pulled` 3 days ago, one
/// pulled 200 days ago (`stale`), one never pulled (`never`), a multi-arch
/// index whose amd64 child alone was pulled by digest yesterday (`multi`),
/// and `latest` (protected). The ledger has watched the repository for a
/// year (a push event dated then, as the registry would have sent it).
struct Scene {
    emulator: Emulator,
    ledger: Ledger,
    _dir: tempfile::TempDir,
    policy: String,
}

const UNPULLED: &str = "rules:\n  - name: unpulled\n    delete: '.*'\n    unpulled_for: 90d\n";

fn scene() -> Scene {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::start(&dir.path().join("ledger.db"));
    let emulator = Emulator::start(Config::default());
    let repository = emulator.repository("app");
    let built = Some(Utc::now() - Duration::days(300));
    let pulled = repository.push_image(Some("pulled"), built);
    let stale = repository.push_image(Some("stale"), built);
    let never = repository.push_image(Some("never"), built);
    let amd64 = repository.push_platform_image(None, "linux", "amd64", built);
    let arm64 = repository.push_platform_image(None, "linux", "arm64", built);
    let multi = repository.push_index("multi", &[&amd64, &arm64]);
    repository.push_image(Some("latest"), built);
    let path = repository.path().to_string();
    assert_eq!(path, REPO);
    let status = post_events(
        &ledger,
        &[
            event(
                "push",
                "push",
                REPO,
                &never,
                Utc::now() - Duration::days(365),
                "docker/27",
            ),
            pull("p1", REPO, &pulled, 3),
            pull("p2", REPO, &stale, 200),
            pull("p3", REPO, &amd64, 1),
            // The tool's own reads do not count.
            event(
                "own",
                "pull",
                REPO,
                &never,
                Utc::now(),
                "registry-cleanup/0.1.0",
            ),
        ],
    );
    assert_eq!(status, 200);
    let _ = (multi, arm64);
    let policy = write_file(&dir, "policy.yml", UNPULLED);
    Scene {
        emulator,
        ledger,
        _dir: dir,
        policy,
    }
}

fn ledger_env(scene: &Scene, url: &str) -> Vec<(String, String)> {
    with(
        scene.emulator.ci_env(),
        &[("CLEANUP_LEDGER_URL", url), ("CLEANUP_LEDGER_TOKEN", TOKEN)],
    )
}

fn deleted(report: &Value) -> Vec<String> {
    let mut names: Vec<String> = report["repositories"][0]["deleted"]
        .as_array()
        .expect("deleted")
        .iter()
        .map(|d| d["tag"].as_str().expect("tag").to_string())
        .collect();
    names.sort();
    names
}

fn kinds(report: &Value) -> Vec<(String, String)> {
    report["repositories"][0]["kept_tags"]
        .as_array()
        .expect("kept_tags")
        .iter()
        .map(|k| {
            (
                k["tag"].as_str().expect("tag").to_string(),
                k["kind"].as_str().expect("kind").to_string(),
            )
        })
        .collect()
}

#[test]
fn run_inventory_and_plan_delete_only_what_nobody_pulled() {
    let scene = scene();
    let dir = tempfile::tempdir().expect("temp dir");
    let env = ledger_env(&scene, &scene.ledger.url);
    let report = dir.path().join("dry.json");
    let report_arg = report.to_str().expect("utf-8");
    let out = run(
        &env,
        &[
            "run",
            "--policy",
            &scene.policy,
            "--dry-run",
            "--report",
            report_arg,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let dry = report_json(&report);
    assert_eq!(deleted(&dry), ["never", "stale"], "{dry}");
    let expected_kinds = vec![
        ("latest".to_string(), "protected_latest".to_string()),
        ("multi".to_string(), "pulled_recently".to_string()),
        ("pulled".to_string(), "pulled_recently".to_string()),
    ];
    assert_eq!(kinds(&dry), expected_kinds);
    let reason = &dry["repositories"][0]["kept_tags"][2]["reason"];
    assert_eq!(
        reason,
        "pulled 3 days ago, within unpulled_for 90d of \"unpulled\""
    );

    // The inventory records what the ledger said; `plan` decides the same, offline.
    let inventory = dir.path().join("inventory.json");
    let inventory_arg = inventory.to_str().expect("utf-8");
    let out = run(&env, &["inventory", "--output", inventory_arg]);
    assert_eq!(out.code, 0, "{}", out.all());
    let written = report_json(&inventory);
    let repository = &written["repositories"][0];
    assert!(
        repository["ledger_watched_since"].is_string(),
        "{repository}"
    );
    let pulled_at = |tag: &str| {
        repository["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .find(|t| t["name"] == tag)
            .map(|t| t["last_pulled_at"].clone())
            .expect("tag listed")
    };
    assert!(pulled_at("pulled").is_string() && pulled_at("multi").is_string());
    assert!(pulled_at("never").is_null());
    let planned = dir.path().join("plan.json");
    let planned_arg = planned.to_str().expect("utf-8");
    let out = run(
        &[],
        &[
            "plan",
            "--inventory",
            inventory_arg,
            "--policy",
            &scene.policy,
            "--report",
            planned_arg,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let offline = report_json(&planned);
    assert_eq!(deleted(&offline), deleted(&dry));
    assert_eq!(kinds(&offline), kinds(&dry));

    // The live run deletes exactly that.
    let out = run(&env, &["run", "--policy", &scene.policy]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(names(&scene.emulator, REPO), ["latest", "multi", "pulled"]);
}

#[test]
fn an_unreadable_ledger_deletes_nothing_through_the_rule() {
    let scene = scene();
    let dir = tempfile::tempdir().expect("temp dir");
    // A second rule that needs no ledger still applies.
    let policy = write_file(
        &dir,
        "policy.yml",
        "rules:\n  - {name: unpulled, delete: '.*', unpulled_for: 90d}\n",
    );
    // The wrong token, then nobody listening.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    for (what, env, why) in [
        (
            "wrong token",
            with(
                ledger_env(&scene, &scene.ledger.url),
                &[("CLEANUP_LEDGER_TOKEN", "another-token-0123456789")],
            ),
            "the ledger refused the token",
        ),
        (
            "nobody listening",
            with(
                ledger_env(&scene, &closed),
                &[("CLEANUP_RETRY_MAX_ATTEMPTS", "1")],
            ),
            "the pull ledger could not be read",
        ),
    ] {
        let report = dir.path().join("report.json");
        let report_arg = report.to_str().expect("utf-8");
        let out = run(&env, &["run", "--policy", &policy, "--report", report_arg]);
        assert_eq!(out.code, 1, "{what}: {}", out.all());
        let written = report_json(&report);
        assert_eq!(deleted(&written), Vec::<String>::new(), "{what}");
        let unreadable = written["repositories"][0]["ledger_unreadable"]
            .as_str()
            .unwrap_or("");
        assert!(unreadable.contains(why), "{what}: {unreadable}");
        assert!(
            out.stdout.contains(why),
            "{what}: the summary says why:\n{}",
            out.all()
        );
        assert!(!out.all().contains(TOKEN), "{what}: the token was printed");
        assert_eq!(scene.emulator.count("DELETE", ""), 0, "{what}");
        assert_eq!(names(&scene.emulator, REPO).len(), 5, "{what}");
    }
}

#[test]
fn unpulled_for_without_a_ledger_or_on_the_server_engine_is_refused_before_any_request() {
    let scene = scene();
    let env = scene.emulator.ci_env();
    let out = run(&env, &["run", "--policy", &scene.policy, "--dry-run"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("uses unpulled_for, which needs the pull ledger: pass --ledger URL"),
        "{}",
        out.all()
    );
    let out = run(
        &ledger_env(&scene, &scene.ledger.url),
        &["run", "--policy", &scene.policy, "--engine", "server"],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("GitLab's bulk delete cannot express"),
        "{}",
        out.all()
    );
    assert!(
        scene.emulator.requests().is_empty(),
        "{:?}",
        scene.emulator.requests()
    );
    let out = run(
        &[],
        &["check", "--policy", &scene.policy, "--engine", "server"],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("uses unpulled_for"), "{}", out.all());
    let out = run(&[], &["check", "--policy", &scene.policy]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("only when the pull ledger (--ledger) saw no pull of the image for 90 days"),
        "{}",
        out.all()
    );
}

/// A ledger that does not answer is asked once, not once per repository:
/// each would wait out the same retries.
#[test]
fn a_ledger_that_does_not_answer_is_asked_once() {
    let scene = scene();
    for name in ["one", "two", "three"] {
        scene
            .emulator
            .repository(name)
            .push_image(Some("old"), Some(Utc::now() - Duration::days(300)));
    }
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    let env = with(
        ledger_env(&scene, &closed),
        &[("CLEANUP_RETRY_MAX_ATTEMPTS", "1")],
    );
    let out = run(&env, &["run", "--policy", &scene.policy, "--dry-run"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let asked = out
        .stderr
        .matches("the pull ledger could not be read: rules")
        .count();
    let not_asked = out
        .stderr
        .matches("the pull ledger is not asked again")
        .count();
    assert_eq!((asked, not_asked), (1, 3), "{}", out.all());
    assert_eq!(
        out.stdout
            .matches("WARNING: the pull ledger could not be read")
            .count(),
        4,
        "{}",
        out.all()
    );
}
