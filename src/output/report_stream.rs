//! A report written while it is being made: the head (`dry_run`, `engine`,
//! `shard`, …) first, each repository as it is finished, the totals last.
//! Memory holds one repository's entry at a time, not the run's.
//!
//! The file is byte for byte what [`Report::write`] writes for the same
//! report (the head and tail come from serialising the report without its
//! repositories, so fields added to [`Report`] appear in both), and it is
//! written to `FILE.partial` and renamed into place when complete: a report
//! file is always valid JSON, and a stream that stops half way (an invalid
//! inventory entry) leaves no report behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize as _;
use serde_json::ser::Formatter;

use crate::output::breakdown::Breakdown;
use crate::output::html::HtmlReport;
use crate::output::report::{Report, ReportError, RepositoryReport};

/// Where the repositories go in the serialised head: pretty-printed, a
/// report's top-level fields are indented by two spaces, and a string value
/// cannot contain an unescaped quote, so this text occurs once.
const REPOSITORIES_MARK: &str = "\n  \"repositories\": []";

/// The report file's write buffer (`BufWriter`'s default is 8 KiB).
const WRITE_BUFFER: usize = 256 * 1024;

/// serde_json's `PrettyFormatter` (two-space indent), byte for byte, but
/// each line break and its indentation written at once: it writes the
/// indentation two spaces per call, and a report is mostly indentation
/// (a 100,000-tag report: about a million lines, four to five levels deep).
struct Pretty {
    depth: usize,
    has_value: bool,
}

/// A line break and the deepest indentation written in one call.
const NEWLINE_AND_INDENT: &[u8; 33] = b"\n                                ";

impl Pretty {
    /// A formatter inside `depth` containers already opened.
    fn nested(depth: usize) -> Pretty {
        Pretty {
            depth,
            has_value: false,
        }
    }

    /// A line break, indented to the current depth.
    fn new_line<W: ?Sized + Write>(&self, writer: &mut W) -> std::io::Result<()> {
        let width = 2 * self.depth;
        match NEWLINE_AND_INDENT.get(..1 + width) {
            Some(line) => writer.write_all(line),
            None => {
                writer.write_all(NEWLINE_AND_INDENT)?;
                (NEWLINE_AND_INDENT.len() - 1..width).try_for_each(|_| writer.write_all(b" "))
            }
        }
    }

    fn open<W: ?Sized + Write>(&mut self, writer: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        writer.write_all(bracket)
    }

    fn close<W: ?Sized + Write>(&mut self, writer: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.new_line(writer)?;
        }
        writer.write_all(bracket)
    }

    fn item<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            writer.write_all(b",")?;
        }
        self.new_line(writer)
    }
}

