//! Authentication: both headers, every way a token can be wrong, all in the envelope.

use reqwest::Method;

use crate::helpers::{assert_error, TestApp};
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
