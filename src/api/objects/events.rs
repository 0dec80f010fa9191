//! The event object.

use serde::Serialize;
use serde_json::value::RawValue;

use super::DeliveryObject;
use super::Time;
use crate::ids::EventId;

/// An event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventObject {
    /// Always `event`.
    pub object: &'static str,
    #[schema(value_type = String, example = "evt_01JD5Q3Z8X9V0W1Y2Z3A4B5C6D")]
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub livemode: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Time,
    /// The payload as delivered.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
    /// How many deliveries the event created (on create), or the deliveries (on retrieve).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<Vec<DeliveryObject>>,
}
