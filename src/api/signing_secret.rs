//! The signing secret of the calling key's merchant and mode, and its rotation:
//! `GET /v1/signing-secret`, `POST /v1/signing-secret/{initiate,complete,revert,cancel,reveal}`,
//! `PUT/DELETE /v1/signing-secret/schedule`.
//!
//! Secret values appear only in the answer to `initiate` (the new secret, once) and to the
//! audited `reveal`.

use axum::extract::State;
use axum::Json;
use chrono::Duration;
use serde::Deserialize;
use serde_json::json;

use super::objects::{RevealedSecret, RevealedSecrets, SecretView, SigningSecretStatus};
use super::sign::current_keyring;
use super::{ApiError, ApiJson, ApiResult, ErrorEnvelope, OptionalJson};
use crate::auth::MerchantAuth;
use crate::clock::Timestamp;
use crate::ids::SecretId;
use crate::keys::{Mode, Scope};
use crate::provision::seal_new_secret;
use crate::records::{in_state, SecretState};
use crate::secrets::rotation::RotationError;
use crate::secrets::scheduler::next_fire;
use crate::secrets::SigningSecret;
use crate::state::AppState;
use crate::store::{NewAuditEvent, PolicyRecord, SecretRecord, StoreError, StoredCommand};

/// `POST /v1/signing-secret/initiate`
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitiateRotation {
    /// Complete the rotation by itself at this time (RFC 3339, in the future), e.g. an hour
    /// from now.
    #[schema(format = DateTime)]
    pub complete_at: Option<String>,
}

/// `PUT /v1/signing-secret/schedule`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSchedule {
    /// Six-field cron expression, seconds first.
    #[schema(example = "0 0 3 1 * *")]
    pub cron: String,
    /// Seconds from initiation to completion (60 s to 30 days), e.g. 86400.
    #[schema(example = 86400)]
    #[serde(deserialize_with = "super::numbers::required")]
    pub grace: i64,
}

/// The grace a rotation schedule may give, in seconds: 60 s to 30 days.
pub const GRACE_SECS_RANGE: std::ops::RangeInclusive<i64> = 60..=30 * 24 * 3600;

/// The status of the calling mode's secrets and schedule, from its rows.
async fn status(
    state: &AppState,
    auth: &MerchantAuth,
    rows: &[SecretRecord],
) -> ApiResult<SigningSecretStatus> {
    let now = state.clock.now();
    let active = in_state(rows, SecretState::Active)
        .ok_or_else(|| ApiError::internal("merchant has no active signing secret"))?;
    // An expired previous secret is gone for every purpose, whether or not the sweeper has
    // deleted its row yet.
    let previous = in_state(rows, SecretState::Previous)
        .filter(|row| row.revert_until.is_some_and(|until| now <= until));
    let schedule = state
        .store
        .get_policy(auth.merchant_id, auth.mode)
        .await
        .map_err(ApiError::store)?
        .map(Into::into);
    Ok(SigningSecretStatus {
        object: "signing_secret",
        livemode: auth.mode.is_live(),
        mode: auth.mode,
        active: SecretView::of(active, now),
        pending: in_state(rows, SecretState::Pending).map(|row| SecretView::of(row, now)),
        previous: previous.map(|row| SecretView::of(row, now)),
        schedule,
    })
}

/// The status as stored now: the answer of every command that changes no secret itself.
async fn current_status(state: &AppState, auth: &MerchantAuth) -> ApiResult<SigningSecretStatus> {
    let rows = state
        .store
        .signing_secrets(auth.merchant_id, auth.mode)
        .await
        .map_err(ApiError::store)?;
    status(state, auth, &rows).await
}

fn secret_audit(
    auth: &MerchantAuth,
    action: &'static str,
    details: serde_json::Value,
    now: Timestamp,
) -> NewAuditEvent {
    auth.audit_event(
        action,
        format!("signing_secret:{}", auth.mode),
        details,
        now,
    )
}

fn rotation_error(err: StoreError, mode: Mode) -> ApiError {
    match err {
        StoreError::Rotation(RotationError::CompleteAtInPast) => {
            ApiError::unprocessable("invalid_complete_at", "complete_at must be in the future")
        }
        StoreError::Rotation(rule) => {
            let message = match rule {
                RotationError::RotationInProgress => {
                    format!("a rotation is in progress in {mode} mode: complete or cancel it first")
                }
                RotationError::NoPendingSecret => {
                    format!("there is no pending {mode}-mode secret; initiate a rotation first")
                }
                RotationError::NothingToRevert => {
                    format!("there is no previous {mode}-mode secret to revert to")
                }
                RotationError::RevertWindowExpired => {
                    "the revert window has expired; the previous secret is gone".to_owned()
                }
                other => other.to_string(),
            };
            ApiError::conflict(rule.code(), message)
        }
        other => ApiError::store(other),
    }
}

