//! The event envelope every delivery carries, serialised once at ingest:
//! `{"id":"evt_…","object":"event","type":"…","created_at":"…","livemode":…,"data":<payload>}`.

use serde::Serialize;

use crate::clock::{rfc3339, Timestamp};
use crate::ids::EventId;

#[derive(Serialize)]
struct Envelope<'a> {
    id: String,
    object: &'static str,
    #[serde(rename = "type")]
    event_type: &'a str,
    created_at: String,
    livemode: bool,
    data: &'a serde_json::Value,
}

/// The exact bytes that will be signed and sent for this event, on every attempt.
pub fn envelope_bytes(
    id: EventId,
    event_type: &str,
    created_at: Timestamp,
    livemode: bool,
    data: &serde_json::Value,
) -> Vec<u8> {
    let envelope = Envelope {
        id: id.to_string(),
        object: "event",
        event_type,
        created_at: rfc3339(created_at),
        livemode,
        data,
    };
    // Serialising a struct of strings and an already-parsed JSON value cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_has_the_documented_shape() {
        let id = EventId::new();
        let bytes = envelope_bytes(
            id,
            "order.created",
            chrono::Utc::now(),
            false,
            &serde_json::json!({"amount": 1299}),
        );
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["id"], id.to_string());
        assert_eq!(value["object"], "event");
        assert_eq!(value["type"], "order.created");
        assert_eq!(value["livemode"], false);
        assert_eq!(value["data"]["amount"], 1299);
        assert!(value["created_at"].as_str().unwrap().ends_with('Z'));
    }
}
