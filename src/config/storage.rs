//! `[database]` and `[secrets]`, and the helpers for what they hold: which database a URL
//! names, URL password redaction and master-key decoding. Plain data and pure functions.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

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
    /// PostgreSQL: how long a request waits for a connection (a free one when all are busy, a
    /// new one while the server refuses connections) before it is answered 503
    /// `database_unavailable`. Short, so an outage fails requests in seconds instead of holding
    /// them. (SQLite keeps its fixed 15 s, the same as its busy timeout.)
    pub acquire_timeout_secs: u64,
}

impl DatabaseConfig {
    /// The database named in logs: the SQLite file, or the PostgreSQL URL without its
    /// password.
    pub fn location(&self) -> String {
        match self
            .url
            .strip_prefix("sqlite://")
            .or_else(|| self.url.strip_prefix("sqlite:"))
        {
            Some(path) => path.split('?').next().unwrap_or(path).to_owned(),
            None => redact_url_password(&self.url),
        }
    }
}

/// `database.sqlite_synchronous`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronousMode {
    #[default]
    Full,
    Normal,
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

/// The longest revert window the design allows.
pub const MAX_REVERT_WINDOW_SECS: u64 = 48 * 3600;

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://hooksign-data/hooksign.db".into(),
            max_connections: 10,
            sqlite_synchronous: SqliteSynchronousMode::Full,
            acquire_timeout_secs: 10,
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

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
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
mod tests {
    use super::*;

    #[test]
    fn the_database_is_named_by_its_file_or_its_url_without_the_password() {
        let named = |url: &str| {
            DatabaseConfig {
                url: url.to_owned(),
                ..DatabaseConfig::default()
            }
            .location()
        };
        assert_eq!(named("sqlite://data/hooksign.db"), "data/hooksign.db");
        assert_eq!(named("sqlite:///var/lib/h.db?mode=rwc"), "/var/lib/h.db");
        assert_eq!(
            named("postgres://app:hunter2@db:5432/hooksign"),
            "postgres://app:[redacted]@db:5432/hooksign"
        );
    }
}
