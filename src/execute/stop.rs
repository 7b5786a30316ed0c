//! Stopping a run on a signal without losing its record.
//!
//! GitLab stops a job — cancelled, or over its timeout — with SIGTERM, then
//! SIGKILL after a grace period. On the first SIGTERM (or SIGINT) the run
//! stops sending new writes: no repository is listed any more, every tag not
//! yet attempted is reported "not attempted", and the deletes already on the
//! wire get [`GRACE`] to answer; a delete still unanswered then is reported
//! as such (it may or may not have happened). The report is then written
//! (marked `interrupted`), the count files too, and the run exits 143 (SIGTERM)
//! or 130 (SIGINT). What was deleted before is in the journal in any case.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::domain::exit::Exit;

/// How long the requests on the wire get to answer once a stop is asked.
pub const GRACE: Duration = Duration::from_secs(5);

/// The signal that stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Terminate,
    Interrupt,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
        }
    }

    /// 128 + the signal's number, as a shell reports a process it ended.
    pub fn exit(self) -> Exit {
        match self {
            Signal::Terminate => Exit::Terminated,
            Signal::Interrupt => Exit::Interrupted,
        }
    }
}

/// Whether a stop was asked for, and by which signal; shared by everything
/// that sends writes.
#[derive(Debug, Default)]
pub struct Stop {
    signal: AtomicU8,
    deadline: OnceLock<Instant>,
    asked: Notify,
}

const NONE: u8 = 0;
const TERM: u8 = 1;
const INT: u8 = 2;

impl Stop {
    /// Asks the run to stop; the first signal counts.
    pub fn request(&self, signal: Signal) {
        let value = match signal {
            Signal::Terminate => TERM,
            Signal::Interrupt => INT,
        };
        if self
            .signal
            .compare_exchange(NONE, value, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            let _ = self.deadline.set(Instant::now() + GRACE);
            self.asked.notify_waiters();
        }
    }

    /// The signal that asked for the stop, if one did.
    pub fn signal(&self) -> Option<Signal> {
        match self.signal.load(Ordering::SeqCst) {
            TERM => Some(Signal::Terminate),
            INT => Some(Signal::Interrupt),
            _ => None,
        }
    }

    pub fn requested(&self) -> bool {
        self.signal().is_some()
    }

    /// Runs `work` (a request already decided on) to its end, unless a stop
    /// is asked and its grace runs out first: then `None`.
    pub async fn within_grace<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(work);
        loop {
            let asked = self.asked.notified();
            tokio::pin!(asked);
            // Registered before looking, so a stop asked in between wakes us.
            asked.as_mut().enable();
            if let Some(deadline) = self.deadline.get() {
                return tokio::time::timeout_at(*deadline, work).await.ok();
            }
            tokio::select! {
                done = &mut work => return Some(done),
                () = &mut asked => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_in_flight_gets_the_grace_and_no_more() {
        let stop = Stop::default();
        assert_eq!(stop.within_grace(async { 1 }).await, Some(1));
        let slow = stop.within_grace(tokio::time::sleep(Duration::from_secs(60)));
        let asks = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.request(Signal::Terminate);
            stop.request(Signal::Interrupt);
        };
        let started = Instant::now();
        let (answer, ()) = tokio::join!(slow, asks);
        assert_eq!(answer, None, "cut off after the grace");
        assert_eq!(started.elapsed(), Duration::from_secs(1) + GRACE);
        assert_eq!(
            stop.signal(),
            Some(Signal::Terminate),
            "the first signal counts"
        );
        // Quick work still finishes after a stop.
        assert_eq!(stop.within_grace(async { 2 }).await, Some(2));
    }
}
