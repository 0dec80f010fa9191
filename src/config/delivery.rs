//! `[delivery]`: the engine's concurrency, timeouts and retry schedule, and the hard limits an
//! endpoint's own settings are held to. Plain data; may use `crate::delivery::ssrf` (foundation
//! layer, for the resolver hook).

use serde::{Deserialize, Serialize};

/// `[delivery]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Allow `http://` endpoint URLs in live mode (test mode always allows them).
    pub allow_http: bool,
    /// Allow endpoints on loopback, private, link-local and similar addresses (local
    /// development and tests). Off by default: the SSRF guard refuses them.
    pub allow_private_networks: bool,
    /// Send every delivery through this HTTP(S) proxy (an egress proxy such as Smokescreen,
    /// which then enforces the address policy). Proxies named in the environment
    /// (`HTTP_PROXY`…) are never used.
    pub egress_proxy: Option<String>,
    /// Deliveries in flight at once across all endpoints (this instance).
    pub max_in_flight: usize,
    /// Default per-endpoint in-flight cap for new endpoints.
    pub default_endpoint_max_in_flight: u32,
    /// Default request timeout for new endpoints, in milliseconds.
    pub default_timeout_ms: u32,
    /// How many due deliveries a worker claims at once.
    pub batch_size: u32,
    /// Claims held in memory behind endpoints at their in-flight cap, at most, across all
    /// endpoints; past it claims are given back to the queue.
    pub max_queued_claims: usize,
    /// How long a claim lasts before another worker may take the delivery over, in seconds.
    pub lease_secs: u64,
    /// Fallback poll interval when no wake-up arrives, in milliseconds.
    pub poll_interval_ms: u64,
    /// Delay after each failed attempt, in seconds; its length is the number of retries.
    pub retry_schedule_secs: Vec<u64>,
    /// ± fraction of jitter on each retry delay.
    pub retry_jitter: f64,
    /// The longest `Retry-After` honoured, in seconds.
    pub retry_after_cap_secs: u64,
    /// An endpoint failing continuously this long is disabled, in seconds.
    pub disable_after_secs: u64,
    /// Endpoints a merchant may have in each mode.
    pub max_endpoints_per_mode: u32,
    /// Events waiting for the ingest transaction at most; beyond, `POST /v1/events` answers
    /// 503 with `Retry-After` instead of queueing without bound.
    pub ingest_queue_capacity: usize,
    /// A delivery still pending or paused this long after it was created becomes `expired`
    /// (the reason in `last_error`; it can be retried by hand), in seconds. At least the retry
    /// schedule's length, so no delivery expires before its last attempt.
    pub max_age_secs: u64,
    /// How often the sweep that expires deliveries (and finishes an interrupted pause or
    /// resume) runs, in seconds.
    pub sweep_interval_secs: u64,
    /// Where the SSRF guard looks endpoint names up: the system resolver, unless a test
    /// answers instead. Not configurable from a file or the environment.
    #[doc(hidden)]
    #[serde(skip)]
    pub lookup: crate::delivery::ssrf::DnsLookup,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private_networks: false,
            egress_proxy: None,
            max_in_flight: 256,
            default_endpoint_max_in_flight: 10,
            default_timeout_ms: 15_000,
            batch_size: 64,
            max_queued_claims: 4_096,
            lease_secs: 60,
            poll_interval_ms: 1_000,
            retry_schedule_secs: vec![5, 300, 1_800, 7_200, 18_000, 36_000, 36_000],
            retry_jitter: 0.2,
            retry_after_cap_secs: 3_600,
            disable_after_secs: 5 * 24 * 3_600,
            max_endpoints_per_mode: 100,
            ingest_queue_capacity: 1_024,
            max_age_secs: 3 * 24 * 3_600,
            sweep_interval_secs: 60,
            lookup: crate::delivery::ssrf::DnsLookup::default(),
        }
    }
}

/// The most deliveries in flight an endpoint may allow.
pub const MAX_ENDPOINT_IN_FLIGHT: u32 = 100;

/// The most deliveries one claim takes.
pub const MAX_BATCH_SIZE: u32 = 10_000;

/// The longest request timeout an endpoint may set, in milliseconds, whatever the lease (see
/// [`DeliveryConfig::max_endpoint_timeout_ms`]).
pub const MAX_ENDPOINT_TIMEOUT_MS: u32 = 30_000;

impl DeliveryConfig {
    /// The longest timeout an endpoint may set: half the delivery lease, and at most
    /// [`MAX_ENDPOINT_TIMEOUT_MS`]. An attempt under way then always ends (the other half is
    /// the margin for connecting, recording the outcome, a busy database) before its lease
    /// does, so another worker never claims it again and sends it a second time at once.
    pub fn max_endpoint_timeout_ms(&self) -> u32 {
        u32::try_from(self.lease_secs.saturating_mul(500))
            .unwrap_or(u32::MAX)
            .min(MAX_ENDPOINT_TIMEOUT_MS)
    }
}

/// The longest `max_age_secs` (ten years).
pub const MAX_DELIVERY_AGE_SECS: u64 = 10 * 365 * 86_400;

impl DeliveryConfig {
    /// `max_age_secs` as a duration (held to [`MAX_DELIVERY_AGE_SECS`]).
    pub fn max_age(&self) -> chrono::Duration {
        let secs = self.max_age_secs.min(MAX_DELIVERY_AGE_SECS);
        chrono::Duration::seconds(i64::try_from(secs).unwrap_or(0))
    }

    /// Checks `max_age_secs` against the retry schedule and the sweep's interval.
    pub(super) fn validate_expiry(&self) -> Result<(), super::ConfigError> {
        if self.sweep_interval_secs == 0 {
            return Err(super::invalid(
                "delivery.sweep_interval_secs",
                "must be at least 1",
            ));
        }
        let schedule: u64 = self
            .retry_schedule_secs
            .iter()
            .fold(0, |sum, delay| sum.saturating_add(*delay));
        if self.max_age_secs < schedule.max(1) {
            return Err(super::invalid(
                "delivery.max_age_secs",
                format!(
                    "must be at least {} s, the length of delivery.retry_schedule_secs: a delivery must not expire before its last attempt",
                    schedule.max(1)
                ),
            ));
        }
        if self.max_age_secs > MAX_DELIVERY_AGE_SECS {
            return Err(super::invalid(
                "delivery.max_age_secs",
                format!("must be at most {MAX_DELIVERY_AGE_SECS} (ten years)"),
            ));
        }
        Ok(())
    }
}
