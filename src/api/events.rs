//! Events: `POST /v1/events` ingests one (202: durable, delivered in the background) and fans
//! it out to every enabled endpoint whose filter matches; `GET` lists and shows them with their
//! deliveries.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::lookup::{parse_id, store_error};
use super::objects::{DeliveryObject, EventObject};
use super::pagination::{List, ListParams};
use super::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorEnvelope};
use crate::auth::MerchantAuth;
use crate::delivery::envelope::envelope_bytes;
use crate::delivery::filter::valid_event_type;
use crate::ids::EventId;
use crate::keys::Scope;
use crate::state::AppState;
use crate::store::{NewEvent, StoreError};

/// `POST /v1/events`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEvent {
    /// 1–100 characters of `[a-z0-9._-]`, e.g. `order.created`.
    #[serde(rename = "type")]
    #[schema(example = "order.created")]
    pub event_type: String,
    /// Any JSON value; delivered as the envelope's `data`.
    #[schema(value_type = serde_json::Value, example = json!({"order_id": "ord_1", "amount": 1299}))]
    pub payload: Box<RawValue>,
}

/// What the paths of this module name.
const EVENT: &str = "event";

/// Accepts an event. Once this answers 202 the event and its deliveries are stored.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = CreateEvent,
    params(("Idempotency-Key" = Option<String>, Header, description = "send the same key to retry safely")),
    responses((status = 202, body = EventObject), (status = 422, body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope, description = "ingest_saturated: retry after `Retry-After` seconds")))]
pub async fn create(
    State(state): State<AppState>,
    auth: MerchantAuth,
    ApiJson(body): ApiJson<CreateEvent>,
) -> ApiResult<(StatusCode, Json<EventObject>)> {
    auth.require(Scope::EventsWrite)?;
    if !valid_event_type(&body.event_type) {
        return Err(ApiError::unprocessable(
            "invalid_event_type",
            "type must be 1 to 100 characters of lowercase a-z, 0-9, `.`, `_` and `-`",
        ));
    }
    let now = state.clock.now();
    let id = EventId::new();
    let event = NewEvent {
        id,
        merchant_id: auth.merchant_id,
        mode: auth.mode,
        event_type: body.event_type.clone(),
        body: envelope_bytes(
            id,
            &body.event_type,
            now,
            auth.mode.is_live(),
            &body.payload,
        ),
        created_at: now,
    };
    // A full queue answers 503 with Retry-After at once rather than holding the request (and
    // its body) in memory behind thousands of others.
    let deliveries = state
        .ingest
        .try_submit(event)
        .await
        .map_err(|err| match err {
            StoreError::Saturated => ApiError::saturated(),
            other => ApiError::store(other),
        })?;
    if !deliveries.is_empty() {
        state.delivery.wake();
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(EventObject {
            object: "event",
            id,
            event_type: body.event_type,
            livemode: auth.mode.is_live(),
            created_at: now.into(),
            data: body.payload,
            delivery_count: Some(deliveries.len()),
            deliveries: None,
        }),
    ))
}

/// Lists events, newest first.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(ListParams),
    responses((status = 200, body = List<EventObject>)))]
pub async fn list(
    State(state): State<AppState>,
    auth: MerchantAuth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<List<EventObject>>> {
    auth.require(Scope::EventsRead)?;
    let page = params.page::<EventId>()?;
    let rows = state
        .store
        .list_events(auth.merchant_id, auth.mode, &page)
        .await
        .map_err(ApiError::store)?;
    Ok(Json(List::from_rows(
        rows.iter().map(EventObject::from).collect(),
        &page,
        "/v1/events",
    )))
}

/// Retrieves an event with its deliveries.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", params(("id" = String, Path)),
    responses((status = 200, body = EventObject), (status = 404, body = ErrorEnvelope)))]
pub async fn retrieve(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<EventObject>> {
    auth.require(Scope::EventsRead)?;
    let event_id: EventId = parse_id(EVENT, &id)?;
    let (event, deliveries) = state
        .store
        .get_event(auth.merchant_id, auth.mode, event_id)
        .await
        .map_err(|err| store_error(err, EVENT, &id))?;
    let mut answer = EventObject::from(&event);
    answer.deliveries = Some(
        deliveries
            .into_iter()
            .map(|d| DeliveryObject::new(d, None))
            .collect(),
    );
    Ok(Json(answer))
}
