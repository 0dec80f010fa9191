//! What every operation shares, added once rather than on each handler: the error answers
//! the middleware and the extractors give, the shape of path ids, and unique operation ids.

use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{
    Content, HeaderBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
};
use utoipa::Modify;

use super::patterns::id_pattern;
use crate::ids::{ApiKeyId, AuditId, DeliveryId, EndpointId, EventId, MerchantId};

/// API keys have no OpenAPI scopes (a missing scope is a 403 the message names).
const NO_SCOPES: [&str; 0] = [];

/// The error answers shared by operations, as `(status, component name, description)`.
pub(super) const SHARED_ERRORS: [(u16, &str, &str); 11] = [
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
    (503, "Unavailable", "the request outlived `http.request_timeout_secs`, ingest is saturated (`ingest_saturated`), or the database cannot be used right now (`database_unavailable`: unreachable; `disk_full`; `database_read_only`); retry after `Retry-After`"),
];

/// Marks every `/v1` operation as authenticated (the router puts every `/v1` route behind
/// authentication, so handlers do not repeat it), adds to every operation the error answers
/// that the shared middleware and extractors can give, gives each path id its shape, and
/// makes operation ids unique.
pub(super) struct SharedResponses;

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
                if path.starts_with("/v1/") {
                    operation.security = Some(vec![
                        SecurityRequirement::new("bearer", NO_SCOPES),
                        SecurityRequirement::new("api_key", NO_SCOPES),
                    ]);
                }
                add_shared_errors(operation, path);
                shape_path_ids(operation, path);
                operation.operation_id = Some(operation_id(method, path));
            }
        }
    }
}

/// The operations of a path item with their methods.
pub(super) fn operations(
    item: &mut PathItem,
) -> impl Iterator<Item = (&'static str, &mut Operation)> {
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
pub(super) fn add_shared_errors(operation: &mut Operation, path: &str) {
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
pub(super) fn id_prefix(path: &str) -> Option<&'static str> {
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
pub(super) fn shape_path_ids(operation: &mut Operation, path: &str) {
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
pub(super) fn operation_id(method: &str, path: &str) -> String {
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
