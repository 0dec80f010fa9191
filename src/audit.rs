//! The audit log: every mutation is recorded (actor key, action, target, request id, time) in
//! the same transaction as the change, never with a secret, and hash-chained.
//!
//! Each merchant has its own chain (operator actions form the `operator` chain), so appends are
//! serialised by the per-merchant lock the mutation already holds. An entry's hash covers every
//! field and the previous entry's hash; `hooksign audit verify` recomputes the chains, so an
//! edited, deleted or reordered row is found.

use sha2::{Digest, Sha256};

use crate::store::AuditRecord;

/// `prev_hash` of the first entry of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields an entry's hash covers, in a fixed order.
#[derive(Debug, Clone, Copy)]
pub struct HashedFields<'a> {
    pub id: &'a str,
    pub chain: &'a str,
    pub seq: i64,
    pub merchant_id: Option<&'a str>,
    pub mode: Option<&'a str>,
    pub actor_key_id: Option<&'a str>,
    pub action: &'a str,
    pub target: &'a str,
    pub request_id: Option<&'a str>,
    pub details: &'a str,
    pub created_at: i64,
    pub prev_hash: &'a str,
}

/// SHA-256 over the length-prefixed fields, lowercase hex.
pub fn entry_hash(fields: &HashedFields<'_>) -> String {
    let mut hasher = Sha256::new();
    let mut put = |value: Option<&str>| match value {
        // Length prefixes keep ("ab","c") and ("a","bc") apart; `None` differs from "".
        Some(text) => {
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        }
        None => hasher.update(u64::MAX.to_be_bytes()),
    };
    let seq = fields.seq.to_string();
    let created_at = fields.created_at.to_string();
    put(Some(fields.prev_hash));
    put(Some(fields.id));
    put(Some(fields.chain));
    put(Some(&seq));
    put(fields.merchant_id);
    put(fields.mode);
    put(fields.actor_key_id);
    put(Some(fields.action));
    put(Some(fields.target));
    put(fields.request_id);
    put(Some(fields.details));
    put(Some(&created_at));
    hex::encode(hasher.finalize())
}

/// Where a chain stops being consistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("chain {chain}: entry {seq} ({id}) does not follow the previous entry")]
    Broken { chain: String, seq: i64, id: String },
    #[error("chain {chain}: entry {seq} ({id}) was altered")]
    Altered { chain: String, seq: i64, id: String },
}

/// Checks one chain, given in `seq` order. Returns how many entries were checked.
pub fn verify_chain(entries: &[AuditRecord]) -> Result<usize, ChainError> {
    let mut expected_prev = GENESIS_HASH.to_owned();
    for (index, entry) in entries.iter().enumerate() {
        let in_place = entry.seq == index as i64 + 1 && entry.prev_hash == expected_prev;
        if !in_place {
            return Err(ChainError::Broken {
                chain: entry.chain.clone(),
                seq: entry.seq,
                id: entry.id.clone(),
            });
        }
        let recomputed = entry_hash(&HashedFields {
            id: &entry.id,
            chain: &entry.chain,
            seq: entry.seq,
            merchant_id: entry.merchant_id.as_deref(),
            mode: entry.mode.as_deref(),
            actor_key_id: entry.actor_key_id.as_deref(),
            action: &entry.action,
            target: &entry.target,
            request_id: entry.request_id.as_deref(),
            details: &entry.details,
            created_at: entry.created_at,
            prev_hash: &entry.prev_hash,
        });
        if recomputed != entry.hash {
            return Err(ChainError::Altered {
                chain: entry.chain.clone(),
                seq: entry.seq,
                id: entry.id.clone(),
            });
        }
        expected_prev = entry.hash.clone();
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut record = AuditRecord {
                    id: format!("aud_{seq}"),
                    chain: "operator".into(),
                    seq,
                    merchant_id: None,
                    mode: None,
                    actor_key_id: Some("key_1".into()),
                    action: "merchant.create".into(),
                    target: format!("mch_{seq}"),
                    request_id: None,
                    details: "{}".into(),
                    created_at: 1_700_000_000_000 + seq,
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                record.hash = entry_hash(&HashedFields {
                    id: &record.id,
                    chain: &record.chain,
                    seq,
                    merchant_id: None,
                    mode: None,
                    actor_key_id: record.actor_key_id.as_deref(),
                    action: &record.action,
                    target: &record.target,
                    request_id: None,
                    details: &record.details,
                    created_at: record.created_at,
                    prev_hash: &record.prev_hash,
                });
                prev = record.hash.clone();
                record
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(5));
    }

    #[test]
    fn an_edited_entry_is_found() {
        let mut entries = chain(5);
        entries[2].target = "mch_evil".into();
        assert!(matches!(
            verify_chain(&entries),
            Err(ChainError::Altered { seq: 3, .. })
        ));
    }

    #[test]
    fn a_deleted_entry_is_found() {
        let mut entries = chain(5);
        entries.remove(1);
        assert!(matches!(
            verify_chain(&entries),
            Err(ChainError::Broken { seq: 3, .. })
        ));
    }
}
