//! The chain's rules: edits, deletions, foreign keys and pruning checkpoints are found.

use super::*;

fn record(key: &AuditKey, seq: i64, prev: &str) -> AuditRecord {
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
        prev_hash: prev.to_owned(),
        hash: String::new(),
        key_id: Some(key.id().to_owned()),
    };
    record.hash = entry_hash(key, &HashedFields::of(&record));
    record
}

fn chain(key: &AuditKey, n: i64) -> Vec<AuditRecord> {
    let mut prev = GENESIS_HASH.to_owned();
    (1..=n)
        .map(|seq| {
            let record = record(key, seq, &prev);
            prev = record.hash.clone();
            record
        })
        .collect()
}

fn head(entries: &[AuditRecord]) -> AuditHead {
    let last = entries.last().unwrap();
    AuditHead {
        chain: last.chain.clone(),
        seq: last.seq,
        hash: last.hash.clone(),
    }
}

#[test]
fn an_intact_chain_verifies() {
    let key = AuditKey::generate();
    let entries = chain(&key, 5);
    assert_eq!(verify_chain(&entries, &key, Some(&head(&entries))), Ok(5));
}

#[test]
fn an_edited_entry_is_found() {
    let key = AuditKey::generate();
    let mut entries = chain(&key, 5);
    entries[2].target = "mch_evil".into();
    assert!(matches!(
        verify_chain(&entries, &key, None),
        Err(ChainError::Altered { seq: 3, .. })
    ));
}

#[test]
fn an_edit_with_recomputed_plain_hashes_is_found() {
    let key = AuditKey::generate();
    let mut entries = chain(&key, 3);
    // What an attacker without the key can do: edit, then redo the unkeyed chain.
    let mut prev = GENESIS_HASH.to_owned();
    entries[1].details = r#"{"forged":true}"#.into();
    for entry in &mut entries {
        entry.prev_hash = prev.clone();
        entry.hash = legacy_entry_hash(&HashedFields::of(entry));
        prev = entry.hash.clone();
    }
    assert!(matches!(
        verify_chain(&entries, &key, None),
        Err(ChainError::Altered { seq: 1, .. })
    ));
    for entry in &mut entries {
        entry.key_id = None;
    }
    assert!(matches!(
        verify_chain(&entries, &key, None),
        Err(ChainError::NotKeyed { seq: 1, .. })
    ));
}

#[test]
fn another_key_does_not_verify() {
    let entries = chain(&AuditKey::generate(), 2);
    assert!(matches!(
        verify_chain(&entries, &AuditKey::generate(), None),
        Err(ChainError::NotKeyed { seq: 1, .. })
    ));
}

#[test]
fn a_deleted_entry_is_found() {
    let key = AuditKey::generate();
    let mut entries = chain(&key, 5);
    entries.remove(1);
    assert!(matches!(
        verify_chain(&entries, &key, None),
        Err(ChainError::Broken { seq: 3, .. })
    ));
}

fn checkpoint_after(key: &AuditKey, last_pruned: &AuditRecord) -> AuditCheckpoint {
    AuditCheckpoint {
        chain: last_pruned.chain.clone(),
        seq: last_pruned.seq,
        hash: last_pruned.hash.clone(),
        mac: checkpoint_mac(key, &last_pruned.chain, last_pruned.seq, &last_pruned.hash),
    }
}

#[test]
fn a_pruned_chain_verifies_from_its_checkpoint() {
    let key = AuditKey::generate();
    let entries = chain(&key, 6);
    let recorded = head(&entries);
    let checkpoint = checkpoint_after(&key, &entries[2]);
    let kept = &entries[3..];
    assert_eq!(
        verify_chain_from(kept, &key, Some(&checkpoint), Some(&recorded)),
        Ok(3)
    );
    // Without the checkpoint the kept entries do not start the chain.
    assert!(matches!(
        verify_chain(kept, &key, Some(&recorded)),
        Err(ChainError::Broken { seq: 4, .. })
    ));
    // Every entry pruned: the checkpoint is the head.
    let all = checkpoint_after(&key, &entries[5]);
    assert_eq!(
        verify_chain_from(&[], &key, Some(&all), Some(&recorded)),
        Ok(0)
    );
}

#[test]
fn entries_deleted_past_the_checkpoint_or_a_moved_checkpoint_are_found() {
    let key = AuditKey::generate();
    let entries = chain(&key, 6);
    let checkpoint = checkpoint_after(&key, &entries[2]);
    assert!(matches!(
        verify_chain_from(&entries[4..], &key, Some(&checkpoint), None),
        Err(ChainError::Broken { seq: 5, .. })
    ));
    // Moving the checkpoint over more deleted entries needs the key.
    let mut moved = checkpoint.clone();
    moved.seq = entries[3].seq;
    moved.hash = entries[3].hash.clone();
    assert!(matches!(
        verify_chain_from(&entries[4..], &key, Some(&moved), None),
        Err(ChainError::ForgedCheckpoint { seq: 4, .. })
    ));
    let mut edited = entries[3..].to_vec();
    edited[1].target = "mch_evil".into();
    assert!(matches!(
        verify_chain_from(&edited, &key, Some(&checkpoint), None),
        Err(ChainError::Altered { seq: 5, .. })
    ));
}

#[test]
fn a_deleted_last_entry_is_found_by_the_head() {
    let key = AuditKey::generate();
    let mut entries = chain(&key, 5);
    let recorded = head(&entries);
    entries.pop();
    assert_eq!(
        verify_chain(&entries, &key, Some(&recorded)),
        Err(ChainError::Truncated {
            chain: "operator".into(),
            found: 4,
            head: 5
        })
    );
    assert!(check_expected_head("operator", &entries, &entries[3].hash).is_ok());
    assert!(check_expected_head("operator", &entries, &recorded.hash).is_err());
}
