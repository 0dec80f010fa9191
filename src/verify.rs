//! Receiver-side verification of hooksign signatures, and the HMAC primitives the daemon signs
//! with.
//!
//! This module is the contract with merchants' receivers (DESIGN.md §1), so it is always
//! compiled, needs none of the daemon's dependencies (only `hmac`, `sha2`, `base64`, `subtle`)
//! and is the *only* HMAC implementation in the crate: the signer in `crate::signing` calls
//! [`bolt_signature`] and [`standard_signature`], so what is sent and what is checked cannot
//! drift apart.
//!
//! A receiver builds one [`Verifier`] from every secret it currently trusts. During a rotation
//! that is the old *and* the new secret, so deliveries keep verifying whichever one the daemon
//! signs with, and [`Match::secret_index`] tells when the new one starts matching (after which the
//! old one can be dropped). A secret is given as the daemon shows it: the 64-character lowercase
//! hex string, or its `whsec_` form for Standard Webhooks libraries.
//!
//! ```
//! use hooksign::verify::{MatchedHeader, Verifier};
//!
//! // The public Standard Webhooks test vector.
//! let verifier = Verifier::new(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])?;
//! let headers = [
//!     ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
//!     ("webhook-timestamp", "1614265330"),
//!     ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
//! ];
//! // In a real receiver `now` is the current Unix time, e.g. from `SystemTime::now()`.
//! let now = 1614265330;
//! let matched = verifier.verify_standard(&headers, br#"{"test": 2432232314}"#, now)?;
//! assert_eq!((matched.secret_index, matched.header), (0, MatchedHeader::Standard));
//! # Ok::<(), hooksign::verify::VerifyError>(())
//! ```
//!
//! Always verify the raw body bytes exactly as received, before any JSON parsing.
//!
//! A receiver verifies the one [`Scheme`] its endpoint is configured with, through
//! [`Verifier::verify`] (or [`Verifier::verify_bolt`] / [`Verifier::verify_standard`]). There is
//! deliberately no mode that picks the scheme from the headers present: anyone who strips the
//! `webhook-*` headers from a captured delivery would fall back to `bolt`, which signs the body
//! only, and turn the timestamp check off. To recognise a delivery seen before, use an
//! identifier the signature covers: `webhook-id` (Standard Webhooks) or the event `id` inside the
//! signed body, never the unsigned `X-Hooksign-Delivery-Id`.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Header carrying the signature made with the active secret (`bolt` scheme).
pub const BOLT_SIGNATURE: &str = "X-Bolt-Hmac-Sha256";
/// Header carrying the signature made with the pending secret while a rotation is in progress.
pub const BOLT_SIGNATURE_PENDING: &str = "X-Bolt-Hmac-Sha256-Pending";
/// Standard Webhooks: the event id, identical on every retry.
pub const WEBHOOK_ID: &str = "webhook-id";
/// Standard Webhooks: Unix seconds at which the delivery attempt was signed.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Standard Webhooks: space-separated `v1,<base64>` signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// How far a `webhook-timestamp` may be from the receiver's clock, in either direction, unless
/// [`Verifier::with_tolerance`] says otherwise. It bounds how long a captured delivery can be
/// replayed.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The `whsec_` prefix Standard Webhooks libraries expect in front of a base64 key.
const WHSEC_PREFIX: &str = "whsec_";
/// Length of a hex secret as the daemon generates it: 32 random bytes, hex-encoded.
const HEX_SECRET_LEN: usize = 64;
/// Length of the padded base64 encoding of a 32-byte HMAC-SHA256 tag.
const TAG_BASE64_LEN: usize = 44;

type HmacSha256 = Hmac<Sha256>;
type Tag = [u8; 32];

/// `X-Bolt-Hmac-Sha256` value: padded standard base64 of HMAC-SHA256(`key`, `body`).
pub fn bolt_signature(key: &[u8], body: &[u8]) -> String {
    BASE64.encode(bolt_tag(key, body))
}

/// One `webhook-signature` entry, `v1,<base64>`, over `{id}.{timestamp}.{body}`.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        BASE64.encode(standard_tag(key, id, timestamp, body))
    )
}

