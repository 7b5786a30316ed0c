//! The report as one HTML page (`report html`, `--html FILE`): what a
//! person reviews before trusting a cleanup, one click from the pipeline
//! (the components expose it with `artifacts:expose_as`).
//!
//! One self-contained file that opens from an artifact or from disk: no
//! external script, style, font or image, and a Content-Security-Policy
//! that lets the page load nothing at all (its one style and one script are
//! allowed by their hashes). Everything a reviewer needs reads without
//! JavaScript — the run's facts, the totals, the storage by repository
//! (SVG bars), the deletions by rule with samples, the kept tags by reason
//! and the first [`PLAIN_ROWS`] tags are HTML tables. The table of every
//! tag is embedded as compact JSON rows that a small inline script filters
//! (repository, outcome, rule or reason, text), sorts and shows a page at a
//! time, so a 100,000-tag report is a page of a few MB that opens at once.
//!
//! Written like the report: [`HtmlReport::add`] takes one repository at a
//! time (a streamed run holds one repository, not the run), the rows go to
//! `FILE.rows.partial` beside the page, and [`HtmlReport::finish`] writes
//! the page to `FILE.partial` around them and renames it into place.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest as _, Sha256};

use crate::domain::model::build_time_floor;
use crate::output::breakdown::{Breakdown, RepositoryStorage};
use crate::output::report::{
    human_bytes, is_protected_kind, Report, ReportError, RepositoryReport, TagsAndBytes,
};

/// Tags rendered as HTML rows, for readers without JavaScript (who are
/// told the JSON report has the rest); the script pages through them all.
pub const PLAIN_ROWS: usize = 200;

/// Repositories drawn as bars, those holding the most storage; the rest
/// are summed in one row.
pub const STORAGE_ROWS: usize = 25;

const STYLE: &str = include_str!("html/page.css");
const SCRIPT: &str = include_str!("html/page.js");

/// What happened to a tag: the `outcomes` of the page's data, by index.
const DELETED: u8 = 0;
const KEPT: u8 = 1;
const PROTECTED: u8 = 2;
const FAILED: u8 = 3;
const SKIPPED: u8 = 4;
const ABSENT: u8 = 5;
const OUTCOME_CLASSES: [&str; 6] = [
    "o-delete",
    "o-kept",
    "o-protected",
    "o-failed",
    "o-skipped",
    "o-absent",
];

/// What a label of the page's data names: a rule, a kept tag's kind.
const LABEL_RULE: u8 = 0;
const LABEL_REASON: u8 = 1;

/// A page being written; see the module comment.
pub struct HtmlReport {
    path: PathBuf,
    rows_path: PathBuf,
    rows: Option<BufWriter<File>>,
    row_count: usize,
    /// The first [`PLAIN_ROWS`] rows as HTML.
    plain_rows: String,
    /// The time ages are counted back from (the report's `now`).
    now: Option<DateTime<Utc>>,
    dry_run: bool,
    repositories: Vec<String>,
    labels: Vec<(u8, String)>,
    label_index: HashMap<(u8, String), usize>,
    /// The reasons and errors, each once: a 100,000-tag plan has a few
    /// hundred different sentences (3 MB of page written out in full).
    details: Vec<String>,
    detail_index: HashMap<String, usize>,
    breakdown: Breakdown,
}

/// Sentences kept in the page's table of details; beyond that (a report of
/// mostly distinct errors) they are written out in their rows.
const MAX_DETAILS: usize = 100_000;

/// One row of the tag table.
struct Row<'a> {
    tag: &'a str,
    digest: Option<&'a str>,
    date: Option<DateTime<Utc>>,
    size: Option<u64>,
    outcome: u8,
    label: Option<usize>,
    detail: Option<&'a str>,
}

impl HtmlReport {
    /// Starts a page at `path` for the report `head` (its facts: `now`,
    /// `dry_run`; repositories are added with [`HtmlReport::add`]).
    pub fn create(path: &Path, head: &Report) -> Result<HtmlReport, ReportError> {
        let rows_path = with_suffix(path, ".rows.partial");
        let file = File::create(&rows_path).map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(HtmlReport {
            path: path.to_path_buf(),
            rows_path,
            rows: Some(BufWriter::with_capacity(256 * 1024, file)),
            row_count: 0,
            plain_rows: String::new(),
            now: head.now,
            dry_run: head.dry_run,
            repositories: Vec::new(),
            labels: Vec::new(),
            label_index: HashMap::new(),
            details: Vec::new(),
            detail_index: HashMap::new(),
            breakdown: Breakdown::holding_most(STORAGE_ROWS),
        })
    }

