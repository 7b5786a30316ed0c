//! The HTTP layer: accept loop, latency, rate limit, fault injection, recording,
//! then dispatch to the GitLab (`rest`) or registry (`registry`) handlers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::{AuthKind, RecordedRequest, Server, Shared};

pub(crate) type Resp = Response<Full<Bytes>>;

/// The error that makes hyper close the connection without answering.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injection: connection dropped")
    }
}

impl std::error::Error for DropConnection {}

/// A request with its body read.
pub(crate) struct Req {
    pub method: Method,
    /// Raw (percent-encoded) path.
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// Query parameters, decoded (`+` is a space), in order.
    pub(crate) fn query_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_bytes())
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect()
    }

    /// The last value of a query parameter.
    pub(crate) fn param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Every value of a header, comma-joined (for `Accept`, which may repeat).
    pub(crate) fn header_all(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn auth_kind(&self) -> AuthKind {
        if self.headers.contains_key("job-token") {
            return AuthKind::JobToken;
        }
        if self.headers.contains_key("private-token") {
            return AuthKind::PrivateToken;
        }
        match self.header("authorization") {
            Some(value) if value.len() > 6 && value[..6].eq_ignore_ascii_case("basic ") => {
                AuthKind::Basic
            }
            Some(value) if value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ") => {
                AuthKind::Bearer
            }
            _ => AuthKind::None,
        }
    }
}

pub(crate) fn response(status: u16, content_type: Option<&str>, body: impl Into<Bytes>) -> Resp {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(content_type) = content_type {
        set_header(&mut response, "content-type", content_type);
    }
    response
}

pub(crate) fn json_response(status: u16, value: &serde_json::Value) -> Resp {
    response(status, Some("application/json"), value.to_string())
}

pub(crate) fn empty(status: u16) -> Resp {
    response(status, None, Bytes::new())
}

pub(crate) fn set_header(response: &mut Resp, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        response.headers_mut().insert(name, value);
    }
}

pub(crate) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>, server: Server) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { handle(shared, server, request).await }
            });
            // An error here is usually an injected drop or a client hanging up.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum FaultKind {
    TooMany(RetryAfter),
    Status(u16),
    Drop,
    Slow,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RetryAfter {
    One,
    Zero,
    Date,
    Absent,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    kind: FaultKind,
    after_effect: bool,
}

impl Fault {
    fn label(&self) -> String {
        let kind = match self.kind {
            FaultKind::TooMany(RetryAfter::One) => "429 retry-after=1".to_string(),
            FaultKind::TooMany(RetryAfter::Zero) => "429 retry-after=0".to_string(),
            FaultKind::TooMany(RetryAfter::Date) => "429 retry-after=date".to_string(),
            FaultKind::TooMany(RetryAfter::Absent) => "429 no retry-after".to_string(),
            FaultKind::Status(status) => status.to_string(),
            FaultKind::Drop => "drop".to_string(),
            FaultKind::Slow => "slow".to_string(),
        };
        if self.after_effect {
            format!("{kind} after-effect")
        } else {
            kind
        }
    }
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::DELETE | Method::PUT | Method::POST | Method::PATCH
    )
}

fn roll_fault(state: &mut crate::model::State, method: &Method, path: &str) -> Option<Fault> {
    if let Some(scripted) = state.config.scripted_faults.iter_mut().find(|f| {
        f.times > 0
            && method.as_str().eq_ignore_ascii_case(&f.method)
            && path.contains(&f.path_contains)
    }) {
        scripted.times -= 1;
        return Some(Fault {
            kind: match scripted.status {
                Some(429) => FaultKind::TooMany(RetryAfter::Zero),
                Some(status) => FaultKind::Status(status),
                None => FaultKind::Drop,
            },
            after_effect: scripted.after_effect,
        });
    }
    let faults = state.config.faults.clone()?;
    if state.rng.next_f64() >= faults.rate {
        return None;
    }
    // A lost answer to a change that happened is what makes retries meet 404s.
    let state_changing = is_write(method) && !path.starts_with("/jwt/auth");
    if state_changing && state.rng.below(2) == 0 {
        let kind = match state.rng.below(4) {
            0 => FaultKind::Status(500),
            1 => FaultKind::Status(502),
            2 => FaultKind::Status(503),
            _ => FaultKind::Drop,
        };
        return Some(Fault {
            kind,
            after_effect: true,
        });
    }
    let kind = match state.rng.below(6) {
        0 => FaultKind::TooMany(match state.rng.below(4) {
            0 => RetryAfter::One,
            1 => RetryAfter::Zero,
            2 => RetryAfter::Date,
            _ => RetryAfter::Absent,
        }),
        1 => FaultKind::Status(500),
        2 => FaultKind::Status(502),
        3 => FaultKind::Status(503),
        4 => FaultKind::Drop,
        _ => FaultKind::Slow,
    };
    Some(Fault {
        kind,
        after_effect: false,
    })
}

