//! One attempt: build the request (the stored body bytes, the `X-Hooksign-*` headers, the
//! endpoint's own headers, and the signature headers computed now), send it through the shared
//! client, and describe what happened.

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::failures::failure;
use super::retry::{parse_retry_after, AttemptResult};
use super::ssrf::{check_literal, GuardedResolver};
use crate::clock::Timestamp;
use crate::config::{DeliveryConfig, MAX_ENDPOINT_TIMEOUT_MS};
use crate::keys::Mode;
use crate::signing::{signature_headers, SigningKeys};
use crate::store::{AttemptRecord, EndpointRecord};

/// How much of a response body is kept with the attempt.
pub const RESPONSE_EXCERPT_BYTES: usize = 1024;

/// The shared HTTP client: pooled keep-alive connections, no redirects, no proxy but the one
/// configured as `delivery.egress_proxy` (proxies named in the environment, `HTTP_PROXY` and
/// the like, would carry requests past the SSRF guard), and the SSRF-guarding resolver unless
/// private networks are allowed or an egress proxy enforces the address policy instead.
pub fn build_client(config: &DeliveryConfig) -> reqwest::Result<reqwest::Client> {
    client_builder(config)?.build()
}

fn client_builder(config: &DeliveryConfig) -> reqwest::Result<reqwest::ClientBuilder> {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(StdDuration::from_secs(90))
        .pool_max_idle_per_host(32)
        .tcp_nodelay(true)
        .user_agent(concat!("hooksign/", env!("CARGO_PKG_VERSION")));
    Ok(match &config.egress_proxy {
        // The proxy resolves and connects to endpoints itself; this client only resolves the
        // proxy's own name, which may well be a private address.
        Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy.as_str())?),
        None => builder.dns_resolver(Arc::new(GuardedResolver::new(
            config.allow_private_networks,
            config.lookup.clone(),
        ))),
    })
}

/// The two clients deliveries go out with, built once: the one that verifies receivers' TLS
/// certificates, and the one for test-mode endpoints that turned verification off
/// (`tls_verify: false`, a receiver with a self-signed certificate on a developer's machine).
/// Both have the same proxy and SSRF policy; only certificate checks differ.
#[derive(Debug, Clone)]
pub struct DeliveryClients {
    verified: reqwest::Client,
    unverified: reqwest::Client,
}

impl DeliveryClients {
    /// Both clients, as [`build_client`] configures them.
    pub fn build(config: &DeliveryConfig) -> reqwest::Result<Self> {
        Ok(Self {
            verified: client_builder(config)?.build()?,
            unverified: client_builder(config)?
                .danger_accept_invalid_certs(true)
                .build()?,
        })
    }

    /// The client that verifies certificates.
    pub fn verified(&self) -> &reqwest::Client {
        &self.verified
    }

    /// The client for `endpoint`. A live-mode endpoint is always verified, whatever its row
    /// says: the API refuses `tls_verify: false` in live mode, and a row changed by hand must
    /// not send live events to a receiver whose certificate nobody checked.
    pub fn for_endpoint(&self, endpoint: &EndpointRecord) -> &reqwest::Client {
        if endpoint.mode == Mode::Test && !endpoint.tls_verify {
            &self.unverified
        } else {
            &self.verified
        }
    }
}

/// What one delivery attempt carries besides the body.
#[derive(Debug, Clone)]
pub struct AttemptContext<'a> {
    pub event_id: &'a str,
    pub delivery_id: &'a str,
    pub attempt: u32,
    pub now: Timestamp,
}

/// Header names the daemon sets itself (compared case-insensitively).
pub const RESERVED_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "user-agent",
    "host",
    "transfer-encoding",
    "connection",
];

/// Prefixes of the header names the daemon sets itself (signatures and `X-Hooksign-*`).
pub const RESERVED_HEADER_PREFIXES: [&str; 3] = ["x-hooksign-", "x-bolt-", "webhook-"];

/// Headers reserved for the daemon: endpoint-configured headers may not set them.
pub fn is_reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    RESERVED_HEADERS.contains(&name.as_str())
        || RESERVED_HEADER_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// The full header set of an attempt. Returns the headers and the names of the signature
