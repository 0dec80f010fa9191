//! Authentication: both headers, every way a token can be wrong, all in the envelope; the
//! per-address budget of failures, which never refuses a valid key, and `X-Forwarded-For`
//! behind trusted proxies.

use reqwest::Method;

use crate::helpers::{assert_error, spawn_app_with, Backend, TestApp};
use crate::on_both_stores;

on_both_stores!(
    tokens_are_accepted_as_bearer_or_x_api_key,
    missing_malformed_and_unknown_tokens_get_401,
    two_different_keys_in_one_request_get_400,
);

async fn tokens_are_accepted_as_bearer_or_x_api_key(app: TestApp) {
    let bearer = app
        .request(Method::GET, "/v1/merchants")
        .bearer_auth(&app.operator_token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let header = app
        .request(Method::GET, "/v1/merchants")
        .header("x-api-key", &app.operator_token)
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), 200);
    let both_same = app
        .request(Method::GET, "/v1/merchants")
        .bearer_auth(&app.operator_token)
        .header("x-api-key", &app.operator_token)
        .send()
        .await
        .unwrap();
    assert_eq!(both_same.status(), 200);
}

async fn missing_malformed_and_unknown_tokens_get_401(app: TestApp) {
    let missing = app
        .request(Method::GET, "/v1/merchants")
        .send()
        .await
        .unwrap();
    assert_error(missing, 401, "authentication", "missing_api_key").await;

    let valid = app.operator_token.clone();
    let truncated = valid[..valid.len() - 1].to_owned();
    let mut typo = valid.clone().into_bytes();
    let at = typo.len() - 10;
    typo[at] = if typo[at] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    // Well-formed with a valid checksum, but never issued by this daemon.
    let unknown = hooksign::keys::ApiToken::generate(hooksign::keys::TokenKind::Operator)
        .expose()
        .to_owned();
    for token in [
        truncated.as_str(),
        typo.as_str(),
        "hk_live_short",
        "sk_live_123",
        unknown.as_str(),
        "hk_test_Q7fK2mZp9XcV4bN8tR1yL6wHs3Jd0AeX1XfHFA",
    ] {
        let response = app
            .authed(Method::GET, "/v1/merchants", token)
            .send()
            .await
            .unwrap();
        assert_error(response, 401, "authentication", "invalid_api_key").await;
    }
    let basic = app
        .request(Method::GET, "/v1/merchants")
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_error(basic, 401, "authentication", "invalid_api_key").await;
}

async fn two_different_keys_in_one_request_get_400(app: TestApp) {
    let merchant = app.create_merchant("Two Keys").await;
    let response = app
        .request(Method::GET, "/v1/merchants")
        .bearer_auth(&app.operator_token)
        .header("x-api-key", &merchant.live_token)
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "invalid_request", "conflicting_api_keys").await;
}

/// A refused credential: absent, malformed or well-formed but unknown, in turn.
async fn bad_request(
    app: &TestApp,
    attempt: usize,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut request = app.request(Method::GET, "/v1/api-keys");
    request = match attempt % 3 {
        0 => request,
        1 => request.bearer_auth("hk_live_not-a-key"),
        _ => request.bearer_auth(
            hooksign::keys::ApiToken::generate(hooksign::keys::TokenKind::Merchant(
                hooksign::keys::Mode::Live,
            ))
            .expose(),
        ),
    };
    if let Some(addresses) = forwarded_for {
        request = request.header("x-forwarded-for", addresses);
    }
    request.send().await.unwrap()
}

async fn status_of_bad_request(app: &TestApp, attempt: usize, forwarded_for: Option<&str>) -> u16 {
    bad_request(app, attempt, forwarded_for)
        .await
        .status()
        .as_u16()
}

async fn listed_with(app: &TestApp, token: &str, forwarded_for: Option<&str>) -> u16 {
    let mut request = app.authed(Method::GET, "/v1/api-keys", token);
    if let Some(addresses) = forwarded_for {
        request = request.header("x-forwarded-for", addresses);
    }
    request.send().await.unwrap().status().as_u16()
}

