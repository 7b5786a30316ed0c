//! SIGTERM and SIGINT for a run: the first asks it to stop (see
//! `execute::stop`), a second ends the process at once — as a user pressing
//! Ctrl-C twice, or a runner that does not wait, expects.

use std::sync::Arc;

use crate::execute::stop::{Signal, Stop};

/// Watches for the signals for as long as the run lasts (the task ends with
/// the runtime). Where they cannot be watched, the run goes on without.
pub fn watch(stop: Arc<Stop>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("SIGTERM/SIGINT cannot be watched: a stopped run ends without its report (the journal keeps what was deleted)");
        return;
    };
    tokio::spawn(async move {
        let mut received = 0;
        loop {
            let signal = tokio::select! {
                _ = terminate.recv() => Signal::Terminate,
                _ = interrupt.recv() => Signal::Interrupt,
            };
            received += 1;
            if received == 1 {
                tracing::warn!(
                    signal = signal.name(),
                    "stopping: no new delete is sent, those on the wire get 5 s; the report is written with what was done (a second signal ends the process at once)"
                );
                stop.request(signal);
            } else {
                eprintln!(
                    "registry-cleanup: {} again: ending at once; the journal lists what was deleted",
                    signal.name()
                );
                // The one exit outside `main`: a second signal means now,
                // and the run's tasks would not return in time to say so.
                std::process::exit(signal.exit() as i32);
            }
        }
    });
}