/// headers among them.
pub fn attempt_headers(
    endpoint: &EndpointRecord,
    keys: &SigningKeys<'_>,
    body: &[u8],
    context: &AttemptContext<'_>,
) -> (HeaderMap, Vec<String>) {
    let mut headers = HeaderMap::new();
    for (name, value) in &endpoint.headers {
        if is_reserved_header(name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    let timestamp = context.now.timestamp();
    let fixed = [
        ("content-type", "application/json".to_owned()),
        ("x-hooksign-event-id", context.event_id.to_owned()),
        ("x-hooksign-delivery-id", context.delivery_id.to_owned()),
        ("x-hooksign-attempt", context.attempt.to_string()),
        ("x-hooksign-timestamp", timestamp.to_string()),
    ];
    let signatures = signature_headers(endpoint.scheme, keys, body, context.event_id, timestamp);
    let mut names = Vec::new();
    for (name, value) in fixed
        .into_iter()
        .chain(signatures.iter().map(|(n, v)| (*n, v.clone())))
    {
        if let (Ok(header), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(&value))
        {
            headers.insert(header, value);
        }
    }
    names.extend(signatures.iter().map(|(name, _)| (*name).to_owned()));
    (headers, names)
}

/// Sends one attempt and reports its result and record. The endpoint's timeout bounds the
/// whole exchange, the response body included, and at most [`RESPONSE_EXCERPT_BYTES`] (plus one
/// chunk) of the body is read.
pub async fn send_attempt(
    clients: &DeliveryClients,
    allow_private_networks: bool,
    endpoint: &EndpointRecord,
    keys: &SigningKeys<'_>,
    body: &[u8],
    context: &AttemptContext<'_>,
) -> (AttemptResult, AttemptRecord) {
    let (headers, signatures) = attempt_headers(endpoint, keys, body, context);
    let started = Instant::now();
    let outcome = match literal_host_check(&endpoint.url, allow_private_networks) {
        Err(err) => Err(err),
        Ok(()) => {
            let request = clients
                .for_endpoint(endpoint)
                .post(&endpoint.url)
                .headers(headers)
                .timeout(attempt_timeout(endpoint))
                .body(body.to_vec());
            request.send().await.map_err(|err| failure(&err))
        }
    };
    let (result, excerpt) = match outcome {
        Err(result) => {
            let excerpt = failure_excerpt(&result);
            (result, excerpt)
        }
        Ok(response) => {
            let code = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, context.now));
            match read_excerpt(response).await {
                Ok(excerpt) => (AttemptResult::Status { code, retry_after }, excerpt),
                // The answer was cut off (or not finished within the timeout) before the
                // excerpt was read: not an answer, so the delivery is tried again.
                Err(result) => {
                    let excerpt = failure_excerpt(&result);
                    (result, excerpt)
                }
            }
        }
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    let record = AttemptRecord {
        attempt: context.attempt,
        started_at: context.now,
        status_code: match &result {
            AttemptResult::Status { code, .. } => Some(*code),
            _ => None,
        },
        latency_ms,
        error_class: Some(result.class().to_owned()).filter(|class| class != "success"),
        response_body: excerpt,
        signatures,
    };
    (result, record)
}

/// The excerpt stored for a failed attempt: the reason (never an address the SSRF guard
/// refused), or nothing for a timeout.
fn failure_excerpt(result: &AttemptResult) -> String {
    match result {
        AttemptResult::Connection(reason)
        | AttemptResult::Reset(reason)
        | AttemptResult::Protocol(reason)
        | AttemptResult::Tls(reason) => truncate(reason),
        AttemptResult::Forbidden => FORBIDDEN_EXCERPT.to_owned(),
        AttemptResult::Timeout | AttemptResult::Status { .. } => String::new(),
    }
}

/// The endpoint's timeout, never above the cap the API enforces (a row written before the cap,
/// or by hand, must not outlast the delivery lease either).
fn attempt_timeout(endpoint: &EndpointRecord) -> StdDuration {
    StdDuration::from_millis(u64::from(endpoint.timeout_ms.min(MAX_ENDPOINT_TIMEOUT_MS)))
}

/// What a merchant is told about an attempt the SSRF guard refused (never the address).
pub const FORBIDDEN_EXCERPT: &str =
    "forbidden_address: the endpoint's host resolves only to addresses deliveries may not reach";

fn literal_host_check(url: &str, allow_private: bool) -> Result<(), AttemptResult> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|err| AttemptResult::Connection(format!("invalid URL: {err}")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| AttemptResult::Connection("URL has no host".to_owned()))?;
    check_literal(host, allow_private).map_err(|err| {
        err.log();
        AttemptResult::Forbidden
    })
}

/// The first [`RESPONSE_EXCERPT_BYTES`] of the body; then the response is dropped, which
/// closes a connection whose body was not read to its end (a 100 MB answer is never buffered,
/// nor read on). An error before that much arrived (or the end) fails the attempt.
async fn read_excerpt(mut response: reqwest::Response) -> Result<String, AttemptResult> {
    let mut kept = Vec::with_capacity(RESPONSE_EXCERPT_BYTES);
    while kept.len() < RESPONSE_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(err) => return Err(failure(&err)),
        }
    }
    Ok(truncate(&String::from_utf8_lossy(&kept)))
}

