//! API keys: the whole lifecycle as a merchant's admin sees it.

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app_with, Backend, TestApp, TestMerchant};
use crate::on_both_stores;

on_both_stores!(
    a_created_key_shows_its_token_once_and_works,
    key_names_are_validated_and_unique_per_mode,
    the_sixth_active_key_is_refused_and_modes_are_separate,
    ten_concurrent_creates_from_four_active_keys_end_with_exactly_five,
    a_deactivated_key_is_refused_and_reactivation_respects_the_limit,
    revocation_is_irreversible_and_effective_on_the_next_request_everywhere,
    only_revoked_keys_can_be_deleted,
    rolling_makes_a_twin_and_retires_the_old_key_after_the_overlap,
    lists_page_filter_search_and_sort,
    scopes_are_independent_and_cannot_be_escalated,
    a_key_cannot_roll_or_change_a_key_holding_scopes_it_lacks,
    other_merchants_and_modes_keys_are_not_found,
    the_last_admin_key_cannot_be_switched_off,
    an_expiring_key_does_not_count_as_a_remaining_admin,
    last_used_at_is_written_in_batches,
    nonces_are_remembered_per_key,
    idempotent_posts_are_replayed,
    expired_guards_are_pruned,
    two_admins_switched_off_at_once_leave_one_active,
    the_last_admin_guard_holds_in_test_mode,
    a_revoked_an_inactive_or_an_already_rolled_key_cannot_be_rolled,
);

