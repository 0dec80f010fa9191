//! The `bolt` scheme: `X-Bolt-Hmac-Sha256`, plus `X-Bolt-Hmac-Sha256-Pending` during a rotation.
//!
//! Two separate headers (rather than a list in one) is what Bolt receivers already parse: one
//! that only knows the active secret keeps reading the header it always read, while one that
//! has been given the new secret can check the pending header before the rotation completes.

use super::{SigningKeys, BOLT_SIGNATURE, BOLT_SIGNATURE_PENDING};
use crate::verify::bolt_signature;

/// The Bolt signature headers for `body`: the active signature, then the pending one if a
/// rotation is in progress. Values are padded standard base64 of HMAC-SHA256(key, body).
pub fn headers(keys: &SigningKeys<'_>, body: &[u8]) -> Vec<(&'static str, String)> {
    let mut headers = vec![(BOLT_SIGNATURE, bolt_signature(keys.active, body))];
    if let Some(pending) = keys.pending {
        headers.push((BOLT_SIGNATURE_PENDING, bolt_signature(pending, body)));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_vectors::bolt_cases;

    fn owned(headers: Vec<(&'static str, String)>) -> Vec<(String, String)> {
        headers
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    }

    #[test]
    fn active_only_headers_match_every_vector() {
        for c in bolt_cases() {
            let keys = SigningKeys {
                active: c.active_secret.as_bytes(),
                pending: None,
            };
            assert_eq!(
                owned(headers(&keys, &c.body)),
                c.headers_active_only,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn rotation_headers_match_every_vector() {
        for c in bolt_cases() {
            let keys = SigningKeys {
                active: c.active_secret.as_bytes(),
                pending: Some(c.pending_secret.as_bytes()),
            };
            assert_eq!(
                owned(headers(&keys, &c.body)),
                c.headers_during_rotation,
                "{}",
                c.name
            );
        }
    }
}