fn fault_response(server: Server, kind: FaultKind) -> Resp {
    match kind {
        FaultKind::TooMany(retry_after) => {
            let mut response = match server {
                Server::Gitlab => response(429, Some("text/plain"), "Retry later\n"),
                Server::Registry => {
                    crate::registry::error(429, "TOOMANYREQUESTS", "too many requests", json!(null))
                }
            };
            let value = match retry_after {
                RetryAfter::One => Some("1".to_string()),
                RetryAfter::Zero => Some("0".to_string()),
                RetryAfter::Date => Some(httpdate::fmt_http_date(
                    std::time::SystemTime::now() + Duration::from_secs(1),
                )),
                RetryAfter::Absent => None,
            };
            if let Some(value) = value {
                set_header(&mut response, "retry-after", &value);
            }
            response
        }
        FaultKind::Status(500) if server == Server::Gitlab => {
            json_response(500, &json!({"message": "500 Internal Server Error"}))
        }
        FaultKind::Status(status) => {
            let reason = StatusCode::from_u16(status)
                .ok()
                .and_then(|code| code.canonical_reason())
                .unwrap_or("Error");
            response(
                status,
                Some("text/html"),
                format!("<html><body><h1>{status} {reason}</h1></body></html>\n"),
            )
        }
        FaultKind::Drop | FaultKind::Slow => empty(500),
    }
}

/// What the rate limiter says about one GitLab-origin request.
struct RateStatus {
    headers: Vec<(&'static str, String)>,
    exceeded: bool,
    reset_in: Duration,
}

/// Counts a GitLab-origin request against the budget (fixed window).
fn rate_limit(state: &mut crate::model::State) -> Option<RateStatus> {
    let limit = state.config.rate_limit.clone()?;
    let now = Instant::now();
    let window = match state.rate_window {
        Some((start, wall, count)) if now.duration_since(start) < limit.window => {
            (start, wall, count + 1)
        }
        _ => (now, Utc::now(), 1),
    };
    state.rate_window = Some(window);
    let (start, wall_start, observed) = window;
    let reset_at = wall_start + chrono::Duration::from_std(limit.window).unwrap_or_default();
    Some(RateStatus {
        headers: vec![
            ("ratelimit-limit", limit.limit.to_string()),
            ("ratelimit-observed", observed.to_string()),
            (
                "ratelimit-remaining",
                limit.limit.saturating_sub(observed).to_string(),
            ),
            ("ratelimit-reset", reset_at.timestamp().to_string()),
        ],
        exceeded: observed > limit.limit,
        reset_in: limit.window.saturating_sub(now.duration_since(start)),
    })
}

/// Counts a request in flight for as long as it lives (a handler future that
/// hyper drops half-way still gives its count back).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> InFlight<'a> {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The longest header line nginx's default buffers take (see `handle`).
const MAX_HEADER_LINE: usize = 8 * 1024;

async fn handle(
    shared: Arc<Shared>,
    server: Server,
    request: Request<Incoming>,
) -> Result<Resp, DropConnection> {
    // The latency counts from the request's arrival, so that the time spent
    // reading and serving it is part of it rather than added to it.
    let arrived = Instant::now();
    let is_control = server == Server::Gitlab && request.uri().path().starts_with("/_emulator/");
    let _in_flight = (!is_control).then(|| InFlight::enter(&shared));
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
    };
    if is_control {
        return Ok(crate::rest::control(&shared, &req));
    }
    // Omnibus GitLab puts nginx in front of GitLab and its registry, and
    // nginx reads a header line into buffers of 8 KiB
    // (`large_client_header_buffers 4 8k`): a longer one (a registry token
    // for too many repositories) is refused before the server sees it.
    if req
        .headers
        .iter()
        .any(|(name, value)| name.as_str().len() + 2 + value.len() > MAX_HEADER_LINE)
    {
        let refused = response(
            400,
            Some("text/html"),
            "<html><head><title>400 Request Header Or Cookie Too Large</title></head></html>\n",
        );
        shared.lock().requests.push(RecordedRequest {
            method: req.method.to_string(),
            path: req.path.clone(),
            query: req.query.clone(),
            status: 400,
            server,
            fault: None,
            auth: req.auth_kind(),
            retry_after_sent: false,
        });
        return Ok(refused);
    }

    let (latency, fault, rate) = {
        let mut state = shared.lock();
        let fault = roll_fault(&mut state, &req.method, &req.path);
        let rate = if server == Server::Gitlab {
            rate_limit(&mut state)
        } else {
            None
        };
        (state.config.latency, fault, rate)
    };
    if !latency.is_zero() {
        crate::latency::sleep_until(arrived + latency).await;
    }
    let rate_limited = rate.as_ref().is_some_and(|rate| rate.exceeded);
    let fault = if rate_limited { None } else { fault };

