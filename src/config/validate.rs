//! Validation: every value that could otherwise fail later is checked once at start-up, and a
//! bad one is refused with a message naming its key. Parses with `reqwest::Url` (the egress
//! proxy) and `tracing_subscriber::EnvFilter` (the log filter); does no I/O.

use super::{
    decode_master_key, invalid, redact_url_password, Config, ConfigError, MAX_BATCH_SIZE,
    MAX_ENDPOINT_IN_FLIGHT, MAX_ENDPOINT_TIMEOUT_MS, MAX_RETENTION_BATCH_ROWS, MAX_RETENTION_DAYS,
    MAX_REVERT_WINDOW_SECS,
};

impl Config {
    /// Checks every value that could otherwise fail later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.database_kind()?;
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if self.http.body_limit_bytes == 0 {
            return Err(invalid("http.body_limit_bytes", "must be greater than 0"));
        }
        if self.http.request_timeout_secs == 0 {
            return Err(invalid(
                "http.request_timeout_secs",
                "must be greater than 0",
            ));
        }
        if self.http.shutdown_timeout_secs == 0 {
            return Err(invalid(
                "http.shutdown_timeout_secs",
                "must be greater than 0",
            ));
        }
        if let Some(everything) = self
            .http
            .trusted_proxies
            .iter()
            .find(|net| net.prefix_len() == 0)
        {
            return Err(invalid(
                "http.trusted_proxies",
                format!("`{everything}` would believe X-Forwarded-For from any client; list your proxies' own ranges"),
            ));
        }
        for (key, value) in [
            (
                "http.header_read_timeout_secs",
                self.http.header_read_timeout_secs,
            ),
            ("http.idle_timeout_secs", self.http.idle_timeout_secs),
            ("http.max_connections", self.http.max_connections as u64),
            (
                "delivery.max_endpoints_per_mode",
                u64::from(self.delivery.max_endpoints_per_mode),
            ),
            (
                "delivery.ingest_queue_capacity",
                self.delivery.ingest_queue_capacity as u64,
            ),
            (
                "database.acquire_timeout_secs",
                self.database.acquire_timeout_secs,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.secrets.revert_window_secs == 0
            || self.secrets.revert_window_secs > MAX_REVERT_WINDOW_SECS
        {
            return Err(invalid(
                "secrets.revert_window_secs",
                format!("must be between 1 and {MAX_REVERT_WINDOW_SECS} (48 hours)"),
            ));
        }
        if self.auth.rate_per_sec == 0
            || self.auth.burst == 0
            || self.auth.failed_auth_per_minute == 0
        {
            return Err(invalid(
                "auth",
                "rate_per_sec, burst and failed_auth_per_minute must be greater than 0",
            ));
        }
        // Zero here would panic a background task (a zero-length interval) or quietly stop
        // delivery altogether.
        let at_least_one: [(&'static str, u64); 7] = [
            (
                "secrets.scheduler_interval_secs",
                self.secrets.scheduler_interval_secs,
            ),
            ("auth.last_used_flush_secs", self.auth.last_used_flush_secs),
            ("delivery.batch_size", u64::from(self.delivery.batch_size)),
            ("delivery.max_in_flight", self.delivery.max_in_flight as u64),
            (
                "delivery.default_endpoint_max_in_flight",
                u64::from(self.delivery.default_endpoint_max_in_flight),
            ),
            ("delivery.poll_interval_ms", self.delivery.poll_interval_ms),
            (
                "delivery.max_queued_claims",
                self.delivery.max_queued_claims as u64,
            ),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Err(invalid(key, "must be at least 1"));
        }
        if self.delivery.default_endpoint_max_in_flight > MAX_ENDPOINT_IN_FLIGHT {
            return Err(invalid(
                "delivery.default_endpoint_max_in_flight",
                format!("must be at most {MAX_ENDPOINT_IN_FLIGHT}, the most an endpoint may set"),
            ));
        }
        if self.delivery.batch_size > MAX_BATCH_SIZE {
            return Err(invalid(
                "delivery.batch_size",
                format!("must be at most {MAX_BATCH_SIZE}"),
            ));
        }
        if let Some(key) = &self.master_key {
            decode_master_key(&key.0).map_err(|message| invalid("master_key", message))?;
        }
        if !(0.0..1.0).contains(&self.delivery.retry_jitter) {
            return Err(invalid(
                "delivery.retry_jitter",
                "must be at least 0 and below 1",
            ));
        }
        if let Some(proxy) = &self.delivery.egress_proxy {
            let shown = redact_url_password(proxy);
            let url = reqwest::Url::parse(proxy)
                .map_err(|_| invalid("delivery.egress_proxy", format!("`{shown}` is not a URL")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(
                    "delivery.egress_proxy",
                    format!("`{shown}` must be an http:// or https:// proxy URL with a host"),
                ));
            }
        }
        self.delivery.validate_expiry()?;
        if self.delivery.lease_secs == 0 {
            return Err(invalid("delivery.lease_secs", "must be at least 1"));
        }
        let max_timeout = self.delivery.max_endpoint_timeout_ms();
        if !(100..=max_timeout).contains(&self.delivery.default_timeout_ms) {
            return Err(invalid(
                "delivery.default_timeout_ms",
                format!(
                    "must be between 100 and {max_timeout}: an attempt may last at most half of delivery.lease_secs (and {MAX_ENDPOINT_TIMEOUT_MS} ms), so it is never claimed again while under way"
                ),
            ));
        }
        if let Some(key) = &self.master_key_previous {
            decode_master_key(&key.0).map_err(|message| invalid("master_key_previous", message))?;
        }
        if self.master_key.is_some() && self.master_key_file.is_some() {
            return Err(invalid(
                "master_key_file",
                "give either master_key or master_key_file, not both",
            ));
        }
        self.validate_retention()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .map_err(|err| invalid("log.filter", err.to_string()))?;
        Ok(())
    }
}

impl Config {
    /// `[retention]`: windows are positive and finite, the pacing non-zero.
    fn validate_retention(&self) -> Result<(), ConfigError> {
        let retention = &self.retention;
        let windows = [
            ("retention.delivered_days", Some(retention.delivered_days)),
            ("retention.failed_days", Some(retention.failed_days)),
            ("retention.audit_days", retention.audit_days),
        ];
        for (key, days) in windows {
            if let Some(days) = days {
                if !(days.is_finite() && days > 0.0 && days <= MAX_RETENTION_DAYS) {
                    return Err(invalid(
                        key,
                        format!("must be a number of days above 0 and at most {MAX_RETENTION_DAYS} (fractions allowed: 0.0035 is about 5 minutes)"),
                    ));
                }
            }
        }
        if retention.batch_rows == 0 || retention.batch_rows > MAX_RETENTION_BATCH_ROWS {
            return Err(invalid(
                "retention.batch_rows",
                format!("must be between 1 and {MAX_RETENTION_BATCH_ROWS}"),
            ));
        }
        for (key, value) in [
            ("retention.interval_secs", retention.interval_secs),
            ("retention.vacuum_pages", u64::from(retention.vacuum_pages)),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}
