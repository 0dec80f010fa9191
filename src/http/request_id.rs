//! `X-Request-Id`: every response carries one, and every error body repeats it.
//!
//! A caller may send its own (up to 64 characters of `[A-Za-z0-9._-]`), which is echoed so
//! logs can be joined across systems; otherwise a `req_…` id is generated. The id is kept in a
//! task-local for the duration of the request so that [`super::ApiError`] can put it in the
//! body without every handler passing it around.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::ids::RequestId;

/// The header name.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, or `req_unknown` outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "req_unknown".to_owned())
}

/// Runs `work` (typically spawned as a task of its own) with the current request's id and
/// tracing span, so its errors and logs still name the request.
pub fn in_current_request<F: std::future::Future>(
    work: F,
) -> impl std::future::Future<Output = F::Output> {
    REQUEST_ID.scope(
        current_request_id(),
        tracing::Instrument::instrument(work, tracing::Span::current()),
    )
}

/// The request id as a typed id, when it is one we generated.
pub fn current_typed_request_id() -> Option<RequestId> {
    current_request_id().parse().ok()
}

fn sane(candidate: &str) -> bool {
    !candidate.is_empty()
        && candidate.len() <= 64
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Middleware: picks the id, runs the request in its scope and sets the response header.
pub async fn request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| sane(value))
        .map(str::to_owned)
        .unwrap_or_else(|| RequestId::new().to_string());
    let header =
        HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("req_invalid"));
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let mut response = REQUEST_ID
        .scope(id, tracing::Instrument::instrument(next.run(request), span))
        .await;
    response.headers_mut().insert(REQUEST_ID_HEADER, header);
    response
}

#[cfg(test)]
mod tests {
    use super::sane;

    #[test]
    fn only_short_plain_ids_are_echoed() {
        assert!(sane("req_01J00000000000000000000000"));
        assert!(sane("trace-123.abc"));
        assert!(!sane(""));
        assert!(!sane("has space"));
        assert!(!sane(&"a".repeat(65)));
        assert!(!sane("<script>"));
    }
}
