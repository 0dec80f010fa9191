//! API key records: a key about to be stored, a stored key, and what authentication reads.

use std::str::FromStr;

use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, MerchantId};
use crate::keys::{Mode, ScopeSet};

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
}

impl FromStr for KeyKind {
    type Err = String;

    /// The inverse of [`KeyKind::as_str`].
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "operator" => Ok(KeyKind::Operator),
            other => other.parse().map(KeyKind::Merchant),
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

impl NewApiKey {
    /// The record of this key as stored at creation: active, never used, neither revoked nor
    /// expiring.
    pub fn created_record(&self) -> ApiKeyRecord {
        ApiKeyRecord {
            id: self.id,
            merchant_id: self.merchant_id,
            kind: self.kind,
            name: self.name.clone(),
            display_prefix: self.display_prefix.clone(),
            scopes: self.scopes.clone(),
            active: true,
            revoked_at: None,
            expires_at: None,
            last_used_at: None,
            created_at: self.created_at,
        }
    }
}

/// What authentication needs: the key and whether its merchant is disabled.
#[derive(Debug, Clone)]
pub struct AuthRecord {
    pub key: ApiKeyRecord,
    pub merchant_disabled: bool,
}
