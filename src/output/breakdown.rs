//! What a reviewer reads before trusting a plan: what each rule deletes
//! (tags, bytes, and sample tags as different from each other as the rule
//! allows), why the other tags stay, and where the storage is.
//!
//! A policy that claims more than was meant shows here at once: a branch
//! rule whose pattern also matches `nightly-20261028` lists a nightly among
//! its samples. The counts come from the report's totals (`deleted_by_rule`,
//! `kept_by_kind`); the samples and the storage per repository from the
//! repositories, fed one at a time ([`Breakdown::add`]), so a streamed run
//! that keeps no repository gets the same block. Bounded: a few lines per
//! rule and reason, and at most [`STORAGE_LINES`] repositories however many
//! the run had.

use std::collections::BTreeMap;

use crate::output::report::{human_bytes, plural, Report, RepositoryReport, TagsAndBytes};

/// Sample tags shown per rule.
pub const SAMPLES: usize = 3;

/// Repositories shown by name in the storage lines; the rest are summed.
pub const STORAGE_LINES: usize = 10;

/// The samples and the storage per repository, gathered as repositories
/// are added; the counts are the report's totals.
#[derive(Debug, Clone)]
pub struct Breakdown {
    /// Per rule, the tag families it deletes most, with tags of each.
    families: BTreeMap<String, Families>,
    /// Per kept kind (`keep_n`, `unclaimed`, …), the same.
    kind_families: BTreeMap<String, Families>,
    /// Tags offered so far: the order families were first seen.
    offered: usize,
    /// The repositories shown, largest first once [`Breakdown::storage`]
    /// sorts them; at most `2 × limit` are held, the smallest folded into
    /// `folded`.
    shown: Vec<RepositoryStorage>,
    folded: RepositoryStorage,
    /// How many repositories [`Breakdown::storage`] names.
    limit: usize,
    /// Which repositories are shown, and in what order.
    view: StorageView,
}

/// Which repositories the storage names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageView {
    /// Where something happens (a deletion, a failure, an error), the
    /// largest deletion first: the summary's lines.
    Busy,
    /// Every repository, the most bytes (deleted and kept) first: which
    /// repositories hold the storage, the HTML page's bars.
    All,
}

/// One repository's share: what goes and what stays, in tags and bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryStorage {
    pub path: String,
    /// Repositories summed in (1 for one repository).
    pub repositories: usize,
    pub deleted: TagsAndBytes,
    pub kept: TagsAndBytes,
    /// Failed and skipped tags, and 1 for a repository that failed whole.
    pub trouble: usize,
}

impl RepositoryStorage {
    fn of(repository: &RepositoryReport) -> Self {
        let kept = TagsAndBytes {
            tags: repository.kept + repository.protected,
            bytes: repository
                .kept_tags
                .iter()
                .filter_map(|kept| kept.size_bytes)
                .sum(),
        };
        RepositoryStorage {
            path: repository.path.clone(),
            repositories: 1,
            deleted: TagsAndBytes {
                tags: repository.deleted.len(),
                bytes: repository.deleted_bytes(),
            },
            kept,
            trouble: repository.failed.len()
                + repository.skipped.len()
                + usize::from(repository.error.is_some()),
        }
    }

    fn busy(&self) -> bool {
        self.deleted.tags > 0 || self.trouble > 0
    }

    fn fold(&mut self, other: &RepositoryStorage) {
        self.repositories += other.repositories;
        self.deleted.tags += other.deleted.tags;
        self.deleted.bytes += other.deleted.bytes;
        self.kept.tags += other.kept.tags;
        self.kept.bytes += other.kept.bytes;
        self.trouble += other.trouble;
    }

    /// The deleted and the kept bytes (and tags).
    pub fn total(&self) -> TagsAndBytes {
        TagsAndBytes {
            tags: self.deleted.tags + self.kept.tags,
            bytes: self.deleted.bytes + self.kept.bytes,
        }
    }

