//! Webhook endpoints of the calling key's merchant and mode: CRUD, a signed test ping, and
//! bulk replay of past deliveries. What a valid endpoint is lives in `validate.rs`.

mod validate;

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use validate::{invalid, validate_body, validate_tls_verify};
pub use validate::{
    validate_url, MAX_DESCRIPTION_CHARS, MAX_EVENT_TYPES, MAX_HEADERS, MAX_HEADER_VALUE_LEN,
    MAX_IN_FLIGHT_RANGE, MAX_URL_LEN, TIMEOUT_MS_RANGE, URL_PATTERN,
};

use super::lookup::{parse_id, store_error};
use super::objects::{schema, EndpointObject, PingResult};
use super::pagination::{List, ListParams};
use super::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorEnvelope, OptionalJson};
use crate::auth::MerchantAuth;
use crate::clock::Timestamp;
use crate::delivery::envelope::envelope_bytes;
use crate::delivery::pings::{PingRefused, MAX_PINGS, PINGS_PER_ENDPOINT};
use crate::ids::{EndpointId, EventId};
use crate::keys::Scope;
use crate::signing::Scheme;
use crate::state::AppState;
use crate::store::{DeliveryStatus, EndpointPatch, EndpointRecord, StoreError};
use crate::store::{BACKFILL_TOO_LARGE, MAX_BACKFILL_EVENTS};

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
    /// Whether the receiver's TLS certificate is checked (default `true`). Test mode only may
    /// turn it off, for a receiver with a self-signed certificate; a live-mode key sending
    /// `false` is refused with 422 `tls_verify_test_mode_only`. Every change is audited.
    pub tls_verify: Option<bool>,
}

/// `POST /v1/endpoints/{id}/replay`
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Which deliveries to send again (default `["failed"]`; `["expired"]` sends expired ones
    /// again like dead letters).
    #[schema(value_type = Option<Vec<schema::DeliveryStatus>>)]
    pub status: Option<Vec<DeliveryStatus>>,
    /// Only deliveries created at or after this time (RFC 3339). Also backfills: every event of
    /// this merchant and mode created since then (and before `until`) that the endpoint's
    /// `event_types` accept and that has no delivery to this endpoint yet (sent before it
    /// existed, or while it did not match) gets one, due now. A window of more than 10000
    /// events is refused with 422 `backfill_too_large` and nothing changes.
    #[schema(format = DateTime)]
    pub since: Option<String>,
    /// Only deliveries (and backfilled events) created before this time (RFC 3339).
    #[schema(format = DateTime)]
    pub until: Option<String>,
}

/// What the paths of this module name.
const ENDPOINT: &str = "endpoint";

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
    validate_tls_verify(&body, auth.mode)?;
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
        tls_verify: body.tls_verify.unwrap_or(true),
    };
    let event = auth.audit_event(
        "endpoint.create",
        endpoint.id,
        json!({ "url": endpoint.url, "tls_verify": endpoint.tls_verify }),
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
        Err(other) => return Err(ApiError::store(other)),
    }
    Ok((StatusCode::CREATED, Json(endpoint.into())))
}

/// Lists endpoints, newest first.
#[utoipa::path(get, path = "/v1/endpoints", tag = "endpoints", params(ListParams),
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
        .map_err(ApiError::store)?;
    Ok(Json(List::from_rows(
        rows.into_iter().map(Into::into).collect(),
        &page,
        "/v1/endpoints",
    )))
}

/// Retrieves an endpoint.
#[utoipa::path(get, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 200, body = EndpointObject), (status = 404, body = ErrorEnvelope)))]
pub async fn retrieve(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointObject>> {
    auth.require(Scope::WebhooksRead)?;
    let endpoint = state
        .store
        .get_endpoint(auth.merchant_id, auth.mode, parse_id(ENDPOINT, &id)?)
        .await
        .map_err(|e| store_error(e, ENDPOINT, &id))?;
    Ok(Json(endpoint.into()))
}

/// Changes an endpoint; `{"enabled": true}` re-enables one the daemon disabled.
#[utoipa::path(patch, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path)), request_body = EndpointBody,
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
    let endpoint_id = parse_id(ENDPOINT, &id)?;
    let url = body
        .url
        .as_deref()
        .map(|url| validate_url(url, auth.mode, &state))
        .transpose()?;
    validate_body(&body, state.config.delivery.max_endpoint_timeout_ms())?;
    validate_tls_verify(&body, auth.mode)?;
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
        tls_verify: body.tls_verify,
    };
    let event = auth.audit_event(
        "endpoint.update",
        endpoint_id,
        json!({ "enabled": patch.enabled, "url": patch.url, "tls_verify": patch.tls_verify }),
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
            other => store_error(other, ENDPOINT, &id),
        })?;
    if endpoint.enabled {
        state.delivery.wake();
    }
    Ok(Json(endpoint.into()))
}

