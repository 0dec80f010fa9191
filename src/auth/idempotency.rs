//! `Idempotency-Key` on POST: the first response is stored for 24 hours per API key and
//! replayed (with `Idempotent-Replayed: true`) when the same request comes again; the same key
//! with a different request is refused (422 `idempotency_key_reused`), and one still running
//! is refused with 409. A response we failed to produce (5xx) is not stored, so the client can
//! retry with the same key.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{Authenticated, GUARD_TTL};
use crate::api::{body_too_large, ApiError};
use crate::server::AppState;
use crate::store::{IdempotencyBegin, StoredResponse};

/// The response header on a replay.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The longest `Idempotency-Key`: 1 to this many printable ASCII characters.
pub const MAX_KEY_LEN: usize = 255;

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The idempotency middleware; runs after [`super::authenticate`].
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(raw_key) = request.headers().get("idempotency-key") else {
        return next.run(request).await;
    };
    let idem_key = match raw_key.to_str() {
        Ok(key) if valid_key(key) => key.to_owned(),
        _ => {
            return ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 printable ASCII characters",
            )
            .into_response()
        }
    };
    let Some(Authenticated(key)) = request.extensions().get::<Authenticated>().cloned() else {
        return ApiError::internal("idempotency runs before authentication").into_response();
    };
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, state.config.http.body_limit_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => return body_too_large().into_response(),
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update([0]);
    hasher.update(parts.uri.to_string());
    hasher.update([0]);
    hasher.update(&bytes);
    let fingerprint = hex::encode(hasher.finalize());
    let now = state.clock.now();
    let begun = state
        .store
        .begin_idempotent(key.id, &idem_key, &fingerprint, now, now + GUARD_TTL)
        .await;
    match begun {
        Err(err) => ApiError::internal(err).into_response(),
        Ok(IdempotencyBegin::Mismatch) => ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request in the last 24 hours",
        )
        .into_response(),
        Ok(IdempotencyBegin::InFlight) => ApiError::conflict(
            "idempotency_request_in_progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
        .into_response(),
        Ok(IdempotencyBegin::Replay(stored)) => replay(stored),
        Ok(IdempotencyBegin::Started) => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            record(&state, key.id, &idem_key, response).await
        }
    }
}

async fn record(
    state: &AppState,
    key: crate::ids::ApiKeyId,
    idem_key: &str,
    response: Response,
) -> Response {
    if response.status().is_server_error() {
        if let Err(err) = state.store.abandon_idempotent(key, idem_key).await {
            tracing::error!(error = %err, "cannot release an idempotency key");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(err) => return ApiError::internal(err).into_response(),
    };
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        body: bytes.to_vec(),
    };
    if let Err(err) = state.store.finish_idempotent(key, idem_key, &stored).await {
        tracing::error!(error = %err, "cannot store an idempotent response");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    if let Some(content_type) = stored
        .content_type
        .and_then(|ct| HeaderValue::from_str(&ct).ok())
    {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}