    /// Largest first, as `view` measures; ties by path.
    fn order(
        view: StorageView,
        a: &RepositoryStorage,
        b: &RepositoryStorage,
    ) -> std::cmp::Ordering {
        let size = |storage: &RepositoryStorage| match view {
            StorageView::Busy => (storage.deleted.bytes, storage.deleted.tags, storage.trouble),
            StorageView::All => (
                storage.total().bytes,
                storage.deleted.tags,
                storage.total().tags,
            ),
        };
        size(b).cmp(&size(a)).then_with(|| a.path.cmp(&b.path))
    }
}

/// A tag's family, for choosing samples: its first word (up to the first
/// `-`, `.`, `_`) with each run of digits as `0`. `mr-12-abc` and `mr-7-x`
/// are one family (`mr`), `nightly-20261028` and `nightly-20261029`
/// another (`nightly`), `v1.4.2-rc.1` is `v0`.
#[cfg(test)]
fn family(tag: &str) -> String {
    let mut family = String::new();
    family_into(tag, &mut family);
    family
}

/// [`family`] into `out` (cleared first): a run counts a family per tag,
/// and reuses one buffer for it.
fn family_into(tag: &str, out: &mut String) {
    out.clear();
    for c in tag.chars().take_while(|c| !matches!(c, '-' | '.' | '_')) {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('0') {
            out.push('0');
        }
    }
}

/// The tag families a rule deletes most, counted as the tags stream past
/// with the Misra–Gries summary: at most [`FAMILIES`] counters, so memory
/// stays bounded however many families a group run has, and any family
/// holding more than 1/[`FAMILIES`] of the rule's tags is certain to be
/// among them. Each family keeps the first tag that came with it.
#[derive(Debug, Clone, Default)]
struct Families {
    counters: Vec<Family>,
    /// The family of the tag being offered.
    scratch: String,
}

/// Counters kept per rule.
const FAMILIES: usize = 16;

#[derive(Debug, Clone)]
struct Family {
    name: String,
    count: usize,
    /// `repository:tag`, the family's first tags (up to [`SAMPLES`]).
    samples: Vec<String>,
    /// When the family was first counted, for a stable order among equals.
    seen: usize,
}

impl Families {
    fn offer(&mut self, repository: &str, tag: &str, seen: usize) {
        family_into(tag, &mut self.scratch);
        let name = &self.scratch;
        if let Some(counter) = self.counters.iter_mut().find(|c| c.name == *name) {
            counter.count += 1;
            if counter.samples.len() < SAMPLES {
                counter.samples.push(format!("{repository}:{tag}"));
            }
            return;
        }
        if self.counters.len() < FAMILIES {
            self.counters.push(Family {
                name: name.clone(),
                count: 1,
                samples: vec![format!("{repository}:{tag}")],
                seen,
            });
            return;
        }
        // Full: this tag and one of every counted family cancel out.
        for counter in &mut self.counters {
            counter.count -= 1;
        }
        self.counters.retain(|counter| counter.count > 0);
    }

    /// [`SAMPLES`] tags: one of each of the largest families, then a
    /// second of each, … (a rule that deletes one family shows three of it).
    fn samples(&self) -> Vec<&str> {
        let mut largest: Vec<&Family> = self.counters.iter().collect();
        largest.sort_by(|a, b| b.count.cmp(&a.count).then(a.seen.cmp(&b.seen)));
        (0..SAMPLES)
            .flat_map(|round| {
                largest
                    .iter()
                    .filter_map(move |family| family.samples.get(round))
            })
            .take(SAMPLES)
            .map(String::as_str)
            .collect()
    }
}

impl Default for Breakdown {
    fn default() -> Self {
        Breakdown::new()
    }
}

impl Breakdown {
    /// For the summary: the [`STORAGE_LINES`] repositories that delete most.
    pub fn new() -> Self {
        Breakdown {
            families: BTreeMap::new(),
            kind_families: BTreeMap::new(),
            offered: 0,
            shown: Vec::new(),
            folded: RepositoryStorage::default(),
            limit: STORAGE_LINES,
            view: StorageView::Busy,
        }
    }

