//! Retention records: the moments before which rows may go (computed by
//! `crate::delivery::retention` from the configuration and the time), and what a pruning pass
//! removed or would remove.

use crate::clock::Timestamp;

/// What is old enough to go, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCutoffs {
    /// Delivered deliveries last changed before this go (with their attempts).
    pub delivered_before: Timestamp,
    /// Failed and expired deliveries whose last attempt was before this go.
    pub failed_before: Timestamp,
    /// Events created before this go once no delivery refers to them.
    pub events_before: Timestamp,
    /// Audit entries created before this go (`None`: audit entries are kept forever).
    pub audit_before: Option<Timestamp>,
    /// Ids (UUIDv7, sorted by time) at or past this moment are not looked at: the row
    /// rules above are checked on every row, this only bounds the scan of the primary key.
    pub scan_ids_before: Timestamp,
}

/// Rows removed (or, for a dry run, that would be removed), by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCounts {
    pub deliveries: u64,
    pub delivery_attempts: u64,
    pub events: u64,
    pub audit_events: u64,
    /// Deleted endpoints whose last delivery went, and with it the endpoint row.
    pub endpoints: u64,
}

impl PruneCounts {
    /// Every row counted.
    pub fn total(&self) -> u64 {
        self.deliveries + self.delivery_attempts + self.events + self.audit_events + self.endpoints
    }

    /// `(table, rows)` for each table, in a fixed order (logs, metrics, `hooksign prune`).
    pub fn by_table(&self) -> [(&'static str, u64); 5] {
        [
            ("deliveries", self.deliveries),
            ("delivery_attempts", self.delivery_attempts),
            ("events", self.events),
            ("audit_events", self.audit_events),
            ("endpoints", self.endpoints),
        ]
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &PruneCounts) {
        self.deliveries += other.deliveries;
        self.delivery_attempts += other.delivery_attempts;
        self.events += other.events;
        self.audit_events += other.audit_events;
        self.endpoints += other.endpoints;
    }
}

/// One batch of a pruning pass: what it removed and the last id it removed (the next batch
/// of the pass starts after it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneBatch {
    pub counts: PruneCounts,
    pub last_id: Option<String>,
    /// Rows the batch's main table lost (deliveries, events or audit entries): fewer than the
    /// batch size means the pass is done with that table.
    pub rows: u64,
}
