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
/// they are while the daemon runs; on PostgreSQL every text, JSON and bytea column of every
/// table.
pub async fn raw_database(app: &TestApp) -> Vec<u8> {
    match app.backend {
        Backend::Sqlite => {
            let mut bytes = std::fs::read(app.data_dir.join("hooksign.db")).unwrap();
            bytes.extend(std::fs::read(app.data_dir.join("hooksign.db-wal")).unwrap_or_default());
            bytes
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.config.database.url)
                .await
                .unwrap();
            let columns: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'bytea', 'json', 'jsonb')",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            assert!(columns.len() > 20, "{columns:?}");
            let mut bytes = Vec::new();
            for (table, column, kind) in columns {
                let expr = if kind == "bytea" {
                    format!("encode(\"{column}\", 'escape')")
                } else {
                    format!("\"{column}\"::text")
                };
                let values: Vec<Option<String>> =
                    sqlx::query_scalar(&format!("SELECT {expr} FROM \"{table}\""))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                for value in values.into_iter().flatten() {
                    bytes.extend(value.into_bytes());
                    bytes.push(b'\n');
                }
            }
            pool.close().await;
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
    let mut shown = Vec::new();
    let merchant = post_twice(
        &app,
        &operator,
        "/v1/merchants",
        "walk-merchant",
        Some(json!({ "name": "Sealed replays" })),
        201,
    )
    .await;
    secrets_shown(&merchant, &mut shown);
    let token = merchant["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["mode"] == "test")
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = post_twice(
        &app,
        &token,
        "/v1/api-keys",
        "walk-key",
        Some(json!({ "name": "ci" })),
        201,
    )
    .await;
    secrets_shown(&created, &mut shown);
    let rolled = post_twice(
        &app,
        &token,
        &format!("/v1/api-keys/{}/roll", created["id"].as_str().unwrap()),
        "walk-roll",
        Some(json!({ "expires_in": 3600 })),
        201,
    )
    .await;
    secrets_shown(&rolled, &mut shown);
    let initiated = post_twice(
        &app,
        &token,
        "/v1/signing-secret/initiate",
        "walk-initiate",
        None,
        200,
    )
    .await;
    secrets_shown(&initiated, &mut shown);
    let revealed = post_twice(
        &app,
        &token,
        "/v1/signing-secret/reveal",
        "walk-reveal",
        None,
        200,
    )
    .await;
    secrets_shown(&revealed, &mut shown);
    let endpoint = post_twice(
        &app,
        &token,
        "/v1/endpoints",
        "walk-endpoint",
        Some(json!({
            "url": "http://127.0.0.1:9/hook",
            "headers": { "Authorization": "Bearer rcv-secret-walkthrough-0001" },
        })),
        201,
    )
    .await;
    post_twice(
        &app,
        &token,
        "/v1/events",
        "walk-event",
        Some(json!({ "type": "order.created", "payload": { "order": "ord_1" } })),
        202,
    )
    .await;
    post_twice(
        &app,
        &token,
        "/v1/sign",
        "walk-sign",
        Some(json!({ "body": "{}" })),
        200,
    )
    .await;
    post_twice(
        &app,
        &token,
        "/v1/signing-secret/complete",
        "walk-complete",
        None,
        200,
    )
    .await;
    post_twice(
        &app,
        &token,
        &format!(
            "/v1/api-keys/{}/revoke",
            rolled["previous"]["id"].as_str().unwrap()
        ),
        "walk-revoke",
        None,
        200,
    )
    .await;
    assert!(endpoint["id"].as_str().unwrap().starts_with("ep_"));
    // Three merchant tokens, two more keys, the pending secret (hex and whsec) and the
    // revealed active and pending secrets.
    assert!(shown.len() >= 9, "{shown:?}");

    let raw = raw_database(&app).await;
    assert!(
        raw.len() > 10_000,
        "read the database ({} bytes)",
        raw.len()
    );
    assert_eq!(
        tokens_in(&raw),
        Vec::<String>::new(),
        "no token in the database"
    );
    for secret in &shown {
        assert!(!contains(&raw, secret), "{secret} is in the database");
    }
    assert!(
        !contains(&raw, "rcv-secret-walkthrough-0001"),
        "endpoint header"
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
    assert!(operator_replays[0].details.contains("walk-merchant"));
    let everything = format!("{chain:?}{operator_replays:?}");
    for secret in &shown {
        assert!(
            !everything.contains(secret.as_str()),
            "{secret} in the audit log"
        );
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