fn revert_window(state: &AppState) -> Duration {
    Duration::seconds(state.config.secrets.revert_window_secs as i64)
}

async fn run(
    state: &AppState,
    auth: &MerchantAuth,
    command: StoredCommand,
    action: &'static str,
    details: serde_json::Value,
) -> ApiResult<Vec<SecretRecord>> {
    let now = state.clock.now();
    let event = secret_audit(auth, action, details, now);
    state
        .store
        .rotate(
            auth.merchant_id,
            auth.mode,
            command,
            now,
            revert_window(state),
            &event,
        )
        .await
        .map_err(|err| rotation_error(err, auth.mode))
}

/// Shows the active, pending and previous secrets (without their values) and the schedule.
#[utoipa::path(get, path = "/v1/signing-secret", tag = "signing secret",
    responses((status = 200, body = SigningSecretStatus), (status = 403, body = ErrorEnvelope)))]
pub async fn get_status(
    State(state): State<AppState>,
    auth: MerchantAuth,
) -> ApiResult<Json<SigningSecretStatus>> {
    auth.require(Scope::SigningSecretRead)?;
    Ok(Json(current_status(&state, &auth).await?))
}

/// Creates a pending secret. Deliveries then carry `X-Bolt-Hmac-Sha256-Pending` as well. The
/// answer shows the new secret once.
#[utoipa::path(post, path = "/v1/signing-secret/initiate", tag = "signing secret",
    request_body(content = Option<InitiateRotation>, description = "optional: an empty body initiates a rotation completed by hand"),
    responses((status = 200, body = SigningSecretStatus, description = "`pending.secret` is shown only here"),
              (status = 409, body = ErrorEnvelope, description = "rotation_in_progress"), (status = 422, body = ErrorEnvelope)))]
pub async fn initiate(
    State(state): State<AppState>,
    auth: MerchantAuth,
    OptionalJson(body): OptionalJson<InitiateRotation>,
) -> ApiResult<Json<SigningSecretStatus>> {
    auth.require(Scope::SigningSecretWrite)?;
    let complete_at = body
        .complete_at
        .as_deref()
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|at| at.with_timezone(&chrono::Utc))
                .map_err(|err| {
                    ApiError::unprocessable(
                        "invalid_complete_at",
                        format!("complete_at is not an RFC 3339 time: {err}"),
                    )
                })
        })
        .transpose()?;
    let now = state.clock.now();
    let secret = SigningSecret::generate();
    let sealed = seal_new_secret(
        &state.encryptor,
        &secret,
        SecretId::new(),
        auth.merchant_id,
        auth.mode,
        now,
    );
    let id = sealed.id;
    let details = json!({ "secret": id.to_string(), "fingerprint": secret.fingerprint(), "complete_at": complete_at.map(crate::clock::rfc3339) });
    let rows = run(
        &state,
        &auth,
        StoredCommand::Initiate {
            secret: sealed,
            complete_at,
        },
        "signing_secret.initiate",
        details,
    )
    .await?;
    let mut answer = status(&state, &auth, &rows).await?;
    if let Some(pending) = answer.pending.as_mut().filter(|pending| pending.id == id) {
        pending.secret = Some(secret.expose().to_owned());
        pending.whsec = Some(crate::verify::whsec(secret.key()));
    }
    Ok(Json(answer))
}

macro_rules! simple_transition {
    ($(#[$doc:meta])* $name:ident, $path:literal, $command:expr, $action:literal, $conflicts:literal) => {
        $(#[$doc])*
        #[utoipa::path(post, path = $path, tag = "signing secret",
            responses((status = 200, body = SigningSecretStatus), (status = 409, body = ErrorEnvelope, description = $conflicts)))]
        pub async fn $name(State(state): State<AppState>, auth: MerchantAuth) -> ApiResult<Json<SigningSecretStatus>> {
            auth.require(Scope::SigningSecretWrite)?;
            let rows = run(&state, &auth, $command, $action, json!({})).await?;
            Ok(Json(status(&state, &auth, &rows).await?))
        }
    };
}

