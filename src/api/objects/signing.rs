//! The signature object: the headers `POST /v1/sign` returns for a body.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::signing::Scheme;

/// The headers to send with the body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Signature {
    /// Always `signature`.
    pub object: &'static str,
    pub livemode: bool,
    #[schema(value_type = String)]
    pub scheme: Scheme,
    /// Whether a rotation is pending (the pending signature is included).
    pub pending: bool,
    /// Header name → value.
    pub headers: BTreeMap<String, String>,
}
