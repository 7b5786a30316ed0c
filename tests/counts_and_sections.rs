//! What a run leaves for people and later CI jobs: the bytes its deleted
//! images held, the `--dotenv`/`--metrics` count files, and GitLab CI's
//! collapsible log sections. The real binary against the emulator.

mod common;

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use common::*;

const POLICY: &str = KEEP_THE_NEWEST_REVIEW_TAG;

fn seeded(config: Config) -> Emulator {
    let emulator = Emulator::start(config);
    let now = Utc::now();
    for repository in ["", "api"] {
        emulator.add_repository(repository);
        emulator.add_tags(
            repository,
            (1..=4).map(|i| tag_at(&format!("mr-{i}"), now - Duration::days(i))),
        );
        emulator.add_tags(repository, [tag("latest"), tag("main")]);
    }
    emulator
}

/// Deleted tags of the report, `path:tag` → the emulator's size of it
/// (read before the run: the tags are gone after it).
fn listed_sizes(emulator: &Emulator) -> BTreeMap<String, Option<u64>> {
    let mut sizes = BTreeMap::new();
    for (path, relative) in [("group/project", ""), ("group/project/api", "api")] {
        for (tag, size) in emulator.tag_sizes(relative) {
            sizes.insert(format!("{path}:{tag}"), size);
        }
    }
    sizes
}

fn deleted(report: &serde_json::Value) -> Vec<(String, Option<u64>)> {
    report["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .flat_map(|repository| {
            let path = repository["path"].as_str().expect("path").to_string();
            repository["deleted"]
                .as_array()
                .expect("deleted")
                .iter()
                .map(move |d| {
                    (
                        format!("{path}:{}", d["tag"].as_str().expect("tag")),
                        d["size_bytes"].as_u64(),
                    )
                })
        })
        .collect()
}

/// Runs the policy with a report, dotenv and metrics; returns the output,
/// the report and the two files' text.
fn run_with_files(
    emulator: &Emulator,
    extra_env: &[(&str, &str)],
    extra_args: &[&str],
) -> (Output, serde_json::Value, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let report = dir.path().join("report.json");
    let dotenv = dir.path().join("cleanup.env");
    let metrics = dir.path().join("metrics.txt");
    let mut args = vec![
        "run",
        "--policy",
        &policy,
        "--report",
        report.to_str().expect("utf-8"),
        "--dotenv",
        dotenv.to_str().expect("utf-8"),
        "--metrics",
        metrics.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra_args);
    let output = run(&with(emulator.ci_env(), extra_env), &args);
    assert_eq!(output.code, 0, "{}", output.all());
    (
        output,
        report_json(&report),
        std::fs::read_to_string(&dotenv).expect("dotenv written"),
        std::fs::read_to_string(&metrics).expect("metrics written"),
    )
}

fn assert_bytes_are_the_listed_sizes(config: Config) {
    let emulator = seeded(config);
    let sizes = listed_sizes(&emulator);
    emulator.reset_requests();
    let (output, report, dotenv, metrics) = run_with_files(&emulator, &[], &[]);
    let deleted = deleted(&report);
    assert_eq!(deleted.len(), 6, "{}", output.all());
    let mut sum = 0;
    for (tag, size) in &deleted {
        let listed = sizes[tag].expect("seeded images have a size");
        assert_eq!(*size, Some(listed), "{tag}: {}", output.all());
        sum += listed;
    }
    assert!(sum > 0);
    assert_eq!(report["totals"]["deleted_bytes"].as_u64(), Some(sum));
    assert!(
        dotenv.contains(&format!("CLEANUP_DELETED_BYTES={sum}\n")),
        "{dotenv}"
    );
    assert!(
        metrics.contains(&format!("\ncleanup_deleted_bytes {sum}\n")),
        "{metrics}"
    );
    output.assert_stdout_has("in deleted images (shared layers counted once per image)");
}

#[test]
fn deleted_bytes_are_the_sizes_gitlab_v1_lists() {
    assert_bytes_are_the_listed_sizes(Config::default());
}

#[test]
fn deleted_bytes_are_the_sizes_rest_details_give() {
    assert_bytes_are_the_listed_sizes(Config {
        gitlab_v1: false,
        ..Config::default()
    });
}