fn truncate(text: &str) -> String {
    if text.len() <= RESPONSE_EXCERPT_BYTES {
        return text.to_owned();
    }
    let mut end = RESPONSE_EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;

    /// Set (to the address of a listener standing in for the endpoint) only in the child
    /// process of [`proxies_named_in_the_environment_are_not_used`].
    const CHILD_TARGET: &str = "HOOKSIGN_TEST_DIRECT_TARGET";

    fn listener() -> TcpListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        listener
    }

    fn was_connected_to(listener: &TcpListener) -> bool {
        listener.accept().is_ok()
    }

    /// Sends one request with the delivery client (its answer does not matter: the listeners
    /// never answer).
    fn send_one(config: &DeliveryConfig, url: &str) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = build_client(config).unwrap();
            let _ = client
                .post(url)
                .timeout(Duration::from_millis(500))
                .send()
                .await;
        });
    }

    /// Issue 12, item 6: reqwest honours `HTTP(S)_PROXY`, which carried deliveries past the
    /// SSRF guard. The environment is process-wide, so the client is built in a child process
    /// (this test binary, running only this test) that is given the proxy variables.
    #[test]
    fn proxies_named_in_the_environment_are_not_used() {
        if let Ok(target) = std::env::var(CHILD_TARGET) {
            let config = DeliveryConfig {
                allow_private_networks: true,
                ..DeliveryConfig::default()
            };
            send_one(&config, &format!("http://{target}/hook"));
            return;
        }
        let (proxy, endpoint) = (listener(), listener());
        let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args([
                "--exact",
                "delivery::sender::tests::proxies_named_in_the_environment_are_not_used",
                "--test-threads=1",
            ])
            .env(CHILD_TARGET, endpoint.local_addr().unwrap().to_string())
            .env_remove("NO_PROXY")
            .env_remove("no_proxy");
        for name in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            child.env(name, &proxy_url);
        }
        let output = child.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("1 passed"),
            "the child ran the test"
        );
        assert!(
            !was_connected_to(&proxy),
            "the delivery went through the environment's proxy"
        );
        assert!(
            was_connected_to(&endpoint),
            "the delivery went straight to the endpoint"
        );
    }

    #[test]
    fn the_configured_egress_proxy_is_used() {
        let (proxy, endpoint) = (listener(), listener());
        let config = DeliveryConfig {
            egress_proxy: Some(format!("http://{}", proxy.local_addr().unwrap())),
            ..DeliveryConfig::default()
        };
        send_one(
            &config,
            &format!("http://{}/hook", endpoint.local_addr().unwrap()),
        );
        assert!(was_connected_to(&proxy));
        assert!(!was_connected_to(&endpoint));
    }

    /// With an egress proxy the daemon resolves no endpoint host and connects to nothing but
    /// the proxy (`.ci/schemathesis.sh` relies on it: fuzzed endpoints name random hosts, and
    /// its proxy is a closed loopback port). A name under `.invalid` never resolves, so a
    /// connection reaching the proxy proves the client did not try to.
    #[test]
    fn with_an_egress_proxy_endpoint_hosts_are_never_resolved() {
        for url in [
            "http://hooksign-never-resolved.invalid/hook",
            "https://hooksign-never-resolved.invalid/hook",
        ] {
            let proxy = listener();
            let config = DeliveryConfig {
                egress_proxy: Some(format!("http://{}", proxy.local_addr().unwrap())),
                ..DeliveryConfig::default()
            };
            send_one(&config, url);
            assert!(was_connected_to(&proxy), "{url} did not go to the proxy");
        }
    }

    /// Only a test-mode endpoint that turned verification off gets the unverified client; a
    /// live-mode row saying `tls_verify = false` (written by hand) is verified all the same.
    #[test]
    fn only_test_mode_endpoints_may_skip_certificate_checks() {
        let clients = DeliveryClients::build(&DeliveryConfig::default()).unwrap();
        let now = chrono::Utc::now();
        let endpoint = |mode, tls_verify| EndpointRecord {
            id: crate::ids::EndpointId::new(),
            merchant_id: crate::ids::MerchantId::new(),
            mode,
            url: "https://example.com/hook".into(),
            description: String::new(),
            event_types: Vec::new(),
            scheme: crate::signing::Scheme::Bolt,
            enabled: true,
            max_in_flight: 1,
            timeout_ms: 1_000,
            headers: Default::default(),
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
            tls_verify,
        };
        let verified = |mode, tls_verify| {
            std::ptr::eq(
                clients.for_endpoint(&endpoint(mode, tls_verify)),
                clients.verified(),
            )
        };
        assert!(!verified(Mode::Test, false));
        assert!(verified(Mode::Test, true));
        assert!(verified(Mode::Live, false));
        assert!(verified(Mode::Live, true));
    }
}
