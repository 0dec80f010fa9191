//! Group commit: writes that arrive while a transaction is being committed wait, and then share
//! the next transaction. One writer task per queue drains whatever is waiting (up to a limit),
//! hands it to a batch function that writes it in one transaction, and answers each caller with
//! its own result once that transaction has committed.
//!
//! Nothing waits on purpose: a lone write is committed at once. Under load, the time one
//! commit takes is the time the next batch has to fill, so throughput grows with concurrency
//! while each caller still gets its answer only after its data is durable.
//!
//! When a batch fails as a whole, each item is retried in a transaction of its own, so one bad
//! item does not fail the others and every caller gets the error that is really its own. A
//! batch that failed because the database cannot be used right now
//! ([`StoreError::unavailable`]: a cut connection, a refused one, a full disk) is not retried
//! item by item against a dead server: writes queued with [`GroupCommit::try_submit`] fail at
//! once, all with that error, and writes queued with [`GroupCommit::submit`] are kept and the
//! batch is tried again (backing off up to [`RETRY_BACKOFF_MAX`]) until the database takes it or
//! [`KEEP_UNAVAILABLE_FOR`] has passed. The writer goes on with the next batch either way.
//!
//! The queue is bounded: [`GroupCommit::submit`] waits for room (back-pressure, for callers
//! that must not drop their write), [`GroupCommit::try_submit`] refuses at once with
//! [`StoreError::Saturated`] (for an API that can tell its client to come back).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{StoreError, StoreResult};

type BatchFuture<O> = Pin<Box<dyn Future<Output = StoreResult<Vec<O>>> + Send>>;
type BatchFn<I, O> = Arc<dyn Fn(Arc<[I]>) -> BatchFuture<O> + Send + Sync>;

/// A queued write and where its answer goes.
struct Job<I, O> {
    item: I,
    reply: oneshot::Sender<StoreResult<O>>,
    /// Queued with `submit`: kept while the database is unavailable instead of failed.
    keep: bool,
}

/// How long writes queued with [`GroupCommit::submit`] are kept and retried while the
/// database is unavailable, at most; then their callers get the error.
pub const KEEP_UNAVAILABLE_FOR: Duration = Duration::from_secs(300);

/// The longest pause between two tries of a kept batch.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The queue bound of [`GroupCommit::spawn`] and [`GroupCommit::spawn_writers`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 4_096;

/// A queue of writes committed in groups by one writer task.
pub struct GroupCommit<I, O> {
    queue: mpsc::Sender<Job<I, O>>,
}

impl<I, O> std::fmt::Debug for GroupCommit<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<I, O> GroupCommit<I, O>
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    /// Starts the writer task (on the current tokio runtime). `batch` must write every item in
    /// one transaction and return one result per item, in order. The task ends when the
    /// `GroupCommit` is dropped and its queue is empty.
    pub fn spawn<F, Fut>(max_batch: usize, batch: F) -> Self
    where
        F: Fn(Arc<[I]>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = StoreResult<Vec<O>>> + Send + 'static,
    {
        Self::spawn_writers(1, max_batch, batch)
    }

    /// Like [`GroupCommit::spawn`] with `writers` tasks committing batches side by side (for a
    /// database that takes concurrent writers, such as PostgreSQL: while one batch waits for
    /// its commit, the next one is already being written).
    pub fn spawn_writers<F, Fut>(writers: usize, max_batch: usize, batch: F) -> Self
    where
        F: Fn(Arc<[I]>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = StoreResult<Vec<O>>> + Send + 'static,
    {
        Self::spawn_bounded(writers, max_batch, DEFAULT_QUEUE_CAPACITY, batch)
    }

    /// Like [`GroupCommit::spawn_writers`], with at most `capacity` writes waiting for a
    /// transaction.
    pub fn spawn_bounded<F, Fut>(
        writers: usize,
        max_batch: usize,
        capacity: usize,
        batch: F,
    ) -> Self
    where
        F: Fn(Arc<[I]>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = StoreResult<Vec<O>>> + Send + 'static,
    {
        let batch: BatchFn<I, O> = Arc::new(move |items| Box::pin(batch(items)));
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..writers.max(1) {
            tokio::spawn(writer(receiver.clone(), max_batch.max(1), batch.clone()));
        }
        Self { queue }
    }

    /// Queues `item`, waiting for room while the queue is full, and waits until the
    /// transaction holding it has committed (or failed). While the database is unavailable the
    /// write is kept and tried again, for up to [`KEEP_UNAVAILABLE_FOR`].
    pub async fn submit(&self, item: I) -> StoreResult<O> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                item,
                reply,
                keep: true,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Like [`GroupCommit::submit`], but refuses with [`StoreError::Saturated`] at once, and
    /// without writing anything, when the queue is full, and fails at once (not kept) when the
    /// database is unavailable.
    pub async fn try_submit(&self, item: I) -> StoreResult<O> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job {
                item,
                reply,
                keep: false,
            })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => StoreError::Saturated,
                mpsc::error::TrySendError::Closed(_) => stopped(),
            })?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Corrupt("the group-commit writer has stopped".to_owned())
}

