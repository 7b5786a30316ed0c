//! The HTTP layer: one connection pool, one retry policy, typed errors.
//!
//! Architecture: [`Http`] wraps a single `reqwest::Client` (keep-alive, one
//! pool for GitLab and the registry) and sends every request through
//! [`Http::send`], which
//! - waits for the [`RateBudget`] when GitLab's `RateLimit-*` headers say the
//!   budget is nearly spent,
//! - holds a [`Throttle`] permit while an attempt is on the wire, so at most
//!   `CLEANUP_CONCURRENCY` requests are in flight, fewer after 429s,
//! - retries 429, 500, 502, 503, 504, timeouts and dropped connections with
//!   capped exponential backoff and jitter, honouring `Retry-After` (seconds or
//!   an HTTP date) and then `RateLimit-Reset`, within a bounded number of
//!   attempts and a time budget per call,
//! - reads the whole body, so a connection dropped mid-body is retried too,
//! - returns an [`HttpResponse`] for every other status: the callers decide
//!   what 404 or 403 mean for them. 400/401/403/404 are never retried here.
//!
//! Credentials never cross origins: redirects are followed only within the
//! same origin (reqwest would otherwise carry our custom `JOB-TOKEN` and
//! `PRIVATE-TOKEN` headers along), and credential headers are marked
//! sensitive so no debug output prints them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use tokio::sync::Mutex;
use url::Url;

use crate::domain::config_error::ConfigError;
use crate::domain::names::TagName;
use crate::wire::secret::Secret;
use crate::wire::throttle::{Signal, Throttle};

/// Largest response body we accept (a page of 1000 tags is ~300 KiB).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server answered with a status the caller did not expect.
    #[error("{method} {url} answered {status}{}", format_detail(.detail))]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        detail: String,
    },
    /// No usable answer after every retry.
    #[error("{method} {url}: {message}")]
    Transport {
        method: Method,
        url: String,
        message: String,
        /// TLS was spoken to a plain-HTTP server: our configuration
        /// (`https://` in a URL variable), not the server, is wrong.
        plain_http: bool,
    },
    /// An answer we cannot use: not JSON, wrong shape, bogus headers.
    #[error("{method} {url}: unexpected response: {message}")]
    InvalidResponse {
        method: Method,
        url: String,
        message: String,
    },
    /// A paginated answer whose next page is on another origin: our
    /// credentials are not sent there.
    #[error("{method} {url}: the next page is on another origin ({origin}); refusing to follow it with our credentials")]
    ForeignPage {
        method: Method,
        url: String,
        origin: String,
    },
}

fn format_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl crate::domain::exit::ExitCode for HttpError {
    /// The server, not our configuration: a failed run; except `https://`
    /// to a plain-HTTP server, which the user's URL variable must fix.
    fn exit_code(&self) -> crate::domain::exit::Exit {
        match self {
            HttpError::Transport {
                plain_http: true, ..
            } => crate::domain::exit::Exit::Usage,
            _ => crate::domain::exit::Exit::Failed,
        }
    }
}

/// A fully read response. Its `Debug` leaves the body out: the token
/// service's body is a token.
pub struct HttpResponse {
    pub method: Method,
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    /// Attempts it took (1: answered the first time).
    pub attempts: u32,
    /// An earlier attempt failed after it may have reached the server (a 5xx or
    /// a lost connection, not a 429): a state-changing request may already have
    /// taken effect, and only its answer was lost.
    pub earlier_attempt_may_have_applied: bool,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("method", &self.method)
            .field("url", &display_url(&self.url))
            .field("status", &self.status)
            .field("body_bytes", &self.body.len())
            .field("attempts", &self.attempts)
            .field(
                "earlier_attempt_may_have_applied",
                &self.earlier_attempt_may_have_applied,
            )
            .finish_non_exhaustive()
    }
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            self.invalid(format!("{err} in the JSON body ({})", excerpt(&self.body)))
        })
    }

    /// The refusal to follow a next page on another origin.
    pub fn foreign_page(&self, next: &Url) -> HttpError {
        HttpError::ForeignPage {
            method: self.method.clone(),
            url: display_url(&self.url),
            origin: next.origin().ascii_serialization(),
        }
    }

    pub fn invalid(&self, message: impl Into<String>) -> HttpError {
        HttpError::InvalidResponse {
            method: self.method.clone(),
            url: display_url(&self.url),
            message: message.into(),
        }
    }

    /// The error for a status the caller did not expect, with GitLab's or
    /// the registry's own message.
    pub fn unexpected(&self) -> HttpError {
        HttpError::Status {
            method: self.method.clone(),
            url: display_url(&self.url),
            status: self.status,
            detail: error_message(&self.body),
        }
    }

    /// The registry's error code (`DIGEST_INVALID`, `UNSUPPORTED`, …) if any.
    pub fn registry_error_code(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value
            .get("errors")?
            .as_array()?
            .first()?
            .get("code")?
            .as_str()
            .map(str::to_string)
    }
}

