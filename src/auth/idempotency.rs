//! `Idempotency-Key` on POST: the first response is stored for 24 hours per API key and
//! replayed (with `Idempotent-Replayed: true`) when the same request comes again; the same key
//! with a different request is refused (422 `idempotency_key_reused`), and one still running
//! is refused with 409. A response we failed to produce (5xx) is not stored, so the client can
//! retry with the same key.
//!
//! Stored responses are sealed under the master key by the store (a token or a secret shown
//! once must not sit in the database in plaintext). Replaying an answer that shows a token or
//! a secret hands it out again, so such a replay is audited (`idempotency.replay`, with the
//! route and the Idempotency-Key, never the body). A stored response no loaded master key
//! opens is not replayed: 409 `idempotency_response_unavailable`, and the request is not run
//! again either (the first one took effect).
//!
//! Nothing leaves a key stuck: a claim holds for a short lease (`http.request_timeout_secs`
//! plus a margin), renewed while the request runs, so a dead process's claim lapses within
//! that time. The request itself runs in a task of its own, so neither the request deadline
//! (which answers 503) nor a client that hangs up cancels it halfway: it runs to its end and
//! its real outcome is recorded for the key, so a retry gets 409 while it runs and then the
//! replay (an event answered 503 on the deadline is committed once, and its retry replays the
//! 202). A release guard frees the claim on every other way out (a panic, a runtime shutdown).

use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::time::Duration;

use super::AuthState;
use super::{Authenticated, GUARD_TTL};
use crate::http::{body_too_large, ApiError};
use crate::store::{ApiKeyRecord, IdempotencyBegin, KeyKind, NewAuditEvent, StoredResponse};

/// The response header on a replay.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The longest `Idempotency-Key`: 1 to this many printable ASCII characters.
pub const MAX_KEY_LEN: usize = 255;

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The idempotency middleware; runs after [`super::authenticate`].
pub async fn idempotency(State(state): State<AuthState>, request: Request, next: Next) -> Response {
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
    let route = format!(
        "POST {}",
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| request.uri().path(), MatchedPath::as_str)
    );
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
    let lease =
        chrono::Duration::from_std(Claim::lease(&state)).unwrap_or(chrono::Duration::minutes(1));
    let begun = state
        .store
        .begin_idempotent(key.id, &idem_key, &fingerprint, now, now + lease)
        .await;
    match begun {
        Err(err) => ApiError::store(err).into_response(),
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
        Ok(IdempotencyBegin::Unreadable) => ApiError::conflict(
            "idempotency_response_unavailable",
            "the request with this Idempotency-Key completed, but its stored answer can no longer be \
             read (the master key that sealed it is not loaded); check its effect and use a new key",
        )
        .into_response(),
        Ok(IdempotencyBegin::Replay(stored)) => {
            if shows_a_secret(&route, &stored.body) {
                let audit = replay_audit(&key, &route, &idem_key, stored.status, now);
                if let Err(err) = state.store.record_audit(&audit).await {
                    // A secret handed out again must leave a trace; without one, no replay.
                    return ApiError::store(err).into_response();
                }
            }
            replay(stored)
        }
        Ok(IdempotencyBegin::Started) => {
            let claim = Claim {
                state: state.clone(),
                key: key.id,
                idempotency_key: idem_key,
                claimed_at: now,
                released: false,
            };
            let request = Request::from_parts(parts, Body::from(bytes));
            let run = tokio::spawn(crate::http::request_id::in_current_request(
                claim.run(next, request),
            ));
            match run.await {
                Ok(response) => response,
                // The handler panicked; the claim's guard released the key.
                Err(_) => ApiError::internal("handler panicked").into_response(),
            }
        }
    }
}

/// How much longer than the request deadline a claim holds without renewal.
const LEASE_MARGIN: Duration = Duration::from_secs(15);

/// A claimed idempotency key. Dropped without [`Claim::finish`] or [`Claim::release`] (a
/// panic, a runtime shutting down), it releases the key in the background.
struct Claim {
    state: AuthState,
    key: crate::ids::ApiKeyId,
    idempotency_key: String,
    claimed_at: crate::clock::Timestamp,
    released: bool,
}

impl Claim {
    fn lease(state: &AuthState) -> Duration {
        Duration::from_secs(state.config.http.request_timeout_secs) + LEASE_MARGIN
    }

    fn lease_until(&self) -> crate::clock::Timestamp {
        let lease = chrono::Duration::from_std(Self::lease(&self.state))
            .unwrap_or(chrono::Duration::minutes(1));
        self.state.clock.now() + lease
    }

