//! What reaches the disk: database files readable by their owner only, and no secret or
//! token in plaintext in any table (sealed idempotent replays, sealed endpoint headers).

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{get_ok, Backend, TestApp};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(
    database_files_are_private_to_their_owner,
    idempotent_replays_keep_no_secret_in_the_database_and_audit_secret_replays,
    plaintext_idempotent_responses_of_an_older_version_are_sealed_at_start,
    endpoint_headers_are_sealed_shown_masked_and_still_delivered,
    plaintext_endpoint_headers_of_an_older_version_are_sealed_at_start,
    rekey_reseals_endpoint_headers_and_stored_responses,
);

/// Every byte the database holds: on SQLite the database file and its write-ahead log as
/// they are while the daemon runs; on PostgreSQL every value of every column of every table
/// ([`stored_values`]).
pub async fn raw_database(app: &TestApp) -> Vec<u8> {
    match app.backend {
        Backend::Sqlite => {
            let mut bytes = std::fs::read(app.data_dir.join("hooksign.db")).unwrap();
            bytes.extend(std::fs::read(app.data_dir.join("hooksign.db-wal")).unwrap_or_default());
            bytes
        }
        Backend::Postgres => {
            let mut bytes = Vec::new();
            for stored in stored_values(app).await {
                bytes.extend(stored.value);
                bytes.push(b'\n');
            }
            bytes
        }
    }
}

