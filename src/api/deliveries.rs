//! Deliveries: list them (by endpoint, event, status, time), see one with its attempts, and
//! send one again.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::endpoints::parse_query_time;
use super::lookup::{parse_id, store_error};
use super::objects::{schema, DeliveryObject};
use super::pagination::{page, List};
use super::{ApiError, ApiQuery, ApiResult, ErrorEnvelope};
use crate::auth::MerchantAuth;
use crate::ids::DeliveryId;
use crate::keys::Scope;
use crate::state::AppState;
use crate::store::{DeliveryFilter, DeliveryStatus, StoreError, DELIVERY_IN_FLIGHT};

/// Query parameters of `GET /v1/deliveries`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDeliveries {
    #[serde(default, deserialize_with = "super::numbers::query_option")]
    pub limit: Option<u32>,
    pub starting_after: Option<String>,
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    #[param(value_type = Option<schema::DeliveryStatus>, inline, example = "failed")]
    pub status: Option<DeliveryStatus>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
}

/// What the paths of this module name.
const DELIVERY: &str = "delivery";

/// A retry refused because the delivery is being sent, or the shared answers.
fn delivery_error(err: StoreError, id: &str) -> ApiError {
    match err {
        StoreError::Conflict(DELIVERY_IN_FLIGHT) => ApiError::conflict(
            DELIVERY_IN_FLIGHT,
            format!("delivery {id} is being sent right now; retry it once this attempt has ended"),
        ),
        other => store_error(other, DELIVERY, id),
    }
}

/// Lists deliveries, newest first.
#[utoipa::path(get, path = "/v1/deliveries", tag = "deliveries", params(ListDeliveries),
    responses((status = 200, body = List<DeliveryObject>), (status = 400, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    auth: MerchantAuth,
    ApiQuery(params): ApiQuery<ListDeliveries>,
) -> ApiResult<Json<List<DeliveryObject>>> {
    auth.require(Scope::WebhooksRead)?;
    let bad =
        |what: &str| ApiError::bad_request("invalid_query", format!("{what} is not a valid id"));
    let filter = DeliveryFilter {
        endpoint: params
            .endpoint_id
            .as_deref()
            .map(|id| id.parse().map_err(|_| bad("endpoint_id")))
            .transpose()?,
        event: params
            .event_id
            .as_deref()
            .map(|id| id.parse().map_err(|_| bad("event_id")))
            .transpose()?,
        status: params.status,
        since: parse_query_time("since", params.since.as_deref())?,
        until: parse_query_time("until", params.until.as_deref())?,
    };
    let page = page::<DeliveryId>(params.limit, params.starting_after.as_deref())?;
    let rows = state
        .store
        .list_deliveries(auth.merchant_id, auth.mode, &filter, &page)
        .await
        .map_err(ApiError::store)?;
    let objects = rows
        .into_iter()
        .map(|d| DeliveryObject::new(d, None))
        .collect();
    Ok(Json(List::from_rows(objects, &page, "/v1/deliveries")))
}

/// Retrieves a delivery with every attempt.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryObject), (status = 404, body = ErrorEnvelope)))]
pub async fn retrieve(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryObject>> {
    auth.require(Scope::WebhooksRead)?;
    let (delivery, attempts) = state
        .store
        .get_delivery(auth.merchant_id, auth.mode, parse_id(DELIVERY, &id)?)
        .await
        .map_err(|e| delivery_error(e, &id))?;
    Ok(Json(DeliveryObject::new(delivery, Some(attempts))))
}

/// Sends a delivery again now (a failed one from the dead letters, an expired one, or any
/// other that is not being sent right now). While its endpoint or merchant is disabled it
/// becomes `paused` instead, and is sent once they are enabled again.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "deliveries", params(("id" = String, Path)),
    responses((status = 200, body = DeliveryObject), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`delivery_in_flight`: an attempt is under way", body = ErrorEnvelope)))]
pub async fn retry(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryObject>> {
    auth.require(Scope::WebhooksWrite)?;
    let delivery_id: DeliveryId = parse_id(DELIVERY, &id)?;
    let now = state.clock.now();
    let audit = auth.audit_event("delivery.retry", delivery_id, json!({}), now);
    let delivery = state
        .store
        .retry_delivery(auth.merchant_id, auth.mode, delivery_id, now, &audit)
        .await
        .map_err(|e| delivery_error(e, &id))?;
    state.delivery.wake();
    Ok(Json(DeliveryObject::new(delivery, None)))
}
