//! `CLEANUP_CONCURRENCY` is the number of requests in flight at once, in total
//! (product spec): REST, registry and token service together, listings,
//! details and deletes of every repository. The real binary against the
//! emulator, which counts the most requests it was handling at once.
//!
//! Every request is delayed a little, so that requests the binary sends
//! together do overlap at the emulator. The emulator counts a request from
//! its head to its answer, inside the time the binary holds it in flight, so
//! it never counts more than the binary sent at once (no attempt here is
//! abandoned to a timeout while the emulator is still working on it).

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use gitlab_emulator::{Faults, RateLimit, ScriptedFault};

const REPOSITORIES: [&str; 3] = ["group/project", "group/project/api", "group/project/tools"];
const TAGS: usize = 16;
const LATENCY: Duration = Duration::from_millis(5);

/// Old builds go, dates needed (REST details when there is no `/gitlab/v1`).
const POLICY: &str =
    "rules:\n  - name: old builds\n    delete: \"build-.*\"\n    older_than: 7d\n    keep_n: 2\n";

#[derive(Clone, Copy)]
enum Command {
    /// `run --policy` over every repository.
    Run,
    /// `run --engine server`: one bulk call per repository.
    RunServer,
    /// `delete --all-repositories` with every `build-*` ref.
    Delete,
    /// `inventory` of every repository.
    Inventory,
}

struct Scenario {
    name: &'static str,
    config: Config,
    command: Command,
    /// A laptop (access token) rather than a CI job.
    laptop: bool,
    /// The emulator is sure to answer some requests 429: the throttle
    /// halves its limit and grows it back, never past the setting.
    throttled: bool,
    /// One request at a time by design: `delete` goes repository by
    /// repository, and GitLab's REST fallback deletes one tag at a time per
    /// repository (its shared dummy manifest races otherwise).
    serial: bool,
}

fn scenarios() -> Vec<Scenario> {
    let base = Config {
        latency: LATENCY,
        ..Config::default()
    };
    let rest = Config {
        gitlab_v1: false,
        ..base.clone()
    };
    let distribution = Config {
        tag_delete: false,
        ..base.clone()
    };
    let scenario = |name, config: &Config, command| Scenario {
        name,
        config: config.clone(),
        command,
        laptop: false,
        throttled: false,
        serial: false,
    };
    vec![
        scenario("run, /gitlab/v1 listing", &base, Command::Run),
        scenario("run, REST listing with details", &rest, Command::Run),
        scenario(
            "run, REST listing without keyset pagination",
            &Config {
                keyset: false,
                ..rest.clone()
            },
            Command::Run,
        ),
        scenario(
            "run, Distribution-like registry (fallback)",
            &distribution,
            Command::Run,
        ),
        scenario(
            "run, Distribution-like registry, REST listing",
            &Config {
                gitlab_v1: false,
                ..distribution.clone()
            },
            Command::Run,
        ),
        scenario(
            "run, 1 s tokens (refetched as they expire)",
            &Config {
                jwt_lifetime: Duration::from_secs(1),
                latency: Duration::from_millis(40),
                ..base.clone()
            },
            Command::Run,
        ),
        Scenario {
            throttled: true,
            ..scenario(
                "run, 429s on deletes",
                &Config {
                    scripted_faults: vec![ScriptedFault {
                        times: 6,
                        ..ScriptedFault::refused("DELETE", "/manifests/", 429)
                    }],
                    ..base.clone()
                },
                Command::Run,
            )
        },
        scenario(
            "run, 429s, 5xx and dropped connections",
            &Config {
                faults: Some(Faults {
                    seed: 0xc0c0_2024,
                    rate: 0.15,
                    // Far below the client's timeout: no attempt is abandoned
                    // while the emulator still counts it.
                    slow: Duration::from_millis(30),
                }),
                ..base.clone()
            },
            Command::Run,
        ),
        scenario(
            "run, GitLab rate limit (waits for the reset)",
            &Config {
                rate_limit: Some(RateLimit {
                    limit: 40,
                    window: Duration::from_secs(1),
                }),
                ..rest.clone()
            },
            Command::Run,
        ),
        scenario("run --engine server", &base, Command::RunServer),
        scenario("delete, many refs", &base, Command::Delete),
        Scenario {
            serial: true,
            ..scenario(
                "delete, Distribution-like registry",
                &distribution,
                Command::Delete,
            )
        },
        scenario("inventory, /gitlab/v1", &base, Command::Inventory),
        scenario("inventory, REST details", &rest, Command::Inventory),
        Scenario {
            laptop: true,
            ..scenario("run from a laptop (access token)", &base, Command::Run)
        },
    ]
}