/// 40 refused credentials from one address spend its budget: the rest get 429 with
/// `Retry-After`. A valid key from the very same address is still served.
async fn failures_over_the_budget_get_429_but_a_valid_key_from_that_address_works(
    backend: Backend,
) {
    // Five failures a minute: a cell comes back every 12 s, longer than this test takes.
    let Some(app) = spawn_app_with(backend, |config| config.auth.failed_auth_per_minute = 5).await
    else {
        return;
    };
    let merchant = app.create_merchant("Neighbours").await;
    let mut statuses = Vec::new();
    for attempt in 0..40 {
        let response = bad_request(&app, attempt, None).await;
        let status = response.status().as_u16();
        if status == 429 {
            assert!(
                response.headers().contains_key("retry-after"),
                "429 carries Retry-After"
            );
            assert_error(response, 429, "rate_limited", "rate_limited").await;
        }
        statuses.push(status);
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [429; 35], "{statuses:?}");

    assert_eq!(listed_with(&app, &merchant.live_token, None).await, 200);
    assert_eq!(listed_with(&app, &merchant.test_token, None).await, 200);
    assert_eq!(
        app.operator(Method::GET, "/v1/merchants")
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the operator key from that address too"
    );
    let still_blocked = bad_request(&app, 2, None).await;
    assert!(still_blocked.headers().contains_key("retry-after"));
    assert_error(still_blocked, 429, "rate_limited", "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_over_the_budget_get_429_but_a_valid_key_from_that_address_works_on_sqlite() {
    failures_over_the_budget_get_429_but_a_valid_key_from_that_address_works(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_over_the_budget_get_429_but_a_valid_key_from_that_address_works_on_postgres() {
    failures_over_the_budget_get_429_but_a_valid_key_from_that_address_works(Backend::Postgres)
        .await;
}

/// Behind a trusted proxy (the tests' clients connect from 127.0.0.1) each client forwarded
/// in `X-Forwarded-For` has its own budget, and only the right-most untrusted entry counts:
/// what a client writes further left cannot move it to another budget.
async fn clients_behind_a_trusted_proxy_have_their_own_budgets(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |config| {
        config.auth.failed_auth_per_minute = 3;
        config.http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await
    else {
        return;
    };
    let merchant = app.create_merchant("Behind a proxy").await;
    let first = Some("203.0.113.1");
    let mut statuses = Vec::new();
    for attempt in 0..4 {
        statuses.push(status_of_bad_request(&app, attempt, first).await);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    assert_eq!(
        status_of_bad_request(&app, 0, Some("203.0.113.2")).await,
        401,
        "another client has its own budget"
    );
    assert_eq!(
        status_of_bad_request(&app, 1, Some("203.0.113.2, 203.0.113.1")).await,
        429,
        "the right-most entry, appended by the proxy, is the client"
    );
    assert_eq!(
        status_of_bad_request(&app, 2, Some("203.0.113.1, 203.0.113.2")).await,
        401,
        "an entry the client wrote itself is not believed"
    );
    assert_eq!(
        status_of_bad_request(&app, 0, None).await,
        401,
        "the proxy's own requests are charged to the proxy"
    );
    assert_eq!(
        listed_with(&app, &merchant.live_token, first).await,
        200,
        "a valid key is served whatever its address spent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_trusted_proxy_have_their_own_budgets_on_sqlite() {
    clients_behind_a_trusted_proxy_have_their_own_budgets(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_trusted_proxy_have_their_own_budgets_on_postgres() {
    clients_behind_a_trusted_proxy_have_their_own_budgets(Backend::Postgres).await;
}

/// With no trusted proxies (the default) `X-Forwarded-For` is ignored: a client cannot escape
/// its budget by writing a new address into the header.
async fn forwarded_for_from_an_untrusted_peer_is_ignored(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |config| config.auth.failed_auth_per_minute = 3).await
    else {
        return;
    };
    let mut statuses = Vec::new();
    for (attempt, address) in ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]
        .into_iter()
        .enumerate()
    {
        statuses.push(status_of_bad_request(&app, attempt, Some(address)).await);
    }
    assert_eq!(statuses, [401, 401, 401, 429], "one budget: the peer's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_an_untrusted_peer_is_ignored_on_sqlite() {
    forwarded_for_from_an_untrusted_peer_is_ignored(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_an_untrusted_peer_is_ignored_on_postgres() {
    forwarded_for_from_an_untrusted_peer_is_ignored(Backend::Postgres).await;
}
