use super::*;
use crate::output::report::{AbsentTag, DeletedTag, FailedTag, KeptTagEntry, SkippedTag};

fn deleted(tag: &str, rule: &str, size: Option<u64>) -> DeletedTag {
    DeletedTag {
        digest: Some(format!("sha256:{:0>64}", tag.len())),
        created_at: Some("2026-10-01T00:00:00Z".parse().expect("date")),
        rule: Some(rule.into()),
        size_bytes: size,
        ..DeletedTag::named(tag)
    }
}

fn kept(tag: &str, kind: &str, size: Option<u64>) -> KeptTagEntry {
    KeptTagEntry {
        tag: tag.into(),
        kind: kind.into(),
        reason: format!("because of {kind}"),
        in_use: Vec::new(),
        digest: None,
        created_at: None,
        pushed_at: Some("2026-10-31T12:00:00Z".parse().expect("date")),
        size_bytes: size,
    }
}

/// Two repositories; a rule whose name would end a script element.
fn report() -> Report {
    let mut report = Report::new("client", true);
    report.planned_with(
        "2026-11-01T00:00:00Z".parse().expect("now"),
        Path::new("policy.yml"),
    );
    let mut api = RepositoryReport::new("g/p/api");
    api.deleted = vec![
        deleted("mr-1-x", "review </script><b>", Some(3 << 20)),
        deleted("mr-2-x", "review </script><b>", Some(1 << 20)),
    ];
    api.kept_tags = vec![
        kept("latest", "protected_latest", Some(5 << 20)),
        kept("mr-3-x", "keep_n", None),
    ];
    api.kept = 1;
    api.protected = 1;
    api.tags = 4;
    report.push(api);
    let mut web = RepositoryReport::new("g/p/web");
    web.failed.push(FailedTag {
        tag: "old".into(),
        error: "500 & <oops>".into(),
    });
    web.skipped.push(SkippedTag {
        tag: "v1".into(),
        reason: "protected by GitLab".into(),
    });
    web.already_absent.push(AbsentTag { tag: "gone".into() });
    web.tags = 3;
    report.push(web);
    report
}

fn page(report: &Report) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.html");
    HtmlReport::write(report, &path).expect("written");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["plan.html"], "no partial file is left behind");
    std::fs::read_to_string(&path).expect("page")
}

/// The embedded rows, parsed as the page's script parses them.
fn data(page: &str) -> serde_json::Value {
    let start = page
        .find("<script type=\"application/json\" id=\"tag-data\">")
        .expect("data element")
        + "<script type=\"application/json\" id=\"tag-data\">".len();
    let end = start + page[start..].find("</script>").expect("end of data");
    serde_json::from_str(&page[start..end]).expect("the data is JSON")
}