    /// Runs the request to its end, renewing the lease meanwhile, and records its outcome.
    async fn run(self, next: Next, request: Request) -> Response {
        let mut handler = std::pin::pin!(next.run(request));
        let every = Self::lease(&self.state) / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let started = tokio::time::Instant::now();
        let response = loop {
            tokio::select! {
                response = &mut handler => break response,
                _ = renew.tick() => {
                    // A request still running after a whole day keeps its key no longer.
                    if started.elapsed() > GUARD_TTL.to_std().unwrap_or(Duration::MAX) {
                        continue;
                    }
                    let until = self.lease_until();
                    match self.state.store.renew_idempotent(self.key, &self.idempotency_key, self.claimed_at, until).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!("an idempotency claim lapsed while its request ran"),
                        Err(err) => tracing::warn!(error = %err, "cannot renew an idempotency claim"),
                    }
                }
            }
        };
        self.finish(response).await
    }

    /// Stores `response` for replay (a 5xx releases the key instead, so it can be retried).
    async fn finish(mut self, response: Response) -> Response {
        if response.status().is_server_error() {
            self.release().await;
            return response;
        }
        let (parts, body) = response.into_parts();
        let bytes = match to_bytes(body, usize::MAX).await {
            Ok(bytes) => bytes,
            Err(err) => {
                self.release().await;
                return ApiError::internal(err).into_response();
            }
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
        let expires_at = self.claimed_at + GUARD_TTL;
        let state = &self.state;
        match state
            .store
            .finish_idempotent(
                self.key,
                &self.idempotency_key,
                self.claimed_at,
                &stored,
                expires_at,
            )
            .await
        {
            Ok(()) => self.released = true,
            Err(err) => {
                tracing::error!(error = %err, "cannot store an idempotent response");
                self.release().await;
            }
        }
        Response::from_parts(parts, Body::from(bytes))
    }

    async fn release(&mut self) {
        self.released = true;
        if let Err(err) = self
            .state
            .store
            .abandon_idempotent(self.key, &self.idempotency_key, self.claimed_at)
            .await
        {
            // The lease still runs out.
            tracing::error!(error = %err, "cannot release an idempotency key");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime left: the lease runs out
        };
        let store = self.state.store.clone();
        let (key, idempotency_key, claimed_at) = (
            self.key,
            std::mem::take(&mut self.idempotency_key),
            self.claimed_at,
        );
        runtime.spawn(async move {
            if let Err(err) = store
                .abandon_idempotent(key, &idempotency_key, claimed_at)
                .await
            {
                tracing::error!(error = %err, "cannot release an idempotency key");
            }
        });
    }
}

/// Routes whose answers show a token or a secret once.
const SECRET_BEARING_ROUTES: &[&str] = &[
    "POST /v1/merchants",
    "POST /v1/api-keys",
    "POST /v1/api-keys/{id}/roll",
    "POST /v1/signing-secret/initiate",
    "POST /v1/signing-secret/reveal",
];

/// Whether a stored answer shows a token or a secret: its route is one that does, or its body
/// holds something shaped like an API token (so a route added later is covered too).
fn shows_a_secret(route: &str, body: &[u8]) -> bool {
    SECRET_BEARING_ROUTES.contains(&route) || holds_a_token(body)
}

/// `hk_live_`, `hk_test_` or `hk_op_` followed by 38 base62 characters.
fn holds_a_token(body: &[u8]) -> bool {
    const BODY_LEN: usize = 38;
    let mut rest = body;
    while let Some(at) = rest.windows(3).position(|w| w == b"hk_") {
        let after = &rest[at + 3..];
        for prefix in [&b"live_"[..], b"test_", b"op_"] {
            if let Some(token) = after.strip_prefix(prefix) {
                if token.len() >= BODY_LEN
                    && token[..BODY_LEN].iter().all(u8::is_ascii_alphanumeric)
                {
                    return true;
                }
            }
        }
        rest = after;
    }
    false
}

/// The audit entry of a replayed answer that shows a secret.
fn replay_audit(
    key: &ApiKeyRecord,
    route: &str,
    idem_key: &str,
    status: u16,
    now: crate::clock::Timestamp,
) -> NewAuditEvent {
    NewAuditEvent {
        id: crate::ids::AuditId::new(),
        merchant_id: key.merchant_id,
        mode: match key.kind {
            KeyKind::Merchant(mode) => Some(mode),
            KeyKind::Operator => None,
        },
        actor_key_id: Some(key.id),
        action: "idempotency.replay",
        target: route.to_owned(),
        request_id: crate::http::request_id::current_typed_request_id(),
        details: serde_json::json!({
            "route": route,
            "idempotency_key": idem_key,
            "status": status,
        }),
        created_at: now,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_showing_a_token_or_secret_are_recognised() {
        let token = format!("hk_test_{}", "a".repeat(38));
        assert!(holds_a_token(
            format!(r#"{{"token":"{token}"}}"#).as_bytes()
        ));
        assert!(holds_a_token(
            format!("hk_op_{}", "Z9".repeat(19)).as_bytes()
        ));
        assert!(!holds_a_token(b"hk_live_short"));
        assert!(!holds_a_token(br#"{"display_prefix":"hk_live_s6I6gR"}"#));
        assert!(shows_a_secret("POST /v1/signing-secret/reveal", b"{}"));
        assert!(!shows_a_secret("POST /v1/events", br#"{"id":"evt_1"}"#));
    }
}
