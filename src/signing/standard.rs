//! The [Standard Webhooks](https://www.standardwebhooks.com/) scheme: `webhook-id`,
//! `webhook-timestamp` and `webhook-signature`.
//!
//! Unlike `bolt`, the signature covers the id and the timestamp, so receivers can reject
//! replays; that is why the timestamp must be the send time of *this* attempt (a retry gets a
//! fresh one) while the id stays the event's, identical on every retry, for deduplication.
//! During a rotation both signatures travel in the one header, active first, as the spec's
//! space-separated list; receivers accept if any entry matches.

use super::{SigningKeys, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use crate::verify::standard_signature;

/// The `webhook-signature` value: `v1,<base64>` for the active key, then, space-separated, for
/// the pending key if a rotation is in progress.
pub fn signature_value(
    keys: &SigningKeys<'_>,
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut value = standard_signature(keys.active, webhook_id, timestamp, body);
    if let Some(pending) = keys.pending {
        value.push(' ');
        value.push_str(&standard_signature(pending, webhook_id, timestamp, body));
    }
    value
}

/// The three Standard Webhooks headers for one delivery attempt, in the order id, timestamp,
/// signature.
pub fn headers(
    keys: &SigningKeys<'_>,
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        (WEBHOOK_ID, webhook_id.to_owned()),
        (WEBHOOK_TIMESTAMP, timestamp.to_string()),
        (
            WEBHOOK_SIGNATURE,
            signature_value(keys, webhook_id, timestamp, body),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_vectors::{reference_vector, standard_cases};
    use base64::Engine as _;

    #[test]
    fn headers_match_every_vector_with_and_without_rotation() {
        for c in standard_cases() {
            let (id, ts) = (c.webhook_id.as_str(), c.webhook_timestamp);
            let active = c.active_secret.as_bytes();
            let pending = Some(c.pending_secret.as_bytes());
            for (pending, signature) in [
                (None, &c.signature_active_only),
                (pending, &c.signature_during_rotation),
            ] {
                let keys = SigningKeys { active, pending };
                let expected = vec![
                    (WEBHOOK_ID, id.to_owned()),
                    (WEBHOOK_TIMESTAMP, ts.to_string()),
                    (WEBHOOK_SIGNATURE, signature.clone()),
                ];
                assert_eq!(headers(&keys, id, ts, &c.body), expected, "{}", c.name);
            }
        }
    }

    #[test]
    fn reference_vector_signature_is_reproduced() {
        let r = reference_vector();
        let encoded = r.secret.strip_prefix("whsec_").expect("whsec secret");
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64 key");
        let keys = SigningKeys {
            active: &key,
            pending: None,
        };
        let value = signature_value(&keys, &r.webhook_id, r.webhook_timestamp, &r.body);
        assert_eq!(value, r.signature);
    }
}
