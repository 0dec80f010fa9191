//! Verifying a chain as it is stored: loads the entries, the head and the pruning checkpoint
//! (if the chain's oldest entries were pruned) from a store and checks them with the pure
//! [`super::verify_chain_from`]. Service layer: it reads the store.

use super::{verify_chain_from, ChainError};
use crate::store::{AuditRecord, Store, StoreError};

/// Why a stored chain could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Loads and verifies one chain of `store` (which must be unlocked) against its head, from its
/// checkpoint when it was pruned. Returns the entries checked.
pub async fn verify_stored_chain(
    store: &dyn Store,
    chain: &str,
) -> Result<Vec<AuditRecord>, VerifyError> {
    let key = store.audit_key()?;
    let entries = store.audit_chain(chain).await?;
    let head = store
        .audit_heads()
        .await?
        .into_iter()
        .find(|head| head.chain == chain);
    let checkpoint = store.audit_checkpoint(chain).await?;
    verify_chain_from(&entries, &key, checkpoint.as_ref(), head.as_ref())?;
    Ok(entries)
}
