//! Adaptive concurrency: how many requests may be in flight at once.
//!
//! Architecture: one [`Throttle`] per run, shared by every request through
//! [`crate::wire::http::Http::send`]. Each attempt holds a [`Permit`] while it is on
//! the wire (never while it sleeps before a retry) and reports how it went.
//! The limit follows AIMD, as TCP's congestion window does:
//! - a 429 halves it, never below 1 — once per round of requests in flight,
//!   so a burst of 429s from the same overloaded moment counts once;
//! - a run of `limit` successes in a row adds one, never above the
//!   configured maximum (`CLEANUP_CONCURRENCY`).
//!
//! Underneath is a FIFO [`Semaphore`] holding `limit` permits. Shrinking
//! cannot take permits back from requests on the wire, so the throttle
//! remembers a debt and forgets permits as they come back until it is paid.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Throttle {
    max: usize,
    semaphore: Arc<Semaphore>,
    state: Mutex<State>,
    throttled: AtomicU64,
}

#[derive(Debug)]
struct State {
    limit: usize,
    /// Successes in a row since the limit last changed.
    successes: usize,
    /// Bumped on every decrease: a 429 from an attempt that started before
    /// the last decrease has already been answered for.
    epoch: u64,
    /// Permits still to forget as they come back, after a decrease.
    debt: usize,
    lowest: usize,
}

/// What an attempt tells the throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered normally (any status but 429 and 5xx).
    Success,
    /// 429 Too Many Requests.
    Throttled,
    /// 5xx, a timeout or a dropped connection: says nothing about our pace.
    Neutral,
}

/// Leave to have one request on the wire; dropping it gives the slot back.
#[derive(Debug)]
pub struct Permit {
    throttle: Arc<Throttle>,
    permit: Option<OwnedSemaphorePermit>,
    epoch: u64,
}

