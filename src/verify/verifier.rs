//! The [`Verifier`]: the secrets a receiver trusts, and the checks of both schemes against
//! them.
//!
//! Uses the primitives and header parsing beside it, `base64` and `subtle` (always compiled,
//! see [`crate::verify`]).

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::header::{non_blank, parse_unix_seconds, HeaderSource};
use super::primitives::{bolt_tag, decode_tag, standard_tag, Tag, WHSEC_PREFIX};
use super::{
    Match, MatchedHeader, Scheme, VerifyError, BOLT_SIGNATURE, BOLT_SIGNATURE_PENDING,
    DEFAULT_TOLERANCE, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
};

/// Length of a hex secret as the daemon generates it: 32 random bytes, hex-encoded.
const HEX_SECRET_LEN: usize = 64;

/// Checks webhook signatures against every secret a receiver currently trusts.
///
/// Comparisons are constant-time. Keys are held privately and redacted from `Debug`.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<Vec<u8>>,
    tolerance_secs: u64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &format_args!("[{} redacted]", self.keys.len()))
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl Verifier {
    /// Builds a verifier from secrets in the form the daemon shows them: the 64-character
    /// lowercase hex string (used as-is, its UTF-8 bytes are the key) or `whsec_` + base64(key).
    ///
    /// Fails with [`VerifyError::NoSecrets`] for an empty list and [`VerifyError::InvalidSecret`]
    /// for anything else, including a stray newline: a mistyped secret would otherwise only show
    /// up later as every delivery failing.
    pub fn new<I, S>(secrets: I) -> Result<Self, VerifyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = secrets
            .into_iter()
            .map(|secret| parse_secret(secret.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(VerifyError::NoSecrets);
        }
        Ok(Self {
            keys,
            tolerance_secs: DEFAULT_TOLERANCE.as_secs(),
        })
    }

    /// Sets how far `webhook-timestamp` may differ from `now`, in either direction (whole
    /// seconds; sub-second parts are dropped). The default is [`DEFAULT_TOLERANCE`].
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance_secs = tolerance.as_secs();
        self
    }

    /// Verifies a delivery under `scheme`, the one the receiver's endpoint uses, at receiver
    /// time `now_unix_secs` (only the Standard scheme reads the clock). Only that scheme's
    /// headers are looked at: a `Standard` receiver refuses a request without `webhook-*`
    /// headers ([`VerifyError::MissingHeader`]) even if valid `X-Bolt-*` headers come with it.
    pub fn verify<H: HeaderSource + ?Sized>(
        &self,
        scheme: Scheme,
        headers: &H,
        body: &[u8],
        now_unix_secs: i64,
    ) -> Result<Match, VerifyError> {
        match scheme {
            Scheme::Bolt => self.verify_bolt(headers, body),
            Scheme::Standard => self.verify_standard(headers, body, now_unix_secs),
        }
    }

    /// Verifies the `bolt` scheme: accepts when `X-Bolt-Hmac-Sha256` or
    /// `X-Bolt-Hmac-Sha256-Pending` matches any configured secret. The reported match is the
    /// lowest-index secret that matches, preferring the active header for that secret.
    pub fn verify_bolt<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
    ) -> Result<Match, VerifyError> {
        let sent = [
            (BOLT_SIGNATURE, MatchedHeader::Bolt),
            (BOLT_SIGNATURE_PENDING, MatchedHeader::BoltPending),
        ]
        .map(|(name, header)| (name, header, non_blank(headers, name)));
        let Some(&(first_present, _, _)) = sent.iter().find(|(_, _, value)| value.is_some()) else {
            return Err(VerifyError::MissingHeader(BOLT_SIGNATURE));
        };
        let candidates: Vec<(MatchedHeader, Tag)> = sent
            .iter()
            .filter_map(|&(_, header, value)| Some((header, decode_tag(value?)?)))
            .collect();
        if candidates.is_empty() {
            return Err(VerifyError::Malformed(first_present));
        }
        self.first_match(&candidates, |key| bolt_tag(key, body))
    }

    /// Verifies the Standard Webhooks scheme at receiver time `now_unix_secs`: checks the
    /// timestamp tolerance, then accepts when any `v1` entry of `webhook-signature` matches any
    /// configured secret. Entries of other versions are ignored.
    pub fn verify_standard<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
        now_unix_secs: i64,
    ) -> Result<Match, VerifyError> {
        let required = |name| non_blank(headers, name).ok_or(VerifyError::MissingHeader(name));
        let id = required(WEBHOOK_ID)?;
        let raw_timestamp = required(WEBHOOK_TIMESTAMP)?;
        let signatures = required(WEBHOOK_SIGNATURE)?;

        let timestamp =
            parse_unix_seconds(raw_timestamp).ok_or(VerifyError::Malformed(WEBHOOK_TIMESTAMP))?;
        if now_unix_secs.abs_diff(timestamp) > self.tolerance_secs {
            return Err(VerifyError::StaleTimestamp {
                timestamp,
                now: now_unix_secs,
            });
        }
        let candidates: Vec<(MatchedHeader, Tag)> = signatures
            .split_ascii_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(decode_tag)
            .map(|tag| (MatchedHeader::Standard, tag))
            .collect();
        if candidates.is_empty() {
            return Err(VerifyError::Malformed(WEBHOOK_SIGNATURE));
        }
        self.first_match(&candidates, |key| standard_tag(key, id, timestamp, body))
    }

    /// The lowest-index secret whose `expected` tag equals one of the tags `sent`, with the
    /// header of the first such tag; [`VerifyError::NoMatch`] if none does. Each comparison is
    /// constant-time.
    fn first_match(
        &self,
        sent: &[(MatchedHeader, Tag)],
        expected: impl Fn(&[u8]) -> Tag,
    ) -> Result<Match, VerifyError> {
        for (secret_index, key) in self.keys.iter().enumerate() {
            let expected = expected(key);
            for &(header, tag) in sent {
                if bool::from(expected.ct_eq(&tag)) {
                    return Ok(Match {
                        secret_index,
                        header,
                    });
                }
            }
        }
        Err(VerifyError::NoMatch)
    }
}

/// Turns a secret as shown to receivers into its HMAC key.
pub(super) fn parse_secret(secret: &str) -> Result<Vec<u8>, VerifyError> {
    if let Some(encoded) = secret.strip_prefix(WHSEC_PREFIX) {
        return match BASE64.decode(encoded) {
            Ok(key) if !key.is_empty() => Ok(key),
            _ => Err(VerifyError::InvalidSecret),
        };
    }
    let is_lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if secret.len() == HEX_SECRET_LEN && secret.bytes().all(|b| is_lower_hex(&b)) {
        // The hex string itself is the key, exactly as the receiver pasted it (the signing contract).
        Ok(secret.as_bytes().to_vec())
    } else {
        Err(VerifyError::InvalidSecret)
    }
}
