//! Merchant API keys over HTTP: create (the token is shown once), list, read, rename,
//! deactivate/activate, revoke, delete once revoked, and roll. The merchant and mode come from
//! the calling key; another merchant's or mode's key is simply not found.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::lookup::{parse_id, store_error};
use super::objects::{schema, ApiKeyObject, DeletedApiKey, RolledApiKey};
use super::pagination::{cursor_not_in_list, page, parse_cursor, List};
use super::{valid_name, ApiError, ApiJson, ApiQuery, ApiResult, ErrorEnvelope, OptionalJson};
use crate::auth::MerchantAuth;
use crate::ids::ApiKeyId;
use crate::keys::rules::{
    filter_and_sort, may_act_on, page_after, KeyQuery, KeyRuleError, SortKey, SortOrder,
    StatusFilter,
};
use crate::keys::{Mode, Scope, ScopeSet, TokenKind, MAX_ACTIVE_KEYS};
use crate::provision::new_key;
use crate::state::AppState;
use crate::store::{KeyKind, KeyPatch, StoreError};

// ---------------------------------------------------------------------------------------------
// Routes: GET/POST /v1/api-keys, GET/PATCH/DELETE /v1/api-keys/{id}, POST …/revoke, POST …/roll
// ---------------------------------------------------------------------------------------------

/// `POST /v1/api-keys`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// 1–100 characters, unique among the mode's keys that are not revoked or rolled away.
    #[schema(example = "CI deploys")]
    pub name: String,
    /// Scopes to grant (default: every scope the calling key holds). A key can only grant
    /// scopes it holds itself.
    #[schema(example = json!(["api_keys:read", "signing_secret:read"]))]
    pub scopes: Option<Vec<String>>,
}

/// `PATCH /v1/api-keys/{id}`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApiKey {
    pub name: Option<String>,
    /// `false` deactivates the key (its next request gets 401 `api_key_inactive`); `true`
    /// re-activates it if fewer than five keys are active.
    pub active: Option<bool>,
}

/// `POST /v1/api-keys/{id}/roll`
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollApiKey {
    /// Seconds the old key keeps working (0 = it stops at once; at most 604800, 7 days).
    #[schema(example = 3600)]
    #[serde(default, deserialize_with = "super::numbers::option")]
    pub expires_in: Option<i64>,
}

/// Query parameters of `GET /v1/api-keys`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListApiKeys {
    /// 1–100 (default 10).
    #[serde(default, deserialize_with = "super::numbers::query_option")]
    pub limit: Option<u32>,
    /// The id of the last key of the previous page.
    pub starting_after: Option<String>,
    /// Only keys in this status.
    #[param(value_type = Option<schema::StatusFilter>, inline, example = "active")]
    pub status: Option<StatusFilter>,
    /// Case-insensitive search in names.
    pub q: Option<String>,
    /// `created_at` (default), `last_used_at` or `name`.
    #[param(value_type = Option<schema::SortKey>, inline, example = "created_at")]
    pub sort: Option<SortKey>,
    /// `desc` (default) or `asc`.
    #[param(value_type = Option<schema::SortOrder>, inline, example = "desc")]
    pub order: Option<SortOrder>,
}

/// The longest a rolled key keeps working (`expires_in`), in seconds: 7 days.
pub const MAX_ROLL_OVERLAP_SECS: i64 = 7 * 24 * 3600;

/// What the paths of this module name.
const API_KEY: &str = "api key";

fn parse_key_id(id: &str) -> Result<ApiKeyId, ApiError> {
    parse_id(API_KEY, id)
}

