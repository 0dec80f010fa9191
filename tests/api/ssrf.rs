//! The SSRF guard on queued deliveries, with the guard on (`allow_private_networks = false`)
//! and a resolver double (`delivery.lookup`) giving endpoint names the answers a real resolver
//! will not give on demand: a private address, or a public and a private one at once.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use hooksign::config::Config;
use hooksign::delivery::ssrf::{DnsLookup, Lookup};
use serde_json::{json, Value};

use crate::delivery::{endpoint, send_event};
use crate::helpers::{get_ok, spawn_app_with, Backend, TestApp};
use crate::receiver::Receiver;

/// A name that resolves only to loopback, where the test's receiver listens.
const LOOPBACK_NAME: &str = "hooks.loopback.test";
/// A name that resolves only to `::ffff:127.0.0.1`, loopback in IPv6 clothing.
const MAPPED_NAME: &str = "hooks.mapped.test";
/// A name that resolves to loopback first and to a public address second.
const MIXED_NAME: &str = "hooks.mixed.test";
/// The public address of [`MIXED_NAME`]. The documentation ranges (TEST-NET) are refused by
/// the guard, so it is the first address past the shared (CGNAT) range, which the guard allows.
/// Nothing asserted depends on what, if anything, answers there.
const PUBLIC_ADDRESS: &str = "100.128.0.1";

/// Fixed DNS answers (any other name does not resolve), and what the guard handed on to the
/// HTTP client of each answer.
#[derive(Debug)]
struct Answers {
    answers: HashMap<&'static str, Vec<IpAddr>>,
    handed_out: Mutex<Vec<(String, Vec<IpAddr>)>>,
}

impl Answers {
    /// The addresses of `host` the guard has handed to the HTTP client, over all lookups.
    fn handed_out(&self, host: &str) -> Vec<IpAddr> {
        let handed_out = self.handed_out.lock().unwrap();
        handed_out
            .iter()
            .filter(|(name, _)| name == host)
            .flat_map(|(_, ips)| ips.iter().copied())
            .collect()
    }
}

impl Lookup for Answers {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> {
        let answer = self
            .answers
            .get(host.as_str())
            .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no answer for {host}"),
                )
            });
        Box::pin(async move { answer })
    }

    fn handed_out(&self, host: &str, addrs: &[SocketAddr]) {
        let ips = addrs.iter().map(SocketAddr::ip).collect();
        self.handed_out.lock().unwrap().push((host.to_owned(), ips));
    }
}

fn answers() -> Arc<Answers> {
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    Arc::new(Answers {
        answers: HashMap::from([
            (LOOPBACK_NAME, vec![ip("127.0.0.1")]),
            (MAPPED_NAME, vec![ip("::ffff:127.0.0.1")]),
            (MIXED_NAME, vec![ip("127.0.0.1"), ip(PUBLIC_ADDRESS)]),
        ]),
        handed_out: Mutex::new(Vec::new()),
    })
}

fn guard_on(config: &mut Config) {
    config.delivery.allow_private_networks = false;
    config.delivery.lookup = DnsLookup::answering(answers());
}

fn guard_off(config: &mut Config) {
    config.delivery.allow_private_networks = true;
    config.delivery.lookup = DnsLookup::answering(answers());
}

crate::on_both_stores!(
    configure = super::guard_off;
    the_resolver_double_answers_for_deliveries_when_private_networks_are_allowed,
);
crate::on_both_stores!(
    configure = super::guard_on;
    a_queued_delivery_to_a_name_resolving_to_a_private_address_is_never_sent,
);

/// On both stores, like `on_both_stores!`, keeping hold of the answers to read what the guard
/// handed on.
mod a_mixed_public_and_private_answer_never_reaches_the_private_address {
    use super::*;

