//! API key objects as the API shows them. (The key-management routes build on this.)

use serde::Serialize;

use crate::clock::{serde_rfc3339, Timestamp};
use crate::ids::ApiKeyId;
use crate::keys::Mode;
use crate::store::{ApiKeyRecord, KeyKind};

/// Where a key stands, derived from its row and the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Inactive,
    Revoked,
    Expired,
}

impl KeyStatus {
    /// Revoked beats expired beats inactive.
    pub fn of(key: &ApiKeyRecord, now: Timestamp) -> Self {
        if key.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if key.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else if !key.active {
            KeyStatus::Inactive
        } else {
            KeyStatus::Active
        }
    }
}

/// An API key. The raw `token` appears only in the response that created the key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyObject {
    /// Always `api_key`.
    pub object: &'static str,
    #[schema(value_type = String, example = "key_01JD5Q3Z8X9V0W1Y2Z3A4B5C6D")]
    pub id: ApiKeyId,
    pub name: String,
    pub livemode: bool,
    pub mode: Mode,
    /// The mode prefix and six characters, e.g. `hk_live_Q7fK2m`.
    pub display_prefix: String,
    pub scopes: Vec<&'static str>,
    pub status: KeyStatus,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// The full key: shown once, at creation. Store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl ApiKeyObject {
    /// The public view of a stored merchant key (operator keys are never listed).
    pub fn from_record(key: &ApiKeyRecord, now: Timestamp) -> Self {
        let mode = match key.kind {
            KeyKind::Merchant(mode) => mode,
            KeyKind::Operator => Mode::Live,
        };
        Self {
            object: "api_key",
            id: key.id,
            name: key.name.clone(),
            livemode: mode.is_live(),
            mode,
            display_prefix: key.display_prefix.clone(),
            scopes: key.scopes.names(),
            status: KeyStatus::of(key, now),
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
            expires_at: key.expires_at,
            token: None,
        }
    }
}
