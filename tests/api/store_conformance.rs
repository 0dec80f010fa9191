//! One conformance suite for both `Store` implementations, below the HTTP layer.

use chrono::Utc;
use hooksign::ids::{AuditId, MerchantId};
use hooksign::ids::{EndpointId, EventId};
use hooksign::keys::{Mode, ScopeSet, TokenKind};
use hooksign::provision::{create_merchant, new_key, Actor};
use hooksign::records::Decision;
use hooksign::signing::Scheme;
use hooksign::store::{
    AttemptRecord, ClaimedDelivery, DeliveryStatus, EndpointRecord, FinishedAttempt, MerchantPatch,
    NewAuditEvent, NewEvent, Page, StoreError,
};

use crate::helpers::TestApp;
use crate::on_both_stores;

on_both_stores!(
    store_creates_reads_lists_and_updates_merchants,
    store_finds_keys_by_hash_only,
    store_refuses_a_duplicate_token_hash,
    store_refuses_a_second_active_secret,
    store_keeps_each_audit_chain_in_order,
    store_writes_batches_of_events_and_outcomes,
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
    assert_eq!(
        hooksign::audit::stored::verify_stored_chain(store, &id.to_string())
            .await
            .unwrap(),
        chain
    );
    let chains = store.audit_chains().await.unwrap();
    assert!(
        chains.contains(&id.to_string()) && chains.contains(&"operator".to_owned()),
        "{chains:?}"
    );
}

fn endpoint(merchant: MerchantId, event_types: &[&str]) -> EndpointRecord {
    EndpointRecord {
        id: EndpointId::new(),
        merchant_id: merchant,
        mode: Mode::Test,
        url: "https://example.com/hook".into(),
        description: String::new(),
        event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
        scheme: Scheme::Bolt,
        enabled: true,
        max_in_flight: 10,
        timeout_ms: 1_000,
        headers: Default::default(),
        disabled_reason: None,
        disabled_at: None,
        failing_since: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        tls_verify: true,
    }
}

fn event(merchant: MerchantId, event_type: &str) -> NewEvent {
    NewEvent {
        id: EventId::new(),
        merchant_id: merchant,
        mode: Mode::Test,
        event_type: event_type.into(),
        body: br#"{"data":{}}"#.to_vec(),
        created_at: Utc::now(),
    }
}

fn outcome(claim: &ClaimedDelivery, decision: Decision, status: u16) -> FinishedAttempt {
    FinishedAttempt {
        delivery_id: claim.id,
        endpoint_id: claim.endpoint.id,
        record: AttemptRecord {
            attempt: claim.attempts + 1,
            started_at: Utc::now(),
            status_code: Some(status),
            latency_ms: 3,
            error_class: (status >= 300).then(|| "http_status".to_owned()),
            response_body: String::new(),
            signatures: vec!["X-Bolt-Hmac-Sha256".into()],
        },
        decision,
        now: Utc::now(),
        disable_after: chrono::Duration::days(3),
    }
}