impl Throttle {
    pub fn new(max: usize) -> Arc<Throttle> {
        let max = max.max(1);
        Arc::new(Throttle {
            max,
            semaphore: Arc::new(Semaphore::new(max)),
            state: Mutex::new(State {
                limit: max,
                successes: 0,
                epoch: 0,
                debt: 0,
                lowest: max,
            }),
            throttled: AtomicU64::new(0),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock can panic half-way; a poisoned lock still
        // holds consistent numbers.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        // The semaphore is never closed, so this cannot fail; if it ever
        // did, going ahead unthrottled beats failing the request.
        let permit = self.semaphore.clone().acquire_owned().await.ok();
        let epoch = self.state().epoch;
        Permit {
            throttle: Arc::clone(self),
            permit,
            epoch,
        }
    }

    /// The lowest limit reached, and how many 429s were reported.
    pub fn summary(&self) -> (usize, u64) {
        (self.state().lowest, self.throttled.load(Ordering::Relaxed))
    }

    fn report(&self, epoch: u64, signal: Signal) {
        let mut state = self.state();
        match signal {
            Signal::Neutral => {}
            Signal::Success => {
                state.successes += 1;
                if state.successes >= state.limit && state.limit < self.max {
                    state.limit += 1;
                    state.successes = 0;
                    if state.debt > 0 {
                        state.debt -= 1;
                    } else {
                        self.semaphore.add_permits(1);
                    }
                }
            }
            Signal::Throttled => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                if epoch != state.epoch {
                    return;
                }
                let limit = (state.limit / 2).max(1);
                state.debt += state.limit - limit;
                state.limit = limit;
                state.lowest = state.lowest.min(limit);
                state.successes = 0;
                state.epoch += 1;
                // Take back what is not on the wire right now.
                while state.debt > 0 {
                    match self.semaphore.try_acquire() {
                        Ok(permit) => {
                            permit.forget();
                            state.debt -= 1;
                        }
                        Err(_) => break,
                    }
                }
                tracing::info!(
                    in_flight = limit,
                    "the server answered 429 Too Many Requests; fewer requests at once"
                );
            }
        }
    }

    fn release(&self, permit: OwnedSemaphorePermit) {
        let mut state = self.state();
        if state.debt > 0 {
            state.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

impl Permit {
    /// Reports how the attempt went and gives the slot back.
    pub fn finish(self, signal: Signal) {
        self.throttle.report(self.epoch, signal);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.throttle.release(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(throttle: &Throttle) -> usize {
        throttle.state().limit
    }

    fn in_flight_now(throttle: &Arc<Throttle>) -> usize {
        throttle.max - throttle.semaphore.available_permits()
    }

    #[tokio::test]
    async fn halves_on_429_once_per_round() {
        let throttle = Throttle::new(16);
        let permits: Vec<Permit> =
            futures::future::join_all((0..16).map(|_| throttle.acquire())).await;
        assert_eq!(in_flight_now(&throttle), 16);
        // Every request of the round meets a 429: one decrease, not sixteen.
        for permit in permits {
            permit.finish(Signal::Throttled);
        }
        assert_eq!(limit(&throttle), 8);
        assert_eq!(throttle.semaphore.available_permits(), 8);
        assert_eq!(throttle.summary(), (8, 16));

        // A new round at the new limit halves again.
        let permit = throttle.acquire().await;
        permit.finish(Signal::Throttled);
        assert_eq!(limit(&throttle), 4);
        for _ in 0..10 {
            let permit = throttle.acquire().await;
            permit.finish(Signal::Throttled);
        }
        assert_eq!(limit(&throttle), 1, "never below 1");
        assert_eq!(throttle.semaphore.available_permits(), 1);
    }

    #[tokio::test]
    async fn grows_by_one_after_a_run_of_successes_up_to_the_maximum() {
        let throttle = Throttle::new(4);
        for _ in 0..3 {
            throttle.acquire().await.finish(Signal::Throttled);
        }
        assert_eq!(limit(&throttle), 1);
        // limit 1: one success → 2; two more → 3; three more → 4.
        let mut limits = Vec::new();
        for _ in 0..12 {
            throttle.acquire().await.finish(Signal::Success);
            limits.push(limit(&throttle));
        }
        assert_eq!(limits, [2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4]);
        assert_eq!(
            throttle.semaphore.available_permits(),
            4,
            "never above the maximum"
        );
        // Neutral answers (5xx, timeouts) change nothing.
        throttle.acquire().await.finish(Signal::Neutral);
        assert_eq!(limit(&throttle), 4);
    }

    /// Whether a request could go out right now: one poll of `acquire`,
    /// without waiting (a pending acquire dropped gives nothing away).
    fn room_now(throttle: &Arc<Throttle>) -> Option<Permit> {
        use futures::FutureExt as _;
        throttle.acquire().now_or_never()
    }

    #[tokio::test]
    async fn never_more_in_flight_than_the_limit() {
        let throttle = Throttle::new(8);
        let held: Vec<Permit> = futures::future::join_all((0..8).map(|_| throttle.acquire())).await;
        let mut held = held.into_iter();
        assert!(room_now(&throttle).is_none(), "8 of 8 out");
        // A 429 while all 8 are out: the limit is 4 and the debt is paid as
        // permits come back, so another request waits until only 3 are out.
        if let Some(permit) = held.next() {
            permit.finish(Signal::Throttled);
        }
        assert_eq!(limit(&throttle), 4);
        for still_out in [6, 5, 4] {
            drop(held.next());
            assert!(
                room_now(&throttle).is_none(),
                "{still_out} still out: no room under a limit of 4"
            );
        }
        drop(held.next());
        let permit = room_now(&throttle).expect("3 out: room for a fourth");
        assert!(room_now(&throttle).is_none(), "4 out under a limit of 4");
        drop(permit);
        drop(held);
        assert_eq!(throttle.semaphore.available_permits(), 4);
    }
}
