//! The document's tests: it lists exactly the routed operations, every operation has the
//! shared answers and a unique id, every bound lands, and every pattern says what the
//! validation accepts.

use std::collections::HashSet;

use serde_json::{json, Value};
use utoipa::OpenApi;

use super::bounds::state_bounds;
use super::patterns::{
    header_name_pattern, name_pattern, reserved_header_patterns, HEADER_TOKEN, NAME_BLANK,
};
use super::shared::operation_id;
use super::{document, ApiDoc};
use crate::api::api_keys::MAX_ROLL_OVERLAP_SECS;
use crate::api::endpoints::{MAX_IN_FLIGHT_RANGE, URL_PATTERN};
use crate::api::pagination::LIMIT_RANGE;
use crate::api::signing_secret::GRACE_SECS_RANGE;
use crate::ids::{ApiKeyId, DeliveryId, EndpointId, EventId, MerchantId};

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
    let source = include_str!("../mod.rs");
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
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("api/mod.rs") {
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
