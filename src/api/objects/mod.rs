//! The objects the API answers with, and the OpenAPI schemas of what it sends: every
//! `ToSchema` of an answer lives here (the request bodies and query parameters stay beside
//! their handlers). Each object is built from the plain records of [`crate::records`] in one
//! place, `convert.rs`; the records and the `keys` types carry no OpenAPI derive of their own,
//! and the enums they send as they are get their schemas from [`schema`].
//!
//! May use the plain types (`records`, `keys`, `ids`, `clock`, `signing`) and the keyring's
//! decrypted secrets; nothing here reads the store or the request.

mod audit;
mod convert;
mod deliveries;
mod endpoints;
mod events;
mod keys;
mod merchants;
pub mod schema;
mod secrets;
mod signing;
mod time;

pub use audit::AuditEventObject;
pub use deliveries::{AttemptObject, DeliveryObject};
pub use endpoints::{EndpointObject, PingResult, MASKED_HEADER_VALUE};
pub use events::EventObject;
pub use keys::{ApiKeyObject, DeletedApiKey, KeyStatus, RolledApiKey};
pub use merchants::{CreatedMerchantObject, MerchantObject};
pub use secrets::{RevealedSecret, RevealedSecrets, ScheduleView, SecretView, SigningSecretStatus};
pub use signing::Signature;
pub use time::Time;
