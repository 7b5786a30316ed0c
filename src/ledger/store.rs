//! Where the ledger keeps what it was told: per repository, its first event
//! (since when it is watched); per repository and manifest digest, the last
//! pull and how many; and every event id it stored, so that a batch the
//! registry sends again changes nothing ([`Store::commit`] is idempotent).
//!
//! Two implementations share one schema: SQLite (`--db PATH`, embedded, the
//! default) and PostgreSQL (`--db postgres://…`, for replicas sharing one
//! ledger). Times are stored as microseconds since the Unix epoch.
//!
//! ```sql
//! ledger_events       (id TEXT PRIMARY KEY, received_at BIGINT)
//! ledger_repositories (repository TEXT PRIMARY KEY, first_event_at BIGINT)
//! ledger_pulls        (repository TEXT, digest TEXT, last_pulled_at BIGINT,
//!                      pulls BIGINT, PRIMARY KEY (repository, digest))
//! ```

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::names::{Digest, RepositoryPath};
use crate::ledger::events::Event;

/// What one committed batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Events stored for the first time.
    pub new: usize,
    /// Events whose id was already stored: left alone.
    pub replayed: usize,
}

/// One digest's pulls in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestPulls {
    pub digest: Digest,
    pub last_pulled_at: DateTime<Utc>,
    pub pulls: u64,
}

/// What the ledger knows of one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryRecord {
    /// Its first event (`None`: the ledger has seen none).
    pub watched_since: Option<DateTime<Utc>>,
    /// Sorted by digest.
    pub pulls: Vec<DigestPulls>,
}

/// Why the store failed. The registry is told to send the batch again
/// (503): nothing of it was committed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Other(String),
}

impl crate::domain::exit::ExitCode for StoreError {
    fn exit_code(&self) -> crate::domain::exit::Exit {
        crate::domain::exit::Exit::Failed
    }
}

/// A ledger's storage.
pub trait Store: Send + Sync + 'static {
    /// Stores a batch in one transaction: all of it or nothing. An event
    /// whose id is stored already changes nothing (the registry redelivers
    /// a batch whose answer it did not get).
    fn commit(
        &self,
        events: Vec<Event>,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Committed, StoreError>> + Send;

    /// What the ledger knows of `repository`.
    fn repository(
        &self,
        repository: &RepositoryPath,
    ) -> impl Future<Output = Result<RepositoryRecord, StoreError>> + Send;

    /// Whether the store answers (for `GET /healthz`).
    fn check(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the ids of events received before `before`; returns how
    /// many. A registry resends a batch for hours at most (while it holds
    /// it in memory), so ids older than [`EVENT_ID_RETENTION`] only grow
    /// the store; a batch resent after that would count its pulls twice,
    /// and change nothing else (last pulls and first events are maxima and
    /// minima).
    fn forget_events_before(
        &self,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// How long event ids are kept for idempotence.
pub const EVENT_ID_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// A store shared (a benchmark measuring one store over HTTP and alone).
impl<S: Store> Store for std::sync::Arc<S> {
    fn commit(
        &self,
        events: Vec<Event>,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Committed, StoreError>> + Send {
        S::commit(self, events, received_at)
    }

    fn repository(
        &self,
        repository: &RepositoryPath,
    ) -> impl Future<Output = Result<RepositoryRecord, StoreError>> + Send {
        S::repository(self, repository)
    }

    fn check(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::check(self)
    }

    fn forget_events_before(
        &self,
        before: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        S::forget_events_before(self, before)
    }
}

/// A time as stored: microseconds since the Unix epoch.
pub fn to_micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// A stored time; `None` for a value no `DateTime` can hold (a store
/// edited by hand).
pub fn from_micros(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}

/// A stored digest row back into its parts; a row that is not valid (a
/// store edited by hand) is an error naming it.
pub fn digest_pulls(digest: &str, last: i64, pulls: i64) -> Result<DigestPulls, StoreError> {
    let digest = Digest::parse(digest)
        .map_err(|err| StoreError::Other(format!("a stored digest is not valid: {err}")))?;
    let last_pulled_at = from_micros(last)
        .ok_or_else(|| StoreError::Other(format!("{digest}: stored time {last} out of range")))?;
    Ok(DigestPulls {
        digest,
        last_pulled_at,
        pulls: u64::try_from(pulls).unwrap_or(0),
    })
}

#[cfg(test)]
pub mod contract {
    //! What every store must do, run against each implementation.

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("test time")
    }

    fn pull(id: &str, when: &str, repository: &str, digest: &Digest) -> Event {
        Event {
            id: id.to_string(),
            at: at(when),
            repository: RepositoryPath::parse(repository).expect("path"),
            pulled: Some(digest.clone()),
        }
    }

    pub async fn holds(store: &impl Store) {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let app = RepositoryPath::parse("g/p/app").expect("path");
        let received = at("2026-12-07T12:00:00Z");
        assert_eq!(
            store.repository(&app).await.expect("empty"),
            RepositoryRecord::default()
        );
        let batch = vec![
            pull("1", "2026-12-01T00:00:00Z", "g/p/app", &a),
            pull("2", "2026-12-03T00:00:00Z", "g/p/app", &a),
            // Out of order: the last pull is the latest time, not the last event.
            pull("3", "2026-12-02T00:00:00Z", "g/p/app", &a),
            Event {
                id: "4".into(),
                at: at("2026-11-30T00:00:00.5Z"),
                repository: app.clone(),
                pulled: None,
            },
            pull("5", "2026-12-05T00:00:00Z", "g/p/other", &b),
            // The same id twice in one batch counts once.
            pull("5", "2026-12-05T00:00:00Z", "g/p/other", &b),
        ];
        let committed = store.commit(batch.clone(), received).await.expect("commit");
        assert_eq!(
            committed,
            Committed {
                new: 5,
                replayed: 1
            }
        );
        let expected = RepositoryRecord {
            watched_since: Some(at("2026-11-30T00:00:00.5Z")),
            pulls: vec![DigestPulls {
                digest: a.clone(),
                last_pulled_at: at("2026-12-03T00:00:00Z"),
                pulls: 3,
            }],
        };
        assert_eq!(store.repository(&app).await.expect("read"), expected);
        // Replayed: nothing changes.
        let committed = store.commit(batch, received).await.expect("replay");
        assert_eq!(
            committed,
            Committed {
                new: 0,
                replayed: 6
            }
        );
        assert_eq!(store.repository(&app).await.expect("read"), expected);
        // A new event moves what it should.
        store
            .commit(
                vec![pull("6", "2026-11-01T00:00:00Z", "g/p/app", &b)],
                received,
            )
            .await
            .expect("commit");
        let record = store.repository(&app).await.expect("read");
        assert_eq!(record.watched_since, Some(at("2026-11-01T00:00:00Z")));
        assert_eq!(record.pulls.len(), 2);
        store.check().await.expect("healthy");
        // Ids received before the cut are forgotten; those after, kept.
        let later = at("2026-12-08T12:00:00Z");
        store
            .commit(
                vec![pull("7", "2026-12-08T00:00:00Z", "g/p/app", &b)],
                later,
            )
            .await
            .expect("commit");
        assert_eq!(store.forget_events_before(later).await.expect("forget"), 6);
        let replay = store
            .commit(
                vec![
                    pull("7", "2026-12-08T00:00:00Z", "g/p/app", &b),
                    pull("1", "2026-12-01T00:00:00Z", "g/p/app", &a),
                ],
                later,
            )
            .await
            .expect("commit");
        assert_eq!(
            replay,
            Committed {
                new: 1,
                replayed: 1
            }
        );
    }
}
