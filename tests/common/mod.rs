//! Shared helpers for the integration tests: run the real binary against the emulator.
#![allow(dead_code, unused_imports)]

use std::process::Command;

use chrono::{DateTime, Duration, Utc};
pub use gitlab_emulator::{Config, Emulator, ScriptedFault, TagSpec};

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }

    /// Panics, showing both streams, unless stdout holds `needle`.
    #[track_caller]
    pub fn assert_stdout_has(&self, needle: &str) {
        assert!(
            self.stdout.contains(needle),
            "no {needle:?} in stdout:\n{}",
            self.all()
        );
    }

    /// Panics, showing both streams, unless stderr holds `needle`.
    #[track_caller]
    pub fn assert_stderr_has(&self, needle: &str) {
        assert!(
            self.stderr.contains(needle),
            "no {needle:?} in stderr:\n{}",
            self.all()
        );
    }

    /// Panics, showing both streams and where, if stdout holds `needle`.
    #[track_caller]
    pub fn assert_stdout_lacks(&self, needle: &str) {
        assert_eq!(
            self.stdout.find(needle),
            None,
            "{needle:?} in stdout:\n{}",
            self.all()
        );
    }

    /// Panics, showing both streams and where, if stderr holds `needle`.
    #[track_caller]
    pub fn assert_stderr_lacks(&self, needle: &str) {
        assert_eq!(
            self.stderr.find(needle),
            None,
            "{needle:?} in stderr:\n{}",
            self.all()
        );
    }
}

/// Panics, showing the output, if it holds any of the emulator's secrets
/// (tokens, passwords, the JWTs it issued).
#[track_caller]
pub fn assert_no_secret(emulator: &Emulator, out: &Output) {
    let all = out.all();
    for secret in emulator.secrets() {
        assert!(!all.contains(&secret), "a secret in the output:\n{all}");
    }
}

/// Runs `registry-cleanup ARGS` with exactly `env` (nothing inherited).
pub fn run(env: &[(String, String)], args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_registry-cleanup"))
        .env_clear()
        .envs(env.iter().cloned())
        .args(args)
        .output()
        .expect("the binary runs");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `registry-cleanup ARGS` in the directory `dir`, with exactly `env`.
pub fn run_in(dir: &std::path::Path, env: &[(String, String)], args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_registry-cleanup"))
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().cloned())
        .args(args)
        .output()
        .expect("the binary runs");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn with(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    }
    env
}

pub fn without(mut env: Vec<(String, String)>, keys: &[&str]) -> Vec<(String, String)> {
    env.retain(|(k, _)| !keys.contains(&k.as_str()));
    env
}

pub fn tag(name: &str) -> TagSpec {
    TagSpec {
        name: name.to_string(),
        digest: None,
        created_at: Some(Utc::now() - Duration::days(1)),
        pushed_at: None,
        protected: false,
    }
}

pub fn tag_at(name: &str, created_at: DateTime<Utc>) -> TagSpec {
    TagSpec {
        created_at: Some(created_at),
        ..tag(name)
    }
}

pub fn tag_with_digest(name: &str, digest: &str) -> TagSpec {
    TagSpec {
        digest: Some(digest.to_string()),
        ..tag(name)
    }
}

pub fn undated(name: &str) -> TagSpec {
    TagSpec {
        created_at: None,
        ..tag(name)
    }
}

/// A policy of one rule that deletes every `mr-*` tag.
pub const DELETE_REVIEW_TAGS: &str = r#"
rules:
  - name: review images
    delete: "mr-.*"
"#;

/// A policy of one rule that deletes the `mr-N` tags but the newest.
pub const KEEP_THE_NEWEST_REVIEW_TAG: &str = r#"
rules:
  - name: review images
    delete: "mr-\\d+"
    keep_n: 1
"#;

/// A token service's JSON answer (`body`) with an `access_token` of the
/// wrong type appended: serde's error on it would quote the whole body.
pub fn append_access_token_number(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    format!(
        "{},\"access_token\":5}}",
        text.trim_end().trim_end_matches('}')
    )
    .into_bytes()
}

pub fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

pub fn names(emulator: &Emulator, repository: &str) -> Vec<String> {
    emulator.tags(repository).into_keys().collect()
}

pub fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

/// Requests with `method` whose path contains `path` and whose query contains `query`.
pub fn count_query(emulator: &Emulator, method: &str, path: &str, query: &str) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|r| {
            r.method.eq_ignore_ascii_case(method)
                && r.path.contains(path)
                && r.query.contains(query)
        })
        .count()
}