    /// Writes the whole `report` as a page at `path`.
    pub fn write(report: &Report, path: &Path) -> Result<(), ReportError> {
        let mut page = HtmlReport::create(path, report)?;
        for repository in &report.repositories {
            page.add(repository)?;
        }
        page.finish(report)
    }

    fn write_error(&self, source: std::io::Error) -> ReportError {
        ReportError::Write {
            path: self.path.clone(),
            source,
        }
    }

    fn label(&mut self, kind: u8, name: &str) -> usize {
        if let Some(&index) = self.label_index.get(&(kind, name.to_string())) {
            return index;
        }
        self.labels.push((kind, name.to_string()));
        self.label_index
            .insert((kind, name.to_string()), self.labels.len() - 1);
        self.labels.len() - 1
    }

    /// Adds one repository's tags, sorted by name, and its storage.
    pub fn add(&mut self, repository: &RepositoryReport) -> Result<(), ReportError> {
        self.breakdown.add(repository);
        let repository_index = self.repositories.len();
        self.repositories.push(repository.path.clone());
        let mut rows = self.rows_of(repository);
        rows.sort_by(|a, b| a.tag.as_bytes().cmp(b.tag.as_bytes()));

        let mut json = String::with_capacity(64 * rows.len());
        for row in &rows {
            if self.row_count > 0 || !json.is_empty() {
                json.push(',');
            }
            self.push_json_row(&mut json, repository_index, row);
            if self.row_count < PLAIN_ROWS {
                self.push_html_row(&repository.path, row);
            }
            self.row_count += 1;
        }
        let result = match self.rows.as_mut() {
            Some(out) => out.write_all(json.as_bytes()),
            None => Ok(()),
        };
        result.map_err(|source| self.write_error(source))
    }

