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
//! item does not fail the others and every caller gets the error that is really its own.
//!
//! The queue is bounded: [`GroupCommit::submit`] waits for room (back-pressure, for callers
//! that must not drop their write), [`GroupCommit::try_submit`] refuses at once with
//! [`StoreError::Saturated`] (for an API that can tell its client to come back).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{StoreError, StoreResult};

type BatchFuture<O> = Pin<Box<dyn Future<Output = StoreResult<Vec<O>>> + Send>>;
type BatchFn<I, O> = Arc<dyn Fn(Arc<[I]>) -> BatchFuture<O> + Send + Sync>;
type Job<I, O> = (I, oneshot::Sender<StoreResult<O>>);

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
    /// transaction holding it has committed (or failed).
    pub async fn submit(&self, item: I) -> StoreResult<O> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Like [`GroupCommit::submit`], but refuses with [`StoreError::Saturated`] at once, and
    /// without writing anything, when the queue is full.
    pub async fn try_submit(&self, item: I) -> StoreResult<O> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send((item, reply))
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
        let (items, replies): (Vec<I>, Vec<_>) = jobs.drain(..).unzip();
        metrics::histogram!("hooksign_group_commit_size").record(items.len() as f64);
        let items: Arc<[I]> = items.into();
        match run(&batch, items.clone()).await {
            Ok(results) if results.len() == replies.len() => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Corrupt(
                        "a group commit returned the wrong number of results".to_owned(),
                    )));
                }
            }
            Err(_) if replies.len() > 1 => {
                // Find out whose write failed: each one again, alone.
                for (item, reply) in items.iter().cloned().zip(replies) {
                    let result = run(&batch, Arc::from([item]))
                        .await
                        .and_then(|mut one| one.pop().ok_or_else(stopped));
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(err));
                }
            }
        }
    }
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
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Submits `0..count` concurrently; each result beside the value submitted.
    async fn submit_all(
        group: &Arc<GroupCommit<u32, u32>>,
        count: u32,
    ) -> Vec<(u32, StoreResult<u32>)> {
        let handles: Vec<_> = (0..count)
            .map(|n| {
                let group = group.clone();
                tokio::spawn(async move { (n, group.submit(n).await) })
            })
            .collect();
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await.unwrap());
        }
        results
    }

    /// Yields until `done` holds; fails saying `what` was awaited if it never does.
    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..100_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test]
    async fn writes_waiting_behind_a_commit_share_the_next_transactions() {
        // The first transaction is held open until 99 more writes wait behind it: they must
        // then take two transactions (64 + 35, the batch limit), not one each.
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (recorded, held) = (sizes.clone(), gate.clone());
        let group = Arc::new(GroupCommit::spawn(64, move |items: Arc<[u32]>| {
            recorded.lock().unwrap().push(items.len());
            let held = held.clone();
            async move {
                let _pass = held.acquire().await.expect("gate");
                Ok(items.iter().map(|n| n * 2).collect())
            }
        }));
        let first = tokio::spawn({
            let group = group.clone();
            async move { group.submit(0).await }
        });
        until("the first write's transaction began", || {
            !sizes.lock().unwrap().is_empty()
        })
        .await;
        let rest: Vec<_> = (1..100)
            .map(|n| {
                let group = group.clone();
                tokio::spawn(async move { (n, group.submit(n).await) })
            })
            .collect();
        until("99 writes queued", || {
            group.queue.capacity() == DEFAULT_QUEUE_CAPACITY - 99
        })
        .await;
        gate.add_permits(1);
        assert_eq!(first.await.unwrap().unwrap(), 0);
        for handle in rest {
            let (n, doubled) = handle.await.unwrap();
            assert_eq!(doubled.unwrap(), n * 2, "each caller gets its own result");
        }
        assert_eq!(*sizes.lock().unwrap(), [1, 64, 35]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_writers_commit_side_by_side() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (now, peak) = (running.clone(), most.clone());
        let group = Arc::new(GroupCommit::spawn_writers(
            3,
            4,
            move |items: Arc<[u32]>| {
                let (now, peak) = (now.clone(), peak.clone());
                async move {
                    let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(at_once, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok(items.iter().map(|n| n + 1).collect())
                }
            },
        ));
        for (n, plus_one) in submit_all(&group, 40).await {
            assert_eq!(plus_one.unwrap(), n + 1);
        }
        let peak = most.load(Ordering::SeqCst);
        assert!(
            (2..=3).contains(&peak),
            "{peak} batches were in progress at once"
        );
    }

    #[tokio::test]
    async fn a_panicking_batch_fails_its_callers_but_not_the_writer() {
        let group = Arc::new(GroupCommit::spawn(64, |items: Arc<[u32]>| async move {
            assert!(!items.contains(&7), "a bug in the batch function");
            Ok(items.to_vec())
        }));
        for outcome in submit_all(&group, 10).await {
            match outcome {
                (7, result) => assert!(result.is_err()),
                (n, result) => assert_eq!(result.unwrap(), n),
            }
        }
        assert_eq!(
            group.submit(8).await.unwrap(),
            8,
            "the writer is still there"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_try_submit_and_makes_submit_wait() {
        // The writer holds its first batch until released, so the queue behind it fills.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let held = gate.clone();
        let held_by_writer = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let taken = held_by_writer.clone();
        let group = Arc::new(GroupCommit::spawn_bounded(
            1,
            1,
            2,
            move |items: Arc<[u32]>| {
                taken.store(true, Ordering::SeqCst);
                let held = held.clone();
                async move {
                    let _pass = held.acquire().await.expect("gate");
                    Ok(items.to_vec())
                }
            },
        ));
        let writing = tokio::spawn({
            let group = group.clone();
            async move { group.submit(0).await }
        });
        // The writer takes item 0 and holds it: the queue is then empty again.
        until("the writer took item 0", || {
            held_by_writer.load(Ordering::SeqCst)
        })
        .await;
        assert_eq!(group.queue.capacity(), 2);
        let queued: Vec<_> = (1..=2)
            .map(|n| {
                let group = group.clone();
                tokio::spawn(async move { group.try_submit(n).await })
            })
            .collect();
        while group.queue.capacity() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            group.try_submit(3).await,
            Err(StoreError::Saturated)
        ));
        let waiting = tokio::spawn({
            let group = group.clone();
            async move { group.submit(4).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "submit waits for room");
        gate.add_permits(10);
        assert_eq!(writing.await.unwrap().unwrap(), 0);
        for (n, handle) in (1..=2).zip(queued) {
            assert_eq!(handle.await.unwrap().unwrap(), n);
        }
        assert_eq!(waiting.await.unwrap().unwrap(), 4);
    }

    #[tokio::test]
    async fn a_failing_item_fails_alone() {
        let group = Arc::new(GroupCommit::spawn(64, |items: Arc<[u32]>| async move {
            if items.contains(&13) {
                return Err(StoreError::Conflict("unlucky"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Ok(items.to_vec())
        }));
        for outcome in submit_all(&group, 30).await {
            match outcome {
                (13, result) => assert!(matches!(result, Err(StoreError::Conflict("unlucky")))),
                (n, result) => assert_eq!(result.unwrap(), n),
            }
        }
    }
}
