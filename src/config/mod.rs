//! Configuration: defaults ← `hooksign.toml` (or `--config FILE`) ← `HOOKSIGN_*` environment
//! variables (nested keys joined with `__`, e.g. `HOOKSIGN_DATABASE__URL`) ← command-line flags.
//!
//! Everything is validated once at start-up; a bad value stops the daemon with one message that
//! names the key, rather than surfacing as a strange failure later.
//!
//! Layout: this file holds the whole [`Config`], `[log]`, the error type and the re-exports of
//! the sections (`http`: `[http]` and `[auth]`; `delivery`; `storage`: `[database]` and
//! `[secrets]`; `retention`), loading (`load`) and validation (`validate`), so every path is
//! `crate::config::*`. Bottom layer (plain types); may use
//! `crate::delivery::ssrf` (the resolver hook in [`DeliveryConfig`]).

mod delivery;
mod http;
mod load;
mod retention;
mod storage;
mod validate;

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use delivery::{
    DeliveryConfig, MAX_BATCH_SIZE, MAX_ENDPOINT_IN_FLIGHT, MAX_ENDPOINT_TIMEOUT_MS,
};
pub use http::{AuthConfig, HttpConfig};
pub use retention::{RetentionConfig, MAX_RETENTION_BATCH_ROWS, MAX_RETENTION_DAYS};
pub use storage::{
    decode_master_key, redact_url_password, DatabaseConfig, DatabaseKind, SecretsConfig,
    SqliteSynchronousMode, MAX_REVERT_WINDOW_SECS,
};

/// The file read when `--config` is not given (it may be absent).
pub const DEFAULT_CONFIG_FILE: &str = "hooksign.toml";

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
    pub retention: RetentionConfig,
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
            retention: RetentionConfig::default(),
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

/// A configuration value that must never be printed.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
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