async fn writer<I, O>(
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Job<I, O>>>>,
    max_batch: usize,
    batch: BatchFn<I, O>,
) where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    let mut jobs = Vec::with_capacity(max_batch);
    // The receiver is held only while waiting for work, never while writing.
    while receiver.lock().await.recv_many(&mut jobs, max_batch).await > 0 {
        metrics::histogram!("hooksign_group_commit_size").record(jobs.len() as f64);
        let taken = std::mem::replace(&mut jobs, Vec::with_capacity(max_batch));
        commit(&batch, taken).await;
    }
}

/// Writes one batch and answers its callers.
async fn commit<I, O>(batch: &BatchFn<I, O>, jobs: Vec<Job<I, O>>)
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    let items: Arc<[I]> = jobs.iter().map(|job| job.item.clone()).collect();
    match run(batch, items.clone()).await {
        Err(err) if err.unavailable().is_some() => {
            let (kept, failed): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|job| job.keep);
            for job in failed {
                let _ = job.reply.send(Err(copy_of(&err)));
            }
            if !kept.is_empty() {
                keep_until_written(batch, kept, &err).await;
            }
        }
        result => answer(batch, jobs, items, result).await,
    }
}

/// Tries `jobs` again, backing off, while the database is unavailable (for up to
/// [`KEEP_UNAVAILABLE_FOR`]), then answers them with what the last try gave.
async fn keep_until_written<I, O>(batch: &BatchFn<I, O>, jobs: Vec<Job<I, O>>, first: &StoreError)
where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    tracing::warn!(writes = jobs.len(), error = %first, "the database is unavailable; keeping the writes until it is back");
    let items: Arc<[I]> = jobs.iter().map(|job| job.item.clone()).collect();
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_BACKOFF_MAX);
        let result = run(batch, items.clone()).await;
        if matches!(&result, Err(err) if err.unavailable().is_some())
            && started.elapsed() < KEEP_UNAVAILABLE_FOR
        {
            continue;
        }
        if result.is_ok() {
            tracing::info!(
                writes = jobs.len(),
                "the database is back; kept writes written"
            );
        }
        return answer(batch, jobs, items, result).await;
    }
}

/// Answers each caller of a batch with its own result; a batch that failed as a whole is
/// tried again item by item, to find whose write failed.
async fn answer<I, O>(
    batch: &BatchFn<I, O>,
    jobs: Vec<Job<I, O>>,
    items: Arc<[I]>,
    result: StoreResult<Vec<O>>,
) where
    I: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    match result {
        Ok(results) if results.len() == jobs.len() => {
            for (job, result) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(Ok(result));
            }
        }
        Ok(_) => {
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::Corrupt(
                    "a group commit returned the wrong number of results".to_owned(),
                )));
            }
        }
        Err(_) if jobs.len() > 1 => {
            // Find out whose write failed: each one again, alone; once the database itself
            // fails, the rest are answered with that at once.
            let mut unavailable: Option<StoreError> = None;
            for (item, job) in items.iter().cloned().zip(jobs) {
                if let Some(err) = &unavailable {
                    let _ = job.reply.send(Err(copy_of(err)));
                    continue;
                }
                let result = run(batch, Arc::from([item]))
                    .await
                    .and_then(|mut one| one.pop().ok_or_else(stopped));
                if let Err(err) = &result {
                    unavailable = err.unavailable_copy();
                }
                let _ = job.reply.send(result);
            }
        }
        Err(err) => {
            if let Some(job) = jobs.into_iter().next() {
                let _ = job.reply.send(Err(err));
            }
        }
    }
}

/// The same unavailability for another caller.
fn copy_of(err: &StoreError) -> StoreError {
    err.unavailable_copy()
        .unwrap_or_else(|| StoreError::Corrupt(err.to_string()))
}

/// Runs one batch in a task of its own: a batch that panics fails its callers (and is retried
/// item by item like any failed batch) but never takes the writer down with it.
async fn run<I, O>(batch: &BatchFn<I, O>, items: Arc<[I]>) -> StoreResult<Vec<O>>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    match tokio::spawn(batch(items)).await {
        Ok(result) => result,
        Err(err) => {
            tracing::error!(error = %err, "a group commit panicked");
            Err(StoreError::Corrupt(
                "a group commit failed unexpectedly".to_owned(),
            ))
        }
    }
}

/// How many group-commit writers suit a backend: SQLite has one writer at a time anyway;
/// PostgreSQL commits several batches side by side.
pub fn group_commit_writers(store: &dyn super::Store) -> usize {
    if store.backend() == "postgres" {
        4
    } else {
        1
    }
}

#[cfg(test)]
mod tests;
