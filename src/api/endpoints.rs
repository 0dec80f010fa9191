//! Webhook endpoints of the calling key's merchant and mode: CRUD, a signed test ping, and
//! bulk replay of past deliveries.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::pagination::{List, ListParams};
use super::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorEnvelope, OptionalJson};
use crate::auth::MerchantAuth;
use crate::clock::{serde_rfc3339, Timestamp};
use crate::config::{MAX_ENDPOINT_IN_FLIGHT, MAX_ENDPOINT_TIMEOUT_MS};
use crate::delivery::envelope::envelope_bytes;
use crate::delivery::filter::valid_pattern;
use crate::delivery::pings::{PingRefused, MAX_PINGS, PINGS_PER_ENDPOINT};
use crate::delivery::sender::is_reserved_header;
use crate::delivery::ssrf::check_literal;
use crate::ids::{EndpointId, EventId};
use crate::keys::{Mode, Scope};
use crate::signing::Scheme;
use crate::state::AppState;
use crate::store::{DeliveryStatus, EndpointPatch, EndpointRecord, StoreError};

/// How many deliveries to one endpoint may be in flight at once (`max_in_flight`).
pub const MAX_IN_FLIGHT_RANGE: RangeInclusive<u32> = 1..=MAX_ENDPOINT_IN_FLIGHT;
/// An endpoint's request timeout (`timeout_ms`), in milliseconds: capped well below the
/// delivery lease, so a slow attempt is never claimed again while it is still under way.
pub const TIMEOUT_MS_RANGE: RangeInclusive<u32> = 100..=MAX_ENDPOINT_TIMEOUT_MS;
/// The longest endpoint URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// The most event type patterns one endpoint may filter on.
pub const MAX_EVENT_TYPES: usize = 50;
/// The most custom headers one endpoint may send.
pub const MAX_HEADERS: usize = 20;
/// The longest custom header value, in bytes (values are ASCII, so also in characters).
pub const MAX_HEADER_VALUE_LEN: usize = 1024;

/// The shape of an endpoint URL with a DNS name, checked on the URL as sent and stated as is
/// in the OpenAPI document: `http` or `https` (any case), `://`, a host name of letters,
/// digits and hyphens whose last label starts with a letter (a name ending in a number would
/// be read as an IPv4 address), an optional port up to 65535, then a path, query or fragment
/// of visible ASCII. URLs with an IP address as host are taken too (the SSRF guard decides
/// which), and nothing else: no spaces, no credentials, no host that could never resolve.
pub const URL_PATTERN: &str = concat!(
    r"^[hH][tT][tT][pP][sS]?://",
    r"([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?",
    r"(:(0*([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?)?",
    r"([/?#][!-~]*)?$",
);

/// An endpoint as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointObject {
    /// Always `endpoint`.
    pub object: &'static str,
    #[schema(value_type = String, example = "ep_01JD5Q3Z8X9V0W1Y2Z3A4B5C6D")]
    pub id: EndpointId,
    pub livemode: bool,
    pub url: String,
    pub description: String,
    /// Event type patterns (`order.*`); empty = every event.
    pub event_types: Vec<String>,
    /// `bolt`, `standard` or `both`.
    #[schema(value_type = String)]
    pub scheme: Scheme,
    pub enabled: bool,
    pub max_in_flight: u32,
    pub timeout_ms: u32,
    /// Custom header names, each with a masked value (`••••`): the values (usually the
    /// receiver's credentials) are write-only, sealed at rest, and sent only to the receiver.
    #[schema(example = json!({"Authorization": "••••"}))]
    pub headers: BTreeMap<String, String>,
    /// Why the daemon (or an admin) disabled it.
    pub disabled_reason: Option<String>,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<Timestamp>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// What the API shows instead of a custom header's value (not a valid header value, so it
/// cannot be sent back by mistake as one).
pub const MASKED_HEADER_VALUE: &str = "••••";