/// Writes `policy` to `policy.yml` in a directory of its own and runs
/// `registry-cleanup ARGS --policy FILE` with exactly `env`. The caller
/// asserts the exit code.
pub fn run_with_policy(env: &[(String, String)], policy: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", policy);
    let mut args = args.to_vec();
    args.extend(["--policy", &policy]);
    run(env, &args)
}

/// Writes `policy` to `policy.yml` in a directory of its own, runs
/// `registry-cleanup ARGS --policy FILE --report FILE` with exactly `env`,
/// asserts that it exits 0, and returns its output and the report it wrote.
pub fn run_policy(
    env: &[(String, String)],
    policy: &str,
    args: &[&str],
) -> (Output, serde_json::Value) {
    run_policy_exiting(env, policy, args, 0)
}

/// [`run_policy`] for a run that must exit `code` and still write its
/// report (1: something failed or the run was refused after planning).
pub fn run_policy_exiting(
    env: &[(String, String)],
    policy: &str,
    args: &[&str],
    code: i32,
) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", policy);
    let mut args = args.to_vec();
    args.extend(["--policy", &policy]);
    run_writing_json(env, &args, "--report", code)
}

/// Runs `registry-cleanup ARGS FLAG FILE` with exactly `env`, where FLAG
/// names the JSON file the command writes (`--report`, `--output`),
/// asserts that it exits `code`, and returns its output and that file.
pub fn run_writing_json(
    env: &[(String, String)],
    args: &[&str],
    flag: &str,
    code: i32,
) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir
        .path()
        .join(format!("{}.json", flag.trim_start_matches('-')));
    let mut args = args.to_vec();
    args.extend([flag, file.to_str().expect("path")]);
    let out = run(env, &args);
    assert_eq!(out.code, code, "{}", out.all());
    let json = report_json(&file);
    (out, json)
}

/// Runs `registry-cleanup inventory ARGS --output DIR/inventory.json` with
/// exactly `env` and asserts that it exits 0: its output, the file (for a
/// later `plan --inventory`) and what the file holds.
pub fn write_inventory(
    env: &[(String, String)],
    dir: &tempfile::TempDir,
    args: &[&str],
) -> (Output, String, serde_json::Value) {
    let file = dir.path().join("inventory.json").display().to_string();
    let mut args = [&["inventory"][..], args].concat();
    args.extend(["--output", &file]);
    let out = run(env, &args);
    assert_eq!(out.code, 0, "{}", out.all());
    let json = report_json(std::path::Path::new(&file));
    (out, file, json)
}

/// The `(a, b)` string fields of each entry of a report's array, in order:
/// `field_pairs(&repository["kept_tags"], "tag", "kind")`.
pub fn field_pairs<'a>(
    entries: &'a serde_json::Value,
    a: &str,
    b: &str,
) -> Vec<(&'a str, &'a str)> {
    entries
        .as_array()
        .unwrap_or_else(|| panic!("an array: {entries}"))
        .iter()
        .map(|entry| {
            let field = |name: &str| {
                entry[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name} in {entry}"))
            };
            (field(a), field(b))
        })
        .collect()
}

/// A report's entry for the repository `path`.
pub fn repository_entry<'a>(report: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    report["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .find(|r| r["path"] == path)
        .unwrap_or_else(|| panic!("{path} in {report}"))
}

/// A JSON report the binary wrote.
pub fn report_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written")).expect("json")
}

/// A counter from the tool's `HTTP requests sent` log line (logged at `info`
/// by commands that get as far as sending requests): what the client itself
/// counted, e.g. `retries` or `longest_retry_wait_ms`.
pub fn http_stat(stderr: &str, field: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|line| line.contains("HTTP requests sent"))
        .unwrap_or_else(|| panic!("no \"HTTP requests sent\" line in:\n{stderr}"));
    let prefix = format!("{field}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(prefix.as_str()))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in the stats line: {line}"))
}

/// Called by a test that needs something from outside the workspace (a real
/// registry, the openssl binary) when that is missing; `what` says what and
/// how to provide it. Such tests are `#[ignore]`d, so they only run when asked
/// for (`--ignored`). Under CI (`CI` set, as GitLab and `.ci/run` do) a missing
/// prerequisite is a failure: a CI job that cannot run the test must not
/// report it passed. Elsewhere the test says, past the output capture, that
/// it checked nothing, and the caller returns.
pub fn missing_prerequisite(what: &str) {
    use std::io::Write as _;
    let ci = std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false");
    assert!(!ci, "CI is set but {what}: this test would check nothing");
    let _ = writeln!(std::io::stderr(), "SKIPPED, NOTHING CHECKED: {what}");
}