async fn store_writes_batches_of_events_and_outcomes(app: TestApp) {
    let store = app.state.store.as_ref();
    let mut merchants = Vec::new();
    for name in ["Batch A", "Batch B"] {
        let created = create_merchant(
            store,
            &app.state.encryptor,
            name,
            Actor::default(),
            Utc::now(),
        )
        .await
        .unwrap();
        merchants.push(created.merchant.id);
    }
    let (a, b) = (merchants[0], merchants[1]);
    let everything = endpoint(a, &[]);
    let orders = endpoint(a, &["order.*"]);
    let other = endpoint(b, &[]);
    for ep in [&everything, &orders, &other] {
        store
            .create_endpoint(ep, 100, &audit(Some(ep.merchant_id), "endpoint.create"))
            .await
            .unwrap();
    }

    // Three events of two merchants in one transaction; each gets its own deliveries.
    let events = [
        event(a, "order.created"),
        event(a, "refund.created"),
        event(b, "order.created"),
    ];
    let created = store.ingest_events(&events).await.unwrap();
    assert_eq!(created.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 1]);
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 3);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
            .await,
        4
    );
    let (_, deliveries) = store.get_event(a, Mode::Test, events[0].id).await.unwrap();
    let mut ids: Vec<_> = deliveries.iter().map(|d| d.id).collect();
    let mut expected = created[0].clone();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected);

    // A claim skips the endpoints it is told are busy.
    let now = Utc::now();
    let lease_until = now + chrono::Duration::seconds(60);
    let first = store
        .claim_due("w/1", now, lease_until, 10, &[everything.id, other.id])
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].endpoint.id, orders.id);
    let second = store
        .claim_due("w/2", now, lease_until, 10, &[])
        .await
        .unwrap();
    assert_eq!(second.len(), 3);
    let of = |ep: EndpointId| second.iter().filter(move |c| c.endpoint.id == ep);
    let to_everything: Vec<_> = of(everything.id).collect();
    let to_other = of(other.id).next().unwrap();

    // One batch of outcomes: a delivery, two failures, and one under a lease it does not hold.
    let retry_at = now + chrono::Duration::seconds(5);
    let batch = vec![
        (
            "w/1".to_owned(),
            outcome(&first[0], Decision::Delivered, 200),
        ),
        (
            "w/2".to_owned(),
            outcome(to_everything[0], Decision::RetryAt(retry_at), 500),
        ),
        (
            "w/2".to_owned(),
            outcome(to_everything[1], Decision::RetryAt(retry_at), 503),
        ),
        (
            "w/9".to_owned(),
            outcome(to_other, Decision::Delivered, 200),
        ),
    ];
    let disabled = store.finish_attempts(&batch).await.unwrap();
    assert_eq!(disabled, vec![None, None, None, None]);
    let (delivered, attempts) = store
        .get_delivery(a, Mode::Test, first[0].id)
        .await
        .unwrap();
    assert_eq!(delivered.status, DeliveryStatus::Delivered);
    assert_eq!(delivered.attempts, 1);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(200));
    for claim in &to_everything {
        let (retrying, attempts) = store.get_delivery(a, Mode::Test, claim.id).await.unwrap();
        assert_eq!(retrying.status, DeliveryStatus::Pending);
        assert_eq!(
            retrying.next_attempt_at.timestamp_millis(),
            retry_at.timestamp_millis()
        );
        assert_eq!(attempts.len(), 1);
    }
    let failing = store
        .get_endpoint(a, Mode::Test, everything.id)
        .await
        .unwrap();
    assert!(failing.failing_since.is_some(), "the failure streak starts");
    // The attempt under someone else's lease is recorded, but the delivery stays as it was.
    let (untouched, attempts) = store
        .get_delivery(b, Mode::Test, to_other.id)
        .await
        .unwrap();
    assert_eq!(untouched.status, DeliveryStatus::Pending);
    assert_eq!(untouched.attempts, 0);
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE leased_by = 'w/2'")
            .await,
        1
    );

    // A failure and then a delivery to the same endpoint in one batch: the streak ends.
    let later = retry_at + chrono::Duration::seconds(1);
    let again = store
        .claim_due(
            "w/3",
            later,
            later + chrono::Duration::seconds(60),
            10,
            &[other.id],
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 2);
    let batch = vec![
        (
            "w/3".to_owned(),
            outcome(
                &again[0],
                Decision::RetryAt(later + chrono::Duration::seconds(5)),
                500,
            ),
        ),
        (
            "w/3".to_owned(),
            outcome(&again[1], Decision::Delivered, 204),
        ),
    ];
    store.finish_attempts(&batch).await.unwrap();
    let recovered = store
        .get_endpoint(a, Mode::Test, everything.id)
        .await
        .unwrap();
    assert!(
        recovered.failing_since.is_none(),
        "the last outcome was a delivery"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM delivery_attempts").await, 6);
}
