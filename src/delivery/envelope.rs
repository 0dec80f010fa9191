//! The event envelope every delivery carries, serialised once at ingest:
//! `{"id":"evt_…","object":"event","type":"…","created_at":"…","livemode":…,"data":<payload>}`.

use serde::Serialize;
use serde_json::value::RawValue;

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
    data: &'a RawValue,
}

/// The exact bytes that will be signed and sent for this event, on every attempt. `data` is
/// embedded as the caller sent it (key order and number formatting kept), never re-serialised.
pub fn envelope_bytes(
    id: EventId,
    event_type: &str,
    created_at: Timestamp,
    livemode: bool,
    data: &RawValue,
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
            &serde_json::value::to_raw_value(&serde_json::json!({"amount": 1299})).unwrap(),
        );
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["id"], id.to_string());
        assert_eq!(value["object"], "event");
        assert_eq!(value["type"], "order.created");
        assert_eq!(value["livemode"], false);
        assert_eq!(value["data"]["amount"], 1299);
        assert!(value["created_at"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn the_payload_is_embedded_byte_for_byte() {
        let raw = RawValue::from_string(r#"{"z":1,"a":1.50,"m":[3,2,1]}"#.to_owned()).unwrap();
        let bytes = envelope_bytes(EventId::new(), "t", chrono::Utc::now(), true, &raw);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.ends_with(r#""data":{"z":1,"a":1.50,"m":[3,2,1]}}"#),
            "{text}"
        );
    }
}
