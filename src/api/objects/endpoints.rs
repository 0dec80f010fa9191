//! The endpoint objects: an endpoint as shown (its header values masked) and the result of
//! a test ping.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Time;
use crate::ids::EndpointId;
use crate::signing::Scheme;

/// An endpoint as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointObject {
    /// Always `endpoint`.
    pub object: &'static str,
    #[schema(value_type = String, example = "ep_01JD5Q3Z8X9V0W1Y2Z3A4B5C6D")]
    pub id: EndpointId,
    pub livemode: bool,
    pub url: String,
    pub description: String,
    /// Event type patterns (`order.*`); empty = every event.
    pub event_types: Vec<String>,
    /// `bolt`, `standard` or `both`.
    #[schema(value_type = String)]
    pub scheme: Scheme,
    pub enabled: bool,
    pub max_in_flight: u32,
    pub timeout_ms: u32,
    /// Custom header names, each with a masked value (`••••`): the values (usually the
    /// receiver's credentials) are write-only, sealed at rest, and sent only to the receiver.
    #[schema(example = json!({"Authorization": "••••"}))]
    pub headers: BTreeMap<String, String>,
    /// Why the daemon (or an admin) disabled it.
    pub disabled_reason: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<Time>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Time,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Time,
    /// Whether the receiver's TLS certificate is checked (always `true` in live mode).
    pub tls_verify: bool,
}

/// What the API shows instead of a custom header's value (not a valid header value, so it
/// cannot be sent back by mistake as one).
pub const MASKED_HEADER_VALUE: &str = "••••";

/// The result of a test ping.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PingResult {
    /// Always `endpoint_test`.
    pub object: &'static str,
    /// Whether the endpoint answered 2xx.
    pub succeeded: bool,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error_class: Option<String>,
    /// The first KiB of the response.
    pub response_body: String,
    /// The signature headers sent (with the pending one during a rotation).
    pub signature_headers: Vec<String>,
    /// Whether a rotation is pending (so the new secret was tested too).
    pub pending_signature: bool,
}
