//! Typed, prefixed identifiers (`mch_…`, `key_…`, `sec_…`, …).
//!
//! Every id is a UUIDv7 rendered as 26 Crockford base32 characters behind a kind prefix, so
//! ids sort by creation time as plain strings, and an id of the wrong kind (a `key_` where a
//! `mch_` is expected) is refused while parsing, before any database lookup.
//!
//! Parsing accepts the body in either case; [`Display`](fmt::Display) always writes the
//! canonical form (upper case), which is the form stored in the database. So anything that
//! reaches SQL, an id or a list [`Cursor`], goes through a parsed id and is canonical: a
//! lowercase id finds its row, and a lowercase cursor gives the same page as the canonical one.
//!
//! Bottom layer (plain types): imports nothing from the crate.

use std::fmt;
use std::str::FromStr;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ENCODED_LEN: usize = 26;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected an id starting with `{0}`")]
    WrongPrefix(&'static str),
    #[error("malformed id")]
    Malformed,
}

fn encode(value: u128) -> String {
    let mut out = [0u8; ENCODED_LEN];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (ENCODED_LEN - 1 - i);
        *slot = ALPHABET[((value >> shift) & 0x1f) as usize];
    }
    out.iter().map(|&b| b as char).collect()
}

fn decode(text: &str) -> Option<u128> {
    if text.len() != ENCODED_LEN {
        return None;
    }
    let mut value: u128 = 0;
    for (i, byte) in text.bytes().enumerate() {
        let digit = ALPHABET
            .iter()
            .position(|&a| a == byte.to_ascii_uppercase())? as u128;
        // 26 * 5 = 130 bits: the first character may only carry 3 bits.
        if i == 0 && digit > 7 {
            return None;
        }
        value = (value << 5) | digit;
    }
    Some(value)
}

/// What every typed id offers, so code can take "an id of some kind" (list cursors do).
pub trait TypedId: Copy + fmt::Display + FromStr<Err = IdError> {
    /// The prefix every id of this kind carries, e.g. `evt_`.
    const PREFIX: &'static str;
    /// What it names, for messages: `event`, `API key`, …
    const KIND: &'static str;
}

/// A list cursor (`starting_after`): the canonical text of a parsed id, exactly as stored, so
/// stores bind it as it is. Only [`Cursor::of`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    /// The cursor after `id`.
    pub fn of(id: impl TypedId) -> Self {
        Self(id.to_string())
    }

    /// The canonical id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Cursor {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u128);

        impl $name {
            /// The prefix every id of this kind carries.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id: UUIDv7, so ids of one kind sort by creation time.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7().as_u128())
            }

            /// The smallest id a [`new`](Self::new) could make at `millis` (since the epoch):
            /// every id made earlier sorts before it (a scan bound; no row has this id).
            pub fn first_at(millis: i64) -> Self {
                Self((millis.max(0) as u128 & 0xFFFF_FFFF_FFFF) << 80)
            }
        }

        impl TypedId for $name {
            const PREFIX: &'static str = $prefix;
            const KIND: &'static str = $kind;
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                let body = s.strip_prefix($prefix).ok_or(IdError::WrongPrefix($prefix))?;
                decode(body).map(Self).ok_or(IdError::Malformed)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// A merchant: the tenant that owns keys, secrets, endpoints and events.
    MerchantId,
    "mch_",
    "merchant"
);
typed_id!(
    /// An API key (merchant or operator).
    ApiKeyId,
    "key_",
    "API key"
);
typed_id!(
    /// One signing secret (active, pending or previous).
    SecretId,
    "sec_",
    "signing secret"
);
typed_id!(
    /// A webhook endpoint.
    EndpointId,
    "ep_",
    "endpoint"
);
typed_id!(
    /// An ingested event.
    EventId,
    "evt_",
    "event"
);
typed_id!(
    /// One delivery of one event to one endpoint (stable across retries).
    DeliveryId,
    "dlv_",
    "delivery"
);
typed_id!(
    /// One recorded attempt of a delivery.
    AttemptId,
    "att_",
    "delivery attempt"
);
typed_id!(
    /// An audit-log entry.
    AuditId,
    "aud_",
    "audit event"
);
typed_id!(
    /// One HTTP request, echoed in `X-Request-Id` and in error bodies.
    RequestId,
    "req_",
    "request"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_sorts_after_the_first_id_of_its_millisecond_and_before_the_next() {
        let now = || {
            let since = std::time::UNIX_EPOCH.elapsed().unwrap();
            since.as_millis() as i64
        };
        let before = now();
        let id = DeliveryId::new();
        let after = now();
        assert!(DeliveryId::first_at(before).to_string() <= id.to_string());
        assert!(id.to_string() < DeliveryId::first_at(after + 1).to_string());
    }

    #[test]
    fn ids_round_trip_through_their_text_form() {
        let id = MerchantId::new();
        let text = id.to_string();
        assert!(text.starts_with("mch_"));
        assert_eq!(text.len(), 4 + 26);
        assert_eq!(text.parse::<MerchantId>().unwrap(), id);
    }

    #[test]
    fn either_case_parses_to_one_id_shown_in_the_canonical_form() {
        let id = EventId::new();
        let canonical = id.to_string();
        let lower = format!("evt_{}", canonical["evt_".len()..].to_ascii_lowercase());
        assert_ne!(lower, canonical);
        let parsed: EventId = lower.parse().unwrap();
        assert_eq!(parsed, id);
        assert_eq!(parsed.to_string(), canonical);
        assert_eq!(Cursor::of(parsed).as_str(), canonical);
        assert!(
            "EVT_01JD5Q3Z8X9V0W1Y2Z3A4B5C6D".parse::<EventId>().is_err(),
            "the prefix is lower case only"
        );
    }

    #[test]
    fn attempt_ids_have_the_prefix_and_length_of_every_id() {
        let text = AttemptId::new().to_string();
        assert!(text.starts_with("att_"));
        assert_eq!(text.len(), 4 + 26);
    }

    #[test]
    fn wrong_kind_is_refused() {
        let key = ApiKeyId::new().to_string();
        assert_eq!(key.parse::<MerchantId>(), Err(IdError::WrongPrefix("mch_")));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            "mch_",
            "mch_123",
            "mch_ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "mch_0000000000000000000000000U",
        ] {
            assert_eq!(bad.parse::<MerchantId>(), Err(IdError::Malformed), "{bad}");
        }
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let a = EventId::new().to_string();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = EventId::new().to_string();
        assert!(a < b);
    }
}
