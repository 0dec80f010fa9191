//! `GET /v1/audit-events`: the merchant's audit log as the calling key's mode sees it (that
//! mode's entries and the merchant-wide ones), newest first. Entries never hold a secret.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::objects::AuditEventObject;
use super::pagination::{page, List};
use super::{ApiError, ApiQuery, ApiResult, ErrorEnvelope};
use crate::auth::MerchantAuth;
use crate::ids::AuditId;
use crate::keys::Scope;
use crate::state::AppState;

/// Query parameters of `GET /v1/audit-events`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAuditEvents {
    #[serde(default, deserialize_with = "super::numbers::query_option")]
    pub limit: Option<u32>,
    pub starting_after: Option<String>,
    /// Only this action, e.g. `signing_secret.reveal`.
    pub action: Option<String>,
}

/// Lists audit entries, newest first.
#[utoipa::path(get, path = "/v1/audit-events", tag = "audit", params(ListAuditEvents),
    responses((status = 200, body = List<AuditEventObject>), (status = 403, body = ErrorEnvelope, description = "needs audit:read")))]
pub async fn list(
    State(state): State<AppState>,
    auth: MerchantAuth,
    ApiQuery(params): ApiQuery<ListAuditEvents>,
) -> ApiResult<Json<List<AuditEventObject>>> {
    auth.require(Scope::AuditRead)?;
    let page = page::<AuditId>(params.limit, params.starting_after.as_deref())?;
    let rows = state
        .store
        .list_audit_events(auth.merchant_id, auth.mode, params.action.as_deref(), &page)
        .await
        .map_err(ApiError::store)?;
    Ok(Json(List::from_rows(
        rows.into_iter().map(Into::into).collect(),
        &page,
        "/v1/audit-events",
    )))
}
