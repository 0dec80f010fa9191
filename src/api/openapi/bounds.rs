//! Bounds: what the validation refuses, stated in the document from the validation's own
//! constants, so the two cannot drift apart; `tests/api/ops.rs` checks the server at each
//! documented edge. Also the document's shape-dependent additions: the guard headers, each
//! list's cursor, the changes a PATCH needs and the endpoint create schema.

use serde_json::{json, Value};

use super::patterns::{header_name_pattern, id_pattern, name_pattern, IDEMPOTENCY_KEY, NONCE};
use super::shared::id_prefix;
use crate::api::api_keys::MAX_ROLL_OVERLAP_SECS;
use crate::api::endpoints::{
    MAX_DESCRIPTION_CHARS, MAX_EVENT_TYPES, MAX_HEADERS, MAX_HEADER_VALUE_LEN, MAX_IN_FLIGHT_RANGE,
    MAX_URL_LEN, TIMEOUT_MS_RANGE, URL_PATTERN,
};
use crate::api::pagination::LIMIT_RANGE;
use crate::api::sign::MAX_WEBHOOK_ID_LEN;
use crate::api::signing_secret::GRACE_SECS_RANGE;
use crate::api::NAME_MAX_CHARS;
use crate::auth::idempotency::MAX_KEY_LEN;
use crate::auth::NONCE_DIGITS;
use crate::delivery::filter::MAX_EVENT_TYPE_LEN;
use crate::ids::{EndpointId, EventId};
use crate::keys::Scope;
use crate::signing::Scheme;

/// Where a bound goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
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
pub(super) fn bounds() -> Vec<(Target, Value)> {
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

/// Applies [`bounds`] and what depends on the document's own shape: the header parameters
/// every authenticated operation reads, the cursor of each list, the changes a PATCH needs,
/// and a create schema for endpoints (whose `url` is required there). Returns the targets it
/// could not find.
pub(super) fn state_bounds(doc: &mut Value) -> Vec<String> {
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
pub(super) fn targets(doc: &mut Value, target: Target) -> Vec<&mut Value> {
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

pub(super) fn parameters(operation: &mut Value) -> impl Iterator<Item = &mut Value> {
    operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Sets each keyword on `schema`. An `enum` on a nullable value keeps `null` allowed, as the
/// server takes `null` for an absent optional field.
pub(super) fn merge(schema: &mut Value, keywords: &Value) {
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
pub(super) fn add_guard_headers(doc: &mut Value) {
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
pub(super) fn require_one_of(doc: &mut Value, schema: &str, fields: &[&str]) -> bool {
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
pub(super) fn endpoint_create_schema(doc: &mut Value) -> bool {
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
