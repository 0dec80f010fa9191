//! Loading: the layered figment (defaults ← file ← `HOOKSIGN_*` environment), the derived
//! values (listen address, database kind) and the redacted TOML `hooksign config show` prints.

use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;

use super::{
    invalid, redact_url_password, Config, ConfigError, DatabaseKind, Redacted, DEFAULT_CONFIG_FILE,
};

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
    "retention",
];

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