impl From<EndpointRecord> for EndpointObject {
    fn from(e: EndpointRecord) -> Self {
        Self {
            object: "endpoint",
            id: e.id,
            livemode: e.mode.is_live(),
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            scheme: e.scheme,
            enabled: e.enabled,
            max_in_flight: e.max_in_flight,
            timeout_ms: e.timeout_ms,
            headers: e
                .headers
                .into_keys()
                .map(|name| (name, MASKED_HEADER_VALUE.to_owned()))
                .collect(),
            disabled_reason: e.disabled_reason,
            disabled_at: e.disabled_at,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// `POST /v1/endpoints` and `PATCH /v1/endpoints/{id}` (every field optional on PATCH).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    /// Absolute `https://` URL (`http://` in test mode, or with `delivery.allow_http`), with a
    /// host name or an IP address, taken as sent: no surrounding spaces, no credentials.
    #[schema(example = "https://example.com/webhooks")]
    pub url: Option<String>,
    pub description: Option<String>,
    #[schema(example = json!(["order.*"]))]
    pub event_types: Option<Vec<String>>,
    #[schema(value_type = Option<String>, example = "bolt")]
    pub scheme: Option<Scheme>,
    pub enabled: Option<bool>,
    /// 1–100 (default 10).
    #[serde(default, deserialize_with = "super::numbers::option")]
    pub max_in_flight: Option<u32>,
    /// 100–30000 ms (default 15000), and at most half the delivery lease (`delivery.lease_secs`),
    /// so a slow attempt is never sent a second time while it is still under way.
    #[serde(default, deserialize_with = "super::numbers::option")]
    pub timeout_ms: Option<u32>,
    /// Extra headers; the signature and `X-Hooksign-*` headers cannot be overridden. Values
    /// are write-only: answers show them masked. On PATCH the map replaces the stored one; a
    /// PATCH that moves `url` to another origin (scheme, host or port) of an endpoint with
    /// headers must give `headers` again (`{}` drops them), or it is refused with 409
    /// `headers_required` (the stored headers forbid it) and nothing changes. A new path on the same origin keeps them.
    pub headers: Option<BTreeMap<String, String>>,
}

/// `POST /v1/endpoints/{id}/replay`
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Which deliveries to send again (default `["failed"]`).
    pub status: Option<Vec<DeliveryStatus>>,
    /// Only deliveries created at or after this time (RFC 3339).
    #[schema(format = DateTime)]
    pub since: Option<String>,
    /// Only deliveries created before this time (RFC 3339).
    #[schema(format = DateTime)]
    pub until: Option<String>,
}

/// The result of a test ping.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PingResult {
    /// Always `endpoint_test`.
    pub object: &'static str,
    /// Whether the endpoint answered 2xx.
    pub succeeded: bool,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error_class: Option<String>,
    /// The first KiB of the response.
    pub response_body: String,
    /// The signature headers sent (with the pending one during a rotation).
    pub signature_headers: Vec<String>,
    /// Whether a rotation is pending (so the new secret was tested too).
    pub pending_signature: bool,
}

fn parse_id(id: &str) -> Result<EndpointId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found("endpoint", id))
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(code, message)
}

/// Checks a URL for the given mode.
pub fn validate_url(url: &str, mode: Mode, state: &AppState) -> Result<String, ApiError> {
    if url.len() > MAX_URL_LEN {
        return Err(invalid(
            "invalid_url",
            format!("url must be at most {MAX_URL_LEN} characters"),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|err| invalid("invalid_url", format!("url is not an absolute URL: {err}")))?;
    let ip_host = parsed.host_str().is_some_and(|host| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok()
    });
    if !(url_shape().is_match(url) || ip_host && url.trim() == url) {
        return Err(invalid(
            "invalid_url",
            "url must be an absolute http(s) URL with a host name (letters, digits, hyphens) or an IP address, and no spaces or credentials",
        ));
    }
    match parsed.scheme() {
        "https" => {}
        "http" if mode == Mode::Test || state.config.delivery.allow_http => {}
        "http" => {
            return Err(invalid(
                "https_required",
                "live-mode endpoints must use https://",
            ))
        }
        other => {
            return Err(invalid(
                "invalid_url",
                format!("url scheme must be https or http, not {other}"),
            ))
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "invalid_url",
            "url must not contain credentials; use endpoint headers instead",
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| invalid("invalid_url", "url has no host"))?;
    check_literal(host, state.config.delivery.allow_private_networks)
        .map_err(|err| invalid("forbidden_address", err.to_string()))?;
    Ok(parsed.to_string())
}

fn url_shape() -> &'static regex::Regex {
    static SHAPE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    SHAPE.get_or_init(|| regex::Regex::new(URL_PATTERN).expect("URL_PATTERN is a valid regex"))
}

fn validate_headers(headers: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(invalid(
            "invalid_headers",
            format!("at most {MAX_HEADERS} custom headers"),
        ));
    }
    for (name, value) in headers {
        if reqwest::header::HeaderName::try_from(name.as_str()).is_err() {
            return Err(invalid(
                "invalid_headers",
                format!("`{name}` is not a valid header name"),
            ));
        }
        if is_reserved_header(name) {
            return Err(invalid(
                "invalid_headers",
                format!("`{name}` is set by hooksign and cannot be overridden"),
            ));
        }
        if value == MASKED_HEADER_VALUE {
            // A GET answer sent back as is would overwrite the credential with the mask.
            return Err(invalid(
                "invalid_headers",
                format!("the value of `{name}` is the mask answers show; send the real value"),
            ));
        }
        // Visible ASCII, spaces and tabs: other bytes are obsolete in header values (RFC 9110
        // §5.5) and receivers read them differently.
        if value.len() > MAX_HEADER_VALUE_LEN
            || !value.is_ascii()
            || reqwest::header::HeaderValue::from_str(value).is_err()
        {
            return Err(invalid(
                "invalid_headers",
                format!("the value of `{name}` is not a valid header value (at most {MAX_HEADER_VALUE_LEN} visible ASCII characters, spaces or tabs)"),
            ));
        }
    }
    Ok(())
}

