//! The pull ledger's ingest benchmark (scripts/ledger-bench.sh): how many
//! registry events a second `ledger serve` commits, and how long a batch
//! takes to commit, on SQLite and on PostgreSQL.
//!
//! The service runs in this process on loopback (the same router and store
//! as `registry-cleanup ledger serve`); `SENDERS` clients post
//! Distribution-shaped envelopes of `--batch` pull events each (a registry
//! sends one event per request; bursts and several registry replicas
//! send more at once), 5 % of them redelivered. It prints, per store and
//! batch size: events per second over HTTP (each answered only once
//! committed), the 50th/99th-percentile answer time, and the
//! 50th/99th-percentile time of the store's commit alone (the same
//! batches, one at a time, no HTTP). Numbers are reported, never asserted.
//!
//!   ledger [--quick] [--postgres URL]

use std::time::{Duration, Instant};

use registry_cleanup::domain::names::{Digest, RepositoryPath};
use registry_cleanup::ledger::events::{Event, Filter};
use registry_cleanup::ledger::postgres::PostgresStore;
use registry_cleanup::ledger::server::{router, serve, ServiceOptions};
use registry_cleanup::ledger::sqlite::SqliteStore;
use registry_cleanup::ledger::store::Store;
use registry_cleanup::wire::secret::Secret;
use serde_json::json;

const TOKEN: &str = "benchmark-token-0123456789abcdef";
const SENDERS: usize = 4;
const REPOSITORIES: u64 = 100;
const DIGESTS_PER_REPOSITORY: u64 = 1_000;

/// A deterministic stream of pull events (xorshift), a 20th of them
/// repeating an earlier id, as a redelivery does.
struct Workload {
    state: u64,
    next_id: u64,
}

impl Workload {
    fn new(seed: u64) -> Workload {
        Workload {
            state: seed | 1,
            next_id: 0,
        }
    }

    fn random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// (id, repository, digest, seconds ago)
    fn event(&mut self, prefix: &str) -> (String, String, String, i64) {
        let replay = self.next_id > 20 && self.random().is_multiple_of(20);
        let id = if replay {
            self.random() % self.next_id
        } else {
            self.next_id += 1;
            self.next_id
        };
        let repository = format!("bench/project/service-{}", self.random() % REPOSITORIES);
        let digest = format!(
            "sha256:{:064x}",
            self.random() % (REPOSITORIES * DIGESTS_PER_REPOSITORY)
        );
        let ago = (self.random() % (200 * 86_400)) as i64;
        (format!("{prefix}-{id}"), repository, digest, ago)
    }

    fn envelope(&mut self, prefix: &str, batch: usize) -> String {
        let now = chrono::Utc::now();
        let events: Vec<serde_json::Value> = (0..batch)
            .map(|_| {
                let (id, repository, digest, ago) = self.event(prefix);
                json!({
                    "id": id,
                    "timestamp": (now - chrono::Duration::seconds(ago)).to_rfc3339(),
                    "action": "pull",
                    "target": {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "size": 525,
                        "digest": digest,
                        "length": 525,
                        "repository": repository,
                        "url": format!("http://registry:5000/v2/{repository}/manifests/{digest}"),
                        "tag": "v1"
                    },
                    "request": {"id": "r", "addr": "10.0.0.1:1234", "host": "registry", "method": "GET", "useragent": "docker/27.3.1 go/go1.22.7"},
                    "actor": {},
                    "source": {"addr": "registry:5000", "instanceID": "bench"}
                })
            })
            .collect();
        json!({ "events": events }).to_string()
    }

