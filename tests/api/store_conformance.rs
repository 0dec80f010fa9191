//! One conformance suite for both `Store` implementations, below the HTTP layer.

use chrono::Utc;
use hooksign::ids::{AuditId, MerchantId};
use hooksign::keys::{Mode, ScopeSet, TokenKind};
use hooksign::provision::{create_merchant, new_key, Actor};
use hooksign::store::{MerchantPatch, NewAuditEvent, Page, StoreError};

use crate::helpers::TestApp;
use crate::on_both_stores;

on_both_stores!(
    store_creates_reads_lists_and_updates_merchants,
    store_finds_keys_by_hash_only,
    store_refuses_a_duplicate_token_hash,
    store_refuses_a_second_active_secret,
    store_keeps_each_audit_chain_in_order,
);

fn audit(merchant: Option<MerchantId>, action: &'static str) -> NewAuditEvent {
    NewAuditEvent {
        id: AuditId::new(),
        merchant_id: merchant,
        mode: None,
        actor_key_id: None,
        action,
        target: "t".into(),
        request_id: None,
        details: serde_json::json!({}),
        created_at: Utc::now(),
    }
}

async fn store_creates_reads_lists_and_updates_merchants(app: TestApp) {
    let store = app.state.store.as_ref();
    let created = create_merchant(
        store,
        &app.state.encryptor,
        "Conformance",
        Actor::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    let id = created.merchant.id;
    let record = store.get_merchant(id).await.unwrap();
    assert_eq!(record.name, "Conformance");
    assert!(!record.disabled);
    let listed = store
        .list_merchants(&Page {
            limit: 10,
            starting_after: None,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let patch = MerchantPatch {
        name: None,
        disabled: Some(true),
        updated_at: Some(Utc::now()),
    };
    let updated = store
        .update_merchant(id, &patch, &audit(Some(id), "merchant.update"))
        .await
        .unwrap();
    assert!(updated.disabled);
    assert_eq!(
        updated.name, "Conformance",
        "unpatched fields keep their value"
    );
    let missing = store
        .update_merchant(MerchantId::new(), &patch, &audit(None, "merchant.update"))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
    assert!(matches!(
        store.get_merchant(MerchantId::new()).await,
        Err(StoreError::NotFound)
    ));
}

async fn store_finds_keys_by_hash_only(app: TestApp) {
    let store = app.state.store.as_ref();
    let created = create_merchant(
        store,
        &app.state.encryptor,
        "Hashes",
        Actor::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    let (key, token) = &created.keys[0];
    let found = store
        .find_api_key_by_hash(&token.hash())
        .await
        .unwrap()
        .expect("found by hash");
    assert_eq!(found.key.id, key.id);
    assert_eq!(found.key.scopes, ScopeSet::all());
    assert!(!found.merchant_disabled);
    assert!(
        store
            .find_api_key_by_hash(token.expose())
            .await
            .unwrap()
            .is_none(),
        "never by raw token"
    );
    assert_eq!(
        store.get_api_key(key.id).await.unwrap().display_prefix,
        token.display_prefix()
    );
}

async fn store_refuses_a_duplicate_token_hash(app: TestApp) {
    let store = app.state.store.as_ref();
    let (key, _) = new_key(
        TokenKind::Operator,
        None,
        "one",
        ScopeSet::default(),
        Utc::now(),
    );
    store
        .insert_operator_key(&key, &audit(None, "operator_key.create"))
        .await
        .unwrap();
    let mut twin = key.clone();
    twin.id = hooksign::ids::ApiKeyId::new();
    let result = store
        .insert_operator_key(&twin, &audit(None, "operator_key.create"))
        .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_keys WHERE name = 'one'")
            .await,
        1
    );
}

async fn store_refuses_a_second_active_secret(app: TestApp) {
    let store = app.state.store.as_ref();
    let created = create_merchant(
        store,
        &app.state.encryptor,
        "Unique",
        Actor::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    // The partial unique index holds even against a raw insert.
    let sql = format!(
        "INSERT INTO signing_secrets (id, merchant_id, mode, state, fingerprint, key_id, ciphertext, created_at) \
         VALUES ('sec_x', '{}', 'live', 'active', 'f', 'k', x'00', 0)",
        created.merchant.id
    );
    let sql = if app.backend == crate::helpers::Backend::Postgres {
        sql.replace("x'00'", "'\\x00'::bytea")
    } else {
        sql
    };
    let outcome = app.execute(&sql).await;
    let err = outcome.expect_err("a second active secret must be refused");
    assert!(
        err.as_database_error()
            .is_some_and(|e| e.is_unique_violation()),
        "{err}"
    );
    assert_eq!(
        store
            .signing_secrets(created.merchant.id, Mode::Live)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn store_keeps_each_audit_chain_in_order(app: TestApp) {
    let store = app.state.store.as_ref();
    let created = create_merchant(
        store,
        &app.state.encryptor,
        "Chained",
        Actor::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    let id = created.merchant.id;
    let patch = MerchantPatch {
        name: Some("Chained 2".into()),
        disabled: None,
        updated_at: None,
    };
    for _ in 0..3 {
        store
            .update_merchant(id, &patch, &audit(Some(id), "merchant.update"))
            .await
            .unwrap();
    }
    let chain = store.audit_chain(&id.to_string()).await.unwrap();
    assert_eq!(
        chain.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(hooksign::audit::verify_chain(&chain), Ok(4));
    let chains = store.audit_chains().await.unwrap();
    assert!(
        chains.contains(&id.to_string()) && chains.contains(&"operator".to_owned()),
        "{chains:?}"
    );
}