    let mut dropped = false;
    let mut response = if rate_limited {
        let reset_in = rate.as_ref().map_or(Duration::ZERO, |rate| rate.reset_in);
        let mut response = response(429, Some("text/plain"), "Retry later\n");
        let seconds = reset_in.as_secs() + u64::from(reset_in.subsec_nanos() > 0);
        set_header(&mut response, "retry-after", &seconds.to_string());
        set_header(
            &mut response,
            "ratelimit-resettime",
            &httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(seconds)),
        );
        response
    } else {
        match fault {
            Some(Fault {
                kind: FaultKind::Slow,
                ..
            }) => {
                let slow = shared
                    .lock()
                    .config
                    .faults
                    .as_ref()
                    .map_or(Duration::ZERO, |f| f.slow);
                tokio::time::sleep(slow).await;
                dispatch_any(&shared, server, &req).await
            }
            Some(Fault {
                kind: FaultKind::Drop,
                after_effect: false,
            }) => {
                dropped = true;
                empty(500)
            }
            Some(Fault {
                kind,
                after_effect: false,
            }) => fault_response(server, kind),
            Some(Fault {
                kind,
                after_effect: true,
            }) => {
                // The change happens; its answer is lost.
                let _applied = dispatch_any(&shared, server, &req).await;
                if kind == FaultKind::Drop {
                    dropped = true;
                    empty(500)
                } else {
                    fault_response(server, kind)
                }
            }
            None => dispatch_any(&shared, server, &req).await,
        }
    };
    if let Some(rate) = &rate {
        for (name, value) in &rate.headers {
            set_header(&mut response, name, value);
        }
    }

    let recorded = RecordedRequest {
        method: req.method.to_string(),
        path: req.path.clone(),
        query: req.query.clone(),
        status: if dropped {
            0
        } else {
            response.status().as_u16()
        },
        server,
        fault: fault.map(|fault| fault.label()),
        auth: req.auth_kind(),
        retry_after_sent: !dropped && response.headers().contains_key("retry-after"),
    };
    shared.lock().requests.push(recorded);
    if dropped {
        Err(DropConnection)
    } else {
        Ok(response)
    }
}

fn tamper_for(state: &crate::model::State, server: Server, req: &Req) -> Option<crate::Tamper> {
    state
        .config
        .tamper
        .iter()
        .find(|tamper| {
            tamper.server.is_none_or(|s| s == server)
                && tamper
                    .method
                    .as_deref()
                    .is_none_or(|method| req.method.as_str().eq_ignore_ascii_case(method))
                && req.path.contains(&tamper.path_contains)
                && req.query.contains(&tamper.query_contains)
        })
        .cloned()
}

fn apply_tamper(mut response: Resp, tamper: &crate::Tamper) -> Resp {
    if let Some(body) = &tamper.body {
        let (mut parts, full) = response.into_parts();
        let original = bytes_of(full);
        let body: Vec<u8> = match body {
            crate::TamperBody::Replace(bytes) => bytes.clone(),
            crate::TamperBody::Truncate(n) => original[..(*n).min(original.len())].to_vec(),
            crate::TamperBody::Transform(f) => f(&original),
        };
        parts.headers.remove("content-length");
        response = Response::from_parts(parts, Full::new(Bytes::from(body)));
    }
    for name in &tamper.remove_headers {
        response.headers_mut().remove(name.as_str());
    }
    for (name, value) in &tamper.set_headers {
        set_header(&mut response, name, value);
    }
    response
}

/// The bytes of a `Full` body (always ready: it is a single in-memory chunk).
fn bytes_of(mut body: Full<Bytes>) -> Bytes {
    use hyper::body::Body;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

fn dispatch(shared: &Shared, server: Server, req: &Req) -> Resp {
    let mut state = shared.lock();
    let tamper = tamper_for(&state, server, req);
    let response = match (&tamper, server) {
        (
            Some(crate::Tamper {
                status: Some(status),
                ..
            }),
            _,
        ) => empty(*status),
        (_, Server::Gitlab) => crate::rest::handle(&mut state, req),
        (_, Server::Registry) => crate::registry::handle(&mut state, req),
    };
    drop(state);
    let response = match &tamper {
        Some(tamper) => apply_tamper(response, tamper),
        None => response,
    };
    without_body_for_head(req, response)
}

/// [`dispatch`], or for the REST routes `upstream` serves, the upstream
/// registry (`Config::upstream_registry`).
async fn dispatch_any(shared: &Shared, server: Server, req: &Req) -> Resp {
    if server == Server::Gitlab {
        let upstream = shared.lock().config.upstream_registry.clone();
        if let Some((base, route)) = upstream.zip(crate::upstream::route(req)) {
            let response = crate::upstream::handle(shared, req, &base, route).await;
            return without_body_for_head(req, response);
        }
    }
    dispatch(shared, server, req)
}

fn without_body_for_head(req: &Req, response: Resp) -> Resp {
    if req.method == Method::HEAD {
        // HEAD answers carry the headers of a GET and no body.
        let (mut parts, body) = response.into_parts();
        let length = http_body_util::BodyExt::boxed(body);
        let size = hyper::body::Body::size_hint(&length).exact().unwrap_or(0);
        if !parts.headers.contains_key("content-length") {
            if let Ok(value) = HeaderValue::from_str(&size.to_string()) {
                parts.headers.insert("content-length", value);
            }
        }
        return Response::from_parts(parts, Full::new(Bytes::new()));
    }
    response
}
