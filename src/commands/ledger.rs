//! `registry-cleanup ledger serve`: the pull ledger's service, until SIGTERM
//! or SIGINT (docs/ledger.md). It opens the store, binds the address, says
//! where it listens on stdout, and serves; on a signal it stops accepting,
//! lets the requests in flight finish (a batch being committed is committed
//! and answered) and exits 0.

use crate::commands::exit::{CommandResult, Context as _, Failure};
use crate::config::ledger::{LedgerDb, LedgerServeOptions};
use crate::domain::exit::Exit;
use crate::ledger::events::Filter;
use crate::ledger::postgres::PostgresStore;
use crate::ledger::server::{self, ServiceOptions};
use crate::ledger::sqlite::SqliteStore;
use crate::ledger::store::{Store, EVENT_ID_RETENTION};

pub async fn serve(options: LedgerServeOptions) -> CommandResult {
    let mut filter = Filter::default();
    filter
        .ignored_user_agents
        .extend(options.ignored_user_agents.iter().cloned());
    let service = ServiceOptions {
        token: options.token.clone(),
        filter,
    };
    match &options.db {
        LedgerDb::Sqlite(path) => {
            let store = SqliteStore::open(path)
                .with_context(|| format!("opening the SQLite ledger {}", path.display()))?;
            listen(
                store,
                &options,
                service,
                &format!("SQLite {}", path.display()),
            )
            .await
        }
        LedgerDb::Postgres(url) => {
            let store = PostgresStore::connect(url.expose())
                .await
                .context("connecting to the PostgreSQL ledger (--db / CLEANUP_LEDGER_DB)")?;
            listen(store, &options, service, "PostgreSQL").await
        }
    }
}

async fn listen(
    store: impl Store,
    options: &LedgerServeOptions,
    service: ServiceOptions,
    store_name: &str,
) -> CommandResult {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|err| {
            Failure::new(
                Exit::Usage,
                format!(
                    "cannot listen on {} ({err}): choose another --listen (CLEANUP_LEDGER_LISTEN)",
                    options.listen
                ),
            )
        })?;
    let address = listener.local_addr()?;
    tracing::info!(
        address = %address,
        store = store_name,
        ignored_user_agents = ?service.filter.ignored_user_agents,
        "the pull ledger is listening"
    );
    // On stdout, so a script (or a test given port 0) learns the address.
    println!("ledger: listening on http://{address} (store: {store_name})");
    let store = std::sync::Arc::new(store);
    let pruning = tokio::spawn(forget_old_event_ids(std::sync::Arc::clone(&store)));
    let router = server::router(store, service);
    server::serve(listener, router, stop_signal())
        .await
        .context("serving the pull ledger")?;
    pruning.abort();
    tracing::info!("the pull ledger stopped");
    Ok(Exit::Success)
}

/// Once an hour (and at start), the event ids older than
/// [`EVENT_ID_RETENTION`] are forgotten: the store then grows with the
/// images pulled, not with every pull.
async fn forget_old_event_ids(store: std::sync::Arc<impl Store>) {
    let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        hourly.tick().await;
        match store
            .forget_events_before(chrono::Utc::now() - EVENT_ID_RETENTION)
            .await
        {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "forgot old event ids"),
            Err(err) => tracing::warn!(error = %err, "could not forget old event ids"),
        }
    }
}

/// Resolves on SIGTERM (a container stop) or SIGINT (Ctrl-C).
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "SIGTERM cannot be caught; stop with SIGINT");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("stopping: finishing the requests in flight");
}
