//! Configuration: defaults ← `hooksign.toml` (or `--config FILE`) ← `HOOKSIGN_*` environment
//! variables (nested keys joined with `__`, e.g. `HOOKSIGN_DATABASE__URL`) ← command-line flags.
//!
//! Everything is validated once at start-up; a bad value stops the daemon with one message that
//! names the key, rather than surfacing as a strange failure later.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The file read when `--config` is not given (it may be absent).
pub const DEFAULT_CONFIG_FILE: &str = "hooksign.toml";

/// Top-level keys; environment variables outside this list (such as
/// `HOOKSIGN_TEST_DATABASE_URL`) are not configuration and are ignored.
const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "master_key",
    "master_key_file",
    "master_key_previous",
    "database",
    "http",
    "log",
    "secrets",
    "auth",
    "delivery",
];

/// The whole configuration, as loaded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the admin API listens on.
    pub listen: String,
    /// Where the SQLite database, a generated master key and the first operator key live.
    pub data_dir: PathBuf,
    /// Master key (base64 of 32 bytes) encrypting signing secrets at rest.
    pub master_key: Option<Redacted>,
    /// A file holding the master key (base64), instead of `master_key`.
    pub master_key_file: Option<PathBuf>,
    /// The previous master key (base64) during a master-key rotation: still opens secrets
    /// sealed under it until `hooksign rekey` has re-sealed them all.
    pub master_key_previous: Option<Redacted>,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub secrets: SecretsConfig,
    pub auth: AuthConfig,
    pub delivery: DeliveryConfig,
}

/// `[database]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (embedded, one machine) or `postgres://…` (several daemons, one queue).
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
    /// SQLite only: `full` flushes the write-ahead log to disk at every commit, so an event
    /// answered 202 survives a power loss; `normal` flushes only at checkpoints (faster; a
    /// process crash loses nothing, a power loss can lose the last commits).
    pub sqlite_synchronous: SqliteSynchronousMode,
}

/// `database.sqlite_synchronous`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronousMode {
    #[default]
    Full,
    Normal,
}

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

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `hooksign=debug,info`.
    pub filter: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// `[secrets]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// How long after `complete` the previous secret can be restored, in seconds (≤ 48 h).
    pub revert_window_secs: u64,
    /// How often the scheduler looks for due completions, cron fires and expired secrets.
    pub scheduler_interval_secs: u64,
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
            lookup: crate::delivery::ssrf::DnsLookup::default(),
        }
    }
}

/// A configuration value that must never be printed.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
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

/// The longest revert window the design allows.
pub const MAX_REVERT_WINDOW_SECS: u64 = 48 * 3600;

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("hooksign-data"),
            master_key: None,
            master_key_file: None,
            master_key_previous: None,
            database: DatabaseConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            secrets: SecretsConfig::default(),
            auth: AuthConfig::default(),
            delivery: DeliveryConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://hooksign-data/hooksign.db".into(),
            max_connections: 10,
            sqlite_synchronous: SqliteSynchronousMode::Full,
        }
    }
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

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            filter: "info".into(),
        }
    }
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            revert_window_secs: MAX_REVERT_WINDOW_SECS,
            scheduler_interval_secs: 5,
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

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The message already holds figment's own, so it is not also given as the `source`
    /// (which would print it twice in an error chain).
    #[error("configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl From<Box<figment::Error>> for ConfigError {
    fn from(err: Box<figment::Error>) -> Self {
        ConfigError::Load(err)
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl Config {
    /// The layered figment: defaults, then the file (if `file` is `None`, `hooksign.toml` when
    /// present), then the environment. Callers may merge flags on top before extracting.
    pub fn figment(file: Option<&Path>) -> Figment {
        let file = file.unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
        let env = Env::prefixed("HOOKSIGN_")
            .filter(|key| {
                let top = key.as_str().split("__").next().unwrap_or_default();
                TOP_LEVEL_KEYS
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(top))
            })
            .split("__");
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(env)
    }

    /// Extracts and validates.
    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Defaults ← file ← environment, validated.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("{} does not exist", path.display()),
                ));
            }
        }
        Self::from_figment(Self::figment(file))
    }

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
        tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .map_err(|err| invalid("log.filter", err.to_string()))?;
        Ok(())
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("`{}` is not an address like 127.0.0.1:8080", self.listen),
            )
        })
    }

    /// SQLite or PostgreSQL, from the URL's scheme.
    pub fn database_kind(&self) -> Result<DatabaseKind, ConfigError> {
        let url = &self.database.url;
        if url.starts_with("sqlite:") {
            Ok(DatabaseKind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseKind::Postgres)
        } else {
            Err(invalid(
                "database.url",
                "unknown database scheme: use sqlite://PATH or postgres://USER@HOST/DB",
            ))
        }
    }

    /// The configuration as TOML with secrets redacted, for `hooksign config show`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for key in [&mut shown.master_key, &mut shown.master_key_previous] {
            if key.is_some() {
                *key = Some(Redacted("[redacted]".into()));
            }
        }
        shown.database.url = redact_url_password(&shown.database.url);
        if let Some(proxy) = &mut shown.delivery.egress_proxy {
            *proxy = redact_url_password(proxy);
        }
        toml_string(&shown)
    }
}

