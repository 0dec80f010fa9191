//! A webhook receiver for tests: records every request on loopback and answers with scripted
//! statuses (200 once the script runs out).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

/// One received request.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<(u16, Vec<(String, String)>)>,
    delay: Duration,
    /// While set, requests wait for it to close (see [`Receiver::hold`]).
    gate: Option<Arc<tokio::sync::Semaphore>>,
    in_flight: usize,
    most_in_flight: usize,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, &'static str) {
    let (delay, gate) = {
        let mut inner = inner.lock().unwrap();
        inner.in_flight += 1;
        inner.most_in_flight = inner.most_in_flight.max(inner.in_flight);
        (inner.delay, inner.gate.clone())
    };
    if let Some(gate) = gate {
        // Closed by `release`: every waiting request goes on.
        let _ = gate.acquire().await;
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut inner = inner.lock().unwrap();
    inner.in_flight -= 1;
    inner.received.push(Received {
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    });
    let (status, extra) = inner.script.pop_front().unwrap_or((200, Vec::new()));
    let mut out = HeaderMap::new();
    for (name, value) in extra {
        out.insert(
            axum::http::HeaderName::try_from(name).unwrap(),
            value.parse().unwrap(),
        );
    }
    (StatusCode::from_u16(status).unwrap(), out, "ok")
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 with a random port.
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, inner }
    }

    /// The next answers, in order.
    pub fn script(&self, statuses: &[u16]) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .script
            .extend(statuses.iter().map(|s| (*s, Vec::new())));
    }

    /// The next answer, with extra response headers.
    pub fn script_with_headers(&self, status: u16, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        self.inner
            .lock()
            .unwrap()
            .script
            .push_back((status, headers));
    }

    /// Answers only after `delay` (a slow receiver).
    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    /// Holds every request from now on, unanswered, until [`Receiver::release`].
    pub fn hold(&self) {
        self.inner.lock().unwrap().gate = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }

    /// Lets the held requests (and all later ones) through.
    pub fn release(&self) {
        if let Some(gate) = self.inner.lock().unwrap().gate.take() {
            gate.close();
        }
    }

    /// How many requests are in progress (arrived, not yet answered).
    pub fn in_flight(&self) -> usize {
        self.inner.lock().unwrap().in_flight
    }

    /// The most requests this receiver has had in progress at once.
    pub fn most_in_flight(&self) -> usize {
        self.inner.lock().unwrap().most_in_flight
    }

    /// Distinct values of a header over everything received.
    pub fn distinct(&self, header: &str) -> std::collections::HashSet<String> {
        self.received()
            .iter()
            .filter_map(|r| r.header(header).map(str::to_owned))
            .collect()
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Waits (up to 15 s) until `count` requests have arrived and returns them.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        self.wait_for_within(count, 300).await
    }

    /// Waits up to `polls` × 50 ms until `count` requests have arrived.
    pub async fn wait_for_within(&self, count: usize, polls: usize) -> Vec<Received> {
        for _ in 0..polls {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {count} deliveries, got {}", self.received().len());
    }
}
