//! The operator API: creating, listing, reading and updating merchants.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_error, TestApp};
use crate::on_both_stores;

on_both_stores!(
    creating_a_merchant_returns_its_first_keys_once,
    a_new_merchant_has_one_active_encrypted_secret_per_mode,
    merchant_keys_work_and_cannot_manage_merchants,
    merchants_list_newest_first_with_cursor_pagination,
    merchants_can_be_renamed_disabled_and_re_enabled,
    bad_merchant_input_is_refused_and_changes_nothing,
    unknown_and_wrong_kind_ids_are_not_found,
    every_merchant_mutation_is_audited_in_an_intact_chain,
    the_operator_key_file_is_private_and_works,
);

async fn creating_a_merchant_returns_its_first_keys_once(app: TestApp) {
    let response = app
        .operator(Method::POST, "/v1/merchants")
        .json(&json!({ "name": "  Acme Payments  " }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "merchant");
    assert_eq!(body["name"], "Acme Payments", "names are trimmed");
    assert_eq!(body["disabled"], false);
    assert!(body["id"].as_str().unwrap().starts_with("mch_"));
    let keys = body["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for (key, mode) in keys.iter().zip(["live", "test"]) {
        assert_eq!(key["object"], "api_key");
        assert_eq!(key["mode"], mode);
        assert_eq!(key["livemode"], mode == "live");
        assert_eq!(key["status"], "active");
        let token = key["token"].as_str().unwrap();
        assert!(token.starts_with(&format!("hk_{mode}_")), "{token}");
        assert_eq!(key["display_prefix"], &token[..token.len() - 32]);
        assert_eq!(key["scopes"].as_array().unwrap().len(), 9);
    }
    // Only the hash is stored.
    let live = keys[0]["token"].as_str().unwrap();
    let stored = app
        .count(&format!(
            "SELECT COUNT(*) FROM api_keys WHERE token_hash = '{live}'"
        ))
        .await;
    assert_eq!(stored, 0, "the raw token must never be stored");
    // The token is not shown again.
    let id = body["id"].as_str().unwrap();
    let again: Value = app
        .operator(Method::GET, &format!("/v1/merchants/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!again.to_string().contains(live));
    assert!(again.get("api_keys").is_none());
}

async fn a_new_merchant_has_one_active_encrypted_secret_per_mode(app: TestApp) {
    let merchant = app.create_merchant("Secretive").await;
    let id: hooksign::ids::MerchantId = merchant.id.parse().unwrap();
    for mode in hooksign::keys::Mode::ALL {
        let secrets = app.state.store.signing_secrets(id, mode).await.unwrap();
        assert_eq!(secrets.len(), 1);
        let row = &secrets[0];
        assert_eq!(row.state, "active");
        assert_eq!(row.key_id, app.state.encryptor.key_id());
        let aad = hooksign::secrets::SecretAad {
            secret_id: row.id,
            merchant_id: id,
            mode,
        };
        let secret = app
            .state
            .encryptor
            .open(&row.key_id, &row.ciphertext, &aad)
            .expect("decrypts for its own row");
        assert_eq!(secret.expose().len(), 64);
        // The raw database holds only ciphertext.
        assert!(!row.ciphertext.windows(64).any(|w| w == secret.key()));
        let other = hooksign::secrets::SecretAad {
            mode: if mode == hooksign::keys::Mode::Live {
                hooksign::keys::Mode::Test
            } else {
                hooksign::keys::Mode::Live
            },
            ..aad
        };
        assert!(
            app.state
                .encryptor
                .open(&row.key_id, &row.ciphertext, &other)
                .is_err(),
            "bound to its row"
        );
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM signing_secrets").await, 2);
}

async fn merchant_keys_work_and_cannot_manage_merchants(app: TestApp) {
    let merchant = app.create_merchant("Keyed").await;
    for token in [&merchant.live_token, &merchant.test_token] {
        let response = app
            .authed(Method::GET, "/v1/merchants", token)
            .send()
            .await
            .unwrap();
        assert_error(response, 403, "permission", "operator_key_required").await;
        let create = app
            .authed(Method::POST, "/v1/merchants", token)
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        assert_error(create, 403, "permission", "operator_key_required").await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM merchants").await, 1);
}

async fn merchants_list_newest_first_with_cursor_pagination(app: TestApp) {
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.create_merchant(&format!("Merchant {n}")).await.id);
    }
    ids.reverse(); // newest first
    let first: Value = app
        .operator(Method::GET, "/v1/merchants?limit=2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["object"], "list");
    assert_eq!(first["has_more"], true);
    let page_ids = |page: &Value| {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(page_ids(&first), ids[..2]);
    let second: Value = app
        .operator(
            Method::GET,
            &format!("/v1/merchants?limit=2&starting_after={}", ids[1]),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page_ids(&second), ids[2..4]);
    assert_eq!(second["has_more"], true);
    let last: Value = app
        .operator(
            Method::GET,
            &format!("/v1/merchants?limit=2&starting_after={}", ids[3]),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page_ids(&last), ids[4..]);
    assert_eq!(last["has_more"], false);
    for (bad, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=101", "invalid_limit"),
        ("limit=abc", "invalid_query"),
        (
            "starting_after=key_01M86NEAX2EQSTS9GC79DAP9FJ",
            "invalid_cursor",
        ),
        ("colour=blue", "invalid_query"),
    ] {
        let response = app
            .operator(Method::GET, &format!("/v1/merchants?{bad}"))
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "invalid_request", code).await;
    }
}

async fn merchants_can_be_renamed_disabled_and_re_enabled(app: TestApp) {
    let merchant = app.create_merchant("Old Name").await;
    let path = format!("/v1/merchants/{}", merchant.id);
    let renamed: Value = app
        .operator(Method::PATCH, &path)
        .json(&json!({"name": "New Name"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "New Name");
    assert_eq!(renamed["disabled"], false);

    // A merchant key works before disabling ...
    let probe = |token: String| app.authed(Method::GET, "/v1/merchants", &token).send();
    assert_error(
        probe(merchant.live_token.clone()).await.unwrap(),
        403,
        "permission",
        "operator_key_required",
    )
    .await;
    let disabled = app
        .operator(Method::PATCH, &path)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    assert_eq!(disabled.json::<Value>().await.unwrap()["disabled"], true);
    // ... and is refused on the next request after it.
    assert_error(
        probe(merchant.live_token.clone()).await.unwrap(),
        401,
        "authentication",
        "merchant_disabled",
    )
    .await;
    assert_error(
        probe(merchant.test_token.clone()).await.unwrap(),
        401,
        "authentication",
        "merchant_disabled",
    )
    .await;

    let enabled = app
        .operator(Method::PATCH, &path)
        .json(&json!({"disabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), 200);
    // Authenticates again: refused only for not being an operator key.
    assert_error(
        probe(merchant.live_token.clone()).await.unwrap(),
        403,
        "permission",
        "operator_key_required",
    )
    .await;
    let stored: Value = app
        .operator(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["name"], "New Name");
}

async fn bad_merchant_input_is_refused_and_changes_nothing(app: TestApp) {
    let merchant = app.create_merchant("Stable").await;
    let path = format!("/v1/merchants/{}", merchant.id);
    // (method, route, body, content type, status, code)
    type Case<'a> = (Method, &'a str, &'a str, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/v1/merchants",
            "{not json",
            "application/json",
            400,
            "invalid_json",
        ),
        (
            Method::POST,
            "/v1/merchants",
            r#"{"name": 5}"#,
            "application/json",
            422,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/merchants",
            r#"{}"#,
            "application/json",
            422,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/merchants",
            r#"{"name":"x","extra":true}"#,
            "application/json",
            422,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/merchants",
            r#"{"name":"   "}"#,
            "application/json",
            422,
            "invalid_name",
        ),
        (
            Method::POST,
            "/v1/merchants",
            r#"{"name":"a\u0007b"}"#,
            "application/json",
            422,
            "invalid_name",
        ),
        (
            Method::POST,
            "/v1/merchants",
            r#"{"name":"x"}"#,
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            Method::PATCH,
            &path,
            r#"{}"#,
            "application/json",
            422,
            "nothing_to_update",
        ),
        (
            Method::PATCH,
            &path,
            r#"{"disabled":"yes"}"#,
            "application/json",
            422,
            "invalid_body",
        ),
        (
            Method::PATCH,
            &path,
            r#"{"name":""}"#,
            "application/json",
            422,
            "invalid_name",
        ),
    ];
    for (method, route, body, content_type, status, code) in cases {
        let response = app
            .operator(method.clone(), route)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_error(response, status, "invalid_request", code).await;
    }
    let long_name = "n".repeat(101);
    let too_long = app
        .operator(Method::POST, "/v1/merchants")
        .json(&json!({"name": long_name}))
        .send()
        .await
        .unwrap();
    assert_error(too_long, 422, "invalid_request", "invalid_name").await;
    let huge = format!(r#"{{"name":"{}"}}"#, "x".repeat(300 * 1024));
    let too_large = app
        .operator(Method::POST, "/v1/merchants")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_error(too_large, 413, "invalid_request", "body_too_large").await;

    assert_eq!(
        app.count("SELECT COUNT(*) FROM merchants").await,
        1,
        "nothing was created"
    );
    let stored: Value = app
        .operator(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["name"], "Stable");
    assert_eq!(stored["disabled"], false);
}

async fn unknown_and_wrong_kind_ids_are_not_found(app: TestApp) {
    let merchant = app.create_merchant("Real").await;
    let key_id = merchant.body["api_keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in [
        "mch_01M86NEAX2EQSTS9GC7642XD78".to_owned(),
        key_id,
        "mch_nonsense".to_owned(),
        "42".to_owned(),
    ] {
        let get = app
            .operator(Method::GET, &format!("/v1/merchants/{id}"))
            .send()
            .await
            .unwrap();
        assert_error(get, 404, "invalid_request", "resource_missing").await;
        let patch = app
            .operator(Method::PATCH, &format!("/v1/merchants/{id}"))
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        assert_error(patch, 404, "invalid_request", "resource_missing").await;
    }
}

async fn every_merchant_mutation_is_audited_in_an_intact_chain(app: TestApp) {
    let merchant = app.create_merchant("Audited").await;
    let path = format!("/v1/merchants/{}", merchant.id);
    app.operator(Method::PATCH, &path)
        .json(&json!({"name": "Audited 2"}))
        .send()
        .await
        .unwrap();
    app.operator(Method::PATCH, &path)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    let chain = app.state.store.audit_chain(&merchant.id).await.unwrap();
    let actions: Vec<_> = chain.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["merchant.create", "merchant.update", "merchant.update"]
    );
    assert!(chain.iter().all(|e| e
        .actor_key_id
        .as_deref()
        .is_some_and(|id| id.starts_with("key_"))));
    assert!(chain.iter().all(|e| e
        .request_id
        .as_deref()
        .is_some_and(|id| id.starts_with("req_"))));
    assert_eq!(
        hooksign::audit::stored::verify_stored_chain(app.state.store.as_ref(), &merchant.id)
            .await
            .unwrap()
            .len(),
        3
    );
    // No token or secret ends up in the log.
    let text = format!("{chain:?}");
    assert!(!text.contains(&merchant.live_token) && !text.contains(&merchant.test_token));
}

async fn the_operator_key_file_is_private_and_works(app: TestApp) {
    let path = app.data_dir.join("operator.key");
    let token = std::fs::read_to_string(&path).unwrap();
    assert!(token.trim().starts_with("hk_op_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let response = app
        .authed(Method::GET, "/v1/merchants", token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