    /// One row per tag of `repository`, in the report's order: deleted,
    /// kept, failed, skipped, already absent.
    fn rows_of<'a>(&mut self, repository: &'a RepositoryReport) -> Vec<Row<'a>> {
        let mut rows: Vec<Row> = Vec::with_capacity(
            repository.deleted.len()
                + repository.kept_tags.len()
                + repository.failed.len()
                + repository.skipped.len()
                + repository.already_absent.len(),
        );
        let mut last_rule: Option<(&str, usize)> = None;
        for deleted in &repository.deleted {
            let label = match (deleted.rule.as_deref(), last_rule) {
                (None, _) => None,
                (Some(rule), Some((last, index))) if rule == last => Some(index),
                (Some(rule), _) => {
                    let index = self.label(LABEL_RULE, rule);
                    last_rule = Some((rule, index));
                    Some(index)
                }
            };
            rows.push(Row {
                tag: &deleted.tag,
                digest: deleted.digest.as_deref(),
                date: age_date(deleted.pushed_at, deleted.created_at),
                size: deleted.size_bytes,
                outcome: DELETED,
                label,
                detail: None,
            });
        }
        for kept in &repository.kept_tags {
            let label = self.label(LABEL_REASON, &kept.kind);
            rows.push(Row {
                tag: &kept.tag,
                digest: kept.digest.as_deref(),
                date: age_date(kept.pushed_at, kept.created_at),
                size: kept.size_bytes,
                outcome: if kept.is_protected() { PROTECTED } else { KEPT },
                label: Some(label),
                detail: Some(&kept.reason),
            });
        }
        let plain = |tag, outcome, detail| Row {
            tag,
            digest: None,
            date: None,
            size: None,
            outcome,
            label: None,
            detail,
        };
        for failed in &repository.failed {
            rows.push(plain(&failed.tag, FAILED, Some(failed.error.as_str())));
        }
        for skipped in &repository.skipped {
            rows.push(plain(&skipped.tag, SKIPPED, Some(skipped.reason.as_str())));
        }
        for absent in &repository.already_absent {
            rows.push(plain(&absent.tag, ABSENT, None));
        }
        rows
    }

    /// A sentence's place in the details table, if it has one (or gets one).
    fn detail(&mut self, text: &str) -> Option<usize> {
        if let Some(&index) = self.detail_index.get(text) {
            return Some(index);
        }
        if self.details.len() >= MAX_DETAILS {
            return None;
        }
        self.details.push(text.to_string());
        self.detail_index
            .insert(text.to_string(), self.details.len() - 1);
        Some(self.details.len() - 1)
    }

    fn age_hours(&self, date: Option<DateTime<Utc>>) -> Option<i64> {
        Some((self.now? - date?).num_hours())
    }

    /// `[repository, tag, digest, age hours, size, outcome, label, detail]`,
    /// `null` where unknown, `detail` (an index into the details, or the
    /// sentence itself) left out when there is none.
    fn push_json_row(&mut self, out: &mut String, repository: usize, row: &Row) {
        let _ = write!(out, "[{repository},");
        push_json_string(out, row.tag);
        out.push(',');
        match row.digest.map(short_digest) {
            Some(digest) => push_json_string(out, digest),
            None => out.push_str("null"),
        }
        let number = |value: Option<i64>| value.map_or("null".to_string(), |v| v.to_string());
        let _ = write!(
            out,
            ",{},{},{},{}",
            number(self.age_hours(row.date)),
            number(row.size.map(|size| size as i64)),
            row.outcome,
            number(row.label.map(|label| label as i64))
        );
        if let Some(detail) = row.detail {
            out.push(',');
            match self.detail(detail) {
                Some(index) => {
                    let _ = write!(out, "{index}");
                }
                None => push_json_string(out, detail),
            }
        }
        out.push(']');
    }

    fn push_html_row(&mut self, repository: &str, row: &Row) {
        let outcome = outcome_name(row.outcome, self.dry_run);
        let why = row
            .detail
            .map(str::to_string)
            .or_else(|| row.label.map(|label| self.labels[label].1.clone()))
            .unwrap_or_default();
        let _ = writeln!(
            self.plain_rows,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            escape(repository),
            escape(row.tag),
            escape(row.digest.map(short_digest).unwrap_or("")),
            age_text(self.age_hours(row.date)),
            row.size.map(human_bytes).unwrap_or_default(),
            OUTCOME_CLASSES[usize::from(row.outcome)],
            outcome,
            escape(&why),
        );
    }

    /// Writes the page around the rows and puts it in place. `report`:
    /// the report's facts and final totals (its repositories, if any, are
    /// not read again).
    pub fn finish(mut self, report: &Report) -> Result<(), ReportError> {
        let Some(rows) = self.rows.take() else {
            return Ok(());
        };
        let rows = rows
            .into_inner()
            .map_err(|err| self.write_error(err.into_error()))?;
        drop(rows);
        let partial = with_suffix(&self.path, ".partial");
        let result = self
            .write_page(report, &partial)
            .and_then(|()| std::fs::rename(&partial, &self.path));
        let _ = std::fs::remove_file(&self.rows_path);
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result.map_err(|source| self.write_error(source))?;
        tracing::info!(path = %self.path.display(), tags = self.row_count, "HTML report written");
        Ok(())
    }

    fn write_page(&self, report: &Report, partial: &Path) -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(256 * 1024, File::create(partial)?);
        let mut html = String::with_capacity(64 * 1024);
        self.head(&mut html, report);
        self.facts(&mut html, report);
        totals(&mut html, report);
        self.rules(&mut html, report);
        self.reasons(&mut html, report);
        self.storage(&mut html, report);
        self.tag_table(&mut html, report);
        out.write_all(html.as_bytes())?;

        // The rows, embedded where the script finds them; `<` is escaped in
        // every string, so nothing in them can close the script element.
        out.write_all(b"<script type=\"application/json\" id=\"tag-data\">{\"outcomes\":[")?;
        let outcomes: Vec<String> = (0..6)
            .map(|outcome| json_string(outcome_name(outcome, report.dry_run)))
            .collect();
        out.write_all(outcomes.join(",").as_bytes())?;
        out.write_all(b"],\"repos\":[")?;
        let repositories: Vec<String> = self.repositories.iter().map(|r| json_string(r)).collect();
        out.write_all(repositories.join(",").as_bytes())?;
        out.write_all(b"],\"labels\":[")?;
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(_, name)| json_string(name))
            .collect();
        out.write_all(labels.join(",").as_bytes())?;
        out.write_all(b"],\"labelKinds\":[")?;
        let kinds: Vec<String> = self
            .labels
            .iter()
            .map(|(kind, _)| kind.to_string())
            .collect();
        out.write_all(kinds.join(",").as_bytes())?;
        out.write_all(b"],\"details\":[")?;
        let details: Vec<String> = self.details.iter().map(|d| json_string(d)).collect();
        out.write_all(details.join(",").as_bytes())?;
        out.write_all(b"],\"rows\":[")?;
        std::io::copy(&mut File::open(&self.rows_path)?, &mut out)?;
        out.write_all(b"]}</script>\n<script>")?;
        out.write_all(SCRIPT.as_bytes())?;
        out.write_all(b"</script>\n</body>\n</html>\n")?;
        out.flush()
    }

    fn head(&self, html: &mut String, report: &Report) {
        let totals = &report.totals;
        let title = format!(
            "{} of {} tags — registry-cleanup {}",
            count_phrase(totals.deleted, report.verb()),
            number(totals.tags),
            if report.dry_run { "plan" } else { "run" }
        );
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src '{}'; script-src '{}'; base-uri 'none'; form-action 'none'\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta name=\"generator\" content=\"registry-cleanup {}\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
            csp_hash(STYLE),
            csp_hash(SCRIPT),
            escape(&report.tool_version),
            escape(&title),
        );
    }

    fn facts(&self, html: &mut String, report: &Report) {
        let (badge, class) = if report.refused_over_limit.is_some() {
            ("refused: nothing deleted", "bad")
        } else if report.dry_run {
            ("dry run: nothing deleted", "dry")
        } else {
            ("live run", "live")
        };
        let _ = write!(
            html,
            "<header>\n<h1>Registry cleanup {} <span class=\"badge {class}\" id=\"run-kind\">{badge}</span></h1>\n\
             <p class=\"lede\">{}, {} kept, {} protected of {} in {}.</p>\n<dl class=\"facts\">\n",
            if report.dry_run { "plan" } else { "report" },
            count_phrase(report.totals.deleted, report.verb()),
            number(report.totals.kept),
            number(report.totals.protected),
            plural(report.totals.tags, "tag", "tags"),
            plural(report.totals.repositories, "repository", "repositories"),
        );
        for (name, id, value) in Self::fact_list(report) {
            let _ = writeln!(html, "<dt>{name}</dt><dd id=\"fact-{id}\">{value}</dd>");
        }
        html.push_str("</dl>\n");
        if !report.warnings.is_empty() {
            html.push_str("<ul class=\"warnings\" aria-label=\"warnings\">\n");
            for warning in &report.warnings {
                let _ = writeln!(html, "<li>warning: {}</li>", escape(warning));
            }
            html.push_str("</ul>\n");
        }
        html.push_str("</header>\n<main>\n");
    }

    /// The run's facts, as (name, element id, HTML value).
    fn fact_list(report: &Report) -> Vec<(&'static str, &'static str, String)> {
        let fact = |name, id, value: String| (name, id, value);
        let mut facts = Vec::new();
        facts.push(fact(
            "Dry run",
            "dry-run",
            if report.dry_run { "yes" } else { "no" }.into(),
        ));
        if let Some(limit) = report.refused_over_limit {
            facts.push(fact(
                "Refused",
                "refused",
                format!(
                    "the plan deletes more than --max-deletions {}: nothing was deleted",
                    number(limit)
                ),
            ));
        }
        facts.push(fact(
            "Planned at (now)",
            "now",
            report
                .now
                .map(|now| {
                    format!(
                        "<time datetime=\"{0}\">{0}</time>",
                        now.to_rfc3339_opts(SecondsFormat::Secs, true)
                    )
                })
                .unwrap_or_else(|| "not recorded".into()),
        ));
        facts.push(fact(
            "Policy file",
            "policy",
            report
                .policy_file
                .as_deref()
                .map(|file| format!("<code>{}</code>", escape(file)))
                .unwrap_or_else(|| "none".into()),
        ));
        facts.push(fact("Engine", "engine", escape(&report.engine)));
        facts.push(fact(
            "Tool version",
            "version",
            format!("registry-cleanup {}", escape(&report.tool_version)),
        ));
        facts.push(fact(
            "Shard",
            "shard",
            report
                .shard
                .map(|shard| format!("{} of {}", shard.index, shard.total))
                .unwrap_or_else(|| "none (every repository)".into()),
        ));
        facts.push(fact(
            "Interrupted",
            "interrupted",
            if report.interrupted {
                "<strong class=\"bad\">yes: the run stopped before every repository was done</strong>".into()
            } else {
                "no".into()
            },
        ));
        if !report.gitlab_tag_rules.is_empty() {
            let rules: Vec<String> = report
                .gitlab_tag_rules
                .iter()
                .map(|rule| {
                    format!(
                        "<code>{}</code> ({})",
                        escape(&rule.pattern),
                        escape(&rule.kind)
                    )
                })
                .collect();
            facts.push(fact("GitLab tag rules", "tag-rules", rules.join(", ")));
        }
        facts
    }

    fn storage(&self, html: &mut String, report: &Report) {
        let (shown, rest) = self.breakdown.storage();
        let sized = report.totals.deleted_bytes > 0 || report.totals.kept_bytes > 0;
        let verb = report.verb();
        let _ = write!(
            html,
            "<section aria-labelledby=\"storage\">\n<h2 id=\"storage\">Storage by repository</h2>\n\
             <p class=\"legend\"><span><span class=\"swatch sw-delete\"></span>{verb}</span><span><span class=\"swatch sw-keep\"></span>kept or protected</span> {}</p>\n",
            if sized {
                "Bytes as the registry listed them: layers shared between images count in each."
            } else {
                "The listing gave no sizes: the bars count tags."
            }
        );
        if shown.is_empty() {
            html.push_str("<p>No repository.</p>\n</section>\n");
            return;
        }
        let measure = |amount: &TagsAndBytes| {
            if sized {
                amount.bytes
            } else {
                amount.tags as u64
            }
        };
        let widest = shown
            .iter()
            .chain(&rest)
            .map(|storage| measure(&storage.total()))
            .max()
            .unwrap_or(0)
            .max(1);
        let _ = write!(
            html,
            "<table id=\"storage-table\">\n<caption>The {} holding the most storage{}</caption>\n\
             <thead><tr><th scope=\"col\">Repository</th><th scope=\"col\" class=\"num\">{verb}</th><th scope=\"col\" class=\"num\">kept or protected</th><th scope=\"col\">share</th></tr></thead>\n<tbody>\n",
            plural(shown.len(), "repository", "repositories"),
            if rest.is_some() { ", then the others summed" } else { "" }
        );
        for storage in shown.iter().chain(&rest) {
            let name = match self.repositories.iter().position(|r| *r == storage.path) {
                Some(index) if storage.repositories == 1 => format!(
                    "<a href=\"#tags\" data-filter=\"repo\" data-value=\"{index}\">{}</a>",
                    escape(&storage.path)
                ),
                _ => escape(&storage.path),
            };
            let _ = writeln!(
                html,
                "<tr><th scope=\"row\">{name}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                amount_text(&storage.deleted, sized),
                amount_text(&storage.kept, sized),
                bar(storage, widest, &measure, verb, sized),
            );
        }
        html.push_str("</tbody>\n</table>\n</section>\n");
    }

    fn rules(&self, html: &mut String, report: &Report) {
        let verb = report.verb();
        let _ = write!(
            html,
            "<section aria-labelledby=\"rules\">\n<h2 id=\"rules\">Deletions by rule</h2>\n"
        );
        if report.totals.deleted_by_rule.is_empty() {
            html.push_str("<p>No rule deletes anything.</p>\n</section>\n");
            return;
        }
        let _ = write!(
            html,
            "<table id=\"rules-table\">\n<caption>Each rule's tags ({verb}), with samples from the tag families it takes most of</caption>\n\
             <thead><tr><th scope=\"col\">Rule</th><th scope=\"col\" class=\"num\">tags</th><th scope=\"col\" class=\"num\">bytes</th><th scope=\"col\">samples</th></tr></thead>\n<tbody>\n"
        );
        let mut rules: Vec<_> = report.totals.deleted_by_rule.iter().collect();
        rules.sort_by(|a, b| b.1.tags.cmp(&a.1.tags).then_with(|| a.0.cmp(b.0)));
        for (rule, counted) in rules {
            let name = match self.label_index.get(&(LABEL_RULE, rule.clone())) {
                Some(index) => format!(
                    "<a href=\"#tags\" data-filter=\"label\" data-value=\"{index}\">{}</a>",
                    escape(rule)
                ),
                None => escape(rule),
            };
            let _ = writeln!(
                html,
                "<tr data-rule=\"{}\"><th scope=\"row\">{name}</th><td class=\"num\" data-value=\"{}\">{}</td><td class=\"num\">{}</td><td class=\"samples mono\">{}</td></tr>",
                escape(rule),
                counted.tags,
                number(counted.tags),
                bytes_text(counted.bytes),
                escape(&self.breakdown.samples(rule).join(", ")),
            );
        }
        html.push_str("</tbody>\n</table>\n</section>\n");
    }

    fn reasons(&self, html: &mut String, report: &Report) {
        html.push_str(
            "<section aria-labelledby=\"reasons\">\n<h2 id=\"reasons\">Kept tags by reason</h2>\n",
        );
        if report.totals.kept_by_kind.is_empty() {
            html.push_str("<p>The report lists no tag that stays (no plan was made, or every tag goes).</p>\n</section>\n");
            return;
        }
        html.push_str(
            "<table id=\"reasons-table\">\n<caption>Why the tags that stay stay: protected before any rule, or kept by the rules</caption>\n\
             <thead><tr><th scope=\"col\">Reason</th><th scope=\"col\">meaning</th><th scope=\"col\" class=\"num\">tags</th><th scope=\"col\" class=\"num\">bytes</th><th scope=\"col\">samples</th></tr></thead>\n<tbody>\n",
        );
        let mut kinds: Vec<_> = report.totals.kept_by_kind.iter().collect();
        kinds.sort_by(|a, b| b.1.tags.cmp(&a.1.tags).then_with(|| a.0.cmp(b.0)));
        for (kind, counted) in kinds {
            let name = match self.label_index.get(&(LABEL_REASON, kind.clone())) {
                Some(index) => format!(
                    "<a href=\"#tags\" data-filter=\"label\" data-value=\"{index}\"><code>{}</code></a>",
                    escape(kind)
                ),
                None => format!("<code>{}</code>", escape(kind)),
            };
            let _ = writeln!(
                html,
                "<tr data-kind=\"{}\"><th scope=\"row\">{name}</th><td>{}</td><td class=\"num\" data-value=\"{}\">{}</td><td class=\"num\">{}</td><td class=\"samples mono\">{}</td></tr>",
                escape(kind),
                escape(kind_meaning(kind)),
                counted.tags,
                number(counted.tags),
                bytes_text(counted.bytes),
                escape(&self.breakdown.kind_samples(kind).join(", ")),
            );
        }
        html.push_str("</tbody>\n</table>\n</section>\n");
    }

    fn tag_table(&self, html: &mut String, report: &Report) {
        let verb = report.verb();
        let _ = write!(
            html,
            "<section aria-labelledby=\"tags\">\n<h2 id=\"tags\">Every tag</h2>\n\
             <form id=\"filters\" class=\"filters\" hidden role=\"search\" aria-label=\"filter the tags\">\n\
             <label for=\"f-repo\">Repository<select id=\"f-repo\"><option value=\"\">all</option></select></label>\n\
             <label for=\"f-outcome\">Outcome<select id=\"f-outcome\"><option value=\"\">all</option></select></label>\n\
             <label for=\"f-label\">Rule or reason<select id=\"f-label\"><option value=\"\">all</option></select></label>\n\
             <label for=\"f-text\">Text (tag, digest, reason)<input id=\"f-text\" type=\"search\" autocomplete=\"off\"></label>\n\
             <label for=\"f-size\">Per page<select id=\"f-size\"><option>50</option><option selected>100</option><option>500</option><option>1000</option></select></label>\n\
             <button type=\"reset\">Clear filters</button>\n</form>\n\
             <p id=\"tag-status\" class=\"status\" role=\"status\" aria-live=\"polite\" data-rows=\"{rows}\">{status}</p>\n\
             <table id=\"tag-table\">\n<caption>Every tag of the report: {verb}, kept, protected, failed, skipped or already absent</caption>\n\
             <thead><tr><th scope=\"col\" data-col=\"0\">Repository</th><th scope=\"col\" data-col=\"1\">Tag</th><th scope=\"col\" data-col=\"2\">Digest</th><th scope=\"col\" class=\"num\" data-col=\"3\">Age</th><th scope=\"col\" class=\"num\" data-col=\"4\">Size</th><th scope=\"col\" data-col=\"5\">Outcome</th><th scope=\"col\" data-col=\"6\">Rule or reason</th></tr></thead>\n<tbody>\n",
            rows = self.row_count,
            status = if self.row_count <= PLAIN_ROWS {
                format!("{} {}", number(self.row_count), if self.row_count == 1 { "tag" } else { "tags" })
            } else {
                format!(
                    "The first {} of {} tags, by repository and tag",
                    number(PLAIN_ROWS),
                    number(self.row_count)
                )
            }
        );
        html.push_str(&self.plain_rows);
        html.push_str("</tbody>\n</table>\n");
        if self.row_count > PLAIN_ROWS {
            let _ = writeln!(
                html,
                "<p id=\"tag-nojs\" class=\"note\">Without JavaScript this page lists the first {} of {} tags; the JSON report lists them all.</p>",
                number(PLAIN_ROWS),
                number(self.row_count)
            );
        }
        html.push_str(
            "<nav id=\"tag-pager\" class=\"pager\" aria-label=\"pages of the tag table\" hidden>\
             <button type=\"button\" id=\"tag-prev\">Previous page</button> <span id=\"tag-page\"></span> \
             <button type=\"button\" id=\"tag-next\">Next page</button></nav>\n</section>\n</main>\n",
        );
        let _ = writeln!(
            html,
            "<footer>Made by registry-cleanup {} from its JSON report. Ages count back from the time the plan was made; sizes are as the registry listed them.</footer>",
            escape(&report.tool_version)
        );
    }
}

