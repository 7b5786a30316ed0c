//! The shared store: PostgreSQL (`--db postgres://…`), for a ledger that
//! several replicas serve. Spoken to in Rust (`tokio-postgres`), without
//! libpq, and without TLS: run the ledger next to the database (loopback,
//! a Unix socket, a sidecar) or behind a tunnel.
//!
//! A batch is one statement: the event ids go in first (`ON CONFLICT DO
//! NOTHING`), and only the events whose id went in move the repository and
//! pull rows, so two replicas given the same redelivered batch count it
//! once. One statement is one transaction, and one round trip.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls};

use crate::domain::names::RepositoryPath;
use crate::ledger::events::Event;
use crate::ledger::store::{
    digest_pulls, from_micros, to_micros, Committed, RepositoryRecord, Store, StoreError,
};

/// Connections kept open: batches commit side by side on them.
const CONNECTIONS: usize = 4;

/// Any constant: replicas starting together create the tables one at a time.
const SCHEMA_LOCK: i64 = 0x6c65_6467_6572; // "ledger"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger_events (
    id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_repositories (
    repository TEXT PRIMARY KEY,
    first_event_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_pulls (
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    last_pulled_at BIGINT NOT NULL,
    pulls BIGINT NOT NULL,
    PRIMARY KEY (repository, digest)
);
";

/// The batch, as arrays: ids, repositories, times, digests (NULL: not a
/// counted pull); `$5` the time it was received. Returns the new events.
const COMMIT: &str = "
WITH incoming AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS e(id, repository, at, digest)
), fresh AS (
    INSERT INTO ledger_events (id, received_at)
    SELECT DISTINCT id, $5::bigint FROM incoming ORDER BY id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), new_events AS (
    SELECT DISTINCT ON (incoming.id) incoming.*
    FROM incoming JOIN fresh ON fresh.id = incoming.id
    ORDER BY incoming.id
), watched AS (
    INSERT INTO ledger_repositories (repository, first_event_at)
    SELECT repository, min(at) FROM new_events GROUP BY repository ORDER BY repository
    ON CONFLICT (repository) DO UPDATE
        SET first_event_at = LEAST(ledger_repositories.first_event_at, excluded.first_event_at)
), pulled AS (
    INSERT INTO ledger_pulls (repository, digest, last_pulled_at, pulls)
    SELECT repository, digest, max(at), count(*) FROM new_events
    WHERE digest IS NOT NULL GROUP BY repository, digest ORDER BY repository, digest
    ON CONFLICT (repository, digest) DO UPDATE SET
        last_pulled_at = GREATEST(ledger_pulls.last_pulled_at, excluded.last_pulled_at),
        pulls = ledger_pulls.pulls + excluded.pulls
)
SELECT count(*) FROM new_events";

