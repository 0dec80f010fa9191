//! Paging through the endpoint, event and delivery lists with `limit` and `starting_after`
//! (the last id of the previous page): every object once, newest first, full pages until the
//! last, `has_more` false only there, and never an object of the other mode or merchant.

use serde_json::{json, Value};

use crate::delivery::{endpoint, send_event};
use crate::helpers::{get_ok, TestApp};
use crate::on_both_stores;
use crate::receiver::Receiver;

on_both_stores!(paging_reaches_every_object_once_newest_first_and_nothing_else);

/// Page sizes tried on every list: one at a time, sizes that divide the counts below exactly
/// (so the last page is full and `has_more` must still be false), others that do not, and
/// everything on one page.
const LIMITS: [usize; 5] = [1, 2, 3, 5, 100];

/// Every id of `path` (which may carry a query already), paging with `limit`.
async fn page_through(app: &TestApp, token: &str, path: &str, limit: usize) -> Vec<String> {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    // Far more pages than any list here has: a cursor that does not advance ends the test.
    for _ in 0..100 {
        let mut url = format!("{path}{separator}limit={limit}");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&starting_after={cursor}"));
        }
        let page = get_ok(app, token, &url).await;
        assert_eq!(page["object"], "list", "{url}: {page}");
        let data = page["data"].as_array().unwrap();
        let has_more = page["has_more"].as_bool().unwrap();
        assert!(
            !data.is_empty() || cursor.is_none(),
            "{url}: an empty page after a page that said has_more"
        );
        assert!(data.len() <= limit, "{url}: {} objects", data.len());
        seen.extend(
            data.iter()
                .map(|object| object["id"].as_str().unwrap().to_owned()),
        );
        if !has_more {
            return seen;
        }
        assert_eq!(data.len(), limit, "{url}: a page before the last is full");
        cursor = seen.last().cloned();
    }
    panic!("{path} with limit {limit}: has_more never became false");
}

/// Asserts that every page size gives exactly `expected`, in its order.
async fn assert_pages(app: &TestApp, token: &str, path: &str, expected: &[String]) {
    for limit in LIMITS {
        let seen = page_through(app, token, path, limit).await;
        assert_eq!(seen, expected, "{path} paged by {limit}");
    }
}

fn id(object: &Value) -> String {
    object["id"].as_str().unwrap().to_owned()
}

/// The ids of an event's deliveries, each with its endpoint's.
async fn deliveries_of(app: &TestApp, token: &str, event: &str) -> Vec<(String, String)> {
    let detail = get_ok(app, token, &format!("/v1/events/{event}")).await;
    let deliveries = detail["deliveries"].as_array().unwrap();
    deliveries
        .iter()
        .map(|delivery| {
            let endpoint = delivery["endpoint_id"].as_str().unwrap().to_owned();
            (id(delivery), endpoint)
        })
        .collect()
}

async fn paging_reaches_every_object_once_newest_first_and_nothing_else(app: TestApp) {
    let merchant = app.create_merchant("Pages").await;
    let other = app.create_merchant("Other pages").await;
    let token = &merchant.test_token;
    let receiver = Receiver::start().await;
    // Five test endpoints and four events: twenty deliveries.
    let mut endpoints = Vec::new();
    for n in 0..5 {
        let url = format!("{}/{n}", receiver.url);
        endpoints.push(id(&endpoint(&app, token, json!({ "url": url })).await));
    }
    let mut events = Vec::new();
    for n in 0..4 {
        events.push(id(&send_event(
            &app,
            token,
            "order.created",
            json!({ "n": n }),
        )
        .await));
    }
    let (mut deliveries, mut endpoint_of) = (Vec::new(), Vec::new());
    for event in &events {
        let mine = deliveries_of(&app, token, event).await;
        assert_eq!(mine.len(), 5);
        for (delivery, endpoint) in mine {
            deliveries.push(delivery);
            endpoint_of.push(endpoint);
        }
    }
    // The same kinds of object in the live mode and for another merchant.
    let live = &merchant.live_token;
    let live_endpoint =
        id(&endpoint(&app, live, json!({ "url": "https://127.0.0.1:9/hook" })).await);
    let live_event = id(&send_event(&app, live, "order.created", json!({})).await);
    let live_deliveries: Vec<String> = deliveries_of(&app, live, &live_event)
        .await
        .into_iter()
        .map(|(delivery, _)| delivery)
        .collect();
    assert_eq!(live_deliveries.len(), 1);
    let theirs = &other.test_token;
    let their_endpoint = id(&endpoint(&app, theirs, json!({ "url": receiver.url })).await);
    let their_event = id(&send_event(&app, theirs, "order.created", json!({})).await);
    let their_deliveries: Vec<String> = deliveries_of(&app, theirs, &their_event)
        .await
        .into_iter()
        .map(|(delivery, _)| delivery)
        .collect();
    assert_eq!(their_deliveries.len(), 1);

    // Newest first: the reverse of the order of creation (ids are time-ordered, and an
    // event's deliveries are created in id order).
    let newest_first = |ids: &[String]| ids.iter().rev().cloned().collect::<Vec<_>>();
    let mut by_id = deliveries.clone();
    by_id.sort();
    assert_eq!(by_id, deliveries, "deliveries were created in id order");
    assert_pages(&app, token, "/v1/endpoints", &newest_first(&endpoints)).await;
    assert_pages(&app, token, "/v1/events", &newest_first(&events)).await;
    assert_pages(&app, token, "/v1/deliveries", &newest_first(&deliveries)).await;
    // A filtered list pages the same way: one endpoint's four deliveries.
    let one = &endpoints[2];
    let to_one: Vec<String> = deliveries
        .iter()
        .zip(&endpoint_of)
        .filter(|(_, endpoint)| *endpoint == one)
        .map(|(delivery, _)| delivery.clone())
        .collect();
    assert_eq!(to_one.len(), 4);
    let filtered = format!("/v1/deliveries?endpoint_id={one}");
    for limit in LIMITS {
        let seen = page_through(&app, token, &filtered, limit).await;
        assert_eq!(seen, newest_first(&to_one), "{filtered} paged by {limit}");
    }
    // The other mode and merchant see only their own.
    for (token, endpoint, event, delivery) in [
        (live, &live_endpoint, &live_event, &live_deliveries),
        (theirs, &their_endpoint, &their_event, &their_deliveries),
    ] {
        assert_pages(&app, token, "/v1/endpoints", std::slice::from_ref(endpoint)).await;
        assert_pages(&app, token, "/v1/events", std::slice::from_ref(event)).await;
        assert_pages(&app, token, "/v1/deliveries", delivery).await;
    }
}
