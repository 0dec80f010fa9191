//! Every record → object conversion of the API, in one place: what a stored row shows, and
//! what it hides (header values, secret values, operator keys' mode).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    ApiKeyObject, AttemptObject, AuditEventObject, DeliveryObject, EndpointObject, EventObject,
    KeyStatus, MerchantObject, PingResult, RevealedSecret, ScheduleView, SecretView, Time,
    MASKED_HEADER_VALUE,
};
use crate::clock::{from_millis, Timestamp};
use crate::keys::rules::{status_of, StatusFilter};
use crate::keys::Mode;
use crate::records::PolicyRecord;
use crate::records::{
    ApiKeyRecord, AttemptRecord, AuditRecord, DeliveryRecord, EndpointRecord, EventRecord, KeyKind,
    MerchantRecord, SecretRecord,
};
use crate::secrets::keyring::OpenSecret;

impl KeyStatus {
    /// Revoked beats expired beats inactive (see [`crate::keys::rules::status_of`]).
    pub fn of(key: &ApiKeyRecord, now: Timestamp) -> Self {
        match status_of(key, now) {
            StatusFilter::Active => KeyStatus::Active,
            StatusFilter::Inactive => KeyStatus::Inactive,
            StatusFilter::Revoked => KeyStatus::Revoked,
            StatusFilter::Expired => KeyStatus::Expired,
        }
    }
}

impl ApiKeyObject {
    /// The public view of a stored merchant key (operator keys are never listed).
    pub fn from_record(key: &ApiKeyRecord, now: Timestamp) -> Self {
        let mode = match key.kind {
            KeyKind::Merchant(mode) => mode,
            KeyKind::Operator => Mode::Live,
        };
        Self {
            object: "api_key",
            id: key.id,
            name: key.name.clone(),
            livemode: mode.is_live(),
            mode,
            display_prefix: key.display_prefix.clone(),
            scopes: key.scopes.names(),
            status: KeyStatus::of(key, now),
            created_at: key.created_at.into(),
            last_used_at: key.last_used_at.map(Time),
            revoked_at: key.revoked_at.map(Time),
            expires_at: key.expires_at.map(Time),
            token: None,
        }
    }

    /// The view of a key just created, with its token: the only answer that shows it.
    pub fn with_token(key: &ApiKeyRecord, now: Timestamp, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..Self::from_record(key, now)
        }
    }
}

impl From<MerchantRecord> for MerchantObject {
    fn from(record: MerchantRecord) -> Self {
        Self {
            object: "merchant",
            id: record.id,
            name: record.name,
            disabled: record.disabled,
            created_at: record.created_at.into(),
            updated_at: record.updated_at.into(),
        }
    }
}

impl SecretView {
    /// A secret without its value, with the seconds left to revert to it at `now`.
    pub fn of(row: &SecretRecord, now: Timestamp) -> Self {
        let left = row
            .revert_until
            .map(|until| (until - now).num_seconds().max(0));
        Self {
            id: row.id,
            fingerprint: row.fingerprint.clone(),
            created_at: row.created_at.into(),
            complete_at: row.complete_at.map(Time),
            revert_until: row.revert_until.map(Time),
            revert_seconds_left: left,
            secret: None,
            whsec: None,
        }
    }
}

impl From<PolicyRecord> for ScheduleView {
    fn from(policy: PolicyRecord) -> Self {
        Self {
            cron: policy.cron,
            grace_seconds: policy.grace_secs,
            next_fire_at: policy.next_fire_at.into(),
        }
    }
}

impl From<&OpenSecret> for RevealedSecret {
    fn from(open: &OpenSecret) -> Self {
        Self {
            id: open.id,
            fingerprint: open.fingerprint.clone(),
            secret: open.secret.expose().to_owned(),
            whsec: crate::verify::whsec(open.secret.key()),
        }
    }
}

impl From<EndpointRecord> for EndpointObject {
    fn from(e: EndpointRecord) -> Self {
        Self {
            object: "endpoint",
            id: e.id,
            livemode: e.mode.is_live(),
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            scheme: e.scheme,
            enabled: e.enabled,
            max_in_flight: e.max_in_flight,
            timeout_ms: e.timeout_ms,
            headers: e
                .headers
                .into_keys()
                .map(|name| (name, MASKED_HEADER_VALUE.to_owned()))
                .collect(),
            disabled_reason: e.disabled_reason,
            disabled_at: e.disabled_at.map(Time),
            created_at: e.created_at.into(),
            updated_at: e.updated_at.into(),
            tls_verify: e.tls_verify,
        }
    }
}

impl PingResult {
    /// The answer to a test ping from its recorded attempt.
    pub fn new(succeeded: bool, record: AttemptRecord, pending_signature: bool) -> Self {
        Self {
            object: "endpoint_test",
            succeeded,
            status_code: record.status_code,
            latency_ms: record.latency_ms,
            error_class: record.error_class,
            response_body: record.response_body,
            signature_headers: record.signatures,
            pending_signature,
        }
    }
}

impl From<AttemptRecord> for AttemptObject {
    fn from(a: AttemptRecord) -> Self {
        Self {
            attempt: a.attempt,
            started_at: a.started_at.into(),
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            error_class: a.error_class,
            response_body: a.response_body,
            signature_headers: a.signatures,
        }
    }
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
            next_attempt_at: d.next_attempt_at.into(),
            last_status: d.last_status,
            last_error: d.last_error,
            delivered_at: d.delivered_at.map(Time),
            created_at: d.created_at.into(),
            attempt_history: attempts.map(|a| a.into_iter().map(Into::into).collect()),
        }
    }
}

impl From<&EventRecord> for EventObject {
    fn from(record: &EventRecord) -> Self {
        #[derive(Deserialize)]
        struct Stored {
            data: Box<RawValue>,
        }
        // The stored envelope is ours and always has `data`; a damaged row shows `null`.
        let data = serde_json::from_slice::<Stored>(&record.body)
            .map(|stored| stored.data)
            .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).unwrap_or_default());
        Self {
            object: "event",
            id: record.id,
            event_type: record.event_type.clone(),
            livemode: record.mode.is_live(),
            created_at: record.created_at.into(),
            data,
            delivery_count: None,
            deliveries: None,
        }
    }
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
            created_at: from_millis(record.created_at).into(),
            sequence: record.seq,
            hash: record.hash,
        }
    }
}
