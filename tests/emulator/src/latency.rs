//! Emulated latency that is what it says.
//!
//! tokio's timer fires on a millisecond tick after the deadline, and its
//! worker parks with a millisecond-rounded timeout: measured here, a request
//! configured for 5 ms took 6.5 ms (1 ms: 2.3 ms), which made every
//! benchmark's emulated server about 30 % slower than its `--latency-ms`
//! and its "ideal" time unreachable. One thread sleeps with the operating
//! system's precision (a futex timeout, tens of microseconds) and wakes each
//! waiter at its deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Instant;

use tokio::sync::oneshot;

type Waiter = (Reverse<Instant>, u64, Wake);
/// A request to be woken: its deadline and how to wake it.
type Request = (Instant, oneshot::Sender<()>);

/// A waiter's wake-up; ordered by nothing (the heap orders by deadline and
/// then by arrival number).
struct Wake(oneshot::Sender<()>);

impl PartialEq for Wake {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Wake {}
impl PartialOrd for Wake {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Wake {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

fn timer() -> &'static mpsc::Sender<Request> {
    static TIMER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("emulator-latency".into())
            .spawn(move || run(receiver))
            .expect("spawn the latency thread");
        sender
    })
}

fn run(receiver: mpsc::Receiver<Request>) {
    let mut waiting: BinaryHeap<Waiter> = BinaryHeap::new();
    let mut arrivals: u64 = 0;
    loop {
        let now = Instant::now();
        while let Some((Reverse(deadline), _, _)) = waiting.peek() {
            if *deadline > now {
                break;
            }
            if let Some((_, _, Wake(wake))) = waiting.pop() {
                let _ = wake.send(());
            }
        }
        let next = match waiting.peek() {
            None => receiver.recv().map_err(|_| ()),
            Some((Reverse(deadline), _, _)) => {
                match receiver.recv_timeout(deadline.saturating_duration_since(now)) {
                    Ok(item) => Ok(item),
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
                }
            }
        };
        match next {
            Ok((deadline, wake)) => {
                arrivals += 1;
                waiting.push((Reverse(deadline), arrivals, Wake(wake)));
            }
            Err(()) => return,
        }
    }
}

/// Waits until `deadline`, within tens of microseconds.
pub(crate) async fn sleep_until(deadline: Instant) {
    if deadline <= Instant::now() {
        return;
    }
    let (wake, woken) = oneshot::channel();
    let sent = timer().send((deadline, wake)).is_ok();
    if !sent || woken.await.is_err() {
        // No latency thread: the coarse timer rather than none.
        tokio::time::sleep_until(deadline.into()).await;
    }
}
