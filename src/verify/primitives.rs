//! The HMAC-SHA256 primitives: the one implementation the daemon signs with and the verifier
//! checks with, so the two cannot drift apart.
//!
//! Uses only `hmac`, `sha2` and `base64` (always compiled, see [`crate::verify`]).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `whsec_` prefix Standard Webhooks libraries expect in front of a base64 key.
pub(super) const WHSEC_PREFIX: &str = "whsec_";
/// Length of the padded base64 encoding of a 32-byte HMAC-SHA256 tag.
const TAG_BASE64_LEN: usize = 44;

type HmacSha256 = Hmac<Sha256>;
/// An HMAC-SHA256 tag, as signed and as decoded from a signature header.
pub(super) type Tag = [u8; 32];

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

pub(super) fn bolt_tag(key: &[u8], body: &[u8]) -> Tag {
    let mut mac = new_mac(key);
    mac.update(body);
    mac.finalize().into_bytes().into()
}

pub(super) fn standard_tag(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Tag {
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
pub(super) fn decode_tag(value: &str) -> Option<Tag> {
    // Checking the length first also keeps a huge header from costing a huge decode.
    if value.len() != TAG_BASE64_LEN {
        return None;
    }
    BASE64.decode(value).ok()?.try_into().ok()
}