/// `max_timeout_ms` is [`DeliveryConfig::max_endpoint_timeout_ms`](crate::config::DeliveryConfig::max_endpoint_timeout_ms).
fn validate_body(body: &EndpointBody, max_timeout_ms: u32) -> Result<(), ApiError> {
    if let Some(types) = &body.event_types {
        if types.len() > MAX_EVENT_TYPES {
            return Err(invalid(
                "invalid_event_types",
                format!("at most {MAX_EVENT_TYPES} event type patterns"),
            ));
        }
        if let Some(bad) = types.iter().find(|t| !valid_pattern(t)) {
            return Err(invalid(
                "invalid_event_types",
                format!("`{bad}` is not an event type pattern (lowercase a-z 0-9 . _ -, `*` for a whole segment)"),
            ));
        }
    }
    if body
        .max_in_flight
        .is_some_and(|n| !MAX_IN_FLIGHT_RANGE.contains(&n))
    {
        return Err(invalid(
            "invalid_max_in_flight",
            format!(
                "max_in_flight must be between {} and {}",
                MAX_IN_FLIGHT_RANGE.start(),
                MAX_IN_FLIGHT_RANGE.end()
            ),
        ));
    }
    // Capped well below the delivery lease, so a slow attempt is never claimed again while
    // it is still under way.
    if body
        .timeout_ms
        .is_some_and(|ms| !(*TIMEOUT_MS_RANGE.start()..=max_timeout_ms).contains(&ms))
    {
        return Err(invalid(
            "invalid_timeout",
            format!(
                "timeout_ms must be between {} and {max_timeout_ms}",
                TIMEOUT_MS_RANGE.start(),
            ),
        ));
    }
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(invalid(
            "invalid_description",
            format!("description must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if let Some(headers) = &body.headers {
        validate_headers(headers)?;
    }
    Ok(())
}

fn store_error(err: StoreError, id: &str) -> ApiError {
    match err {
        StoreError::NotFound => ApiError::not_found("endpoint", id),
        other => ApiError::internal(other),
    }
}

pub(super) fn parse_query_time(
    field: &str,
    text: Option<&str>,
) -> Result<Option<Timestamp>, ApiError> {
    text.map(|text| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&chrono::Utc))
            .map_err(|_| {
                ApiError::bad_request("invalid_time", format!("{field} must be an RFC 3339 time"))
            })
    })
    .transpose()
}

/// Creates an endpoint.
#[utoipa::path(post, path = "/v1/endpoints", tag = "endpoints", request_body = EndpointBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = EndpointObject), (status = 409, body = ErrorEnvelope, description = "endpoint_limit_reached"),
              (status = 422, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    auth: MerchantAuth,
    ApiJson(body): ApiJson<EndpointBody>,
) -> ApiResult<(StatusCode, Json<EndpointObject>)> {
    auth.require(Scope::WebhooksWrite)?;
    let url = body
        .url
        .as_deref()
        .ok_or_else(|| invalid("invalid_url", "url is required"))?;
    let url = validate_url(url, auth.mode, &state)?;
    validate_body(&body, state.config.delivery.max_endpoint_timeout_ms())?;
    let now = state.clock.now();
    let endpoint = EndpointRecord {
        id: EndpointId::new(),
        merchant_id: auth.merchant_id,
        mode: auth.mode,
        url,
        description: body.description.unwrap_or_default(),
        event_types: body.event_types.unwrap_or_default(),
        scheme: body.scheme.unwrap_or_default(),
        enabled: body.enabled.unwrap_or(true),
        max_in_flight: body
            .max_in_flight
            .unwrap_or(state.config.delivery.default_endpoint_max_in_flight),
        timeout_ms: body
            .timeout_ms
            .unwrap_or(state.config.delivery.default_timeout_ms),
        headers: body.headers.unwrap_or_default(),
        disabled_reason: None,
        disabled_at: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    let event = auth.audit_event(
        "endpoint.create",
        endpoint.id,
        json!({ "url": endpoint.url }),
        now,
    );
    let limit = state.config.delivery.max_endpoints_per_mode;
    match state.store.create_endpoint(&endpoint, limit, &event).await {
        Ok(()) => {}
        Err(StoreError::Conflict("endpoint_limit_reached")) => {
            return Err(ApiError::conflict(
                "endpoint_limit_reached",
                format!(
                    "{limit} endpoints already exist in {} mode (delivery.max_endpoints_per_mode); delete one first",
                    auth.mode.as_str()
                ),
            ))
        }
        Err(other) => return Err(ApiError::internal(other)),
    }
    Ok((StatusCode::CREATED, Json(endpoint.into())))
}

/// Lists endpoints, newest first.
#[utoipa::path(get, path = "/v1/endpoints", tag = "endpoints", params(ListParams),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = List<EndpointObject>),
              (status = 404, body = ErrorEnvelope, description = "`starting_after` names no endpoint of this list")))]
