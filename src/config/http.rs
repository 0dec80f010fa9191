//! `[http]` and `[auth]`: the admin API's connections, request limits and authentication
//! limits. Plain data with defaults; checked by `Config::validate` (in `validate.rs`).

use serde::{Deserialize, Serialize};

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// A request taking longer than this is answered 503.
    pub request_timeout_secs: u64,
    /// On shutdown, how long in-flight requests get to finish.
    pub shutdown_timeout_secs: u64,
    /// Proxies (CIDRs, e.g. `10.0.0.0/8`) whose `X-Forwarded-For` is believed: behind them the
    /// client is the right-most forwarded address that is not itself a trusted proxy. Empty
    /// (the default): the TCP peer is the client and `X-Forwarded-For` is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A connection must send a request's headers within this many seconds (from opening,
    /// or from the first byte of a later request).
    pub header_read_timeout_secs: u64,
    /// A keep-alive connection with no request in flight for this many seconds is closed.
    pub idle_timeout_secs: u64,
    /// Open client connections at most (lowered at start to what the file-descriptor limit
    /// allows). At the cap, the connection idle the longest makes room for a new one.
    pub max_connections: usize,
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require `X-Nonce` on every mutating request.
    pub require_nonce: bool,
    /// Sustained requests per second allowed per API key.
    pub rate_per_sec: u32,
    /// Burst size of the per-key token bucket.
    pub burst: u32,
    /// Failed authentications allowed per client IP per minute.
    pub failed_auth_per_minute: u32,
    /// How often batched `last_used_at` updates are written.
    pub last_used_flush_secs: u64,
    /// SQLite only: how long an API key read stays cached at most (0 = read on every
    /// request). Any change through hooksign, in this or another process on the same database
    /// file, is seen on the next request regardless; this bounds only changes made with raw SQL.
    pub key_cache_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 256 * 1024,
            request_timeout_secs: 30,
            shutdown_timeout_secs: 20,
            trusted_proxies: Vec::new(),
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 4096,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            require_nonce: false,
            rate_per_sec: 100,
            burst: 200,
            failed_auth_per_minute: 30,
            last_used_flush_secs: 5,
            key_cache_secs: 5,
        }
    }
}
