//! Authentication and the guards around every authenticated request.
//!
//! [`authenticate`] is the middleware in front of every `/v1` route. In order it:
//! 1. reads the token from `Authorization: Bearer` or `X-Api-Key` and checks its format and
//!    checksum, so a typo is refused before any database lookup (401);
//! 2. looks the key up by hash — on every request, so a revocation or deactivation made by any
//!    daemon sharing the database takes effect on the very next request;
//! 3. if the credential is refused (absent, malformed, unknown, revoked …), charges the failure
//!    to the client's address ([`client_addr`], by IPv6 /64) and answers 429 with `Retry-After`
//!    instead of 401 once that address spent its budget. A valid key is never refused because
//!    of failures, so a noisy neighbour behind the same address cannot lock a service out;
//! 4. takes a token from the key's rate-limit bucket (429 with `Retry-After`);
//! 5. checks `X-Nonce` (400 malformed, 409 reused; required on mutations when configured);
//! 6. notes the use for the batched `last_used_at`.
//!
//! Handlers then take [`MerchantAuth`] or [`OperatorAuth`] as extractors.
//!
//! The middleware reads only its own part of the state ([`AuthState`]) and refuses with the
//! envelope of [`crate::http`]; it uses the store and the key rules, and knows nothing of the
//! router, the handlers or the server.

pub mod client_addr;
pub mod idempotency;
pub mod last_used;
pub mod limits;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::clock::Clock;
use crate::config::Config;
use crate::http::ApiError;
use crate::ids::MerchantId;
use crate::keys::{ApiToken, Mode, Scope};

use crate::store::{ApiKeyRecord, KeyKind, Store};

pub use last_used::LastUsed;
pub use limits::Limits;

/// The part of the daemon's state the authentication and idempotency middleware use. The
/// server builds it once; cloning it (axum does so per request) is one reference count.
#[derive(Clone)]
pub struct AuthState(Arc<AuthParts>);

/// The parts of [`AuthState`].
pub struct AuthParts {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Per-key and per-IP rate limits (this instance).
    pub limits: Arc<Limits>,
    /// Batched `last_used_at` updates.
    pub last_used: Arc<LastUsed>,
}

impl AuthState {
    /// Wraps the parts.
    pub fn new(parts: AuthParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AuthState {
    type Target = AuthParts;

    fn deref(&self) -> &AuthParts {
        &self.0
    }
}

/// How many digits an `X-Nonce` has.
pub const NONCE_DIGITS: std::ops::RangeInclusive<usize> = 12..=16;

/// How long nonces and idempotency keys are remembered.
pub const GUARD_TTL: chrono::Duration = chrono::Duration::hours(24);

/// The authenticated key, placed in the request's extensions by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Authenticated(pub ApiKeyRecord);

/// A request made with a merchant's API key.
#[derive(Debug, Clone)]
pub struct MerchantAuth {
    pub key: ApiKeyRecord,
    pub merchant_id: MerchantId,
    pub mode: Mode,
}

impl MerchantAuth {
    /// An audit event for a change this key makes now, in its merchant's chain and mode.
    pub fn audit_event(
        &self,
        action: &'static str,
        target: impl ToString,
        details: serde_json::Value,
        now: crate::clock::Timestamp,
    ) -> crate::store::NewAuditEvent {
        crate::store::NewAuditEvent {
            id: crate::ids::AuditId::new(),
            merchant_id: Some(self.merchant_id),
            mode: Some(self.mode),
            actor_key_id: Some(self.key.id),
            action,
            target: target.to_string(),
            request_id: crate::http::request_id::current_typed_request_id(),
            details,
            created_at: now,
        }
    }

    /// 403 naming the scope unless the key holds it.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.key.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::permission(
                "missing_scope",
                format!("this API key lacks the `{scope}` scope"),
            ))
        }
    }
}

/// A request made with an operator key.
#[derive(Debug, Clone)]
pub struct OperatorAuth {
    pub key: ApiKeyRecord,
}

fn authenticated(parts: &Parts) -> Result<ApiKeyRecord, ApiError> {
    parts
        .extensions
        .get::<Authenticated>()
        .map(|auth| auth.0.clone())
        .ok_or_else(|| ApiError::internal("route is not behind the authentication middleware"))
}

impl<S: Send + Sync> FromRequestParts<S> for MerchantAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let key = authenticated(parts)?;
        match (key.kind, key.merchant_id) {
            (KeyKind::Merchant(mode), Some(merchant_id)) => Ok(MerchantAuth {
                key,
                merchant_id,
                mode,
            }),
            _ => Err(ApiError::permission(
                "merchant_key_required",
                "operator keys manage merchants only; use one of the merchant's API keys",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for OperatorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let key = authenticated(parts)?;
        match key.kind {
            KeyKind::Operator => Ok(OperatorAuth { key }),
            KeyKind::Merchant(_) => Err(ApiError::permission(
                "operator_key_required",
                "this route needs an operator key (hk_op_…)",
            )),
        }
    }
}

/// Reads the token from the request headers.
fn presented_token(headers: &HeaderMap) -> Result<ApiToken, ApiError> {
    let header = |name: &str| -> Result<Option<&str>, ApiError> {
        headers
            .get(name)
            .map(|value| {
                value.to_str().map_err(|_| {
                    ApiError::authentication(
                        "invalid_api_key",
                        "the API key header is not valid text",
                    )
                })
            })
            .transpose()
    };
    let bearer = match header("authorization")? {
        Some(value) => Some(
            value
                .strip_prefix("Bearer ")
                .map(str::trim)
                .ok_or_else(|| {
                    ApiError::authentication(
                        "invalid_api_key",
                        "use `Authorization: Bearer <api key>`",
                    )
                })?,
        ),
        None => None,
    };
    let x_api_key = header("x-api-key")?.map(str::trim);
    let text = match (bearer, x_api_key) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(
                "conflicting_api_keys",
                "Authorization and X-Api-Key carry different keys; send one",
            ))
        }
        (Some(token), _) | (None, Some(token)) => token,
        (None, None) => {
            return Err(ApiError::authentication(
                "missing_api_key",
                "no API key: send `Authorization: Bearer <api key>` or `X-Api-Key: <api key>`",
            ))
        }
    };
    ApiToken::parse(text).map_err(|err| {
        ApiError::authentication("invalid_api_key", format!("invalid API key: {err}"))
    })
}

