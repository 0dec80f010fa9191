//! Keeps the daemon's background tasks (housekeeping, the rotation scheduler, the delivery
//! workers, the work listener) alive. A task that panics, or returns before the daemon is
//! stopping, is logged as an error, counted in `hooksign_background_task_restarts_total`, and
//! started again after a pause that doubles with each failure in a row (up to a minute): it
//! never dies silently, and a task that keeps failing does not spin.
//!
//! Bottom layer (plain types and leaf utilities): imports nothing from the crate.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest pause between two restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A task that ran this long before failing is considered to have recovered: the next pause
/// starts again from the first.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs `start()` as a task of its own, and again whenever it panics or returns while `stop`
/// is not cancelled. Returns once the task has returned after `stop` was cancelled.
pub fn supervise<F, Fut>(
    name: &'static str,
    stop: CancellationToken,
    first_backoff: Duration,
    start: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut backoff = first_backoff;
        loop {
            let started = tokio::time::Instant::now();
            let outcome = tokio::spawn(start()).await;
            if stop.is_cancelled() && outcome.is_ok() {
                return;
            }
            match outcome {
                Ok(()) => tracing::error!(
                    task = name,
                    "background task ended while the daemon is running; restarting it"
                ),
                Err(err) if err.is_panic() => {
                    let panic = err.into_panic();
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|text| (*text).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".to_owned());
                    tracing::error!(task = name, panic = %message, "background task panicked; restarting it");
                }
                Err(err) => {
                    tracing::error!(task = name, error = %err, "background task was cancelled; restarting it")
                }
            }
            metrics::counter!("hooksign_background_task_restarts_total", "task" => name)
                .increment(1);
            if started.elapsed() >= HEALTHY_RUN {
                backoff = first_backoff;
            }
            tokio::select! {
                () = stop.cancelled() => {
                    // Stopping: run it once more so it can do its shutdown work (a last
                    // flush, giving leases back), then end.
                    if let Err(err) = tokio::spawn(start()).await {
                        tracing::error!(task = name, error = %err, "background task failed during shutdown");
                    }
                    return;
                }
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_restarted_until_it_runs_and_ends_with_stop() {
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let token = stop.clone();
        let supervisor = supervise(
            "test task",
            stop.clone(),
            Duration::from_millis(1),
            move || {
                let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
                let token = token.clone();
                async move {
                    if run <= 2 {
                        panic!("bad row number {run}");
                    }
                    token.cancelled().await;
                }
            },
        );
        for _ in 0..200 {
            if runs.load(Ordering::SeqCst) >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3, "restarted after each panic");
        assert!(!supervisor.is_finished(), "the third run is still going");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .expect("the supervisor ends with stop")
            .expect("it does not panic itself");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "not restarted once stopping"
        );
    }

    #[tokio::test]
    async fn a_task_that_returns_early_is_restarted() {
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let supervisor = supervise("early", stop.clone(), Duration::from_millis(1), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        for _ in 0..200 {
            if runs.load(Ordering::SeqCst) >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(runs.load(Ordering::SeqCst) >= 3);
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .expect("the supervisor ends with stop")
            .expect("it does not panic itself");
    }
}
