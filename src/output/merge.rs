//! `report merge`: one report from the reports of a sharded group run.
//!
//! Pure: reports in, one report out, or the first inconsistency — a
//! repository in two reports, a shard missing or given twice, shards of
//! different totals, a dry run mixed with a live one. The totals are not
//! summed from the inputs: the merged report recounts them from its
//! repositories, with the code that counts them for `run`
//! ([`Report::extend`]), so they cannot disagree with what is listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::domain::exit::{Exit, ExitCode};
use crate::domain::shard::Shard;
use crate::output::report::Report;

/// Why the reports could not be merged. Each names the files concerned.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("reading the report {}", .file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is a run's journal, not its report: `report merge` joins the reports of a sharded run's shards, and a journal does not say which shard it was; see it with `report html {}`, put its deletions back with `restore --report {}`", .file.display(), .file.display(), .file.display())]
    Journal { file: PathBuf },
    #[error("{} is not a registry-cleanup report", .file.display())]
    Parse {
        file: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} and {} were made with another {what}: merge the shard reports of one run", .first.display(), .second.display())]
    MixedRuns {
        first: PathBuf,
        second: PathBuf,
        what: &'static str,
    },
    #[error("{} records no shard while {} does: merge the reports of one `run --shard I/N` set", .unsharded.display(), .sharded.display())]
    MixedSharding {
        unsharded: PathBuf,
        sharded: PathBuf,
    },
    #[error("{} is shard {} but {} is shard {}: the shards of one run share their total N", .first.display(), .first_shard, .second.display(), .second_shard)]
    MixedTotals {
        first: PathBuf,
        first_shard: Shard,
        second: PathBuf,
        second_shard: Shard,
    },
    #[error("shard {shard} is given twice: {} and {}", .first.display(), .second.display())]
    DuplicateShard {
        shard: Shard,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("shard {0} missing: pass the report of every shard from 1 to {total}", total = .0.total)]
    MissingShard(Shard),
    #[error("repository {path} is in both {} and {}: the reports overlap (shards of different runs, or a report given twice)", .first.display(), .second.display())]
    Overlap {
        path: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{} is a dry run and {} is not: merge the reports of one run", .dry.display(), .live.display())]
    MixedDryRun { dry: PathBuf, live: PathBuf },
    #[error("{} was made by the {} engine and {} by the {}: merge the reports of one run", .first.display(), .first_engine, .second.display(), .second_engine)]
    MixedEngines {
        first: PathBuf,
        first_engine: String,
        second: PathBuf,
        second_engine: String,
    },
}

impl ExitCode for MergeError {
    /// Bad input: nothing merged, nothing written.
    fn exit_code(&self) -> Exit {
        Exit::Usage
    }
}

/// Reads a report file.
pub fn read_report(file: &Path) -> Result<Report, MergeError> {
    let text = std::fs::read_to_string(file).map_err(|source| MergeError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| {
        if crate::output::restore::looks_like_journal(&text) {
            MergeError::Journal {
                file: file.to_path_buf(),
            }
        } else {
            MergeError::Parse {
                file: file.to_path_buf(),
                source,
            }
        }
    })
}

/// Merges the reports (each with the file it came from). Every shard of N
/// must be there exactly once when the reports record shards; without
/// shards only the overlap check applies.
pub fn merge(reports: Vec<(PathBuf, Report)>) -> Result<Report, MergeError> {
    let Some((first_file, first)) = reports.first() else {
        // clap requires at least one file; an empty merge is an empty report.
        return Ok(Report::default());
    };
    let run = OneRun {
        first_file: first_file.clone(),
        dry_run: meant_dry(first),
        engine: first.engine.clone(),
        policy_digest: first.policy_digest.clone(),
        scope: first.scope.clone(),
    };
    let mut shards = ShardSet::default();
    for (file, report) in &reports {
        run.check(file, report)?;
        shards.add(file, report.shard)?;
    }
    shards.check_complete()?;
    combine(&run.engine, reports)
}

