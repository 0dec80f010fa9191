//! The shared vectors (`tests/vectors/*.json`), parsed once for the verifier's and the signer's
//! tests (`crate::signing`). Test-only; uses `serde_json` from the dev-dependencies.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;

pub(crate) const BOLT_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/bolt-signatures.json"
));
pub(crate) const STANDARD_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/standard-webhooks.json"
));

/// One case of `bolt-signatures.json`; headers keep the file's order.
pub(crate) struct BoltCase {
    pub name: String,
    pub body: Vec<u8>,
    pub active_secret: String,
    pub pending_secret: String,
    pub headers_active_only: Vec<(String, String)>,
    pub headers_during_rotation: Vec<(String, String)>,
}

/// One case of `standard-webhooks.json`.
pub(crate) struct StandardCase {
    pub name: String,
    pub body: Vec<u8>,
    pub webhook_id: String,
    pub webhook_timestamp: i64,
    pub active_secret: String,
    pub active_secret_whsec: String,
    pub pending_secret: String,
    pub signature_active_only: String,
    pub signature_during_rotation: String,
}

/// The public Standard Webhooks vector (its secret is in `whsec_` form).
pub(crate) struct ReferenceVector {
    pub secret: String,
    pub webhook_id: String,
    pub webhook_timestamp: i64,
    pub body: Vec<u8>,
    pub signature: String,
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().expect(field).to_owned()
}

fn body(value: &Value) -> Vec<u8> {
    BASE64
        .decode(value["body_base64"].as_str().expect("body_base64"))
        .expect("body")
}

fn headers(value: &Value, field: &str) -> Vec<(String, String)> {
    let map = value[field].as_object().expect(field);
    map.iter()
        .map(|(name, v)| (name.clone(), v.as_str().expect("header").to_owned()))
        .collect()
}

fn cases(json: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(json).expect("vector file is JSON");
    let cases = doc["cases"].as_array().expect("cases").clone();
    assert!(!cases.is_empty());
    cases
}

pub(crate) fn bolt_cases() -> Vec<BoltCase> {
    cases(BOLT_JSON)
        .iter()
        .map(|c| BoltCase {
            name: text(c, "name"),
            body: body(c),
            active_secret: text(c, "active_secret"),
            pending_secret: text(c, "pending_secret"),
            headers_active_only: headers(c, "headers_active_only"),
            headers_during_rotation: headers(c, "headers_during_rotation"),
        })
        .collect()
}

pub(crate) fn standard_cases() -> Vec<StandardCase> {
    cases(STANDARD_JSON)
        .iter()
        .map(|c| StandardCase {
            name: text(c, "name"),
            body: body(c),
            webhook_id: text(c, "webhook_id"),
            webhook_timestamp: c["webhook_timestamp"].as_i64().expect("timestamp"),
            active_secret: text(c, "active_secret"),
            active_secret_whsec: text(c, "active_secret_whsec"),
            pending_secret: text(c, "pending_secret"),
            signature_active_only: text(c, "webhook_signature_active_only"),
            signature_during_rotation: text(c, "webhook_signature_during_rotation"),
        })
        .collect()
}

pub(crate) fn reference_vector() -> ReferenceVector {
    let doc: Value = serde_json::from_str(STANDARD_JSON).expect("vector file is JSON");
    let r = &doc["reference_vector"];
    ReferenceVector {
        secret: text(r, "secret"),
        webhook_id: text(r, "webhook_id"),
        webhook_timestamp: r["webhook_timestamp"].as_i64().expect("timestamp"),
        body: body(r),
        signature: text(r, "webhook_signature"),
    }
}
