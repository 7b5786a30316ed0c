//! The embedded store: one SQLite file (`--db PATH`), compiled in.
//!
//! Write-ahead log with `synchronous=FULL`: a batch is on disk when
//! [`Store::commit`] returns, so the 2xx the registry gets is a promise
//! that survives a crash. One connection, used on a blocking thread: SQLite
//! writes one transaction at a time anyway.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::names::RepositoryPath;
use crate::ledger::events::Event;
use crate::ledger::store::{
    digest_pulls, from_micros, to_micros, Committed, RepositoryRecord, Store, StoreError,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger_events (
    id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_repositories (
    repository TEXT PRIMARY KEY,
    first_event_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_pulls (
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    last_pulled_at INTEGER NOT NULL,
    pulls INTEGER NOT NULL,
    PRIMARY KEY (repository, digest)
) WITHOUT ROWID;
";

#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the ledger file at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let connection = Connection::open(path)?;
        // WAL: readers (`GET …/pulls`) do not wait for a writer. FULL: a
        // committed batch survives a power cut, which the 2xx promises.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` with the connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction
            // half-applied (it rolls back on drop): the connection is fine.
            let mut connection = connection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&mut connection)
        })
        .await
        .map_err(|err| StoreError::Other(format!("the SQLite worker stopped: {err}")))?
    }
}

fn commit(
    connection: &mut Connection,
    events: &[Event],
    received_at: DateTime<Utc>,
) -> Result<Committed, StoreError> {
    let transaction = connection.transaction()?;
    let mut committed = Committed::default();
    {
        let mut remember = transaction.prepare_cached(
            "INSERT INTO ledger_events (id, received_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
        )?;
        let mut watch = transaction.prepare_cached(
            "INSERT INTO ledger_repositories (repository, first_event_at) VALUES (?1, ?2)
             ON CONFLICT (repository) DO UPDATE SET first_event_at = min(first_event_at, excluded.first_event_at)",
        )?;
        let mut pull = transaction.prepare_cached(
            "INSERT INTO ledger_pulls (repository, digest, last_pulled_at, pulls) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (repository, digest) DO UPDATE SET
                 last_pulled_at = max(last_pulled_at, excluded.last_pulled_at),
                 pulls = pulls + 1",
        )?;
        let received = to_micros(received_at);
        for event in events {
            if remember.execute(params![event.id, received])? == 0 {
                committed.replayed += 1;
                continue;
            }
            committed.new += 1;
            let at = to_micros(event.at);
            watch.execute(params![event.repository.as_str(), at])?;
            if let Some(digest) = &event.pulled {
                pull.execute(params![event.repository.as_str(), digest.as_str(), at])?;
            }
        }
    }
    transaction.commit()?;
    Ok(committed)
}

fn read(connection: &mut Connection, repository: &str) -> Result<RepositoryRecord, StoreError> {
    let first: Option<i64> = connection
        .prepare_cached("SELECT first_event_at FROM ledger_repositories WHERE repository = ?1")?
        .query_row(params![repository], |row| row.get(0))
        .optional()?;
    let watched_since = match first {
        Some(micros) => Some(from_micros(micros).ok_or_else(|| {
            StoreError::Other(format!("{repository}: stored time {micros} out of range"))
        })?),
        None => None,
    };
    let mut statement = connection.prepare_cached(
        "SELECT digest, last_pulled_at, pulls FROM ledger_pulls WHERE repository = ?1 ORDER BY digest",
    )?;
    let rows = statement.query_map(params![repository], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    let mut pulls = Vec::new();
    for row in rows {
        let (digest, last, count) = row?;
        pulls.push(digest_pulls(&digest, last, count)?);
    }
    Ok(RepositoryRecord {
        watched_since,
        pulls,
    })
}

impl Store for SqliteStore {
    async fn commit(
        &self,
        events: Vec<Event>,
        received_at: DateTime<Utc>,
    ) -> Result<Committed, StoreError> {
        self.with(move |connection| commit(connection, &events, received_at))
            .await
    }

    async fn repository(
        &self,
        repository: &RepositoryPath,
    ) -> Result<RepositoryRecord, StoreError> {
        let repository = repository.as_str().to_string();
        self.with(move |connection| read(connection, &repository))
            .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.with(|connection| {
            connection.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn forget_events_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.with(move |connection| {
            let forgotten = connection.execute(
                "DELETE FROM ledger_events WHERE received_at < ?1",
                params![to_micros(before)],
            )?;
            Ok(forgotten as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_store_contract() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("ledger.db")).expect("open");
        crate::ledger::store::contract::holds(&store).await;
    }

    #[tokio::test]
    async fn what_was_committed_is_there_after_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ledger.db");
        let event = Event {
            id: "one".into(),
            at: "2026-12-01T00:00:00Z".parse().expect("time"),
            repository: RepositoryPath::parse("g/p").expect("path"),
            pulled: Some(crate::domain::names::Digest::of(b"x")),
        };
        let now = "2026-12-07T00:00:00Z".parse().expect("time");
        SqliteStore::open(&path)
            .expect("open")
            .commit(vec![event.clone()], now)
            .await
            .expect("commit");
        let store = SqliteStore::open(&path).expect("reopen");
        let record = store.repository(&event.repository).await.expect("read");
        assert_eq!(record.pulls.len(), 1);
        let replay = store.commit(vec![event], now).await.expect("replay");
        assert_eq!(replay.replayed, 1);
    }
}
