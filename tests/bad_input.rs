//! Hostile and broken input, category by category: policies, inventories,
//! environment variables, arguments and server answers. Every case must end
//! with the documented exit code (2 for what the user gave us, 1 for a server
//! that misbehaves), a message naming what was wrong, no panic, no hang, and
//! no write.
//!
//! The file corpora live in `tests/bad_input/{policy,inventory}/` (each file
//! with a sidecar `.expect` of substrings, one per line) and, for policies,
//! `tests/policy_corpus/` too. Run with `--nocapture` to see the corpus size.
//! Every environment, argument and server-answer case is a test of its own,
//! e.g. `cargo test --test bad_input environment::ci_project_id_zero`.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use gitlab_emulator::{Server, Tamper, TamperBody};

const ROOT: &str = "group/project";
const API: &str = "group/project/api";

/// Deletes every `mr-*` tag: any run that gets far enough writes.
const POLICY: &str = "rules:\n  - name: reviews\n    delete: \"mr-.*\"\n";

/// Runs the binary with exactly `env`, killing it after `timeout`.
fn run_bounded(env: &[(String, String)], args: &[String], timeout: Duration) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_registry-cleanup"))
        .env_clear()
        .envs(env.iter().cloned())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let started = Instant::now();
    let (code, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break (status.code().unwrap_or(-1), false);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break (-1, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        code,
        timed_out,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

struct Outcome {
    code: i32,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

/// One bad input and what must come of it.
struct Case {
    category: &'static str,
    name: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
    code: i32,
    expect: Vec<String>,
    /// Whether the tool may send any request at all (it may read before it
    /// finds a server's answer unusable; it may never write).
    requests_allowed: bool,
}

impl Case {
    fn new(
        category: &'static str,
        name: impl Into<String>,
        env: Vec<(String, String)>,
        args: &[&str],
    ) -> Case {
        Case {
            category,
            name: name.into(),
            env,
            args: args.iter().map(|a| a.to_string()).collect(),
            code: 2,
            expect: Vec::new(),
            requests_allowed: false,
        }
    }

    fn expect(mut self, needles: &[&str]) -> Case {
        self.expect.extend(needles.iter().map(|n| n.to_string()));
        self
    }

    fn reads(mut self) -> Case {
        self.requests_allowed = true;
        self
    }

    /// Runs the case; returns what is wrong with the outcome, if anything.
    fn check(&self, emulator: Option<&Emulator>) -> Vec<String> {
        if let Some(emulator) = emulator {
            emulator.reset_requests();
        }
        let out = run_bounded(&self.env, &self.args, Duration::from_secs(60));
        let label = format!("[{}] {}", self.category, self.name);
        let mut problems = Vec::new();
        let all = format!("--- stdout\n{}\n--- stderr\n{}", out.stdout, out.stderr);
        if out.timed_out {
            problems.push(format!("{label}: still running after 60 s\n{all}"));
            return problems;
        }
        if out.stderr.contains("panicked") || matches!(out.code, 101 | 134) || out.code < 0 {
            problems.push(format!("{label}: crashed (exit {})\n{all}", out.code));
            return problems;
        }
        if out.code != self.code {
            problems.push(format!(
                "{label}: exit {} instead of {}\n{all}",
                out.code, self.code
            ));
        }
        for needle in &self.expect {
            if !all.contains(needle.as_str()) {
                problems.push(format!("{label}: the output lacks {needle:?}\n{all}"));
            }
        }
        if let Some(emulator) = emulator {
            let writes = successful_writes(emulator);
            if writes > 0 {
                problems.push(format!("{label}: {writes} writes succeeded\n{all}"));
            }
            if !self.requests_allowed && !emulator.requests().is_empty() {
                problems.push(format!(
                    "{label}: {} requests were sent before the input was refused\n{all}",
                    emulator.requests().len()
                ));
            }
        }
        problems
    }
}

/// State-changing requests the emulator accepted (a refused attempt, such as
/// a tag delete answered `DIGEST_INVALID`, changes nothing).
fn successful_writes(emulator: &Emulator) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|r| {
            matches!(r.method.as_str(), "DELETE" | "PUT" | "POST" | "PATCH")
                && (200..300).contains(&r.status)
                && !r.path.starts_with("/jwt/auth")
        })
        .count()
}

fn seeded(config: Config) -> Emulator {
    let emulator = Emulator::start(config);
    emulator.add_repository("");
    emulator.add_repository("api");
    emulator.add_tags(
        ROOT,
        [tag("mr-1-a"), tag("mr-2-b"), tag("main"), tag("latest")],
    );
    emulator.add_tags(API, [tag("mr-1-a"), tag("keep")]);
    emulator
}

fn files_with(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    files
}

fn expectations(file: &Path) -> Vec<String> {
    let expect = file.with_extension("expect");
    std::fs::read_to_string(&expect)
        .unwrap_or_else(|err| panic!("{}: {err}", expect.display()))
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn report(sizes: &BTreeMap<&'static str, usize>, problems: &[String]) {
    for (category, size) in sizes {
        eprintln!("bad input corpus: {category}: {size} cases");
    }
    eprintln!(
        "bad input corpus: total: {} cases",
        sizes.values().sum::<usize>()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

fn run_cases(cases: Vec<Case>, emulator: Option<&Emulator>) {
    let mut sizes = BTreeMap::new();
    let mut problems = Vec::new();
    for case in &cases {
        *sizes.entry(case.category).or_insert(0) += 1;
        problems.extend(case.check(emulator));
    }
    report(&sizes, &problems);
}

#[test]
fn bad_policies_exit_2_before_any_request() {
    let emulator = seeded(Config::default());
    let mut cases = Vec::new();
    for dir in ["tests/policy_corpus", "tests/bad_input/policy"] {
        for file in files_with(&manifest_dir().join(dir), "yml") {
            let name = file
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let path = file.display().to_string();
            let mut case = Case::new(
                "policy",
                name,
                emulator.ci_env(),
                &["run", "--policy", &path],
            );
            case.expect = expectations(&file);
            cases.push(case);
        }
    }
    assert!(cases.len() >= 50, "only {} policy cases", cases.len());
    run_cases(cases, Some(&emulator));
}

#[test]
fn bad_inventories_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let mut cases = Vec::new();
    for file in files_with(&manifest_dir().join("tests/bad_input/inventory"), "json") {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let path = file.display().to_string();
        let mut case = Case::new(
            "inventory",
            name,
            Vec::new(),
            &["plan", "--inventory", &path, "--policy", &policy],
        );
        case.expect = expectations(&file);
        cases.push(case);
    }
    assert!(cases.len() >= 30, "only {} inventory cases", cases.len());
    run_cases(cases, None);
}

/// One `#[test]` per case, so a case runs alone by name
/// (`cargo test --test bad_input environment::ci_project_id_zero`). Each gets
/// a fresh [`Fixture`] as `f` and builds a [`Case`] from it.
macro_rules! cases {
    ($($name:ident: |$f:ident| $case:expr;)+) => {$(
        #[test]
        fn $name() {
            let $f = &Fixture::new();
            $f.check($case);
        }
    )+};
}

/// What the environment and argument cases run against: the seeded
/// emulator, its CI variables and a policy that would delete if it got that far.
struct Fixture {
    emulator: Emulator,
    dir: tempfile::TempDir,
    policy: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = write_file(&dir, "policy.yml", POLICY);
        Fixture {
            emulator: seeded(Config::default()),
            dir,
            policy,
        }
    }

    fn ci(&self) -> Vec<(String, String)> {
        self.emulator.ci_env()
    }

    fn run_args(&self) -> [&str; 3] {
        ["run", "--policy", self.policy.as_str()]
    }

    /// A file in the fixture's directory; its path.
    fn file(&self, name: &str, text: &str) -> String {
        write_file(&self.dir, name, text)
    }

    /// The directory itself, where a file is expected.
    fn dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// `run` with one CI variable set to `value`.
    fn var(&self, variable: &str, value: &str, expect: &[&str]) -> Case {
        self.env_case(
            format!("{variable}={value:?}"),
            with(self.ci(), &[(variable, value)]),
            &self.run_args(),
            expect,
        )
    }

    fn env_case(
        &self,
        name: impl Into<String>,
        env: Vec<(String, String)>,
        args: &[&str],
        expect: &[&str],
    ) -> Case {
        Case::new("environment", name, env, args).expect(expect)
    }

    /// The CI variables and these arguments.
    fn args(&self, args: &[&str], expect: &[&str]) -> Case {
        let case = Case::new("arguments", format!("{args:?}"), self.ci(), args).expect(expect);
        // `inventory` lists the repositories before it checks `--repository` (a read, no write).
        if args.first() == Some(&"inventory") && args.contains(&"--repository") {
            case.reads()
        } else {
            case
        }
    }

    fn check(&self, case: Case) {
        let problems = case.check(Some(&self.emulator));
        assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    }
}

fn example_inventory() -> String {
    manifest_dir()
        .join("examples/inventory.json")
        .display()
        .to_string()
}

/// Malformed environment variables are named and nothing is sent.
mod environment {
    use super::*;

    cases! {
        ci_server_url_without_a_scheme: |f| f.var(
            "CI_SERVER_URL",
            "gitlab.example.com",
            &["CI_SERVER_URL=\"gitlab.example.com\" is not a URL"],
        );
        ci_server_url_not_a_url: |f| f.var("CI_SERVER_URL", "not a url", &["CI_SERVER_URL"]);
        ci_server_url_ftp: |f| f.var(
            "CI_SERVER_URL",
            "ftp://gitlab.example.com",
            &["CI_SERVER_URL", "http(s)"],
        );
        ci_server_url_plain_http: |f| f.var(
            "CI_SERVER_URL",
            "http://gitlab.example.com",
            &["CI_SERVER_URL", "--allow-insecure-http"],
        );
        ci_server_url_with_credentials: |f| f.var(
            "CI_SERVER_URL",
            "https://user:pw@gitlab.example.com",
            &["CI_SERVER_URL must not contain credentials"],
        );
        ci_server_url_without_a_host: |f| f.var("CI_SERVER_URL", "http://", &["CI_SERVER_URL"]);
        ci_server_url_unclosed_ipv6: |f| f.var("CI_SERVER_URL", "http://[::1", &["CI_SERVER_URL"]);
        ci_server_url_empty: |f| f.var("CI_SERVER_URL", "", &["CI_SERVER_URL is not set"]);
        ci_api_v4_url_not_a_url: |f| f.var("CI_API_V4_URL", "::", &["CI_API_V4_URL"]);
        ci_api_v4_url_on_another_host: |f| f.var(
            "CI_API_V4_URL",
            "https://elsewhere.example.com/api/v4",
            &["CI_API_V4_URL", "not on CI_SERVER_URL's origin"],
        );
        ci_api_v4_url_on_another_address: |f| f.var(
            "CI_API_V4_URL",
            "http://127.0.0.2:1/api/v4",
            &["CI_API_V4_URL", "not on CI_SERVER_URL's origin"],
        );
        ci_project_id_letters: |f| f.var(
            "CI_PROJECT_ID",
            "abc",
            &["CI_PROJECT_ID=\"abc\" is not a project ID"],
        );
        ci_project_id_negative: |f| f.var("CI_PROJECT_ID", "-1", &["CI_PROJECT_ID=\"-1\""]);
        ci_project_id_zero: |f| f.var("CI_PROJECT_ID", "0", &["CI_PROJECT_ID=\"0\""]);
        ci_project_id_fraction: |f| f.var("CI_PROJECT_ID", "1.5", &["CI_PROJECT_ID=\"1.5\""]);
        ci_project_id_overflow: |f| f.var(
            "CI_PROJECT_ID",
            "99999999999999999999999",
            &["CI_PROJECT_ID=\"99999999999999999999999\""],
        );
        ci_project_id_injection: |f| f.var("CI_PROJECT_ID", "1; DROP TABLE", &["CI_PROJECT_ID"]);
        ci_registry_image_without_a_path: |f| f.var(
            "CI_REGISTRY_IMAGE",
            "no-slash-at-all",
            &["CI_REGISTRY_IMAGE=\"no-slash-at-all\""],
        );
        ci_registry_image_empty_path: |f| f.var(
            "CI_REGISTRY_IMAGE",
            &format!("{}/", f.emulator.registry_host()),
            &["CI_REGISTRY_IMAGE="],
        );
        ci_registry_image_on_another_registry: |f| f.var(
            "CI_REGISTRY_IMAGE",
            "other.example.com/group/project",
            &["CI_REGISTRY_IMAGE=\"other.example.com/group/project\""],
        );
        cleanup_registry_url_without_a_scheme: |f| f.var(
            "CLEANUP_REGISTRY_URL",
            "registry.example.com",
            &["CLEANUP_REGISTRY_URL=\"registry.example.com\" is not a URL"],
        );
        cleanup_registry_url_plain_http: |f| f.var(
            "CLEANUP_REGISTRY_URL",
            "http://registry.example.com",
            &["CLEANUP_REGISTRY_URL", "--allow-insecure-http"],
        );
        cleanup_registry_url_ftp: |f| f.var(
            "CLEANUP_REGISTRY_URL",
            "ftp://127.0.0.1:5000",
            &["CLEANUP_REGISTRY_URL", "http(s)"],
        );
        cleanup_registry_url_with_credentials: |f| f.var(
            "CLEANUP_REGISTRY_URL",
            "http://user:secret@127.0.0.1:5000",
            &["CLEANUP_REGISTRY_URL must not contain credentials"],
        );
        cleanup_dry_run_maybe: |f| f.var(
            "CLEANUP_DRY_RUN",
            "maybe",
            &["CLEANUP_DRY_RUN=\"maybe\" is not a boolean"],
        );
        cleanup_dry_run_two: |f| f.var("CLEANUP_DRY_RUN", "2", &["CLEANUP_DRY_RUN=\"2\""]);
        cleanup_concurrency_zero: |f| f.var("CLEANUP_CONCURRENCY", "0", &["CLEANUP_CONCURRENCY is 0"]);
        cleanup_concurrency_negative: |f| f.var(
            "CLEANUP_CONCURRENCY",
            "-1",
            &["CLEANUP_CONCURRENCY=\"-1\""],
        );
        cleanup_concurrency_a_word: |f| f.var(
            "CLEANUP_CONCURRENCY",
            "many",
            &["CLEANUP_CONCURRENCY=\"many\""],
        );
        cleanup_concurrency_too_high: |f| f.var(
            "CLEANUP_CONCURRENCY",
            "100000",
            &["CLEANUP_CONCURRENCY is 100000"],
        );
        cleanup_concurrency_overflow: |f| f.var(
            "CLEANUP_CONCURRENCY",
            "99999999999999999999999",
            &["CLEANUP_CONCURRENCY=\"99999999999999999999999\""],
        );
        cleanup_max_deletions_negative: |f| f.var(
            "CLEANUP_MAX_DELETIONS",
            "-1",
            &["CLEANUP_MAX_DELETIONS=\"-1\""],
        );
        cleanup_max_deletions_a_word: |f| f.var(
            "CLEANUP_MAX_DELETIONS",
            "ten",
            &["CLEANUP_MAX_DELETIONS=\"ten\""],
        );
        cleanup_max_deletions_exponent: |f| f.var(
            "CLEANUP_MAX_DELETIONS",
            "1e3",
            &["CLEANUP_MAX_DELETIONS=\"1e3\""],
        );
        cleanup_engine_unknown: |f| f.var(
            "CLEANUP_ENGINE",
            "fast",
            &["CLEANUP_ENGINE=\"fast\" is not an engine"],
        );
        cleanup_engine_trailing_space: |f| f.var("CLEANUP_ENGINE", "Client ", &["CLEANUP_ENGINE"]);
        cleanup_log_bad_directive: |f| f.var("CLEANUP_LOG", "info,[", &["CLEANUP_LOG"]);
        cleanup_log_bad_level: |f| f.var("CLEANUP_LOG", "debug=verbose=x", &["CLEANUP_LOG"]);
        cleanup_log_format_xml: |f| f.var(
            "CLEANUP_LOG_FORMAT",
            "xml",
            &["CLEANUP_LOG_FORMAT=\"xml\""],
        );
        cleanup_allow_insecure_http_perhaps: |f| f.var(
            "CLEANUP_ALLOW_INSECURE_HTTP",
            "perhaps",
            &["CLEANUP_ALLOW_INSECURE_HTTP=\"perhaps\""],
        );
        cleanup_retry_max_attempts_zero: |f| f.var(
            "CLEANUP_RETRY_MAX_ATTEMPTS",
            "0",
            &["CLEANUP_RETRY_MAX_ATTEMPTS is 0"],
        );
        cleanup_retry_max_attempts_a_word: |f| f.var(
            "CLEANUP_RETRY_MAX_ATTEMPTS",
            "lots",
            &["CLEANUP_RETRY_MAX_ATTEMPTS=\"lots\""],
        );
        cleanup_retry_base_ms_too_high: |f| f.var(
            "CLEANUP_RETRY_BASE_MS",
            "99999999",
            &["CLEANUP_RETRY_BASE_MS is 99999999"],
        );
        ca_file_missing: |f| f.var(
            "CI_SERVER_TLS_CA_FILE",
            "/nonexistent/ca.pem",
            &["CI_SERVER_TLS_CA_FILE=/nonexistent/ca.pem does not name a readable file"],
        );
        ca_file_a_directory: |f| f.var("CI_SERVER_TLS_CA_FILE", "/", &["CI_SERVER_TLS_CA_FILE=/"]);
        ca_file_not_pem: |f| f.var(
            "CI_SERVER_TLS_CA_FILE",
            &f.file("garbage.pem", GARBAGE_PEM),
            &["garbage.pem", "CI_SERVER_TLS_CA_FILE"],
        );
        ca_file_empty: |f| f.var(
            "CI_SERVER_TLS_CA_FILE",
            &f.file("empty.pem", ""),
            &["empty.pem", "CI_SERVER_TLS_CA_FILE"],
        );
        ca_file_pem_not_a_certificate: |f| f.var(
            "CI_SERVER_TLS_CA_FILE",
            &f.file("broken.pem", BROKEN_PEM),
            &["broken.pem", "CI_SERVER_TLS_CA_FILE"],
        );
        ssl_cert_file_not_pem: |f| f.var(
            "SSL_CERT_FILE",
            &f.file("garbage.pem", GARBAGE_PEM),
            &["garbage.pem", "SSL_CERT_FILE"],
        );
        ci_registry_user_empty: |f| f.var("CI_REGISTRY_USER", "", &["CI_REGISTRY_USER"]);
        ci_job_token_with_a_line_break: |f| f.var("CI_JOB_TOKEN", "line\nbreak", &["JOB-TOKEN"]);
        gitlab_token_with_control_characters: |f| f.var(
            "GITLAB_TOKEN",
            "tab\there\u{7f}",
            &["PRIVATE-TOKEN"],
        );
        // CI_REGISTRY only counts without CLEANUP_REGISTRY_URL.
        ci_registry_not_a_host: |f| f.env_case(
            "CI_REGISTRY=\"not a host\"",
            with(
                without(f.ci(), &["CLEANUP_REGISTRY_URL"]),
                &[("CI_REGISTRY", "not a host")],
            ),
            &f.run_args(),
            &["CI_REGISTRY"],
        );
        ci_registry_port_out_of_range: |f| f.env_case(
            "CI_REGISTRY=\"localhost:99999\"",
            with(
                without(f.ci(), &["CLEANUP_REGISTRY_URL"]),
                &[("CI_REGISTRY", "localhost:99999")],
            ),
            &f.run_args(),
            &["CI_REGISTRY"],
        );
        no_registry_at_all: |f| f.env_case(
            "no registry at all",
            without(
                f.ci(),
                &["CLEANUP_REGISTRY_URL", "CI_REGISTRY", "CI_REGISTRY_IMAGE"],
            ),
            &f.run_args(),
            &["CI_REGISTRY is not set"],
        );
        cleanup_policy_missing_file: |f| f.env_case(
            "CLEANUP_POLICY=\"/nonexistent/policy.yml\"",
            with(f.ci(), &[("CLEANUP_POLICY", "/nonexistent/policy.yml")]),
            &["run"],
            &["/nonexistent/policy.yml"],
        );
        no_project: |f| f.env_case(
            "no project",
            without(f.ci(), &["CI_PROJECT_ID", "CI_PROJECT_PATH"]),
            &f.run_args(),
            &["CI_PROJECT_ID nor CI_PROJECT_PATH"],
        );
        no_rest_credentials: |f| f.env_case(
            "no REST credentials",
            without(f.ci(), &["CI_JOB_TOKEN", "GITLAB_TOKEN"]),
            &f.run_args(),
            &["GITLAB_TOKEN"],
        );
        cleanup_now_not_a_time: |f| f.env_case(
            "CLEANUP_NOW for plan",
            vec![("CLEANUP_NOW".into(), "yesterday".into())],
            &["plan", "--inventory", &example_inventory(), "--policy", &f.policy],
            &["CLEANUP_NOW \"yesterday\" is not an RFC 3339 time"],
        );
        cleanup_report_in_a_missing_directory: |f| f.env_case(
            "CLEANUP_REPORT in a missing directory",
            with(f.ci(), &[("CLEANUP_REPORT", "/nonexistent/dir/report.json")]),
            &f.run_args(),
            &["/nonexistent/dir/report.json"],
        );
    }
}

const GARBAGE_PEM: &str = "this is not a certificate\n";
const BROKEN_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";

#[cfg(unix)]
#[test]
fn variables_that_are_not_utf8_are_named_not_a_panic() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let emulator = seeded(Config::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let bad = OsString::from_vec(vec![b'x', 0xff, 0xfe]);
    let run = |extra: (&str, &OsString)| {
        let output = Command::new(env!("CARGO_BIN_EXE_registry-cleanup"))
            .env_clear()
            .envs(emulator.ci_env())
            .env(extra.0, extra.1)
            .args(["run", "--dry-run", "--policy", &policy])
            .output()
            .expect("runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for variable in [
        "CI_PROJECT_PATH",
        "CI_JOB_TOKEN",
        "CLEANUP_CONCURRENCY",
        "CI_SERVER_TLS_CA_FILE",
    ] {
        emulator.reset_requests();
        let (code, stderr) = run((variable, &bad));
        assert_eq!(code, Some(2), "{variable}: {stderr}");
        assert!(
            stderr.contains(variable) && stderr.contains("UTF-8"),
            "{variable}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(emulator.requests().is_empty());
    }
    // A variable the tool does not read does not concern it.
    let (code, stderr) = run(("SOME_UNRELATED_VARIABLE", &bad));
    assert_eq!(code, Some(0), "{stderr}");
}

/// Bad arguments exit 2 naming the flag or value.
mod arguments {
    use super::*;

    cases! {
        unknown_flag: |f| f.args(&["--bogus"], &["--bogus"]);
        unknown_command: |f| f.args(&["frobnicate"], &["frobnicate"]);
        no_command: |f| f.args(&[], &["Usage"]);
        run_unknown_flag: |f| f.args(&["run", "--bogus"], &["--bogus"]);
        run_policy_without_a_value: |f| f.args(&["run", "--policy"], &["--policy"]);
        run_engine_unknown: |f| f.args(
            &["run", "--engine", "fast", "--policy", &f.policy],
            &["--engine", "fast"],
        );
        run_engine_empty: |f| f.args(&["run", "--engine", "", "--policy", &f.policy], &["--engine"]);
        run_concurrency_zero: |f| f.args(
            &["run", "--concurrency", "0", "--policy", &f.policy],
            &["--concurrency is 0"],
        );
        run_concurrency_negative: |f| f.args(
            &["run", "--concurrency", "-1", "--policy", &f.policy],
            &["'-1'"],
        );
        run_concurrency_a_word: |f| f.args(
            &["run", "--concurrency", "eight", "--policy", &f.policy],
            &["--concurrency", "eight"],
        );
        run_max_deletions_negative: |f| f.args(
            &["run", "--max-deletions", "-5", "--policy", &f.policy],
            &["'-5'"],
        );
        run_max_deletions_a_word: |f| f.args(
            &["run", "--max-deletions", "many", "--policy", &f.policy],
            &["--max-deletions", "many"],
        );
        run_policy_missing_file: |f| f.args(
            &["run", "--policy", "/nonexistent/p.yml"],
            &["/nonexistent/p.yml"],
        );
        run_policy_a_directory: |f| f.args(&["run", "--policy", &f.dir()], &["cannot read"]);
        run_dry_run_with_a_value: |f| f.args(
            &["run", "--dry-run=maybe", "--policy", &f.policy],
            &["--dry-run"],
        );
        delete_without_a_ref: |f| f.args(&["delete"], &["REF"]);
        delete_dry_run_without_a_ref: |f| f.args(&["delete", "--dry-run"], &["REF"]);
        delete_ref_with_a_slash: |f| f.args(&["delete", "a/b"], &["REF \"a/b\" is not a tag name"]);
        delete_ref_dot_dot: |f| f.args(&["delete", ".."], &["REF \"..\" is not a tag name"]);
        delete_ref_dot: |f| f.args(&["delete", "."], &["REF \".\" is not a tag name"]);
        delete_ref_leading_dash: |f| f.args(&["delete", "--", "-x"], &["REF \"-x\" is not a tag name"]);
        delete_unknown_short_flag: |f| f.args(&["delete", "-x"], &["-x"]);
        delete_ref_empty: |f| f.args(&["delete", ""], &["REF \"\" is not a tag name"]);
        delete_ref_with_spaces: |f| f.args(&["delete", "tag with spaces"], &["REF \"tag with spaces\""]);
        delete_ref_not_ascii: |f| f.args(&["delete", "täg"], &["REF \"täg\""]);
        delete_ref_with_a_question_mark: |f| f.args(&["delete", "a?b"], &["REF \"a?b\""]);
        delete_ref_percent_encoded: |f| f.args(&["delete", "a%2Fb"], &["REF \"a%2Fb\""]);
        delete_ref_too_long: |f| f.args(&["delete", &"a".repeat(129)], &["is not a tag name"]);
        delete_digest_not_hex: |f| f.args(
            &["delete", "sha256:xyz"],
            &["REF \"sha256:xyz\" is not a digest"],
        );
        delete_digest_upper_case: |f| f.args(
            &["delete", &format!("sha256:{}", "A".repeat(64))],
            &["is not a digest"],
        );
        delete_digest_sha512: |f| f.args(&["delete", "sha512:abcd"], &["REF \"sha512:abcd\""]);
        delete_repository_climbing_out: |f| f.args(
            &["delete", "--repository", "../other", "a"],
            &["--repository \"../other\""],
        );
        delete_repository_climbing_through: |f| f.args(
            &["delete", "--repository", "api/../../x", "a"],
            &["--repository \"api/../../x\""],
        );
        delete_repository_with_a_space: |f| f.args(
            &["delete", "--repository", "Api Server", "a"],
            &["--repository \"Api Server\""],
        );
        delete_repository_on_another_registry: |f| f.args(
            &["delete", "--repository", "other.example.com/x/y", "a"],
            &["another registry"],
        );
        delete_repository_and_all_repositories: |f| f.args(
            &["delete", "--repository", "api", "--all-repositories", "a"],
            &["--all-repositories"],
        );
        delete_concurrency_zero: |f| f.args(
            &["delete", "--concurrency", "0", "a"],
            &["--concurrency is 0"],
        );
        plan_without_inventory: |f| f.args(&["plan", "--policy", &f.policy], &["--inventory"]);
        plan_now_a_word: |f| f.args(
            &["plan", "--inventory", &example_inventory(), "--policy", &f.policy, "--now", "yesterday"],
            &["--now \"yesterday\" is not an RFC 3339 time"],
        );
        plan_now_month_13: |f| f.args(
            &[
                "plan", "--inventory", &example_inventory(), "--policy", &f.policy,
                "--now", "2024-13-01T00:00:00Z",
            ],
            &["--now \"2024-13-01T00:00:00Z\""],
        );
        plan_now_date_only: |f| f.args(
            &["plan", "--inventory", &example_inventory(), "--policy", &f.policy, "--now", "2024-05-01"],
            &["--now \"2024-05-01\""],
        );
        plan_inventory_missing_file: |f| f.args(
            &["plan", "--inventory", "/nonexistent/i.json", "--policy", &f.policy],
            &["/nonexistent/i.json"],
        );
        plan_inventory_a_directory: |f| f.args(
            &["plan", "--inventory", &f.dir(), "--policy", &f.policy],
            &["cannot read inventory file"],
        );
        check_policy_missing_file: |f| f.args(
            &["check", "--policy", "/nonexistent/p.yml"],
            &["/nonexistent/p.yml"],
        );
        inventory_repository_climbing_out: |f| f.args(
            &["inventory", "--repository", "../x"],
            &["--repository \"../x\""],
        );
        // Names a repository the project lacks: reads the list, then refuses.
        inventory_repository_not_in_the_project: |f| f.args(
            &["inventory", "--repository", "nope"],
            &["--repository group/project/nope: the project has no such container repository"],
        );
        inventory_concurrency_zero: |f| f.args(
            &["inventory", "--concurrency", "0"],
            &["--concurrency is 0"],
        );
        run_report_in_a_missing_directory: |f| f.args(
            &["run", "--report", "/nonexistent/dir/r.json", "--policy", &f.policy],
            &["/nonexistent/dir/r.json"],
        );
        delete_report_in_a_missing_directory: |f| f.args(
            &["delete", "--report", "/nonexistent/dir/r.json", "mr-1-a"],
            &["/nonexistent/dir/r.json"],
        );
    }
}

/// A check on the emulator after a case.
type AfterCheck = fn(&Emulator) -> Result<(), String>;

/// A server answer corrupted with `tamper`, and what the tool must make of it.
struct ServerCase {
    name: &'static str,
    config: Config,
    args: Vec<String>,
    extra_env: Vec<(&'static str, String)>,
    code: i32,
    expect: Vec<&'static str>,
    /// Extra check on the emulator afterwards.
    after: Option<AfterCheck>,
}

fn tampered(tamper: Vec<Tamper>) -> Config {
    Config {
        tamper,
        ..Config::default()
    }
}

fn server_case(name: &'static str, config: Config, expect: &[&'static str]) -> ServerCase {
    ServerCase {
        name,
        config,
        args: Vec::new(),
        extra_env: Vec::new(),
        code: 1,
        expect: expect.to_vec(),
        after: None,
    }
}

impl ServerCase {
    fn args(mut self, args: &[&str]) -> ServerCase {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    fn code(mut self, code: i32) -> ServerCase {
        self.code = code;
        self
    }

    fn env(mut self, name: &'static str, value: &str) -> ServerCase {
        self.extra_env.push((name, value.to_string()));
        self
    }

    fn after(mut self, check: fn(&Emulator) -> Result<(), String>) -> ServerCase {
        self.after = Some(check);
        self
    }
}

const REPOSITORIES_LIST: &str = "/api/v4/projects/1/registry/repositories";
const ROOT_V1_LIST: &str = "/gitlab/v1/repositories/group/project/tags/list/";
/// Every repository's `/gitlab/v1` tag list.
const V1_LISTS: &str = "/gitlab/v1/repositories/";

fn repositories_list() -> Tamper {
    Tamper::on(Some("GET"), REPOSITORIES_LIST).query("tags_count=true")
}

fn v1_list() -> Tamper {
    Tamper::on(Some("GET"), V1_LISTS)
}

/// An unsigned JWT granting everything, with `exp`/`iat` at the ends of i64.
fn overflowing_jwt() -> Vec<u8> {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = serde_json::json!({
        "exp": i64::MAX, "iat": i64::MIN, "nbf": i64::MIN,
        "access": [
            {"type": "repository", "name": "group/project", "actions": ["pull", "delete"]},
            {"type": "repository", "name": "group/project/api", "actions": ["pull", "delete"]},
        ],
    });
    let token = format!(
        "{}.{}.c2ln",
        engine.encode(br#"{"alg":"RS256"}"#),
        engine.encode(claims.to_string())
    );
    serde_json::json!({ "token": token })
        .to_string()
        .into_bytes()
}

fn an_hour_from_now() -> String {
    (chrono::Utc::now().timestamp() + 3600).to_string()
}

fn unchanged(emulator: &Emulator) -> Result<(), String> {
    let root = names(emulator, ROOT);
    let api = names(emulator, API);
    if root == ["latest", "main", "mr-1-a", "mr-2-b"] && api == ["keep", "mr-1-a"] {
        Ok(())
    } else {
        Err(format!("tags changed: {root:?} {api:?}"))
    }
}

fn huge_body(_: &[u8]) -> Vec<u8> {
    let mut body = b"[".to_vec();
    body.resize(33 * 1024 * 1024, b' ');
    body.push(b']');
    body
}

fn bogus_v1_page_names(_: &[u8]) -> Vec<u8> {
    br#"[{"name": 5, "digest": "sha256:00"}]"#.to_vec()
}

/// Misbehaving servers: exit 1 with the reason, and never a write.
mod server_answers {
    use super::*;

    /// One `#[test]` per case, so a case runs alone by name
    /// (`cargo test --test bad_input server_answers::v1_tags_truncated`).
    macro_rules! server_cases {
        ($($name:ident: $case:expr;)+) => {$(
            #[test]
            fn $name() {
                check_server_case($case);
            }
        )+};
    }

    server_cases! {
        // The REST repository list.
        repositories_html_instead_of_json: server_case("repositories: HTML instead of JSON", tampered(vec![repositories_list().body(TamperBody::Replace(b"<html><body>Sign in</body></html>".to_vec()))]), &[
            "listing the project's container repositories",
            "unexpected response",
            "<html>",
        ]);
        repositories_truncated_json: server_case("repositories: truncated JSON", tampered(vec![repositories_list().body(TamperBody::Truncate(30))]), &["EOF while parsing"]);
        repositories_id_of_the_wrong_type: server_case("repositories: id of the wrong type", tampered(vec![repositories_list().body(TamperBody::Replace(br#"[{"id":"1","path":"group/project"}]"#.to_vec()))]), &[
            "invalid type: string \"1\", expected u64",
        ]);
        repositories_null_path: server_case("repositories: null path", tampered(vec![repositories_list().body(TamperBody::Replace(br#"[{"id":1,"path":null}]"#.to_vec()))]), &["invalid type: null"]);
        repositories_an_object_not_a_list: server_case("repositories: an object, not a list", tampered(vec![repositories_list().body(TamperBody::Replace(br#"{"message":"ok"}"#.to_vec()))]), &["invalid type: map"]);
        repositories_path_escaping_the_project: server_case("repositories: a path escaping the project", tampered(vec![repositories_list().body(TamperBody::Replace(br#"[{"id":1,"path":"group/project/../../victim"}]"#.to_vec()))]), &[
            "group/project/../../victim",
            "not a valid repository path",
        ]);
        repositories_next_page_not_a_number: server_case("repositories: x-next-page not a number", tampered(vec![repositories_list().header("x-next-page", "abc")]), &["x-next-page \"abc\" is not a page number"]);
        repositories_next_page_beyond_u64: server_case("repositories: x-next-page beyond u64", tampered(vec![repositories_list().header("x-next-page", "99999999999999999999999")]), &["is not a page number"]);
        repositories_pages_that_loop: server_case(
            "repositories: pages that loop 1 → 2 → 1",
            tampered(vec![repositories_list().query("page=2").header("x-next-page", "1"), repositories_list().header("x-next-page", "2")]),
            &["already"],
        );
        repositories_link_to_another_origin: server_case(
            "repositories: Link rel=next to another origin",
            tampered(vec![repositories_list().without_header("x-next-page").header("link", "<http://198.51.100.7/api/v4/projects/1/registry/repositories?page=2>; rel=\"next\"")]),
            &["another origin", "198.51.100.7"],
        );
        repositories_protocol_relative_link: server_case(
            "repositories: protocol-relative Link to another host",
            tampered(vec![repositories_list().without_header("x-next-page").header("link", "<//198.51.100.7/x>; rel=\"next\"")]),
            &["another origin"],
        );
        repositories_unparsable_link: server_case("repositories: unparsable Link", tampered(vec![repositories_list().without_header("x-next-page").header("link", "<unterminated; rel=next")]), &["unparsable Link header"]);
        repositories_a_33_mib_page: server_case("repositories: a 33 MiB page", tampered(vec![repositories_list().body(TamperBody::Transform(huge_body))]), &["larger than"]).after(|e| {
            match e.count("GET", REPOSITORIES_LIST) {
                1 => Ok(()),
                n => Err(format!("an oversized answer was fetched {n} times: it is not transient")),
            }
        });
        repositories_rate_limit_reset_beyond_any_clock: server_case(
            "repositories: RateLimit-Reset beyond any clock",
            tampered(vec![repositories_list().header("ratelimit-remaining", "0").header("ratelimit-limit", "2000").header("ratelimit-reset", "18446744073709551615")]),
            &[],
        )
        .args(&["run", "--dry-run"])
        .code(0);
        repositories_budget_spent_for_an_hour: server_case(
            "repositories: budget spent until an hour from now",
            Config {
                gitlab_v1: false,
                tamper: vec![repositories_list()
                    .header("ratelimit-remaining", "0")
                    .header("ratelimit-limit", "2000")
                    .header("ratelimit-reset", &an_hour_from_now())],
                ..Config::default()
            },
            &[],
        )
        .args(&["inventory"])
        .code(0);
        repositories_429_retry_after_a_day: server_case(
            "repositories: 429 with Retry-After of a day, for ever",
            tampered(vec![repositories_list().status(429).header("retry-after", "86400")]),
            &["429"],
        )
        .env("CLEANUP_RETRY_MAX_ATTEMPTS", "2");
        repositories_503_for_ever: server_case("repositories: 503 for ever", tampered(vec![repositories_list().status(503)]), &["503"]).env("CLEANUP_RETRY_MAX_ATTEMPTS", "3").env("CLEANUP_RETRY_BASE_MS", "10");
        repositories_redirect_to_another_origin: server_case(
            "repositories: redirect to another origin",
            tampered(vec![repositories_list().status(302).header("location", "http://198.51.100.7/steal")]),
            &["302"],
        );
        // The registry's /gitlab/v1 tag list.
        v1_tags_not_json: server_case("v1 tags: not JSON", tampered(vec![v1_list().body(TamperBody::Replace(b"404 page not found, just kidding".to_vec()))]), &[
            "group/project",
            "listing failed, nothing deleted",
            "unexpected response",
        ]);
        v1_tags_truncated: server_case("v1 tags: truncated", tampered(vec![v1_list().body(TamperBody::Truncate(40))]), &["listing failed", "EOF while parsing"]);
        v1_tags_name_of_the_wrong_type: server_case("v1 tags: name of the wrong type", tampered(vec![v1_list().body(TamperBody::Transform(bogus_v1_page_names))]), &["listing failed", "invalid type: integer `5`"]);
        v1_tags_created_at_not_a_date: server_case(
            "v1 tags: created_at not a date",
            tampered(vec![v1_list().body(TamperBody::Replace(br#"[{"name":"mr-1-a","digest":null,"created_at":"yesterday"}]"#.to_vec()))]),
            &["listing failed"],
        );
        v1_tags_link_to_another_origin: server_case(
            "v1 tags: Link rel=next to another origin",
            tampered(vec![v1_list().header("link", "<http://198.51.100.7/gitlab/v1/repositories/group/project/tags/list/?last=x>; rel=\"next\"")]),
            &["listing failed", "another origin"],
        );
        v1_tags_pages_that_loop: server_case(
            "v1 tags: pages that loop",
            tampered(vec![
                v1_list().query("last=b").header("link", &format!("<{ROOT_V1_LIST}?n=1000&last=a>; rel=\"next\"")),
                v1_list().header("link", &format!("<{ROOT_V1_LIST}?n=1000&last=b>; rel=\"next\"")),
            ]),
            &["listing failed", "already"],
        );
        v1_tags_garbage_link: server_case("v1 tags: garbage Link", tampered(vec![v1_list().header("link", "rel=next; <x>")]), &["listing failed", "unparsable Link header"]);
        // The registry's challenge and the token service.
        v2_401_without_a_challenge: server_case("/v2/: 401 without a challenge", tampered(vec![Tamper::on(Some("GET"), "/v2/").on_server(Server::Registry).query("").without_header("www-authenticate")]), &[
            "not a Bearer token challenge",
        ]);
        v2_realm_not_a_url: server_case(
            "/v2/: realm not a URL",
            tampered(vec![Tamper::on(Some("GET"), "/v2/").on_server(Server::Registry).header("www-authenticate", "Bearer realm=\"not a url\",service=\"x\"")]),
            &["realm \"not a url\" is not a URL"],
        );
        v2_basic_challenge: server_case(
            "/v2/: Basic challenge",
            tampered(vec![Tamper::on(Some("GET"), "/v2/").on_server(Server::Registry).header("www-authenticate", "Basic realm=\"registry\"")]),
            &["not a Bearer token challenge"],
        );
        v2_unterminated_challenge: server_case(
            "/v2/: unterminated challenge",
            tampered(vec![Tamper::on(Some("GET"), "/v2/").on_server(Server::Registry).header("www-authenticate", "Bearer realm=\"http://127.0.0.1")]),
            &["not a Bearer token challenge"],
        );
        jwt_auth_not_json: server_case("/jwt/auth: not JSON", tampered(vec![Tamper::on(Some("GET"), "/jwt/auth").body(TamperBody::Replace(b"<html>login</html>".to_vec()))]), &["unexpected response"]);
        jwt_auth_empty_token: server_case("/jwt/auth: empty token", tampered(vec![Tamper::on(Some("GET"), "/jwt/auth").body(TamperBody::Replace(br#"{"token":""}"#.to_vec()))]), &["has no token"]);
        jwt_auth_token_of_the_wrong_type: server_case("/jwt/auth: token of the wrong type", tampered(vec![Tamper::on(Some("GET"), "/jwt/auth").body(TamperBody::Replace(br#"{"token":5}"#.to_vec()))]), &["unexpected response"]);
        jwt_auth_extra_field_of_the_wrong_type: server_case("/jwt/auth: extra field of the wrong type", tampered(vec![Tamper::on(Some("GET"), "/jwt/auth").body(TamperBody::Transform(append_access_token_number))]), &["unexpected response"]);
        jwt_auth_token_overflowing_any_clock: server_case(
            "/jwt/auth: a JWT whose exp and iat overflow any clock",
            tampered(vec![Tamper::on(Some("GET"), "/jwt/auth").body(TamperBody::Replace(overflowing_jwt()))]),
            &["401"],
        );
        jwt_auth_not_a_jwt: server_case("/jwt/auth: not a JWT", tampered(vec![Tamper::on(Some("GET"), "/jwt/auth").body(TamperBody::Replace(br#"{"token":"not-a-jwt"}"#.to_vec()))]), &["lacks pull"]);
        // Manifests.
        head_invalid_digest: server_case(
            "HEAD: invalid Docker-Content-Digest",
            tampered(vec![Tamper::on(Some("HEAD"), "/manifests/").header("docker-content-digest", "sha256:zzz")]),
            &["Docker-Content-Digest \"sha256:zzz\" is not a sha256 digest"],
        )
        .args(&["delete", "--dry-run", "mr-1-a"]);
        // Without tag delete the fresh listing GETs each tag's manifest.
        get_invalid_digest_without_tag_delete: server_case(
            "GET manifest: invalid digest on a registry without tag delete",
            Config {
                tag_delete: false,
                tamper: vec![Tamper::on(Some("GET"), "/manifests/").header("docker-content-digest", "md5:1234")],
                ..Config::default()
            },
            &["not a sha256 digest"],
        )
        .args(&["delete", "mr-1-a"])
        .env("CI_JOB_TOKEN", "")
        .after(|e| match e.count("DELETE", "/manifests/sha256:") {
            0 => Ok(()),
            n => Err(format!("{n} digest deletes")),
        });
        // REST tag details (no /gitlab/v1).
        details_another_tags_name: server_case(
            "details: another tag's name",
            Config {
                gitlab_v1: false,
                tamper: vec![Tamper::on(Some("GET"), "/tags/mr-1-a").body(TamperBody::Replace(br#"{"name":"main","digest":null,"created_at":null}"#.to_vec()))],
                ..Config::default()
            },
            &["asked for tag \"mr-1-a\", got \"main\""],
        )
        .args(&["run", "--policy", "KEEP_N"]);
        details_created_at_of_the_wrong_type: server_case(
            "details: created_at of the wrong type",
            Config {
                gitlab_v1: false,
                tamper: vec![Tamper::on(Some("GET"), "/tags/mr-2-b").body(TamperBody::Replace(br#"{"name":"mr-2-b","created_at":12}"#.to_vec()))],
                ..Config::default()
            },
            &["listing failed", "mr-2-b"],
        )
        .args(&["run", "--policy", "KEEP_N"]);
        rest_tags_keyset_page_of_the_wrong_shape: server_case(
            "REST tags: keyset page of the wrong shape",
            Config {
                gitlab_v1: false,
                tamper: vec![Tamper::on(Some("GET"), "/tags").query("pagination=keyset").body(TamperBody::Replace(br#"[{"nom":"x"}]"#.to_vec()))],
                ..Config::default()
            },
            &["listing failed", "missing field `name`"],
        );
    }
}

/// Runs a server case against its own emulator; panics with every problem.
fn check_server_case(case: ServerCase) {
    let emulator = seeded(case.config.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let keep_n = write_file(
        &dir,
        "keep-n.yml",
        "rules:\n  - delete: \"mr-.*\"\n    keep_n: 1\n",
    );
    let mut args: Vec<String> = if case.args.is_empty() {
        vec!["run".into(), "--policy".into(), policy.clone()]
    } else {
        case.args.clone()
    };
    for arg in &mut args {
        if arg == "KEEP_N" {
            *arg = keep_n.clone();
        }
    }
    if args[0] == "run" && !args.iter().any(|a| a == "--policy") {
        args.extend(["--policy".to_string(), policy.clone()]);
    }
    let mut env = with(emulator.ci_env(), &[("CLEANUP_RETRY_BASE_MS", "5")]);
    for (name, value) in &case.extra_env {
        env = with(env, &[(name, value.as_str())]);
    }
    let check = Case {
        category: "server answers",
        name: case.name.to_string(),
        env,
        args,
        code: case.code,
        expect: case.expect.iter().map(|s| s.to_string()).collect(),
        requests_allowed: true,
    };
    let mut problems = check.check(Some(&emulator));
    if let Err(problem) = unchanged(&emulator) {
        problems.push(format!("[server answers] {}: {problem}", case.name));
    }
    if let Some(after) = case.after {
        if let Err(problem) = after(&emulator) {
            problems.push(format!("[server answers] {}: {problem}", case.name));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn tls_spoken_to_a_plain_http_server_fails_fast_without_retries() {
    let emulator = seeded(Config::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let registry = emulator.registry_url().replace("http://", "https://");
    // Short backoff: were the handshake failure retried, the count below
    // would say so long before the hang guard.
    let env = with(
        emulator.ci_env(),
        &[
            ("CLEANUP_REGISTRY_URL", registry.as_str()),
            ("CLEANUP_RETRY_BASE_MS", "1"),
        ],
    );
    let out = run_bounded(
        &env,
        &["run".to_string(), "--policy".to_string(), policy],
        Duration::from_secs(60),
    );
    assert!(!out.timed_out);
    // `https://` for a plain-HTTP server is the URL variable's mistake: exit 2.
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(successful_writes(&emulator) == 0);
    // Fails fast, counted rather than timed: the run's one probe of the
    // registry fails without a retry (each retry is logged) and stops the
    // run, naming the URL and its variable, before any repository.
    assert!(
        out.stderr.contains(&format!(
            "the registry at {registry}/ (from CLEANUP_REGISTRY_URL) cannot be reached"
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("retrying"), "{}", out.stderr);
    assert!(!out.stdout.contains("group/project"), "{}", out.stdout);
    assert_eq!(emulator.count("GET", "/jwt/auth"), 0);
}

/// Tag names no registry accepts on push, served by a broken or hostile
/// registry. `..` is the dangerous one: in a URL path it climbs a level, so
/// `DELETE …/repositories/2/tags/..` is `DELETE …/repositories/2` — GitLab's
/// "delete the whole repository" endpoint.
#[test]
fn invalid_tag_names_from_the_server_stop_the_repository() {
    for name in [
        "..",
        ".",
        "a/b",
        "tag with space",
        "ümlaut",
        "x?y",
        "x#y",
        "%2e%2e",
        "-leading-dash",
        "",
    ] {
        let emulator = Emulator::start(Config {
            tag_delete: false,
            ..Config::default()
        });
        emulator.add_repository("");
        emulator.add_repository("api");
        // The root repository teaches the tool that the registry cannot delete by tag.
        emulator.add_tags(ROOT, (0..10).map(|i| tag(&format!("old-{i}"))));
        emulator.add_tags(API, [tag(name), tag("old-x"), tag("keep-me")]);
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = write_file(
            &dir,
            "policy.yml",
            "rules:\n  - delete: \".*\"\n    keep: \"keep-.*\"\n",
        );
        let out = run(&emulator.ci_env(), &["run", "--policy", &policy]);
        assert_eq!(out.code, 1, "{name:?}: {}", out.all());
        out.assert_stderr_lacks("panicked");
        assert!(
            out.stdout.contains(&format!("{name:?}"))
                && out.stdout.contains("not a valid tag name"),
            "{name:?}: the summary names the tag: {}",
            out.all()
        );
        assert_eq!(
            names(&emulator, API).len(),
            3,
            "{name:?}: the repository with the invalid tag was touched: {:?}\n{}",
            names(&emulator, API),
            out.all()
        );
        assert!(
            names(&emulator, ROOT).is_empty(),
            "{name:?}: the healthy repository was processed"
        );
        assert_eq!(
            emulator.count("DELETE", "/registry/repositories/2"),
            0,
            "{name:?}"
        );
    }
}