    /// For a page: the `limit` repositories that hold the most storage,
    /// whether anything happens there or not.
    pub fn holding_most(limit: usize) -> Self {
        Breakdown {
            limit,
            view: StorageView::All,
            ..Breakdown::new()
        }
    }

    /// Takes in one repository's samples and storage.
    pub fn add(&mut self, repository: &RepositoryReport) {
        // Runs of one rule (or kind) share one lookup: deletions come sorted
        // by name, and one rule often deletes most of a repository.
        let deleted = &repository.deleted;
        let mut start = 0;
        while start < deleted.len() {
            let rule = deleted[start].rule.as_deref();
            let end = start
                + deleted[start..]
                    .iter()
                    .take_while(|d| d.rule.as_deref() == rule)
                    .count();
            if let Some(rule) = rule {
                let families = match self.families.get_mut(rule) {
                    Some(families) => families,
                    None => self.families.entry(rule.to_string()).or_default(),
                };
                for tag in &deleted[start..end] {
                    families.offer(&repository.path, &tag.tag, self.offered);
                    self.offered += 1;
                }
            }
            start = end;
        }
        for kept in &repository.kept_tags {
            let families = match self.kind_families.get_mut(&kept.kind) {
                Some(families) => families,
                None => self.kind_families.entry(kept.kind.clone()).or_default(),
            };
            families.offer(&repository.path, &kept.tag, self.offered);
            self.offered += 1;
        }
        let storage = RepositoryStorage::of(repository);
        if self.view == StorageView::All || storage.busy() {
            self.shown.push(storage);
            if self.shown.len() >= 2 * self.limit.max(1) {
                let view = self.view;
                self.shown
                    .sort_by(|a, b| RepositoryStorage::order(view, a, b));
                for dropped in self.shown.split_off(self.limit) {
                    self.folded.fold(&dropped);
                }
            }
        }
    }

    /// A breakdown of every repository of `report`.
    pub fn of(report: &Report) -> Self {
        let mut breakdown = Breakdown::new();
        for repository in &report.repositories {
            breakdown.add(repository);
        }
        breakdown
    }

    /// Sample tags `rule` deletes (`repository:tag`): one of each of the
    /// tag families it deletes most, largest first.
    pub fn samples(&self, rule: &str) -> Vec<&str> {
        self.families
            .get(rule)
            .map(Families::samples)
            .unwrap_or_default()
    }

    /// Sample tags that stay for `kind` (`repository:tag`), as [`Breakdown::samples`].
    pub fn kind_samples(&self, kind: &str) -> Vec<&str> {
        self.kind_families
            .get(kind)
            .map(Families::samples)
            .unwrap_or_default()
    }

    /// The repositories shown (see [`Breakdown::new`], [`Breakdown::holding_most`]),
    /// largest first; then the others of them summed (`repositories` says
    /// how many), if any.
    pub fn storage(&self) -> (Vec<RepositoryStorage>, Option<RepositoryStorage>) {
        let mut busy = self.shown.clone();
        let view = self.view;
        busy.sort_by(|a, b| RepositoryStorage::order(view, a, b));
        let mut folded = self.folded.clone();
        for dropped in busy.split_off(busy.len().min(self.limit)) {
            folded.fold(&dropped);
        }
        let rest = (folded.repositories > 0).then(|| RepositoryStorage {
            path: format!(
                "{} more {}",
                folded.repositories,
                if folded.repositories == 1 {
                    "repository"
                } else {
                    "repositories"
                }
            ),
            ..folded
        });
        (busy, rest)
    }