#[test]
fn every_tag_is_a_row_with_its_outcome_and_why() {
    let page = page(&report());
    let data = data(&page);
    let rows = data["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 7);
    assert_eq!(data["repos"], serde_json::json!(["g/p/api", "g/p/web"]));
    // Sorted by tag within a repository; digests short; ages in hours.
    assert_eq!(
        rows[0],
        serde_json::json!([0, "latest", null, 12, 5 << 20, 2, 1, 0])
    );
    assert_eq!(
        rows[1],
        serde_json::json!([0, "mr-1-x", "000000000000", 744, 3 << 20, 0, 0])
    );
    assert_eq!(data["labels"][0], "review </script><b>");
    assert_eq!(
        rows[4],
        serde_json::json!([1, "gone", null, null, null, 5, null])
    );
    assert_eq!(
        rows[5],
        serde_json::json!([1, "old", null, null, null, 3, null, 2])
    );
    // Each sentence once, rows point at it.
    assert_eq!(
        data["details"],
        serde_json::json!([
            "because of protected_latest",
            "because of keep_n",
            "500 & <oops>",
            "protected by GitLab"
        ])
    );
    // Every row also as HTML (fewer than PLAIN_ROWS).
    let table = &page[page.find("<table id=\"tag-table\">").expect("table")..];
    let body = &table[..table.find("</tbody>").expect("end")];
    assert_eq!(body.matches("<tr><td>").count(), 7);
    assert!(body.contains("<td class=\"o-delete\">would delete</td>"));
    assert!(body.contains("500 &amp; &lt;oops&gt;"));
}

#[test]
fn nothing_in_the_data_can_end_the_script_element() {
    let page = page(&report());
    let start = page.find("id=\"tag-data\">").expect("data");
    let data = &page[start..];
    let end = data.find("</script>").expect("end");
    assert!(!data[..end].contains('<'), "{}", &data[..end]);
    assert!(page.contains("review \\u003c/script\\u003e\\u003cb\\u003e"));
    // In HTML, escaped.
    assert!(page.contains("review &lt;/script&gt;&lt;b&gt;</a>"));
}

/// One file, loading nothing: no URL to fetch anything from, and a CSP
/// that allows the inline style and script by hash and nothing else.
#[test]
fn the_page_is_self_contained() {
    let page = page(&report());
    for forbidden in [
        "http://", "https://", " src=", "href=\"/", "@import", "url(",
    ] {
        assert!(!page.contains(forbidden), "the page contains {forbidden:?}");
    }
    let csp = format!(
        "default-src 'none'; style-src '{}'; script-src '{}';",
        csp_hash(STYLE),
        csp_hash(SCRIPT)
    );
    assert!(page.contains(&csp), "CSP {csp}");
    assert!(page.contains(&format!("<style>{STYLE}</style>")));
    assert!(page.contains(&format!("<script>{SCRIPT}</script>")));
    assert_eq!(
        page.matches("<script").count(),
        2,
        "the data and the script"
    );
}

#[test]
fn the_summary_tables_carry_the_totals() {
    let report = report();
    let page = page(&report);
    for (key, value) in [
        ("repositories", 2),
        ("tags", 7),
        ("deleted", 2),
        ("kept", 1),
        ("protected", 1),
        ("failed", 1),
        ("skipped", 1),
        ("already_absent", 1),
        ("deleted_bytes", 4 << 20),
        ("kept_bytes", 5 << 20),
    ] {
        assert!(
            page.contains(&format!("data-total=\"{key}\" data-value=\"{value}\"")),
            "{key} {value}"
        );
    }
    assert!(page.contains(
        "<tr data-rule=\"review &lt;/script&gt;&lt;b&gt;\"><th scope=\"row\"><a href=\"#tags\" data-filter=\"label\" data-value=\"0\">"
    ));
    assert!(page.contains("<td class=\"num\" data-value=\"2\">2</td><td class=\"num\">4.0 MiB</td><td class=\"samples mono\">g/p/api:mr-1-x, g/p/api:mr-2-x</td>"));
    assert!(page.contains("<tr data-kind=\"keep_n\">"));
    assert!(page.contains("<dd id=\"fact-dry-run\">yes</dd>"));
    assert!(page.contains("<time datetime=\"2026-11-01T00:00:00Z\">"));
    assert!(page.contains("<dd id=\"fact-policy\"><code>policy.yml</code></dd>"));
    // Two bars, to scale: api holds 9 MiB, web nothing.
    assert_eq!(page.matches("<svg class=\"bar\"").count(), 2);
    assert!(page.contains("<rect x=\"0\" y=\"1\" width=\"106.7\""));
}

#[test]
fn a_large_report_lists_its_first_rows_in_html_and_all_in_the_data() {
    let mut report = Report::new("client", false);
    let mut repository = RepositoryReport::new("g/p");
    repository.deleted = (0..1000)
        .map(|i| deleted(&format!("build-{i:04}"), "builds", Some(100)))
        .collect();
    repository.tags = 1000;
    report.push(repository);
    let page = page(&report);
    assert_eq!(data(&page)["rows"].as_array().expect("rows").len(), 1000);
    assert_eq!(page.matches("<tr><td>").count(), PLAIN_ROWS);
    assert!(page.contains("the first 200 of 1,000 tags"));
    assert!(page.contains("<td class=\"o-delete\">deleted</td>"));
}

#[test]
fn a_streamed_page_is_the_page_of_the_whole_report() {
    let report = report();
    let whole = page(&report);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("streamed.html");
    let mut head = report.clone();
    head.repositories.clear();
    let mut streamed = HtmlReport::create(&path, &head).expect("create");
    for repository in &report.repositories {
        streamed.add(repository).expect("add");
    }
    streamed.finish(&head).expect("finish");
    assert_eq!(std::fs::read_to_string(&path).expect("page"), whole);
}

#[test]
fn an_unfinished_page_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut page = HtmlReport::create(&dir.path().join("p.html"), &report()).expect("create");
    page.add(&report().repositories[0]).expect("add");
    drop(page);
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

#[test]
fn numbers_and_ages_read_as_people_write_them() {
    assert_eq!(number(0), "0");
    assert_eq!(number(999), "999");
    assert_eq!(number(1000), "1,000");
    assert_eq!(number(1234567), "1,234,567");
    assert_eq!(age_text(Some(47)), "47 h");
    assert_eq!(age_text(Some(49)), "2 d");
    assert_eq!(age_text(None), "undated");
    assert_eq!(age_text(Some(-1)), "after now");
    let stamp: DateTime<Utc> = "1980-01-01T00:00:01Z".parse().expect("date");
    assert_eq!(
        age_date(None, Some(stamp)),
        None,
        "a build stamp is no date"
    );
}
