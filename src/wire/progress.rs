//! Progress lines for long runs: CI logs are not terminals, so a plain line
//! (count, percent, rate) every few seconds instead of a bar.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Progress {
    what: &'static str,
    total: AtomicUsize,
    done: AtomicUsize,
    started: Instant,
}

impl Progress {
    pub fn new(what: &'static str) -> Arc<Progress> {
        Arc::new(Progress {
            what,
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            started: Instant::now(),
        })
    }

    pub fn add_total(&self, n: usize) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    pub fn advance(&self, n: usize) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    fn report(&self) {
        let done = self.done.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let percent = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        let rate = done as f64 / seconds;
        // Totals can grow while a run goes on; the estimate is for what is known.
        let eta = (done > 0 && total > done).then(|| ((total - done) as f64 / rate).ceil() as u64);
        // One line, each figure once: the message names the phase, the
        // fields carry the figures (also as JSON with CLEANUP_LOG_FORMAT=json).
        tracing::info!(
            done,
            total,
            percent = format!("{percent:.0}%"),
            rate = format!("{rate:.1}/s"),
            eta_seconds = eta,
            "{}",
            self.what
        );
    }

    /// Logs a line every `every` until the returned guard is dropped.
    pub fn tick(self: &Arc<Self>, every: Duration) -> ProgressGuard {
        let progress = Arc::clone(self);
        let handle = tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                progress.report();
            }
        });
        ProgressGuard(handle)
    }
}

pub struct ProgressGuard(tokio::task::JoinHandle<()>);

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What a progress line prints with the default (text) log format.
    fn logged(progress: &Progress) -> String {
        let buffer: Arc<Mutex<Vec<u8>>> = Arc::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || Writer(writer.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || progress.report());
        let bytes = buffer.lock().expect("buffer").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_progress_line_gives_each_figure_once() {
        let progress = Progress::new("listing tags");
        progress.add_total(10);
        progress.advance(3);
        let line = logged(&progress);
        assert!(
            line.contains("listing tags done=3 total=10 percent=\"30%\""),
            "{line}"
        );
        assert_eq!(line.matches("30%").count(), 1, "{line}");
        assert!(!line.contains("3/10"), "{line}");
    }
}
