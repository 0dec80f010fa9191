//! The API key objects: a key as shown, its status, and the answers to a roll and a delete.

use serde::Serialize;

use super::schema;
use super::Time;
use crate::ids::ApiKeyId;
use crate::keys::Mode;

/// Where a key stands, derived from its row and the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Inactive,
    Revoked,
    Expired,
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
    #[schema(value_type = schema::Mode)]
    pub mode: Mode,
    /// The mode prefix and six characters, e.g. `hk_live_Q7fK2m`.
    pub display_prefix: String,
    pub scopes: Vec<&'static str>,
    pub status: KeyStatus,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Time,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Time>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Time>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Time>,
    /// The full key: shown once, at creation. Store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The answer to a roll: the new key (token shown once) and the old one with its expiry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RolledApiKey {
    /// Always `api_key_roll`.
    pub object: &'static str,
    pub api_key: ApiKeyObject,
    pub previous: ApiKeyObject,
}

/// The answer to a delete.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeletedApiKey {
    /// Always `api_key`.
    pub object: &'static str,
    #[schema(value_type = String)]
    pub id: ApiKeyId,
    pub livemode: bool,
    pub deleted: bool,
}