/// GitLab's `{"message": …}` / `{"error": …}`, the registry's
/// `{"errors":[{"code","message"}]}`, or the start of whatever else came.
pub fn error_message(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(message) = value.get("message").and_then(|m| m.as_str()) {
            return message.to_string();
        }
        if let Some(error) = value.get("error").and_then(|m| m.as_str()) {
            return error.to_string();
        }
        if let Some(first) = value
            .get("errors")
            .and_then(|e| e.as_array())
            .and_then(|e| e.first())
        {
            let code = first
                .get("code")
                .and_then(|c| c.as_str())
                .unwrap_or_default();
            let message = first
                .get("message")
                .and_then(|c| c.as_str())
                .unwrap_or_default();
            return format!("{code} {message}").trim().to_string();
        }
    }
    excerpt(body)
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    if body.len() > 200 {
        format!("{text}…")
    } else {
        text
    }
}

/// A URL fit for messages: no query string values beyond 100 characters,
/// never any userinfo (we never put credentials in URLs, but be sure).
pub fn display_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let text = url.to_string();
    if text.len() > 300 {
        format!(
            "{}…",
            &text[..text
                .char_indices()
                .nth(300)
                .map(|(i, _)| i)
                .unwrap_or(text.len())]
        )
    } else {
        text
    }
}

/// When and how often to try again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Total time one call may take, retries included.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            budget: Duration::from_secs(180),
        }
    }
}

