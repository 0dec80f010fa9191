//! The OpenAPI document, generated from the handlers' annotations (utoipa). Every route of
//! [`super::router`] is listed here; a test checks the two agree.
//!
//! What every operation shares is added once, by `SharedResponses`, rather than repeated on
//! each handler: the security of every `/v1` operation, the error answers that the middleware and the extractors give (401, 403, 409,
//! 429, 400, 404, 413, 415, 422, 500, 503), the shape of path ids, and unique operation ids. A
//! handler's own annotation only lists what is particular to it.
//!
//! The document is built in [`document`] from the derive below; `shared.rs` adds what every
//! operation shares, `bounds.rs` states the validation's limits from its own constants (with
//! the patterns of `patterns.rs`). The tests are in `tests.rs`. May use the API's objects,
//! bodies and constants, and the constants of the layers below that the validation uses.

mod bounds;
mod patterns;
mod shared;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use self::bounds::state_bounds;
use self::shared::SharedResponses;
use super::objects::{self, schema};
use super::{
    api_keys, audit_events, deliveries, endpoints, events, merchants, ops, pagination, sign,
    signing_secret, ErrorBody, ErrorEnvelope, ErrorType,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "hooksign admin API", description = "Webhook signing secrets, their rotation, API keys and deliveries."),
    paths(
        ops::healthz, ops::readyz, ops::metrics, ops::openapi_json,
        merchants::create, merchants::list, merchants::retrieve, merchants::update,
        api_keys::list, api_keys::create, api_keys::retrieve, api_keys::update, api_keys::delete,
        api_keys::revoke, api_keys::roll,
        signing_secret::get_status, signing_secret::initiate, signing_secret::complete,
        signing_secret::revert, signing_secret::cancel, signing_secret::reveal,
        signing_secret::put_schedule, signing_secret::delete_schedule, sign::sign,
        endpoints::create, endpoints::list, endpoints::retrieve, endpoints::update, endpoints::delete,
        endpoints::test, endpoints::replay, events::create, events::list, events::retrieve,
        deliveries::list, deliveries::retrieve, deliveries::retry, audit_events::list,
    ),
    components(schemas(
        ErrorEnvelope, ErrorBody, ErrorType,
        objects::MerchantObject, objects::CreatedMerchantObject, merchants::CreateMerchant,
        merchants::UpdateMerchant, objects::ApiKeyObject, objects::KeyStatus,
        api_keys::CreateApiKey, api_keys::UpdateApiKey, api_keys::RollApiKey, objects::RolledApiKey,
        objects::DeletedApiKey, pagination::List<objects::MerchantObject>,
        pagination::List<objects::ApiKeyObject>,
        objects::SigningSecretStatus, objects::SecretView, objects::ScheduleView,
        signing_secret::InitiateRotation, signing_secret::PutSchedule, objects::RevealedSecrets,
        objects::RevealedSecret, objects::Signature,
        objects::EndpointObject, endpoints::EndpointBody, endpoints::ReplayBody, objects::PingResult,
        events::CreateEvent, objects::EventObject, objects::DeliveryObject, objects::AttemptObject,
        schema::DeliveryStatus, pagination::List<objects::EndpointObject>,
        pagination::List<objects::EventObject>, pagination::List<objects::DeliveryObject>,
        objects::AuditEventObject, pagination::List<objects::AuditEventObject>,
    )),
    modifiers(&SecuritySchemes, &SharedResponses),
    tags(
        (name = "operator", description = "Managing merchants (operator keys only)"),
        (name = "signing secret", description = "The signing secret of the calling key's mode and its rotation"),
        (name = "signing", description = "Signing bytes you send yourself"),
        (name = "endpoints", description = "Where webhooks go"),
        (name = "audit", description = "The merchant's hash-chained audit log"),
        (name = "events", description = "What happened: each event is delivered to every matching endpoint"),
        (name = "deliveries", description = "One event to one endpoint, with every attempt"),
        (name = "api keys", description = "A merchant's API keys in the calling key's mode: at most five active"),
        (name = "ops", description = "Health, readiness, metrics; no authentication"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("hk_live_… / hk_test_… / hk_op_…")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// The document served at `/openapi.json`: utoipa's, with what the server refuses stated on
/// every value (`bounds::state_bounds`). Built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        let missed = state_bounds(&mut doc);
        if !missed.is_empty() {
            // A unit test keeps this list empty; a renamed field must not take the server down.
            tracing::warn!(
                ?missed,
                "OpenAPI bounds name places the document does not have"
            );
        }
        doc
    })
}