async fn create_key(app: &TestApp, token: &str, body: Value) -> Response {
    app.authed(Method::POST, "/v1/api-keys", token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn created(app: &TestApp, token: &str, name: &str) -> Value {
    let response = create_key(app, token, json!({ "name": name })).await;
    assert_eq!(response.status(), 201, "creating {name}");
    response.json().await.unwrap()
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let response = app.authed(Method::GET, path, token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn list_all(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let (status, body) = get_json(app, &format!("/v1/api-keys?limit=100&{query}"), token).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

async fn patch_key(app: &TestApp, token: &str, id: &str, body: Value) -> Response {
    app.authed(Method::PATCH, &format!("/v1/api-keys/{id}"), token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn post_action(app: &TestApp, token: &str, id: &str, action: &str) -> Response {
    app.authed(Method::POST, &format!("/v1/api-keys/{id}/{action}"), token)
        .send()
        .await
        .unwrap()
}

async fn a_created_key_shows_its_token_once_and_works(app: TestApp) {
    let merchant = app.create_merchant("Tokens").await;
    let response = create_key(
        &app,
        &merchant.live_token,
        json!({ "name": "  CI deploys " }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let key: Value = response.json().await.unwrap();
    assert_eq!(key["object"], "api_key");
    assert_eq!(key["name"], "CI deploys");
    assert_eq!(key["mode"], "live");
    assert_eq!(key["livemode"], true);
    assert_eq!(key["status"], "active");
    assert_eq!(
        key["scopes"].as_array().unwrap().len(),
        9,
        "defaults to the caller's scopes"
    );
    assert!(
        key["revoked_at"].is_null() && key["expires_at"].is_null() && key["last_used_at"].is_null()
    );
    let token = key["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with(key["display_prefix"].as_str().unwrap()));
    let id = key["id"].as_str().unwrap();

    let (status, fetched) = get_json(&app, &format!("/v1/api-keys/{id}"), &token).await;
    assert_eq!(status, 200, "the new token authenticates");
    assert!(fetched.get("token").is_none());
    let listed = list_all(&app, &merchant.live_token, "").await;
    assert!(listed.iter().all(|k| k.get("token").is_none()));
    assert!(!serde_json::to_string(&listed).unwrap().contains(&token));
    let hashed = app.count(&format!("SELECT COUNT(*) FROM api_keys WHERE token_hash = '{token}' OR display_prefix = '{token}'")).await;
    assert_eq!(hashed, 0, "the raw token is not stored");
}

async fn key_names_are_validated_and_unique_per_mode(app: TestApp) {
    let merchant = app.create_merchant("Names").await;
    created(&app, &merchant.live_token, "Deploys").await;
    let duplicate = create_key(&app, &merchant.live_token, json!({ "name": "deploys" })).await;
    assert_error(duplicate, 409, "invalid_request", "duplicate_name").await;
    // The same name in the other mode is fine.
    created(&app, &merchant.test_token, "Deploys").await;
    for bad in [
        json!({ "name": "" }),
        json!({ "name": "   " }),
        json!({ "name": "x".repeat(101) }),
    ] {
        assert_error(
            create_key(&app, &merchant.live_token, bad).await,
            422,
            "invalid_request",
            "invalid_name",
        )
        .await;
    }
    for bad in [
        json!({}),
        json!({ "name": 1 }),
        json!({ "name": "a", "admin": true }),
        json!({ "name": "a", "scopes": "all" }),
    ] {
        assert_error(
            create_key(&app, &merchant.live_token, bad).await,
            422,
            "invalid_request",
            "invalid_body",
        )
        .await;
    }
    let unknown_scope = create_key(
        &app,
        &merchant.live_token,
        json!({ "name": "a", "scopes": ["keys:everything"] }),
    )
    .await;
    assert_error(unknown_scope, 422, "invalid_request", "invalid_scopes").await;
    let no_scopes = create_key(
        &app,
        &merchant.live_token,
        json!({ "name": "a", "scopes": [] }),
    )
    .await;
    assert_error(no_scopes, 422, "invalid_request", "invalid_scopes").await;
    let id = list_all(&app, &merchant.live_token, "q=deploys").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rename = patch_key(
        &app,
        &merchant.live_token,
        &id,
        json!({ "name": "Default live key" }),
    )
    .await;
    assert_error(rename, 409, "invalid_request", "duplicate_name").await;
    let renamed: Value = patch_key(
        &app,
        &merchant.live_token,
        &id,
        json!({ "name": "Releases" }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(renamed["name"], "Releases");
    assert_eq!(
        list_all(&app, &merchant.live_token, "").await.len(),
        2,
        "bad input created nothing"
    );
}

async fn the_sixth_active_key_is_refused_and_modes_are_separate(app: TestApp) {
    let merchant = app.create_merchant("Five").await;
    for n in 2..=5 {
        created(&app, &merchant.live_token, &format!("live {n}")).await;
    }
    let sixth = create_key(&app, &merchant.live_token, json!({ "name": "live 6" })).await;
    let body = assert_error(sixth, 409, "invalid_request", "key_limit_reached").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains('5') && message.contains("live"),
        "{message}"
    );
    // Test mode has its own five.
    for n in 2..=5 {
        created(&app, &merchant.test_token, &format!("test {n}")).await;
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_keys WHERE kind = 'live' AND active = TRUE")
            .await,
        5
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_keys WHERE kind = 'test' AND active = TRUE")
            .await,
        5
    );
}

async fn ten_concurrent_creates_from_four_active_keys_end_with_exactly_five(app: TestApp) {
    let merchant = app.create_merchant("Race").await;
    for n in 2..=4 {
        created(&app, &merchant.live_token, &format!("existing {n}")).await;
    }
    let requests: Vec<_> = (0..10)
        .map(|n| {
            let request = app
                .authed(Method::POST, "/v1/api-keys", &merchant.live_token)
                .json(&json!({ "name": format!("racer {n}") }));
            tokio::spawn(request.send())
        })
        .collect();
    let mut made = 0;
    for request in requests {
        let response = request.await.unwrap().unwrap();
        if response.status() == 201 {
            made += 1;
        } else {
            assert_error(response, 409, "invalid_request", "key_limit_reached").await;
        }
    }
    assert_eq!(made, 1, "one create wins, nine are refused");
    assert_eq!(
        list_all(&app, &merchant.live_token, "status=active")
            .await
            .len(),
        5
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_keys WHERE kind = 'live'")
            .await,
        5
    );
}

async fn a_deactivated_key_is_refused_and_reactivation_respects_the_limit(app: TestApp) {
    let merchant = app.create_merchant("Switch").await;
    let spare = created(&app, &merchant.live_token, "spare").await;
    let spare_id = spare["id"].as_str().unwrap();
    let spare_token = spare["token"].as_str().unwrap();
    let off: Value = patch_key(
        &app,
        &merchant.live_token,
        spare_id,
        json!({ "active": false }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(off["status"], "inactive");
    let refused = app
        .authed(Method::GET, "/v1/api-keys", spare_token)
        .send()
        .await
        .unwrap();
    assert_error(refused, 401, "authentication", "api_key_inactive").await;
    // Fill the four free slots, then re-activation is refused.
    for n in 0..4 {
        created(&app, &merchant.live_token, &format!("filler {n}")).await;
    }
    let back = patch_key(
        &app,
        &merchant.live_token,
        spare_id,
        json!({ "active": true }),
    )
    .await;
    assert_error(back, 409, "invalid_request", "key_limit_reached").await;
    let filler = list_all(&app, &merchant.live_token, "q=filler 0").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        patch_key(
            &app,
            &merchant.live_token,
            &filler,
            json!({ "active": false })
        )
        .await
        .status(),
        200
    );
    let back: Value = patch_key(
        &app,
        &merchant.live_token,
        spare_id,
        json!({ "active": true }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(back["status"], "active");
    assert_eq!(
        app.authed(Method::GET, "/v1/api-keys", spare_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let empty = patch_key(&app, &merchant.live_token, spare_id, json!({})).await;
    assert_error(empty, 422, "invalid_request", "nothing_to_update").await;
}

async fn revocation_is_irreversible_and_effective_on_the_next_request_everywhere(app: TestApp) {
    let merchant = app.create_merchant("Revoke").await;
    let other = app.another_instance().await;
    let victim = created(&app, &merchant.live_token, "victim").await;
    let (id, token) = (
        victim["id"].as_str().unwrap(),
        victim["token"].as_str().unwrap(),
    );
    let on_other = |token: &str| {
        app.client
            .get(format!("{}/v1/api-keys", other.base))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        on_other(token).await.unwrap().status(),
        200,
        "works on the second instance"
    );
    let revoked: Value = post_action(&app, &merchant.live_token, id, "revoke")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    assert_error(
        on_other(token).await.unwrap(),
        401,
        "authentication",
        "api_key_revoked",
    )
    .await;
    let here = app
        .authed(Method::GET, "/v1/api-keys", token)
        .send()
        .await
        .unwrap();
    assert_error(here, 401, "authentication", "api_key_revoked").await;
    // Still listed, and it cannot be brought back.
    let revoked_list = list_all(&app, &merchant.live_token, "status=revoked").await;
    assert_eq!(revoked_list.len(), 1);
    assert_eq!(revoked_list[0]["id"], id);
    let revive = patch_key(&app, &merchant.live_token, id, json!({ "active": true })).await;
    assert_error(revive, 409, "invalid_request", "api_key_revoked").await;
    let again = post_action(&app, &merchant.live_token, id, "revoke").await;
    assert_eq!(again.status(), 200, "revoking twice is harmless");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "revoked", "{again}");
    assert_eq!(
        again["revoked_at"], revoked["revoked_at"],
        "the first revocation stands"
    );
}

async fn only_revoked_keys_can_be_deleted(app: TestApp) {
    let merchant = app.create_merchant("Delete").await;
    let key = created(&app, &merchant.live_token, "doomed").await;
    let id = key["id"].as_str().unwrap();
    let early = app
        .authed(
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            &merchant.live_token,
        )
        .send()
        .await
        .unwrap();
    assert_error(early, 409, "invalid_request", "api_key_not_revoked").await;
    assert_eq!(
        post_action(&app, &merchant.live_token, id, "revoke")
            .await
            .status(),
        200
    );
    let deleted = app
        .authed(
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            &merchant.live_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let body: Value = deleted.json().await.unwrap();
    assert_eq!(body["deleted"], true);
    assert_eq!(body["id"], id);
    let gone = app
        .authed(
            Method::GET,
            &format!("/v1/api-keys/{id}"),
            &merchant.live_token,
        )
        .send()
        .await
        .unwrap();
    assert_error(gone, 404, "invalid_request", "resource_missing").await;
    assert_eq!(
        app.count(&format!("SELECT COUNT(*) FROM api_keys WHERE id = '{id}'"))
            .await,
        0
    );
}

async fn rolling_makes_a_twin_and_retires_the_old_key_after_the_overlap(app: TestApp) {
    let merchant = app.create_merchant("Roll").await;
    let old = create_key(
        &app,
        &merchant.live_token,
        json!({ "name": "deploys", "scopes": ["api_keys:read", "events:write"] }),
    )
    .await;
    let old: Value = old.json().await.unwrap();
    let (old_id, old_token) = (old["id"].as_str().unwrap(), old["token"].as_str().unwrap());
    let rolled = app
        .authed(
            Method::POST,
            &format!("/v1/api-keys/{old_id}/roll"),
            &merchant.live_token,
        )
        .json(&json!({ "expires_in": 3600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(rolled.status(), 201);
    let rolled: Value = rolled.json().await.unwrap();
    let new = &rolled["api_key"];
    assert_eq!(new["name"], "deploys");
    assert_eq!(new["scopes"], old["scopes"]);
    assert_ne!(new["id"], old["id"]);
    let new_token = new["token"].as_str().unwrap();
    assert!(rolled["previous"]["expires_at"].is_string());
    // Both work during the overlap ...
    for token in [old_token, new_token] {
        assert_eq!(
            app.authed(Method::GET, "/v1/api-keys", token)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // ... and after it only the new one.
    app.clock.advance(chrono::Duration::seconds(3601));
    let expired = app
        .authed(Method::GET, "/v1/api-keys", old_token)
        .send()
        .await
        .unwrap();
    assert_error(expired, 401, "authentication", "api_key_expired").await;
    assert_eq!(
        app.authed(Method::GET, "/v1/api-keys", new_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        list_all(&app, &merchant.live_token, "status=expired")
            .await
            .len(),
        1
    );

    // An immediate roll with a bare POST (no body).
    let new_id = new["id"].as_str().unwrap();
    let immediate = post_action(&app, &merchant.live_token, new_id, "roll").await;
    assert_eq!(immediate.status(), 201);
    let immediate: Value = immediate.json().await.unwrap();
    assert_error(
        app.authed(Method::GET, "/v1/api-keys", new_token)
            .send()
            .await
            .unwrap(),
        401,
        "authentication",
        "api_key_expired",
    )
    .await;
    assert_eq!(immediate["api_key"]["name"], "deploys");
    for bad in [json!({ "expires_in": -1 }), json!({ "expires_in": 604801 })] {
        let response = app
            .authed(
                Method::POST,
                &format!("/v1/api-keys/{}/roll", merchant_key_id(&merchant)),
                &merchant.live_token,
            )
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_error(response, 422, "invalid_request", "invalid_expires_in").await;
    }
    // With five active keys an overlapping roll needs a free slot; an immediate one does not.
    for n in 0..3 {
        created(&app, &merchant.live_token, &format!("filler {n}")).await;
    }
    assert_eq!(
        list_all(&app, &merchant.live_token, "status=active")
            .await
            .len(),
        5
    );
    let filler = list_all(&app, &merchant.live_token, "q=filler 0").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let overlapping = app
        .authed(
            Method::POST,
            &format!("/v1/api-keys/{filler}/roll"),
            &merchant.live_token,
        )
        .json(&json!({ "expires_in": 60 }))
        .send()
        .await
        .unwrap();
    assert_error(overlapping, 409, "invalid_request", "key_limit_reached").await;
    assert_eq!(
        post_action(&app, &merchant.live_token, &filler, "roll")
            .await
            .status(),
        201
    );
}

fn merchant_key_id(merchant: &TestMerchant) -> String {
    merchant.body["api_keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn lists_page_filter_search_and_sort(app: TestApp) {
    let merchant = app.create_merchant("Lists").await;
    for name in ["bravo", "alpha", "Charlie"] {
        created(&app, &merchant.live_token, name).await;
    }
    let ids: Vec<String> = list_all(&app, &merchant.live_token, "")
        .await
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 4);
    // Newest first by default, paged by cursor.
    let (_, first) = get_json(&app, "/v1/api-keys?limit=3", &merchant.live_token).await;
    assert_eq!(first["has_more"], true);
    let first_ids: Vec<_> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first_ids, ids[..3]);
    let (_, second) = get_json(
        &app,
        &format!("/v1/api-keys?limit=3&starting_after={}", ids[2]),
        &merchant.live_token,
    )
    .await;
    assert_eq!(second["has_more"], false);
    assert_eq!(second["data"][0]["id"], ids[3].as_str());
    let names = |keys: Vec<Value>| {
        keys.iter()
            .map(|k| k["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(list_all(&app, &merchant.live_token, "sort=name&order=asc").await),
        ["alpha", "bravo", "Charlie", "Default live key"]
    );
    assert_eq!(
        names(list_all(&app, &merchant.live_token, "q=AR").await),
        ["Charlie"]
    );
    let alpha = list_all(&app, &merchant.live_token, "q=alpha").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    patch_key(
        &app,
        &merchant.live_token,
        &alpha,
        json!({ "active": false }),
    )
    .await;
    assert_eq!(
        names(list_all(&app, &merchant.live_token, "status=inactive").await),
        ["alpha"]
    );
    assert_eq!(
        list_all(&app, &merchant.live_token, "status=active")
            .await
            .len(),
        3
    );
    // last_used_at sort: used keys first.
    app.state
        .auth
        .last_used
        .flush(app.state.store.as_ref())
        .await
        .unwrap();
    let used = names(list_all(&app, &merchant.live_token, "sort=last_used_at").await);
    assert_eq!(used[0], "Default live key", "{used:?}");
    // The other mode's keys never show.
    assert_eq!(
        names(list_all(&app, &merchant.test_token, "").await),
        ["Default test key"]
    );
    for (bad, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=101", "invalid_limit"),
        ("status=deleted", "invalid_query"),
        ("sort=colour", "invalid_query"),
        ("order=sideways", "invalid_query"),
        (
            "starting_after=mch_01M86NEAX2EQSTS9GC7642XD78",
            "invalid_cursor",
        ),
        ("page=2", "invalid_query"),
    ] {
        let response = app
            .authed(
                Method::GET,
                &format!("/v1/api-keys?{bad}"),
                &merchant.live_token,
            )
            .send()
            .await
            .unwrap();
        let body = assert_error(response, 400, "invalid_request", code).await;
        assert!(!body.to_string().contains(&merchant.live_token), "{bad}");
    }
}

async fn scopes_are_independent_and_cannot_be_escalated(app: TestApp) {
    let merchant = app.create_merchant("Scopes").await;
    let reader = create_key(
        &app,
        &merchant.live_token,
        json!({ "name": "reader", "scopes": ["api_keys:read"] }),
    )
    .await;
    let reader: Value = reader.json().await.unwrap();
    let reader_token = reader["token"].as_str().unwrap();
    assert_eq!(reader["scopes"], json!(["api_keys:read"]));
    assert_eq!(
        app.authed(Method::GET, "/v1/api-keys", reader_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let write = create_key(&app, reader_token, json!({ "name": "nope" })).await;
    let body = assert_error(write, 403, "permission", "missing_scope").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("api_keys:write"));
    let writer = create_key(
        &app,
        &merchant.live_token,
        json!({ "name": "writer", "scopes": ["api_keys:write"] }),
    )
    .await;
    let writer: Value = writer.json().await.unwrap();
    let writer_token = writer["token"].as_str().unwrap();
    let read = app
        .authed(Method::GET, "/v1/api-keys", writer_token)
        .send()
        .await
        .unwrap();
    let body = assert_error(read, 403, "permission", "missing_scope").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api_keys:read"),
        "write does not imply read"
    );
    let escalate = create_key(
        &app,
        writer_token,
        json!({ "name": "sneaky", "scopes": ["api_keys:write", "signing_secret:write"] }),
    )
    .await;
    let body = assert_error(escalate, 403, "permission", "scope_not_held").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("signing_secret:write"));
    let narrow = create_key(&app, writer_token, json!({ "name": "narrow" })).await;
    assert_eq!(
        narrow.json::<Value>().await.unwrap()["scopes"],
        json!(["api_keys:write"]),
        "defaults to the caller's own scopes"
    );
}

/// Rolling (or re-activating) a stronger key would hand the caller a token with scopes it
/// never held: a key may act only on keys whose scopes it holds all of.
async fn a_key_cannot_roll_or_change_a_key_holding_scopes_it_lacks(app: TestApp) {
    let merchant = app.create_merchant("Escalation").await;
    let default_id = merchant_key_id(&merchant);
    let keys_admin = create_key(
        &app,
        &merchant.live_token,
        json!({ "name": "keys admin", "scopes": ["api_keys:read", "api_keys:write"] }),
    )
    .await;
    let keys_admin: Value = keys_admin.json().await.unwrap();
    let limited = keys_admin["token"].as_str().unwrap();
    // A second all-scopes key, switched off by the default key, to try re-activating it.
    let spare = created(&app, &merchant.live_token, "spare").await;
    let spare_id = spare["id"].as_str().unwrap();
    assert_eq!(
        patch_key(
            &app,
            &merchant.live_token,
            spare_id,
            json!({ "active": false })
        )
        .await
        .status(),
        200
    );
    let rows_before = app.count("SELECT COUNT(*) FROM api_keys").await;

    let expect_refused = |response: Response| async move {
        let body = assert_error(response, 403, "permission", "scope_not_held").await;
        let message = body["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("signing_secret:read"),
            "names the first missing scope: {message}"
        );
    };
    let roll = app
        .authed(
            Method::POST,
            &format!("/v1/api-keys/{default_id}/roll"),
            limited,
        )
        .json(&json!({ "expires_in": 3600 }))
        .send()
        .await
        .unwrap();
    expect_refused(roll).await;
    expect_refused(post_action(&app, limited, &default_id, "roll").await).await;
    expect_refused(patch_key(&app, limited, &default_id, json!({ "active": false })).await).await;
    expect_refused(patch_key(&app, limited, &default_id, json!({ "name": "mine now" })).await)
        .await;
    expect_refused(post_action(&app, limited, &default_id, "revoke").await).await;
    expect_refused(patch_key(&app, limited, spare_id, json!({ "active": true })).await).await;

    // Nothing changed: no successor row, the default key as it was and still working, the
    // spare still switched off.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_keys").await,
        rows_before
    );
    let (status, default_key) = get_json(
        &app,
        &format!("/v1/api-keys/{default_id}"),
        &merchant.live_token,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(default_key["status"], "active");
    assert_eq!(default_key["name"], merchant.body["api_keys"][0]["name"]);
    assert!(default_key["expires_at"].is_null(), "{default_key}");
    assert!(default_key["revoked_at"].is_null(), "{default_key}");
    let (_, spare_now) = get_json(&app, &format!("/v1/api-keys/{spare_id}"), limited).await;
    assert_eq!(spare_now["status"], "inactive");

    // A revoked stronger key cannot be deleted by it either.
    assert_eq!(
        post_action(&app, &merchant.live_token, spare_id, "revoke")
            .await
            .status(),
        200
    );
    let delete = app
        .authed(Method::DELETE, &format!("/v1/api-keys/{spare_id}"), limited)
        .send()
        .await
        .unwrap();
    expect_refused(delete).await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM api_keys WHERE id = '{spare_id}'"
        ))
        .await,
        1
    );

    // A key whose scopes it holds (a subset, or its own) it still rolls.
    let reader = create_key(
        &app,
        limited,
        json!({ "name": "reader", "scopes": ["api_keys:read"] }),
    )
    .await;
    let reader: Value = reader.json().await.unwrap();
    let rolled = post_action(&app, limited, reader["id"].as_str().unwrap(), "roll").await;
    assert_eq!(rolled.status(), 201);
    let rolled: Value = rolled.json().await.unwrap();
    assert_eq!(rolled["api_key"]["scopes"], json!(["api_keys:read"]));
    let own = post_action(&app, limited, keys_admin["id"].as_str().unwrap(), "roll").await;
    assert_eq!(own.status(), 201);
    let own: Value = own.json().await.unwrap();
    assert_eq!(
        own["api_key"]["scopes"],
        json!(["api_keys:read", "api_keys:write"])
    );
}

async fn other_merchants_and_modes_keys_are_not_found(app: TestApp) {
    let mine = app.create_merchant("Mine").await;
    let theirs = app.create_merchant("Theirs").await;
    let their_key = merchant_key_id(&theirs);
    let my_test_key = mine.body["api_keys"][1]["id"].as_str().unwrap().to_owned();
    for id in [&their_key, &my_test_key] {
        let (status, body) = get_json(&app, &format!("/v1/api-keys/{id}"), &mine.live_token).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "resource_missing");
        for action in ["revoke", "roll"] {
            assert_error(
                post_action(&app, &mine.live_token, id, action).await,
                404,
                "invalid_request",
                "resource_missing",
            )
            .await;
        }
        assert_error(
            patch_key(&app, &mine.live_token, id, json!({ "active": false })).await,
            404,
            "invalid_request",
            "resource_missing",
        )
        .await;
        let delete = app
            .authed(
                Method::DELETE,
                &format!("/v1/api-keys/{id}"),
                &mine.live_token,
            )
            .send()
            .await
            .unwrap();
        assert_error(delete, 404, "invalid_request", "resource_missing").await;
    }
    assert_eq!(
        app.authed(Method::GET, "/v1/api-keys", &theirs.live_token)
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "untouched"
    );
    let operator = app
        .operator(Method::GET, "/v1/api-keys")
        .send()
        .await
        .unwrap();
    assert_error(operator, 403, "permission", "merchant_key_required").await;
}

async fn the_last_admin_key_cannot_be_switched_off(app: TestApp) {
    let merchant = app.create_merchant("Lockout").await;
    let only = merchant_key_id(&merchant);
    let reader = create_key(
        &app,
        &merchant.live_token,
        json!({ "name": "reader", "scopes": ["api_keys:read", "api_keys:write"] }),
    )
    .await;
    let reader: Value = reader.json().await.unwrap();
    let reader_id = reader["id"].as_str().unwrap();
    // Two admins: one may go.
    assert_eq!(
        patch_key(
            &app,
            &merchant.live_token,
            reader_id,
            json!({ "active": false })
        )
        .await
        .status(),
        200
    );
    // Now the default key is the last one holding api_keys:write.
    refused_as_last_admin(&app, &merchant.live_token, &only).await;
    assert_eq!(
        app.authed(Method::GET, "/v1/api-keys", &merchant.live_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Rolling the only admin key with an overlap leaves two working admin keys for an hour, but
/// only the successor lasts: the old key must not be able to switch the successor off.
async fn an_expiring_key_does_not_count_as_a_remaining_admin(app: TestApp) {
    let merchant = app.create_merchant("Overlap").await;
    let old_id = merchant_key_id(&merchant);
    let old_token = merchant.live_token.as_str();
    let rolled = app
        .authed(
            Method::POST,
            &format!("/v1/api-keys/{old_id}/roll"),
            old_token,
        )
        .json(&json!({ "expires_in": 3600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(rolled.status(), 201);
    let rolled: Value = rolled.json().await.unwrap();
    let new_id = rolled["api_key"]["id"].as_str().unwrap();
    let new_token = rolled["api_key"]["token"].as_str().unwrap();

    refused_as_last_admin(&app, old_token, new_id).await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM api_keys WHERE id = '{new_id}' AND active = TRUE AND revoked_at IS NULL"
        ))
        .await,
        1,
        "the successor is untouched"
    );

    // Once the overlap is over the old key is gone and the successor still manages keys.
    app.clock.advance(chrono::Duration::seconds(3601));
    let expired = app
        .authed(Method::GET, "/v1/api-keys", old_token)
        .send()
        .await
        .unwrap();
    assert_error(expired, 401, "authentication", "api_key_expired").await;
    let (status, successor) = get_json(&app, &format!("/v1/api-keys/{new_id}"), new_token).await;
    assert_eq!(status, 200, "{successor}");
    assert_eq!(successor["status"], "active");
    assert!(
        successor["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("api_keys:write")),
        "{successor}"
    );
    created(&app, new_token, "after the overlap").await;
}

async fn last_used_at_is_written_in_batches(app: TestApp) {
    let merchant = app.create_merchant("Usage").await;
    let id = merchant_key_id(&merchant);
    app.state
        .auth
        .last_used
        .flush(app.state.store.as_ref())
        .await
        .unwrap(); // the operator's use
    for _ in 0..5 {
        app.authed(Method::GET, "/v1/api-keys", &merchant.live_token)
            .send()
            .await
            .unwrap();
    }
    let unwritten = app
        .count(&format!(
            "SELECT COUNT(*) FROM api_keys WHERE id = '{id}' AND last_used_at IS NOT NULL"
        ))
        .await;
    assert_eq!(unwritten, 0, "no write per request");
    assert_eq!(app.state.auth.last_used.pending(), 1);
    app.state
        .auth
        .last_used
        .flush(app.state.store.as_ref())
        .await
        .unwrap();
    let (_, key) = get_json(&app, &format!("/v1/api-keys/{id}"), &merchant.live_token).await;
    assert!(key["last_used_at"].is_string(), "{key}");
    // Shutdown flushes what is pending.
    let test_id = merchant.body["api_keys"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.authed(Method::GET, "/v1/api-keys", &merchant.test_token)
        .send()
        .await
        .unwrap();
    let (app, _) = app.restart().await;
    let written = app
        .count(&format!(
            "SELECT COUNT(*) FROM api_keys WHERE id = '{test_id}' AND last_used_at IS NOT NULL"
        ))
        .await;
    assert_eq!(written, 1);
}

async fn nonces_are_remembered_per_key(app: TestApp) {
    let merchant = app.create_merchant("Nonces").await;
    let with_nonce = |token: &str, nonce: &str| {
        app.authed(Method::GET, "/v1/api-keys", token)
            .header("x-nonce", nonce)
            .send()
    };
    assert_eq!(
        with_nonce(&merchant.live_token, "123456789012")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_error(
        with_nonce(&merchant.live_token, "123456789012")
            .await
            .unwrap(),
        409,
        "invalid_request",
        "nonce_reused",
    )
    .await;
    assert_eq!(
        with_nonce(&merchant.test_token, "123456789012")
            .await
            .unwrap()
            .status(),
        200,
        "per key"
    );
    for bad in ["12345678901", "12345678901234567", "12345678901a", ""] {
        assert_error(
            with_nonce(&merchant.live_token, bad).await.unwrap(),
            400,
            "invalid_request",
            "invalid_nonce",
        )
        .await;
    }
    // After 24 hours a nonce may come again.
    app.clock
        .advance(chrono::Duration::hours(24) + chrono::Duration::seconds(1));
    assert_eq!(
        with_nonce(&merchant.live_token, "123456789012")
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn idempotent_posts_are_replayed(app: TestApp) {
    let merchant = app.create_merchant("Idempotent").await;
    let post = |key: &str, name: &str| {
        app.authed(Method::POST, "/v1/api-keys", &merchant.live_token)
            .header("idempotency-key", key)
            .json(&json!({ "name": name }))
            .send()
    };
    let first = post("create-ci-key", "ci").await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body: Value = first.json().await.unwrap();
    let replay = post("create-ci-key", "ci").await.unwrap();
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), first_body);
    assert_eq!(
        list_all(&app, &merchant.live_token, "q=ci").await.len(),
        1,
        "created once"
    );
    assert_error(
        post("create-ci-key", "other").await.unwrap(),
        422,
        "invalid_request",
        "idempotency_key_reused",
    )
    .await;
    // An error response is replayed too (it was a complete answer) ...
    let dup1 = post("dup", "ci").await.unwrap();
    let refused = assert_error(dup1, 409, "invalid_request", "duplicate_name").await;
    let dup2 = post("dup", "ci").await.unwrap();
    assert_eq!(dup2.status(), 409);
    assert_eq!(dup2.headers()["idempotent-replayed"], "true");
    // The stored answer, word for word (its request id too).
    assert_eq!(dup2.json::<Value>().await.unwrap(), refused);
    // ... a request still in flight is refused.
    let key_id: hooksign::ids::ApiKeyId = merchant_key_id(&merchant).parse().unwrap();
    let now = app.clock_now();
    let begun = app
        .state
        .store
        .begin_idempotent(
            key_id,
            "busy",
            "fingerprint",
            now,
            now + chrono::Duration::hours(24),
        )
        .await
        .unwrap();
    assert_eq!(begun, hooksign::store::IdempotencyBegin::Started);
    assert_error(
        post("busy", "x").await.unwrap(),
        409,
        "invalid_request",
        "idempotency_request_in_progress",
    )
    .await;
    let bad_key = app
        .authed(Method::POST, "/v1/api-keys", &merchant.live_token)
        .header("idempotency-key", "has spaces in it")
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_error(bad_key, 400, "invalid_request", "invalid_idempotency_key").await;
    // Keys are per API key: another key may use the same idempotency key for its own request.
    let other = app
        .authed(Method::POST, "/v1/api-keys", &merchant.test_token)
        .header("idempotency-key", "create-ci-key")
        .json(&json!({ "name": "ci" }))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 201);
    assert!(other.headers().get("idempotent-replayed").is_none());
}

async fn expired_guards_are_pruned(app: TestApp) {
    let merchant = app.create_merchant("Prune").await;
    app.authed(Method::GET, "/v1/api-keys", &merchant.live_token)
        .header("x-nonce", "999999999999")
        .send()
        .await
        .unwrap();
    app.authed(Method::POST, "/v1/api-keys", &merchant.live_token)
        .header("idempotency-key", "k1")
        .json(&json!({ "name": "pruned" }))
        .send()
        .await
        .unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM api_nonces").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM idempotency_keys").await, 1);
    let now = app.clock_now();
    assert_eq!(
        app.state.store.prune_expired(now).await.unwrap(),
        0,
        "nothing expired yet"
    );
    let later = now + chrono::Duration::hours(25);
    assert_eq!(app.state.store.prune_expired(later).await.unwrap(), 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM api_nonces").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM idempotency_keys").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_nonce_is_enforced_on_mutations_only() {
    let app = spawn_app_with(Backend::Sqlite, |config| config.auth.require_nonce = true)
        .await
        .unwrap();
    let merchant = app
        .operator(Method::POST, "/v1/merchants")
        .json(&json!({ "name": "Strict" }))
        .send()
        .await
        .unwrap();
    assert_error(merchant, 400, "invalid_request", "nonce_required").await;
    let merchant = app
        .operator(Method::POST, "/v1/merchants")
        .header("x-nonce", "100000000000")
        .json(&json!({ "name": "Strict" }))
        .send()
        .await
        .unwrap();
    assert_eq!(merchant.status(), 201);
    let merchant: Value = merchant.json().await.unwrap();
    let live_token = merchant["api_keys"][0]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let merchant = TestMerchant {
        id: String::new(),
        test_token: String::new(),
        live_token,
        body: merchant,
    };
    assert_eq!(
        app.authed(Method::GET, "/v1/api-keys", &merchant.live_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let bare = create_key(&app, &merchant.live_token, json!({ "name": "x" })).await;
    assert_error(bare, 400, "invalid_request", "nonce_required").await;
    let with = app
        .authed(Method::POST, "/v1/api-keys", &merchant.live_token)
        .header("x-nonce", "100000000001")
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 201);
}

/// The bucket holds `burst` requests and refills `rate_per_sec` a second by the daemon's
/// clock, which stands still here: exactly the burst passes, then 429 with Retry-After, and
/// once the clock moves a second exactly `rate_per_sec` more pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.auth.rate_per_sec = 2;
        config.auth.burst = 3;
    })
    .await
    .unwrap();
    let merchant = app.create_merchant("Busy").await;
    let list = || {
        app.authed(Method::GET, "/v1/api-keys", &merchant.live_token)
            .send()
    };
    for n in 1..=3 {
        assert_eq!(
            list().await.unwrap().status(),
            200,
            "request {n} of the burst"
        );
    }
    let refused = list().await.unwrap();
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        retry_after, 1,
        "half a second to the next token, rounded up"
    );
    assert_error(refused, 429, "rate_limited", "rate_limited").await;
    app.clock.advance(chrono::Duration::seconds(1));
    for n in 1..=2 {
        assert_eq!(list().await.unwrap().status(), 200, "refilled request {n}");
    }
    assert_error(list().await.unwrap(), 429, "rate_limited", "rate_limited").await;
    // Another key has its own bucket.
    assert_eq!(
        app.authed(Method::GET, "/v1/api-keys", &merchant.test_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// On SQLite, keys are cached between changes made through hooksign; a change made behind its
/// back with raw SQL is seen once `auth.key_cache_secs` has passed on the daemon's clock.
/// PostgreSQL reads the key on every request and sees it at once.
async fn raw_sql_changes_are_seen_within_the_cache_age(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |config| config.auth.key_cache_secs = 5).await else {
        return;
    };
    let merchant = app.create_merchant("Raw SQL").await;
    let victim = created(&app, &merchant.live_token, "victim").await;
    let token = victim["token"].as_str().unwrap();
    let status = || async {
        app.authed(Method::GET, "/v1/api-keys", token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(status().await, 200, "the key works (and is now cached)");
    app.execute(&format!(
        "UPDATE api_keys SET active = FALSE WHERE id = '{}'",
        victim["id"].as_str().unwrap()
    ))
    .await
    .unwrap();
    if backend == Backend::Sqlite {
        app.clock.advance(chrono::Duration::milliseconds(4_999));
        assert_eq!(
            status().await,
            200,
            "the cached key is served until the cache age is up"
        );
        app.clock.advance(chrono::Duration::milliseconds(1));
    }
    assert_error(
        app.authed(Method::GET, "/v1/api-keys", token)
            .send()
            .await
            .unwrap(),
        401,
        "authentication",
        "api_key_inactive",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sql_changes_are_seen_within_the_cache_age_on_sqlite() {
    raw_sql_changes_are_seen_within_the_cache_age(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sql_changes_are_seen_within_the_cache_age_on_postgres() {
    raw_sql_changes_are_seen_within_the_cache_age(Backend::Postgres).await;
}

/// The id of the key a merchant was created with in `mode`.
fn first_key_id(merchant: &TestMerchant, mode: &str) -> String {
    merchant.body["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["mode"] == mode)
        .and_then(|key| key["id"].as_str())
        .unwrap()
        .to_owned()
}

/// Switches two admin keys off at the same moment, many times over: exactly one request wins
/// and one admin is left every time. The caller is the mode's first key rolled with an
/// overlap, so it holds `api_keys:write` without counting as a lasting admin itself.
async fn race_to_switch_off_both_admins(app: &TestApp, token: &str, first_id: &str) {
    let rolled = app
        .authed(
            Method::POST,
            &format!("/v1/api-keys/{first_id}/roll"),
            token,
        )
        .json(&json!({ "expires_in": 3600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(rolled.status(), 201);
    let rolled: Value = rolled.json().await.unwrap();
    let second = created(app, token, "second admin").await;
    let admins = [
        rolled["api_key"]["id"].as_str().unwrap().to_owned(),
        second["id"].as_str().unwrap().to_owned(),
    ];
    let still_on = format!(
        "SELECT COUNT(*) FROM api_keys WHERE id IN ('{}', '{}') AND active = TRUE AND revoked_at IS NULL",
        admins[0], admins[1]
    );
    let switch_off = |id: &str, revoke: bool| {
        let request = if revoke {
            app.authed(Method::POST, &format!("/v1/api-keys/{id}/revoke"), token)
        } else {
            app.authed(Method::PATCH, &format!("/v1/api-keys/{id}"), token)
                .json(&json!({ "active": false }))
        };
        tokio::spawn(request.send())
    };
    for round in 0..12 {
        // The last round revokes one of them: the same guard, the other way out.
        let last = round == 11;
        let (a, b) = (switch_off(&admins[0], false), switch_off(&admins[1], last));
        let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
        let (won, lost) = match (a.status().as_u16(), b.status().as_u16()) {
            (200, _) => (0, b),
            (_, 200) => (1, a),
            (x, y) => panic!("round {round}: neither switch-off succeeded ({x}, {y})"),
        };
        assert_error(lost, 409, "invalid_request", "last_admin_key").await;
        assert_eq!(
            app.count(&still_on).await,
            1,
            "round {round}: one admin left"
        );
        if !last {
            let back = patch_key(app, token, &admins[won], json!({ "active": true })).await;
            assert_eq!(back.status(), 200, "round {round}");
            assert_eq!(app.count(&still_on).await, 2);
        }
    }
}

async fn two_admins_switched_off_at_once_leave_one_active(app: TestApp) {
    let merchant = app.create_merchant("Race").await;
    let first = first_key_id(&merchant, "live");
    race_to_switch_off_both_admins(&app, &merchant.live_token, &first).await;
}

async fn the_last_admin_guard_holds_in_test_mode(app: TestApp) {
    let merchant = app.create_merchant("Test-mode lockout").await;
    // A second admin in live mode does not keep test mode's only admin company.
    created(&app, &merchant.live_token, "live admin").await;
    let only = first_key_id(&merchant, "test");
    refused_as_last_admin(&app, &merchant.test_token, &only).await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM api_keys WHERE id = '{only}' AND active = TRUE AND revoked_at IS NULL"
        ))
        .await,
        1
    );
    race_to_switch_off_both_admins(&app, &merchant.test_token, &only).await;
}

async fn a_revoked_an_inactive_or_an_already_rolled_key_cannot_be_rolled(app: TestApp) {
    let merchant = app.create_merchant("No roll").await;
    let token = merchant.live_token.as_str();
    let id_of = |key: &Value| key["id"].as_str().unwrap().to_owned();
    let revoked = id_of(&created(&app, token, "revoked").await);
    assert_eq!(
        post_action(&app, token, &revoked, "revoke").await.status(),
        200
    );
    let inactive = id_of(&created(&app, token, "inactive").await);
    let off = patch_key(&app, token, &inactive, json!({ "active": false })).await;
    assert_eq!(off.status(), 200);
    let rolled = id_of(&created(&app, token, "rolled").await);
    let roll = app
        .authed(Method::POST, &format!("/v1/api-keys/{rolled}/roll"), token)
        .json(&json!({ "expires_in": 3600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(roll.status(), 201);

    let keys = "SELECT COUNT(*) FROM api_keys";
    let audit = "SELECT COUNT(*) FROM audit_events";
    let (keys_before, audit_before) = (app.count(keys).await, app.count(audit).await);
    for (id, code) in [
        (&revoked, "api_key_revoked"),
        (&inactive, "api_key_not_active"),
        (&rolled, "api_key_expired"),
    ] {
        let (_, before) = get_json(&app, &format!("/v1/api-keys/{id}"), token).await;
        for body in [json!({}), json!({ "expires_in": 60 })] {
            let response = app
                .authed(Method::POST, &format!("/v1/api-keys/{id}/roll"), token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_error(response, 409, "invalid_request", code).await;
        }
        let (_, after) = get_json(&app, &format!("/v1/api-keys/{id}"), token).await;
        assert_eq!(before, after, "{code}: the key is unchanged");
    }
    assert_eq!(app.count(keys).await, keys_before, "no successor was made");
    assert_eq!(app.count(audit).await, audit_before, "nothing was audited");
}

/// Switching `id` off, by deactivating or by revoking it, is refused: it is the last admin.
async fn refused_as_last_admin(app: &TestApp, token: &str, id: &str) {
    assert_error(
        patch_key(app, token, id, json!({ "active": false })).await,
        409,
        "invalid_request",
        "last_admin_key",
    )
    .await;
    assert_error(
        post_action(app, token, id, "revoke").await,
        409,
        "invalid_request",
        "last_admin_key",
    )
    .await;
}
