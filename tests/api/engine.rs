//! The delivery engine under load and at its edges: the per-endpoint slots never strand a
//! claim, nothing stays queued in memory, and in-flight deliveries are not sent twice.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::delivery::endpoint;
use crate::helpers::{spawn_app_with, Backend, TestApp};
use crate::receiver::Receiver;

/// Events sent in the stress test; each goes to two endpoints.
const STRESS_EVENTS: usize = 1_500;

/// Thousands of instant deliveries to endpoints capped at 1 and 2 in flight, on a runtime with
/// several threads so that deliveries end while the dispatcher admits new claims for the same
/// endpoints: every delivery arrives, and afterwards no claim is queued in memory and no
/// endpoint is left busy (issue 12, item 9: such an endpoint was skipped until a restart).
async fn instant_deliveries_to_capped_endpoints_all_arrive_and_leave_nothing_queued(app: TestApp) {
    let merchant = app.create_merchant("Stress").await;
    let token = merchant.test_token.clone();
    let (one, two) = (Receiver::start().await, Receiver::start().await);
    endpoint(&app, &token, json!({ "url": one.url, "max_in_flight": 1 })).await;
    endpoint(&app, &token, json!({ "url": two.url, "max_in_flight": 2 })).await;
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let client = app.client.clone();
        let url = format!("{}/v1/events", app.base);
        let token = token.clone();
        senders.spawn(async move {
            for n in (sender..STRESS_EVENTS).step_by(8) {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "type": "order.created", "payload": { "n": n } }))
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 202);
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.expect("sender");
    }
    let deadline = Duration::from_secs(120);
    loop {
        let delivered = app
            .count("SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'")
            .await;
        let engine = &app.state.delivery;
        if delivered == 2 * STRESS_EVENTS as i64
            && engine.in_flight() == 0
            && engine.queued_claims() == 0
            && engine.busy_endpoints() == 0
        {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "after {deadline:?}: {delivered} of {} delivered, {} in flight, {} claims queued, {} endpoints busy",
            2 * STRESS_EVENTS,
            engine.in_flight(),
            engine.queued_claims(),
            engine.busy_endpoints(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(one.received().len(), STRESS_EVENTS);
    assert_eq!(two.received().len(), STRESS_EVENTS);
    assert!(one.most_in_flight() <= 1 && two.most_in_flight() <= 2);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries WHERE leased_by IS NOT NULL")
            .await,
        0
    );
}

async fn stress_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |config| {
        config.auth.rate_per_sec = 100_000;
        config.auth.burst = 100_000;
    })
    .await
}

mod instant_deliveries_to_capped_endpoints {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let app = super::stress_app(super::Backend::Sqlite)
            .await
            .expect("sqlite app");
        super::instant_deliveries_to_capped_endpoints_all_arrive_and_leave_nothing_queued(app)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        if let Some(app) = super::stress_app(super::Backend::Postgres).await {
            super::instant_deliveries_to_capped_endpoints_all_arrive_and_leave_nothing_queued(app)
                .await;
        }
    }
}
