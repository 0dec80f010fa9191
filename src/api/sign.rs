//! `POST /v1/sign`: a signing oracle for platforms that send HTTP themselves but keep their
//! secrets in hooksign. It takes the raw body bytes (any content type) and returns the headers
//! to send, with the pending signature while a rotation is pending.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::objects::Signature;
use super::{ApiError, ApiQuery, ApiResult, ErrorEnvelope};
use crate::auth::MerchantAuth;
use crate::ids::EventId;
use crate::keys::Scope;
use crate::secrets::keyring::{load_keyring, Keyring};
use crate::signing::{signature_headers, Scheme};
use crate::state::AppState;

/// The longest `id` (`webhook-id`): 1 to this many printable ASCII characters.
pub const MAX_WEBHOOK_ID_LEN: usize = 255;

/// Query parameters of `POST /v1/sign`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SignParams {
    /// `bolt` (default), `standard` or `both`.
    #[param(value_type = Option<String>, example = "bolt")]
    pub scheme: Option<Scheme>,
    /// The `webhook-id` for the standard scheme (default: a fresh `evt_…` id).
    pub id: Option<String>,
}

/// Signs raw bytes with the merchant's current secrets.
#[utoipa::path(post, path = "/v1/sign", tag = "signing", params(SignParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the exact bytes you will send"),
    responses((status = 200, body = Signature), (status = 403, body = ErrorEnvelope, description = "needs events:write"), (status = 413, body = ErrorEnvelope)))]
pub async fn sign(
    State(state): State<AppState>,
    auth: MerchantAuth,
    ApiQuery(params): ApiQuery<SignParams>,
    body: Bytes,
) -> ApiResult<Json<Signature>> {
    auth.require(Scope::EventsWrite)?;
    let webhook_id = match params.id {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_WEBHOOK_ID_LEN
                && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            id
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_id",
                "id must be 1 to 255 printable ASCII characters",
            ))
        }
        None => EventId::new().to_string(),
    };
    let scheme = params.scheme.unwrap_or_default();
    let keyring = current_keyring(&state, &auth).await?;
    let timestamp = state.clock.now().timestamp();
    let headers = signature_headers(
        scheme,
        &keyring.signing_keys(),
        &body,
        &webhook_id,
        timestamp,
    )
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    Ok(Json(Signature {
        object: "signature",
        livemode: auth.mode.is_live(),
        scheme,
        pending: keyring.pending.is_some(),
        headers,
    }))
}

/// The calling merchant's secrets in the calling key's mode, decrypted: what `sign` signs
/// with and `reveal` shows.
pub(super) async fn current_keyring(state: &AppState, auth: &MerchantAuth) -> ApiResult<Keyring> {
    load_keyring(
        state.store.as_ref(),
        &state.encryptor,
        auth.merchant_id,
        auth.mode,
    )
    .await
    .map_err(|err| match err {
        crate::secrets::keyring::KeyringError::Store(err) => ApiError::store(err),
        other => ApiError::internal(other),
    })
}
