//! Stopping is normal (issue 21): GitLab stops a cancelled or timed-out job
//! with SIGTERM, then SIGKILL. The real binary against an emulator that
//! answers slowly (25 ms a request), stopped once deleting is under way.
//! The tests assert what is on record against what is gone, never timings.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TAGS: usize = 200;
const POLICY: &str = "rules: [{name: review images, delete: 'mr-.*'}]\n";

fn slow_emulator() -> Emulator {
    let emulator = Emulator::start(Config {
        latency: Duration::from_millis(25),
        ..Config::default()
    });
    emulator.add_repository("");
    emulator.add_tags(
        "group/project",
        (0..TAGS)
            .map(|i| tag(&format!("mr-{i:03}")))
            .chain([tag("main")]),
    );
    emulator
}

fn start_run(emulator: &Emulator, dir: &tempfile::TempDir) -> (Child, std::path::PathBuf) {
    let policy = write_file(dir, "policy.yml", POLICY);
    let report = dir.path().join("report.json");
    let child = Command::new(env!("CARGO_BIN_EXE_registry-cleanup"))
        .env_clear()
        .envs(emulator.ci_env())
        .args(["run", "--policy", &policy, "--report"])
        .arg(&report)
        .arg("--dotenv")
        .arg(dir.path().join("cleanup.env"))
        .args(["--concurrency", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    (child, report)
}

/// Waits until the emulator has answered `deletes` tag deletes.
fn wait_for_deletes(emulator: &Emulator, deletes: usize) {
    let started = Instant::now();
    while emulator.count("DELETE", "/manifests/") < deletes {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run never got to {deletes} deletes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name}");
}

/// Starts a run, sends `name` once 20 tags are deleted, and waits for the
/// process to end.
fn stopped_run(
    emulator: &Emulator,
    dir: &tempfile::TempDir,
    name: &str,
) -> (std::process::Output, std::path::PathBuf) {
    let (child, report) = start_run(emulator, dir);
    wait_for_deletes(emulator, 20);
    signal(&child, name);
    (child.wait_with_output().expect("the run ends"), report)
}

/// A second run after a stopped one deletes the rest of the plan.
fn finish_the_plan(emulator: &Emulator, dir: &tempfile::TempDir) {
    let out = run(
        &emulator.ci_env(),
        &["run", "--policy", &write_file(dir, "again.yml", POLICY)],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(names(emulator, "group/project"), ["main"]);
}

fn gone(emulator: &Emulator) -> BTreeSet<String> {
    let left = emulator.tags("group/project");
    (0..TAGS)
        .map(|i| format!("mr-{i:03}"))
        .filter(|tag| !left.contains_key(tag))
        .collect()
}

fn journal_tags(report: &std::path::Path, outcomes: &[&str]) -> BTreeSet<String> {
    let mut journal = report.as_os_str().to_owned();
    journal.push(".journal");
    registry_cleanup::output::journal::read_journal(std::path::Path::new(&journal))
        .expect("the journal reads")
        .into_iter()
        .filter(|entry| outcomes.contains(&entry.outcome.as_str()))
        .map(|entry| entry.tag)
        .collect()
}

/// SIGTERM during deletion: exit 143, and a report marked interrupted that
/// lists exactly the tags that are gone; every other planned tag is "not
/// attempted". The journal agrees. A second run finishes the plan.
#[test]
fn sigterm_leaves_a_true_report_and_exits_143() {
    let emulator = slow_emulator();
    let dir = tempfile::tempdir().expect("tempdir");
    let (output, report) = stopped_run(&emulator, &dir, "TERM");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{stdout}\n{stderr}");

    let json = report_json(&report);
    assert_eq!(json["interrupted"], true, "{json}");
    let repository = &json["repositories"][0];
    let deleted: BTreeSet<String> = repository["deleted"]
        .as_array()
        .expect("deleted")
        .iter()
        .map(|d| d["tag"].as_str().expect("tag").to_string())
        .collect();
    let gone = gone(&emulator);
    assert!(gone.len() >= 20 && gone.len() < TAGS, "{} gone", gone.len());
    assert_eq!(deleted, gone, "the report lists exactly what is gone");
    // Every planned tag is on record: deleted, or not attempted.
    let skipped = repository["skipped"].as_array().expect("skipped");
    assert_eq!(deleted.len() + skipped.len(), TAGS, "{repository}");
    assert!(skipped.iter().all(|s| s["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("not attempted: the run was stopped (SIGTERM)"))));
    assert!(stdout.contains("INTERRUPTED"), "{stdout}");
    assert_eq!(journal_tags(&report, &["deleted"]), gone);

    // Run again: the rest of the plan.
    finish_the_plan(&emulator, &dir);
}

/// SIGKILL: no report, but the journal lists every tag that is gone (each
/// delete is journaled as attempted before it is sent), and a second run
/// finishes the plan.
#[test]
fn after_sigkill_the_journal_lists_every_tag_that_is_gone() {
    let emulator = slow_emulator();
    let dir = tempfile::tempdir().expect("tempdir");
    let (output, report) = stopped_run(&emulator, &dir, "KILL");
    assert_eq!(output.status.code(), None, "killed by the signal");
    assert!(!report.exists(), "no report after a kill");

    let gone = gone(&emulator);
    assert!(gone.len() >= 20, "{} gone", gone.len());
    let on_record = journal_tags(&report, &["deleted", "attempting"]);
    assert!(
        gone.is_subset(&on_record),
        "gone but not in the journal: {:?}",
        gone.difference(&on_record).collect::<Vec<_>>()
    );
    // Every tag the journal says deleted is gone.
    assert!(journal_tags(&report, &["deleted"]).is_subset(&gone));

    finish_the_plan(&emulator, &dir);
}

/// SIGINT (Ctrl-C): exit 130, and the count files are written as after any
/// run, counting what was deleted up to then.
#[test]
fn sigint_exits_130_and_writes_the_count_files() {
    let emulator = slow_emulator();
    let dir = tempfile::tempdir().expect("tempdir");
    let (output, report) = stopped_run(&emulator, &dir, "INT");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert_eq!(report_json(&report)["interrupted"], true);
    let dotenv = std::fs::read_to_string(dir.path().join("cleanup.env")).expect("dotenv");
    let gone = gone(&emulator).len();
    assert!(
        dotenv.contains(&format!("CLEANUP_DELETED={gone}\n")),
        "{gone} gone:\n{dotenv}"
    );
    assert!(stderr.contains("SIGINT"), "{stderr}");
}