#[test]
fn dotenv_and_metrics_carry_the_report_s_counts() {
    let emulator = seeded(Config::default());
    let (_, report, dotenv, metrics) = run_with_files(&emulator, &[], &[]);
    let totals = &report["totals"];
    for (name, key) in [
        ("DELETED", "deleted"),
        ("KEPT", "kept"),
        ("PROTECTED", "protected"),
        ("FAILED", "failed"),
        ("SKIPPED", "skipped"),
        ("ALREADY_ABSENT", "already_absent"),
        ("DELETED_BYTES", "deleted_bytes"),
    ] {
        let value = totals[key].as_u64().expect(key);
        assert!(
            dotenv
                .lines()
                .any(|line| line == format!("CLEANUP_{name}={value}")),
            "{name}={value} in {dotenv}"
        );
        assert!(
            metrics
                .lines()
                .any(|line| line == format!("cleanup_{} {value}", name.to_lowercase())),
            "{name} {value} in {metrics}"
        );
    }
    assert_eq!(totals["deleted"], 6);
    assert_eq!(totals["protected"], 2);
    assert!(dotenv.contains("CLEANUP_PLANNED_ONLY=false\n"), "{dotenv}");
    assert!(metrics.contains("# TYPE cleanup_kept gauge\n"), "{metrics}");
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
}

#[test]
fn a_dry_run_says_planned_only_and_variables_name_the_files() {
    let emulator = seeded(Config::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(&dir, "policy.yml", POLICY);
    let dotenv = dir.path().join("cleanup.env");
    let metrics = dir.path().join("metrics.txt");
    let env = with(
        emulator.ci_env(),
        &[
            ("CLEANUP_DOTENV", dotenv.to_str().expect("utf-8")),
            ("CLEANUP_METRICS", metrics.to_str().expect("utf-8")),
        ],
    );
    let output = run(&env, &["run", "--dry-run", "--policy", &policy]);
    assert_eq!(output.code, 0, "{}", output.all());
    assert_eq!(emulator.writes(), 0);
    let dotenv = std::fs::read_to_string(&dotenv).expect("dotenv written");
    assert!(dotenv.contains("CLEANUP_DELETED=6\n"), "{dotenv}");
    assert!(dotenv.contains("CLEANUP_PLANNED_ONLY=true\n"), "{dotenv}");
    let metrics = std::fs::read_to_string(&metrics).expect("metrics written");
    assert!(metrics.contains("\ncleanup_planned_only 1\n"), "{metrics}");
}

#[test]
fn delete_writes_the_dotenv_too() {
    let emulator = seeded(Config::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let dotenv = dir.path().join("cleanup.env");
    let output = run(
        &emulator.ci_env(),
        &[
            "delete",
            "--dotenv",
            dotenv.to_str().expect("utf-8"),
            "mr-1",
            "mr-9",
        ],
    );
    assert_eq!(output.code, 0, "{}", output.all());
    let dotenv = std::fs::read_to_string(&dotenv).expect("dotenv written");
    assert!(dotenv.contains("CLEANUP_DELETED=1\n"), "{dotenv}");
    assert!(dotenv.contains("CLEANUP_ALREADY_ABSENT=1\n"), "{dotenv}");
}

#[test]
fn an_unwritable_dotenv_is_refused_before_any_request() {
    let emulator = seeded(Config::default());
    emulator.reset_requests();
    let output = run(
        &emulator.ci_env(),
        &["delete", "--dotenv", "/nonexistent/dir/cleanup.env", "mr-1"],
    );
    assert_eq!(output.code, 2, "{}", output.all());
    output.assert_stderr_has("--dotenv /nonexistent/dir/cleanup.env");
    assert!(emulator.requests().is_empty());
}

#[test]
fn sections_only_inside_gitlab_ci() {
    let emulator = seeded(Config::default());
    let (plain, ..) = run_with_files(&emulator, &[], &["--dry-run"]);
    assert!(!plain.stdout.contains("section_start"), "{}", plain.all());
    assert!(!plain.stdout.contains('\x1b'), "{}", plain.all());
    assert!(
        plain
            .stdout
            .contains("group/project/api: 6 tags, 3 would delete"),
        "{}",
        plain.all()
    );

    let (ci, ..) = run_with_files(&emulator, &[("GITLAB_CI", "true")], &["--dry-run"]);
    let lines: Vec<&str> = ci.stdout.lines().collect();
    let starts: Vec<&&str> = lines
        .iter()
        .filter(|line| line.starts_with("\x1b[0Ksection_start:"))
        .collect();
    assert_eq!(starts.len(), 2, "{}", ci.all());
    for start in &starts {
        assert!(start.contains("[collapsed=true]\r\x1b[0K"), "{start:?}");
    }
    assert!(
        starts[1].ends_with("group/project/api: 6 tags, 3 would delete, 2 kept, 1 protected"),
        "{:?}",
        starts[1]
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("\x1b[0Ksection_end:"))
            .count(),
        2
    );
    assert!(
        lines.iter().any(|l| l.starts_with("  would delete mr-4")),
        "{}",
        ci.all()
    );
    // The totals stay outside the sections.
    let last_end = lines
        .iter()
        .rposition(|l| l.starts_with("\x1b[0Ksection_end:"))
        .expect("an end marker");
    let total = lines
        .iter()
        .position(|l| l.starts_with("total: "))
        .expect("totals");
    assert!(total > last_end, "{}", ci.all());
}
