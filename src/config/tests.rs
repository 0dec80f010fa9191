//! Tests of loading (layering, unknown keys), validation (every refusal names its key) and
//! redaction.

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

/// One case of `bad_values_name_their_key`: the mutation `config.FIELD = VALUE` and the key the
/// refusal must name, which is the field's own path unless given first (`"key": ...`).
macro_rules! case {
    (@ $key:expr; $first:ident $(. $rest:ident)* = $value:expr) => {
        (|c: &mut Config| c.$first $(.$rest)* = $value, $key)
    };
    ($key:literal: $first:ident $(. $rest:ident)* = $value:expr) => {
        case!(@ $key; $first $(.$rest)* = $value)
    };
    ($first:ident $(. $rest:ident)* = $value:expr) => {
        case!(@ concat!(stringify!($first) $(, ".", stringify!($rest))*); $first $(.$rest)* = $value)
    };
}

#[test]
fn bad_values_name_their_key() {
    let cases: Vec<(Mutation, &str)> = vec![
        case!(listen = "nowhere".into()),
        case!(database.url = "mysql://x".into()),
        case!(master_key = Some(Redacted("not base64!".into()))),
        case!(master_key = Some(Redacted("c2hvcnQ=".into()))),
        case!(http.request_timeout_secs = 0),
        case!(http.header_read_timeout_secs = 0),
        case!(http.idle_timeout_secs = 0),
        case!(http.max_connections = 0),
        case!(secrets.revert_window_secs = 49 * 3600),
        case!(http.trusted_proxies = vec!["0.0.0.0/0".parse().unwrap()]),
        case!(delivery.lease_secs = 0),
        case!("delivery.default_timeout_ms": delivery.lease_secs = 29),
        case!(delivery.default_timeout_ms = 30_001),
        case!(delivery.max_queued_claims = 0),
        case!(delivery.egress_proxy = Some("socks5://127.0.0.1:1080".into())),
        case!(delivery.egress_proxy = Some("not a url".into())),
        case!(secrets.scheduler_interval_secs = 0),
        case!(auth.last_used_flush_secs = 0),
        case!(delivery.batch_size = 0),
        case!(delivery.batch_size = 1_000_000),
        case!(delivery.max_in_flight = 0),
        case!(delivery.default_endpoint_max_in_flight = 0),
        case!(delivery.default_endpoint_max_in_flight = 101),
        case!(delivery.poll_interval_ms = 0),
        case!(delivery.max_age_secs = 3_600),
        case!(delivery.sweep_interval_secs = 0),
        case!(retention.delivered_days = 0.0),
        case!(retention.failed_days = f64::NAN),
        case!(retention.audit_days = Some(-1.0)),
        case!(retention.batch_rows = 0),
        case!(retention.interval_secs = 0),
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

#[test]
fn retention_takes_fractions_of_a_day_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.set_env("HOOKSIGN_RETENTION__DELIVERED_DAYS", "0.0035");
        jail.set_env("HOOKSIGN_RETENTION__AUDIT_DAYS", "365");
        let config = Config::load(None).expect("loads");
        assert_eq!(config.retention.delivered_days, 0.0035);
        assert_eq!(config.retention.audit_days, Some(365.0));
        assert_eq!(config.retention.failed_days, 30.0);
        config.validate().expect("valid");
        Ok(())
    });
}
