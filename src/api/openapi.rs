//! The OpenAPI document, generated from the handlers' annotations (utoipa). Every route of
//! [`super::router`] is listed here; a test checks the two agree.
//!
//! What every operation shares is added once, by [`SharedResponses`], rather than repeated on
//! each handler: the error answers that the middleware and the extractors give (401, 403, 409,
//! 429, 400, 404, 413, 415, 422, 500, 503), the shape of path ids, and unique operation ids. A
//! handler's own annotation only lists what is particular to it.

use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    Content, HeaderBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
};
use utoipa::{Modify, OpenApi};

use crate::ids::{ApiKeyId, DeliveryId, EndpointId, EventId, MerchantId};

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

/// The error answers shared by operations, as `(status, component name, description)`.
const SHARED_ERRORS: [(u16, &str, &str); 11] = [
    (400, "BadRequest", "malformed query, header or cursor"),
    (401, "Unauthenticated", "no API key, or a malformed, unknown, inactive, expired or revoked one"),
    (403, "Forbidden", "the key lacks a scope (named in the message) or is the wrong kind of key"),
    (404, "NotFound", "no such object for the calling key's merchant and mode"),
    (409, "Conflict", "the state forbids it (the code says why), a reused `X-Nonce`, or an `Idempotency-Key` still in flight"),
    (413, "PayloadTooLarge", "the body is over `http.body_limit_bytes`"),
    (415, "UnsupportedMediaType", "the body is not `application/json`"),
    (422, "Unprocessable", "the body is well-formed but not acceptable; the code says why"),
    (429, "RateLimited", "too many requests, or too many failed authentications from this address; see `Retry-After`"),
    (500, "InternalError", "our fault; the details are in the daemon's log under the request id"),
    (503, "Unavailable", "the request outlived `http.request_timeout_secs`, or ingest is saturated; retry after `Retry-After`"),
];

/// Adds to every operation the error answers that the shared middleware and extractors can
/// give, gives each path id its shape, and makes operation ids unique.
struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (status, name, description) in SHARED_ERRORS {
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorEnvelope"))),
            );
            if matches!(status, 429 | 503) {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::Integer))
                        .description(Some("seconds to wait before retrying"))
                        .build(),
                );
            }
            components
                .responses
                .insert(name.to_owned(), RefOr::T(response.build()));
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                add_shared_errors(operation, path);
                shape_path_ids(operation, path);
                operation.operation_id = Some(operation_id(method, path));
            }
        }
    }
}

/// The operations of a path item with their methods.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("post", item.post.as_mut()),
        ("put", item.put.as_mut()),
        ("patch", item.patch.as_mut()),
        ("delete", item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|operation| (method, operation)))
}

/// Which shared errors an operation can answer, from what it takes: every operation can time
/// out or fail; an authenticated one can be refused or rate limited; one with a body can be
/// too large, of the wrong type or unacceptable; one with parameters can get them wrong.
fn add_shared_errors(operation: &mut Operation, path: &str) {
    let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = operation.request_body.is_some();
    let has_params = operation
        .parameters
        .as_ref()
        .is_some_and(|params| !params.is_empty());
    let has_path_id = path.contains('{');
    for (status, name, _) in SHARED_ERRORS {
        let applies = match status {
            401 | 403 | 409 | 429 => authenticated,
            400 => authenticated || has_params || has_body,
            404 => has_path_id,
            413 | 415 | 422 => has_body,
            _ => true,
        };
        if applies {
            operation
                .responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
        }
    }
}

/// The id prefix of the objects under a path (`/v1/api-keys/{id}` takes `key_…`).
fn id_prefix(path: &str) -> Option<&'static str> {
    let resource = path.strip_prefix("/v1/")?.split('/').next()?;
    Some(match resource {
        "merchants" => MerchantId::PREFIX,
        "api-keys" => ApiKeyId::PREFIX,
        "endpoints" => EndpointId::PREFIX,
        "events" => EventId::PREFIX,
        "deliveries" => DeliveryId::PREFIX,
        _ => return None,
    })
}