impl Drop for HtmlReport {
    /// Not finished (the command stopped): no rows left behind.
    fn drop(&mut self) {
        if self.rows.take().is_some() {
            let _ = std::fs::remove_file(&self.rows_path);
        }
    }
}

/// The totals as a grid of figures, each with `data-total` and its value.
fn totals(html: &mut String, report: &Report) {
    let totals = &report.totals;
    html.push_str("<section aria-labelledby=\"totals\">\n<h2 id=\"totals\">Totals</h2>\n<dl class=\"totals\">\n");
    let mut figure = |name: &str, key: &str, value: u64, text: String| {
        let _ = writeln!(
            html,
            "<div><dt>{name}</dt><dd data-total=\"{key}\" data-value=\"{value}\">{text}</dd></div>"
        );
    };
    let count = |n: usize| (n as u64, number(n));
    let figures: [(&str, &str, usize, bool); 10] = [
        ("repositories", "repositories", totals.repositories, true),
        ("tags", "tags", totals.tags, true),
        (report.verb(), "deleted", totals.deleted, true),
        (
            "of them signatures/attestations",
            "referrers_deleted",
            totals.referrers_deleted,
            totals.referrers_deleted > 0,
        ),
        ("kept", "kept", totals.kept, true),
        ("protected", "protected", totals.protected, true),
        (
            "already absent",
            "already_absent",
            totals.already_absent,
            true,
        ),
        ("skipped", "skipped", totals.skipped, true),
        ("failed", "failed", totals.failed, true),
        (
            "repositories failed",
            "failed_repositories",
            totals.failed_repositories,
            true,
        ),
    ];
    for (name, key, value, shown) in figures {
        if shown {
            let (value, text) = count(value);
            figure(name, key, value, text);
        }
    }
    if totals.deleted_bytes > 0 || totals.kept_bytes > 0 {
        figure(
            &format!("bytes {}", report.verb()),
            "deleted_bytes",
            totals.deleted_bytes,
            human_bytes(totals.deleted_bytes),
        );
        figure(
            "bytes kept",
            "kept_bytes",
            totals.kept_bytes,
            human_bytes(totals.kept_bytes),
        );
    }
    if totals.repositories_removed > 0 {
        let (value, text) = count(totals.repositories_removed);
        figure(
            "empty repositories removed",
            "repositories_removed",
            value,
            text,
        );
    }
    html.push_str("</dl>\n</section>\n");
}