    fn events(&mut self, prefix: &str, batch: usize) -> Vec<Event> {
        let now = chrono::Utc::now();
        (0..batch)
            .map(|_| {
                let (id, repository, digest, ago) = self.event(prefix);
                Event {
                    id,
                    at: now - chrono::Duration::seconds(ago),
                    repository: RepositoryPath::parse(&repository).expect("path"),
                    pulled: Some(Digest::parse(&digest).expect("digest")),
                }
            })
            .collect()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// Events posted over HTTP by `SENDERS` clients at once: (events per
/// second, sorted answer times).
async fn over_http<S: Store + Clone>(
    store: S,
    run: &str,
    events: usize,
    batch: usize,
) -> (f64, Vec<Duration>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = router(
        store,
        ServiceOptions {
            token: Secret::new(TOKEN),
            filter: Filter::default(),
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let url = format!("http://{address}/events");
    let per_sender = events / batch / SENDERS;
    let started = Instant::now();
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let (client, url) = (client.clone(), url.clone());
        let prefix = format!("{run}-http-{sender}");
        senders.push(tokio::spawn(async move {
            let mut workload = Workload::new(0x9e37_79b9 + sender as u64);
            let mut times = Vec::with_capacity(per_sender);
            for _ in 0..per_sender {
                let body = workload.envelope(&prefix, batch);
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header(
                        "Content-Type",
                        "application/vnd.docker.distribution.events.v1+json",
                    )
                    .body(body)
                    .send()
                    .await
                    .expect("POST /events");
                assert_eq!(response.status(), 200, "the ledger refused a batch");
                times.push(sent.elapsed());
            }
            times
        }));
    }
    let mut times = Vec::new();
    for sender in senders {
        times.extend(sender.await.expect("sender"));
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    let _ = server.await;
    times.sort();
    let sent = (per_sender * SENDERS * batch) as f64;
    (sent / elapsed.as_secs_f64(), times)
}

/// The same kind of batches committed straight to the store, one at a time.
async fn store_alone<S: Store>(store: &S, run: &str, events: usize, batch: usize) -> Vec<Duration> {
    let mut workload = Workload::new(0x1234_5678);
    let mut times = Vec::with_capacity(events / batch);
    for _ in 0..events / batch {
        let batch = workload.events(&format!("{run}-store"), batch);
        let started = Instant::now();
        store
            .commit(batch, chrono::Utc::now())
            .await
            .expect("commit");
        times.push(started.elapsed());
    }
    times.sort();
    times
}

async fn measure<S: Store + Clone>(name: &str, store: S, run: &str, events: usize) {
    for batch in [1usize, 50] {
        let run = format!("{run}-b{batch}");
        let (rate, http) = over_http(store.clone(), &run, events, batch).await;
        let alone = store_alone(&store, &run, events / 2, batch).await;
        println!(
            "| {name} | {batch} | {} | {rate:.0} | {} | {} | {} | {} |",
            http.len() * batch,
            ms(percentile(&http, 50.0)),
            ms(percentile(&http, 99.0)),
            ms(percentile(&alone, 50.0)),
            ms(percentile(&alone, 99.0)),
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut quick = false;
    let mut postgres = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--postgres" => postgres = args.next(),
            other => {
                eprintln!("usage: ledger [--quick] [--postgres URL] (unknown {other:?})");
                std::process::exit(2);
            }
        }
    }
    let events = if quick { 2_000 } else { 20_000 };
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    println!("pull ledger ingest: {SENDERS} senders at once, pull events over {REPOSITORIES} repositories x {DIGESTS_PER_REPOSITORY} digests, 5 % redelivered");
    println!();
    println!("| store | events per batch | events | events/s (HTTP, committed) | answer p50 | answer p99 | commit p50 (store alone) | commit p99 (store alone) |");
    println!("|---|---|---|---|---|---|---|---|");
    let dir = std::env::temp_dir().join(format!("ledger-bench-{run}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sqlite = SqliteStore::open(&dir.join("ledger.db")).expect("SQLite");
    measure("SQLite (WAL, synchronous=FULL)", sqlite, &run, events).await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(url) = postgres {
        let schema = format!("ledger_bench_{run}");
        let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL");
        tokio::spawn(connection);
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("schema");
        let separator = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{separator}options=-csearch_path%3D{schema}");
        let store = PostgresStore::connect(&scoped)
            .await
            .expect("PostgreSQL store");
        measure("PostgreSQL", std::sync::Arc::new(store), &run, events).await;
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop schema");
    }
}