pub async fn list(
    State(state): State<AppState>,
    auth: MerchantAuth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<List<EndpointObject>>> {
    auth.require(Scope::WebhooksRead)?;
    let page = params.page::<EndpointId>()?;
    let rows = state
        .store
        .list_endpoints(auth.merchant_id, auth.mode, &page)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(List::from_rows(
        rows.into_iter().map(Into::into).collect(),
        &page,
        "/v1/endpoints",
    )))
}

/// Retrieves an endpoint.
#[utoipa::path(get, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path)),
    security(("bearer" = []), ("api_key" = [])), responses((status = 200, body = EndpointObject), (status = 404, body = ErrorEnvelope)))]
pub async fn retrieve(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointObject>> {
    auth.require(Scope::WebhooksRead)?;
    let endpoint = state
        .store
        .get_endpoint(auth.merchant_id, auth.mode, parse_id(&id)?)
        .await
        .map_err(|e| store_error(e, &id))?;
    Ok(Json(endpoint.into()))
}

/// Changes an endpoint; `{"enabled": true}` re-enables one the daemon disabled.
#[utoipa::path(patch, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path)), request_body = EndpointBody,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = EndpointObject), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope, description = "`headers_required`: the new url is on another origin and the stored headers were not given again"),
              (status = 422, body = ErrorEnvelope, description = "invalid field")))]
pub async fn update(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EndpointBody>,
) -> ApiResult<Json<EndpointObject>> {
    auth.require(Scope::WebhooksWrite)?;
    let endpoint_id = parse_id(&id)?;
    let url = body
        .url
        .as_deref()
        .map(|url| validate_url(url, auth.mode, &state))
        .transpose()?;
    validate_body(&body, state.config.delivery.max_endpoint_timeout_ms())?;
    let now = state.clock.now();
    let patch = EndpointPatch {
        url,
        description: body.description,
        event_types: body.event_types,
        scheme: body.scheme,
        enabled: body.enabled,
        max_in_flight: body.max_in_flight,
        timeout_ms: body.timeout_ms,
        headers: body.headers,
    };
    let event = auth.audit_event(
        "endpoint.update",
        endpoint_id,
        json!({ "enabled": patch.enabled, "url": patch.url }),
        now,
    );
    let endpoint = state
        .store
        .update_endpoint(
            auth.merchant_id,
            auth.mode,
            endpoint_id,
            &patch,
            now,
            &event,
        )
        .await
        .map_err(|e| match e {
            // A conflict with what is stored: the same body is fine for an endpoint
            // without headers.
            StoreError::Conflict("headers_required") => ApiError::conflict(
                "headers_required",
                "the new url is on another origin (scheme, host or port) and the endpoint has \
                 custom headers: send `headers` again in the same request (or `\"headers\": {}` \
                 to drop them); nothing was changed",
            ),
            other => store_error(other, &id),
        })?;
    if endpoint.enabled {
        state.delivery.wake();
    }
    Ok(Json(endpoint.into()))
}

/// Deletes an endpoint and its deliveries.
#[utoipa::path(delete, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path)),
    security(("bearer" = []), ("api_key" = [])), responses((status = 200, description = "deleted"), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Scope::WebhooksWrite)?;
    let endpoint_id = parse_id(&id)?;
    let event = auth.audit_event("endpoint.delete", endpoint_id, json!({}), state.clock.now());
    state
        .store
        .delete_endpoint(auth.merchant_id, auth.mode, endpoint_id, &event)
        .await
        .map_err(|e| store_error(e, &id))?;
    Ok(Json(
        json!({ "object": "endpoint", "id": id, "livemode": auth.mode.is_live(), "deleted": true }),
    ))
}

