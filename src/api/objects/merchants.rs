//! The merchant objects: a merchant, and the answer to its creation with its first keys.

use serde::Serialize;

use super::ApiKeyObject;
use super::Time;
use crate::ids::MerchantId;

/// A merchant. It spans both modes, so it has no `livemode` of its own.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MerchantObject {
    /// Always `merchant`.
    pub object: &'static str,
    #[schema(value_type = String, example = "mch_01JD5Q3Z8X9V0W1Y2Z3A4B5C6D")]
    pub id: MerchantId,
    pub name: String,
    /// A disabled merchant's keys are refused and its deliveries wait.
    pub disabled: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Time,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Time,
}

/// The answer to `POST /v1/merchants`: the merchant and its first keys, tokens included.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedMerchantObject {
    #[serde(flatten)]
    pub merchant: MerchantObject,
    /// The first live and test keys. Their `token`s are shown only here.
    pub api_keys: Vec<ApiKeyObject>,
}