/// Finds the key and checks it may be used now.
async fn find_usable_key(headers: &HeaderMap, state: &AuthState) -> Result<ApiKeyRecord, ApiError> {
    let token = presented_token(headers)?;
    let found = state
        .store
        .find_api_key_by_hash(&token.hash())
        .await
        // A lookup that fails is not an unknown key: a database that is down is a 503.
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::authentication("invalid_api_key", "invalid API key"))?;
    let now = state.clock.now();
    let key = found.key;
    if key.revoked_at.is_some() {
        return Err(ApiError::authentication(
            "api_key_revoked",
            "this API key has been revoked",
        ));
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::authentication(
            "api_key_expired",
            "this API key has expired",
        ));
    }
    if !key.active {
        return Err(ApiError::authentication(
            "api_key_inactive",
            "this API key is deactivated",
        ));
    }
    if found.merchant_disabled {
        return Err(ApiError::authentication(
            "merchant_disabled",
            "this merchant is disabled",
        ));
    }
    Ok(key)
}

/// The client address a refused credential is charged to (see [`client_addr`]).
fn client_ip(request: &Request, state: &AuthState) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    client_addr::client_addr(peer, request.headers(), &state.config.http.trusted_proxies)
}

/// The answer to a refused credential: its 401, or 429 once the client's address has spent
/// its budget of failures.
fn refuse_credential(request: &Request, state: &AuthState, err: ApiError) -> Response {
    let ip = client_ip(request, state);
    if let Some(secs) = state.limits.blocked_for(ip) {
        return ApiError::rate_limited(secs).into_response();
    }
    if let Some(secs) = state.limits.record_failure(ip) {
        tracing::warn!(%ip, "too many failed authentications from one address");
        return ApiError::rate_limited(secs).into_response();
    }
    err.into_response()
}

fn is_mutation(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Checks `X-Nonce` and remembers it for [`GUARD_TTL`].
async fn check_nonce(
    headers: &HeaderMap,
    method: &Method,
    state: &AuthState,
    key: &ApiKeyRecord,
) -> Result<(), ApiError> {
    let nonce = match headers.get("x-nonce") {
        Some(value) => value.to_str().unwrap_or_default(),
        None if state.config.auth.require_nonce && is_mutation(method) => {
            return Err(ApiError::bad_request(
                "nonce_required",
                "this daemon requires an X-Nonce header (12 to 16 digits) on every change",
            ))
        }
        None => return Ok(()),
    };
    if !NONCE_DIGITS.contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(
            "invalid_nonce",
            "X-Nonce must be 12 to 16 digits",
        ));
    }
    let now = state.clock.now();
    let fresh = state
        .store
        .remember_nonce(key.id, nonce, now, now + GUARD_TTL)
        .await
        .map_err(ApiError::store)?;
    if fresh {
        Ok(())
    } else {
        Err(ApiError::conflict(
            "nonce_reused",
            "this X-Nonce was already used with this API key in the last 24 hours",
        ))
    }
}

/// The authentication middleware (see the module docs for the order of checks).
pub async fn authenticate(
    State(state): State<AuthState>,
    mut request: Request,
    next: Next,
) -> Response {
    let key = match find_usable_key(request.headers(), &state).await {
        Ok(key) => key,
        Err(err) if err.status().as_u16() == 401 => {
            return refuse_credential(&request, &state, err)
        }
        Err(err) => return with_fault_logged(&state, err.into_response()),
    };
    if let Err(secs) = state.limits.check_key(key.id) {
        return ApiError::rate_limited(secs).into_response();
    }
    if let Err(err) = check_nonce(request.headers(), request.method(), &state, &key).await {
        return with_fault_logged(&state, err.into_response());
    }
    state.last_used.record(key.id, state.clock.now());
    request.extensions_mut().insert(Authenticated(key));
    with_fault_logged(&state, next.run(request).await)
}

/// Logs, naming this daemon's database, an answer given because the database could not be
/// used (see [`crate::http::error::DatabaseFault`]), whichever handler gave it.
fn with_fault_logged(state: &AuthState, response: Response) -> Response {
    if response
        .extensions()
        .get::<crate::http::error::DatabaseFault>()
        .is_some()
    {
        crate::http::error::log_database_fault(&response, &state.config.database.location());
    }
    response
}