    /// The block printed between the repository lines and the total:
    /// nothing when nothing was planned by rules (`delete`, the server
    /// engine's live run).
    pub fn lines(&self, report: &Report) -> Vec<String> {
        let totals = &report.totals;
        let verb = report.verb();
        let mut lines = Vec::new();
        if !totals.deleted_by_rule.is_empty() {
            lines.push(format!("{verb}, by rule:"));
            let mut rules: Vec<(&String, &TagsAndBytes)> = totals.deleted_by_rule.iter().collect();
            rules.sort_by(|a, b| b.1.tags.cmp(&a.1.tags).then_with(|| a.0.cmp(b.0)));
            for (rule, counted) in rules {
                let mut line = format!("  {rule:?}: {}", tags_and_bytes(counted));
                let samples = self.samples(rule);
                if !samples.is_empty() {
                    line.push_str(&format!(", e.g. {}", samples.join(", ")));
                }
                lines.push(line);
            }
        }
        if !totals.kept_by_kind.is_empty() {
            lines.push("kept or protected, by reason:".to_string());
            let mut kinds: Vec<(&String, &TagsAndBytes)> = totals.kept_by_kind.iter().collect();
            kinds.sort_by(|a, b| b.1.tags.cmp(&a.1.tags).then_with(|| a.0.cmp(b.0)));
            for (kind, counted) in kinds {
                lines.push(format!("  {kind}: {}", tags_and_bytes(counted)));
            }
        }
        // Where the bytes are: only worth lines when the listing gave sizes.
        if totals.deleted_bytes > 0 || totals.kept_bytes > 0 {
            let (busy, rest) = self.storage();
            if !busy.is_empty() {
                lines.push(format!(
                    "storage where something happens ({verb} | kept), largest first:"
                ));
                for storage in busy.iter().chain(&rest) {
                    lines.push(format!(
                        "  {}: {} | {}{}",
                        storage.path,
                        tags_and_bytes(&storage.deleted),
                        tags_and_bytes(&storage.kept),
                        if storage.trouble > 0 {
                            format!(" ({} failed or skipped)", storage.trouble)
                        } else {
                            String::new()
                        }
                    ));
                }
            }
        }
        lines
    }
}

