//! The one error type every handler returns, rendered as the one error envelope:
//!
//! ```json
//! {"error": {"type": "invalid_request", "code": "key_limit_reached",
//!            "message": "…", "requestId": "req_…"}}
//! ```
//!
//! A 500 never shows its cause: the details go to the log under the request id.
//!
//! Store errors are classified in one place ([`From<StoreError>`], by
//! [`StoreError::unavailable`]): a database that cannot be used right now (unreachable, disk
//! full, read-only) is a 503 with `Retry-After` and a code saying which
//! (`database_unavailable`, `disk_full`, `database_read_only`), never a 500 and never a 401;
//! everything else is the opaque 500.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::request_id::current_request_id;
use crate::store::StoreError;
use crate::store::Unavailable;

/// The `type` of an error: what kind of thing went wrong, fixed per status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// 401: no, malformed, unknown, inactive or revoked key.
    Authentication,
    /// 403: the key lacks a scope (named in the message) or is the wrong kind of key.
    Permission,
    /// 400/404/409/413/415/422: the request cannot be done as asked.
    InvalidRequest,
    /// 429: too many requests; see `Retry-After`.
    RateLimited,
    /// 500: our fault; details only in the logs.
    ApiError,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: ErrorType,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
    /// The store error behind a `database_unavailable` (or `disk_full`, `database_read_only`)
    /// answer, for the log line that names the database (see [`DatabaseFault`]).
    fault: Option<String>,
}

/// In the extensions of an answer given because the database cannot be used: the middleware
/// that knows which database this daemon uses logs it (see [`log_database_fault`]); the cause
/// never reaches the client.
#[derive(Debug, Clone)]
pub struct DatabaseFault {
    pub code: &'static str,
    pub cause: String,
}

/// The envelope as it appears in the OpenAPI document.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// The body inside the envelope.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// A stable, machine-readable code, e.g. `key_limit_reached`.
    pub code: &'static str,
    /// A sentence for humans.
    pub message: String,
    /// The request id, as in the `X-Request-Id` header.
    #[serde(rename = "requestId")]
    pub request_id: String,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: ErrorType,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            retry_after_secs: None,
            fault: None,
        }
    }

    /// 401.
    pub fn authentication(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::Authentication,
            code,
            message,
        )
    }

    /// 403.
    pub fn permission(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorType::Permission, code, message)
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequest,
            code,
            message,
        )
    }

    /// 404 for a resource the caller cannot see (missing or another tenant's: same answer).
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequest,
            "resource_missing",
            format!("no such {what}: '{id}'"),
        )
    }

    /// 409.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            ErrorType::InvalidRequest,
            code,
            message,
        )
    }

    /// 422: well-formed, but a value is not acceptable.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::InvalidRequest,
            code,
            message,
        )
    }

    /// Any other 4xx status in the `invalid_request` family.
    pub fn invalid(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, ErrorType::InvalidRequest, code, message)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::RateLimited,
            "rate_limited",
            format!("too many requests; retry after {retry_after_secs} s"),
        );
        err.retry_after_secs = Some(retry_after_secs);
        err
    }

    /// 500. `cause` is logged with the request id and never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(request_id = %current_request_id(), error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::ApiError,
            "internal_error",
            "something went wrong on our side; quote the request id if you contact support",
        )
    }

    /// 503: temporarily unable to answer (timeout, shutting down).
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ApiError,
            code,
            message,
        )
    }

    /// Adds `Retry-After` (seconds) to the answer.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// 503 with `Retry-After`: a write queue is full (nothing was written).
    pub fn saturated() -> Self {
        Self::unavailable(
            "ingest_saturated",
            "too many writes are waiting for the database; nothing was stored, retry shortly",
        )
        .with_retry_after(1)
    }

    /// 503 with `Retry-After`: the database cannot be used right now (`kind` says why);
    /// `cause` goes to the log (see [`DatabaseFault`]), never to the client.
    pub fn database_unavailable(kind: Unavailable, cause: impl std::fmt::Display) -> Self {
        let mut err = Self::unavailable(kind.code(), kind.message())
            .with_retry_after(kind.retry_after_secs());
        err.fault = Some(cause.to_string());
        err
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody {
                kind: self.kind,
                code: self.code,
                message: self.message,
                request_id: current_request_id().to_string(),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(cause) = self.fault {
            response.extensions_mut().insert(DatabaseFault {
                code: self.code,
                cause,
            });
        }
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}

/// Middleware: puts every error answer that is not already in the envelope into it.
///
/// Handlers and the project's extractors answer in the envelope themselves; this catches
/// whatever another layer produced in plain text (axum's own rejections, such as the body
/// limit behind a raw `Bytes` body or a path that is not valid UTF-8), so a client parses one
/// shape for every error, whichever layer refused. Errors hyper answers before routing (a
/// malformed request line, oversized headers) never reach it.
pub async fn envelope_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    // axum's rejections are one short sentence; anything longer is not shown.
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    let mut envelope = ApiError::from_status(status, text).into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            envelope.headers_mut().insert(name, value.clone());
        }
    }
    envelope
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

