//! The one error type every handler returns, rendered as the envelope of DESIGN.md §5:
//!
//! ```json
//! {"error": {"type": "invalid_request", "code": "key_limit_reached",
//!            "message": "…", "requestId": "req_…"}}
//! ```
//!
//! A 500 never shows its cause: the details go to the log under the request id.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::request_id::current_request_id;
use crate::store::StoreError;

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
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // Handlers map NotFound and Conflict themselves where they can name the resource;
            // these are the fallbacks.
            StoreError::NotFound => ApiError::not_found("resource", "?"),
            StoreError::Conflict(what) => ApiError::conflict("conflict", what),
            other => ApiError::internal(other),
        }
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;