impl Formatter for Pretty {
    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.open(writer, b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.close(writer, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(writer, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _writer: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.open(writer, b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.close(writer, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(writer, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _writer: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

impl crate::output::report::ReportSink for ReportStream {
    fn refuse(&mut self, limit: usize) {
        self.report.dry_run = true;
        self.report.refused_over_limit = Some(limit);
    }

    fn interrupted(&mut self) {
        self.report.interrupted = true;
    }

    fn warn(&mut self, warning: String) {
        self.report.warnings.push(warning);
    }

    fn push(&mut self, repository: RepositoryReport) -> Result<(), ReportError> {
        ReportStream::push(self, repository)
    }
}

pub struct ReportStream {
    /// Everything but the repositories; the totals are counted as they come.
    report: Report,
    failures: bool,
    file: Option<OpenReport>,
    stdout: std::io::Stdout,
    /// Inside GitLab CI: each repository in a collapsible log section.
    sections: bool,
    pushed: usize,
    /// Where pushed repositories go to be freed (see [`freeing_thread`]).
    free: Option<std::sync::mpsc::SyncSender<RepositoryReport>>,
    /// The samples and storage of the summary's breakdown, gathered as
    /// repositories are pushed.
    breakdown: Breakdown,
    /// The report's HTML page, written alongside (`--html`).
    html: Option<HtmlReport>,
}

/// A thread that frees the repositories handed to it. A large repository's
/// report entries are hundreds of thousands of small allocations; freeing
/// them here, beside the next repository's work, takes them off the run's
/// path (a 100,000-tag plan: 0.160 → 0.150 s). At most one waits to be
/// freed, so memory stays bounded; without the thread, they are freed in
/// place.
fn freeing_thread() -> Option<std::sync::mpsc::SyncSender<RepositoryReport>> {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<RepositoryReport>(1);
    std::thread::Builder::new()
        .name("report-free".into())
        .spawn(move || receiver.into_iter().for_each(drop))
        .ok()?;
    Some(sender)
}

struct OpenReport {
    path: PathBuf,
    partial: PathBuf,
    out: BufWriter<File>,
    /// The head goes out with the first repository (or at the end): until
    /// then a guard may still turn the run into a refused one.
    head_written: bool,
    repositories: usize,
}

impl OpenReport {
    fn write_error(&self, source: std::io::Error) -> ReportError {
        ReportError::Write {
            path: self.path.clone(),
            source,
        }
    }

    fn write_head(&mut self, head: &Report) -> Result<(), ReportError> {
        if !self.head_written {
            let (before, _) = split_head(head)?;
            self.out
                .write_all(before.as_bytes())
                .map_err(|source| self.write_error(source))?;
            self.head_written = true;
        }
        Ok(())
    }
}

impl ReportStream {
    /// Starts the summary and, with `path`, the report file. `head` is the
    /// report without repositories (its totals are recounted here).
    pub fn create(mut head: Report, path: Option<&Path>) -> Result<ReportStream, ReportError> {
        head.repositories.clear();
        head.totals = Default::default();
        let file = match path {
            None => None,
            Some(path) => {
                let mut partial = path.as_os_str().to_owned();
                partial.push(".partial");
                let partial = PathBuf::from(partial);
                let write_error = |source| ReportError::Write {
                    path: path.to_path_buf(),
                    source,
                };
                // A report runs to tens of megabytes: larger writes, fewer calls.
                let out = BufWriter::with_capacity(
                    WRITE_BUFFER,
                    File::create(&partial).map_err(write_error)?,
                );
                // The head must serialise: found out now, not after deleting.
                split_head(&head)?;
                Some(OpenReport {
                    path: path.to_path_buf(),
                    partial,
                    out,
                    head_written: false,
                    repositories: 0,
                })
            }
        };
        Ok(ReportStream {
            report: head,
            failures: false,
            file,
            stdout: std::io::stdout(),
            sections: crate::output::sections::in_gitlab_ci(),
            pushed: 0,
            free: freeing_thread(),
            breakdown: Breakdown::new(),
            html: None,
        })
    }

    /// Also writes the report as an HTML page at `path` (`None`: not).
    pub fn with_html(mut self, path: Option<&Path>) -> Result<ReportStream, ReportError> {
        if let Some(path) = path {
            self.html = Some(HtmlReport::create(path, &self.report)?);
        }
        Ok(self)
    }

    /// Prints the repository's summary line, writes its entry and counts it.
    pub fn push(&mut self, repository: RepositoryReport) -> Result<(), ReportError> {
        self.report.totals.count(&repository);
        self.breakdown.add(&repository);
        if let Some(html) = &mut self.html {
            html.add(&repository)?;
        }
        self.failures |= repository.has_failures();
        let line = repository.summary_line(self.report.verb());
        self.pushed += 1;
        // stdout closed (a pipe to `head`): the report still gets written.
        let _ = if self.sections {
            crate::output::sections::print_repository(
                &repository,
                &line,
                self.report.dry_run,
                self.pushed,
                chrono::Utc::now().timestamp(),
                &mut self.stdout.lock(),
            )
        } else {
            writeln!(self.stdout.lock(), "{line}")
        };
        if let Some(file) = &mut self.file {
            file.write_head(&self.report)?;
            let separator: &[u8] = if file.repositories == 0 {
                b"[\n    "
            } else {
                b",\n    "
            };
            file.out
                .write_all(separator)
                .map_err(|source| ReportError::Write {
                    path: file.path.clone(),
                    source,
                })?;
            // Straight into the file, pretty-printed two levels in, where
            // `Report::write` puts a repository.
            let formatter = Pretty::nested(2);
            let mut serializer = serde_json::Serializer::with_formatter(&mut file.out, formatter);
            repository.serialize(&mut serializer)?;
            file.repositories += 1;
        }
        if let Some(free) = &self.free {
            // A stopped thread hands it back: freed here then.
            let _ = free.send(repository);
        }
        Ok(())
    }

    /// Writes the totals, puts the report in place and prints the total
    /// line. Returns the report without its repositories, with the totals,
    /// and whether any repository had failures.
    pub fn finish(mut self) -> Result<(Report, bool), ReportError> {
        if let Some(mut file) = self.file.take() {
            file.write_head(&self.report)?;
            let (_, after) = split_head(&self.report)?;
            let close = if file.repositories == 0 {
                "[]"
            } else {
                "\n  ]"
            };
            let write_error = |source| ReportError::Write {
                path: file.path.clone(),
                source,
            };
            file.out
                .write_all(close.as_bytes())
                .and_then(|()| file.out.write_all(after.as_bytes()))
                .and_then(|()| file.out.write_all(b"\n"))
                .and_then(|()| file.out.flush())
                .map_err(write_error)?;
            std::fs::rename(&file.partial, &file.path).map_err(write_error)?;
            tracing::info!(path = %file.path.display(), "report written");
        }
        if let Some(html) = self.html.take() {
            html.finish(&self.report)?;
        }
        let breakdown = crate::output::sections::breakdown_lines(&self.report, &self.breakdown);
        for line in breakdown.iter().chain(&self.report.total_lines()) {
            let _ = writeln!(self.stdout.lock(), "{line}");
        }
        let failures = self.failures || self.report.has_failures();
        Ok((std::mem::take(&mut self.report), failures))
    }
}

impl Drop for ReportStream {
    /// Not finished (an error stopped the command): no half report under
    /// the report's name. A live run that already reported repositories
    /// (and so may have deleted in them) keeps `FILE.partial` as the record
    /// of what it did; anything else leaves nothing behind.
    fn drop(&mut self) {
        if let Some(mut file) = self.file.take() {
            if !self.report.dry_run && file.repositories > 0 {
                let _ = file.out.flush();
                tracing::warn!(
                    path = %file.partial.display(),
                    repositories = file.repositories,
                    "the run stopped before its report was complete: the partial report lists the repositories done so far (not valid JSON)"
                );
                return;
            }
            drop(file.out);
            let _ = std::fs::remove_file(&file.partial);
        }
    }
}

/// The report's JSON before the repositories' `[` (excluded) and after
/// their `]`.
fn split_head(head: &Report) -> Result<(String, String), ReportError> {
    let mut empty = head.clone();
    empty.repositories.clear();
    let json = serde_json::to_string_pretty(&empty)?;
    // Cannot fail: `repositories` is a top-level field of every report.
    let at = json.find(REPOSITORIES_MARK).ok_or_else(|| {
        ReportError::Serialise(serde::ser::Error::custom(
            "the serialised report has no top-level repositories field",
        ))
    })?;
    let before = format!("{}\n  \"repositories\": ", &json[..at]);
    let after = json[at + REPOSITORIES_MARK.len()..].to_string();
    Ok((before, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::shard::Shard;
    use crate::output::report::DeletedTag;

    #[test]
    fn pretty_writes_what_serde_json_pretty_prints() {
        // Empty and nested containers, and deeper than one indentation write.
        let mut deep = serde_json::json!({"leaf": [1, {}, []]});
        for level in 0..20 {
            deep = serde_json::json!({ format!("l{level}"): [deep, "x\"y", null] });
        }
        let value = serde_json::json!({"a": [], "b": {}, "c": [[]], "d": deep, "e": 1.5});
        let mut ours = Vec::new();
        value
            .serialize(&mut serde_json::Serializer::with_formatter(
                &mut ours,
                Pretty::nested(0),
            ))
            .expect("serialised");
        let theirs = serde_json::to_string_pretty(&value).expect("serialised");
        assert_eq!(String::from_utf8(ours).expect("UTF-8"), theirs);
    }

    fn repository(path: &str, deleted: usize) -> RepositoryReport {
        let mut repository = RepositoryReport::new(path);
        repository.tags = deleted + 1;
        repository.kept = 1;
        repository.deleted = (0..deleted)
            .map(|i| DeletedTag {
                rule: Some("r".into()),
                ..DeletedTag::named(format!("mr-{i}"))
            })
            .collect();
        repository
    }

    #[test]
    fn the_streamed_file_is_what_report_write_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        for count in [0, 1, 3] {
            let mut head = Report::new("client", true);
            head.shard = Some(Shard { index: 2, total: 4 });
            let repositories: Vec<RepositoryReport> = (0..count)
                .map(|i| repository(&format!("g/r{i}"), i))
                .collect();
            let streamed = dir.path().join(format!("streamed-{count}.json"));
            let mut stream = ReportStream::create(head.clone(), Some(&streamed)).expect("create");
            for repository in repositories.clone() {
                stream.push(repository).expect("push");
            }
            let (totals_only, failures) = stream.finish().expect("finish");
            assert!(!failures);
            let whole = dir.path().join(format!("whole-{count}.json"));
            head.extend(repositories);
            head.write(&whole).expect("write");
            assert_eq!(
                std::fs::read_to_string(&streamed).expect("streamed"),
                std::fs::read_to_string(&whole).expect("whole"),
                "{count} repositories"
            );
            assert_eq!(totals_only.totals, head.totals);
            assert!(!dir
                .path()
                .join(format!("streamed-{count}.json.partial"))
                .exists());
        }
    }

    #[test]
    fn a_stream_that_stops_leaves_no_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("report.json");
        let mut stream =
            ReportStream::create(Report::new("client", true), Some(&path)).expect("create");
        stream.push(repository("g/a", 2)).expect("push");
        drop(stream);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    /// A live run may have deleted in the repositories it reported: when it
    /// stops, the partial file stays as the record of them.
    #[test]
    fn a_live_stream_that_stops_keeps_its_partial_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("report.json");
        let mut stream =
            ReportStream::create(Report::new("client", false), Some(&path)).expect("create");
        stream.push(repository("g/a", 2)).expect("push");
        drop(stream);
        assert!(!path.exists());
        let partial = std::fs::read_to_string(dir.path().join("report.json.partial"))
            .expect("partial record");
        assert!(
            partial.contains("\"g/a\"") && partial.contains("mr-1"),
            "{partial}"
        );
    }
}
