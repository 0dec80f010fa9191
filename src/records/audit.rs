//! Audit records: an event to append, a stored entry of a chain, and a chain's head.

use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, AuditId, MerchantId, RequestId};
use crate::keys::Mode;

/// An audit event to append; the store fills in the chain position and hashes.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub id: AuditId,
    pub merchant_id: Option<MerchantId>,
    pub mode: Option<Mode>,
    pub actor_key_id: Option<ApiKeyId>,
    pub action: &'static str,
    pub target: String,
    pub request_id: Option<RequestId>,
    pub details: serde_json::Value,
    pub created_at: Timestamp,
}

impl NewAuditEvent {
    /// The chain the event belongs to: its merchant's, or the operator's.
    pub fn chain(&self) -> String {
        self.merchant_id
            .map_or_else(|| "operator".to_owned(), |id| id.to_string())
    }
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: String,
    pub chain: String,
    pub seq: i64,
    pub merchant_id: Option<String>,
    pub mode: Option<String>,
    pub actor_key_id: Option<String>,
    pub action: String,
    pub target: String,
    pub request_id: Option<String>,
    pub details: String,
    pub created_at: i64,
    pub prev_hash: String,
    pub hash: String,
    /// The audit key the entry was chained with (`None`: an unkeyed entry from before keyed
    /// chains, never accepted by verification).
    pub key_id: Option<String>,
}

/// The last entry of an audit chain, as recorded beside the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
}

/// Where a chain starts after its oldest entries were pruned: the last pruned entry's `seq`
/// and `hash` (the next entry's `prev_hash`), with a MAC under the audit key so that whoever
/// can only write the database cannot move it forward over entries they deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
    pub mac: String,
}
