//! The signature headers the daemon puts on every outbound delivery (the signing contract in README.md's receiver guide).
//!
//! Signatures are computed at send time from the secrets current then, so callers pass the
//! active and (during a rotation) pending keys on every attempt rather than caching headers.
//! The HMAC itself lives in [`crate::verify`], shared with the receiver-side verifier, so a
//! delivery the daemon signs is by construction one the published verifier accepts; this module
//! only decides *which* headers a [`Scheme`] sends and in what order.

pub mod bolt;
pub mod standard;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::verify::{
    BOLT_SIGNATURE, BOLT_SIGNATURE_PENDING, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
};

/// Which signature headers an endpoint receives. Serialised (config, API) in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `X-Bolt-Hmac-Sha256` (+ `-Pending` during a rotation): the default, Bolt-compatible.
    #[default]
    Bolt,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
    /// Both header sets, for receivers migrating from one scheme to the other.
    Both,
}

impl Scheme {
    /// Every scheme, e.g. for help text and validation messages.
    pub const ALL: [Scheme; 3] = [Scheme::Bolt, Scheme::Standard, Scheme::Both];

    /// The lowercase name used in config, the API and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Bolt => "bolt",
            Scheme::Standard => "standard",
            Scheme::Both => "both",
        }
    }

    /// Whether deliveries carry the `X-Bolt-Hmac-Sha256` headers.
    pub fn signs_bolt(self) -> bool {
        matches!(self, Scheme::Bolt | Scheme::Both)
    }

    /// Whether deliveries carry the Standard Webhooks headers.
    pub fn signs_standard(self) -> bool {
        matches!(self, Scheme::Standard | Scheme::Both)
    }
}

crate::verify::scheme_names!(
    Scheme,
    /// A scheme name that is not `bolt`, `standard` or `both`.
    UnknownScheme,
    "unknown signature scheme {:?}: expected bolt, standard or both"
);

/// The HMAC keys to sign one delivery attempt with: the UTF-8 bytes of each secret's hex
/// string (the signing contract). Borrowed so decrypted secrets are not copied around; `Debug` is
/// redacted.
#[derive(Clone, Copy)]
pub struct SigningKeys<'a> {
    /// The active secret's key; always signed with.
    pub active: &'a [u8],
    /// The pending secret's key while a rotation is in progress.
    pub pending: Option<&'a [u8]>,
}

impl fmt::Debug for SigningKeys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("active", &"[redacted]")
            .field("pending", &self.pending.map(|_| "[redacted]"))
            .finish()
    }
}

/// Exactly the signature headers `scheme` puts on a delivery of `body`, in a stable order:
/// the Bolt headers (active, then pending) before the Standard Webhooks ones (id, timestamp,
/// signature). `webhook_id` and `timestamp` are only used by the Standard scheme.
///
/// Names keep the canonical spelling of the signing contract (`X-Bolt-Hmac-Sha256`); HTTP treats them
/// case-insensitively, but `http::HeaderName::from_static` needs lowercase, so parse them with
/// `HeaderName::try_from` / `from_bytes` instead.
pub fn signature_headers(
    scheme: Scheme,
    keys: &SigningKeys<'_>,
    body: &[u8],
    webhook_id: &str,
    timestamp: i64,
) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(5);
    if scheme.signs_bolt() {
        headers.extend(bolt::headers(keys, body));
    }
    if scheme.signs_standard() {
        headers.extend(standard::headers(keys, webhook_id, timestamp, body));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_vectors::{bolt_cases, standard_cases};
    use crate::verify::{MatchedHeader, Verifier};

    #[test]
    fn scheme_names_round_trip_through_str_display_and_serde() {
        for scheme in Scheme::ALL {
            assert_eq!(scheme.to_string().parse::<Scheme>(), Ok(scheme));
            let json = serde_json::to_string(&scheme).expect("serialise");
            assert_eq!(json, format!("\"{scheme}\""));
            assert_eq!(
                serde_json::from_str::<Scheme>(&json).expect("deserialise"),
                scheme
            );
        }
        assert_eq!(Scheme::default(), Scheme::Bolt);
        let err = "Bolt"
            .parse::<Scheme>()
            .expect_err("case matters, as in serde");
        assert_eq!(
            err.to_string(),
            "unknown signature scheme \"Bolt\": expected bolt, standard or both"
        );
        assert!(serde_json::from_str::<Scheme>("\"hmac\"").is_err());
    }

    #[test]
    fn signing_keys_debug_is_redacted() {
        let keys = SigningKeys {
            active: b"secret-a",
            pending: Some(b"secret-b"),
        };
        let printed = format!("{keys:?}");
        assert!(
            !printed.contains("115") && !printed.contains("secret"),
            "{printed}"
        );
    }

    #[test]
    fn both_scheme_sends_every_vector_header_in_order() {
        for (b, s) in bolt_cases().iter().zip(standard_cases()) {
            assert_eq!(
                (b.name.as_str(), b.body.as_slice()),
                (s.name.as_str(), s.body.as_slice())
            );
            let keys = SigningKeys {
                active: s.active_secret.as_bytes(),
                pending: Some(s.pending_secret.as_bytes()),
            };
            let headers = signature_headers(
                Scheme::Both,
                &keys,
                &s.body,
                &s.webhook_id,
                s.webhook_timestamp,
            );
            let mut expected: Vec<(&str, String)> = b
                .headers_during_rotation
                .iter()
                .map(|(name, value)| (name.as_str(), value.clone()))
                .collect();
            expected.push((WEBHOOK_ID, s.webhook_id.clone()));
            expected.push((WEBHOOK_TIMESTAMP, s.webhook_timestamp.to_string()));
            expected.push((WEBHOOK_SIGNATURE, s.signature_during_rotation.clone()));
            assert_eq!(headers, expected, "{}", s.name);
        }
    }

    #[test]
    fn whatever_is_signed_the_verifier_accepts() {
        let active = "3f1c2a9e8b7d6c5f4e3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";
        let pending = "a0b1c2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c7d8e9f";
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let (id, now) = ("evt_1", 1_763_942_400);
        for scheme in Scheme::ALL {
            for pending_key in [None, Some(pending.as_bytes())] {
                let keys = SigningKeys {
                    active: active.as_bytes(),
                    pending: pending_key,
                };
                let headers = signature_headers(scheme, &keys, body, id, now);
                for (index, secret) in [active, pending].into_iter().enumerate() {
                    let expect_match = index == 0 || pending_key.is_some();
                    let v = Verifier::new([secret]).expect("valid secret");
                    let bolt = v.verify_bolt(&headers, body);
                    assert_eq!(
                        bolt.is_ok(),
                        scheme.signs_bolt() && expect_match,
                        "{scheme}"
                    );
                    if let Ok(m) = bolt {
                        let header = [MatchedHeader::Bolt, MatchedHeader::BoltPending][index];
                        assert_eq!(m.header, header);
                    }
                    let standard = v.verify_standard(&headers, body, now);
                    assert_eq!(standard.is_ok(), scheme.signs_standard() && expect_match);
                }
            }
        }
    }
}