/// A repository's bar: what goes and what stays, to scale with the widest.
fn bar(
    storage: &RepositoryStorage,
    widest: u64,
    measure: &dyn Fn(&TagsAndBytes) -> u64,
    verb: &str,
    sized: bool,
) -> String {
    const WIDTH: f64 = 240.0;
    let scale = |amount: u64| (amount as f64 / widest as f64 * WIDTH).max(0.0);
    let deleted = scale(measure(&storage.deleted));
    let kept = scale(measure(&storage.kept));
    format!(
        "<svg class=\"bar\" width=\"{WIDTH}\" height=\"14\" viewBox=\"0 0 {WIDTH} 14\" role=\"img\" aria-label=\"{}: {} {verb}, {} kept\">\
         <rect x=\"0\" y=\"1\" width=\"{deleted:.1}\" height=\"12\" fill=\"#b42318\"/>\
         <rect x=\"{deleted:.1}\" y=\"1\" width=\"{kept:.1}\" height=\"12\" fill=\"#1f5fbf\"/></svg>",
        escape(&storage.path),
        amount_text(&storage.deleted, sized),
        amount_text(&storage.kept, sized),
    )
}

/// The date a tag is aged by: its push time, else its build time unless
/// that is a reproducible builder's stamp (docs/policy.md, "Ages").
fn age_date(
    pushed: Option<DateTime<Utc>>,
    created: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    pushed.or(created.filter(|built| *built >= build_time_floor()))
}