/// Deletes an endpoint: it is gone at once (404, no further deliveries); its deliveries and
/// their attempts are removed in batches by the retention task.
#[utoipa::path(delete, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path)),
    responses((status = 200, description = "deleted"), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Scope::WebhooksWrite)?;
    let endpoint_id = parse_id(ENDPOINT, &id)?;
    let event = auth.audit_event("endpoint.delete", endpoint_id, json!({}), state.clock.now());
    state
        .store
        .delete_endpoint(auth.merchant_id, auth.mode, endpoint_id, &event)
        .await
        .map_err(|e| store_error(e, ENDPOINT, &id))?;
    Ok(Json(
        json!({ "object": "endpoint", "id": id, "livemode": auth.mode.is_live(), "deleted": true }),
    ))
}

/// Sends a signed `ping` event now and reports what happened. Pings are bounded on each
/// daemon (one at a time per endpoint, a few in all): one over the bound is refused at once.
#[utoipa::path(post, path = "/v1/endpoints/{id}/test", tag = "endpoints", params(("id" = String, Path)),
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
        .get_endpoint(auth.merchant_id, auth.mode, parse_id(ENDPOINT, &id)?)
        .await
        .map_err(|e| store_error(e, ENDPOINT, &id))?;
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
        .map_err(ApiError::service)?;
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
        .map_err(ApiError::store)?;
    Ok(Json(PingResult::new(
        result.class() == "success",
        record,
        pending,
    )))
}

/// Queues an endpoint's past deliveries again (by default the failed ones); with `since`, also
/// backfills the window's events that never had a delivery to it. While the endpoint (or its
/// merchant) is disabled, what is queued is `paused` and is sent once it is enabled again.
#[utoipa::path(post, path = "/v1/endpoints/{id}/replay", tag = "endpoints", params(("id" = String, Path)),
    request_body(content = Option<ReplayBody>, description = "optional: an empty body replays the failed deliveries"),
    responses((status = 200, description = "`{\"object\":\"replay\",\"requeued\":n,\"skipped_in_flight\":m,\"backfilled\":b}`: deliveries being sent right now are left alone and counted in `skipped_in_flight`; `backfilled` counts the deliveries created for events of the `since`/`until` window that had none to this endpoint (0 without `since`)"),
              (status = 404, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope, description = "`invalid_status`, `invalid_time`, or `backfill_too_large`: the `since`/`until` window holds more than 10000 events (narrow it; nothing was changed)")))]
pub async fn replay(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ReplayBody>,
) -> ApiResult<Json<serde_json::Value>> {
    auth.require(Scope::WebhooksWrite)?;
    let endpoint_id = parse_id(ENDPOINT, &id)?;
    state
        .store
        .get_endpoint(auth.merchant_id, auth.mode, endpoint_id)
        .await
        .map_err(|e| store_error(e, ENDPOINT, &id))?;
    let statuses = body.status.unwrap_or_else(|| vec![DeliveryStatus::Failed]);
    if statuses.is_empty() {
        return Err(invalid("invalid_status", "give at least one status"));
    }
    let since = parse_query_time("since", body.since.as_deref())?;
    let until = parse_query_time("until", body.until.as_deref())?;
    let now = state.clock.now();
    let statuses_named: Vec<&str> = statuses.iter().map(|status| status.as_str()).collect();
    let audit = auth.audit_event(
        "endpoint.replay",
        endpoint_id,
        json!({ "status": statuses_named, "since": body.since, "until": body.until }),
        now,
    );
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
        .map_err(|err| match err {
            StoreError::Conflict(BACKFILL_TOO_LARGE) => invalid(
                BACKFILL_TOO_LARGE,
                format!(
                    "the since/until window holds more than {MAX_BACKFILL_EVENTS} events; narrow it \
                     (replay several windows one after another); nothing was changed"
                ),
            ),
            other => ApiError::store(other),
        })?;
    state.delivery.wake();
    Ok(Json(json!({
        "object": "replay",
        "endpoint": id,
        "requeued": replayed.requeued,
        "skipped_in_flight": replayed.skipped_in_flight,
        "backfilled": replayed.backfilled,
    })))
}