simple_transition!(
    /// Makes the pending secret active; the old one stays restorable for the revert window.
    complete, "/v1/signing-secret/complete", StoredCommand::Complete, "signing_secret.complete", "no_pending_secret"
);
simple_transition!(
    /// Restores the previous secret (within the revert window) and destroys the current one.
    revert, "/v1/signing-secret/revert", StoredCommand::Revert, "signing_secret.revert",
    "nothing_to_revert, revert_window_expired, rotation_in_progress"
);
simple_transition!(
    /// Drops the pending secret.
    cancel, "/v1/signing-secret/cancel", StoredCommand::Cancel, "signing_secret.cancel", "no_pending_secret"
);

/// Shows the active and pending secret values. Audited.
#[utoipa::path(post, path = "/v1/signing-secret/reveal", tag = "signing secret",
    responses((status = 200, body = RevealedSecrets), (status = 403, body = ErrorEnvelope, description = "needs signing_secret:write")))]
pub async fn reveal(
    State(state): State<AppState>,
    auth: MerchantAuth,
) -> ApiResult<Json<RevealedSecrets>> {
    auth.require(Scope::SigningSecretWrite)?;
    let keyring = current_keyring(&state, &auth).await?;
    let now = state.clock.now();
    let ids: Vec<String> = std::iter::once(keyring.active.id)
        .chain(keyring.pending.as_ref().map(|p| p.id))
        .map(|id| id.to_string())
        .collect();
    // Recording the reveal is part of revealing: no audit entry, no secret.
    state
        .store
        .record_audit(&secret_audit(
            &auth,
            "signing_secret.reveal",
            json!({ "secrets": ids }),
            now,
        ))
        .await
        .map_err(ApiError::store)?;
    Ok(Json(RevealedSecrets {
        object: "signing_secret_reveal",
        livemode: auth.mode.is_live(),
        active: RevealedSecret::from(&keyring.active),
        pending: keyring.pending.as_ref().map(RevealedSecret::from),
    }))
}

/// Sets the rotation policy: initiate at each cron fire time, complete `grace` seconds later.
#[utoipa::path(put, path = "/v1/signing-secret/schedule", tag = "signing secret", request_body = PutSchedule,
    responses((status = 200, body = SigningSecretStatus), (status = 422, body = ErrorEnvelope, description = "invalid cron or grace")))]
pub async fn put_schedule(
    State(state): State<AppState>,
    auth: MerchantAuth,
    ApiJson(body): ApiJson<PutSchedule>,
) -> ApiResult<Json<SigningSecretStatus>> {
    auth.require(Scope::SigningSecretWrite)?;
    let cron = body.cron.trim().to_owned();
    if cron.split_whitespace().count() != 6 {
        return Err(ApiError::unprocessable(
            "invalid_cron",
            "cron must have six fields, seconds first: `sec min hour day-of-month month day-of-week`",
        ));
    }
    let now = state.clock.now();
    let next_fire_at = next_fire(&cron, now).map_err(|reason| {
        ApiError::unprocessable("invalid_cron", format!("invalid cron expression: {reason}"))
    })?;
    if !GRACE_SECS_RANGE.contains(&body.grace) {
        return Err(ApiError::unprocessable(
            "invalid_grace",
            format!(
                "grace must be between {} seconds and 30 days ({})",
                GRACE_SECS_RANGE.start(),
                GRACE_SECS_RANGE.end()
            ),
        ));
    }
    let policy = PolicyRecord {
        merchant_id: auth.merchant_id,
        mode: auth.mode,
        cron: cron.clone(),
        grace_secs: body.grace,
        next_fire_at,
    };
    let event = secret_audit(
        &auth,
        "signing_secret.schedule.set",
        json!({ "cron": cron, "grace": body.grace }),
        now,
    );
    state
        .store
        .put_policy(&policy, now, &event)
        .await
        .map_err(ApiError::store)?;
    Ok(Json(current_status(&state, &auth).await?))
}

/// Removes the rotation policy.
#[utoipa::path(delete, path = "/v1/signing-secret/schedule", tag = "signing secret",
    responses((status = 200, body = SigningSecretStatus), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_schedule(
    State(state): State<AppState>,
    auth: MerchantAuth,
) -> ApiResult<Json<SigningSecretStatus>> {
    auth.require(Scope::SigningSecretWrite)?;
    let now = state.clock.now();
    let event = secret_audit(&auth, "signing_secret.schedule.delete", json!({}), now);
    if !state
        .store
        .delete_policy(auth.merchant_id, auth.mode, &event)
        .await
        .map_err(ApiError::store)?
    {
        return Err(ApiError::not_found("rotation schedule", auth.mode.as_str()));
    }
    Ok(Json(current_status(&state, &auth).await?))
}