/// The `whsec_` + base64 form under which a key is shown to Standard Webhooks receivers.
pub fn whsec(key: &[u8]) -> String {
    format!("{WHSEC_PREFIX}{}", BASE64.encode(key))
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC hashes long keys and pads short ones, so every key length is valid: this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length")
}

fn bolt_tag(key: &[u8], body: &[u8]) -> Tag {
    let mut mac = new_mac(key);
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn standard_tag(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Tag {
    use fmt::Write as _;
    /// Streams formatted text straight into the MAC, so the signed content is never buffered.
    struct MacWriter<'a>(&'a mut HmacSha256);
    impl fmt::Write for MacWriter<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.update(s.as_bytes());
            Ok(())
        }
    }
    let mut mac = new_mac(key);
    // `MacWriter::write_str` never fails, so neither can this.
    let _ = write!(MacWriter(&mut mac), "{id}.{timestamp}.");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Decodes one signature value; `None` unless it is canonical padded base64 of exactly 32 bytes.
fn decode_tag(value: &str) -> Option<Tag> {
    // Checking the length first also keeps a huge header from costing a huge decode.
    if value.len() != TAG_BASE64_LEN {
        return None;
    }
    BASE64.decode(value).ok()?.try_into().ok()
}

/// Where a verifier reads request headers from. Names are matched ASCII case-insensitively, as
/// HTTP requires; when a header repeats, the first occurrence is used.
///
/// Implemented for slices, arrays and `Vec`s of `(name, value)` pairs of anything `AsRef<str>`.
/// A receiver using another header map implements it in a few lines, e.g. for `http::HeaderMap`:
/// `self.get(name).and_then(|v| v.to_str().ok())`.
pub trait HeaderSource {
    /// The value of header `name`, if present and valid text.
    fn header(&self, name: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for [(K, V)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(key, _)| key.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> HeaderSource for [(K, V); N] {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

/// A header's value with surrounding whitespace removed; `None` if absent or blank.
fn non_blank<'h, H: HeaderSource + ?Sized>(headers: &'h H, name: &str) -> Option<&'h str> {
    headers
        .header(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The signature scheme a receiver verifies: the one its hooksign endpoint is configured with.
///
/// Parsed from `bolt` or `standard` only. There is no `auto`: a scheme chosen from the headers
/// present is chosen by whoever sent the request (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `X-Bolt-Hmac-Sha256` (and `-Pending`): HMAC of the body alone, no timestamp.
    Bolt,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature`, with the
    /// timestamp checked against the receiver's clock.
    Standard,
}

impl Scheme {
    /// Both schemes, in the order their names are listed in messages.
    pub const ALL: [Scheme; 2] = [Scheme::Bolt, Scheme::Standard];

    /// The lowercase name, as hooksign's endpoints and command lines spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Bolt => "bolt",
            Scheme::Standard => "standard",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scheme name other than `bolt` or `standard`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownScheme(pub String);

impl fmt::Display for UnknownScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown scheme {:?}: expected bolt or standard, the scheme of your endpoint",
            self.0
        )
    }
}

impl std::error::Error for UnknownScheme {}

impl std::str::FromStr for Scheme {
    type Err = UnknownScheme;

    /// The exact lowercase names only.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.as_str() == s)
            .ok_or_else(|| UnknownScheme(s.to_owned()))
    }
}

/// Which header carried the signature that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchedHeader {
    /// `X-Bolt-Hmac-Sha256`: signed with the daemon's active secret.
    Bolt,
    /// `X-Bolt-Hmac-Sha256-Pending`: signed with the secret a pending rotation will activate.
    BoltPending,
    /// One of the `v1` entries of `webhook-signature`.
    Standard,
}

/// A successful verification: which configured secret matched, and through which header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Match {
    /// Index, in the order given to [`Verifier::new`], of the first secret that matched.
    pub secret_index: usize,
    /// The header whose signature matched that secret.
    pub header: MatchedHeader,
}

/// Why a verifier could not be built or a delivery was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// [`Verifier::new`] was given no secrets.
    NoSecrets,
    /// A secret is neither a 64-character lowercase hex string nor `whsec_` + non-empty base64.
    InvalidSecret,
    /// The named signature header is absent or empty.
    MissingHeader(&'static str),
    /// The named header is present but cannot be parsed.
    Malformed(&'static str),
    /// `webhook-timestamp` is further from `now` than the tolerance allows (both Unix seconds).
    StaleTimestamp {
        /// The timestamp the delivery claims.
        timestamp: i64,
        /// The receiver's clock at verification.
        now: i64,
    },
    /// Well-formed signatures, none of which matches any configured secret.
    NoMatch,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSecrets => f.write_str("no signing secrets configured"),
            Self::InvalidSecret => f.write_str(
                "invalid signing secret: expected 64 lowercase hex characters or whsec_ + base64",
            ),
            Self::MissingHeader(name) => write!(f, "missing signature header {name}"),
            Self::Malformed(name) => write!(f, "malformed header {name}"),
            Self::StaleTimestamp { timestamp, now } => write!(
                f,
                "webhook timestamp {timestamp} is outside the tolerance around now ({now})"
            ),
            Self::NoMatch => f.write_str("no signature matches any configured secret"),
        }
    }
}

impl std::error::Error for VerifyError {}

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
    pub fn verify<H>(
        &self,
        scheme: Scheme,
        headers: &H,
        body: &[u8],
        now_unix_secs: i64,
    ) -> Result<Match, VerifyError>
    where
        H: HeaderSource + ?Sized,
    {
        match scheme {
            Scheme::Bolt => self.verify_bolt(headers, body),
            Scheme::Standard => self.verify_standard(headers, body, now_unix_secs),
        }
    }

    /// Verifies the `bolt` scheme: accepts when `X-Bolt-Hmac-Sha256` or
    /// `X-Bolt-Hmac-Sha256-Pending` matches any configured secret. The reported match is the
    /// lowest-index secret that matches, preferring the active header for that secret.
    pub fn verify_bolt<H>(&self, headers: &H, body: &[u8]) -> Result<Match, VerifyError>
    where
        H: HeaderSource + ?Sized,
    {
        let sent = [
            (BOLT_SIGNATURE, MatchedHeader::Bolt),
            (BOLT_SIGNATURE_PENDING, MatchedHeader::BoltPending),
        ]
        .map(|(name, header)| (name, header, non_blank(headers, name)));
        let Some(&(first_present, _, _)) = sent.iter().find(|(_, _, value)| value.is_some()) else {
            return Err(VerifyError::MissingHeader(BOLT_SIGNATURE));
        };
        let candidates = sent.map(|(_, header, value)| (header, value.and_then(decode_tag)));
        if candidates.iter().all(|(_, tag)| tag.is_none()) {
            return Err(VerifyError::Malformed(first_present));
        }
        for (secret_index, key) in self.keys.iter().enumerate() {
            let expected = bolt_tag(key, body);
            for (header, tag) in &candidates {
                if tag.is_some_and(|tag| bool::from(expected.ct_eq(&tag))) {
                    let header = *header;
                    return Ok(Match {
                        secret_index,
                        header,
                    });
                }
            }
        }
        Err(VerifyError::NoMatch)
    }

    /// Verifies the Standard Webhooks scheme at receiver time `now_unix_secs`: checks the
    /// timestamp tolerance, then accepts when any `v1` entry of `webhook-signature` matches any
    /// configured secret. Entries of other versions are ignored.
    pub fn verify_standard<H>(
        &self,
        headers: &H,
        body: &[u8],
        now_unix_secs: i64,
    ) -> Result<Match, VerifyError>
    where
        H: HeaderSource + ?Sized,
    {
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
        let tags: Vec<Tag> = signatures
            .split_ascii_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(decode_tag)
            .collect();
        if tags.is_empty() {
            return Err(VerifyError::Malformed(WEBHOOK_SIGNATURE));
        }
        for (secret_index, key) in self.keys.iter().enumerate() {
            let expected = standard_tag(key, id, timestamp, body);
            if tags.iter().any(|tag| bool::from(expected.ct_eq(tag))) {
                let header = MatchedHeader::Standard;
                return Ok(Match {
                    secret_index,
                    header,
                });
            }
        }
        Err(VerifyError::NoMatch)
    }
}

/// Turns a secret as shown to receivers into its HMAC key.
fn parse_secret(secret: &str) -> Result<Vec<u8>, VerifyError> {
    if let Some(encoded) = secret.strip_prefix(WHSEC_PREFIX) {
        return match BASE64.decode(encoded) {
            Ok(key) if !key.is_empty() => Ok(key),
            _ => Err(VerifyError::InvalidSecret),
        };
    }
    let is_lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if secret.len() == HEX_SECRET_LEN && secret.bytes().all(|b| is_lower_hex(&b)) {
        // The hex string itself is the key, exactly as the receiver pasted it (DESIGN.md §1).
        Ok(secret.as_bytes().to_vec())
    } else {
        Err(VerifyError::InvalidSecret)
    }
}

/// Plain decimal digits only: the signed content uses the canonical form, so `+5` or `05` would
/// verify differently than they read.
fn parse_unix_seconds(raw: &str) -> Option<i64> {
    let canonical =
        raw.bytes().all(|b| b.is_ascii_digit()) && (raw == "0" || !raw.starts_with('0'));
    if canonical {
        raw.parse().ok()
    } else {
        None
    }
}

/// The shared vectors (`tests/vectors/*.json`), parsed once for this module's and the signer's
/// tests.
#[cfg(test)]
pub(crate) mod test_vectors {
    use super::BASE64;
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
}

#[cfg(test)]
mod tests {
    use super::test_vectors::{bolt_cases, reference_vector, standard_cases, StandardCase};
    use super::*;
    use proptest::prelude::*;

    const ACTIVE: &str = "3f1c2a9e8b7d6c5f4e3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";
    const OTHER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(secrets).expect("valid secrets")
    }

    fn matched(secret_index: usize, header: MatchedHeader) -> Result<Match, VerifyError> {
        Ok(Match {
            secret_index,
            header,
        })
    }

    fn standard_headers(c: &StandardCase, signature: &str) -> Vec<(String, String)> {
        vec![
            (WEBHOOK_ID.into(), c.webhook_id.clone()),
            (WEBHOOK_TIMESTAMP.into(), c.webhook_timestamp.to_string()),
            (WEBHOOK_SIGNATURE.into(), signature.to_owned()),
        ]
    }

    #[test]
    fn primitives_reproduce_every_vector() {
        for c in bolt_cases() {
            let rotation = &c.headers_during_rotation;
            let active = bolt_signature(c.active_secret.as_bytes(), &c.body);
            let pending = bolt_signature(c.pending_secret.as_bytes(), &c.body);
            assert_eq!(
                c.headers_active_only,
                [(BOLT_SIGNATURE.into(), active.clone())]
            );
            assert_eq!(
                rotation.header(BOLT_SIGNATURE),
                Some(active.as_str()),
                "{}",
                c.name
            );
            assert_eq!(
                rotation.header(BOLT_SIGNATURE_PENDING),
                Some(pending.as_str())
            );
        }
        for c in standard_cases() {
            let sign = |secret: &str| {
                standard_signature(
                    secret.as_bytes(),
                    &c.webhook_id,
                    c.webhook_timestamp,
                    &c.body,
                )
            };
            assert_eq!(
                sign(&c.active_secret),
                c.signature_active_only,
                "{}",
                c.name
            );
            let both = format!("{} {}", sign(&c.active_secret), sign(&c.pending_secret));
            assert_eq!(both, c.signature_during_rotation, "{}", c.name);
            assert_eq!(whsec(c.active_secret.as_bytes()), c.active_secret_whsec);
        }
    }

    #[test]
    fn reference_vector_signs_and_verifies_with_its_whsec_secret() {
        let r = reference_vector();
        let key = parse_secret(&r.secret).expect("whsec secret");
        let signature = standard_signature(&key, &r.webhook_id, r.webhook_timestamp, &r.body);
        assert_eq!(signature, r.signature);
        assert_eq!(whsec(&key), r.secret);
        let headers = [
            (WEBHOOK_ID, r.webhook_id.as_str()),
            (WEBHOOK_TIMESTAMP, &r.webhook_timestamp.to_string()),
            (WEBHOOK_SIGNATURE, &r.signature),
        ];
        let result = verifier(&[&r.secret]).verify_standard(&headers, &r.body, r.webhook_timestamp);
        assert_eq!(result, matched(0, MatchedHeader::Standard));
    }

    #[test]
    fn bolt_vectors_verify_with_each_secret_alone_and_together() {
        for c in bolt_cases() {
            let (active, pending) = (c.active_secret.as_str(), c.pending_secret.as_str());
            let only = &c.headers_active_only;
            let rotation = &c.headers_during_rotation;
            let bolt = MatchedHeader::Bolt;
            assert_eq!(
                verifier(&[active]).verify_bolt(only, &c.body),
                matched(0, bolt)
            );
            assert_eq!(
                verifier(&[OTHER, active]).verify_bolt(only, &c.body),
                matched(1, bolt)
            );
            assert_eq!(
                verifier(&[active]).verify_bolt(rotation, &c.body),
                matched(0, bolt)
            );
            let pending_only = verifier(&[pending]).verify_bolt(rotation, &c.body);
            assert_eq!(
                pending_only,
                matched(0, MatchedHeader::BoltPending),
                "{}",
                c.name
            );
            let both = verifier(&[pending, active]).verify_bolt(rotation, &c.body);
            assert_eq!(both, matched(0, MatchedHeader::BoltPending));
            let both = verifier(&[active, pending]).verify_bolt(rotation, &c.body);
            assert_eq!(both, matched(0, bolt));
            let new_secret_before_rotation = verifier(&[pending]).verify_bolt(only, &c.body);
            assert_eq!(new_secret_before_rotation, Err(VerifyError::NoMatch));
        }
    }

    #[test]
    fn verify_checks_every_vector_under_its_own_scheme_only() {
        for c in bolt_cases() {
            let v = verifier(&[&c.active_secret]);
            let rotation = &c.headers_during_rotation;
            let bolt = v.verify(Scheme::Bolt, rotation, &c.body, 0);
            assert_eq!(bolt, matched(0, MatchedHeader::Bolt), "{}", c.name);
            // Valid X-Bolt headers do not satisfy a Standard receiver: no silent downgrade.
            let standard = v.verify(Scheme::Standard, rotation, &c.body, 0);
            assert_eq!(standard, Err(VerifyError::MissingHeader(WEBHOOK_ID)));
        }
        for c in standard_cases() {
            let v = verifier(&[&c.pending_secret]);
            let now = c.webhook_timestamp;
            let headers = standard_headers(&c, &c.signature_during_rotation);
            let standard = v.verify(Scheme::Standard, &headers, &c.body, now);
            assert_eq!(standard, matched(0, MatchedHeader::Standard), "{}", c.name);
            let stale = v.verify(Scheme::Standard, &headers, &c.body, now + 301);
            assert!(matches!(stale, Err(VerifyError::StaleTimestamp { .. })));
            let bolt = v.verify(Scheme::Bolt, &headers, &c.body, now);
            assert_eq!(bolt, Err(VerifyError::MissingHeader(BOLT_SIGNATURE)));
        }
    }

    #[test]
    fn a_delivery_stripped_of_its_webhook_headers_is_refused_by_a_standard_receiver() {
        // A `both` endpoint (or a bolt endpoint of the same merchant) sends the same body with
        // X-Bolt headers; with the webhook-* headers stripped it must not verify as standard.
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let bolt = bolt_signature(ACTIVE.as_bytes(), body);
        let stripped = [(BOLT_SIGNATURE, bolt.as_str())];
        let v = verifier(&[ACTIVE]);
        assert!(v.verify(Scheme::Bolt, &stripped, body, 0).is_ok());
        let refused = v.verify(Scheme::Standard, &stripped, body, 0);
        assert_eq!(refused, Err(VerifyError::MissingHeader(WEBHOOK_ID)));
    }

    #[test]
    fn scheme_names_parse_exactly_and_there_is_no_auto() {
        for scheme in Scheme::ALL {
            assert_eq!(scheme.as_str().parse(), Ok(scheme));
            assert_eq!(scheme.to_string(), scheme.as_str());
        }
        for bad in ["auto", "both", "Bolt", " standard", ""] {
            let err = bad.parse::<Scheme>().unwrap_err();
            assert_eq!(err, UnknownScheme(bad.to_owned()));
            assert!(
                err.to_string().contains("expected bolt or standard"),
                "{err}"
            );
        }
    }

    #[test]
    fn bolt_header_names_are_case_insensitive_and_values_trimmed() {
        let body = b"{}";
        let value = format!(" {} ", bolt_signature(ACTIVE.as_bytes(), body));
        let headers = [("x-bolt-hmac-sha256", value.as_str())];
        assert_eq!(
            verifier(&[ACTIVE]).verify_bolt(&headers, body),
            matched(0, MatchedHeader::Bolt)
        );
    }

    #[test]
    fn bolt_tampered_body_is_rejected() {
        for c in bolt_cases() {
            let mut body = c.body.clone();
            body.push(b' ');
            let v = verifier(&[&c.active_secret, &c.pending_secret]);
            assert_eq!(
                v.verify_bolt(&c.headers_during_rotation, &body),
                Err(VerifyError::NoMatch)
            );
        }
    }

    #[test]
    fn bolt_missing_empty_and_garbled_headers_are_rejected() {
        let body = b"{\"a\":1}";
        let good = bolt_signature(ACTIVE.as_bytes(), body);
        let v = verifier(&[ACTIVE]);
        let check = |headers: &[(&str, &str)]| v.verify_bolt(headers, body);
        let missing = Err(VerifyError::MissingHeader(BOLT_SIGNATURE));
        assert_eq!(check(&[]), missing);
        assert_eq!(
            check(&[(BOLT_SIGNATURE, ""), (BOLT_SIGNATURE_PENDING, "  ")]),
            missing
        );
        assert_eq!(check(&[("X-Other", &good)]), missing);
        let malformed = Err(VerifyError::Malformed(BOLT_SIGNATURE));
        for bad in [
            &good[..43],
            &good[..10],
            "not base64 at all!",
            &format!("{good}A"),
        ] {
            assert_eq!(check(&[(BOLT_SIGNATURE, bad)]), malformed, "{bad}");
        }
        let unpadded = good.trim_end_matches('=');
        assert_eq!(check(&[(BOLT_SIGNATURE, unpadded)]), malformed);
        assert_eq!(
            check(&[(BOLT_SIGNATURE_PENDING, "%%%")]),
            Err(VerifyError::Malformed(BOLT_SIGNATURE_PENDING))
        );
        let flipped = format!(
            "{}{}",
            if good.starts_with('A') { 'B' } else { 'A' },
            &good[1..]
        );
        assert_eq!(
            check(&[(BOLT_SIGNATURE, &flipped)]),
            Err(VerifyError::NoMatch)
        );
        // A garbled active header does not hide a valid pending one, and vice versa.
        let pending = [(BOLT_SIGNATURE, "garbage"), (BOLT_SIGNATURE_PENDING, &good)];
        assert_eq!(check(&pending), matched(0, MatchedHeader::BoltPending));
        let active = [
            (BOLT_SIGNATURE, good.as_str()),
            (BOLT_SIGNATURE_PENDING, "x"),
        ];
        assert_eq!(check(&active), matched(0, MatchedHeader::Bolt));
    }

    #[test]
    fn standard_vectors_verify_with_hex_and_whsec_secrets() {
        for c in standard_cases() {
            let now = c.webhook_timestamp;
            let only = standard_headers(&c, &c.signature_active_only);
            let rotation = standard_headers(&c, &c.signature_during_rotation);
            let std = MatchedHeader::Standard;
            for secret in [&c.active_secret, &c.active_secret_whsec] {
                let v = verifier(&[secret]);
                assert_eq!(
                    v.verify_standard(&only, &c.body, now),
                    matched(0, std),
                    "{}",
                    c.name
                );
                assert_eq!(v.verify_standard(&rotation, &c.body, now), matched(0, std));
            }
            let pending = verifier(&[&c.pending_secret]);
            assert_eq!(
                pending.verify_standard(&rotation, &c.body, now),
                matched(0, std)
            );
            let not_yet = pending.verify_standard(&only, &c.body, now);
            assert_eq!(not_yet, Err(VerifyError::NoMatch));
            let both = verifier(&[OTHER, &c.pending_secret, &c.active_secret]);
            assert_eq!(
                both.verify_standard(&rotation, &c.body, now),
                matched(1, std)
            );
        }
    }

    #[test]
    fn standard_tampered_body_id_or_timestamp_is_rejected() {
        for c in standard_cases() {
            let v = verifier(&[&c.active_secret]);
            let now = c.webhook_timestamp;
            let headers = standard_headers(&c, &c.signature_active_only);
            let mut body = c.body.clone();
            body.extend_from_slice(b"\n");
            assert_eq!(
                v.verify_standard(&headers, &body, now),
                Err(VerifyError::NoMatch)
            );
            let mut other_id = headers.clone();
            other_id[0].1.push('x');
            assert_eq!(
                v.verify_standard(&other_id, &c.body, now),
                Err(VerifyError::NoMatch)
            );
            let mut other_ts = headers.clone();
            other_ts[1].1 = (now + 1).to_string();
            assert_eq!(
                v.verify_standard(&other_ts, &c.body, now),
                Err(VerifyError::NoMatch)
            );
        }
    }

    #[test]
    fn standard_timestamps_outside_the_tolerance_are_stale_in_both_directions() {
        let c = &standard_cases()[0];
        let ts = c.webhook_timestamp;
        let headers = standard_headers(c, &c.signature_active_only);
        let v = verifier(&[&c.active_secret]);
        assert!(v.verify_standard(&headers, &c.body, ts + 300).is_ok());
        assert!(v.verify_standard(&headers, &c.body, ts - 300).is_ok());
        for now in [ts + 301, ts - 301, 0, i64::MIN, i64::MAX] {
            let stale = Err(VerifyError::StaleTimestamp { timestamp: ts, now });
            assert_eq!(v.verify_standard(&headers, &c.body, now), stale);
        }
        let strict = v.with_tolerance(Duration::from_secs(10));
        assert!(strict.verify_standard(&headers, &c.body, ts + 10).is_ok());
        assert!(strict.verify_standard(&headers, &c.body, ts + 11).is_err());
    }

    #[test]
    fn standard_missing_and_malformed_headers_are_rejected() {
        let c = &standard_cases()[0];
        let (v, now) = (verifier(&[&c.active_secret]), c.webhook_timestamp);
        let sig = c.signature_active_only.as_str();
        let check =
            |signature: &str| v.verify_standard(&standard_headers(c, signature), &c.body, now);
        let malformed = Err(VerifyError::Malformed(WEBHOOK_SIGNATURE));
        for bad in [
            "v2,abc",
            "v1,",
            "v1,short",
            "v1a,xyz v2,abc",
            &sig[1..],
            &sig[..46],
        ] {
            assert_eq!(check(bad), malformed, "{bad}");
        }
        assert_eq!(
            check(""),
            Err(VerifyError::MissingHeader(WEBHOOK_SIGNATURE))
        );
        let std = matched(0, MatchedHeader::Standard);
        assert_eq!(check(&format!("v1a,ignored v1,garbage  {sig}")), std);
        for (i, name) in [WEBHOOK_ID, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE]
            .into_iter()
            .enumerate()
        {
            let mut headers = standard_headers(c, sig);
            headers.remove(i);
            let missing = Err(VerifyError::MissingHeader(name));
            assert_eq!(v.verify_standard(&headers, &c.body, now), missing);
        }
        for ts in [
            "abc",
            "+1763942400",
            "01763942400",
            "-5",
            "1.5",
            "99999999999999999999",
        ] {
            let mut headers = standard_headers(c, sig);
            headers[1].1 = ts.to_owned();
            let malformed = Err(VerifyError::Malformed(WEBHOOK_TIMESTAMP));
            assert_eq!(v.verify_standard(&headers, &c.body, now), malformed, "{ts}");
        }
    }

    #[test]
    fn invalid_secret_lists_are_refused() {
        assert_eq!(
            Verifier::new(Vec::<String>::new()).err(),
            Some(VerifyError::NoSecrets)
        );
        let upper = ACTIVE.to_ascii_uppercase();
        let newline = format!("{ACTIVE}\n");
        for bad in [
            "",
            "whsec_",
            "whsec_!!!",
            &upper,
            &ACTIVE[1..],
            &newline,
            "g".repeat(64).as_str(),
        ] {
            assert_eq!(
                Verifier::new([ACTIVE, bad]).err(),
                Some(VerifyError::InvalidSecret)
            );
        }
    }

    #[test]
    fn debug_output_redacts_keys() {
        let printed = format!(
            "{:?}",
            verifier(&[ACTIVE, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
        );
        assert!(printed.contains("2 redacted"), "{printed}");
        // Neither the secret text nor the key bytes (`[51, 102, ...]`) may leak.
        assert!(
            !printed.contains(&ACTIVE[..8]) && !printed.contains("[51,"),
            "{printed}"
        );
    }

    #[test]
    fn errors_explain_themselves() {
        let stale = VerifyError::StaleTimestamp {
            timestamp: 1,
            now: 400,
        };
        assert_eq!(
            stale.to_string(),
            "webhook timestamp 1 is outside the tolerance around now (400)"
        );
        let missing = VerifyError::MissingHeader(BOLT_SIGNATURE).to_string();
        assert_eq!(missing, "missing signature header X-Bolt-Hmac-Sha256");
        let boxed: Box<dyn std::error::Error> = Box::new(VerifyError::NoMatch);
        assert_eq!(
            boxed.to_string(),
            "no signature matches any configured secret"
        );
    }

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(BOLT_SIGNATURE.to_owned()),
            Just(BOLT_SIGNATURE_PENDING.to_ascii_lowercase()),
            Just(WEBHOOK_ID.to_owned()),
            Just(WEBHOOK_TIMESTAMP.to_owned()),
            Just(WEBHOOK_SIGNATURE.to_owned()),
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_headers_and_bodies_never_panic(
            headers in proptest::collection::vec((header_name(), any::<String>()), 0..6),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            now in any::<i64>(),
        ) {
            let v = verifier(&[ACTIVE]);
            // Random input must be refused (a forged match is a 2^-256 event), never panic.
            prop_assert!(v.verify_bolt(&headers, &body).is_err());
            prop_assert!(v.verify_standard(&headers, &body, now).is_err());
        }

        #[test]
        fn truncated_signatures_are_never_accepted(
            body in proptest::collection::vec(any::<u8>(), 0..64),
            cut in 0usize..47,
            timestamp in 0i64..4_000_000_000,
        ) {
            let v = verifier(&[ACTIVE]);
            let bolt = bolt_signature(ACTIVE.as_bytes(), &body);
            let prefix = &bolt[..cut.min(bolt.len() - 1)];
            let headers = [(BOLT_SIGNATURE, prefix), (BOLT_SIGNATURE_PENDING, prefix)];
            prop_assert!(v.verify_bolt(&headers, &body).is_err());

            let standard = standard_signature(ACTIVE.as_bytes(), "msg_1", timestamp, &body);
            let prefix = &standard[..cut.min(standard.len() - 1)];
            let ts = timestamp.to_string();
            let headers = [(WEBHOOK_ID, "msg_1"), (WEBHOOK_TIMESTAMP, &ts), (WEBHOOK_SIGNATURE, prefix)];
            prop_assert!(v.verify_standard(&headers, &body, timestamp).is_err());
        }
    }
}
