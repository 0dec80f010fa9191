//! The audit log: every mutation is recorded (actor key, action, target, request id, time) in
//! the same transaction as the change, never with a secret, and chained under a key.
//!
//! Each merchant has its own chain (operator actions form the `operator` chain). An entry's
//! hash is an HMAC-SHA256 over every field and the previous entry's hash, keyed with the
//! **audit key**: 32 random bytes made once per database and stored sealed under the master
//! key (`audit_keys`), so whoever can write the database but does not hold the master key can
//! neither recompute a chain after editing a row nor forge a new one. Each row records the id
//! of the key it was chained with. `hooksign rekey` re-seals the audit key like every other
//! sealed row, so a master-key rotation keeps old entries verifiable.
//!
//! Each chain's head (last sequence number and hash) is also kept in `audit_heads`, updated in
//! the same transaction as every append, so deleting the last entries is found by `hooksign
//! audit verify`. An attacker who also rewinds the head row is found only against a head
//! anchored outside the database: `hooksign audit head` prints the heads, and `hooksign audit
//! verify --expect-head CHAIN=HASH` fails unless the chain still holds that entry.
//!
//! Databases from before keyed chains held plain SHA-256 chains. The process that applies the
//! keyed-chain migration (`serve` or `migrate`, both holding the master key) checks each such
//! chain with the old hash and, if intact, **re-chains** it under the audit key; a legacy chain
//! that does not verify is left as it is and reported by `verify`. After that an unkeyed row
//! is never accepted and nothing in the database can ask for a re-chain again: an attacker who
//! rewrites rows and recomputes the plain SHA-256 chain (with or without the key id) is found.
//! (Re-chaining trusts the legacy log once, at the upgrade; a head anchored before it no
//! longer matches afterwards, so anchor after upgrading.)
//!
//! Pruning (`retention.audit_days`) removes a chain's oldest entries as a prefix and records a
//! **checkpoint** in the same transaction: the last pruned entry's `seq` and `hash`, with a MAC
//! under the audit key ([`checkpoint_mac`]). Verification then starts from the checkpoint
//! instead of the genesis hash, so the rest of the chain stays verifiable; deleting more old
//! entries, or moving the checkpoint forward over them, is found, since the MAC cannot be
//! made without the master key.
//!
//! This module is pure (the keys, the hashes, checking a chain handed to it), so the store
//! can chain each entry inside the transaction that appends it; [`stored`] reads a chain back
//! out of a store to verify it.

pub mod stored;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::records::{AuditCheckpoint, AuditHead, AuditRecord};

/// `prev_hash` of the first entry of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The key audit chains are keyed with. Its `id` (not secret) is stored on every entry.
#[derive(Clone)]
pub struct AuditKey {
    id: String,
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.id)
    }
}

impl AuditKey {
    /// Wraps raw key bytes; the id is derived from them.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"hooksign audit key id\0");
        hasher.update(bytes);
        let id = format!("ak_{}", hex::encode(&hasher.finalize()[..6]));
        Self {
            id,
            bytes: Zeroizing::new(bytes),
        }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// The id stored on each entry.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The raw bytes, to be sealed under the master key.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

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

impl<'a> HashedFields<'a> {
    /// The hashed fields of a stored entry.
    pub fn of(entry: &'a AuditRecord) -> Self {
        HashedFields {
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
        }
    }

    /// Feeds the length-prefixed fields to `update`.
    fn feed(&self, mut update: impl FnMut(&[u8])) {
        let mut put = |value: Option<&str>| match value {
            // Length prefixes keep ("ab","c") and ("a","bc") apart; `None` differs from "".
            Some(text) => {
                update(&(text.len() as u64).to_be_bytes());
                update(text.as_bytes());
            }
            None => update(&u64::MAX.to_be_bytes()),
        };
        let seq = self.seq.to_string();
        let created_at = self.created_at.to_string();
        put(Some(self.prev_hash));
        put(Some(self.id));
        put(Some(self.chain));
        put(Some(&seq));
        put(self.merchant_id);
        put(self.mode);
        put(self.actor_key_id);
        put(Some(self.action));
        put(Some(self.target));
        put(self.request_id);
        put(Some(self.details));
        put(Some(&created_at));
    }
}

/// HMAC-SHA256 under the audit key over the key id and the length-prefixed fields, lowercase
/// hex.
pub fn entry_hash(key: &AuditKey, fields: &HashedFields<'_>) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.bytes.as_slice())
        .expect("HMAC takes a key of any length");
    mac.update(b"hooksign audit chain v1\0");
    mac.update(&(key.id.len() as u64).to_be_bytes());
    mac.update(key.id.as_bytes());
    fields.feed(|bytes| mac.update(bytes));
    hex::encode(mac.finalize().into_bytes())
}

/// The unkeyed SHA-256 of chains written before keyed chains; only used to check a legacy
/// chain before it is re-chained.
pub fn legacy_entry_hash(fields: &HashedFields<'_>) -> String {
    let mut hasher = Sha256::new();
    fields.feed(|bytes| hasher.update(bytes));
    hex::encode(hasher.finalize())
}

/// Where a chain stops being consistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("chain {chain}: entry {seq} ({id}) does not follow the previous entry")]
    Broken { chain: String, seq: i64, id: String },
    #[error("chain {chain}: entry {seq} ({id}) was altered")]
    Altered { chain: String, seq: i64, id: String },
    #[error(
        "chain {chain}: entry {seq} ({id}) is not keyed with this database's audit key ({key})"
    )]
    NotKeyed {
        chain: String,
        seq: i64,
        id: String,
        key: String,
    },
    #[error(
        "chain {chain}: ends at entry {found} but its recorded head is entry {head}: entries were deleted"
    )]
    Truncated {
        chain: String,
        found: i64,
        head: i64,
    },
    #[error(
        "chain {chain}: holds no entry with the expected head hash {hash}: truncated or rewritten"
    )]
    UnexpectedHead { chain: String, hash: String },
    #[error("chain {chain}: its pruning checkpoint (entry {seq}) was not made with this database's audit key")]
    ForgedCheckpoint { chain: String, seq: i64 },
}