impl ApiError {
    /// The envelope for an error status some other layer chose; `text` is its plain-text
    /// explanation, kept as the message for 4xx (a 5xx stays opaque, as always).
    fn from_status(status: StatusCode, text: Option<String>) -> Self {
        let message = |fallback: &str| text.clone().unwrap_or_else(|| fallback.to_owned());
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => super::extract::body_too_large(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::invalid(
                status,
                "unsupported_media_type",
                message("this content type is not accepted here"),
            ),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::invalid(
                status,
                "method_not_allowed",
                "this route does not accept that method; see /openapi.json",
            ),
            StatusCode::NOT_FOUND => ApiError::invalid(status, "not_found", message("not found")),
            StatusCode::UNAUTHORIZED => {
                ApiError::authentication("unauthenticated", message("authentication required"))
            }
            StatusCode::FORBIDDEN => ApiError::permission("forbidden", message("not allowed")),
            StatusCode::TOO_MANY_REQUESTS => ApiError::new(
                status,
                ErrorType::RateLimited,
                "rate_limited",
                message("too many requests"),
            ),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => ApiError::unavailable(
                "unavailable",
                "the daemon cannot answer this request now; retry later",
            ),
            status if status.is_server_error() => {
                ApiError::internal(format!("a layer answered {status}: {}", message("")))
            }
            status => ApiError::invalid(status, "invalid_request", message("invalid request")),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // Handlers map NotFound and Conflict themselves where they can name the resource;
            // these are the fallbacks.
            StoreError::NotFound => ApiError::not_found("resource", "?"),
            StoreError::Conflict(what) => ApiError::conflict("conflict", what),
            other => ApiError::store(other),
        }
    }
}

impl ApiError {
    /// A store error no handler has a better answer for: 503 with `Retry-After` when the
    /// database cannot be used right now (see [`StoreError::unavailable`]) or a write queue is
    /// full, otherwise the opaque 500. What handlers use in place of [`ApiError::internal`] on
    /// store results.
    pub fn store(err: StoreError) -> Self {
        if matches!(err, StoreError::Saturated) {
            return ApiError::saturated();
        }
        match err.unavailable() {
            Some(kind) => ApiError::database_unavailable(kind, err),
            None => ApiError::internal(err),
        }
    }

    /// A service's error (`anyhow`): classified like [`ApiError::store`] when a store error is
    /// behind it, otherwise the opaque 500.
    pub fn service(err: anyhow::Error) -> Self {
        let err = match err.downcast::<StoreError>() {
            Ok(store) => return ApiError::store(store),
            Err(other) => other,
        };
        match err.downcast::<crate::secrets::keyring::KeyringError>() {
            Ok(crate::secrets::keyring::KeyringError::Store(store)) => ApiError::store(store),
            Ok(other) => ApiError::internal(other),
            Err(other) => ApiError::internal(format!("{other:#}")),
        }
    }
}

/// The last second a database fault was logged in, and how many were not logged since.
static FAULT_LOG: std::sync::Mutex<(u64, u64)> = std::sync::Mutex::new((0, 0));

/// Logs the [`DatabaseFault`] behind `response`, if any, naming `database` (the SQLite file or
/// the PostgreSQL address, without its password): at most one line a second, with how many
/// faults were not logged since, so an outage under a flood does not flood the log too.
pub fn log_database_fault(response: &Response, database: &str) {
    let Some(fault) = response.extensions().get::<DatabaseFault>() else {
        return;
    };
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let suppressed = {
        let mut last = FAULT_LOG.lock().unwrap_or_else(|p| p.into_inner());
        if last.0 == second {
            last.1 += 1;
            return;
        }
        let suppressed = last.1;
        *last = (second, 0);
        suppressed
    };
    tracing::error!(
        request_id = %current_request_id(),
        database,
        code = fault.code,
        error = %fault.cause,
        not_logged_since = suppressed,
        "the database cannot be used; answering 503"
    );
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;
