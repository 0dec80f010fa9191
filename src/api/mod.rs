//! The admin API: JSON over HTTP under `/v1`, one module per resource.
//!
//! Every route lives in [`router`]; every error goes through [`ApiError`]; every list uses the
//! cursor pagination in [`pagination`].
//!
//! The top of the HTTP side: handlers read [`crate::state::AppState`], authenticate through
//! [`crate::auth`], answer with the envelope of [`crate::http`] and call the services and the
//! store. Nothing below imports this module.

pub mod api_keys;
pub mod audit_events;
pub mod deliveries;
pub mod endpoints;
pub mod events;
mod lookup;
pub mod merchants;
pub mod numbers;
pub mod objects;
pub mod openapi;
pub mod ops;
pub mod pagination;
pub mod sign;
pub mod signing_secret;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

// The envelope and extractors live in `crate::http` (shared with `auth`); handlers reach
// them from here.
pub use crate::http::request_id;
pub use crate::http::{
    ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody, ErrorEnvelope, ErrorType, OptionalJson,
    MAX_JSON_DEPTH,
};

use crate::state::AppState;

/// The whole HTTP surface, with its middleware. Every `/v1` route sits behind
/// authentication (which also applies rate limits and nonces) and idempotency.
pub fn router(state: AppState) -> Router {
    let v1 = v1_routes()
        .route_layer(from_fn_with_state(
            state.auth.clone(),
            crate::auth::idempotency::idempotency,
        ))
        .route_layer(from_fn_with_state(
            state.auth.clone(),
            crate::auth::authenticate,
        ));
    with_middleware(ops_routes().merge(v1), state)
}

/// Unauthenticated operational routes.
fn ops_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi_json))
}

/// The authenticated admin API.
fn v1_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/merchants",
            get(merchants::list).post(merchants::create),
        )
        .route(
            "/v1/merchants/{id}",
            get(merchants::retrieve).patch(merchants::update),
        )
        .route("/v1/api-keys", get(api_keys::list).post(api_keys::create))
        .route(
            "/v1/api-keys/{id}",
            get(api_keys::retrieve)
                .patch(api_keys::update)
                .delete(api_keys::delete),
        )
        .route("/v1/api-keys/{id}/revoke", post(api_keys::revoke))
        .route("/v1/api-keys/{id}/roll", post(api_keys::roll))
        .route("/v1/signing-secret", get(signing_secret::get_status))
        .route(
            "/v1/signing-secret/initiate",
            post(signing_secret::initiate),
        )
        .route(
            "/v1/signing-secret/complete",
            post(signing_secret::complete),
        )
        .route("/v1/signing-secret/revert", post(signing_secret::revert))
        .route("/v1/signing-secret/cancel", post(signing_secret::cancel))
        .route("/v1/signing-secret/reveal", post(signing_secret::reveal))
        .route(
            "/v1/signing-secret/schedule",
            put(signing_secret::put_schedule).delete(signing_secret::delete_schedule),
        )
        .route("/v1/sign", post(sign::sign))
        .route(
            "/v1/endpoints",
            get(endpoints::list).post(endpoints::create),
        )
        .route(
            "/v1/endpoints/{id}",
            get(endpoints::retrieve)
                .patch(endpoints::update)
                .delete(endpoints::delete),
        )
        .route("/v1/endpoints/{id}/test", post(endpoints::test))
        .route("/v1/endpoints/{id}/replay", post(endpoints::replay))
        .route("/v1/events", get(events::list).post(events::create))
        .route("/v1/events/{id}", get(events::retrieve))
        .route("/v1/deliveries", get(deliveries::list))
        .route("/v1/deliveries/{id}", get(deliveries::retrieve))
        .route("/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route("/v1/audit-events", get(audit_events::list))
}

/// Wraps routes in the daemon's middleware: request ids, metrics, deadline, panic catching,
/// body limit, and the envelope for unknown routes and methods. Public so tests can check the
/// middleware on routes of their own (a handler that panics, say).
///
/// Outermost first: the request id (so every answer, and every log line, carries it), then
/// the request log and metrics, which must see every final answer, including the 503 of the
/// deadline and the 500 of a panic; then the envelope for errors other layers answered in
/// plain text; then the deadline, the panic catcher and the body limit.
pub fn with_middleware(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.config.http.body_limit_bytes;
    let timeout = Duration::from_secs(state.config.http.request_timeout_secs);
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
            },
        ))
        .layer(axum::middleware::from_fn(move |request, next| {
            deadline(timeout, request, next)
        }))
        .layer(axum::middleware::from_fn(
            crate::http::error::envelope_errors,
        ))
        .layer(axum::middleware::from_fn(crate::telemetry::track_http))
        .layer(axum::middleware::from_fn(request_id::request_id))
        .with_state(state)
}

/// Answers 503 in the envelope when a request outlives `http.request_timeout_secs`.
async fn deadline(
    limit: Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(ApiError::unavailable(
            "request_timeout",
            "the request took longer than the configured limit (http.request_timeout_secs)",
        )),
    }
}

/// The longest human-given name, in characters.
pub const NAME_MAX_CHARS: usize = 100;

/// A human-given name: at most [`NAME_MAX_CHARS`] characters, no control characters, not
/// blank; surrounding spaces are trimmed off. The limits hold for the name as sent, so what
/// the OpenAPI document says of it (`maxLength`, `pattern`) is exactly what is accepted.
pub fn valid_name(name: &str) -> Result<String, ApiError> {
    if name.chars().count() > NAME_MAX_CHARS || name.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_name",
            format!("name must be 1 to {NAME_MAX_CHARS} characters, not only spaces"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "name must not contain control characters",
        ));
    }
    Ok(name.trim().to_owned())
}

async fn not_found() -> ApiError {
    ApiError::invalid(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "no such route; see /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::invalid(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method; see /openapi.json",
    )
}
