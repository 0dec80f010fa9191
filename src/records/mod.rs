//! Plain records: the values the store reads and writes, as plain structs with no behaviour
//! beyond small pure helpers. They are the bottom layer (plain types), so pure rules (`keys::rules`,
//! `secrets::rotation`) and the services can name them without depending on the store.
//!
//! May use only other plain types (`clock`, `ids`, `keys::Mode`, `keys::ScopeSet`, `signing`);
//! never `store`, `api` or anything above. No OpenAPI schemas here: the
//! API's objects (`api::objects`) are built from these records.

mod audit;
mod deliveries;
mod keys;
mod merchants;
mod retention;
mod secrets;

pub use audit::{AuditCheckpoint, AuditHead, AuditRecord, NewAuditEvent};
pub use deliveries::Swept;
pub use deliveries::{
    AttemptRecord, ClaimedDelivery, Decision, DeliveryFilter, DeliveryRecord, DeliveryStatus,
    EndpointPatch, EndpointRecord, EventRecord, FinishedAttempt, NewEvent, Replayed,
};
pub use keys::{ApiKeyRecord, AuthRecord, KeyKind, NewApiKey};
pub use merchants::{MerchantPatch, MerchantRecord, NewMerchant};
pub use retention::{PruneBatch, PruneCounts, RetentionCutoffs};
pub use secrets::{in_state, NewSecret, PolicyRecord, SecretRecord, SecretState};

/// Cursor pagination: newest first, strictly after `starting_after` in that order. The cursor
/// is the canonical text of a parsed id (see [`crate::ids::Cursor`]), never the client's string.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: u32,
    pub starting_after: Option<crate::ids::Cursor>,
}
