//! Signing secrets: the material itself, its encryption at rest and the master key.
//!
//! The rotation state machine (initiate → complete → revert) is the pure [`rotation`]. All of
//! this is plain types and a pure rule (free of storage and HTTP) except two services above
//! the store:
//! [`keyring`] (loads and opens a merchant's secrets) and [`scheduler`] (the background task
//! that completes, fires and sweeps rotations).

mod crypto;
pub mod keyring;
mod master_key;
mod material;
pub mod rotation;
pub mod scheduler;

pub use crypto::{CryptoError, Encryptor, RowAad, SecretAad};
pub use master_key::{
    create_private_dir, ensure_private_file, load_master_key, load_previous_master_key,
    read_key_file, write_private_file, MasterKey, MasterKeyError, MasterKeySource,
};
pub use material::SigningSecret;
