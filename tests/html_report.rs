//! The review aids of issue 23 through the real binary: the summary's
//! breakdown by rule, reason and storage, and the HTML page (`--html`,
//! `CLEANUP_HTML`, `report html`) of plans, runs, streamed group runs and
//! merged reports. The page in a real browser: scripts/browser-test.sh.

mod common;

use std::path::Path;

use common::*;

/// The rows embedded in a page, as its script reads them.
fn page_rows(page: &Path) -> Vec<serde_json::Value> {
    let html = std::fs::read_to_string(page).expect("page written");
    let marker = "<script type=\"application/json\" id=\"tag-data\">";
    let start = html.find(marker).expect("the page embeds its rows") + marker.len();
    let end = start + html[start..].find("</script>").expect("end of the rows");
    let data: serde_json::Value = serde_json::from_str(&html[start..end]).expect("JSON rows");
    data["rows"].as_array().expect("rows").clone()
}

/// Every tag a report lists: deleted, kept or protected, failed, skipped,
/// already absent.
fn report_rows(report: &serde_json::Value) -> usize {
    let list =
        |repository: &serde_json::Value, key: &str| repository[key].as_array().map_or(0, Vec::len);
    report["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|r| {
            [
                "deleted",
                "kept_tags",
                "failed",
                "skipped",
                "already_absent",
            ]
            .iter()
            .map(|key| list(r, key))
            .sum::<usize>()
        })
        .sum()
}

fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// The issue's case: the branch recipe's pattern also claims the nightlies
/// (`nightly` is a gone ref, `20261028` eight hex digits). The summary names
/// the rule that claims them, with a nightly among its samples, although the
/// branches sort first.
#[test]
fn the_summary_shows_a_rule_that_claims_more_than_meant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tags: Vec<String> = (1..=28)
        .map(|day| format!("nightly-202610{day:02}"))
        .collect();
    tags.extend(
        [
            "alpha-0a1b2c3d",
            "beta-0a1b2c3d",
            "feature-x-0a1b2c3d",
            "main-00000001",
        ]
        .map(String::from),
    );
    let inventory = serde_json::json!({
        "repositories": [{"path": "acme/shop", "project_id": 7, "tags": tags.iter().map(|name| serde_json::json!({
            "name": name, "pushed_at": "2026-10-01T00:00:00Z", "size_bytes": 1048576
        })).collect::<Vec<_>>()}],
        "refs": {"7": {"complete": true, "slugs": ["main", "feature-x"], "open_mrs": []}}
    });
    let inventory = write_file(&dir, "inventory.json", &inventory.to_string());
    let policy = write_file(
        &dir,
        "policy.yml",
        r#"
rules:
  - name: gone branches
    delete: '(?P<ref>[a-z0-9-]+)-[0-9a-f]{8}'
    when_ref: gone
"#,
    );
    let out = run(
        &[],
        &[
            "plan",
            "--inventory",
            &inventory,
            "--policy",
            &policy,
            "--now",
            "2026-11-01T00:00:00Z",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let rule_line = out
        .stdout
        .lines()
        .find(|line| line.starts_with("  \"gone branches\": "))
        .unwrap_or_else(|| panic!("no line for the rule: {}", out.all()));
    assert!(
        rule_line.starts_with("  \"gone branches\": 30 tags, 30.0 MiB, e.g. acme/shop:nightly-"),
        "{rule_line}"
    );
    assert!(
        rule_line.contains("acme/shop:alpha-0a1b2c3d"),
        "{rule_line}"
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header = lines
        .iter()
        .position(|line| *line == "would delete, by rule:")
        .expect("the breakdown");
    let total = lines
        .iter()
        .position(|line| line.starts_with("total: "))
        .expect("the total");
    assert!(header < total, "the breakdown comes before the total");
    assert!(
        out.stdout
            .contains("kept or protected, by reason:\n  unclaimed: 2 tags, 2.0 MiB\n"),
        "{}",
        out.all()
    );
}

/// `plan --html` and `CLEANUP_HTML`: the page lists every tag the report
/// does; `report html` makes the same page from the report.
#[test]
fn plan_writes_the_page_beside_its_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let report = dir.path().join("plan.json");
    let page = dir.path().join("plan.html");
    let out = run(
        &[("CLEANUP_HTML".to_string(), arg(&page))],
        &[
            "plan",
            "--inventory",
            &format!("{root}/examples/inventory.json"),
            "--policy",
            &format!("{root}/examples/policy.yml"),
            "--now",
            "2026-11-01T00:00:00Z",
            "--report",
            &arg(&report),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let json = report_json(&report);
    assert_eq!(page_rows(&page).len(), 191);
    assert_eq!(report_rows(&json), 191);
    assert_eq!(
        json["totals"]["deleted_by_rule"]["review images"]["tags"],
        40
    );
    assert_eq!(json["totals"]["kept_by_kind"]["keep_n"]["tags"], 66);

    // The same page again, from the report; by default beside it.
    let out = run(&[], &["report", "html", &arg(&report)]);
    assert_eq!(out.code, 0, "{}", out.all());
    let again = dir.path().join("plan.html");
    assert_eq!(
        std::fs::read(&again).expect("page"),
        std::fs::read(&page).expect("page")
    );
    let other = dir.path().join("other.html");
    let out = run(
        &[],
        &["report", "html", &arg(&report), "--output", &arg(&other)],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out
        .stdout
        .contains("other.html: 4 repositories, 191 tags, 91 would delete"));
    assert_eq!(
        std::fs::read(&other).expect("page"),
        std::fs::read(&page).expect("page")
    );

    // A report from before the per-rule totals: its page still shows them.
    let mut old = json.clone();
    for key in ["deleted_by_rule", "kept_by_kind", "kept_bytes"] {
        old["totals"].as_object_mut().expect("totals").remove(key);
    }
    let old_report = write_file(&dir, "old.json", &old.to_string());
    let old_page = dir.path().join("old.html");
    let out = run(
        &[],
        &["report", "html", &old_report, "--output", &arg(&old_page)],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let html = std::fs::read_to_string(&old_page).expect("page");
    assert!(
        html.contains("<tr data-rule=\"review images\">"),
        "no rule table"
    );
    assert!(
        html.contains("<tr data-kind=\"keep_n\">"),
        "no reason table"
    );
}

/// A run's page (not streamed), a streamed group run's pages, and the page
/// of their merge: each lists every tag its report does.
#[test]
fn runs_streamed_runs_and_merges_write_their_pages() {
    let emulator = Emulator::start(Config {
        group_projects: vec![(2, "group/other".into())],
        ..Config::default()
    });
    for repository in ["group/project", "group/project/api", "group/other/web"] {
        emulator.add_tags(
            repository,
            [tag("mr-1"), tag("mr-2"), tag("main"), tag("latest")],
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write_file(
        &dir,
        "policy.yml",
        "rules:\n  - name: reviews\n    delete: 'mr-.*'\n",
    );
    let token = emulator.config().access_token;
    let env = with(emulator.ci_env(), &[("GITLAB_TOKEN", token.as_str())]);
    let path = |name: &str| dir.path().join(name);

    let out = run(
        &env,
        &[
            "run",
            "--dry-run",
            "--policy",
            &policy,
            "--report",
            &arg(&path("project.json")),
            "--html",
            &arg(&path("project.html")),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(page_rows(&path("project.html")).len(), 8);

    let mut shards = Vec::new();
    for shard in ["1/2", "2/2"] {
        let name = shard.replace('/', "-of-");
        let report = path(&format!("{name}.json"));
        let page = path(&format!("{name}.html"));
        let out = run(
            &env,
            &[
                "run",
                "--dry-run",
                "--group",
                "group",
                "--shard",
                shard,
                "--policy",
                &policy,
                "--report",
                &arg(&report),
                "--html",
                &arg(&page),
            ],
        );
        assert_eq!(out.code, 0, "{}", out.all());
        assert_eq!(page_rows(&page).len(), report_rows(&report_json(&report)));
        shards.push(arg(&report));
    }
    let merged = path("merged.json");
    let merged_page = path("merged.html");
    let mut args = vec![
        "report".to_string(),
        "merge".into(),
        "--report".into(),
        arg(&merged),
        "--html".into(),
        arg(&merged_page),
    ];
    args.extend(shards);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&[], &args);
    assert_eq!(out.code, 0, "{}", out.all());
    let rows = page_rows(&merged_page);
    assert_eq!(rows.len(), 12);
    assert_eq!(report_rows(&report_json(&merged)), 12);
    // 6 would delete (outcome 0), 3 kept, 3 protected.
    let outcomes = |outcome: u64| rows.iter().filter(|row| row[5] == outcome).count();
    assert_eq!((outcomes(0), outcomes(1), outcomes(2)), (6, 3, 3));
    // The merge's summary has the breakdown too.
    assert!(
        out.stdout.contains("  \"reviews\": 6 tags"),
        "{}",
        out.all()
    );
    // Nothing was deleted by these dry runs, and no page was left half-written.
    assert!(emulator.requests().iter().all(|r| r.method != "DELETE"));
    assert!(std::fs::read_dir(dir.path())
        .expect("dir")
        .all(|entry| !entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .contains("partial")));
}

/// A run killed before it wrote its report (SIGKILL after a cancelled
/// job's grace period) leaves its journal: `report html REPORT` reads it
/// there, as the run's report, interrupted — the deleted tags, and the
/// delete in flight when it was killed shown as "may be gone".
#[test]
fn report_html_reads_the_journal_of_a_killed_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let digest = format!("sha256:{}", "a".repeat(64));
    let line = |tag: &str, outcome: &str| {
        format!(
            "{{\"repository\":\"group/project\",\"tag\":\"{tag}\",\"digest\":\"{digest}\",\"outcome\":\"{outcome}\",\"time\":\"2026-12-07T10:00:00Z\",\"rule\":\"reviews\"}}\n"
        )
    };
    let journal: String = [
        line("mr-1", "attempting"),
        line("mr-1", "deleted"),
        line("mr-2", "attempting"),
        line("mr-2", "deleted"),
        line("mr-3", "attempting"),
    ]
    .concat();
    write_file(&dir, "r.json.journal", &journal);
    let report = dir.path().join("r.json");
    let out = run(&[], &["report", "html", &arg(&report)]);
    assert_eq!(out.code, 0, "{}", out.all());
    let page = dir.path().join("r.html");
    assert!(
        out.stdout.contains(&format!(
            "{}: 1 repositories, 3 tags, 2 deleted",
            page.display()
        )),
        "{}",
        out.all()
    );
    let html = std::fs::read_to_string(&page).expect("page");
    assert!(html.contains("yes: the run stopped"), "interrupted");
    assert!(
        html.contains("r.json.journal alone"),
        "says where it came from"
    );
    // Rows are `[repository, tag, digest, age, size, outcome, …]`.
    let mut tags: Vec<String> = page_rows(&page)
        .iter()
        .map(|row| row[1].as_str().expect("tag").to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, ["mr-1", "mr-2", "mr-3"]);
    assert!(
        html.contains("may be gone: the run was killed while this delete was in flight"),
        "mr-3's sentence"
    );

    // Named itself, the journal makes the page beside it.
    let out = run(
        &[],
        &["report", "html", &arg(&dir.path().join("r.json.journal"))],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(dir.path().join("r.json.html").exists(), "{}", out.all());

    // `report merge` refuses it by name: a journal does not say its shard.
    let out = run(
        &[],
        &["report", "merge", &arg(&dir.path().join("r.json.journal"))],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    out.assert_stderr_has("r.json.journal is a run's journal, not its report");
}

/// Bad input to `report html`: exit 2, naming what is wrong, no page.
#[test]
fn report_html_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.json");
    let out = run(&[], &["report", "html", &arg(&missing)]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("missing.json"), "{}", out.all());

    let not_a_report = write_file(&dir, "not-a-report.json", "{\"hello\": 1}");
    let out = run(&[], &["report", "html", &not_a_report]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("not-a-report.json is neither a registry-cleanup report nor its journal"),
        "{}",
        out.all()
    );

    let report = write_file(
        &dir,
        "report.json",
        r#"{"dry_run": true, "engine": "client", "repositories": [], "totals": {"repositories": 0, "tags": 0, "deleted": 0, "kept": 0, "protected": 0, "failed": 0, "skipped": 0}}"#,
    );
    let out = run(
        &[],
        &[
            "report",
            "html",
            &report,
            "--output",
            "/nonexistent/dir/page.html",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("--output /nonexistent/dir/page.html"),
        "{}",
        out.all()
    );
    let out = run(&[], &["report", "html", &report, "--output", &report]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("would overwrite the report"),
        "{}",
        out.all()
    );
    assert!(!dir.path().join("report.html").exists());

    // `--html` where nothing can be written: refused before anything is done.
    let out = run(
        &[],
        &[
            "plan",
            "--inventory",
            &report,
            "--html",
            "/nonexistent/dir/page.html",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("--html /nonexistent/dir/page.html"),
        "{}",
        out.all()
    );
}
