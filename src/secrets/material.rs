//! The signing secret: 32 random bytes, hex-encoded to the 64-character lowercase string that
//! receivers paste into their configuration. The HMAC key is the UTF-8 bytes of that string.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A webhook signing secret. `Debug` is redacted; the memory is wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SigningSecret(String);

impl SigningSecret {
    /// A fresh secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = Self(hex::encode(bytes));
        bytes.zeroize();
        secret
    }

    /// Accepts exactly 64 lowercase hex characters.
    pub fn parse(text: &str) -> Option<Self> {
        let valid =
            text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Self(text.to_owned()))
    }

    /// The HMAC key: the UTF-8 bytes of the hex string.
    pub fn key(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The value shown to a merchant once (on `initiate`) or by an audited `reveal`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First 8 hex characters of SHA-256 of the key: lets people tell secrets apart without
    /// seeing them.
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.key())[..4])
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningSecret({})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_64_lowercase_hex_and_distinct() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert!(SigningSecret::parse(a.expose()).is_some());
        assert_ne!(a, b);
        assert_eq!(a.fingerprint().len(), 8);
    }

    #[test]
    fn parse_refuses_anything_else() {
        assert!(SigningSecret::parse(&"A".repeat(64)).is_none());
        assert!(SigningSecret::parse(&"a".repeat(63)).is_none());
        assert!(SigningSecret::parse("").is_none());
    }

    #[test]
    fn debug_shows_only_the_fingerprint() {
        let secret = SigningSecret::generate();
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }
}
