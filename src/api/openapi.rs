//! The OpenAPI document, generated from the handlers' annotations (utoipa). Every route of
//! [`super::router`] is listed here; a test checks the two agree.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
        merchants::MerchantObject, merchants::CreatedMerchantObject, merchants::CreateMerchant,
        merchants::UpdateMerchant, api_keys::ApiKeyObject, api_keys::KeyStatus,
        api_keys::CreateApiKey, api_keys::UpdateApiKey, api_keys::RollApiKey, api_keys::RolledApiKey,
        api_keys::DeletedApiKey, pagination::List<merchants::MerchantObject>,
        pagination::List<api_keys::ApiKeyObject>,
        signing_secret::SigningSecretStatus, signing_secret::SecretView, signing_secret::ScheduleView,
        signing_secret::InitiateRotation, signing_secret::PutSchedule, signing_secret::RevealedSecrets,
        signing_secret::RevealedSecret, sign::Signature,
        endpoints::EndpointObject, endpoints::EndpointBody, endpoints::ReplayBody, endpoints::PingResult,
        events::CreateEvent, events::EventObject, deliveries::DeliveryObject, deliveries::AttemptObject,
        crate::store::DeliveryStatus, pagination::List<endpoints::EndpointObject>,
        pagination::List<events::EventObject>, pagination::List<deliveries::DeliveryObject>,
        audit_events::AuditEventObject, pagination::List<audit_events::AuditEventObject>,
    )),
    modifiers(&SecuritySchemes),
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

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
