//! The audit event object: one entry of the merchant's hash chain.

use serde::Serialize;

use super::Time;

/// One audit entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEventObject {
    /// Always `audit_event`.
    pub object: &'static str,
    pub id: String,
    /// `true`/`false` for mode-specific entries, absent for merchant-wide ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub livemode: Option<bool>,
    /// What was done, e.g. `api_key.revoke`, `signing_secret.complete`.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// The API key that did it (absent for the daemon's own actions, such as scheduled rotations).
    pub actor_key_id: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Time,
    /// Position and hash in the merchant's hash chain (`hooksign audit verify` checks it).
    pub sequence: i64,
    pub hash: String,
}
