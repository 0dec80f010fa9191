//! `GET /v1/audit-events`: the merchant's audit log as the calling key's mode sees it (that
//! mode's entries and the merchant-wide ones), newest first. Entries never hold a secret.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::pagination::{page, List};
use super::{ApiError, ApiQuery, ApiResult, ErrorEnvelope};
use crate::auth::MerchantAuth;
use crate::clock::{from_millis, serde_rfc3339, Timestamp};
use crate::ids::AuditId;
use crate::keys::Scope;
use crate::state::AppState;
use crate::store::AuditRecord;

/// One audit entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEventObject {
    /// Always `audit_event`.
    pub object: &'static str,
    pub id: String,
    /// `true`/`false` for mode-specific entries, absent for merchant-wide ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub livemode: Option<bool>,
    /// What was done, e.g. `api_key.revoke`, `signing_secret.complete`.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// The API key that did it (absent for the daemon's own actions, such as scheduled rotations).
    pub actor_key_id: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Position and hash in the merchant's hash chain (`hooksign audit verify` checks it).
    pub sequence: i64,
    pub hash: String,
}

impl From<AuditRecord> for AuditEventObject {
    fn from(record: AuditRecord) -> Self {
        Self {
            object: "audit_event",
            id: record.id,
            livemode: record.mode.as_deref().map(|mode| mode == "live"),
            action: record.action,
            target: record.target,
            actor_key_id: record.actor_key_id,
            request_id: record.request_id,
            details: serde_json::from_str(&record.details).unwrap_or_default(),
            created_at: from_millis(record.created_at),
            sequence: record.seq,
            hash: record.hash,
        }
    }
}

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
#[utoipa::path(get, path = "/v1/audit-events", tag = "audit", params(ListAuditEvents), security(("bearer" = []), ("api_key" = [])),
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
        .map_err(ApiError::internal)?;
    Ok(Json(List::from_rows(
        rows.into_iter().map(Into::into).collect(),
        &page,
        "/v1/audit-events",
    )))
}