/// "12 tags, 1.2 GiB", or "12 tags" when none had a size.
fn tags_and_bytes(counted: &TagsAndBytes) -> String {
    let tags = plural(counted.tags, "tag", "tags");
    if counted.bytes == 0 {
        tags
    } else {
        format!("{tags}, {}", human_bytes(counted.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::report::{DeletedTag, FailedTag, KeptTagEntry};

    fn deleted(tag: &str, rule: &str, size: Option<u64>) -> DeletedTag {
        DeletedTag {
            rule: Some(rule.into()),
            size_bytes: size,
            ..DeletedTag::named(tag)
        }
    }

    fn kept(tag: &str, kind: &str, size: Option<u64>) -> KeptTagEntry {
        KeptTagEntry {
            tag: tag.into(),
            kind: kind.into(),
            reason: format!("{kind} reason"),
            in_use: Vec::new(),
            digest: None,
            created_at: None,
            pushed_at: None,
            size_bytes: size,
        }
    }

    fn repository(
        path: &str,
        deleted: Vec<DeletedTag>,
        kept: Vec<KeptTagEntry>,
    ) -> RepositoryReport {
        let mut repository = RepositoryReport::new(path);
        repository.tags = deleted.len() + kept.len();
        repository.kept = kept.len();
        repository.deleted = deleted;
        repository.kept_tags = kept;
        repository
    }

    /// The issue-23 case: a branch rule whose pattern also claims the
    /// nightlies shows a nightly first, however the branches sort.
    #[test]
    fn samples_come_from_the_largest_families() {
        let mut report = Report::new("client", true);
        let mut tags: Vec<String> = (0..40)
            // Branch names of their own: "ba", "bb", … "cn".
            .map(|i| {
                format!(
                    "{}{}-0a1b2c{i:02x}",
                    (b'b' + i / 26) as char,
                    (b'a' + i % 26) as char
                )
            })
            .chain((1..=28).map(|day| format!("nightly-202610{day:02}")))
            .chain((1..=5).map(|i| format!("mr-{i}-0a1b2c3d")))
            .collect();
        tags.sort();
        let branches: Vec<DeletedTag> = tags
            .iter()
            .map(|tag| deleted(tag, "deleted branches", None))
            .collect();
        report.push(repository("g/p", branches, vec![]));
        let breakdown = Breakdown::of(&report);
        assert_eq!(
            breakdown.samples("deleted branches"),
            [
                "g/p:nightly-20261001",
                "g/p:mr-1-0a1b2c3d",
                "g/p:ci-0a1b2c22"
            ]
        );
        assert_eq!(family("nightly-20261027"), "nightly");
        assert_eq!(family("v1.2.3"), "v0");
        assert_eq!(family("build12x3"), "build0x0");
        assert_eq!(family("latest"), "latest");
    }

    #[test]
    fn samples_of_one_shape_are_the_first_ones() {
        let mut report = Report::new("client", true);
        let reviews = (1..=5)
            .map(|i| deleted(&format!("mr-{i}-x"), "review", Some(1024)))
            .collect();
        report.push(repository(
            "g/p/api",
            reviews,
            vec![kept("latest", "protected_latest", Some(2048))],
        ));
        let lines = Breakdown::of(&report).lines(&report);
        assert_eq!(
            lines,
            [
                "would delete, by rule:",
                "  \"review\": 5 tags, 5.0 KiB, e.g. g/p/api:mr-1-x, g/p/api:mr-2-x, g/p/api:mr-3-x",
                "kept or protected, by reason:",
                "  protected_latest: 1 tag, 2.0 KiB",
                "storage where something happens (would delete | kept), largest first:",
                "  g/p/api: 5 tags, 5.0 KiB | 1 tag, 2.0 KiB",
            ]
        );
    }

    #[test]
    fn storage_names_only_busy_repositories_and_sums_the_rest() {
        let mut report = Report::new("client", false);
        // 25 repositories deleting 1..=25 KiB, and 100 where nothing happens.
        for i in 1..=25u64 {
            report.push(repository(
                &format!("g/r{i:02}"),
                vec![deleted("old", "r", Some(i * 1024))],
                vec![kept("new", "keep_n", Some(1))],
            ));
        }
        for i in 0..100 {
            report.push(repository(
                &format!("g/quiet{i}"),
                vec![],
                vec![kept("a", "unclaimed", Some(1))],
            ));
        }
        let mut failed = repository("g/broken", vec![], vec![]);
        failed.failed.push(FailedTag {
            tag: "x".into(),
            error: "boom".into(),
        });
        report.push(failed);
        let lines = Breakdown::of(&report).lines(&report);
        let storage: Vec<&String> = lines
            .iter()
            .skip_while(|line| !line.starts_with("storage"))
            .skip(1)
            .collect();
        assert_eq!(storage.len(), STORAGE_LINES + 1, "{lines:#?}");
        assert_eq!(storage[0], "  g/r25: 1 tag, 25.0 KiB | 1 tag, 1 B");
        assert_eq!(storage[9], "  g/r16: 1 tag, 16.0 KiB | 1 tag, 1 B");
        // 15 more deleting 1..=15 KiB (120 KiB) and the failed one.
        assert_eq!(
            storage[10],
            "  16 more repositories: 15 tags, 120.0 KiB | 15 tags, 15 B (1 failed or skipped)"
        );
        assert!(lines.len() < 20, "{lines:#?}");
    }

    #[test]
    fn nothing_planned_by_rules_prints_nothing() {
        let mut report = Report::new("client", false);
        let mut repository = RepositoryReport::new("g/p");
        repository.deleted.push(DeletedTag {
            rule: None,
            ..deleted("v1", "unused", None)
        });
        report.push(repository);
        assert!(Breakdown::of(&report).lines(&report).is_empty());
    }
}
