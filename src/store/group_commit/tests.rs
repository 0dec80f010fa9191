//! The group-commit writer's tests: batching, side-by-side writers, panics, a full queue,
//! failing items and an unavailable database.

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

/// Waits until `done` holds, checking every millisecond; fails saying `what` was awaited if
/// it does not within 30 s. (A deadline in time, not in yields: the writer's back-off sleeps
/// in real time, and a fast machine runs through any fixed number of yields sooner.)
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened within 30 s: {what}");
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

#[tokio::test]
async fn an_unavailable_database_fails_try_submit_at_once_and_keeps_submit() {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (is_down, counted, held) = (down.clone(), calls.clone(), gate.clone());
    let group = Arc::new(GroupCommit::spawn(64, move |items: Arc<[u32]>| {
        counted.fetch_add(1, Ordering::SeqCst);
        let (down, held) = (is_down.clone(), held.clone());
        async move {
            if items.contains(&0) {
                // Closed to let it through.
                let _ = held.acquire().await;
            }
            if down.load(Ordering::SeqCst) {
                return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
            }
            Ok(items.to_vec())
        }
    }));
    // Item 0 holds the writer while nine more queue behind it: one batch of nine.
    let first = tokio::spawn({
        let group = group.clone();
        async move { group.try_submit(0).await }
    });
    until("the first batch began", || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    let rest: Vec<_> = (1..10)
        .map(|n| {
            let group = group.clone();
            tokio::spawn(async move { group.try_submit(n).await })
        })
        .collect();
    until("nine writes queued", || {
        group.queue.capacity() == DEFAULT_QUEUE_CAPACITY - 9
    })
    .await;
    gate.close();
    let unreachable = Some(crate::store::Unavailable::Unreachable);
    assert_eq!(first.await.unwrap().unwrap_err().unavailable(), unreachable);
    for handle in rest {
        assert_eq!(
            handle.await.unwrap().unwrap_err().unavailable(),
            unreachable
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one try per batch, none per item against a database that is down"
    );
    // `submit` keeps its write until the database is back.
    let kept = tokio::spawn({
        let group = group.clone();
        async move { group.submit(42).await }
    });
    until("the kept write was tried twice", || {
        calls.load(Ordering::SeqCst) >= 4
    })
    .await;
    assert!(
        !kept.is_finished(),
        "a kept write is not answered while down"
    );
    down.store(false, Ordering::SeqCst);
    assert_eq!(kept.await.unwrap().unwrap(), 42);
    assert_eq!(group.try_submit(7).await.unwrap(), 7, "the writer goes on");
}
