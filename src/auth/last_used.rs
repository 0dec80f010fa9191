//! `last_used_at` without a database write per request: uses are kept in memory and written
//! in one transaction every `auth.last_used_flush_secs` and at shutdown.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::Timestamp;
use crate::ids::ApiKeyId;
use crate::store::{Store, StoreResult};

/// Pending `last_used_at` updates, newest use per key.
#[derive(Debug, Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<ApiKeyId, Timestamp>>,
}

impl LastUsed {
    /// Notes that `key` was used at `at`.
    pub fn record(&self, key: ApiKeyId, at: Timestamp) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = pending.entry(key).or_insert(at);
        if *entry < at {
            *entry = at;
        }
    }

    /// How many keys have an unwritten use.
    pub fn pending(&self) -> usize {
        self.pending.lock().map_or(0, |pending| pending.len())
    }

    /// Writes every pending use. On failure the uses are put back for the next flush.
    pub async fn flush(&self, store: &dyn Store) -> StoreResult<usize> {
        let batch: Vec<_> = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(err) = store.touch_api_keys(&batch).await {
            for (key, at) in batch {
                self.record(key, at);
            }
            return Err(err);
        }
        Ok(batch.len())
    }
}
