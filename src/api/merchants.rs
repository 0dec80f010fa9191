//! Operator routes: `POST/GET /v1/merchants`, `GET/PATCH /v1/merchants/{id}`.
//!
//! Creating a merchant returns its first live and test API keys — the only time those tokens
//! are shown — and gives it an active signing secret in each mode.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::lookup::{parse_id, store_error};
use super::objects::{ApiKeyObject, CreatedMerchantObject, MerchantObject};
use super::pagination::{List, ListParams};
use super::request_id::current_typed_request_id;
use super::{valid_name, ApiError, ApiJson, ApiQuery, ApiResult, ErrorEnvelope};
use crate::auth::OperatorAuth;
use crate::ids::{AuditId, MerchantId};
use crate::provision::{create_merchant, Actor};
use crate::state::AppState;
use crate::store::{MerchantPatch, MerchantRecord, NewAuditEvent};

/// `POST /v1/merchants`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMerchant {
    /// 1–100 characters (surrounding spaces are trimmed).
    #[schema(example = "Acme Payments")]
    pub name: String,
}

/// `PATCH /v1/merchants/{id}`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMerchant {
    pub name: Option<String>,
    /// `true` refuses the merchant's keys until re-enabled.
    pub disabled: Option<bool>,
}

/// What the paths of this module name.
const MERCHANT: &str = "merchant";

fn actor(auth: &OperatorAuth) -> Actor {
    Actor {
        key_id: Some(auth.key.id),
        request_id: current_typed_request_id(),
    }
}

/// Create a merchant with its first API keys and signing secrets.
#[utoipa::path(post, path = "/v1/merchants", tag = "operator", request_body = CreateMerchant,
    responses((status = 201, body = CreatedMerchantObject), (status = 401, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    auth: OperatorAuth,
    ApiJson(body): ApiJson<CreateMerchant>,
) -> ApiResult<(StatusCode, Json<CreatedMerchantObject>)> {
    let name = valid_name(&body.name)?;
    let now = state.clock.now();
    let created = create_merchant(
        state.store.as_ref(),
        &state.encryptor,
        &name,
        actor(&auth),
        now,
    )
    .await
    .map_err(ApiError::store)?;
    let api_keys = created
        .keys
        .iter()
        .map(|(key, token)| ApiKeyObject::with_token(&key.created_record(), now, token.expose()))
        .collect();
    tracing::info!(merchant = %created.merchant.id, "merchant created");
    let merchant = MerchantObject::from(MerchantRecord {
        id: created.merchant.id,
        name,
        disabled: false,
        created_at: now,
        updated_at: now,
    });
    Ok((
        StatusCode::CREATED,
        Json(CreatedMerchantObject { merchant, api_keys }),
    ))
}

/// List merchants, newest first.
#[utoipa::path(get, path = "/v1/merchants", tag = "operator", params(ListParams),
    responses((status = 200, body = List<MerchantObject>), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    _auth: OperatorAuth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<List<MerchantObject>>> {
    let page = params.page::<MerchantId>()?;
    let rows = state
        .store
        .list_merchants(&page)
        .await
        .map_err(ApiError::store)?;
    let objects = rows.into_iter().map(MerchantObject::from).collect();
    Ok(Json(List::from_rows(objects, &page, "/v1/merchants")))
}

/// Retrieve a merchant.
#[utoipa::path(get, path = "/v1/merchants/{id}", tag = "operator",
    params(("id" = String, Path, description = "merchant id (mch_…)")),
    responses((status = 200, body = MerchantObject), (status = 404, body = ErrorEnvelope)))]
pub async fn retrieve(
    State(state): State<AppState>,
    _auth: OperatorAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<MerchantObject>> {
    let merchant_id = parse_id(MERCHANT, &id)?;
    let record = state
        .store
        .get_merchant(merchant_id)
        .await
        .map_err(|err| store_error(err, MERCHANT, &id))?;
    Ok(Json(record.into()))
}

/// Rename, disable or re-enable a merchant.
#[utoipa::path(patch, path = "/v1/merchants/{id}", tag = "operator", request_body = UpdateMerchant,
    params(("id" = String, Path, description = "merchant id (mch_…)")),
    responses((status = 200, body = MerchantObject), (status = 404, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    auth: OperatorAuth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateMerchant>,
) -> ApiResult<Json<MerchantObject>> {
    let merchant_id = parse_id(MERCHANT, &id)?;
    if body.name.is_none() && body.disabled.is_none() {
        return Err(ApiError::unprocessable(
            "nothing_to_update",
            "give `name` and/or `disabled`",
        ));
    }
    let name = body.name.as_deref().map(valid_name).transpose()?;
    let now = state.clock.now();
    let patch = MerchantPatch {
        name: name.clone(),
        disabled: body.disabled,
        updated_at: Some(now),
    };
    let actor = actor(&auth);
    let audit = NewAuditEvent {
        id: AuditId::new(),
        merchant_id: Some(merchant_id),
        mode: None,
        actor_key_id: actor.key_id,
        action: "merchant.update",
        target: merchant_id.to_string(),
        request_id: actor.request_id,
        details: serde_json::json!({ "name": name, "disabled": body.disabled }),
        created_at: now,
    };
    let record = state
        .store
        .update_merchant(merchant_id, &patch, &audit)
        .await
        .map_err(|err| store_error(err, MERCHANT, &id))?;
    Ok(Json(record.into()))
}