/// Sends a signed `ping` event now and reports what happened. Pings are bounded on each
/// daemon (one at a time per endpoint, a few in all): one over the bound is refused at once.
#[utoipa::path(post, path = "/v1/endpoints/{id}/test", tag = "endpoints", params(("id" = String, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = PingResult), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope, description = "`ping_in_progress`: a test ping to this endpoint is still in flight (at most one at a time per endpoint), or too many are in flight on this daemon; nothing was sent. Retry when it ends (with a new `Idempotency-Key`: the refusal is stored under the key like any answer)")))]
pub async fn test(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<PingResult>> {
    auth.require(Scope::WebhooksWrite)?;
    let endpoint = state
        .store
        .get_endpoint(auth.merchant_id, auth.mode, parse_id(&id)?)
        .await
        .map_err(|e| store_error(e, &id))?;
    let permit = state
        .delivery
        .start_ping(endpoint.id)
        .map_err(|refused| {
            let message = match refused {
                PingRefused::EndpointBusy => format!(
                    "a test ping to this endpoint is still in flight (at most {PINGS_PER_ENDPOINT} at a time); retry when it ends"
                ),
                PingRefused::DaemonBusy => format!(
                    "{MAX_PINGS} test pings are in flight on this daemon; retry shortly"
                ),
            };
            ApiError::conflict("ping_in_progress", message)
        })?;
    let event_id = EventId::new();
    let body = envelope_bytes(
        event_id,
        "ping",
        state.clock.now(),
        auth.mode.is_live(),
        &serde_json::value::to_raw_value(&json!({ "endpoint": endpoint.id.to_string() }))
            .map_err(ApiError::internal)?,
    );
    let (result, record, pending) = state
        .delivery
        .ping(permit, &endpoint, &body, &event_id.to_string())
        .await
        .map_err(ApiError::internal)?;
    // Nothing else is written for a ping, so its audit event has a transaction of its own.
    let audit = auth.audit_event(
        "endpoint.test",
        endpoint.id,
        json!({
            "event": event_id.to_string(),
            "status_code": record.status_code,
            "error_class": record.error_class,
        }),
        state.clock.now(),
    );
    state
        .store
        .record_audit(&audit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(PingResult {
        object: "endpoint_test",
        succeeded: result.class() == "success",
        status_code: record.status_code,
        latency_ms: record.latency_ms,
        error_class: record.error_class,
        response_body: record.response_body,
        signature_headers: record.signatures,
        pending_signature: pending,
    }))
}

/// Queues an endpoint's past deliveries again (by default the failed ones).
#[utoipa::path(post, path = "/v1/endpoints/{id}/replay", tag = "endpoints", params(("id" = String, Path)),
    request_body(content = Option<ReplayBody>, description = "optional: an empty body replays the failed deliveries"), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "`{\"object\":\"replay\",\"requeued\":n,\"skipped_in_flight\":m}`: deliveries being sent right now are left alone and counted in `skipped_in_flight`"), (status = 404, body = ErrorEnvelope)))]
pub async fn replay(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ReplayBody>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Scope::WebhooksWrite)?;
    let endpoint_id = parse_id(&id)?;
    state
        .store
        .get_endpoint(auth.merchant_id, auth.mode, endpoint_id)
        .await
        .map_err(|e| store_error(e, &id))?;
    let statuses = body.status.unwrap_or_else(|| vec![DeliveryStatus::Failed]);
    if statuses.is_empty() {
        return Err(invalid("invalid_status", "give at least one status"));
    }
    let since = parse_query_time("since", body.since.as_deref())?;
    let until = parse_query_time("until", body.until.as_deref())?;
    let now = state.clock.now();
    let audit = auth.audit_event("endpoint.replay", endpoint_id, json!({}), now);
    let replayed = state
        .store
        .replay_endpoint(
            auth.merchant_id,
            auth.mode,
            endpoint_id,
            &statuses,
            since,
            until,
            now,
            &audit,
        )
        .await
        .map_err(ApiError::internal)?;
    state.delivery.wake();
    Ok(Json(json!({
        "object": "replay",
        "endpoint": id,
        "requeued": replayed.requeued,
        "skipped_in_flight": replayed.skipped_in_flight,
    })))
}