/// Maps store errors of key changes onto the API's codes and messages.
fn key_error(err: StoreError, id: &str, mode: Mode) -> ApiError {
    match err {
        StoreError::Rule(rule) => {
            let message = match rule {
                KeyRuleError::KeyLimitReached => format!(
                    "{MAX_ACTIVE_KEYS} API keys are already active in {mode} mode; deactivate or revoke one first"
                ),
                KeyRuleError::DuplicateName => format!("another {mode}-mode API key already has this name"),
                KeyRuleError::LastAdminKey => format!(
                    "this is the last active {mode}-mode key holding api_keys:write; create or activate another first"
                ),
                KeyRuleError::NotRevoked => "only a revoked key can be deleted; revoke it first".to_owned(),
                KeyRuleError::Revoked => "this key is revoked; revocation cannot be undone".to_owned(),
                KeyRuleError::Expired => "this key has expired or is already rolled".to_owned(),
                KeyRuleError::NotActive => "only an active key can be rolled".to_owned(),
                KeyRuleError::ScopeNotHeld(scope) => return scope_not_held(scope),
            };
            ApiError::conflict(rule.code(), message)
        }
        other => store_error(other, API_KEY, id),
    }
}

/// 403 for a key that would grant, or change a key holding, a scope it lacks.
fn scope_not_held(scope: Scope) -> ApiError {
    ApiError::permission(
        "scope_not_held",
        format!(
            "a key can only grant, and manage keys holding, scopes it holds itself; this key lacks `{scope}`"
        ),
    )
}

/// The scopes a new key gets: as asked (each held by the caller), or all the caller holds.
fn granted_scopes(auth: &MerchantAuth, asked: Option<&[String]>) -> Result<ScopeSet, ApiError> {
    let Some(asked) = asked else {
        return Ok(auth.key.scopes.clone());
    };
    if asked.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_scopes",
            "give at least one scope, or omit `scopes` for all",
        ));
    }
    let scopes = ScopeSet::parse_names(asked)
        .map_err(|err| ApiError::unprocessable("invalid_scopes", err))?;
    may_act_on(&auth.key.scopes, &scopes).map_err(|rule| key_error(rule.into(), "", auth.mode))?;
    Ok(scopes)
}

/// Lists the calling mode's keys.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api keys", params(ListApiKeys),
    responses((status = 200, body = List<ApiKeyObject>), (status = 400, body = ErrorEnvelope),
              (status = 404, body = ErrorEnvelope, description = "`starting_after` names no key of this list"),
              (status = 403, body = ErrorEnvelope, description = "missing api_keys:read")))]
pub async fn list(
    State(state): State<AppState>,
    auth: MerchantAuth,
    ApiQuery(params): ApiQuery<ListApiKeys>,
) -> ApiResult<Json<List<ApiKeyObject>>> {
    auth.require(Scope::ApiKeysRead)?;
    let limit = page::<ApiKeyId>(params.limit, None)?.limit - 1;
    let cursor = params
        .starting_after
        .as_deref()
        .map(parse_cursor::<ApiKeyId>)
        .transpose()?;
    let now = state.clock.now();
    let keys = state
        .store
        .list_api_keys(auth.merchant_id, auth.mode)
        .await
        .map_err(ApiError::store)?;
    let query = KeyQuery {
        status: params.status,
        name_contains: params
            .q
            .filter(|q| !q.trim().is_empty())
            .map(|q| q.trim().to_owned()),
        sort: params.sort.unwrap_or_default(),
        order: params.order.unwrap_or_default(),
    };
    let sorted = filter_and_sort(keys, &query, now);
    let (page, has_more) = page_after(sorted, cursor, limit as usize).ok_or_else(|| {
        cursor_not_in_list::<ApiKeyId>(params.starting_after.as_deref().unwrap_or_default())
    })?;
    Ok(Json(List {
        object: "list",
        data: page
            .iter()
            .map(|key| ApiKeyObject::from_record(key, now))
            .collect(),
        has_more,
        url: "/v1/api-keys",
    }))
}

