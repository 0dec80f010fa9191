//! Receiver-side verification of hooksign signatures, and the HMAC primitives the daemon signs
//! with.
//!
//! This module is the contract with merchants' receivers (the receiver guide in README.md), so it is always
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
//!
//! Layout: `primitives` (the HMAC), `header` (reading headers), `scheme` ([`Scheme`]),
//! `verifier` ([`Verifier`]); this file holds the header names and the result and error types,
//! and re-exports everything public, so the paths are `hooksign::verify::*`.

mod header;
mod primitives;
mod scheme;
mod verifier;

#[cfg(test)]
pub(crate) mod test_vectors;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

pub use header::HeaderSource;
pub use primitives::{bolt_signature, standard_signature, whsec};
pub(crate) use scheme::scheme_names;
pub use scheme::{Scheme, UnknownScheme};
pub use verifier::Verifier;

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
