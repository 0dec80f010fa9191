//! The plain values the store reads and writes. Conversion from raw rows happens here, so a
//! corrupt row surfaces as [`StoreError::Corrupt`] rather than a panic.

use crate::clock::{from_millis, Timestamp};
use crate::ids::{ApiKeyId, AuditId, MerchantId, RequestId, SecretId};
use crate::keys::{Mode, ScopeSet};

use super::StoreError;

/// Whose key a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Merchant(Mode),
    Operator,
}

impl KeyKind {
    /// The `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Merchant(mode) => mode.as_str(),
            KeyKind::Operator => "operator",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "operator" => Ok(KeyKind::Operator),
            other => other
                .parse()
                .map(KeyKind::Merchant)
                .map_err(StoreError::Corrupt),
        }
    }
}

/// An API key about to be stored (the raw token is never stored).
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub merchant_id: Option<MerchantId>,
    pub kind: KeyKind,
    pub name: String,
    pub token_hash: String,
    pub display_prefix: String,
    pub scopes: ScopeSet,
    pub created_at: Timestamp,
}

/// A stored API key.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub merchant_id: Option<MerchantId>,
    pub kind: KeyKind,
    pub name: String,
    pub display_prefix: String,
    pub scopes: ScopeSet,
    pub active: bool,
    pub revoked_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// What authentication needs: the key and whether its merchant is disabled.
#[derive(Debug, Clone)]
pub struct AuthRecord {
    pub key: ApiKeyRecord,
    pub merchant_disabled: bool,
}

/// A signing secret about to be stored, already sealed.
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub id: SecretId,
    pub mode: Mode,
    pub fingerprint: String,
    pub key_id: String,
    pub ciphertext: Vec<u8>,
    pub created_at: Timestamp,
}

/// A stored signing secret (still sealed).
#[derive(Debug, Clone)]
pub struct SecretRecord {
    pub id: SecretId,
    pub merchant_id: MerchantId,
    pub mode: Mode,
    pub state: String,
    pub fingerprint: String,
    pub key_id: String,
    pub ciphertext: Vec<u8>,
    pub created_at: Timestamp,
    pub activated_at: Option<Timestamp>,
    pub revert_until: Option<Timestamp>,
    pub complete_at: Option<Timestamp>,
}

/// A merchant with its first keys and active secrets.
#[derive(Debug, Clone)]
pub struct NewMerchant {
    pub id: MerchantId,
    pub name: String,
    pub created_at: Timestamp,
    pub keys: Vec<NewApiKey>,
    pub secrets: Vec<NewSecret>,
}

/// A stored merchant.
#[derive(Debug, Clone, PartialEq)]
pub struct MerchantRecord {
    pub id: MerchantId,
    pub name: String,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A partial update of a merchant.
#[derive(Debug, Clone, Default)]
pub struct MerchantPatch {
    pub name: Option<String>,
    pub disabled: Option<bool>,
    pub updated_at: Option<Timestamp>,
}

/// Cursor pagination: newest first, strictly after `starting_after` in that order. The cursor
/// is the canonical text of a parsed id (see [`crate::ids::Cursor`]), never the client's string.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: u32,
    pub starting_after: Option<crate::ids::Cursor>,
}

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

pub(crate) fn parse_id<T: std::str::FromStr>(text: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|err: T::Err| StoreError::Corrupt(format!("{text}: {err}")))
}

pub(crate) fn opt_time(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(from_millis)
}
