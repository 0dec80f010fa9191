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

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::auth::idempotency::MAX_KEY_LEN;
use crate::auth::NONCE_DIGITS;
use crate::delivery::filter::MAX_EVENT_TYPE_LEN;
use crate::delivery::sender::{RESERVED_HEADERS, RESERVED_HEADER_PREFIXES};
use crate::ids::{ApiKeyId, AuditId, DeliveryId, EndpointId, EventId, MerchantId};
use crate::keys::Scope;
use crate::signing::Scheme;

use super::api_keys::MAX_ROLL_OVERLAP_SECS;
use super::endpoints::{
    MAX_DESCRIPTION_CHARS, MAX_EVENT_TYPES, MAX_HEADERS, MAX_HEADER_VALUE_LEN, MAX_IN_FLIGHT_RANGE,
    MAX_URL_LEN, TIMEOUT_MS_RANGE, URL_PATTERN,
};
use super::pagination::LIMIT_RANGE;
use super::sign::MAX_WEBHOOK_ID_LEN;
use super::signing_secret::GRACE_SECS_RANGE;
use super::{
    api_keys, audit_events, deliveries, endpoints, events, merchants, ops, pagination, sign,
    signing_secret, ErrorBody, ErrorEnvelope, ErrorType, NAME_MAX_CHARS,
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
        "audit-events" => AuditId::PREFIX,
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
                    .pattern(Some(id_pattern(prefix)))
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

/// The document served at `/openapi.json`: utoipa's, with what the server refuses stated on
/// every value ([`state_bounds`]). Built once.
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

// ---------------------------------------------------------------------------------------------
// Bounds: what the validation refuses, stated in the document from the validation's constants.
// ---------------------------------------------------------------------------------------------

/// Where a bound goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A property of a component schema.
    Property(&'static str, &'static str),
    /// The items of an array property of a component schema.
    Items(&'static str, &'static str),
    /// The query parameter of this name, on every operation that has it.
    Query(&'static str),
    /// The header parameter of this name, on every operation that has it.
    Header(&'static str),
}

use Target::{Header, Items, Property, Query};

/// Every bound, as JSON Schema keywords merged into the schema of its target. Each is computed
/// from the constant (or the predicate's building blocks) the validation itself uses, so the
/// two cannot drift apart; `tests/api/ops.rs` checks the server at each documented edge.
fn bounds() -> Vec<(Target, Value)> {
    let name = json!({ "minLength": 1, "maxLength": NAME_MAX_CHARS, "pattern": name_pattern() });
    let event_type = |segment: &str| {
        json!({
            "minLength": 1,
            "maxLength": MAX_EVENT_TYPE_LEN,
            "pattern": format!("^{segment}(\\.{segment})*$"),
        })
    };
    let range = |start: i64, end: i64| json!({ "minimum": start, "maximum": end });
    let printable = |max: usize| json!({ "pattern": format!("^[!-~]{{1,{max}}}$") });
    vec![
        (
            Query("limit"),
            range(
                LIMIT_RANGE.start().to_owned().into(),
                LIMIT_RANGE.end().to_owned().into(),
            ),
        ),
        (Property("CreateMerchant", "name"), name.clone()),
        (Property("UpdateMerchant", "name"), name.clone()),
        (Property("CreateApiKey", "name"), name.clone()),
        (Property("UpdateApiKey", "name"), name),
        (Property("CreateApiKey", "scopes"), json!({ "minItems": 1 })),
        (
            Items("CreateApiKey", "scopes"),
            json!({ "enum": Scope::ALL.map(Scope::as_str) }),
        ),
        (
            Property("RollApiKey", "expires_in"),
            range(0, MAX_ROLL_OVERLAP_SECS),
        ),
        (
            Property("PutSchedule", "grace"),
            range(*GRACE_SECS_RANGE.start(), *GRACE_SECS_RANGE.end()),
        ),
        (
            Property("EndpointBody", "url"),
            json!({ "maxLength": MAX_URL_LEN, "pattern": URL_PATTERN }),
        ),
        (
            Property("EndpointBody", "description"),
            json!({ "maxLength": MAX_DESCRIPTION_CHARS }),
        ),
        (
            Property("EndpointBody", "event_types"),
            json!({ "maxItems": MAX_EVENT_TYPES }),
        ),
        (
            Items("EndpointBody", "event_types"),
            event_type(r"(\*|[a-z0-9_-]+)"),
        ),
        (
            Property("EndpointBody", "scheme"),
            json!({ "enum": Scheme::ALL.map(Scheme::as_str) }),
        ),
        (
            Property("EndpointBody", "max_in_flight"),
            range(
                (*MAX_IN_FLIGHT_RANGE.start()).into(),
                (*MAX_IN_FLIGHT_RANGE.end()).into(),
            ),
        ),
        (
            Property("EndpointBody", "timeout_ms"),
            range(
                (*TIMEOUT_MS_RANGE.start()).into(),
                (*TIMEOUT_MS_RANGE.end()).into(),
            ),
        ),
        (
            Property("EndpointBody", "headers"),
            json!({
                "maxProperties": MAX_HEADERS,
                "propertyNames": { "type": "string", "pattern": header_name_pattern() },
                "additionalProperties": {
                    "type": "string",
                    "maxLength": MAX_HEADER_VALUE_LEN,
                    "pattern": "^[\t -~]*$",
                },
            }),
        ),
        (Property("ReplayBody", "status"), json!({ "minItems": 1 })),
        (Property("CreateEvent", "type"), event_type("[a-z0-9_-]+")),
        (
            Query("scheme"),
            json!({ "enum": Scheme::ALL.map(Scheme::as_str) }),
        ),
        (Query("id"), printable(MAX_WEBHOOK_ID_LEN)),
        (
            Query("endpoint_id"),
            json!({ "pattern": id_pattern(EndpointId::PREFIX) }),
        ),
        (
            Query("event_id"),
            json!({ "pattern": id_pattern(EventId::PREFIX) }),
        ),
        (Header(IDEMPOTENCY_KEY), printable(MAX_KEY_LEN)),
        (
            Header(NONCE),
            json!({
                "pattern": format!("^[0-9]{{{},{}}}$", NONCE_DIGITS.start(), NONCE_DIGITS.end()),
            }),
        ),
    ]
}

const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
const NONCE: &str = "X-Nonce";

/// Characters a name may hold: anything but control characters (`char::is_control`: the Cc
/// category). Spelled out, as `\p{Cc}` means nothing to most JSON Schema validators.
const NAME_CHAR: &str = r"[^\u0000-\u001f\u007f-\u009f]";

/// Characters a name may not consist of only: the whitespace `str::trim` removes that is not
/// already a control character.
const NAME_BLANK: &str = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// What [`super::valid_name`] accepts: no control character, and at least one character that
/// is not blank (the length is `maxLength`).
fn name_pattern() -> String {
    format!(r"^{NAME_CHAR}*[^\u0000-\u001f\u007f-\u009f{NAME_BLANK}]{NAME_CHAR}*$")
}

/// The characters of an HTTP header name (a token, RFC 9110 §5.6.2).
const HEADER_TOKEN: &str = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";

/// A header name endpoints may set: an HTTP token that is none of the daemon's own headers
/// (in any case), as [`is_reserved_header`] decides.
fn header_name_pattern() -> String {
    let (exact, prefixes) = reserved_header_patterns();
    format!("^(?!({exact})$)(?!{prefixes}){HEADER_TOKEN}$")
}

/// The reserved names and the reserved prefixes, each as an alternation matching any case.
fn reserved_header_patterns() -> (String, String) {
    let any_case = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                } else {
                    regex_escape(c)
                }
            })
            .collect()
    };
    let join = |names: &[&str]| {
        names
            .iter()
            .map(|n| any_case(n))
            .collect::<Vec<_>>()
            .join("|")
    };
    (join(&RESERVED_HEADERS), join(&RESERVED_HEADER_PREFIXES))
}