fn seeded(config: Config) -> Emulator {
    let emulator = Emulator::start(config);
    let old = Utc::now() - chrono::Duration::days(30);
    for repository in REPOSITORIES {
        emulator.add_repository(repository);
        emulator.add_tags(
            repository,
            (0..TAGS).map(|i| tag_at(&format!("build-{i:02}"), old)),
        );
        emulator.add_tags(repository, [tag("latest")]);
    }
    emulator
}

struct Measured {
    max_in_flight: usize,
    requests: usize,
    token_fetches: usize,
    too_many_requests: usize,
    output: String,
}

fn measure(scenario: &Scenario, concurrency: usize) -> Measured {
    let emulator = seeded(scenario.config.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let env = if scenario.laptop {
        emulator.laptop_env()
    } else {
        emulator.ci_env()
    };
    let concurrency_text = concurrency.to_string();
    let env = with(
        env,
        &[
            ("CLEANUP_CONCURRENCY", concurrency_text.as_str()),
            ("CLEANUP_RETRY_BASE_MS", "10"),
        ],
    );
    let refs: Vec<String> = (0..TAGS).map(|i| format!("build-{i:02}")).collect();
    let mut args: Vec<&str> = match scenario.command {
        Command::Run => vec!["run", "--policy", &policy],
        Command::RunServer => vec!["run", "--engine", "server", "--policy", &policy],
        Command::Delete => vec!["delete", "--all-repositories"],
        Command::Inventory => vec!["inventory"],
    };
    if let Command::Delete = scenario.command {
        args.extend(refs.iter().map(String::as_str));
    }
    let out = run(&env, &args);
    assert_eq!(out.code, 0, "{}: {}", scenario.name, out.all());
    if let Command::Run | Command::Delete = scenario.command {
        let deleted = REPOSITORIES
            .iter()
            .map(|repository| TAGS + 1 - emulator.tags(repository).len())
            .sum::<usize>();
        let expected = match scenario.command {
            Command::Run => REPOSITORIES.len() * (TAGS - 2),
            _ => REPOSITORIES.len() * TAGS,
        };
        assert_eq!(deleted, expected, "{}: {}", scenario.name, out.all());
    }
    let requests = emulator.requests();
    Measured {
        max_in_flight: emulator.max_in_flight(),
        requests: requests.len(),
        token_fetches: emulator.count("GET", "/jwt/auth"),
        too_many_requests: requests.iter().filter(|r| r.status == 429).count(),
        output: out.all(),
    }
}

/// Runs every scenario at one setting and fails if any went over it.
fn check(concurrency: usize) {
    let mut table = Vec::new();
    let mut over = Vec::new();
    for scenario in scenarios() {
        let measured = measure(&scenario, concurrency);
        table.push(format!(
            "CLEANUP_CONCURRENCY={concurrency} {:<48} max in flight {:>2} ({:>3} requests, {:>2} token fetches, {:>2} 429s)",
            scenario.name,
            measured.max_in_flight,
            measured.requests,
            measured.token_fetches,
            measured.too_many_requests
        ));
        assert!(
            measured.too_many_requests > 0 || !scenario.throttled,
            "{}: no 429 was answered\n{}",
            scenario.name,
            measured.output
        );
        if measured.max_in_flight > concurrency {
            over.push(format!("{}\n{}", scenario.name, measured.output));
        }
        if concurrency > 1 && measured.requests > 10 * concurrency && !scenario.serial {
            // The emulator does see requests overlap: a bound that held only
            // because nothing ran side by side would prove nothing.
            assert!(
                measured.max_in_flight > 1,
                "{}: no two requests ever overlapped at concurrency {concurrency}",
                scenario.name
            );
        }
    }
    let table = table.join("\n");
    println!("{table}");
    assert!(
        over.is_empty(),
        "more than {concurrency} requests in flight at once:\n{table}\n\n{}",
        over.join("\n\n")
    );
}

#[test]
fn at_most_one_request_in_flight_with_concurrency_1() {
    check(1);
}

#[test]
fn at_most_four_requests_in_flight_with_concurrency_4() {
    check(4);
}
