//! The pull ledger as the planner sees it, for rules with `unpulled_for`
//! (docs/ledger.md): per repository, whether the ledger could be read and
//! since when it has watched the repository ([`LedgerView`]); per tag, the
//! last pull of its manifest or of any manifest its index lists
//! ([`crate::domain::model::Tag::last_pulled_at`], set by
//! [`RepositoryPulls::apply`]).
//!
//! Both are recorded in the inventory (`ledger_watched_since`,
//! `ledger_error`, `last_pulled_at`), so `plan` decides offline exactly as
//! a run did.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::domain::model::Tag;
use crate::domain::names::Digest;

/// What the pull ledger says about one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LedgerView {
    /// No ledger was read: `run` or `inventory` without `--ledger`, or an
    /// inventory written without it. Rules with `unpulled_for` delete
    /// nothing, and the plan says why.
    #[default]
    NotRead,
    /// The ledger was asked and could not answer (the reason): rules with
    /// `unpulled_for` delete nothing here (fail safe, as with refs).
    Unreadable(String),
    /// The ledger answered. `watched_since`: the first event it received
    /// for the repository; `None` when it has seen none yet (then it has
    /// watched the repository for no time at all).
    Read {
        watched_since: Option<DateTime<Utc>>,
    },
}

impl LedgerView {
    /// Why rules with `unpulled_for` can decide nothing, if they cannot.
    pub fn unusable(&self) -> Option<String> {
        match self {
            LedgerView::NotRead => Some(
                "the pull ledger was not read (give --ledger URL to run or inventory)".to_string(),
            ),
            LedgerView::Unreadable(why) => {
                Some(format!("the pull ledger could not be read: {why}"))
            }
            LedgerView::Read { .. } => None,
        }
    }

    /// The view an inventory records: `ledger_error` wins, then
    /// `ledger_watched_since` (`Some(None)`: read, no event of the
    /// repository yet), else no ledger was read.
    pub fn from_recorded(
        error: Option<&str>,
        watched_since: Option<Option<DateTime<Utc>>>,
    ) -> LedgerView {
        match (error, watched_since) {
            (Some(why), _) => LedgerView::Unreadable(why.to_string()),
            (None, Some(watched_since)) => LedgerView::Read { watched_since },
            (None, None) => LedgerView::NotRead,
        }
    }
}

/// One repository's pulls as the ledger answered: the last pull of each
/// manifest digest it saw pulled, and its first event of the repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryPulls {
    pub watched_since: Option<DateTime<Utc>>,
    pub last_pulls: HashMap<Digest, DateTime<Utc>>,
}

impl RepositoryPulls {
    /// Sets each tag's `last_pulled_at`: the latest pull of its manifest
    /// or, for an image index, of any manifest it lists — pulling one
    /// platform of a multi-arch image by digest pulls that child only, and
    /// the image is still in use. Returns the repository's view.
    pub fn apply(&self, tags: &mut [Tag]) -> LedgerView {
        for tag in tags.iter_mut() {
            tag.last_pulled_at = tag
                .digest
                .iter()
                .chain(&tag.children)
                .filter_map(|digest| self.last_pulls.get(digest).copied())
                .max();
        }
        LedgerView::Read {
            watched_since: self.watched_since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::names::TagName;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("test time")
    }

    #[test]
    fn an_index_counts_the_pulls_of_the_manifests_it_lists() {
        let (index, amd, arm, other) = (
            Digest::of(b"index"),
            Digest::of(b"amd"),
            Digest::of(b"arm"),
            Digest::of(b"other"),
        );
        let mut multi = Tag::named(TagName::parse("multi").expect("name"));
        multi.digest = Some(index.clone());
        multi.children = vec![amd.clone(), arm.clone()];
        let mut single = Tag::named(TagName::parse("single").expect("name"));
        single.digest = Some(other.clone());
        let no_digest = Tag::named(TagName::parse("bare").expect("name"));
        let pulls = RepositoryPulls {
            watched_since: Some(at("2026-01-01T00:00:00Z")),
            last_pulls: HashMap::from([
                (index, at("2026-02-01T00:00:00Z")),
                (arm, at("2026-03-01T00:00:00Z")),
            ]),
        };
        let mut tags = vec![multi, single, no_digest];
        let view = pulls.apply(&mut tags);
        assert_eq!(tags[0].last_pulled_at, Some(at("2026-03-01T00:00:00Z")));
        assert_eq!(tags[1].last_pulled_at, None);
        assert_eq!(tags[2].last_pulled_at, None);
        assert_eq!(
            view,
            LedgerView::Read {
                watched_since: Some(at("2026-01-01T00:00:00Z"))
            }
        );
    }

    #[test]
    fn the_recorded_view_prefers_the_error() {
        let since = Some(at("2026-01-01T00:00:00Z"));
        assert_eq!(
            LedgerView::from_recorded(Some("down"), Some(since)),
            LedgerView::Unreadable("down".into())
        );
        assert_eq!(
            LedgerView::from_recorded(None, Some(None)),
            LedgerView::Read {
                watched_since: None
            }
        );
        assert_eq!(LedgerView::from_recorded(None, None), LedgerView::NotRead);
        assert!(LedgerView::NotRead.unusable().is_some());
        assert!(LedgerView::Read {
            watched_since: since
        }
        .unusable()
        .is_none());
    }
}
