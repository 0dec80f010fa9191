//! Encryption at rest: XChaCha20-Poly1305 under the master key.
//!
//! The associated data binds a ciphertext to its row (secret id, merchant, mode), so copying
//! one merchant's ciphertext into another row makes it fail to decrypt instead of silently
//! handing over the wrong secret. Each ciphertext records the id of the key that sealed it, so
//! the master key can be rotated (`hooksign rekey`).
//!
//! Signing secrets are sealed with [`Encryptor::seal`]; everything else persisted that holds a
//! secret (stored idempotent responses, endpoint headers, the audit chain key) is sealed as
//! bytes with [`Encryptor::seal_bytes`], bound to its row by a [`RowAad`].

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::{MasterKey, SigningSecret};
use zeroize::Zeroizing;

use crate::ids::{ApiKeyId, EndpointId, MerchantId, SecretId};
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

/// What a sealed byte string is bound to: the row it lives in. Each kind has its own prefix,
/// so a ciphertext of one kind never opens as another.
#[derive(Debug, Clone, Copy)]
pub enum RowAad<'a> {
    /// A stored response of `Idempotency-Key` `idempotency_key` of API key `api_key`.
    IdempotentResponse {
        api_key: ApiKeyId,
        idempotency_key: &'a str,
    },
    /// The custom headers of an endpoint.
    EndpointHeaders {
        endpoint: EndpointId,
        merchant: MerchantId,
        mode: Mode,
    },
    /// The key of the audit hash chain, by its id.
    AuditKey { id: &'a str },
}

impl RowAad<'_> {
    fn bytes(&self) -> Vec<u8> {
        // The idempotency key is last: it is the only free-form part, so no `|` in it can
        // make two different rows' associated data equal.
        match self {
            RowAad::IdempotentResponse {
                api_key,
                idempotency_key,
            } => format!("hooksign/idempotent-response/v1|{api_key}|{idempotency_key}"),
            RowAad::EndpointHeaders {
                endpoint,
                merchant,
                mode,
            } => format!("hooksign/endpoint-headers/v1|{endpoint}|{merchant}|{mode}"),
            RowAad::AuditKey { id } => format!("hooksign/audit-key/v1|{id}"),
        }
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
        self.seal_raw(secret.key(), &aad.bytes())
    }

    /// Opens a ciphertext sealed under `key_id` for exactly this row.
    pub fn open(
        &self,
        key_id: &str,
        sealed: &[u8],
        aad: &SecretAad,
    ) -> Result<SigningSecret, CryptoError> {
        let plain = self.open_raw(key_id, sealed, &aad.bytes())?;
        let text = std::str::from_utf8(&plain).map_err(|_| CryptoError::Malformed)?;
        SigningSecret::parse(text).ok_or(CryptoError::Malformed)
    }

    /// Seals any bytes for the row `aad` names: `nonce || ciphertext+tag`.
    pub fn seal_bytes(&self, plain: &[u8], aad: &RowAad<'_>) -> Vec<u8> {
        self.seal_raw(plain, &aad.bytes())
    }

    /// Opens bytes sealed by [`Encryptor::seal_bytes`] under `key_id` for exactly this row.
    /// The plaintext is wiped from memory when dropped.
    pub fn open_bytes(
        &self,
        key_id: &str,
        sealed: &[u8],
        aad: &RowAad<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.open_raw(key_id, sealed, &aad.bytes())
    }

    fn seal_raw(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            // Encryption only fails for plaintexts beyond 256 GiB; request bodies are capped
            // far below that (http.body_limit_bytes).
            .expect("XChaCha20-Poly1305 encryption below 256 GiB cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    fn open_raw(
        &self,
        key_id: &str,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let cipher = self
            .cipher_for(key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        if sealed.len() <= NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Authentication)
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
    fn sealed_bytes_open_only_for_their_row() {
        let enc = Encryptor::new(&MasterKey::generate());
        let api_key = ApiKeyId::new();
        let aad = RowAad::IdempotentResponse {
            api_key,
            idempotency_key: "abc",
        };
        let sealed = enc.seal_bytes(b"{\"token\":\"hk_test_x\"}", &aad);
        assert!(!sealed.windows(7).any(|w| w == b"hk_test"));
        assert_eq!(
            enc.open_bytes(enc.key_id(), &sealed, &aad)
                .unwrap()
                .as_slice(),
            b"{\"token\":\"hk_test_x\"}"
        );
        for other in [
            RowAad::IdempotentResponse {
                api_key,
                idempotency_key: "abd",
            },
            RowAad::IdempotentResponse {
                api_key: ApiKeyId::new(),
                idempotency_key: "abc",
            },
            RowAad::AuditKey { id: "abc" },
        ] {
            assert_eq!(
                enc.open_bytes(enc.key_id(), &sealed, &other),
                Err(CryptoError::Authentication),
                "{other:?}"
            );
        }
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