fn regex_escape(c: char) -> String {
    if "\\^$.|?*+()[]{}-".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// The shape of an id of one kind: its prefix and 26 base32 characters (either case).
fn id_pattern(prefix: &str) -> String {
    format!("^{prefix}[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{{25}}$")
}

/// Applies [`bounds`] and what depends on the document's own shape: the header parameters
/// every authenticated operation reads, the cursor of each list, the changes a PATCH needs,
/// and a create schema for endpoints (whose `url` is required there). Returns the targets it
/// could not find.
fn state_bounds(doc: &mut Value) -> Vec<String> {
    add_guard_headers(doc);
    let mut missed = Vec::new();
    for (target, keywords) in bounds() {
        let mut found = false;
        for schema in targets(doc, target) {
            found = true;
            merge(schema, &keywords);
        }
        if !found {
            missed.push(format!("{target:?}"));
        }
    }
    for (path, item) in doc["paths"].as_object_mut().into_iter().flatten() {
        let Some(prefix) = id_prefix(path) else {
            continue;
        };
        if let Some(get) = item.get_mut("get") {
            for parameter in parameters(get) {
                if parameter["name"] == "starting_after" {
                    merge(
                        &mut parameter["schema"],
                        &json!({ "pattern": id_pattern(prefix) }),
                    );
                }
            }
        }
    }
    for (schema, fields) in [
        ("UpdateApiKey", ["name", "active"]),
        ("UpdateMerchant", ["name", "disabled"]),
    ] {
        if !require_one_of(doc, schema, &fields) {
            missed.push(format!("{schema}: {fields:?}"));
        }
    }
    if !endpoint_create_schema(doc) {
        missed.push("CreateEndpoint".to_owned());
    }
    missed
}

/// The schemas a target names.
fn targets(doc: &mut Value, target: Target) -> Vec<&mut Value> {
    match target {
        Property(schema, property) => doc["components"]["schemas"]
            .get_mut(schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(property))
            .into_iter()
            .collect(),
        Items(schema, property) => doc["components"]["schemas"]
            .get_mut(schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(property))
            .and_then(|p| p.get_mut("items"))
            .into_iter()
            .collect(),
        Query(name) | Header(name) => doc["paths"]
            .as_object_mut()
            .into_iter()
            .flat_map(|paths| paths.values_mut())
            .flat_map(|item| {
                item.as_object_mut()
                    .into_iter()
                    .flat_map(|i| i.values_mut())
            })
            .flat_map(parameters)
            .filter(|parameter| {
                parameter["name"] == name
                    && parameter["in"]
                        == if matches!(target, Query(_)) {
                            "query"
                        } else {
                            "header"
                        }
            })
            .filter_map(|parameter| parameter.get_mut("schema"))
            .collect(),
    }
}

fn parameters(operation: &mut Value) -> impl Iterator<Item = &mut Value> {
    operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Sets each keyword on `schema`. An `enum` on a nullable value keeps `null` allowed, as the
/// server takes `null` for an absent optional field.
fn merge(schema: &mut Value, keywords: &Value) {
    let nullable = schema["type"]
        .as_array()
        .is_some_and(|types| types.iter().any(|t| t == "null"));
    let Some(schema) = schema.as_object_mut() else {
        return;
    };
    for (key, value) in keywords.as_object().into_iter().flatten() {
        let mut value = value.clone();
        if key == "enum" && nullable {
            if let Some(values) = value.as_array_mut() {
                values.push(Value::Null);
            }
        }
        schema.insert(key.clone(), value);
    }
}

/// The headers the shared middleware reads on every authenticated operation: `X-Nonce`
/// (replay protection, any method) and, on every POST, `Idempotency-Key`.
fn add_guard_headers(doc: &mut Value) {
    for item in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for (method, operation) in item.as_object_mut().into_iter().flatten() {
            if operation["security"]
                .as_array()
                .is_none_or(|s| s.is_empty())
            {
                continue;
            }
            let mut headers = vec![(
                NONCE,
                "12 to 16 digits, never reused with this key within 24 hours (409 `nonce_reused`); required on changes when the daemon sets `auth.require_nonce`",
            )];
            if method == "post" {
                headers.push((
                    IDEMPOTENCY_KEY,
                    "a unique key per request: the first answer is kept for 24 hours and replayed (with `Idempotent-Replayed: true`) to a retry with the same key and body; another body gets 422 `idempotency_key_reused`, a retry while the first is running 409",
                ));
            }
            let parameters = operation
                .as_object_mut()
                .map(|o| o.entry("parameters").or_insert_with(|| json!([])));
            let Some(parameters) = parameters.and_then(Value::as_array_mut) else {
                continue;
            };
            for (name, description) in headers {
                parameters.retain(|p| !(p["in"] == "header" && p["name"] == name));
                parameters.push(json!({
                    "name": name, "in": "header", "required": false,
                    "description": description, "schema": { "type": "string" },
                }));
            }
        }
    }
}

/// A PATCH must change something: at least one of `fields` present and not `null`
/// (422 `nothing_to_update` otherwise). Each branch is the field's own schema without `null`.
fn require_one_of(doc: &mut Value, schema: &str, fields: &[&str]) -> bool {
    let Some(schema) = doc["components"]["schemas"].get_mut(schema) else {
        return false;
    };
    let mut branches = Vec::new();
    for field in fields {
        let Some(mut property) = schema["properties"].get(*field).cloned() else {
            return false;
        };
        if let Some(types) = property["type"].as_array_mut() {
            types.retain(|t| t != "null");
        }
        branches.push(json!({ "required": [field], "properties": { *field: property } }));
    }
    schema["anyOf"] = Value::Array(branches);
    true
}

/// `POST /v1/endpoints` takes the PATCH body with `url` required (and not `null`).
fn endpoint_create_schema(doc: &mut Value) -> bool {
    let Some(mut create) = doc["components"]["schemas"].get("EndpointBody").cloned() else {
        return false;
    };
    create["required"] = json!(["url"]);
    create["description"] = json!("`POST /v1/endpoints`: `url` is required.");
    if let Some(types) = create["properties"]["url"]["type"].as_array_mut() {
        types.retain(|t| t != "null");
    }
    doc["components"]["schemas"]["CreateEndpoint"] = create;
    let body = &mut doc["paths"]["/v1/endpoints"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    if body.is_null() {
        return false;
    }
    *body = json!({ "$ref": "#/components/schemas/CreateEndpoint" });
    true
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn document_json() -> Value {
        document().clone()
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

    /// Every `(method, path)` the router registers, read from `src/api/mod.rs` (the only
    /// file that calls `.route`): axum cannot list a router's routes, and the route matrices in
    /// `tests/api/matrix.rs` take theirs from this document, so the two must agree.
    fn routed() -> std::collections::BTreeSet<(String, String)> {
        let source = include_str!("mod.rs");
        let path = regex::Regex::new(r#"^\s*"([^"]+)""#).expect("regex");
        let method = regex::Regex::new(r"\b(get|post|put|patch|delete)\(").expect("regex");
        let mut routes = std::collections::BTreeSet::new();
        // Each call runs from its `.route(` to the next one, or to the end of its function.
        for call in source.split(".route(").skip(1) {
            let call = call.split("\n}").next().unwrap_or(call);
            let path = &path
                .captures(call)
                .expect("a .route call starts with its path")[1];
            let methods: Vec<_> = method.captures_iter(call).collect();
            assert!(!methods.is_empty(), "{path}: no method read");
            for m in methods {
                routes.insert((m[1].to_owned(), path.to_owned()));
            }
        }
        routes
    }

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_registers() {
        let doc = document_json();
        let documented: std::collections::BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(method, path, _)| (method, path))
            .collect();
        let routed = routed();
        assert!(routed.len() > 30, "{routed:?}");
        assert_eq!(
            routed.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "routes the router registers that the OpenAPI document does not list"
        );
        assert_eq!(
            documented.difference(&routed).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "operations the document lists that the router does not register"
        );
        // And no other file registers routes of its own.
        let registers = regex::Regex::new(r#"\.route\(\s*"/"#).expect("regex");
        let mut folders = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        let mut read = 0;
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("src/") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("api/mod.rs")
                {
                    read += 1;
                    let source = std::fs::read_to_string(&path).expect("source");
                    assert!(
                        !registers.is_match(&source),
                        "{} registers routes",
                        path.display()
                    );
                }
            }
        }
        assert!(read > 50, "read the sources ({read} files)");
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

    #[test]
    fn every_bound_lands_where_it_is_meant_to() {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(state_bounds(&mut doc), Vec::<String>::new());
        // Spot checks that the keywords come from the constants.
        let schemas = &doc["components"]["schemas"];
        let endpoint = &schemas["EndpointBody"]["properties"];
        assert_eq!(
            endpoint["max_in_flight"]["minimum"],
            *MAX_IN_FLIGHT_RANGE.start()
        );
        assert_eq!(
            endpoint["max_in_flight"]["maximum"],
            *MAX_IN_FLIGHT_RANGE.end()
        );
        assert_eq!(
            endpoint["timeout_ms"]["maximum"],
            crate::config::MAX_ENDPOINT_TIMEOUT_MS
        );
        assert_eq!(
            endpoint["scheme"]["enum"],
            json!(["bolt", "standard", "both", null])
        );
        assert_eq!(
            schemas["RollApiKey"]["properties"]["expires_in"]["maximum"],
            MAX_ROLL_OVERLAP_SECS
        );
        assert_eq!(
            schemas["PutSchedule"]["properties"]["grace"]["minimum"],
            *GRACE_SECS_RANGE.start()
        );
        assert_eq!(
            schemas["CreateEndpoint"]["required"],
            json!(["url"]),
            "POST /v1/endpoints needs a url"
        );
        let list = &doc["paths"]["/v1/events"]["get"]["parameters"];
        let limit = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(limit["schema"]["maximum"], *LIMIT_RANGE.end());
    }

    #[test]
    fn bodies_that_may_be_absent_are_not_required() {
        let doc = document_json();
        for path in [
            "/v1/signing-secret/initiate",
            "/v1/api-keys/{id}/roll",
            "/v1/endpoints/{id}/replay",
        ] {
            let body = &doc["paths"][path]["post"]["requestBody"];
            assert!(body.is_object(), "{path} documents its body");
            assert_ne!(body["required"], true, "{path}: the body is optional");
        }
        assert_eq!(
            doc["paths"]["/v1/events"]["post"]["requestBody"]["required"],
            true
        );
    }

    #[test]
    fn no_example_is_a_fixed_time() {
        // A fixed future time becomes a past one, which `complete_at` refuses.
        let text = serde_json::to_string(document()).unwrap();
        assert!(
            !regex::Regex::new(r#""example":\s*"\d{4}-\d\d-\d\dT"#)
                .unwrap()
                .is_match(&text),
            "an example time goes stale"
        );
    }

    /// Every pattern compiles both in Rust and under the rules JSON Schema validators use
    /// (ECMA 262 has no `\p{…}`, `\A` or `\z`; these are plain classes and anchors).
    #[test]
    fn patterns_compile() {
        let text = serde_json::to_string(document()).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let mut patterns = Vec::new();
        collect_patterns(&doc, &mut patterns);
        assert!(patterns.len() > 10, "{patterns:?}");
        // The regex crate has no lookaround; strip the (negative) lookaheads to compile.
        let lookahead = regex::Regex::new(r"\(\?!([^()]|\([^()]*\))*\)").unwrap();
        for pattern in patterns {
            let without_lookahead = lookahead.replace_all(&pattern, "");
            regex::Regex::new(&without_lookahead).unwrap_or_else(|err| panic!("{pattern}: {err}"));
            assert!(!pattern.contains("\\p{"), "{pattern}");
        }
    }

    fn collect_patterns(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("pattern", Value::String(pattern)) => out.push(pattern.clone()),
                        _ => collect_patterns(value, out),
                    }
                }
            }
            Value::Array(values) => values.iter().for_each(|v| collect_patterns(v, out)),
            _ => {}
        }
    }

    /// The name pattern's classes are exactly `char::is_control` and the whitespace `trim`
    /// removes, checked over every character.
    #[test]
    fn the_name_pattern_is_what_valid_name_accepts() {
        let control = regex::Regex::new("^[\\u0000-\\u001f\\u007f-\\u009f]$").unwrap();
        let blank = regex::Regex::new(&format!("^[{NAME_BLANK}]$")).unwrap();
        for c in (0..=0x10ffff_u32).filter_map(char::from_u32) {
            let text = c.to_string();
            assert_eq!(control.is_match(&text), c.is_control(), "{c:?}");
            assert_eq!(
                blank.is_match(&text),
                c.is_whitespace() && !c.is_control(),
                "{c:?}"
            );
        }
        let pattern = regex::Regex::new(&name_pattern()).unwrap();
        for (name, valid) in [
            ("CI deploys", true),
            ("  padded  ", true),
            ("\u{3000}x", true),
            ("   ", false),
            ("\u{a0}\u{2003}", false),
            ("tab\there", false),
            ("\tleading tab", false),
            ("", false),
        ] {
            assert_eq!(pattern.is_match(name), valid, "{name:?}");
            assert_eq!(super::super::valid_name(name).is_ok(), valid, "{name:?}");
        }
    }

    /// The regex crate has no lookahead, so the pattern's parts are checked as the pattern
    /// combines them: a token, not a reserved name, not starting with a reserved prefix.
    #[test]
    fn the_header_name_pattern_refuses_the_reserved_names_in_any_case() {
        let (exact, prefixes) = reserved_header_patterns();
        let token = regex::Regex::new(&format!("^{HEADER_TOKEN}$")).unwrap();
        let exact = regex::Regex::new(&format!("^({exact})$")).unwrap();
        let prefixes = regex::Regex::new(&format!("^({prefixes})")).unwrap();
        let allowed =
            |name: &str| token.is_match(name) && !exact.is_match(name) && !prefixes.is_match(name);
        for name in [
            "Content-Type",
            "HOST",
            "connection",
            "X-Hooksign-Event-Id",
            "x-BOLT-hmac-sha256",
            "Webhook-Signature",
            "Authorization",
            "X-Receiver-Token",
            "hostname",
            "x-bolt",
        ] {
            assert_eq!(
                allowed(name),
                !crate::delivery::sender::is_reserved_header(name),
                "{name}"
            );
        }
        assert!(!allowed("with space") && !allowed("") && !allowed("a:b"));
        assert!(header_name_pattern().contains(HEADER_TOKEN));
    }

    #[test]
    fn the_url_pattern_takes_only_urls_the_server_takes() {
        let pattern = regex::Regex::new(URL_PATTERN).unwrap();
        for url in [
            "https://example.com/webhooks",
            "http://a.b-c.example:8443/x?y=1&z=%20",
            "https://Example.COM",
            "HTTPS://example.com:",
            "http://a.b:065535#frag",
            "http://a.b?query",
        ] {
            assert!(pattern.is_match(url), "{url}");
            let parsed = reqwest::Url::parse(url).unwrap();
            assert!(parsed.host_str().is_some());
        }
        for url in [
            "https://10.0.0.1/",
            "https://a.1/",
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com:99999",
            "https://example.com:65536",
            " https://example.com",
            "https://example.com/a b",
            "https://a.b*",
            "http:/a.b",
            "https://a.b\\@evil.example",
        ] {
            assert!(!pattern.is_match(url), "{url}");
        }
    }

    fn matches_id_pattern(pattern: &str, id: &str) -> bool {
        regex::Regex::new(pattern)
            .expect("a valid pattern")
            .is_match(id)
    }
}
