//! Deliveries: list them (by endpoint, event, status, time), see one with its attempts, and
//! send one again.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::endpoints::parse_query_time;
use super::pagination::{page, List};
use super::{ApiError, ApiQuery, ApiResult, ErrorEnvelope};
use crate::auth::MerchantAuth;
use crate::clock::{serde_rfc3339, Timestamp};
use crate::ids::{DeliveryId, EndpointId, EventId};
use crate::keys::Scope;
use crate::state::AppState;
use crate::store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryStatus, StoreError, DELIVERY_IN_FLIGHT,
};

/// One attempt as shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptObject {
    pub attempt: u32,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// `timeout`, `connection`, `forbidden_address` (the SSRF policy refused every address of
    /// the host), `redirect`, `client_error`, `server_error`; null on success.
    pub error_class: Option<String>,
    /// The first KiB of the response body (or the connection error).
    pub response_body: String,
    /// Signature headers sent with the attempt.
    pub signature_headers: Vec<String>,
}

impl From<AttemptRecord> for AttemptObject {
    fn from(a: AttemptRecord) -> Self {
        Self {
            attempt: a.attempt,
            started_at: a.started_at,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            error_class: a.error_class,
            response_body: a.response_body,
            signature_headers: a.signatures,
        }
    }
}

/// A delivery.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryObject {
    /// Always `delivery`.
    pub object: &'static str,
    #[schema(value_type = String, example = "dlv_01JD5Q3Z8X9V0W1Y2Z3A4B5C6D")]
    pub id: DeliveryId,
    #[schema(value_type = String)]
    pub event_id: EventId,
    #[schema(value_type = String)]
    pub endpoint_id: EndpointId,
    pub livemode: bool,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub next_attempt_at: Timestamp,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    #[serde(with = "serde_rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<Timestamp>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_history: Option<Vec<AttemptObject>>,
}

impl DeliveryObject {
    /// The API view of a delivery, with its attempts when given.
    pub fn new(d: DeliveryRecord, attempts: Option<Vec<AttemptRecord>>) -> Self {
        Self {
            object: "delivery",
            id: d.id,
            event_id: d.event_id,
            endpoint_id: d.endpoint_id,
            livemode: d.mode.is_live(),
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
            created_at: d.created_at,
            attempt_history: attempts.map(|a| a.into_iter().map(Into::into).collect()),
        }
    }
}

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
    #[param(value_type = Option<DeliveryStatus>, inline, example = "failed")]
    pub status: Option<DeliveryStatus>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
}

fn parse_id(id: &str) -> Result<DeliveryId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found("delivery", id))
}

fn store_error(err: StoreError, id: &str) -> ApiError {
    match err {
        StoreError::NotFound => ApiError::not_found("delivery", id),
        StoreError::Conflict(DELIVERY_IN_FLIGHT) => ApiError::conflict(
            DELIVERY_IN_FLIGHT,
            format!("delivery {id} is being sent right now; retry it once this attempt has ended"),
        ),
        other => ApiError::internal(other),
    }
}

/// Lists deliveries, newest first.
#[utoipa::path(get, path = "/v1/deliveries", tag = "deliveries", params(ListDeliveries), security(("bearer" = []), ("api_key" = [])),
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
        .map_err(ApiError::internal)?;
    let objects = rows
        .into_iter()
        .map(|d| DeliveryObject::new(d, None))
        .collect();
    Ok(Json(List::from_rows(objects, &page, "/v1/deliveries")))
}

/// Retrieves a delivery with every attempt.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "deliveries", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = DeliveryObject), (status = 404, body = ErrorEnvelope)))]
pub async fn retrieve(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryObject>> {
    auth.require(Scope::WebhooksRead)?;
    let (delivery, attempts) = state
        .store
        .get_delivery(auth.merchant_id, auth.mode, parse_id(&id)?)
        .await
        .map_err(|e| store_error(e, &id))?;
    Ok(Json(DeliveryObject::new(delivery, Some(attempts))))
}

/// Sends a delivery again now (a failed one from the dead letters, or any other that is not
/// being sent right now).
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "deliveries", params(("id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = DeliveryObject), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "`delivery_in_flight`: an attempt is under way", body = ErrorEnvelope)))]
pub async fn retry(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryObject>> {
    auth.require(Scope::WebhooksWrite)?;
    let delivery_id: DeliveryId = parse_id(&id)?;
    let now = state.clock.now();
    let audit = auth.audit_event("delivery.retry", delivery_id, json!({}), now);
    let delivery = state
        .store
        .retry_delivery(auth.merchant_id, auth.mode, delivery_id, now, &audit)
        .await
        .map_err(|e| store_error(e, &id))?;
    state.delivery.wake();
    Ok(Json(DeliveryObject::new(delivery, None)))
}
