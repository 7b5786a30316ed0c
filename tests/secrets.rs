//! No secret ever leaves the process except in the header it is meant for.
//!
//! Every command, successful and failing, runs at the most verbose log level
//! (`CLEANUP_LOG=trace`, which includes reqwest's, hyper's and rustls' own
//! debug output), in text and JSON log formats, with CI job-token credentials
//! and with laptop access-token credentials. Its stdout, stderr and every file
//! it writes must not contain the job token, the access token, the registry
//! password, any JWT the emulator issued (or its signature), nor the Basic
//! credentials as they travel. Credentials must not reach another origin: not
//! a foreign token realm, not the target of a cross-origin redirect.

mod common;

use base64::Engine as _;
use common::*;
use gitlab_emulator::{AuthKind, Tamper, TamperBody};

const ROOT: &str = "group/project";

type Env = Vec<(String, String)>;

const POLICY: &str =
    "protect: [\"v\\\\d+\"]\nrules:\n  - name: reviews\n    delete: \"mr-.*\"\n    keep_n: 1\n";

struct Leak {
    context: String,
    secret_kind: &'static str,
    place: String,
}

/// The strings that must never be printed, with a name for the report.
fn secrets(emulator: &Emulator, env: &[(String, String)]) -> Vec<(&'static str, String)> {
    let mut secrets: Vec<(&'static str, String)> = Vec::new();
    for secret in emulator.secrets() {
        if secret.matches('.').count() == 2 {
            // A JWT: the whole token, and every 32-character piece of its
            // claims and signature, so a truncated excerpt counts as a leak
            // too (the header is the same for every token and not secret).
            let parts: Vec<&str> = secret.split('.').collect();
            for part in &parts[1..] {
                let chars: Vec<char> = part.chars().collect();
                for piece in chars.chunks(32).filter(|piece| piece.len() == 32) {
                    secrets.push(("piece of a JWT", piece.iter().collect()));
                }
            }
            secrets.push(("JWT", secret));
        } else {
            secrets.push(("token", secret));
        }
    }
    let value = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    for name in ["CI_JOB_TOKEN", "GITLAB_TOKEN", "CI_REGISTRY_PASSWORD"] {
        if let Some(secret) = value(name).filter(|v| !v.is_empty()) {
            secrets.push(("credential variable", secret));
        }
    }
    if let (Some(user), Some(password)) = (value("CI_REGISTRY_USER"), value("CI_REGISTRY_PASSWORD"))
    {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        secrets.push(("Basic credentials", basic));
    }
    secrets
}

fn find_leaks(
    context: &str,
    places: &[(String, String)],
    secrets: &[(&'static str, String)],
) -> Vec<Leak> {
    let mut leaks = Vec::new();
    for (place, text) in places {
        for (kind, secret) in secrets {
            if secret.len() >= 8 && text.contains(secret.as_str()) {
                leaks.push(Leak {
                    context: context.to_string(),
                    secret_kind: kind,
                    place: place.clone(),
                });
            }
        }
    }
    leaks
}

struct Credentials {
    name: &'static str,
    env: fn(&Emulator) -> Env,
    /// Replaces the valid credentials with wrong ones.
    wrong: fn(Env) -> Env,
}

fn credential_sets() -> [Credentials; 2] {
    [
        Credentials {
            name: "CI job token",
            env: |e| e.ci_env(),
            wrong: |env| {
                with(
                    env,
                    &[
                        ("CI_JOB_TOKEN", "wrong-job-token-9876"),
                        ("CI_REGISTRY_PASSWORD", "wrong-job-token-9876"),
                    ],
                )
            },
        },
        Credentials {
            name: "laptop access token",
            env: |e| e.laptop_env(),
            wrong: |env| {
                with(
                    env,
                    &[
                        ("GITLAB_TOKEN", "glpat-wrong-5432"),
                        ("CI_REGISTRY_PASSWORD", "glpat-wrong-5432"),
                    ],
                )
            },
        },
    ]
}

fn seeded(config: Config) -> Emulator {
    let emulator = Emulator::start(config);
    emulator.add_repository("");
    emulator.add_repository("api");
    for repository in [ROOT, "group/project/api"] {
        emulator.add_tags(
            repository,
            [
                tag("mr-1-a"),
                tag("mr-2-b"),
                tag("mr-3-c"),
                tag("v1"),
                tag("main"),
                tag("latest"),
            ],
        );
    }
    emulator
}

#[test]
fn no_command_prints_a_secret_at_trace_level() {
    let mut leaks = Vec::new();
    let mut runs = 0;
    let mut covered = Vec::new();
    for credentials in credential_sets() {
        for format in ["text", "json"] {
            let emulator = seeded(Config::default());
            let dir = tempfile::tempdir().expect("tempdir");
            let policy = write_file(&dir, "policy.yml", POLICY);
            let report = dir.path().join("report.json");
            let inventory = dir.path().join("inventory.json");
            let report_arg = report.display().to_string();
            let inventory_arg = inventory.display().to_string();
            let env = with(
                (credentials.env)(&emulator),
                &[("CLEANUP_LOG", "trace"), ("CLEANUP_LOG_FORMAT", format)],
            );
            let commands: Vec<(&str, Vec<&str>, Env)> = vec![
                ("--help", vec!["--help"], env.clone()),
                ("delete --help", vec!["delete", "--help"], env.clone()),
                ("check", vec!["check", "--policy", &policy], env.clone()),
                ("doctor", vec!["doctor", "--policy", &policy], env.clone()),
                ("policy import", vec!["policy", "import"], env.clone()),
                (
                    "inventory",
                    vec!["inventory", "--output", &inventory_arg],
                    env.clone(),
                ),
                (
                    "plan",
                    vec![
                        "plan",
                        "--inventory",
                        &inventory_arg,
                        "--policy",
                        &policy,
                        "--report",
                        &report_arg,
                    ],
                    env.clone(),
                ),
                (
                    "delete --dry-run",
                    vec![
                        "delete",
                        "--dry-run",
                        "--report",
                        &report_arg,
                        "mr-1-a",
                        "gone",
                    ],
                    env.clone(),
                ),
                (
                    "delete",
                    vec![
                        "delete",
                        "--report",
                        &report_arg,
                        "--repository",
                        "api",
                        "mr-1-a",
                        "gone",
                    ],
                    env.clone(),
                ),
                (
                    "run --dry-run",
                    vec![
                        "run",
                        "--dry-run",
                        "--policy",
                        &policy,
                        "--report",
                        &report_arg,
                    ],
                    env.clone(),
                ),
                (
                    "run",
                    vec!["run", "--policy", &policy, "--report", &report_arg],
                    env.clone(),
                ),
                (
                    "run --engine server",
                    vec![
                        "run",
                        "--engine",
                        "server",
                        "--policy",
                        &policy,
                        "--report",
                        &report_arg,
                    ],
                    env.clone(),
                ),
                (
                    "run (bad credentials)",
                    vec!["run", "--policy", &policy],
                    (credentials.wrong)(env.clone()),
                ),
                (
                    "delete (bad credentials)",
                    vec!["delete", "mr-2-b"],
                    (credentials.wrong)(env.clone()),
                ),
                (
                    "delete (registry credentials refused)",
                    vec!["delete", "mr-2-b"],
                    with(
                        env.clone(),
                        &[("CI_REGISTRY_PASSWORD", "refused-password-1357")],
                    ),
                ),
            ];
            for (name, args, run_env) in commands {
                let _ = std::fs::remove_file(&report);
                let out = run(&run_env, &args);
                runs += 1;
                let context = format!("{} / {format} / {name}", credentials.name);
                assert!(!out.stderr.contains("panicked"), "{context}: {}", out.all());
                if name == "policy import" {
                    // 0 with an access token; 2 with the job token, which
                    // GitLab refuses on GET /projects/:id: either way, no secret.
                    assert!(matches!(out.code, 0 | 2), "{context}: {}", out.all());
                } else if name.contains("bad credentials") || name.contains("refused") {
                    assert_ne!(out.code, 0, "{context}: {}", out.all());
                } else {
                    assert_eq!(out.code, 0, "{context}: {}", out.all());
                }
                let mut places = vec![
                    ("stdout".to_string(), out.stdout.clone()),
                    ("stderr".to_string(), out.stderr.clone()),
                ];
                for file in [&report, &inventory] {
                    if let Ok(text) = std::fs::read_to_string(file) {
                        places.push((
                            file.file_name()
                                .expect("name")
                                .to_string_lossy()
                                .into_owned(),
                            text,
                        ));
                    }
                }
                let mut secrets = secrets(&emulator, &run_env);
                secrets.extend(self::secrets(&emulator, &env));
                leaks.extend(find_leaks(&context, &places, &secrets));
                if format == "text" && credentials.name == "CI job token" {
                    covered.push(name);
                }
                // The logs really were verbose: the test would see a leak.
                if name == "run" {
                    assert!(
                        out.stderr.lines().count() > 50,
                        "{context}: trace logging is not on: {}",
                        out.all()
                    );
                    assert!(
                        out.stderr.contains("starting new connection")
                            && out.stderr.contains("pooling idle connection"),
                        "{context}: no HTTP-client (reqwest/hyper) logs"
                    );
                }
            }
            assert!(emulator.issued_jwts() > 0);
        }
    }
    eprintln!(
        "secrets: {runs} runs ({} commands × 2 credential sets × 2 log formats): {}",
        covered.len(),
        covered.join(", ")
    );
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks
            .iter()
            .map(|l| format!("{}: a {} in {}", l.context, l.secret_kind, l.place))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_token_service_answer_that_does_not_parse_is_not_quoted() {
    // A token answer with an extra field of the wrong type: serde's error
    // would quote the body, token included.
    for credentials in credential_sets() {
        let emulator = seeded(Config {
            tamper: vec![Tamper::on(Some("GET"), "/jwt/auth")
                .body(TamperBody::Transform(append_access_token_number))],
            ..Config::default()
        });
        let env = with((credentials.env)(&emulator), &[("CLEANUP_LOG", "trace")]);
        let out = run(&env, &["delete", "mr-1-a"]);
        assert_ne!(out.code, 0, "{}", out.all());
        assert!(
            emulator.issued_jwts() > 0,
            "the emulator issued no token: the test proves nothing"
        );
        let leaks = find_leaks(
            credentials.name,
            &[("output".into(), out.all())],
            &secrets(&emulator, &env),
        );
        assert!(
            leaks.is_empty(),
            "{}: the JWT was printed: {}",
            credentials.name,
            out.all()
        );
        assert!(
            out.all().contains("the token service's answer is not"),
            "{}",
            out.all()
        );
    }
}

#[test]
fn a_foreign_realm_gets_no_credentials_from_any_command() {
    for credentials in credential_sets() {
        let foreign = Emulator::start(Config::default());
        let emulator = seeded(Config {
            realm_override: Some(format!("{}/jwt/auth", foreign.gitlab_url())),
            ..Config::default()
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = write_file(&dir, "policy.yml", POLICY);
        let env = with((credentials.env)(&emulator), &[("CLEANUP_LOG", "trace")]);
        for args in [
            vec!["delete", "mr-1-a"],
            vec!["delete", "--dry-run", "mr-1-a"],
            vec!["run", "--policy", &policy],
            vec!["run", "--dry-run", "--policy", &policy],
            vec!["inventory"],
        ] {
            let out = run(&env, &args);
            // A configuration error, whatever the command: exit 2.
            assert_eq!(out.code, 2, "{}: {args:?}: {}", credentials.name, out.all());
            assert!(
                out.all().contains("not on CI_SERVER_URL's origin"),
                "{args:?}: {}",
                out.all()
            );
            assert!(
                foreign.requests().is_empty(),
                "{}: {args:?} contacted the foreign realm",
                credentials.name
            );
            assert!(
                !emulator
                    .requests()
                    .iter()
                    .any(|r| r.path.starts_with("/jwt/auth")),
                "the real token service was asked although the registry named another"
            );
            let leaks = find_leaks(
                credentials.name,
                &[("output".into(), out.all())],
                &secrets(&emulator, &env),
            );
            assert!(leaks.is_empty());
        }
        assert_eq!(emulator.tags(ROOT).len(), 6, "nothing deleted");
    }
}

#[test]
fn a_cross_origin_redirect_from_the_rest_api_carries_no_token() {
    for credentials in credential_sets() {
        let elsewhere = Emulator::start(Config::default());
        let target = format!(
            "{}/api/v4/projects/1/registry/repositories?per_page=100",
            elsewhere.gitlab_url()
        );
        let emulator = seeded(Config {
            tamper: vec![
                Tamper::on(Some("GET"), "/api/v4/projects/1/registry/repositories")
                    .query("tags_count")
                    .status(302)
                    .header("location", &target),
                Tamper::on(Some("DELETE"), "/api/v4/projects/1/registry/repositories/")
                    .status(307)
                    .header("location", &target),
            ],
            ..Config::default()
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = write_file(&dir, "policy.yml", POLICY);
        let env = (credentials.env)(&emulator);
        for args in [
            vec!["run", "--policy", &policy],
            vec!["inventory"],
            vec!["delete", "--all-repositories", "mr-1-a"],
        ] {
            let out = run(&env, &args);
            assert_eq!(out.code, 1, "{}: {args:?}: {}", credentials.name, out.all());
            assert!(out.all().contains("302"), "{args:?}: {}", out.all());
        }
        // The REST fallback of a registry without tag delete meets a 307 to elsewhere.
        let distribution = seeded(Config {
            tag_delete: false,
            tamper: vec![
                Tamper::on(Some("DELETE"), "/api/v4/projects/1/registry/repositories/")
                    .status(307)
                    .header("location", &target),
            ],
            ..Config::default()
        });
        let out = run(&(credentials.env)(&distribution), &["delete", "mr-1-a"]);
        assert_eq!(out.code, 1, "{}: {}", credentials.name, out.all());
        out.assert_stdout_has("307");
        assert_eq!(distribution.tags(ROOT).len(), 6);
        let carried: Vec<_> = elsewhere
            .requests()
            .into_iter()
            .filter(|r| r.auth != AuthKind::None)
            .collect();
        assert!(
            carried.is_empty(),
            "{}: credentials crossed origins: {carried:?}",
            credentials.name
        );
        assert!(
            elsewhere.requests().is_empty(),
            "{}: the redirect was followed at all: {:?}",
            credentials.name,
            elsewhere.requests()
        );
    }
}

#[test]
fn a_same_origin_redirect_is_followed() {
    let emulator = seeded(Config {
        tamper: vec![Tamper::on(Some("GET"), "/api/v4/moved/repositories")
            .status(301)
            .header(
                "location",
                "/api/v4/projects/1/registry/repositories?per_page=100&tags_count=true",
            )],
        ..Config::default()
    });
    let env = with(emulator.ci_env(), &[("CI_PROJECT_ID", "1")]);
    // Nothing in the tool asks for /moved: drive the HTTP layer directly.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let http = registry_cleanup::wire::http::Http::new(
        registry_cleanup::wire::http::HttpOptions::default(),
    )
    .expect("client");
    let url = url::Url::parse(&format!(
        "{}/api/v4/moved/repositories",
        emulator.gitlab_url()
    ))
    .expect("url");
    let job_token = env
        .iter()
        .find(|(k, _)| k == "CI_JOB_TOKEN")
        .map(|(_, v)| v.clone())
        .expect("job token");
    let response = runtime
        .block_on(http.send(reqwest::Method::GET, &url, |r| {
            r.header("JOB-TOKEN", job_token.as_str())
        }))
        .expect("answer");
    assert_eq!(response.status.as_u16(), 200);
    assert!(response
        .url
        .path()
        .ends_with("/projects/1/registry/repositories"));
}

/// A TLS server for the test: `openssl s_server -www` with a fresh
/// self-signed certificate for 127.0.0.1 (answers every request with an
/// HTML status page), behind a TCP relay that counts the connections made to
/// it.
struct TlsServer {
    child: std::process::Child,
    /// The relay's port: what the tool is pointed at.
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    cert: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Relays every connection to `127.0.0.1:backend`, counting them. The
/// accepting thread lives as long as the test process.
fn counting_relay(backend: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").expect("relay listens");
    let port = listener.local_addr().expect("relay address").port();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
                continue;
            };
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            };
            if let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone()) {
                pipe(client, server);
                pipe(server_copy, client_copy);
            }
        }
    });
    (port, connections)
}

impl TlsServer {
    /// `None` when there is no `openssl` to run; any other failure to start
    /// the server fails the test.
    fn start() -> Option<TlsServer> {
        if std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err()
        {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // A CA and a leaf certificate for 127.0.0.1 signed by it (webpki
        // refuses a self-signed CA certificate as the server's own).
        let cert = dir.path().join("ca.pem");
        let ca_key = dir.path().join("ca-key.pem");
        let leaf = dir.path().join("leaf.pem");
        let key = dir.path().join("leaf-key.pem");
        let csr = dir.path().join("leaf.csr");
        let ext = dir.path().join("leaf.ext");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write leaf.ext");
        let openssl = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let s = |text: &'static str| std::ffi::OsStr::new(text);
        openssl(&[
            s("req"),
            s("-x509"),
            s("-newkey"),
            s("rsa:2048"),
            s("-nodes"),
            s("-days"),
            s("1"),
            s("-subj"),
            s("/CN=registry-cleanup test CA"),
            s("-keyout"),
            ca_key.as_os_str(),
            s("-out"),
            cert.as_os_str(),
        ]);
        openssl(&[
            s("req"),
            s("-newkey"),
            s("rsa:2048"),
            s("-nodes"),
            s("-subj"),
            s("/CN=127.0.0.1"),
            s("-keyout"),
            key.as_os_str(),
            s("-out"),
            csr.as_os_str(),
        ]);
        openssl(&[
            s("x509"),
            s("-req"),
            s("-in"),
            csr.as_os_str(),
            s("-CA"),
            cert.as_os_str(),
            s("-CAkey"),
            ca_key.as_os_str(),
            s("-CAcreateserial"),
            s("-days"),
            s("1"),
            s("-extfile"),
            ext.as_os_str(),
            s("-out"),
            leaf.as_os_str(),
        ]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-cert",
            ])
            .arg(&leaf)
            .arg("-key")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let (relay, connections) = counting_relay(port);
        let server = TlsServer {
            child,
            port: relay,
            connections,
            cert,
            _dir: dir,
        };
        // Readiness is checked on openssl's own port, so the relay counts
        // only the tool's connections.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("openssl s_server does not accept connections on port {port}");
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn env(&self) -> Env {
        let origin = format!("https://127.0.0.1:{}", self.port);
        [
            ("CI_SERVER_URL", origin.clone()),
            ("CI_PROJECT_ID", "1".to_string()),
            ("CI_PROJECT_PATH", "group/project".to_string()),
            ("CI_REGISTRY", format!("127.0.0.1:{}", self.port)),
            (
                "CI_REGISTRY_IMAGE",
                format!("127.0.0.1:{}/group/project", self.port),
            ),
            ("CI_REGISTRY_USER", "gitlab-ci-token".to_string()),
            ("CI_REGISTRY_PASSWORD", "tls-job-token-2468".to_string()),
            ("CI_JOB_TOKEN", "tls-job-token-2468".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs the openssl binary: run with --ignored (.ci/run does)"]
fn tls_certificates_are_verified_and_the_ca_bundle_is_honoured() {
    let Some(server) = TlsServer::start() else {
        missing_prerequisite("openssl is not installed (scripts/ci-tools.sh installs it)");
        return;
    };
    // An unknown issuer: refused at once, not retried, no credentials sent.
    let out = run(&server.env(), &["inventory"]);
    assert_eq!(out.code, 1, "{}", out.all());
    out.assert_stderr_has("certificate");
    assert!(
        !out.stderr.contains("gave up after"),
        "a certificate error was retried: {}",
        out.all()
    );
    assert_eq!(
        server.connections(),
        1,
        "one handshake, no retry: {}",
        out.all()
    );
    // The same server, trusted through either variable: TLS succeeds, and the
    // HTML it answers is what fails.
    let cert = server.cert.display().to_string();
    for variable in ["CI_SERVER_TLS_CA_FILE", "SSL_CERT_FILE"] {
        let out = run(
            &with(server.env(), &[(variable, cert.as_str())]),
            &["inventory"],
        );
        assert_eq!(out.code, 1, "{variable}: {}", out.all());
        assert!(
            !out.stderr.contains("certificate"),
            "{variable}: {}",
            out.all()
        );
        assert!(
            out.stderr.contains("unexpected response"),
            "{variable}: {}",
            out.all()
        );
    }
}
