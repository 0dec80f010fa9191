//! Extractors whose rejections use the error envelope: [`ApiJson`] for bodies, [`ApiQuery`]
//! for query strings. axum's own rejections are plain text; these wrap them. JSON bodies are
//! also held to a nesting depth ([`MAX_JSON_DEPTH`]) before they are parsed.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiError;

/// The deepest nesting of arrays and objects any JSON body may have, counting the body's own
/// outer object as 1 (so an event's `payload` may nest `MAX_JSON_DEPTH - 1` deep, and the
/// envelope delivered to receivers, which holds it at the same place, never nests deeper
/// than this either). Clients in common languages parse such documents recursively; this
/// keeps every document we store and hand out well inside their limits.
pub const MAX_JSON_DEPTH: usize = 64;

/// A JSON body. Unknown fields are refused by the target types (`deny_unknown_fields`); a body
/// nested deeper than [`MAX_JSON_DEPTH`] is refused before it is parsed.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json_content_type(req.headers()) {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        let bytes = body_bytes(req, state).await?;
        if !nesting_within(&bytes, MAX_JSON_DEPTH) {
            return Err(ApiError::unprocessable(
                "json_too_deep",
                format!("the body nests arrays and objects more than {MAX_JSON_DEPTH} deep"),
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or `application/…+json`, as axum's own `Json` accepts.
fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype.is_char_boundary(subtype.len() - 5)
                && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// The whole body, within `http.body_limit_bytes`.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            body_too_large()
        } else {
            ApiError::bad_request("invalid_body", rejection.body_text())
        }
    })
}

/// Whether `json` nests arrays and objects at most `max` deep. A single pass with a counter,
/// no recursion and no parsing: brackets inside strings do not count, and whether the text is
/// valid JSON at all is left to the parser that runs after.
pub fn nesting_within(json: &[u8], max: usize) -> bool {
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
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

/// A JSON body that may also be absent (empty) or `null`: then `T::default()`. For actions
/// such as `POST …/roll` whose parameters are all optional, so `curl -X POST` works without
/// `-d '{}'` (the OpenAPI document says `Option<T>`: not required, and nullable).
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req.headers().get(axum::http::header::CONTENT_TYPE).cloned();
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        let mut req = Request::new(axum::body::Body::from(bytes));
        if let Some(content_type) = content_type {
            req.headers_mut()
                .insert(axum::http::header::CONTENT_TYPE, content_type);
        }
        ApiJson::<Option<T>>::from_request(req, state)
            .await
            .map(|ApiJson(value)| OptionalJson(value.unwrap_or_default()))
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

#[cfg(test)]
mod tests {
    use super::{is_json_content_type, nesting_within};

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert!(nesting_within(b"{}", 1));
        assert!(!nesting_within(b"{\"a\":[]}", 1));
        assert!(nesting_within(nested(64).as_bytes(), 64));
        assert!(!nesting_within(nested(65).as_bytes(), 64));
        // Brackets in strings, also after escaped quotes and backslashes, are text.
        assert!(nesting_within(br#"{"a":"[[[[\"[[[\\"}"#, 1));
        assert!(!nesting_within(br#"{"a":"\\",  "b":[]}"#, 1));
        // Siblings do not add up.
        assert!(nesting_within(b"[[],[],[[]]]", 3));
        // A million brackets: no recursion, refused at the first one over the limit.
        assert!(!nesting_within("[".repeat(1_000_000).as_bytes(), 64));
    }

    #[test]
    fn json_content_types_are_recognised() {
        let accepts = |value: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("content-type", value.parse().unwrap());
            is_json_content_type(&headers)
        };
        assert!(accepts("application/json"));
        assert!(accepts("application/json; charset=utf-8"));
        assert!(accepts("Application/JSON"));
        assert!(accepts("application/merge-patch+json"));
        assert!(!accepts("text/plain"));
        assert!(!accepts("application/jsonx"));
        assert!(!accepts("application/+json"));
        assert!(!accepts("json"));
        assert!(!is_json_content_type(&axum::http::HeaderMap::new()));
    }
}
