//! Extractors whose rejections use the error envelope: [`ApiJson`] for bodies, [`ApiQuery`]
//! for query strings. axum's own rejections are plain text; these wrap them.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON body. Unknown fields are refused by the target types (`deny_unknown_fields`).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(err) => {
            ApiError::unprocessable("invalid_body", data_error_message(&err.body_text()))
        }
        JsonRejection::JsonSyntaxError(err) => ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON: {}", err.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::invalid(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            body_too_large()
        }
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

/// 413 in the envelope.
pub fn body_too_large() -> ApiError {
    ApiError::invalid(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the request body is larger than the configured limit (http.body_limit_bytes)",
    )
}

/// axum prefixes serde's message with a generic sentence; keep the useful part.
fn data_error_message(text: &str) -> String {
    let detail = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    format!("the body does not match the expected shape: {detail}")
}

/// A JSON body that may also be absent (empty): then `T::default()`. For actions such as
/// `POST …/roll` whose parameters are all optional, so `curl -X POST` works without `-d '{}'`.
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req.headers().get(axum::http::header::CONTENT_TYPE).cloned();
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    body_too_large()
                } else {
                    ApiError::bad_request("invalid_body", rejection.body_text())
                }
            })?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        let mut req = Request::new(axum::body::Body::from(bytes));
        if let Some(content_type) = content_type {
            req.headers_mut()
                .insert(axum::http::header::CONTENT_TYPE, content_type);
        }
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(value)| OptionalJson(value))
    }
}

/// A query string.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(err)) => Err(ApiError::bad_request(
                "invalid_query",
                err.body_text().replace(
                    "Failed to deserialize query string: ",
                    "invalid query string: ",
                ),
            )),
            Err(other) => Err(ApiError::bad_request("invalid_query", other.body_text())),
        }
    }
}
