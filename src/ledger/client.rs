//! What `run --ledger URL` and `inventory --ledger URL` ask the ledger:
//! `GET /v1/repositories/<path>/pulls` with the bearer token
//! `CLEANUP_LEDGER_TOKEN`, on the run's own HTTP client (retries, timeouts,
//! the request budget).
//!
//! [`read_pulls`] is the one call the engines make after listing a
//! repository: it marks each tag's last pull and returns what the planner
//! needs to know of the ledger. A ledger that does not answer is not an
//! error of the run, it is a [`LedgerView::Unreadable`]: rules with
//! `unpulled_for` delete nothing in that repository, and the report says
//! why (exit 1).

use std::collections::HashMap;

use reqwest::Method;
use url::Url;

use crate::domain::model::Tag;
use crate::domain::names::{Digest, RepositoryPath};
use crate::domain::pulls::{LedgerView, RepositoryPulls};
use crate::ledger::server::PullsAnswer;
use crate::wire::http::{credential_header, Http, HttpError};
use crate::wire::secret::Secret;
use crate::wire::urls::{encode_segment, join_path};

/// Why the ledger could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the ledger refused the token (401): check CLEANUP_LEDGER_TOKEN")]
    Unauthorised,
    #[error("the ledger answered for {answered}, not {asked}")]
    WrongRepository { asked: String, answered: String },
    #[error("the ledger's answer lists an invalid digest {0:?}")]
    InvalidDigest(String),
}

impl LedgerError {
    /// The same for every repository: not answering after the retries, or
    /// refusing the token. Asking again for each repository of a group
    /// would only wait out the same retries again.
    fn for_every_repository(&self) -> bool {
        matches!(
            self,
            LedgerError::Unauthorised | LedgerError::Http(HttpError::Transport { .. })
        )
    }
}

/// The ledger at `--ledger URL`.
#[derive(Debug)]
pub struct LedgerClient {
    http: Http,
    base: Url,
    token: Secret,
    /// Why the ledger is not asked any more in this run (see
    /// [`LedgerError::for_every_repository`]).
    given_up: std::sync::OnceLock<String>,
}

impl LedgerClient {
    pub fn new(http: Http, base: Url, token: Secret) -> LedgerClient {
        LedgerClient {
            http,
            base,
            token,
            given_up: std::sync::OnceLock::new(),
        }
    }

    /// The ledger's record of `repository`.
    pub async fn pulls(&self, repository: &RepositoryPath) -> Result<RepositoryPulls, LedgerError> {
        let path: Vec<String> = repository.as_str().split('/').map(encode_segment).collect();
        let url = join_path(
            &self.base,
            &format!("v1/repositories/{}/pulls", path.join("/")),
        );
        let (name, value) = credential_header(
            "authorization",
            &Secret::new(format!("Bearer {}", self.token.expose())),
        )
        .map_err(|err| {
            LedgerError::Http(HttpError::Transport {
                method: Method::GET,
                url: url.to_string(),
                message: err.to_string(),
                plain_http: false,
            })
        })?;
        let response = self
            .http
            .send(Method::GET, &url, |request| {
                request.header(name.clone(), value.clone())
            })
            .await?;
        if response.status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(LedgerError::Unauthorised);
        }
        if !response.status.is_success() {
            return Err(response.unexpected().into());
        }
        let answer: PullsAnswer = response.json()?;
        if answer.repository != repository.as_str() {
            return Err(LedgerError::WrongRepository {
                asked: repository.to_string(),
                answered: answer.repository,
            });
        }
        let mut last_pulls = HashMap::with_capacity(answer.pulls.len());
        for entry in answer.pulls {
            let digest = Digest::parse(&entry.digest)
                .map_err(|_| LedgerError::InvalidDigest(entry.digest))?;
            if let Some(at) = entry.last_pulled_at {
                last_pulls.insert(digest, at);
            }
        }
        Ok(RepositoryPulls {
            watched_since: answer.watched_since,
            last_pulls,
        })
    }
}

/// After listing a repository: marks each tag's `last_pulled_at` from the
/// ledger and says what the planner may rely on. No ledger configured:
/// [`LedgerView::NotRead`]; not answering: [`LedgerView::Unreadable`]
/// (logged), each tag left without a pull. A ledger that did not answer
/// at all, or refused the token, is not asked again in the run: the later
/// repositories get the same reason at once.
pub async fn read_pulls(
    ledger: Option<&LedgerClient>,
    repository: &RepositoryPath,
    tags: &mut [Tag],
) -> LedgerView {
    let Some(ledger) = ledger else {
        return LedgerView::NotRead;
    };
    if let Some(why) = ledger.given_up.get() {
        tracing::warn!(repository = %repository, "the pull ledger is not asked again ({why}): rules with unpulled_for delete nothing here");
        return LedgerView::Unreadable(why.clone());
    }
    match ledger.pulls(repository).await {
        Ok(pulls) => {
            let view = pulls.apply(tags);
            tracing::info!(
                repository = %repository,
                digests_pulled = pulls.last_pulls.len(),
                watched_since = ?pulls.watched_since,
                "read the pull ledger"
            );
            view
        }
        Err(err) => {
            tracing::error!(repository = %repository, error = %err, "the pull ledger could not be read: rules with unpulled_for delete nothing here");
            let why = err.to_string();
            if err.for_every_repository() {
                let _ = ledger.given_up.set(why.clone());
            }
            LedgerView::Unreadable(why)
        }
    }
}
