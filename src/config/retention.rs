//! `[retention]`: how long finished deliveries, their attempts, events and audit entries are
//! kept, and how the background pruner paces itself. Plain data; the cutoffs these give at a
//! moment are computed by `crate::delivery::retention`.
//!
//! Windows are in days and take fractions (`0.0035` is about five minutes), so a benchmark
//! can prune after minutes with the same keys a platform sets to weeks.

use serde::{Deserialize, Serialize};

/// `[retention]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Delivered deliveries (and their attempts) are removed this many days after delivery;
    /// an event is removed once it has no delivery left and is this old.
    pub delivered_days: f64,
    /// Failed (dead-letter) and expired deliveries (and their attempts) are removed this many
    /// days after their last attempt.
    pub failed_days: f64,
    /// Audit entries older than this many days are removed (the chain stays verifiable from a
    /// recorded checkpoint). `None`, the default: kept forever.
    pub audit_days: Option<f64>,
    /// Rows one pruning transaction removes at most (deliveries, events or audit entries;
    /// each delivery takes its attempts along).
    pub batch_rows: u32,
    /// Pause between two batches, in milliseconds, so ingest and workers get the (SQLite)
    /// writer in between.
    pub pause_ms: u64,
    /// How often a pruning run starts, in seconds.
    pub interval_secs: u64,
    /// SQLite: pages given back to the file system per `PRAGMA incremental_vacuum` step after
    /// a run that pruned (a page is 4 KiB by default).
    pub vacuum_pages: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            delivered_days: 30.0,
            failed_days: 30.0,
            audit_days: None,
            batch_rows: 1_000,
            pause_ms: 20,
            interval_secs: 60,
            vacuum_pages: 1_024,
        }
    }
}

/// The longest retention window accepted, in days (a hundred years).
pub const MAX_RETENTION_DAYS: f64 = 36_500.0;

/// The most rows one pruning transaction may remove.
pub const MAX_RETENTION_BATCH_ROWS: u32 = 100_000;