/// Creates a key in the calling key's mode. The token is in this response only.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api keys", request_body = CreateApiKey,
    params(("Idempotency-Key" = Option<String>, Header, description = "replay protection for 24 h")),
    responses((status = 201, body = ApiKeyObject, description = "created; `token` is shown only here"),
              (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope, description = "key_limit_reached or duplicate_name"),
              (status = 422, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    auth: MerchantAuth,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<ApiKeyObject>)> {
    auth.require(Scope::ApiKeysWrite)?;
    let name = valid_name(&body.name)?;
    let scopes = granted_scopes(&auth, body.scopes.as_deref())?;
    let now = state.clock.now();
    let (key, token) = new_key(
        TokenKind::Merchant(auth.mode),
        Some(auth.merchant_id),
        &name,
        scopes,
        now,
    );
    let audit = auth.audit_event(
        "api_key.create",
        key.id,
        json!({ "name": name, "scopes": key.scopes.names() }),
        now,
    );
    let record = state
        .store
        .create_api_key(&key, now, &audit)
        .await
        .map_err(|err| key_error(err, &key.id.to_string(), auth.mode))?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyObject::with_token(&record, now, token.expose())),
    ))
}

/// Retrieves a key of the calling mode.
#[utoipa::path(get, path = "/v1/api-keys/{id}", tag = "api keys",
    params(("id" = String, Path, description = "key_…")),
    responses((status = 200, body = ApiKeyObject), (status = 404, body = ErrorEnvelope)))]
pub async fn retrieve(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyObject>> {
    auth.require(Scope::ApiKeysRead)?;
    let key_id = parse_key_id(&id)?;
    let key = state
        .store
        .get_api_key(key_id)
        .await
        .map_err(|err| key_error(err, &id, auth.mode))?;
    // Another merchant's or mode's key is "not found": ids do not leak across tenants.
    if key.merchant_id != Some(auth.merchant_id) || key.kind != KeyKind::Merchant(auth.mode) {
        return Err(ApiError::not_found(API_KEY, &id));
    }
    Ok(Json(ApiKeyObject::from_record(&key, state.clock.now())))
}

/// Renames, deactivates or re-activates a key.
#[utoipa::path(patch, path = "/v1/api-keys/{id}", tag = "api keys", request_body = UpdateApiKey,
    params(("id" = String, Path, description = "key_…")),
    responses((status = 200, body = ApiKeyObject), (status = 404, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope, description = "missing_scope, or scope_not_held: the key holds a scope the caller lacks"),
              (status = 409, body = ErrorEnvelope, description = "key_limit_reached, duplicate_name, last_admin_key, api_key_revoked"),
              (status = 422, body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateApiKey>,
) -> ApiResult<Json<ApiKeyObject>> {
    auth.require(Scope::ApiKeysWrite)?;
    let key_id = parse_key_id(&id)?;
    if body.name.is_none() && body.active.is_none() {
        return Err(ApiError::unprocessable(
            "nothing_to_update",
            "give `name` and/or `active`",
        ));
    }
    let name = body.name.as_deref().map(valid_name).transpose()?;
    let now = state.clock.now();
    let audit = auth.audit_event(
        "api_key.update",
        key_id,
        json!({ "name": name, "active": body.active }),
        now,
    );
    let patch = KeyPatch {
        name,
        active: body.active,
    };
    let record = state
        .store
        .update_api_key(
            auth.merchant_id,
            auth.mode,
            key_id,
            &auth.key.scopes,
            &patch,
            now,
            &audit,
        )
        .await
        .map_err(|err| key_error(err, &id, auth.mode))?;
    Ok(Json(ApiKeyObject::from_record(&record, now)))
}

/// Revokes a key: irreversible, effective on its very next request.
#[utoipa::path(post, path = "/v1/api-keys/{id}/revoke", tag = "api keys",
    params(("id" = String, Path, description = "key_…")),
    responses((status = 200, body = ApiKeyObject), (status = 404, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope, description = "missing_scope, or scope_not_held: the key holds a scope the caller lacks"),
              (status = 409, body = ErrorEnvelope, description = "last_admin_key")))]
