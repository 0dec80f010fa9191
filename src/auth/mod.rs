//! Authentication: turns `Authorization: Bearer <token>` or `X-Api-Key: <token>` into the
//! caller's key, merchant and mode.
//!
//! A token that is malformed or fails its checksum is refused before any database lookup. The
//! key row is read on every request (one indexed lookup): a revocation or deactivation made by
//! any daemon sharing the database takes effect on the very next request, which a cache could
//! not promise.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::api::ApiError;
use crate::ids::MerchantId;
use crate::keys::{ApiToken, Mode, Scope};
use crate::server::AppState;
use crate::store::{ApiKeyRecord, KeyKind};

/// A request made with a merchant's API key.
#[derive(Debug, Clone)]
pub struct MerchantAuth {
    pub key: ApiKeyRecord,
    pub merchant_id: MerchantId,
    pub mode: Mode,
}

impl MerchantAuth {
    /// 403 naming the scope unless the key holds it.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.key.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::permission(
                "missing_scope",
                format!("this API key lacks the `{scope}` scope"),
            ))
        }
    }
}

/// A request made with an operator key.
#[derive(Debug, Clone)]
pub struct OperatorAuth {
    pub key: ApiKeyRecord,
}

/// Reads the token from the request headers.
fn presented_token(parts: &Parts) -> Result<ApiToken, ApiError> {
    let header = |name: &str| -> Result<Option<&str>, ApiError> {
        parts
            .headers
            .get(name)
            .map(|value| {
                value.to_str().map_err(|_| {
                    ApiError::authentication(
                        "invalid_api_key",
                        "the API key header is not valid text",
                    )
                })
            })
            .transpose()
    };
    let bearer = match header("authorization")? {
        Some(value) => Some(
            value
                .strip_prefix("Bearer ")
                .map(str::trim)
                .ok_or_else(|| {
                    ApiError::authentication(
                        "invalid_api_key",
                        "use `Authorization: Bearer <api key>`",
                    )
                })?,
        ),
        None => None,
    };
    let x_api_key = header("x-api-key")?.map(str::trim);
    let text = match (bearer, x_api_key) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(
                "conflicting_api_keys",
                "Authorization and X-Api-Key carry different keys; send one",
            ))
        }
        (Some(token), _) | (None, Some(token)) => token,
        (None, None) => {
            return Err(ApiError::authentication(
                "missing_api_key",
                "no API key: send `Authorization: Bearer <api key>` or `X-Api-Key: <api key>`",
            ))
        }
    };
    ApiToken::parse(text).map_err(|err| {
        ApiError::authentication("invalid_api_key", format!("invalid API key: {err}"))
    })
}

/// Finds the key and checks it may be used now.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<ApiKeyRecord, ApiError> {
    let token = presented_token(parts)?;
    let found = state
        .store
        .find_api_key_by_hash(&token.hash())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::authentication("invalid_api_key", "invalid API key"))?;
    let now = state.clock.now();
    let key = found.key;
    if key.revoked_at.is_some() {
        return Err(ApiError::authentication(
            "api_key_revoked",
            "this API key has been revoked",
        ));
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::authentication(
            "api_key_expired",
            "this API key has expired",
        ));
    }
    if !key.active {
        return Err(ApiError::authentication(
            "api_key_inactive",
            "this API key is deactivated",
        ));
    }
    if found.merchant_disabled {
        return Err(ApiError::authentication(
            "merchant_disabled",
            "this merchant is disabled",
        ));
    }
    Ok(key)
}

impl FromRequestParts<AppState> for MerchantAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = authenticate(parts, state).await?;
        match (key.kind, key.merchant_id) {
            (KeyKind::Merchant(mode), Some(merchant_id)) => Ok(MerchantAuth {
                key,
                merchant_id,
                mode,
            }),
            _ => Err(ApiError::permission(
                "merchant_key_required",
                "operator keys manage merchants only; use one of the merchant's API keys",
            )),
        }
    }
}

impl FromRequestParts<AppState> for OperatorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = authenticate(parts, state).await?;
        match key.kind {
            KeyKind::Operator => Ok(OperatorAuth { key }),
            KeyKind::Merchant(_) => Err(ApiError::permission(
                "operator_key_required",
                "this route needs an operator key (hk_op_…)",
            )),
        }
    }
}