pub struct PostgresStore {
    config: Config,
    connections: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`)
    /// and creates the tables if they are missing. The error never shows
    /// the password.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let config = Config::from_str(url).map_err(|err| {
            StoreError::Other(format!(
                "--db is not a PostgreSQL URL (postgres://user:password@host:port/database): {err}"
            ))
        })?;
        let store = PostgresStore {
            config,
            connections: (0..CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        };
        let mut slot = store.connections[0].lock().await;
        let client = store.client(&mut slot).await?;
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL client_min_messages = warning; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {SCHEMA} COMMIT;"
            ))
            .await?;
        drop(slot);
        Ok(store)
    }

    /// The connection in `slot`, opened (again) if it is not open: a
    /// database restart costs the batches in flight, not the ledger.
    async fn client<'a>(&self, slot: &'a mut Option<Client>) -> Result<&'a Client, StoreError> {
        if slot.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = self.config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::warn!(error = %err, "the PostgreSQL connection ended");
                }
            });
            *slot = Some(client);
        }
        slot.as_ref()
            .ok_or_else(|| StoreError::Other("no PostgreSQL connection".to_string()))
    }

    /// The next connection, in turn.
    fn slot(&self) -> &Mutex<Option<Client>> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        &self.connections[index]
    }
}

impl Store for PostgresStore {
    async fn commit(
        &self,
        events: Vec<Event>,
        received_at: DateTime<Utc>,
    ) -> Result<Committed, StoreError> {
        if events.is_empty() {
            return Ok(Committed::default());
        }
        let total = events.len();
        let mut ids = Vec::with_capacity(total);
        let mut repositories = Vec::with_capacity(total);
        let mut times = Vec::with_capacity(total);
        let mut digests: Vec<Option<String>> = Vec::with_capacity(total);
        for event in events {
            ids.push(event.id);
            repositories.push(event.repository.as_str().to_string());
            times.push(to_micros(event.at));
            digests.push(event.pulled.map(String::from));
        }
        let mut slot = self.slot().lock().await;
        let client = self.client(&mut slot).await?;
        let row = client
            .query_one(
                COMMIT,
                &[
                    &ids,
                    &repositories,
                    &times,
                    &digests,
                    &to_micros(received_at),
                ],
            )
            .await?;
        let new = usize::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        Ok(Committed {
            new,
            replayed: total - new.min(total),
        })
    }

    async fn repository(
        &self,
        repository: &RepositoryPath,
    ) -> Result<RepositoryRecord, StoreError> {
        let mut slot = self.slot().lock().await;
        let client = self.client(&mut slot).await?;
        let first = client
            .query_opt(
                "SELECT first_event_at FROM ledger_repositories WHERE repository = $1",
                &[&repository.as_str()],
            )
            .await?;
        let watched_since = match first {
            Some(row) => {
                let micros: i64 = row.get(0);
                Some(from_micros(micros).ok_or_else(|| {
                    StoreError::Other(format!("{repository}: stored time {micros} out of range"))
                })?)
            }
            None => None,
        };
        let rows = client
            .query(
                "SELECT digest, last_pulled_at, pulls FROM ledger_pulls WHERE repository = $1 ORDER BY digest",
                &[&repository.as_str()],
            )
            .await?;
        let mut pulls = Vec::with_capacity(rows.len());
        for row in rows {
            pulls.push(digest_pulls(row.get(0), row.get(1), row.get(2))?);
        }
        Ok(RepositoryRecord {
            watched_since,
            pulls,
        })
    }

    async fn check(&self) -> Result<(), StoreError> {
        let mut slot = self.slot().lock().await;
        let client = self.client(&mut slot).await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn forget_events_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut slot = self.slot().lock().await;
        let client = self.client(&mut slot).await?;
        Ok(client
            .execute(
                "DELETE FROM ledger_events WHERE received_at < $1",
                &[&to_micros(before)],
            )
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the server `.ci/run` starts (scripts/ledger-test.sh):
    /// `LEDGER_TEST_POSTGRES=postgres://…`. Each run uses a fresh schema.
    #[tokio::test]
    #[ignore = "needs PostgreSQL: LEDGER_TEST_POSTGRES=postgres://… (scripts/ledger-test.sh)"]
    async fn keeps_the_store_contract() {
        let Ok(url) = std::env::var("LEDGER_TEST_POSTGRES") else {
            panic!("set LEDGER_TEST_POSTGRES to a PostgreSQL URL");
        };
        let schema = format!("ledger_test_{}", std::process::id());
        let (admin, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
        tokio::spawn(connection);
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .expect("schema");
        let separator = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{separator}options=-csearch_path%3D{schema}");
        let store = PostgresStore::connect(&scoped).await.expect("connect");
        crate::ledger::store::contract::holds(&store).await;
        // Opening again (another replica) finds the tables and the data.
        let again = PostgresStore::connect(&scoped).await.expect("reconnect");
        let record = again
            .repository(&RepositoryPath::parse("g/p/app").expect("path"))
            .await
            .expect("read");
        assert_eq!(record.pulls.len(), 2);
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop");
    }
}