fn toml_string(config: &Config) -> String {
    toml::to_string_pretty(config)
        .unwrap_or_else(|err| format!("# unprintable configuration: {err}\n"))
}

/// Replaces the password in `scheme://user:password@host/...` with `[redacted]`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first `/`, `?` or `#`; a password may itself hold `@`, so the
    // user information ends at the authority's last `@`.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:[redacted]@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    // libpq also takes the password (and a client key's passphrase) as query parameters.
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _))
                        if name.eq_ignore_ascii_case("password")
                            || name.eq_ignore_ascii_case("sslpassword") =>
                    {
                        format!("{name}=[redacted]")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Decodes a base64 master key; it must be exactly 32 bytes.
pub fn decode_master_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "is not valid base64 (expected base64 of 32 random bytes)".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("decodes to {} bytes; it must be exactly 32", bytes.len()))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    type Mutation = fn(&mut Config);

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        let proxied = Config {
            delivery: DeliveryConfig {
                egress_proxy: Some("http://user:pw@smokescreen.internal:4750".into()),
                ..DeliveryConfig::default()
            },
            ..Config::default()
        };
        proxied.validate().unwrap();
        assert!(!proxied.to_redacted_toml().contains(":pw@"));
    }

    #[test]
    fn endpoint_timeouts_may_last_half_the_lease_and_at_most_30_seconds() {
        for (lease_secs, max) in [(60, 30_000), (20, 10_000), (2, 1_000), (3_600, 30_000)] {
            let config = DeliveryConfig {
                lease_secs,
                ..DeliveryConfig::default()
            };
            assert_eq!(config.max_endpoint_timeout_ms(), max, "{lease_secs}");
        }
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "hooksign.toml",
                "listen = \"127.0.0.1:9000\"\n[database]\nmax_connections = 3\n",
            )?;
            jail.set_env("HOOKSIGN_DATABASE__MAX_CONNECTIONS", "7");
            jail.set_env("HOOKSIGN_TEST_DATABASE_URL", "postgres://ignored");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.listen, "127.0.0.1:9000");
            assert_eq!(config.database.max_connections, 7);
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(Mutation, &str)> = vec![
            (|c| c.listen = "nowhere".into(), "listen"),
            (|c| c.database.url = "mysql://x".into(), "database.url"),
            (
                |c| c.master_key = Some(Redacted("not base64!".into())),
                "master_key",
            ),
            (
                |c| c.master_key = Some(Redacted("c2hvcnQ=".into())),
                "master_key",
            ),
            (
                |c| c.http.request_timeout_secs = 0,
                "http.request_timeout_secs",
            ),
            (
                |c| c.http.header_read_timeout_secs = 0,
                "http.header_read_timeout_secs",
            ),
            (|c| c.http.idle_timeout_secs = 0, "http.idle_timeout_secs"),
            (|c| c.http.max_connections = 0, "http.max_connections"),
            (
                |c| c.secrets.revert_window_secs = 49 * 3600,
                "secrets.revert_window_secs",
            ),
            (
                |c| c.http.trusted_proxies = vec!["0.0.0.0/0".parse().unwrap()],
                "http.trusted_proxies",
            ),
            (|c| c.delivery.lease_secs = 0, "delivery.lease_secs"),
            (
                |c| c.delivery.lease_secs = 29,
                "delivery.default_timeout_ms",
            ),
            (
                |c| c.delivery.default_timeout_ms = 30_001,
                "delivery.default_timeout_ms",
            ),
            (
                |c| c.delivery.max_queued_claims = 0,
                "delivery.max_queued_claims",
            ),
            (
                |c| c.delivery.egress_proxy = Some("socks5://127.0.0.1:1080".into()),
                "delivery.egress_proxy",
            ),
            (
                |c| c.delivery.egress_proxy = Some("not a url".into()),
                "delivery.egress_proxy",
            ),
            (
                |c| c.secrets.scheduler_interval_secs = 0,
                "secrets.scheduler_interval_secs",
            ),
            (
                |c| c.auth.last_used_flush_secs = 0,
                "auth.last_used_flush_secs",
            ),
            (|c| c.delivery.batch_size = 0, "delivery.batch_size"),
            (|c| c.delivery.batch_size = 1_000_000, "delivery.batch_size"),
            (|c| c.delivery.max_in_flight = 0, "delivery.max_in_flight"),
            (
                |c| c.delivery.default_endpoint_max_in_flight = 0,
                "delivery.default_endpoint_max_in_flight",
            ),
            (
                |c| c.delivery.default_endpoint_max_in_flight = 101,
                "delivery.default_endpoint_max_in_flight",
            ),
            (
                |c| c.delivery.poll_interval_ms = 0,
                "delivery.poll_interval_ms",
            ),
        ];
        for (mutate, key) in cases {
            let mut config = Config::default();
            mutate(&mut config);
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(&format!("`{key}`")), "{message}");
        }
    }

    #[test]
    fn trusted_proxies_are_cidrs_and_a_bad_one_names_the_key() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "hooksign.toml",
                "[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\"]\n",
            )?;
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.http.trusted_proxies.len(), 2);
            jail.create_file(
                "hooksign.toml",
                "[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            )?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("trusted_proxies"), "{err}");
            jail.create_file("hooksign.toml", "")?;
            jail.set_env("HOOKSIGN_HTTP__TRUSTED_PROXIES", "[\"192.0.2.0/24\"]");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                config.http.trusted_proxies,
                vec!["192.0.2.0/24".parse::<ipnet::IpNet>().unwrap()]
            );
            Ok(())
        });
        assert!(Config::default().http.trusted_proxies.is_empty());
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("hooksign.toml", "lisen = \"127.0.0.1:9000\"\n")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("lisen"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn redaction_hides_passwords_and_keys() {
        let config = Config {
            master_key: Some(Redacted(
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            )),
            database: DatabaseConfig {
                url: "postgres://app:hunter2@db/hooksign".into(),
                ..DatabaseConfig::default()
            },
            ..Config::default()
        };
        let shown = config.to_redacted_toml();
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("AAAAAAAA"));
        assert!(shown.contains("postgres://app:[redacted]@db/hooksign"));
    }

    #[test]
    fn url_passwords_are_redacted_wherever_libpq_takes_them() {
        for (url, shown) in [
            (
                "postgres://hs:Pa@ss@db:5432/hs",
                "postgres://hs:[redacted]@db:5432/hs",
            ),
            (
                "postgres://db/hs?user=hs&password=QueryPass&sslmode=require",
                "postgres://db/hs?user=hs&password=[redacted]&sslmode=require",
            ),
            (
                "postgres://hs:secret@db/hs?sslpassword=KeyPass",
                "postgres://hs:[redacted]@db/hs?sslpassword=[redacted]",
            ),
            ("postgres://hs@db/hs", "postgres://hs@db/hs"),
            (
                "sqlite://hooksign-data/hooksign.db",
                "sqlite://hooksign-data/hooksign.db",
            ),
        ] {
            assert_eq!(redact_url_password(url), shown, "{url}");
        }
    }
}