/// A shard refused by --max-deletions reports its plan as a dry run, but
/// it belongs to a live run: merged with its live siblings, it makes the
/// merge fail (has_failures) rather than look like a mix of runs.
fn meant_dry(report: &Report) -> bool {
    report.dry_run && report.refused_over_limit.is_none()
}

/// What every report of one run shares with the first.
struct OneRun {
    first_file: PathBuf,
    dry_run: bool,
    engine: String,
    /// What `run --plan` checks a plan against: the same in every shard.
    policy_digest: Option<String>,
    scope: Option<crate::domain::applied_plan::RunScope>,
}

impl OneRun {
    fn check(&self, file: &Path, report: &Report) -> Result<(), MergeError> {
        if meant_dry(report) != self.dry_run {
            let (dry, live) = if meant_dry(report) {
                (file.to_path_buf(), self.first_file.clone())
            } else {
                (self.first_file.clone(), file.to_path_buf())
            };
            return Err(MergeError::MixedDryRun { dry, live });
        }
        if report.engine != self.engine {
            return Err(MergeError::MixedEngines {
                first: self.first_file.clone(),
                first_engine: self.engine.clone(),
                second: file.to_path_buf(),
                second_engine: report.engine.clone(),
            });
        }
        let mixed = |what| MergeError::MixedRuns {
            first: self.first_file.clone(),
            second: file.to_path_buf(),
            what,
        };
        if report.policy_digest != self.policy_digest {
            return Err(mixed("policy"));
        }
        if report.scope != self.scope {
            return Err(mixed("scope (project, group or instance)"));
        }
        Ok(())
    }
}

/// The shards seen so far: each index with its file, the total N with the
/// first file that gave it, and the first report without a shard.
#[derive(Default)]
struct ShardSet {
    shards: BTreeMap<u32, PathBuf>,
    total: Option<(u32, PathBuf, Shard)>,
    unsharded: Option<PathBuf>,
}

impl ShardSet {
    fn add(&mut self, file: &Path, shard: Option<Shard>) -> Result<(), MergeError> {
        let Some(shard) = shard else {
            self.unsharded = self.unsharded.take().or_else(|| Some(file.to_path_buf()));
            return Ok(());
        };
        match &self.total {
            None => self.total = Some((shard.total, file.to_path_buf(), shard)),
            Some((n, first, first_shard)) if *n != shard.total => {
                return Err(MergeError::MixedTotals {
                    first: first.clone(),
                    first_shard: *first_shard,
                    second: file.to_path_buf(),
                    second_shard: shard,
                })
            }
            Some(_) => {}
        }
        if let Some(earlier) = self.shards.insert(shard.index, file.to_path_buf()) {
            return Err(MergeError::DuplicateShard {
                shard,
                first: earlier,
                second: file.to_path_buf(),
            });
        }
        Ok(())
    }

    /// All sharded or none, and every shard from 1 to N there.
    fn check_complete(&self) -> Result<(), MergeError> {
        if let (Some(unsharded), Some((_, sharded, _))) = (&self.unsharded, &self.total) {
            return Err(MergeError::MixedSharding {
                unsharded: unsharded.clone(),
                sharded: sharded.clone(),
            });
        }
        if let Some((n, _, _)) = self.total {
            if let Some(index) = (1..=n).find(|index| !self.shards.contains_key(index)) {
                return Err(MergeError::MissingShard(Shard { index, total: n }));
            }
        }
        Ok(())
    }
}