fn age_text(hours: Option<i64>) -> String {
    match hours {
        None => "undated".into(),
        Some(hours) if hours < 0 => "after now".into(),
        Some(hours) if hours < 48 => format!("{hours} h"),
        Some(hours) => format!("{} d", hours / 24),
    }
}

fn outcome_name(outcome: u8, dry_run: bool) -> &'static str {
    match outcome {
        DELETED if dry_run => "would delete",
        DELETED => "deleted",
        KEPT => "kept",
        PROTECTED => "protected",
        FAILED => "failed",
        SKIPPED => "skipped",
        _ => "already absent",
    }
}

/// What a `kept_tags` kind means, for the reasons table.
fn kind_meaning(kind: &str) -> &'static str {
    match kind {
        "protected_latest" => "the tag latest (protect_latest)",
        "protect_pattern" => "matches a protect pattern of the policy",
        "protected" => "marked protected in the inventory",
        "gitlab_tag_rule" => "a GitLab tag protection or immutability rule",
        "keep_pattern" => "matches its rule's keep pattern",
        "keep_n" => "among its rule's keep_n newest",
        "younger_than_older_than" => "not older than its rule's older_than",
        "undated" => "no usable date: never deleted by age",
        "unclaimed" => "no rule's delete pattern claims it",
        "refs_unknown" => "the project's git refs are unknown: when_ref rules claim nothing",
        "referrer_of_kept_subject" => "a signature or attestation of an image that stays",
        "orphaned_referrer" => "a signature whose image was gone before the run",
        "referrer_unverifiable" => "a signature whose image cannot be proven gone",
        "in_use" => "deployed, or used by a running pipeline",
        kind if is_protected_kind(kind) => "protected",
        _ => "",
    }
}

fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn number(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{} {}", number(count), if count == 1 { one } else { many })
}

/// "91 would delete", "1 deleted".
fn count_phrase(count: usize, verb: &str) -> String {
    format!("{} {verb}", number(count))
}

fn bytes_text(bytes: u64) -> String {
    if bytes == 0 {
        "—".into()
    } else {
        human_bytes(bytes)
    }
}

fn amount_text(amount: &TagsAndBytes, sized: bool) -> String {
    let tags = plural(amount.tags, "tag", "tags");
    if sized {
        format!("{tags}, {}", human_bytes(amount.bytes))
    } else {
        tags
    }
}

/// Text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_json_string(&mut out, text);
    out
}

/// A JSON string safe inside a `<script>` element: `<`, `>` and `&` are
/// escaped as `\u003c`… so no text can end the element or start a comment.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `sha256-<base64>` of an inline element's text, as a CSP source.
fn csp_hash(text: &str) -> String {
    use base64::Engine as _;
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests;