/// The MAC of a pruning checkpoint: HMAC-SHA256 under the audit key over the chain, the last
/// pruned entry's `seq` and its `hash`, lowercase hex.
pub fn checkpoint_mac(key: &AuditKey, chain: &str, seq: i64, hash: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.bytes.as_slice())
        .expect("HMAC takes a key of any length");
    mac.update(b"hooksign audit checkpoint v1\0");
    for part in [key.id.as_str(), chain, &seq.to_string(), hash] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Checks one chain, given in `seq` order, under `key`, and that it ends at its recorded
/// `head`. Returns how many entries were checked.
pub fn verify_chain(
    entries: &[AuditRecord],
    key: &AuditKey,
    head: Option<&AuditHead>,
) -> Result<usize, ChainError> {
    verify_chain_from(entries, key, None, head)
}

/// [`verify_chain`] for a chain that may have been pruned: with a `checkpoint`, the first entry
/// must follow it (instead of the genesis hash), and the checkpoint's MAC must be this key's.
pub fn verify_chain_from(
    entries: &[AuditRecord],
    key: &AuditKey,
    checkpoint: Option<&AuditCheckpoint>,
    head: Option<&AuditHead>,
) -> Result<usize, ChainError> {
    let (start_seq, mut expected_prev) = match checkpoint {
        Some(checkpoint) => {
            let expected = checkpoint_mac(key, &checkpoint.chain, checkpoint.seq, &checkpoint.hash);
            let same: bool =
                subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), checkpoint.mac.as_bytes())
                    .into();
            if !same {
                return Err(ChainError::ForgedCheckpoint {
                    chain: checkpoint.chain.clone(),
                    seq: checkpoint.seq,
                });
            }
            (checkpoint.seq, checkpoint.hash.clone())
        }
        None => (0, GENESIS_HASH.to_owned()),
    };
    for (index, entry) in entries.iter().enumerate() {
        let in_place =
            entry.seq == start_seq + index as i64 + 1 && entry.prev_hash == expected_prev;
        if !in_place {
            return Err(ChainError::Broken {
                chain: entry.chain.clone(),
                seq: entry.seq,
                id: entry.id.clone(),
            });
        }
        if entry.key_id.as_deref() != Some(key.id()) {
            return Err(ChainError::NotKeyed {
                chain: entry.chain.clone(),
                seq: entry.seq,
                id: entry.id.clone(),
                key: key.id().to_owned(),
            });
        }
        let recomputed = entry_hash(key, &HashedFields::of(entry));
        let same: bool =
            subtle::ConstantTimeEq::ct_eq(recomputed.as_bytes(), entry.hash.as_bytes()).into();
        if !same {
            return Err(ChainError::Altered {
                chain: entry.chain.clone(),
                seq: entry.seq,
                id: entry.id.clone(),
            });
        }
        expected_prev = entry.hash.clone();
    }
    if let Some(head) = head {
        let (found, last_hash) = entries.last().map_or_else(
            || match checkpoint {
                Some(checkpoint) => (checkpoint.seq, checkpoint.hash.as_str()),
                None => (0, GENESIS_HASH),
            },
            |last| (last.seq, last.hash.as_str()),
        );
        if found != head.seq || last_hash != head.hash {
            return Err(ChainError::Truncated {
                chain: head.chain.clone(),
                found,
                head: head.seq,
            });
        }
    }
    Ok(entries.len())
}

/// Checks that a verified chain still holds the entry with `hash` (a head anchored outside the
/// database earlier: the chain may have grown since, never shrunk or been rewritten).
pub fn check_expected_head(
    chain: &str,
    entries: &[AuditRecord],
    hash: &str,
) -> Result<(), ChainError> {
    if entries.iter().any(|entry| entry.hash == hash) {
        Ok(())
    } else {
        Err(ChainError::UnexpectedHead {
            chain: chain.to_owned(),
            hash: hash.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
