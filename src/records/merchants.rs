//! Merchant records: a merchant about to be created with its first keys and secrets, a stored
//! merchant, and a partial update.

use super::{NewApiKey, NewSecret};
use crate::clock::Timestamp;
use crate::ids::MerchantId;

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