impl RetryPolicy {
    /// Capped exponential backoff with full jitter (at least half the step).
    fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Statuses worth another try.
pub fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` (seconds or HTTP date), then `RateLimit-Reset` (Unix time).
pub fn server_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(value) = header("retry-after") {
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(date) = httpdate::parse_http_date(value) {
            return Some(date.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    if let Some(reset) = header("ratelimit-reset").and_then(unix_time) {
        return Some(reset.duration_since(now).unwrap_or(Duration::ZERO));
    }
    None
}

/// A Unix time from a header; `None` for text or a time beyond what the clock
/// holds (adding it to the epoch would panic).
fn unix_time(value: &str) -> Option<SystemTime> {
    let seconds = value.trim().parse::<u64>().ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// The longest wait a server's `Retry-After` (or `RateLimit-Reset`) may ask of
/// one call. Beyond it the call gives up at once: a shorter wait would only
/// meet the same refusal, a longer one would stall the job.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(60);

/// A rate-limit window announced further ahead than this is not GitLab's
/// (a minute) and is ignored: otherwise a bogus `RateLimit-Reset` would make
/// every request wait the longest wait.
const MAX_RESET_AHEAD: Duration = Duration::from_secs(120);

/// GitLab's announced request budget: when `RateLimit-Remaining` runs low,
/// wait for `RateLimit-Reset` instead of running into 429s. The budget belongs
/// to the origin that announced it: requests to the registry do not spend
/// GitLab's, and do not wait for it.
#[derive(Debug, Default)]
pub struct RateBudget {
    state: Mutex<Option<BudgetState>>,
}

#[derive(Debug, Clone)]
struct BudgetState {
    origin: url::Origin,
    remaining: u64,
    limit: u64,
    reset: SystemTime,
}

impl RateBudget {
    /// Requests kept in reserve for other jobs of the same user.
    fn reserve(limit: u64) -> u64 {
        (limit / 20).max(2)
    }

    /// Waits while the budget is nearly spent; says whether it waited.
    async fn before_request(&self, url: &Url) -> bool {
        let wait = {
            let mut state = self.state.lock().await;
            match state.as_mut() {
                None => None,
                Some(budget) if budget.origin != url.origin() => None,
                Some(budget) => {
                    let now = SystemTime::now();
                    if budget.reset <= now {
                        *state = None;
                        None
                    } else if budget.remaining <= Self::reserve(budget.limit) {
                        // Every request waits, not only the first to notice;
                        // the state goes once the window has reset. The reset
                        // is in whole seconds: one more covers the rounding.
                        let wait = budget.reset.duration_since(now).unwrap_or_default();
                        Some(wait + Duration::from_secs(1))
                    } else {
                        budget.remaining -= 1;
                        None
                    }
                }
            }
        };
        if let Some(wait) = wait {
            let wait = wait.min(Duration::from_secs(120));
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "rate budget nearly spent; waiting for the reset"
            );
            tokio::time::sleep(wait).await;
        }
        wait.is_some()
    }

    async fn observe(&self, url: &Url, headers: &HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(remaining), Some(reset)) =
            (number("ratelimit-remaining"), number("ratelimit-reset"))
        {
            let limit = number("ratelimit-limit").unwrap_or(remaining.max(1));
            let Some(reset) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(reset)) else {
                return;
            };
            if reset
                .duration_since(SystemTime::now())
                .is_ok_and(|ahead| ahead > MAX_RESET_AHEAD)
            {
                tracing::debug!(
                    "ignoring a RateLimit-Reset more than two minutes ahead: not a rate-limit window"
                );
                return;
            }
            let mut state = self.state.lock().await;
            // Answers arrive out of order: keep the most pessimistic view of the current window.
            let origin = url.origin();
            let keep_old = matches!(&*state, Some(old) if old.origin == origin && old.reset == reset && old.remaining < remaining);
            if !keep_old {
                *state = Some(BudgetState {
                    origin,
                    remaining,
                    limit,
                    reset,
                });
            }
        }
    }
}

/// Counters for the run summary, the benchmarks and the tests: what the
/// client chose to do, counted rather than timed.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: std::sync::atomic::AtomicU64,
    pub retries: std::sync::atomic::AtomicU64,
    /// The waits before retries, summed over every call (milliseconds).
    pub retry_wait_ms: std::sync::atomic::AtomicU64,
    /// The longest single wait before a retry (milliseconds).
    pub longest_retry_wait_ms: std::sync::atomic::AtomicU64,
    /// How often a request waited for a nearly spent rate budget to reset.
    pub rate_limit_waits: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    retry: RetryPolicy,
    timeout: Duration,
    budget: Arc<RateBudget>,
    pub stats: Arc<Stats>,
    /// Adaptive limit on requests in flight (see [`crate::wire::throttle`]).
    throttle: Option<Arc<Throttle>>,
    url_variables: Arc<Vec<(url::Origin, &'static str)>>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("retry", &self.retry).finish()
    }
}

pub struct HttpOptions {
    pub extra_ca_files: Vec<std::path::PathBuf>,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub pool_size: usize,
    /// At most this many requests on the wire at once, fewer after 429s.
    pub max_in_flight: Option<usize>,
    /// The variable each configured URL came from (`CI_SERVER_URL`…), so
    /// that a connection error can say which one to fix.
    pub url_variables: Vec<(Url, &'static str)>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            extra_ca_files: Vec::new(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(60),
            pool_size: 32,
            max_in_flight: None,
            url_variables: Vec::new(),
        }
    }
}

impl Http {
    pub fn new(options: HttpOptions) -> Result<Http, ConfigError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("registry-cleanup/", env!("CARGO_PKG_VERSION")))
            .https_only(false)
            .connect_timeout(Duration::from_secs(15))
            .timeout(options.timeout)
            .pool_max_idle_per_host(options.pool_size)
            .tcp_keepalive(Duration::from_secs(30))
            .redirect(same_origin_redirects());
        for file in &options.extra_ca_files {
            for certificate in read_ca_bundle(file)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().map_err(|err| {
            ConfigError::environment(format!("setting up the HTTP client: {err}"))
        })?;
        Ok(Http {
            client,
            retry: options.retry,
            timeout: options.timeout,
            budget: Arc::new(RateBudget::default()),
            stats: Arc::new(Stats::default()),
            throttle: options.max_in_flight.map(Throttle::new),
            url_variables: Arc::new(
                options
                    .url_variables
                    .iter()
                    .map(|(url, name)| (url.origin(), *name))
                    .collect(),
            ),
        })
    }

    /// A connection failure, with what to do when TLS was spoken to a
    /// plain-HTTP server (rustls: "received corrupt message of type
    /// InvalidContentType"), which says nothing a user would recognise.
    fn transport_error(&self, method: Method, url: &Url, message: String) -> HttpError {
        let plain_http = url.scheme() == "https"
            && ["InvalidContentType", "corrupt message"]
                .iter()
                .any(|needle| message.contains(needle));
        let message = if plain_http {
            let origin = url.origin();
            let variable = self
                .url_variables
                .iter()
                .find(|(known, _)| *known == origin)
                .map_or("the variable that names this server", |(_, name)| *name);
            format!("{message}; the server speaks plain HTTP, not HTTPS: use http:// in {variable}")
        } else {
            message
        };
        HttpError::Transport {
            method,
            url: display_url(url),
            message,
            plain_http,
        }
    }

    pub fn throttle(&self) -> Option<&Arc<Throttle>> {
        self.throttle.as_ref()
    }

    /// Sends the request built by `build` (called again for each attempt)
    /// under the retry policy and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<HttpResponse, HttpError> {
        let mut started = Instant::now();
        let mut attempt: u32 = 0;
        let mut earlier_attempt_may_have_applied = false;
        loop {
            let outcome = self.paced_attempt(&method, url, &build, &mut started).await;
            attempt += 1;
            let next = self
                .next_step(
                    &method,
                    url,
                    outcome,
                    attempt,
                    earlier_attempt_may_have_applied,
                )
                .await;
            let (delay, failure) = match next {
                Next::Done(result) => return result,
                Next::Retry { delay, failure } => (delay, failure),
            };
            let out_of_time = started.elapsed() + delay > self.retry.budget;
            if attempt >= self.retry.max_attempts || out_of_time {
                return match failure {
                    // The caller gets the last answer and decides (a 429 becomes an error there).
                    Failure::Status(response) => Ok(*response),
                    Failure::Transport { message, .. } => Err(self.transport_error(
                        method,
                        url,
                        format!("{message} (gave up after {attempt} attempts)"),
                    )),
                };
            }
            earlier_attempt_may_have_applied |= failure.may_have_applied();
            self.announce_retry(&method, url, &failure, delay, attempt, started);
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt, once the rate budget and our throttle let it go, with
    /// what it taught the throttle. Waiting for our own throttle is not the
    /// server's time: `started` moves on by that wait.
    async fn paced_attempt(
        &self,
        method: &Method,
        url: &Url,
        build: &impl Fn(RequestBuilder) -> RequestBuilder,
        started: &mut Instant,
    ) -> Result<HttpResponse, AttemptError> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.budget.before_request(url).await {
            self.stats.rate_limit_waits.fetch_add(1, Relaxed);
        }
        let queued = Instant::now();
        let permit = match &self.throttle {
            Some(throttle) => Some(throttle.acquire().await),
            None => None,
        };
        *started += queued.elapsed();
        self.stats.requests.fetch_add(1, Relaxed);
        // No attempt may outlive the call's budget: a server that accepts
        // the connection and never answers must not hang the job.
        let remaining = self.retry.budget.saturating_sub(started.elapsed());
        let timeout = self.timeout.min(remaining).max(Duration::from_millis(100));
        let outcome = self.attempt(method.clone(), url, build, timeout).await;
        if let Some(permit) = permit {
            permit.finish(match &outcome {
                Ok(response) if response.status == StatusCode::TOO_MANY_REQUESTS => {
                    Signal::Throttled
                }
                Ok(response) if !response.status.is_server_error() => Signal::Success,
                _ => Signal::Neutral,
            });
        }
        outcome
    }

    /// What the `attempt`-th attempt's outcome calls for: the answer (any
    /// status that is not worth retrying, or one whose server asks for a
    /// longer wait than we give), an error that another try cannot mend,
    /// or a retry after a delay (the server's, else our backoff).
    async fn next_step(
        &self,
        method: &Method,
        url: &Url,
        outcome: Result<HttpResponse, AttemptError>,
        attempt: u32,
        earlier_attempt_may_have_applied: bool,
    ) -> Next {
        match outcome {
            Ok(mut response) => {
                response.attempts = attempt;
                response.earlier_attempt_may_have_applied = earlier_attempt_may_have_applied;
                self.budget.observe(url, &response.headers).await;
                if !is_retryable(response.status) {
                    if earlier_attempt_may_have_applied {
                        tracing::debug!(
                            method = %method, url = %display_url(url),
                            status = response.status.as_u16(), attempt,
                            "answered after an attempt whose answer was lost; it may have taken effect"
                        );
                    }
                    return Next::Done(Ok(response));
                }
                let delay = match server_delay(&response.headers, SystemTime::now()) {
                    Some(wait) if wait > MAX_SERVER_WAIT => {
                        tracing::warn!(
                            method = %method, url = %display_url(url),
                            status = response.status.as_u16(), wait_s = wait.as_secs(),
                            "the server asks to wait longer than {} s; giving up on this request",
                            MAX_SERVER_WAIT.as_secs()
                        );
                        return Next::Done(Ok(response));
                    }
                    Some(wait) => wait,
                    None => self.retry.backoff(attempt - 1),
                };
                Next::Retry {
                    delay,
                    failure: Failure::Status(Box::new(response)),
                }
            }
            Err(AttemptError {
                message,
                transient: false,
                ..
            }) => Next::Done(Err(self.transport_error(method.clone(), url, message))),
            Err(AttemptError {
                message,
                may_have_reached_server,
                ..
            }) => Next::Retry {
                delay: self.retry.backoff(attempt - 1),
                failure: Failure::Transport {
                    message,
                    may_have_reached_server,
                },
            },
        }
    }

    /// Counts the coming wait and says it. Visible by default: a run waiting
    /// on retries must say what it waits for and for how long at most, not
    /// sit silent.
    fn announce_retry(
        &self,
        method: &Method,
        url: &Url,
        failure: &Failure,
        delay: Duration,
        attempt: u32,
        started: Instant,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.retries.fetch_add(1, Relaxed);
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.stats.retry_wait_ms.fetch_add(delay_ms, Relaxed);
        self.stats
            .longest_retry_wait_ms
            .fetch_max(delay_ms, Relaxed);
        let max_attempts = self.retry.max_attempts;
        let next_in = if delay < Duration::from_secs(1) {
            format!("{} ms", delay.as_millis())
        } else {
            format!("{:.1} s", delay.as_secs_f64())
        };
        let gives_up_in = format!(
            "{:.0} s",
            self.retry
                .budget
                .saturating_sub(started.elapsed())
                .as_secs_f64()
        );
        match failure {
            Failure::Status(response) if response.status == StatusCode::TOO_MANY_REQUESTS => {
                tracing::info!(
                    method = %method, url = %display_url(url), status = response.status.as_u16(),
                    attempt, max_attempts, next_in, gives_up_in, "retrying: too many requests"
                )
            }
            Failure::Status(response) => tracing::warn!(
                method = %method, url = %display_url(url), status = response.status.as_u16(),
                attempt, max_attempts, next_in, gives_up_in, "retrying after a server error"
            ),
            Failure::Transport { message, .. } => tracing::warn!(
                method = %method, url = %display_url(url), error = %message,
                attempt, max_attempts, next_in, gives_up_in, "retrying after no answer"
            ),
        }
    }

    async fn attempt(
        &self,
        method: Method,
        url: &Url,
        build: &impl Fn(RequestBuilder) -> RequestBuilder,
        timeout: Duration,
    ) -> Result<HttpResponse, AttemptError> {
        let request = build(self.client.request(method.clone(), url.clone())).timeout(timeout);
        let mut response = request.send().await.map_err(AttemptError::from)?;
        let status = response.status();
        let headers = response.headers().clone();
        let final_url = response.url().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(AttemptError::from)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                // Not transient: the same answer would come again.
                return Err(AttemptError {
                    message: format!("response body larger than {MAX_BODY_BYTES} bytes"),
                    transient: false,
                    may_have_reached_server: true,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            method,
            url: final_url,
            status,
            headers,
            body: body.into(),
            attempts: 1,
            earlier_attempt_may_have_applied: false,
        })
    }
}

/// Follows a redirect only within the origin it started from: our
/// credential headers are not standard ones, so reqwest would carry them
/// along to another origin. Elsewhere it stops and the caller fails.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if same_origin {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// The certificates of an extra CA bundle, each problem naming the file.
fn read_ca_bundle(file: &std::path::Path) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let pem = std::fs::read(file).map_err(|err| {
        ConfigError::file(
            file.display().to_string(),
            format!("cannot read CA bundle {}: {err}", file.display()),
        )
    })?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
        ConfigError::file(file.display().to_string(), format!(
            "{} is not a PEM CA bundle ({err}): point CI_SERVER_TLS_CA_FILE / SSL_CERT_FILE at a file of PEM certificates",
            file.display()
        ))
    })?;
    if certificates.is_empty() {
        return Err(ConfigError::file(file.display().to_string(), format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----): point CI_SERVER_TLS_CA_FILE / SSL_CERT_FILE at your CA's certificates in PEM form",
            file.display()
        )));
    }
    // A certificate that does not parse only shows when a client is
    // built: try this file alone, so the error can name it.
    let mut probe = reqwest::Client::builder().tls_built_in_root_certs(false);
    for certificate in &certificates {
        probe = probe.add_root_certificate(certificate.clone());
    }
    probe.build().map_err(|err| {
        ConfigError::file(file.display().to_string(), format!(
            "{} holds a certificate that cannot be used ({}): point CI_SERVER_TLS_CA_FILE / SSL_CERT_FILE at your CA's certificates in PEM form",
            file.display(),
            describe_reqwest_error(&err)
        ))
    })?;
    Ok(certificates)
}

/// What to do after an attempt: hand back its result, or wait `delay` and
/// try again.
enum Next {
    Done(Result<HttpResponse, HttpError>),
    Retry { delay: Duration, failure: Failure },
}

enum Failure {
    Status(Box<HttpResponse>),
    Transport {
        message: String,
        may_have_reached_server: bool,
    },
}

impl Failure {
    /// Whether the failed attempt may have changed something: a 5xx or a lost
    /// connection may come after the change; a 429 or no connection cannot.
    fn may_have_applied(&self) -> bool {
        match self {
            Failure::Status(response) => response.status.is_server_error(),
            Failure::Transport {
                may_have_reached_server,
                ..
            } => *may_have_reached_server,
        }
    }
}

/// Why an attempt got no usable answer, and whether another try could help.
struct AttemptError {
    message: String,
    transient: bool,
    /// False only when the connection was never made: the request cannot
    /// have taken effect.
    may_have_reached_server: bool,
}

impl From<reqwest::Error> for AttemptError {
    fn from(err: reqwest::Error) -> AttemptError {
        let message = describe_reqwest_error(&err);
        // A certificate the CA bundle does not vouch for, or TLS spoken to a
        // server that does not speak it, fails the same way every time.
        let lower = message.to_ascii_lowercase();
        let tls = [
            "certificate",
            "corrupt message",
            "handshake",
            "peer is incompatible",
        ]
        .iter()
        .any(|needle| lower.contains(needle));
        AttemptError {
            transient: !(tls || err.is_builder() || err.is_redirect()),
            may_have_reached_server: !err.is_connect(),
            message,
        }
    }
}

/// reqwest's own messages, without the URL (we add a clean one) and with the
/// underlying cause, which its `Display` leaves out.
fn describe_reqwest_error(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "connection broke while reading the answer"
    } else if err.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if causes.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", causes.join(": "))
    }
}

/// A header carrying a credential, marked sensitive so that no debug output prints it.
pub fn credential_header(
    name: &'static str,
    secret: &Secret,
) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
        ConfigError::credentials(format!(
            "the token for the {name} header contains characters that cannot be sent in a header; check the variable's value"
        ))
    })?;
    value.set_sensitive(true);
    Ok((HeaderName::from_static(name_to_static(name)), value))
}

fn name_to_static(name: &'static str) -> &'static str {
    // HeaderName::from_static needs lower case.
    match name {
        "JOB-TOKEN" => "job-token",
        "PRIVATE-TOKEN" => "private-token",
        other => other,
    }
}

/// Tag names as a server listed them: a name no registry accepts on push
/// fails the whole listing (in a URL, `..` could address something else).
pub fn listed_names(
    response: &HttpResponse,
    names: Vec<String>,
) -> Result<Vec<TagName>, HttpError> {
    names
        .into_iter()
        .map(|name| listed_name(response, name))
        .collect()
}

pub fn listed_name(response: &HttpResponse, name: String) -> Result<TagName, HttpError> {
    TagName::parse(&name).map_err(|_| {
        response.invalid(format!(
            "the server listed the tag {name:?}, which is not a valid tag name; refusing to work from this listing"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_date_and_reset() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(server_delay(&headers, now), Some(Duration::from_secs(7)));

        let mut headers = HeaderMap::new();
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        headers.insert("retry-after", HeaderValue::from_str(&date).expect("date"));
        assert_eq!(server_delay(&headers, now), Some(Duration::from_secs(30)));

        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-reset", HeaderValue::from_static("1700000012"));
        assert_eq!(server_delay(&headers, now), Some(Duration::from_secs(12)));

        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(server_delay(&headers, now), None);
        assert_eq!(server_delay(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let policy = RetryPolicy::default();
        for attempt in 0..40 {
            let delay = policy.backoff(attempt);
            assert!(delay <= policy.max_delay, "{attempt}: {delay:?}");
        }
        let first = policy.backoff(0);
        assert!(first >= policy.base_delay / 2 && first <= policy.base_delay);
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for status in [429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(status).expect("status")));
        }
        for status in [400, 401, 403, 404, 405, 409, 501] {
            assert!(!is_retryable(StatusCode::from_u16(status).expect("status")));
        }
    }

    #[test]
    fn error_messages_come_from_every_body_shape() {
        assert_eq!(
            error_message(br#"{"message":"404 Tag Not Found"}"#),
            "404 Tag Not Found"
        );
        assert_eq!(
            error_message(br#"{"error":"name_regex is invalid"}"#),
            "name_regex is invalid"
        );
        assert_eq!(
            error_message(br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match"}]}"#),
            "DIGEST_INVALID provided digest did not match"
        );
        assert_eq!(
            error_message(b"<html>\nbad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn responses_never_debug_print_their_body() {
        let response = HttpResponse {
            method: Method::GET,
            url: Url::parse("https://gitlab.example.com/jwt/auth?service=x").expect("url"),
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: bytes::Bytes::from_static(br#"{"token":"eyJsecret"}"#),
            attempts: 1,
            earlier_attempt_may_have_applied: false,
        };
        let text = format!("{response:?}");
        assert!(!text.contains("eyJsecret"), "{text}");
        assert!(text.contains("body_bytes: 21"), "{text}");
    }

    #[test]
    fn credential_headers_are_sensitive() {
        let (name, value) = credential_header("JOB-TOKEN", &Secret::new("abc")).expect("header");
        assert_eq!(name.as_str(), "job-token");
        assert!(value.is_sensitive());
        assert!(credential_header("PRIVATE-TOKEN", &Secret::new("a\nb")).is_err());
    }
}
