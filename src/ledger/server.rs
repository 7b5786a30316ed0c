//! The ledger's HTTP service (axum):
//!
//! - `POST /events`: a registry notification envelope. 200 only once the
//!   batch is committed (the registry sends it again otherwise, so a
//!   restart loses nothing); 401 without the bearer token, 413 over the
//!   size limit, 415 for another media type, 400 for anything malformed —
//!   each refusal stores nothing.
//! - `GET /v1/repositories/<path>/pulls`: what `--ledger` reads (same
//!   token).
//! - `GET /healthz`: 200 while the store answers (no token: it says
//!   nothing but "up").
//!
//! The token is compared in constant time (SHA-256 of each side, compared
//! with `subtle`), so its length and bytes cannot be timed out of it.

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::names::RepositoryPath;
use crate::ledger::events::{self, Filter, ENVELOPE_MEDIA_TYPE};
use crate::ledger::store::{RepositoryRecord, Store};
use crate::wire::secret::Secret;

/// Largest batch accepted. Distribution sends a few events per request;
/// 1 MiB is thousands of them.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the service needs besides its store.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub token: Secret,
    pub filter: Filter,
}

struct Service<S> {
    store: S,
    filter: Filter,
    token_hash: [u8; 32],
}

/// The service's routes over `store`.
pub fn router<S: Store>(store: S, options: ServiceOptions) -> Router {
    let service = Arc::new(Service {
        store,
        filter: options.filter,
        token_hash: Sha256::digest(options.token.expose().as_bytes()).into(),
    });
    Router::new()
        .route("/events", post(receive::<S>))
        .route("/v1/repositories/{*rest}", get(pulls::<S>))
        .route("/healthz", get(health::<S>))
        .with_state(service)
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes
/// the requests in flight (a batch being committed is committed and
/// answered) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn refuse(status: StatusCode, message: &str) -> Response {
    tracing::warn!(status = status.as_u16(), "refused: {message}");
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&ErrorBody { error: message }).unwrap_or_default(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"registry-cleanup ledger\""),
        );
    }
    response
}

impl<S> Service<S> {
    /// Whether the request carries the bearer token.
    fn authorised(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .unwrap_or("");
        // The configured token is never empty (`ledger serve` refuses one),
        // so an empty one given never matches.
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        bool::from(given.ct_eq(&self.token_hash))
    }
}

/// The body, up to `MAX_BODY_BYTES`: `None` when it is larger.
async fn read_body(body: Body) -> Option<Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.ok()
}

async fn receive<S: Store>(
    State(service): State<Arc<Service<S>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !service.authorised(&headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a bearer token (CLEANUP_LEDGER_TOKEN) is required",
        );
    }
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if media_type != ENVELOPE_MEDIA_TYPE && media_type != "application/json" {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("expected {ENVELOPE_MEDIA_TYPE}"),
        );
    }
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok())
        .is_some_and(|length| length > MAX_BODY_BYTES)
    {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the batch is too large");
    }
    let Some(body) = read_body(body).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the batch is too large");
    };
    let events = match events::parse(&body, &service.filter) {
        Ok(events) => events,
        Err(err) => return refuse(StatusCode::BAD_REQUEST, &err.0),
    };
    let received = chrono::Utc::now();
    let count = events.len();
    match service.store.commit(events, received).await {
        Ok(committed) => {
            tracing::debug!(
                events = count,
                new = committed.new,
                replayed = committed.replayed,
                "batch committed"
            );
            (StatusCode::OK, "").into_response()
        }
        Err(err) => {
            // Not committed: the registry keeps the batch and sends it again.
            tracing::error!(error = %err, "the batch could not be stored");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ledger could not store the batch; send it again",
            )
        }
    }
}

/// The answer of `GET /v1/repositories/<path>/pulls`.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PullsAnswer {
    pub repository: String,
    /// The first event the ledger received for the repository: it has seen
    /// every pull since. `null`: no event yet.
    #[serde(with = "crate::domain::rfc3339")]
    pub watched_since: Option<chrono::DateTime<chrono::Utc>>,
    pub pulls: Vec<PullEntry>,
}

#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PullEntry {
    pub digest: String,
    #[serde(with = "crate::domain::rfc3339")]
    pub last_pulled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub count: u64,
}

impl PullsAnswer {
    pub fn new(repository: &RepositoryPath, record: RepositoryRecord) -> PullsAnswer {
        PullsAnswer {
            repository: repository.to_string(),
            watched_since: record.watched_since,
            pulls: record
                .pulls
                .into_iter()
                .map(|entry| PullEntry {
                    digest: entry.digest.to_string(),
                    last_pulled_at: Some(entry.last_pulled_at),
                    count: entry.pulls,
                })
                .collect(),
        }
    }
}

async fn pulls<S: Store>(
    State(service): State<Arc<Service<S>>>,
    headers: HeaderMap,
    Path(rest): Path<String>,
) -> Response {
    if !service.authorised(&headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "a bearer token (CLEANUP_LEDGER_TOKEN) is required",
        );
    }
    let Some(path) = rest.strip_suffix("/pulls") else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no such resource: GET /v1/repositories/<path>/pulls",
        );
    };
    let Ok(repository) = RepositoryPath::parse(path) else {
        return refuse(StatusCode::BAD_REQUEST, "not a repository path");
    };
    match service.store.repository(&repository).await {
        Ok(record) => match serde_json::to_string(&PullsAnswer::new(&repository, record)) {
            Ok(json) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                json,
            )
                .into_response(),
            Err(err) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
        },
        Err(err) => {
            tracing::error!(error = %err, "the store could not be read");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ledger's store could not be read",
            )
        }
    }
}

async fn health<S: Store>(State(service): State<Arc<Service<S>>>) -> Response {
    match service.store.check().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(err) => {
            tracing::error!(error = %err, "health check: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store does not answer\n",
            )
                .into_response()
        }
    }
}