/// Path ids are typed: the prefix of their kind and 26 base32 characters (either case). With
/// the shape in the document, a client learns that a `key_…` where an `ep_…` belongs is
/// refused before any lookup.
fn shape_path_ids(operation: &mut Operation, path: &str) {
    let Some(prefix) = id_prefix(path) else {
        return;
    };
    for parameter in operation.parameters.iter_mut().flatten() {
        if parameter.parameter_in == ParameterIn::Path && parameter.name == "id" {
            parameter.required = Required::True;
            parameter.schema = Some(RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!(
                        "^{prefix}[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{{25}}$"
                    )))
                    .build(),
            )));
        }
    }
}

/// A unique, readable operation id from the method and path: `POST /v1/api-keys/{id}/roll`
/// becomes `post_api_keys_id_roll`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for segment in path
        .trim_start_matches("/v1")
        .split('/')
        .filter(|s| !s.is_empty())
    {
        id.push('_');
        id.extend(
            segment
                .trim_matches(|c| c == '{' || c == '}')
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;

    use super::*;

    fn document_json() -> Value {
        serde_json::to_value(document()).expect("the document serialises")
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut all = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                all.push((method.clone(), path.clone(), operation.clone()));
            }
        }
        all
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document_json();
        let mut seen = HashSet::new();
        for (method, path, operation) in operations(&doc) {
            let id = operation["operationId"].as_str().expect("an operation id");
            assert!(seen.insert(id.to_owned()), "{method} {path}: {id} repeats");
        }
        assert_eq!(
            operation_id("post", "/v1/api-keys/{id}/roll"),
            "post_api_keys_id_roll"
        );
    }

    #[test]
    fn every_operation_lists_the_errors_the_shared_layers_give() {
        let doc = document_json();
        for (method, path, operation) in operations(&doc) {
            let responses = operation["responses"].as_object().expect("responses");
            let has = |status: &str| responses.contains_key(status);
            let context = format!("{method} {path}");
            assert!(has("500") && has("503"), "{context}: 500/503");
            if operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
            {
                for status in ["400", "401", "403", "409", "429"] {
                    assert!(has(status), "{context}: {status}");
                }
            }
            if operation.get("requestBody").is_some() {
                for status in ["413", "415", "422"] {
                    assert!(has(status), "{context}: {status}");
                }
            }
            if path.contains("{id}") {
                assert!(has("404"), "{context}: 404");
            }
        }
        // The shared answers are real components in the envelope.
        let rate_limited = &doc["components"]["responses"]["RateLimited"];
        assert_eq!(
            rate_limited["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorEnvelope"
        );
        assert!(rate_limited["headers"]["Retry-After"].is_object());
    }

    #[test]
    fn path_ids_carry_the_shape_of_their_kind() {
        let doc = document_json();
        let pattern = |path: &str| {
            doc["paths"][path]["get"]["parameters"]
                .as_array()
                .and_then(|params| params.iter().find(|p| p["name"] == "id"))
                .map(|p| {
                    p["schema"]["pattern"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .unwrap_or_default()
        };
        for (path, id, other) in [
            (
                "/v1/api-keys/{id}",
                ApiKeyId::new().to_string(),
                EndpointId::new().to_string(),
            ),
            (
                "/v1/endpoints/{id}",
                EndpointId::new().to_string(),
                ApiKeyId::new().to_string(),
            ),
            (
                "/v1/deliveries/{id}",
                DeliveryId::new().to_string(),
                EventId::new().to_string(),
            ),
            (
                "/v1/events/{id}",
                EventId::new().to_string(),
                DeliveryId::new().to_string(),
            ),
            (
                "/v1/merchants/{id}",
                MerchantId::new().to_string(),
                ApiKeyId::new().to_string(),
            ),
        ] {
            let pattern = pattern(path);
            assert!(
                matches_id_pattern(&pattern, &id),
                "{path}: {pattern} refuses {id}"
            );
            assert!(
                matches_id_pattern(&pattern, &id.to_lowercase()),
                "{path}: {pattern} refuses the lowercase {id}"
            );
            assert!(
                !matches_id_pattern(&pattern, &other),
                "{path}: {pattern} takes {other}"
            );
        }
    }

    fn matches_id_pattern(pattern: &str, id: &str) -> bool {
        regex::Regex::new(pattern)
            .expect("a valid pattern")
            .is_match(id)
    }
}
