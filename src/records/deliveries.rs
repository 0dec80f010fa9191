//! Delivery records: endpoints, events, deliveries and their attempts, and what the delivery
//! engine claims and reports.

use std::collections::BTreeMap;

use chrono::Duration;

use crate::clock::Timestamp;
use crate::ids::{DeliveryId, EndpointId, EventId, MerchantId};
use crate::keys::Mode;
use crate::signing::Scheme;

/// What to do with a delivery after an attempt: decided by `delivery::retry`, recorded by the
/// store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    RetryAt(Timestamp),
    /// No more attempts: dead-lettered, can be retried by hand.
    Failed,
    /// 410 Gone: fail this delivery and disable the endpoint.
    FailedAndDisableEndpoint,
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRecord {
    pub id: EndpointId,
    pub merchant_id: MerchantId,
    pub mode: Mode,
    pub url: String,
    pub description: String,
    /// Patterns such as `order.*`; empty = every event.
    pub event_types: Vec<String>,
    pub scheme: Scheme,
    pub enabled: bool,
    pub max_in_flight: u32,
    pub timeout_ms: u32,
    /// Extra headers sent with every delivery.
    pub headers: BTreeMap<String, String>,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<Timestamp>,
    pub failing_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Whether the receiver's TLS certificate is checked. Only a test-mode endpoint may turn
    /// it off (the API refuses it in live mode, and the sender verifies live endpoints anyway).
    pub tls_verify: bool,
}

/// A partial update of an endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub scheme: Option<Scheme>,
    pub enabled: Option<bool>,
    pub max_in_flight: Option<u32>,
    pub timeout_ms: Option<u32>,
    pub headers: Option<BTreeMap<String, String>>,
    pub tls_verify: Option<bool>,
}

impl EndpointPatch {
    /// Whether applying this patch to `current` would carry its sealed headers to another
    /// origin (scheme, host or port): a new URL there without `headers` given again. The
    /// headers are write-only, so keeping them would let whoever may change the URL read them
    /// off at a receiver of their own; the caller must send them again (or `{}`).
    pub fn moves_headers_elsewhere(&self, current: &EndpointRecord) -> bool {
        let Some(url) = &self.url else {
            return false;
        };
        if current.headers.is_empty() || self.headers.is_some() {
            return false;
        }
        match (reqwest::Url::parse(&current.url), reqwest::Url::parse(url)) {
            (Ok(old), Ok(new)) => old.origin() != new.origin(),
            // Not expected (URLs are validated before they are stored); refuse to guess.
            _ => true,
        }
    }
}

/// An event to ingest; `body` is the exact bytes every delivery will carry.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub merchant_id: MerchantId,
    pub mode: Mode,
    pub event_type: String,
    pub body: Vec<u8>,
    pub created_at: Timestamp,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub id: EventId,
    pub mode: Mode,
    pub event_type: String,
    pub body: Vec<u8>,
    pub created_at: Timestamp,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    Delivered,
    /// Every attempt failed (dead letter); can be retried by hand.
    Failed,
    /// Its endpoint or merchant is disabled: out of the queue until re-enabled, when it is
    /// `pending` again.
    Paused,
    /// Still pending or paused after `delivery.max_age_secs` (the reason is in `last_error`);
    /// can be retried by hand like a dead letter.
    Expired,
}

impl DeliveryStatus {
    /// Every status, in the order the API documents them.
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
        DeliveryStatus::Paused,
        DeliveryStatus::Expired,
    ];

    /// The `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Paused => "paused",
            DeliveryStatus::Expired => "expired",
        }
    }
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub mode: Mode,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One attempt, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub started_at: Timestamp,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error_class: Option<String>,
    /// The first KiB of the response body.
    pub response_body: String,
    /// Names of the signature headers sent.
    pub signatures: Vec<String>,
}

/// A claimed delivery with everything needed to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    /// The claim this delivery was taken under (one per batch): only its holder records the
    /// outcome.
    pub lease: String,
    pub event_id: EventId,
    pub event_type: String,
    pub body: Vec<u8>,
    pub attempts: u32,
    pub endpoint: EndpointRecord,
    /// Bumped by every rotation: the sender's secret cache compares it.
    pub secrets_version: i64,
}

/// The end of one attempt.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    pub delivery_id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub record: AttemptRecord,
    pub decision: Decision,
    pub now: Timestamp,
    /// An endpoint failing continuously this long is disabled.
    pub disable_after: Duration,
}

/// Filters of the delivery list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub endpoint: Option<EndpointId>,
    pub event: Option<EventId>,
    pub status: Option<DeliveryStatus>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replayed {
    /// Deliveries made due now.
    pub requeued: u64,
    /// Matching deliveries left alone because they are being sent right now.
    pub skipped_in_flight: u64,
    /// Deliveries created for events of the window that this endpoint had none for (only
    /// with `since`).
    pub backfilled: u64,
}

/// What one pass of the expiry sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    /// Pending deliveries of disabled endpoints or merchants that were paused (left over by an
    /// interrupted pause, or ingested while the endpoint was being disabled).
    pub paused: u64,
    /// Paused deliveries of re-enabled endpoints made pending again (left over likewise).
    pub resumed: u64,
    /// Deliveries that became `expired`.
    pub expired: u64,
}
