//! An example webhook receiver for hooksign deliveries, built on axum and `hooksign::verify`.
//!
//! ```sh
//! cargo run --example receiver -- --scheme bolt --secret-file secrets.txt --port 9000
//! HOOKSIGN_VERIFY_SECRETS="$OLD,$NEW" cargo run --example receiver -- --scheme standard
//! ```
//!
//! What to copy into your own receiver:
//! - verify the **raw body bytes**, before any JSON parsing (re-serialised JSON does not verify);
//! - during a rotation configure the old *and* the new secret: the `matched` index in the log
//!   tells you when only the new one matches, after which the old one can go;
//! - read secrets from a file or the environment: a command-line argument is visible to every
//!   user of the machine in `ps`;
//! - verify the one scheme your endpoint uses (`--scheme`, required): choosing it from the headers
//!   present would let anyone strip the `webhook-*` headers and pass as `bolt`, which has no
//!   timestamp check;
//! - answer 401 on a bad signature, and 200 fast otherwise, doing the real work afterwards;
//! - dedupe on an id the signature covers: hooksign retries until it gets a 2xx, so the same
//!   event can arrive twice. That is `webhook-id` (Standard Webhooks) or the event `id` in the
//!   signed body (bolt), never `X-Hooksign-Delivery-Id`, which a replayer can change at will.
//!
//! It prints `{"listening":PORT}` once, then one JSON line per request (never a secret), like the
//! Python and Node receivers in `examples/`, so one harness can drive all three.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use hooksign::verify::{HeaderSource, Scheme, Verifier, WEBHOOK_ID};
use serde_json::{json, Value};

/// Example hooksign webhook receiver: verifies every POST and answers
/// 200 {"ok":true,"matched":i,"duplicate":bool} or 401 {"ok":false,"reason":"..."}.
#[derive(Parser)]
#[command(name = "receiver")]
struct Args {
    /// File holding the signing secrets to accept, one per line (old and new during a
    /// rotation), each the hex string or its whsec_ form; repeatable. Without any (and without
    /// --secret), $HOOKSIGN_VERIFY_SECRETS is read: secrets separated by commas.
    #[arg(long = "secret-file", value_name = "PATH")]
    secret_files: Vec<PathBuf>,
    /// A signing secret to accept; repeatable. VISIBLE TO OTHER USERS (ps, /proc) and kept in
    /// shell history: prefer --secret-file or $HOOKSIGN_VERIFY_SECRETS.
    #[arg(long = "secret", value_name = "SECRET")]
    secrets: Vec<String>,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// The scheme of the hooksign endpoint pointing here: bolt or standard (for a `both`
    /// endpoint, pick standard: its timestamp bounds replays). Only that scheme is accepted.
    #[arg(long, value_name = "bolt|standard")]
    scheme: Scheme,
    /// Seconds a webhook-timestamp may be off (standard scheme).
    #[arg(long, default_value_t = 300)]
    tolerance: u64,
}

/// Secrets separated by commas (or whitespace), read when no --secret or --secret-file is given.
const SECRETS_ENV: &str = "HOOKSIGN_VERIFY_SECRETS";

