//! The delivery objects: a delivery and its attempts.

use serde::Serialize;

use super::schema;
use super::Time;
use crate::ids::{DeliveryId, EndpointId, EventId};
use crate::records::DeliveryStatus;

/// One attempt as shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptObject {
    pub attempt: u32,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Time,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// `timeout` (no complete answer within the endpoint's timeout), `connection` (could not
    /// connect), `connection_reset` (closed or reset before the answer was complete),
    /// `protocol_error` (the answer was not HTTP), `tls_error` (the handshake failed, e.g. an
    /// expired or self-signed certificate), `forbidden_address` (the SSRF policy refused every
    /// address of the host), `redirect`, `client_error`, `server_error`; null on success.
    pub error_class: Option<String>,
    /// The first KiB of the response body (or the connection error).
    pub response_body: String,
    /// Signature headers sent with the attempt.
    pub signature_headers: Vec<String>,
}

/// A delivery.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryObject {
    /// Always `delivery`.
    pub object: &'static str,
    #[schema(value_type = String, example = "dlv_01JD5Q3Z8X9V0W1Y2Z3A4B5C6D")]
    pub id: DeliveryId,
    #[schema(value_type = String)]
    pub event_id: EventId,
    #[schema(value_type = String)]
    pub endpoint_id: EndpointId,
    pub livemode: bool,
    #[schema(value_type = schema::DeliveryStatus)]
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[schema(value_type = String, format = DateTime)]
    pub next_attempt_at: Time,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<Time>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_history: Option<Vec<AttemptObject>>,
}
