//! The secrets a merchant signs with right now, decrypted: the active one and, during a
//! rotation, the pending one. Read at the moment of use, so a signature always reflects the
//! latest completed, cancelled or reverted rotation.

use crate::ids::{MerchantId, SecretId};
use crate::keys::Mode;
use crate::records::{in_state, SecretState};
use crate::secrets::{Encryptor, SecretAad, SigningSecret};
use crate::signing::SigningKeys;
use crate::store::{SecretRecord, Store};

/// One decrypted secret and its row.
#[derive(Debug, Clone)]
pub struct OpenSecret {
    pub id: SecretId,
    pub fingerprint: String,
    pub secret: SigningSecret,
}

/// The active and pending secrets of one merchant and mode.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub active: OpenSecret,
    pub pending: Option<OpenSecret>,
}

impl Keyring {
    /// The keys as the signer takes them.
    pub fn signing_keys(&self) -> SigningKeys<'_> {
        SigningKeys {
            active: self.active.secret.key(),
            pending: self.pending.as_ref().map(|p| p.secret.key()),
        }
    }
}

/// Why the secrets could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("signing secret {id} cannot be decrypted: {source}")]
    Crypto {
        id: SecretId,
        source: crate::secrets::CryptoError,
    },
    #[error("no active signing secret")]
    NoActive,
}

/// Opens one sealed row.
pub fn open_row(encryptor: &Encryptor, row: &SecretRecord) -> Result<OpenSecret, KeyringError> {
    let aad = SecretAad {
        secret_id: row.id,
        merchant_id: row.merchant_id,
        mode: row.mode,
    };
    let secret = encryptor
        .open(&row.key_id, &row.ciphertext, &aad)
        .map_err(|source| KeyringError::Crypto { id: row.id, source })?;
    Ok(OpenSecret {
        id: row.id,
        fingerprint: row.fingerprint.clone(),
        secret,
    })
}

/// Loads and decrypts the active and pending secrets.
pub async fn load_keyring(
    store: &dyn Store,
    encryptor: &Encryptor,
    merchant: MerchantId,
    mode: Mode,
) -> Result<Keyring, KeyringError> {
    let rows = store.signing_secrets(merchant, mode).await?;
    let active = open_row(
        encryptor,
        in_state(&rows, SecretState::Active).ok_or(KeyringError::NoActive)?,
    )?;
    let pending = in_state(&rows, SecretState::Pending)
        .map(|row| open_row(encryptor, row))
        .transpose()?;
    Ok(Keyring { active, pending })
}
