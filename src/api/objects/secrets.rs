//! The signing secret objects: the status of a mode's secrets and its rotation schedule, and
//! the answer to `reveal`.

use serde::Serialize;

use super::schema;
use super::Time;
use crate::ids::SecretId;
use crate::keys::Mode;

/// One secret as the status shows it (never its value, except right after `initiate`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretView {
    #[schema(value_type = String, example = "sec_01JD5Q3Z8X9V0W1Y2Z3A4B5C6D")]
    pub id: SecretId,
    /// First 8 hex characters of SHA-256 of the key: compare with what receivers hold.
    pub fingerprint: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Time,
    /// Pending only: when the rotation completes by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub complete_at: Option<Time>,
    /// Previous only: the last moment `revert` works.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revert_until: Option<Time>,
    /// Previous only: seconds left to revert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revert_seconds_left: Option<i64>,
    /// The secret itself: only in the answer to `initiate` (pending) — store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The same key in Standard Webhooks form (`whsec_…`), alongside `secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whsec: Option<String>,
}

/// The rotation policy as shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    /// Six fields, seconds first, e.g. `0 0 3 1 * *` (03:00 on the 1st of each month).
    pub cron: String,
    /// Seconds between a scheduled initiation and its completion.
    pub grace_seconds: i64,
    #[schema(value_type = String, format = DateTime)]
    pub next_fire_at: Time,
}

/// `GET /v1/signing-secret` and the answer to every rotation command.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SigningSecretStatus {
    /// Always `signing_secret`.
    pub object: &'static str,
    pub livemode: bool,
    #[schema(value_type = schema::Mode)]
    pub mode: Mode,
    pub active: SecretView,
    pub pending: Option<SecretView>,
    pub previous: Option<SecretView>,
    pub schedule: Option<ScheduleView>,
}

/// One revealed secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevealedSecret {
    #[schema(value_type = String)]
    pub id: SecretId,
    pub fingerprint: String,
    /// The 64-character hex secret (the HMAC key is its UTF-8 bytes).
    pub secret: String,
    /// The same key as `whsec_` + base64, for Standard Webhooks libraries.
    pub whsec: String,
}

/// The answer to `reveal`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevealedSecrets {
    /// Always `signing_secret_reveal`.
    pub object: &'static str,
    pub livemode: bool,
    pub active: RevealedSecret,
    pub pending: Option<RevealedSecret>,
}