    async fn run(backend: Backend) {
        let answers = answers();
        let lookup = DnsLookup::answering(answers.clone());
        let app = spawn_app_with(backend, |config| {
            config.delivery.allow_private_networks = false;
            config.delivery.lookup = lookup;
        });
        if let Some(app) = app.await {
            a_mixed_public_and_private_answer_never_reaches_the_private_address(app, &answers)
                .await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run(Backend::Postgres).await;
    }
}

/// The receiver's URL with its host replaced by `name`.
fn url_named(receiver: &Receiver, name: &str) -> String {
    receiver.url.replace("127.0.0.1", name)
}

/// The delivery of `event` (its only one).
async fn only_delivery(app: &TestApp, token: &str, event: &Value) -> String {
    let path = format!("/v1/events/{}", event["id"].as_str().unwrap());
    let detail = get_ok(app, token, &path).await;
    let deliveries = detail["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{detail}");
    deliveries[0]["id"].as_str().unwrap().to_owned()
}

/// Waits until the delivery has made `attempts` attempts and is `status`, and returns it with
/// its attempts.
async fn delivery_after(
    app: &TestApp,
    token: &str,
    id: &str,
    attempts: u64,
    status: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let delivery = get_ok(app, token, &format!("/v1/deliveries/{id}")).await;
        if delivery["attempts"].as_u64() == Some(attempts) && delivery["status"] == status {
            return delivery;
        }
        assert!(
            Instant::now() < deadline,
            "delivery {id} never reached {attempts} attempts and status {status}: {delivery}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The control of the tests below: without the guard, a name the double answers with the
/// receiver's address is delivered to the receiver. So the double is what the engine asks, and
/// a delivery the guard refuses would have arrived without it.
async fn the_resolver_double_answers_for_deliveries_when_private_networks_are_allowed(
    app: TestApp,
) {
    let merchant = app.create_merchant("Unguarded").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    endpoint(
        &app,
        token,
        json!({ "url": url_named(&receiver, LOOPBACK_NAME) }),
    )
    .await;
    let event = send_event(&app, token, "order.created", json!({})).await;
    let delivery = only_delivery(&app, token, &event).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].header("x-hooksign-delivery-id"),
        Some(delivery.as_str())
    );
    delivery_after(&app, token, &delivery, 1, "delivered").await;
}

/// A name passes endpoint creation (only IP literals can be judged then); every attempt of
/// its deliveries is refused after resolution, recorded as `forbidden_address` without the
/// address, and the delivery fails after its last retry. Nothing reaches the receiver.
async fn a_queued_delivery_to_a_name_resolving_to_a_private_address_is_never_sent(app: TestApp) {
    let merchant = app.create_merchant("Private answer").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    for (name, events) in [(LOOPBACK_NAME, "loopback.*"), (MAPPED_NAME, "mapped.*")] {
        endpoint(
            &app,
            token,
            json!({ "url": url_named(&receiver, name), "event_types": [events] }),
        )
        .await;
    }
    let loopback = send_event(&app, token, "loopback.created", json!({})).await;
    let mapped = send_event(&app, token, "mapped.created", json!({})).await;
    let deliveries = [
        only_delivery(&app, token, &loopback).await,
        only_delivery(&app, token, &mapped).await,
    ];
    // The test daemons retry twice (after 5 s and 300 s, ±20 %); then a delivery fails.
    for (attempts, advance) in [(1, 10), (2, 400), (3, 0)] {
        for delivery in &deliveries {
            let status = if attempts == 3 { "failed" } else { "pending" };
            delivery_after(&app, token, delivery, attempts, status).await;
        }
        app.clock.advance(ChronoDuration::seconds(advance));
        app.state.delivery.wake();
    }
    for delivery in &deliveries {
        let failed = get_ok(&app, token, &format!("/v1/deliveries/{delivery}")).await;
        assert_eq!(failed["last_error"], "forbidden_address", "{failed}");
        assert!(failed["delivered_at"].is_null(), "{failed}");
        let history = failed["attempt_history"].as_array().unwrap();
        assert_eq!(history.len(), 3, "{failed}");
        for attempt in history {
            assert_eq!(attempt["error_class"], "forbidden_address", "{failed}");
            assert!(attempt["status_code"].is_null(), "{failed}");
            let shown = attempt["response_body"].as_str().unwrap();
            assert!(shown.starts_with("forbidden_address"), "{failed}");
            assert!(!shown.contains("127.0.0.1"), "{failed}");
        }
    }
    let failed = get_ok(&app, token, "/v1/deliveries?status=failed").await;
    assert_eq!(failed["data"].as_array().unwrap().len(), 2, "{failed}");
    assert!(
        receiver.received().is_empty() && receiver.most_in_flight() == 0,
        "a request reached the loopback receiver"
    );
}

/// A name answering one private and one public address: the guard drops the private one and
/// hands the HTTP client only the public one (read from the answers' record, not from where a
/// connection went, so nothing depends on the outside network). The attempt is recorded as
/// something other than `forbidden_address`, since an address was left, within the endpoint's
/// shortest timeout; nothing reaches the receiver at the private address, listed first.
async fn a_mixed_public_and_private_answer_never_reaches_the_private_address(
    app: TestApp,
    answers: &Answers,
) {
    let merchant = app.create_merchant("Mixed answer").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    endpoint(
        &app,
        token,
        json!({ "url": url_named(&receiver, MIXED_NAME), "timeout_ms": 100 }),
    )
    .await;
    let event = send_event(&app, token, "order.created", json!({})).await;
    let delivery = only_delivery(&app, token, &event).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let attempted = loop {
        let shown = get_ok(&app, token, &format!("/v1/deliveries/{delivery}")).await;
        if shown["attempts"].as_u64() == Some(1) {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "delivery {delivery} never made its first attempt: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let public: IpAddr = PUBLIC_ADDRESS.parse().unwrap();
    let handed_out = answers.handed_out(MIXED_NAME);
    assert!(
        !handed_out.is_empty() && handed_out.iter().all(|ip| *ip == public),
        "the HTTP client was given only the public address: {handed_out:?}"
    );
    let attempt = &attempted["attempt_history"][0];
    assert_ne!(attempt["error_class"], "forbidden_address", "{attempted}");
    let shown = attempt["response_body"].as_str().unwrap_or("");
    assert!(!shown.contains("127.0.0.1"), "{attempted}");
    assert!(
        receiver.received().is_empty() && receiver.most_in_flight() == 0,
        "a request reached the private address"
    );
}