/// Every API token (`hk_(live|test|op)_` + 38 base62 characters) in `bytes`.
pub fn tokens_in(bytes: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for start in 0..bytes.len() {
        let rest = &bytes[start..];
        for prefix in ["hk_live_", "hk_test_", "hk_op_"] {
            if let Some(body) = rest.strip_prefix(prefix.as_bytes()) {
                if body.len() >= 38 && body[..38].iter().all(u8::is_ascii_alphanumeric) {
                    found.push(String::from_utf8_lossy(&rest[..prefix.len() + 38]).into_owned());
                }
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Every token or secret a JSON answer shows: token-shaped strings, 64-hex secrets and their
/// `whsec_` forms.
fn secrets_shown(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            let hex64 = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
            if hex64 || text.starts_with("whsec_") || !tokens_in(text.as_bytes()).is_empty() {
                out.push(text.clone());
            }
        }
        Value::Array(items) => items.iter().for_each(|item| secrets_shown(item, out)),
        Value::Object(map) => map.values().for_each(|item| secrets_shown(item, out)),
        _ => {}
    }
}

/// POSTs `body` with `Idempotency-Key: key`, then again; checks the replay is the same answer
/// marked replayed, and returns the answer.
async fn post_twice(
    app: &TestApp,
    token: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let send = || {
        let request = app
            .authed(Method::POST, path, token)
            .header("idempotency-key", key);
        match &body {
            Some(body) => request.json(body),
            None => request,
        }
        .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), status, "{path}");
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = first.bytes().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(second.status(), status, "{path} replayed");
    assert_eq!(
        second
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true"),
        "{path}"
    );
    assert_eq!(
        second.bytes().await.unwrap(),
        first,
        "{path}: the original body"
    );
    serde_json::from_slice(&first).unwrap()
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

async fn database_files_are_private_to_their_owner(app: TestApp) {
    let merchant = app.create_merchant("Private files").await;
    let created = app
        .authed(Method::POST, "/v1/api-keys", &merchant.test_token)
        .json(&json!({ "name": "writes something" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    #[cfg(unix)]
    {
        assert_eq!(mode(&app.data_dir), 0o700, "the data folder");
        assert_eq!(mode(&app.data_dir.join("operator.key")), 0o600);
        if app.backend == Backend::Sqlite {
            for name in [
                "hooksign.db",
                "hooksign.db-wal",
                "hooksign.db-shm",
                "hooksign.db-hooksign-keys",
            ] {
                assert!(app.data_dir.join(name).exists(), "{name} exists");
            }
        }
        // Every file the daemon keeps there, whatever it is, is its owner's alone.
        for entry in std::fs::read_dir(&app.data_dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

async fn idempotent_replays_keep_no_secret_in_the_database_and_audit_secret_replays(app: TestApp) {
    let operator = app.operator_token.clone();
    let receiver = Receiver::start().await;
    // Every POST of the walkthrough, as its route in the OpenAPI document.
    let mut covered = std::collections::BTreeSet::new();
    let mut shown = Vec::new();
    let mut sent = 0;
    let mut post =
        async |token: &str, route: &str, id: Option<&str>, body: Option<Value>, status| {
            covered.insert(route.to_owned());
            sent += 1;
            let path = match id {
                Some(id) => route.replace("{id}", id),
                None => route.to_owned(),
            };
            let key = format!("walk-{sent}");
            let answer = post_twice(&app, token, &path, &key, body, status).await;
            secrets_shown(&answer, &mut shown);
            answer
        };
    let merchant = post(
        &operator,
        "/v1/merchants",
        None,
        Some(json!({ "name": "Sealed replays" })),
        201,
    )
    .await;
    let token = merchant["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["mode"] == "test")
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = token.as_str();
    let created = post(
        token,
        "/v1/api-keys",
        None,
        Some(json!({ "name": "ci" })),
        201,
    )
    .await;
    let rolled = post(
        token,
        "/v1/api-keys/{id}/roll",
        created["id"].as_str(),
        Some(json!({ "expires_in": 3600 })),
        201,
    )
    .await;
    post(
        token,
        "/v1/api-keys/{id}/revoke",
        rolled["previous"]["id"].as_str(),
        None,
        200,
    )
    .await;
    // A whole rotation, reverted, then one more started and cancelled.
    post(token, "/v1/signing-secret/initiate", None, None, 200).await;
    post(token, "/v1/signing-secret/reveal", None, None, 200).await;
    post(token, "/v1/signing-secret/complete", None, None, 200).await;
    post(token, "/v1/signing-secret/revert", None, None, 200).await;
    post(token, "/v1/signing-secret/initiate", None, None, 200).await;
    post(token, "/v1/signing-secret/cancel", None, None, 200).await;
    post(token, "/v1/sign", None, Some(json!({ "body": "{}" })), 200).await;
    let endpoint = post(
        token,
        "/v1/endpoints",
        None,
        Some(json!({
            "url": receiver.url,
            "headers": { "Authorization": "Bearer rcv-secret-walkthrough-0001" },
        })),
        201,
    )
    .await;
    let endpoint = endpoint["id"].as_str().unwrap().to_owned();
    post(token, "/v1/endpoints/{id}/test", Some(&endpoint), None, 200).await;
    post(
        token,
        "/v1/events",
        None,
        Some(json!({ "type": "order.created", "payload": { "order": "ord_1" } })),
        202,
    )
    .await;
    let delivery = delivered_once_more(&app, token, 1).await;
    post(
        token,
        "/v1/deliveries/{id}/retry",
        Some(&delivery),
        None,
        200,
    )
    .await;
    delivered_once_more(&app, token, 2).await;
    post(
        token,
        "/v1/endpoints/{id}/replay",
        Some(&endpoint),
        Some(json!({ "status": ["delivered"] })),
        200,
    )
    .await;
    delivered_once_more(&app, token, 3).await;

    // The walkthrough sent every POST the API has.
    let doc = get_ok(&app, &operator, "/openapi.json").await;
    let posts: std::collections::BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, item)| item.get("post").is_some())
        .map(|(path, _)| path.clone())
        .collect();
    assert_eq!(covered, posts, "every POST route, with an Idempotency-Key");
    // Three merchant tokens, two more keys, two pending secrets (hex and whsec), the
    // revealed active secret and the signature.
    assert!(shown.len() >= 10, "{}", shown.len());

    let columns = stored_values(&app).await;
    let tables: std::collections::BTreeSet<&str> =
        columns.iter().map(|c| c.table.as_str()).collect();
    for table in [
        "merchants",
        "api_keys",
        "signing_secrets",
        "idempotency_keys",
        "endpoints",
        "events",
        "deliveries",
        "delivery_attempts",
        "audit_events",
        "audit_keys",
        "audit_heads",
    ] {
        assert!(tables.contains(table), "read {table} from the schema");
    }
    for stored in &columns {
        assert_no_secret(stored, &shown);
    }
    if app.backend == Backend::Sqlite {
        // And the file bytes, free pages and the write-ahead log included.
        let raw = raw_database(&app).await;
        assert!(
            raw.len() > 10_000,
            "read the database ({} bytes)",
            raw.len()
        );
        assert_no_secret(
            &Stored {
                table: "(file)".into(),
                column: "hooksign.db and -wal".into(),
                value: raw,
            },
            &shown,
        );
    }
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer rcv-secret-walkthrough-0001")),
        "the header value is still delivered"
    );

    // The replays that handed a token or secret out again are audited, with the route and
    // never the secret; the others are not.
    let merchant_id = merchant["id"].as_str().unwrap();
    let chain = app.state.store.audit_chain(merchant_id).await.unwrap();
    let replays: Vec<_> = chain
        .iter()
        .filter(|e| e.action == "idempotency.replay")
        .map(|e| e.target.clone())
        .collect();
    assert_eq!(
        replays,
        [
            "POST /v1/api-keys",
            "POST /v1/api-keys/{id}/roll",
            "POST /v1/signing-secret/initiate",
            "POST /v1/signing-secret/reveal",
            "POST /v1/signing-secret/initiate",
        ]
    );
    let operator_replays: Vec<_> = app
        .state
        .store
        .audit_chain("operator")
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "idempotency.replay")
        .collect();
    assert_eq!(operator_replays.len(), 1);
    assert_eq!(operator_replays[0].target, "POST /v1/merchants");
    assert!(operator_replays[0].details.contains("walk-1"));
    let everything = format!("{chain:?}{operator_replays:?}");
    for secret in &shown {
        assert!(
            !everything.contains(secret.as_str()),
            "{secret} in the audit log"
        );
    }
}

/// Waits until the merchant's only delivery has been delivered `times` times; its id.
async fn delivered_once_more(app: &TestApp, token: &str, times: u64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let listed = get_ok(app, token, "/v1/deliveries").await;
        let delivery = &listed["data"][0];
        if delivery["status"] == "delivered" && delivery["attempts"].as_u64() >= Some(times) {
            return delivery["id"].as_str().unwrap().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 20 s for delivery number {times}: {listed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// One column's values, as bytes, as the database holds them.
pub struct Stored {
    pub table: String,
    pub column: String,
    pub value: Vec<u8>,
}

/// Every value of every column of every table, read from the schema (not listed by hand):
/// on SQLite each value cast to its bytes, on PostgreSQL `bytea` as its bytes and every other
/// type as text.
pub async fn stored_values(app: &TestApp) -> Vec<Stored> {
    let mut out = Vec::new();
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.config.database.url)
                .await
                .unwrap();
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c \
                 WHERE m.type = 'table'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            for (table, column) in columns {
                let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(&format!(
                    "SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\""
                ))
                .fetch_all(&pool)
                .await
                .unwrap();
                out.extend(values.into_iter().flatten().map(|value| Stored {
                    table: table.clone(),
                    column: column.clone(),
                    value,
                }));
            }
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.config.database.url)
                .await
                .unwrap();
            let columns: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT c.table_name::text, c.column_name::text, c.data_type::text \
                 FROM information_schema.columns c JOIN information_schema.tables t \
                 ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            for (table, column, kind) in columns {
                let sql = if kind == "bytea" {
                    format!("SELECT \"{column}\" FROM \"{table}\"")
                } else {
                    format!("SELECT convert_to(\"{column}\"::text, 'UTF8') FROM \"{table}\"")
                };
                let values: Vec<Option<Vec<u8>>> =
                    sqlx::query_scalar(&sql).fetch_all(&pool).await.unwrap();
                out.extend(values.into_iter().flatten().map(|value| Stored {
                    table: table.clone(),
                    column: column.clone(),
                    value,
                }));
            }
            pool.close().await;
        }
    }
    assert!(out.len() > 100, "read the database ({} values)", out.len());
    out
}

/// The columns that hold 64-hex digests by design: a key's token hash (SHA-256 of a
/// 228-bit random token), the audit chain's keyed hashes, and the request fingerprint of an
/// idempotency record. A 64-hex value anywhere else fails the scan: it may be a secret.
const DIGEST_COLUMNS: [(&str, &str); 5] = [
    ("api_keys", "token_hash"),
    ("audit_events", "hash"),
    ("audit_events", "prev_hash"),
    ("audit_heads", "hash"),
    ("idempotency_keys", "fingerprint"),
];

/// No token, none of the `shown` secrets (as text, or as the raw bytes a hex or `whsec_`
/// secret stands for), and no 64-hex value outside the digest columns.
pub fn assert_no_secret(stored: &Stored, shown: &[String]) {
    let place = format!("{}.{}", stored.table, stored.column);
    let tokens = tokens_in(&stored.value).len();
    assert_eq!(tokens, 0, "{tokens} tokens in {place}");
    for secret in shown {
        assert!(
            !contains(&stored.value, secret),
            "a shown secret in {place}"
        );
        let raw = if let Some(encoded) = secret.strip_prefix("whsec_") {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        } else {
            hex::decode(secret).ok()
        };
        if let Some(raw) = raw.filter(|raw| raw.len() >= 16) {
            assert!(
                !stored.value.windows(raw.len()).any(|w| w == raw.as_slice()),
                "a shown secret's raw bytes in {place}"
            );
        }
    }
    let digest = DIGEST_COLUMNS.contains(&(stored.table.as_str(), stored.column.as_str()));
    if !digest && stored.table != "(file)" {
        let runs = stored
            .value
            .split(|b| !b.is_ascii_hexdigit())
            .filter(|run| run.len() >= 64)
            .count();
        assert_eq!(runs, 0, "a 64-hex value in {place}");
    }
}

async fn plaintext_idempotent_responses_of_an_older_version_are_sealed_at_start(app: TestApp) {
    let merchant = app.create_merchant("Legacy replays").await;
    let send = || {
        app.authed(Method::POST, "/v1/api-keys", &merchant.test_token)
            .header("idempotency-key", "legacy")
            .json(&json!({ "name": "legacy" }))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first = first.text().await.unwrap();
    let token = serde_json::from_str::<Value>(&first).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // What an older version stored: the body as is.
    let plain = match app.backend {
        Backend::Sqlite => format!("CAST('{first}' AS BLOB)"),
        Backend::Postgres => format!("convert_to('{first}', 'UTF8')"),
    };
    app.execute(&format!(
        "UPDATE idempotency_keys SET body = {plain}, body_key_id = NULL WHERE idempotency_key = 'legacy'"
    ))
    .await
    .unwrap();
    assert!(contains(&raw_database(&app).await, &token));
    let (app, _) = app.restart().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys WHERE body_key_id IS NULL")
            .await,
        0
    );
    if app.backend == Backend::Postgres {
        // Old row versions stay in PostgreSQL's pages until VACUUM; the live rows are sealed.
        app.execute("VACUUM FULL idempotency_keys").await.unwrap();
    }
    assert!(
        !contains(&raw_database(&app).await, &token),
        "sealed at start"
    );
    let replayed = app
        .authed(Method::POST, "/v1/api-keys", &merchant.test_token)
        .header("idempotency-key", "legacy")
        .json(&json!({ "name": "legacy" }))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(replayed.text().await.unwrap(), first);
}

async fn endpoint_headers_are_sealed_shown_masked_and_still_delivered(app: TestApp) {
    let merchant = app.create_merchant("Sealed headers").await;
    let token = merchant.test_token.clone();
    let receiver = Receiver::start().await;
    let credential = format!("Bearer rcv-secret-{}", uuid::Uuid::now_v7().simple());
    let masked = json!({ "Authorization": "••••", "X-Team": "••••" });
    let created = app
        .authed(Method::POST, "/v1/endpoints", &token)
        .json(&json!({
            "url": receiver.url,
            "headers": { "Authorization": credential, "X-Team": "payments" },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        created["headers"], masked,
        "not even the creation echoes a value"
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let shown = get_ok(&app, &token, &format!("/v1/endpoints/{id}")).await;
    assert_eq!(shown["headers"], masked);
    let listed = get_ok(&app, &token, "/v1/endpoints").await;
    assert_eq!(listed["data"][0]["headers"], masked);
    assert!(!listed.to_string().contains("rcv-secret"));
    assert!(!contains(&raw_database(&app).await, &credential));
    assert!(!contains(&raw_database(&app).await, "rcv-secret-"));

    // The receiver still gets the real value.
    let sent = app
        .authed(Method::POST, "/v1/events", &token)
        .json(&json!({ "type": "order.created", "payload": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].header("authorization"), Some(credential.as_str()));
    assert_eq!(got[0].header("x-team"), Some("payments"));

    // A new value replaces the old one, sealed too.
    let rotated = format!("Bearer rcv-secret-{}", uuid::Uuid::now_v7().simple());
    let patched = app
        .authed(Method::PATCH, &format!("/v1/endpoints/{id}"), &token)
        .json(&json!({ "headers": { "Authorization": rotated } }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["headers"], json!({ "Authorization": "••••" }));
    let sent = app
        .authed(Method::POST, "/v1/events", &token)
        .json(&json!({ "type": "order.updated", "payload": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].header("authorization"), Some(rotated.as_str()));
    assert_eq!(got[1].header("x-team"), None);
    let raw = raw_database(&app).await;
    assert!(!contains(&raw, &rotated) && !contains(&raw, "rcv-secret-"));
    // The mask cannot be stored back as a value by mistake.
    let refused = app
        .authed(Method::PATCH, &format!("/v1/endpoints/{id}"), &token)
        .json(&json!({ "headers": masked }))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_error(refused, 422, "invalid_request", "invalid_headers").await;
}

async fn plaintext_endpoint_headers_of_an_older_version_are_sealed_at_start(app: TestApp) {
    let merchant = app.create_merchant("Legacy headers").await;
    let receiver = Receiver::start().await;
    let created = app
        .authed(Method::POST, "/v1/endpoints", &merchant.test_token)
        .json(&json!({ "url": receiver.url }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // What an older version stored: the headers as plain JSON.
    app.execute(&format!(
        "UPDATE endpoints SET headers = '{{\"Authorization\":\"Bearer rcv-legacy-credential\"}}' WHERE id = '{id}'"
    ))
    .await
    .unwrap();
    assert!(contains(&raw_database(&app).await, "rcv-legacy-credential"));
    let (app, _) = app.restart().await;
    if app.backend == Backend::Postgres {
        // Old row versions stay in PostgreSQL's pages until VACUUM; the live rows are sealed.
        app.execute("VACUUM FULL endpoints").await.unwrap();
    }
    assert!(
        !contains(&raw_database(&app).await, "rcv-legacy-credential"),
        "sealed at start"
    );
    let shown = get_ok(&app, &merchant.test_token, &format!("/v1/endpoints/{id}")).await;
    assert_eq!(shown["headers"], json!({ "Authorization": "••••" }));
    let sent = app
        .authed(Method::POST, "/v1/events", &merchant.test_token)
        .json(&json!({ "type": "order.created", "payload": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer rcv-legacy-credential")
    );
}

async fn rekey_reseals_endpoint_headers_and_stored_responses(mut app: TestApp) {
    let merchant = app.create_merchant("Rekeyed").await;
    let receiver = Receiver::start().await;
    let create = |app: &TestApp| {
        app.authed(Method::POST, "/v1/endpoints", &merchant.test_token)
            .header("idempotency-key", "rekeyed-endpoint")
            .json(&json!({ "url": receiver.url, "headers": { "Authorization": "Bearer rcv-rekeyed" } }))
            .send()
    };
    let first = create(&app).await.unwrap();
    assert_eq!(first.status(), 201);
    let first = first.text().await.unwrap();
    app.stop().await;
    let new_key = hooksign::secrets::MasterKey::generate();
    let new_file = app.data_dir.join("new.key");
    std::fs::write(&new_file, new_key.to_base64()).unwrap();
    use crate::helpers::OutputWithin as _;
    let rekey = std::process::Command::new(env!("CARGO_BIN_EXE_hooksign"))
        .args(["rekey", "--new-key-file", new_file.to_str().unwrap()])
        .env("HOOKSIGN_DATABASE__URL", &app.config.database.url)
        .env(
            "HOOKSIGN_MASTER_KEY",
            &app.config.master_key.as_ref().unwrap().0,
        )
        .current_dir(app.data_dir.parent().unwrap())
        .output_within(crate::helpers::CHILD_DEADLINE);
    let out = String::from_utf8_lossy(&rekey.stdout).into_owned();
    assert!(
        rekey.status.success(),
        "{}",
        String::from_utf8_lossy(&rekey.stderr)
    );
    assert!(
        out.contains("1 endpoint header sets and 1 stored idempotent responses"),
        "{out}"
    );
    // Only the new key from now on.
    app.config.master_key = Some(hooksign::config::Redacted(new_key.to_base64()));
    let (app, _) = app.restart().await;
    let replayed = create(&app).await.unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(replayed.text().await.unwrap(), first);
    let sent = app
        .authed(Method::POST, "/v1/events", &merchant.test_token)
        .json(&json!({ "type": "order.created", "payload": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].header("authorization"), Some("Bearer rcv-rekeyed"));
}
