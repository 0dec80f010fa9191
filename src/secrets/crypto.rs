//! Encryption at rest: XChaCha20-Poly1305 under the master key.
//!
//! The associated data binds a ciphertext to its row (secret id, merchant, mode), so copying
//! one merchant's ciphertext into another row makes it fail to decrypt instead of silently
//! handing over the wrong secret. Each ciphertext records the id of the key that sealed it, so
//! the master key can be rotated (`hooksign rekey`).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::{MasterKey, SigningSecret};
use crate::ids::{MerchantId, SecretId};
use crate::keys::Mode;

const NONCE_LEN: usize = 24;

/// What a secret's ciphertext is bound to.
#[derive(Debug, Clone, Copy)]
pub struct SecretAad {
    pub secret_id: SecretId,
    pub merchant_id: MerchantId,
    pub mode: Mode,
}

impl SecretAad {
    fn bytes(&self) -> Vec<u8> {
        format!(
            "hooksign/secret/v1|{}|{}|{}",
            self.secret_id, self.merchant_id, self.mode
        )
        .into_bytes()
    }
}

/// Why a ciphertext could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext was sealed with key `{0}`, which is not loaded")]
    UnknownKey(String),
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext failed authentication (wrong key or wrong row)")]
    Authentication,
}

/// Seals with the current master key; opens with it or with older keys still configured
/// (during a master-key rotation, before `hooksign rekey` has re-sealed everything).
#[derive(Clone)]
pub struct Encryptor {
    key_id: String,
    cipher: XChaCha20Poly1305,
    older: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let older: Vec<_> = self.older.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Encryptor")
            .field("key_id", &self.key_id)
            .field("older", &older)
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    /// An encryptor for one master key.
    pub fn new(master: &MasterKey) -> Self {
        Self {
            key_id: master.id().to_owned(),
            cipher: XChaCha20Poly1305::new(master.bytes().into()),
            older: Vec::new(),
        }
    }

    /// Also opens ciphertexts sealed under `older` keys.
    pub fn with_older(mut self, older: &[MasterKey]) -> Self {
        self.older = older
            .iter()
            .filter(|key| key.id() != self.key_id)
            .map(|key| {
                (
                    key.id().to_owned(),
                    XChaCha20Poly1305::new(key.bytes().into()),
                )
            })
            .collect();
        self
    }

    fn cipher_for(&self, key_id: &str) -> Option<&XChaCha20Poly1305> {
        if key_id == self.key_id {
            return Some(&self.cipher);
        }
        self.older
            .iter()
            .find(|(id, _)| id == key_id)
            .map(|(_, cipher)| cipher)
    }

    /// The id stored beside every ciphertext this encryptor seals.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `nonce || ciphertext+tag`, bound to `aad`.
    pub fn seal(&self, secret: &SigningSecret, aad: &SecretAad) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = aad.bytes();
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.key(),
                    aad: &aad,
                },
            )
            // Encryption only fails for plaintexts beyond 256 GiB; a secret is 64 bytes.
            .expect("XChaCha20-Poly1305 encryption of 64 bytes cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a ciphertext sealed under `key_id` for exactly this row.
    pub fn open(
        &self,
        key_id: &str,
        sealed: &[u8],
        aad: &SecretAad,
    ) -> Result<SigningSecret, CryptoError> {
        let cipher = self
            .cipher_for(key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        if sealed.len() <= NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let aad = aad.bytes();
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        let text = String::from_utf8(plain).map_err(|_| CryptoError::Malformed)?;
        SigningSecret::parse(&text).ok_or(CryptoError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad() -> SecretAad {
        SecretAad {
            secret_id: SecretId::new(),
            merchant_id: MerchantId::new(),
            mode: Mode::Live,
        }
    }

    #[test]
    fn round_trip() {
        let enc = Encryptor::new(&MasterKey::generate());
        let secret = SigningSecret::generate();
        let aad = aad();
        let sealed = enc.seal(&secret, &aad);
        assert!(!sealed
            .windows(16)
            .any(|w| secret.key().windows(16).any(|s| s == w)));
        assert_eq!(enc.open(enc.key_id(), &sealed, &aad).unwrap(), secret);
    }

    #[test]
    fn wrong_key_fails() {
        let a = Encryptor::new(&MasterKey::generate());
        let b = Encryptor::new(&MasterKey::generate());
        let aad = aad();
        let sealed = a.seal(&SigningSecret::generate(), &aad);
        assert!(matches!(
            b.open(a.key_id(), &sealed, &aad),
            Err(CryptoError::UnknownKey(_))
        ));
        assert_eq!(
            b.open(b.key_id(), &sealed, &aad),
            Err(CryptoError::Authentication)
        );
    }

    #[test]
    fn swapped_associated_data_fails() {
        let enc = Encryptor::new(&MasterKey::generate());
        let aad = aad();
        let sealed = enc.seal(&SigningSecret::generate(), &aad);
        let other_mode = SecretAad {
            mode: Mode::Test,
            ..aad
        };
        let other_row = SecretAad {
            secret_id: SecretId::new(),
            ..aad
        };
        assert_eq!(
            enc.open(enc.key_id(), &sealed, &other_mode),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            enc.open(enc.key_id(), &sealed, &other_row),
            Err(CryptoError::Authentication)
        );
    }

    #[test]
    fn older_keys_still_open_what_they_sealed() {
        let old_key = MasterKey::generate();
        let old = Encryptor::new(&old_key);
        let aad = aad();
        let secret = SigningSecret::generate();
        let sealed = old.seal(&secret, &aad);
        let new = Encryptor::new(&MasterKey::generate()).with_older(&[old_key]);
        assert_eq!(new.open(old.key_id(), &sealed, &aad).unwrap(), secret);
        let resealed = new.seal(&secret, &aad);
        assert!(
            old.open(new.key_id(), &resealed, &aad).is_err(),
            "new seals use the new key"
        );
    }

    #[test]
    fn tampered_or_short_ciphertexts_fail() {
        let enc = Encryptor::new(&MasterKey::generate());
        let aad = aad();
        let mut sealed = enc.seal(&SigningSecret::generate(), &aad);
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(
            enc.open(enc.key_id(), &sealed, &aad),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            enc.open(enc.key_id(), &sealed[..10], &aad),
            Err(CryptoError::Malformed)
        );
    }
}
