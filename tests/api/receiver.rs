//! A webhook receiver for tests: records every request on loopback and answers with scripted
//! statuses (200 once the script runs out). Also [`BadReceiver`], raw TCP receivers that
//! misbehave (never answer, reset, trickle, answer 100 MB, speak garbage or bad TLS).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

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
    /// Fails (500) the first request of every n-th delivery id it sees (see
    /// [`Receiver::fail_first_request_of_every`]); 0 = never.
    fail_every: usize,
    /// Requests seen per delivery id, in the order the ids first arrived.
    per_delivery: std::collections::HashMap<String, (usize, usize)>,
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
    let every = inner.fail_every;
    if every > 0 {
        let id = headers
            .get("x-hooksign-delivery-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let next = inner.per_delivery.len();
        let (order, seen) = inner.per_delivery.entry(id).or_insert((next, 0));
        *seen += 1;
        if *seen == 1 && *order % every == 0 {
            return (StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new(), "ok");
        }
    }
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

    /// From now on answers 500 to the first request of every `n`-th new delivery id (by the
    /// order the ids first arrive), so those deliveries are retried; 200 to everything else.
    pub fn fail_first_request_of_every(&self, n: usize) {
        self.inner.lock().unwrap().fail_every = n;
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

/// How a [`BadReceiver`] misbehaves once it has read a request's head.
#[derive(Clone)]
pub enum Misbehaviour {
    /// Never answers; holds the connection until the client gives up.
    Silent,
    /// Writes half an answer's head, then resets the connection (`SO_LINGER` 0).
    ResetMidAnswer,
    /// Writes its whole answer a byte a second, from the status line on.
    TrickleHead,
    /// Writes a 200 head at once, then its 2 KiB body a byte a second.
    TrickleBody,
    /// Answers 200 with a 100 MB body, writing for as long as the client reads.
    HugeBody,
    /// Answers with something that is not HTTP.
    Garbage,
    /// Speaks TLS with this configuration (its certificate), then answers a plain 200.
    Tls(Arc<tokio_rustls::rustls::ServerConfig>),
}

/// The size of [`Misbehaviour::HugeBody`]'s body.
pub const HUGE_BODY_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Default)]
struct BadStats {
    connections: AtomicUsize,
    /// Requests answered in full (only a TLS receiver whose certificate was accepted does).
    answered: AtomicUsize,
    /// Body bytes a [`Misbehaviour::HugeBody`] receiver got into the socket.
    written: AtomicU64,
    /// At each connection's end: how many requests the watched receiver had by then.
    watched_at_close: Mutex<Vec<usize>>,
}

/// A raw TCP receiver that misbehaves in one way ([`Misbehaviour`]), noting at the end of each
/// connection how many requests a healthy [`Receiver`] had received by then: "the healthy
/// endpoint got its delivery while this one still held its connection", with no clock.
#[derive(Clone)]
pub struct BadReceiver {
    /// `http://127.0.0.1:PORT/hook` (`https://` for [`Misbehaviour::Tls`]).
    pub url: String,
    stats: Arc<BadStats>,
}

impl BadReceiver {
    /// Starts one on 127.0.0.1 with a random port, watching `healthy`.
    pub async fn start(kind: Misbehaviour, healthy: Option<Receiver>) -> BadReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if matches!(kind, Misbehaviour::Tls(_)) {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{}/hook", listener.local_addr().unwrap());
        let stats = Arc::new(BadStats::default());
        let shared = stats.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let (stats, kind, healthy) = (shared.clone(), kind.clone(), healthy.clone());
                tokio::spawn(async move {
                    misbehave(stream, kind, &stats).await;
                    let seen = healthy.map_or(0, |healthy| healthy.received().len());
                    stats.watched_at_close.lock().unwrap().push(seen);
                });
            }
        });
        BadReceiver { url, stats }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Requests answered in full.
    pub fn answered(&self) -> usize {
        self.stats.answered.load(Ordering::SeqCst)
    }

    /// Body bytes written so far (see [`Misbehaviour::HugeBody`]).
    pub fn written(&self) -> u64 {
        self.stats.written.load(Ordering::SeqCst)
    }

    /// Waits (up to 15 s) for the first connection to end; how many requests the watched
    /// receiver had received by then.
    pub async fn watched_when_first_connection_closed(&self) -> usize {
        for _ in 0..300 {
            if let Some(seen) = self.stats.watched_at_close.lock().unwrap().first() {
                return *seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no connection to {} ended", self.url);
    }
}

/// Reads up to the end of a request's head (or of the stream); whether a head arrived.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// Reads until the client closes.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 4096];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Writes `bytes` one a second, until done or the client has gone.
async fn trickle(stream: &mut TcpStream, bytes: &[u8]) {
    for byte in bytes {
        if stream.write_all(&[*byte]).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn misbehave(mut stream: TcpStream, kind: Misbehaviour, stats: &BadStats) {
    if let Misbehaviour::Tls(config) = kind {
        let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await else {
            return; // the client refused the certificate
        };
        if read_head(&mut tls).await {
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
            if tls.write_all(answer).await.is_ok() && tls.shutdown().await.is_ok() {
                stats.answered.fetch_add(1, Ordering::SeqCst);
            }
        }
        return;
    }
    if !read_head(&mut stream).await {
        return;
    }
    match kind {
        Misbehaviour::Silent => drain(&mut stream).await,
        Misbehaviour::ResetMidAnswer => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
            let _ = stream.set_zero_linger();
            drop(stream); // RST, not FIN
        }
        Misbehaviour::TrickleHead => {
            trickle(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            )
            .await
        }
        Misbehaviour::TrickleBody => {
            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 2048\r\n\r\n";
            if stream.write_all(head).await.is_ok() {
                trickle(&mut stream, &[b'x'; 2048]).await;
            }
        }
        Misbehaviour::HugeBody => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {HUGE_BODY_BYTES}\r\n\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            while stats.written.load(Ordering::SeqCst) < HUGE_BODY_BYTES {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
                stats
                    .written
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
        Misbehaviour::Garbage => {
            let _ = stream
                .write_all(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe garbage \x01\x02\r\n\r\n")
                .await;
            drain(&mut stream).await;
        }
        Misbehaviour::Tls(_) => unreachable!("answered above"),
    }
}
