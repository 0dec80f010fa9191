//! The retention task: every `retention.interval_secs` one pass removes what has aged out
//! (the rules are [`super::retention`]'s), in batches of `retention.batch_rows` rows, each in
//! its own short transaction, pausing `retention.pause_ms` between batches so ingest and the
//! workers get the SQLite writer in between. A pass:
//!
//! 1. removes the history of endpoints deleted through the API (their deliveries, attempts,
//!    then the endpoint row), leaving deliveries being sent for a later pass;
//! 2. removes finished deliveries past their window, with their attempts;
//! 3. removes events past the window that no delivery refers to any more;
//! 4. with `retention.audit_days`, removes each audit chain's oldest entries, recording its
//!    checkpoint;
//! 5. on SQLite, gives the freed pages back to the file system (`incremental_vacuum`).
//!
//! Each pass adds to `hooksign_retention_pruned_rows_total{table=…}` and, when it removed
//! anything, logs one line with the counts and its duration. Service layer: it holds the
//! store, the clock and its part of the configuration.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::retention::cutoffs;
use crate::clock::Clock;
use crate::config::RetentionConfig;
use crate::records::{PruneBatch, PruneCounts, RetentionCutoffs};
use crate::store::{Store, StoreResult};

/// Removes aged-out rows in batches; see the module documentation.
pub struct Pruner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: RetentionConfig,
    /// One pass at a time (the background task and `tick` from a test or the CLI).
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Pruner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pruner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Pruner {
    /// A pruner over `store` with the `[retention]` settings, on `clock`.
    pub fn new(config: &RetentionConfig, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            config: config.clone(),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// What is old enough to go now.
    pub fn cutoffs(&self) -> RetentionCutoffs {
        cutoffs(&self.config, self.clock.now())
    }

    /// What a pass now would remove, by table; removes nothing.
    pub async fn preview(&self) -> StoreResult<PruneCounts> {
        self.store.retention_preview(&self.cutoffs()).await
    }

    /// Runs one whole pass now and returns what it removed.
    pub async fn tick(&self) -> StoreResult<PruneCounts> {
        self.pass(&CancellationToken::new()).await
    }

    /// Runs a pass every `retention.interval_secs` (the first one interval after start) until
    /// `stop`; a pass that fails is logged and tried again at the next interval.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let every = Duration::from_secs(self.config.interval_secs);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = interval.tick() => {
                    if let Err(err) = self.pass(&stop).await {
                        tracing::warn!(error = %err, "retention pass failed; trying again at the next interval");
                    }
                }
            }
        }
    }

    async fn pass(&self, stop: &CancellationToken) -> StoreResult<PruneCounts> {
        let _one_at_a_time = self.running.lock().await;
        let started = std::time::Instant::now();
        let cutoffs = self.cutoffs();
        let limit = self.config.batch_rows;
        let mut pruned = PruneCounts::default();
        for endpoint in self.store.deleted_endpoints().await? {
            let now = self.clock.now();
            self.batches(stop, &mut pruned, |_| {
                self.store.purge_deleted_endpoint(endpoint, now, limit)
            })
            .await?;
        }
        self.batches(stop, &mut pruned, |after| async move {
            self.store
                .prune_deliveries(&cutoffs, after.as_deref(), limit)
                .await
        })
        .await?;
        self.batches(stop, &mut pruned, |after| async move {
            self.store
                .prune_events(&cutoffs, after.as_deref(), limit)
                .await
        })
        .await?;
        if cutoffs.audit_before.is_some() {
            for chain in self.store.audit_chains().await? {
                self.batches(stop, &mut pruned, |_| {
                    self.store.prune_audit_chain(&chain, &cutoffs, limit)
                })
                .await?;
            }
        }
        if pruned.total() > 0 {
            self.reclaim_space(stop).await?;
            tracing::info!(
                deliveries = pruned.deliveries,
                delivery_attempts = pruned.delivery_attempts,
                events = pruned.events,
                audit_events = pruned.audit_events,
                endpoints = pruned.endpoints,
                duration_ms = started.elapsed().as_millis() as u64,
                "retention pass pruned rows"
            );
        }
        Ok(pruned)
    }

    /// Runs `batch` (given the last id of the previous batch) until a batch removes fewer
    /// rows than the limit or `stop`, pausing in between; counts into `pruned` and metrics.
    async fn batches<F, Fut>(
        &self,
        stop: &CancellationToken,
        pruned: &mut PruneCounts,
        mut batch: F,
    ) -> StoreResult<()>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: std::future::Future<Output = StoreResult<PruneBatch>>,
    {
        let mut after: Option<String> = None;
        loop {
            let done = batch(after.take()).await?;
            record(&done.counts);
            pruned.add(&done.counts);
            if done.rows < u64::from(self.config.batch_rows) || stop.is_cancelled() {
                return Ok(());
            }
            after = done.last_id;
            self.pause().await;
        }
    }

    /// SQLite: frees pages `retention.vacuum_pages` at a time until none is left over.
    async fn reclaim_space(&self, stop: &CancellationToken) -> StoreResult<()> {
        let mut left = u64::MAX;
        loop {
            let now_left = self.store.reclaim_space(self.config.vacuum_pages).await?;
            // Stops when done, or when writers refill the free list as fast as it empties.
            if now_left == 0 || now_left >= left || stop.is_cancelled() {
                return Ok(());
            }
            left = now_left;
            self.pause().await;
        }
    }

    async fn pause(&self) {
        match self.config.pause_ms {
            0 => tokio::task::yield_now().await,
            ms => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
    }
}

/// Adds a batch's counts to `hooksign_retention_pruned_rows_total{table=…}`.
fn record(counts: &PruneCounts) {
    for (table, rows) in counts.by_table() {
        if rows > 0 {
            metrics::counter!("hooksign_retention_pruned_rows_total", "table" => table)
                .increment(rows);
        }
    }
}