pub async fn revoke(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyObject>> {
    auth.require(Scope::ApiKeysWrite)?;
    let key_id = parse_key_id(&id)?;
    let now = state.clock.now();
    let audit = auth.audit_event("api_key.revoke", key_id, json!({}), now);
    let record = state
        .store
        .revoke_api_key(
            auth.merchant_id,
            auth.mode,
            key_id,
            &auth.key.scopes,
            now,
            &audit,
        )
        .await
        .map_err(|err| key_error(err, &id, auth.mode))?;
    Ok(Json(ApiKeyObject::from_record(&record, now)))
}

/// Deletes a revoked key.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api keys",
    params(("id" = String, Path, description = "key_…")),
    responses((status = 200, body = DeletedApiKey), (status = 404, body = ErrorEnvelope),
              (status = 403, body = ErrorEnvelope, description = "missing_scope, or scope_not_held: the key holds a scope the caller lacks"),
              (status = 409, body = ErrorEnvelope, description = "api_key_not_revoked")))]
pub async fn delete(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<DeletedApiKey>> {
    auth.require(Scope::ApiKeysWrite)?;
    let key_id = parse_key_id(&id)?;
    let now = state.clock.now();
    let audit = auth.audit_event("api_key.delete", key_id, json!({}), now);
    state
        .store
        .delete_api_key(
            auth.merchant_id,
            auth.mode,
            key_id,
            &auth.key.scopes,
            &audit,
        )
        .await
        .map_err(|err| key_error(err, &id, auth.mode))?;
    Ok(Json(DeletedApiKey {
        object: "api_key",
        id: key_id,
        livemode: auth.mode.is_live(),
        deleted: true,
    }))
}

/// Replaces a key with a new one of the same name and scopes; the old one keeps working for
/// `expires_in` seconds. The caller must hold every scope of the key it rolls (as for every
/// change of a key), or rolling would hand it a stronger token than its own.
#[utoipa::path(post, path = "/v1/api-keys/{id}/roll", tag = "api keys", request_body(content = Option<RollApiKey>, description = "optional: an empty body rolls with no overlap"),
    params(("id" = String, Path, description = "key_…")),
    responses((status = 201, body = RolledApiKey, description = "the new key's `token` is shown only here"),
              (status = 403, body = ErrorEnvelope, description = "missing_scope, or scope_not_held: the key holds a scope the caller lacks"),
              (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn roll(
    State(state): State<AppState>,
    auth: MerchantAuth,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RollApiKey>,
) -> ApiResult<(StatusCode, Json<RolledApiKey>)> {
    auth.require(Scope::ApiKeysWrite)?;
    let key_id = parse_key_id(&id)?;
    let overlap = body.expires_in.unwrap_or(0);
    if !(0..=MAX_ROLL_OVERLAP_SECS).contains(&overlap) {
        return Err(ApiError::unprocessable(
            "invalid_expires_in",
            format!("expires_in must be between 0 and {MAX_ROLL_OVERLAP_SECS} seconds (7 days)"),
        ));
    }
    let now = state.clock.now();
    let old = state
        .store
        .get_api_key(key_id)
        .await
        .map_err(|err| key_error(err, &id, auth.mode))?;
    if old.merchant_id != Some(auth.merchant_id) || old.kind != KeyKind::Merchant(auth.mode) {
        return Err(ApiError::not_found(API_KEY, &id));
    }
    let (successor, token) = new_key(
        TokenKind::Merchant(auth.mode),
        Some(auth.merchant_id),
        &old.name,
        old.scopes.clone(),
        now,
    );
    let expires_at = now + chrono::Duration::seconds(overlap);
    let audit = auth.audit_event(
        "api_key.roll",
        key_id,
        json!({ "successor": successor.id.to_string(), "expires_in": overlap }),
        now,
    );
    let previous = state
        .store
        .roll_api_key(
            auth.merchant_id,
            auth.mode,
            key_id,
            &auth.key.scopes,
            &successor,
            expires_at,
            now,
            &audit,
        )
        .await
        .map_err(|err| key_error(err, &id, auth.mode))?;
    let new_record = state
        .store
        .get_api_key(successor.id)
        .await
        .map_err(ApiError::store)?;
    Ok((
        StatusCode::CREATED,
        Json(RolledApiKey {
            object: "api_key_roll",
            api_key: ApiKeyObject::with_token(&new_record, now, token.expose()),
            previous: ApiKeyObject::from_record(&previous, now),
        }),
    ))
}