impl Args {
    /// Every secret given by flag and file, else those in [`SECRETS_ENV`]. Errors name the
    /// file or variable, never a secret.
    fn all_secrets(&self) -> Result<Vec<String>, (ErrorKind, String)> {
        let split = |text: &str| -> Vec<String> {
            text.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut secrets = self.secrets.clone();
        for path in &self.secret_files {
            let text = std::fs::read_to_string(path).map_err(|err| {
                let why = format!("cannot read the secret file {}: {err}", path.display());
                (ErrorKind::Io, why)
            })?;
            secrets.extend(split(&text));
        }
        if secrets.is_empty() {
            secrets = split(&std::env::var(SECRETS_ENV).unwrap_or_default());
        }
        if secrets.is_empty() {
            let why = format!("give --secret-file PATH or set {SECRETS_ENV} (or --secret)");
            return Err((ErrorKind::MissingRequiredArgument, why));
        }
        Ok(secrets)
    }
}

#[derive(Clone)]
struct Receiver {
    verifier: Arc<Verifier>,
    scheme: Scheme,
    seen: Arc<Mutex<SeenEvents>>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let secrets = match args.all_secrets() {
        Ok(secrets) => secrets,
        Err((kind, why)) => Args::command().error(kind, why).exit(),
    };
    // Fail at start on a mistyped secret, not later as every delivery being refused.
    let verifier = match Verifier::new(&secrets) {
        Ok(verifier) => verifier,
        // The message never includes the secret itself.
        Err(err) => Args::command().error(ErrorKind::InvalidValue, err).exit(),
    };
    let receiver = Receiver {
        verifier: Arc::new(verifier.with_tolerance(Duration::from_secs(args.tolerance))),
        scheme: args.scheme,
        seen: Arc::new(Mutex::new(SeenEvents::new(100_000))),
    };
    // Every path: the endpoint URL registered in hooksign decides which one is used.
    let app = Router::new().fallback(post(receive)).with_state(receiver);
    let listener = tokio::net::TcpListener::bind((args.host, args.port)).await?;
    println!("{}", json!({ "listening": listener.local_addr()?.port() }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes, // the raw bytes, exactly as signed
) -> (StatusCode, Json<Value>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let scheme = receiver.scheme;
    let verified = receiver
        .verifier
        .verify(scheme, pairs.as_slice(), &body, unix_now());
    let (status, answer, matched, dedupe_id, duplicate, reason) = match verified {
        Ok(matched) => {
            // Only verified deliveries are remembered, so forgeries cannot poison the set.
            let id = signed_id(scheme, pairs.as_slice(), &body);
            let duplicate = id
                .as_deref()
                .is_some_and(|id| !receiver.seen.lock().unwrap().insert(id));
            if !duplicate {
                tokio::spawn(handle_event(body));
            }
            let i = matched.secret_index;
            let answer = json!({ "ok": true, "matched": i, "duplicate": duplicate });
            (StatusCode::OK, answer, Some(i), id, duplicate, None)
        }
        Err(err) => {
            let reason = err.to_string();
            let answer = json!({ "ok": false, "reason": reason });
            (
                StatusCode::UNAUTHORIZED,
                answer,
                None,
                None,
                false,
                Some(reason),
            )
        }
    };
    println!(
        "{}",
        json!({
            // Unsigned, so only for matching this line with hooksign's records.
            "delivery_id": header("X-Hooksign-Delivery-Id"),
            "event_id": header("X-Hooksign-Event-Id"),
            "attempt": header("X-Hooksign-Attempt"),
            "dedupe_id": dedupe_id,
            "scheme": scheme.as_str(),
            "status": status.as_u16(),
            "ok": status.is_success(),
            "matched": matched,
            "duplicate": duplicate,
            "reason": reason,
        })
    );
    (status, Json(answer))
}

/// The id to dedupe on, one the signature covers: `webhook-id` (Standard Webhooks signs it
/// with the body) or the event `id` inside the signed body (bolt signs the body only). `None`
/// for a body that has none, which hooksign never sends.
fn signed_id(scheme: Scheme, headers: &[(&str, &str)], body: &[u8]) -> Option<String> {
    let id = match scheme {
        Scheme::Standard => headers.header(WEBHOOK_ID).map(str::to_owned),
        Scheme::Bolt => match serde_json::from_slice::<Value>(body).ok()?.get("id")? {
            Value::String(id) => Some(id.clone()),
            _ => None,
        },
    };
    // Trimmed as the verifier reads it.
    id.map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// Your work goes here. It runs after the 200 is sent: hooksign waits for the answer (15 s by
/// default), so slow work in the handler would turn into timeouts and retries.
async fn handle_event(body: Bytes) {
    // Parse only now that the signature is verified.
    if let Ok(event) = serde_json::from_slice::<Value>(&body) {
        eprintln!("received {} {}", event["type"], event["id"]);
    }
}

fn unix_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

/// Signed event ids already accepted, oldest forgotten first. A real app would record them in its
/// database, in the same transaction as the work the event triggers.
struct SeenEvents {
    ids: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl SeenEvents {
    fn new(capacity: usize) -> Self {
        let (ids, order) = (HashSet::new(), VecDeque::new());
        Self {
            ids,
            order,
            capacity,
        }
    }

    /// Records `id`; false if it had been seen already.
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > self.capacity {
            self.order.pop_front().map(|old| self.ids.remove(&old));
        }
        true
    }
}

/// Resolves on ctrl-c or SIGTERM, so the receiver exits 0 after in-flight requests finish.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