/// One report from reports of one run: their repositories (none in two
/// reports), sorted by path and recounted, and the shards' own records.
fn combine(engine: &str, reports: Vec<(PathBuf, Report)>) -> Result<Report, MergeError> {
    // Dry when nothing was deleted anywhere (a dry run, or every shard refused).
    let nothing_deleted = reports.iter().all(|(_, report)| report.dry_run);
    let mut merged = Report::new(engine, nothing_deleted);
    let mut owners: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut repositories = Vec::new();
    for (file, report) in reports {
        // The shards' own records: the earliest clock they planned at, the
        // policy file (the same in every shard of one run), their warnings.
        merged.now = match (merged.now, report.now) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if merged.policy_file.is_none() {
            merged.policy_file = report.policy_file;
        }
        // Checked equal in every shard: the merged plan can be applied.
        merged.policy_digest = merged.policy_digest.or(report.policy_digest);
        merged.scope = merged.scope.or(report.scope);
        merged.refused_over_limit = merged.refused_over_limit.or(report.refused_over_limit);
        for warning in report.warnings {
            if !merged.warnings.contains(&warning) {
                merged.warnings.push(warning);
            }
        }
        for rule in report.gitlab_tag_rules {
            if !merged.gitlab_tag_rules.contains(&rule) {
                merged.gitlab_tag_rules.push(rule);
            }
        }
        for repository in report.repositories {
            if let Some(first) = owners.insert(repository.path.clone(), file.clone()) {
                return Err(MergeError::Overlap {
                    path: repository.path,
                    first,
                    second: file,
                });
            }
            repositories.push(repository);
        }
    }
    repositories.sort_by(|a, b| a.path.cmp(&b.path));
    merged.extend(repositories);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::report::{DeletedTag, FailedTag, RepositoryReport};

    fn shard_report(shard: Option<(u32, u32)>, paths: &[&str]) -> Report {
        let mut report = Report::new("client", false);
        report.shard = shard.map(|(index, total)| Shard { index, total });
        for path in paths {
            let mut repository = RepositoryReport::new(path);
            repository.tags = 5;
            repository.kept = 3;
            repository.deleted = ["a", "b"]
                .iter()
                .map(|tag| DeletedTag {
                    rule: Some("r".into()),
                    ..DeletedTag::named(tag.to_string())
                })
                .collect();
            report.push(repository);
        }
        report
    }

    fn files(reports: Vec<Report>) -> Vec<(PathBuf, Report)> {
        reports
            .into_iter()
            .enumerate()
            .map(|(i, report)| (PathBuf::from(format!("shard-{}.json", i + 1)), report))
            .collect()
    }

    /// A shard's journal is refused by name (it does not say which shard
    /// it was), with where it can be read instead; other JSON is no report.
    #[test]
    fn a_journal_is_refused_saying_what_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join("shard-2.json.journal");
        std::fs::write(
            &journal,
            "{\"repository\":\"g/a\",\"tag\":\"mr-1\",\"outcome\":\"deleted\",\"time\":\"2026-12-07T10:00:00Z\"}\n",
        )
        .expect("write");
        let err = read_report(&journal).expect_err("a journal");
        assert!(matches!(err, MergeError::Journal { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("shard-2.json.journal is a run's journal, not its report"),
            "{text}"
        );
        assert!(text.contains("report html"), "{text}");
        assert_eq!(err.exit_code(), Exit::Usage);

        let other = dir.path().join("other.json");
        std::fs::write(&other, "{\"hello\": 1}").expect("write");
        assert!(matches!(read_report(&other), Err(MergeError::Parse { .. })));
    }

    /// The policy and scope `run --plan` checks travel into the merged
    /// plan, and shards that disagree on them are not one run.
    #[test]
    fn shards_of_one_policy_and_scope_merge_into_a_plan_others_are_refused() {
        let with = |shard, paths: &[&str], policy: &str| {
            let mut report = shard_report(Some(shard), paths);
            report.policy_digest = Some(policy.to_string());
            report.scope = Some(crate::domain::applied_plan::RunScope {
                kind: "group".into(),
                group: Some("g".into()),
                ..Default::default()
            });
            report
        };
        let merged = merge(files(vec![
            with((1, 2), &["g/b"], "p1"),
            with((2, 2), &["g/a"], "p1"),
        ]))
        .expect("merged");
        assert_eq!(merged.policy_digest.as_deref(), Some("p1"));
        assert_eq!(
            merged.scope.and_then(|scope| scope.group).as_deref(),
            Some("g")
        );

        let err = merge(files(vec![
            with((1, 2), &["g/b"], "p1"),
            with((2, 2), &["g/a"], "p2"),
        ]))
        .expect_err("two policies");
        assert!(
            err.to_string().contains("made with another policy"),
            "{err}"
        );
    }

    #[test]
    fn merges_every_shard_and_recounts_the_totals() {
        let mut tampered = shard_report(Some((2, 2)), &["g/a", "g/c"]);
        // Totals in a file are not trusted: the merge recounts them.
        tampered.totals.deleted = 999;
        let merged =
            merge(files(vec![shard_report(Some((1, 2)), &["g/b"]), tampered])).expect("merged");
        let paths: Vec<&str> = merged
            .repositories
            .iter()
            .map(|r| r.path.as_str())
            .collect();
        assert_eq!(paths, ["g/a", "g/b", "g/c"]);
        assert_eq!(merged.totals.repositories, 3);
        assert_eq!(merged.totals.tags, 15);
        assert_eq!(merged.totals.deleted, 6);
        assert_eq!(merged.totals.kept, 9);
        assert_eq!(merged.shard, None);
        assert!(!merged.has_failures());
    }

    #[test]
    fn failures_in_a_shard_are_failures_of_the_merge() {
        let mut failing = shard_report(Some((1, 2)), &["g/a"]);
        failing.repositories[0].failed.push(FailedTag {
            tag: "x".into(),
            error: "500".into(),
        });
        let merged =
            merge(files(vec![failing, shard_report(Some((2, 2)), &["g/b"])])).expect("merged");
        assert_eq!(merged.totals.failed, 1);
        assert!(merged.has_failures());
    }

    #[test]
    fn inconsistent_sets_are_refused_naming_the_shard_or_file() {
        let cases: Vec<(Vec<Report>, &str)> = vec![
            (
                vec![
                    shard_report(Some((1, 4)), &["a"]),
                    shard_report(Some((2, 4)), &["b"]),
                    shard_report(Some((4, 4)), &["d"]),
                ],
                "shard 3/4 missing",
            ),
            (
                vec![
                    shard_report(Some((1, 2)), &["a"]),
                    shard_report(Some((1, 2)), &["b"]),
                ],
                "shard 1/2 is given twice: shard-1.json and shard-2.json",
            ),
            (
                vec![
                    shard_report(Some((1, 2)), &["a"]),
                    shard_report(Some((2, 3)), &["b"]),
                ],
                "shard-1.json is shard 1/2 but shard-2.json is shard 2/3",
            ),
            (
                vec![
                    shard_report(Some((1, 2)), &["a", "x"]),
                    shard_report(Some((2, 2)), &["x"]),
                ],
                "repository x is in both shard-1.json and shard-2.json",
            ),
            (
                vec![
                    shard_report(None, &["a"]),
                    shard_report(Some((1, 1)), &["b"]),
                ],
                "shard-1.json records no shard while shard-2.json does",
            ),
            (
                vec![shard_report(None, &["a"]), {
                    let mut dry = shard_report(None, &["b"]);
                    dry.dry_run = true;
                    dry
                }],
                "shard-2.json is a dry run and shard-1.json is not",
            ),
        ];
        for (reports, expected) in cases {
            let err = merge(files(reports)).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    /// A shard `--max-deletions` refused (its plan reported as a dry run)
    /// merges with its live siblings, and the merge fails: its counts are
    /// a plan, not deletions.
    #[test]
    fn a_shard_refused_over_its_limit_fails_the_merge() {
        let mut refused = shard_report(Some((2, 2)), &["b"]);
        refused.dry_run = true;
        refused.refused_over_limit = Some(10);
        let merged =
            merge(files(vec![shard_report(Some((1, 2)), &["a"]), refused])).expect("one live run");
        assert!(!merged.dry_run);
        assert_eq!(merged.refused_over_limit, Some(10));
        assert!(merged.has_failures());
    }
}
