//! Interoperability (issue 7): the daemon's deliveries verify in all three example receivers,
//! Rust (`examples/receiver.rs`), Python and Node, run as child processes, through a whole
//! rotation.
//!
//! Each receiver verifies one scheme (`--scheme`, which every receiver requires) with one
//! secret, the old or the new one, and gets one endpoint of its scheme. While the rotation is
//! pending every receiver accepts every delivery (the old-only ones through
//! `X-Bolt-Hmac-Sha256`, the new-only ones through `X-Bolt-Hmac-Sha256-Pending`; Standard
//! Webhooks carries both in one header); after `complete` only the new-only receivers accept,
//! after `revert` only the old-only ones. A second test checks, in every language, that a
//! receiver cannot start without a scheme, that a Standard receiver refuses a delivery stripped
//! to its `X-Bolt` headers, and that a replay under another `X-Hooksign-Delivery-Id` is still a
//! duplicate. A language whose interpreter is not installed (no python3 or node) is skipped,
//! except under CI (see `helpers::in_ci`); a receiver that starts and then crashes, or never
//! says which port it listens on, fails the test everywhere.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::{endpoint, send_event};
use crate::helpers::{get_ok, skip, spawn_app, Backend, OutputWithin, TestApp, CHILD_DEADLINE};

/// Path of the built Rust example receiver. Built here (once per test run) because
/// `cargo test --test api` does not build examples; under a plain `cargo test` this is a no-op.
pub fn receiver_example() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // Next to the daemon binary: the same target directory and profile as this test.
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_hooksign"))
            .parent()
            .expect("binary directory");
        let profile = match bin_dir.file_name().and_then(|name| name.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "--example", "receiver"])
            .args(["--profile", profile])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // Not with the variables cargo sets for this test run: build scripts watch some of them
        // (ring's watches CARGO_MANIFEST_DIR), and a change would rebuild half the tree twice.
        let set_for_tests = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
        ];
        for (name, _) in std::env::vars_os() {
            if set_for_tests
                .iter()
                .any(|prefix| name.to_string_lossy().starts_with(prefix))
            {
                cargo.env_remove(name);
            }
        }
        // A first build of the example on a busy machine takes a while.
        let output = cargo.output_within(Duration::from_secs(900));
        assert!(
            output.status.success(),
            "cargo build --example receiver failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let path = bin_dir
            .join("examples")
            .join(format!("receiver{}", std::env::consts::EXE_SUFFIX));
        assert!(path.is_file(), "no receiver at {}", path.display());
        path
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Rust,
    Python,
    Node,
}

impl Lang {
    const ALL: [Lang; 3] = [Lang::Rust, Lang::Python, Lang::Node];

    fn command(self) -> Command {
        let example = |path: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        match self {
            Lang::Rust => Command::new(receiver_example()),
            Lang::Python => {
                let mut command = Command::new("python3");
                command.arg(example("examples/python/verify.py"));
                command
            }
            Lang::Node => {
                let mut command = Command::new("node");
                command.arg(example("examples/node/verify.mjs"));
                command
            }
        }
    }
}

/// Which secret a receiver was configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Old,
    New,
}

/// The schemes a receiver can verify.
const SCHEMES: [&str; 2] = ["bolt", "standard"];

/// How a receiver is given its secret: both keep it off the command line, out of `ps`.
#[derive(Debug, Clone, Copy)]
enum SecretVia<'a> {
    /// `HOOKSIGN_VERIFY_SECRETS`.
    Env(&'a str),
    /// `--secret-file PATH`.
    File(&'a Path),
}

/// A receiver child process, killed when dropped (also when the test panics).
struct ReceiverProcess {
    name: String,
    holds: Holds,
    scheme: &'static str,
    port: u16,
    child: Child,
    /// Every stdout line, parsed.
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ReceiverProcess {
    /// Starts `lang`'s receiver for `scheme` with the secret given `via` the environment or a
    /// file, on a port it picks itself; `None` when the language's interpreter is not installed
    /// (see the module docs).
    async fn start(
        lang: Lang,
        holds: Holds,
        scheme: &'static str,
        via: SecretVia<'_>,
    ) -> Option<ReceiverProcess> {
        let name = format!("{lang:?} {scheme} receiver holding the {holds:?} secret");
        let mut command = lang.command();
        command.args(["--port", "0", "--scheme", scheme]);
        match via {
            SecretVia::Env(secret) => command.env("HOOKSIGN_VERIFY_SECRETS", secret),
            SecretVia::File(path) => command
                .arg("--secret-file")
                .arg(path)
                .env_remove("HOOKSIGN_VERIFY_SECRETS"),
        };
        let spawned = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return not_installed(lang, &name, &err.to_string())
            }
            Err(err) => panic!("{name} could not start: {err}"),
        };
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let parsed = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push(parsed);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
        let mut process = ReceiverProcess {
            name,
            holds,
            scheme,
            port: 0,
            child,
            lines,
            stderr,
        };
        for _ in 0..400 {
            let first = process.lines.lock().unwrap().first().cloned();
            if let Some(port) = first.and_then(|line| line["listening"].as_u64()) {
                process.port = u16::try_from(port).expect("a port");
                return Some(process);
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                // Its last words, if the pipe has them yet.
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "{} crashed before listening ({status}): {}",
                    process.name,
                    process.stderr.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{} printed no {{\"listening\":PORT}} line in 20 s: {}",
            process.name,
            process.stderr.lock().unwrap()
        )
    }

    /// The lines logged for `delivery`, once there are `count` of them (waits up to 15 s).
    async fn wait_lines(&self, delivery: &str, count: usize) -> Vec<Value> {
        for _ in 0..300 {
            let found: Vec<Value> = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|line| line["delivery_id"] == delivery)
                .cloned()
                .collect();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{} logged fewer than {count} lines for {delivery}; stdout: {:?}; stderr: {}",
            self.name,
            self.lines.lock().unwrap(),
            self.stderr.lock().unwrap()
        );
    }
}

/// A receiver whose interpreter is not installed: fatal for Rust (built above) and under CI,
/// a skip otherwise.
fn not_installed<T>(lang: Lang, name: &str, why: &str) -> Option<T> {
    assert!(lang != Lang::Rust, "{name} could not start: {why}");
    let program = match lang {
        Lang::Python => "python3",
        _ => "node",
    };
    skip(
        &format!("{lang:?} interop receivers"),
        &format!("{program} is not installed"),
    );
    None
}

/// One endpoint: which receiver it points at, with that receiver's scheme.
struct Target {
    receiver: usize,
    holds: Holds,
    scheme: &'static str,
    endpoint_id: String,
}

async fn post(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app.authed(Method::POST, path, token).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Waits until the delivery has made `attempts` attempts and returns it with its history.
async fn wait_attempts(app: &TestApp, token: &str, delivery: &str, attempts: usize) -> Value {
    for _ in 0..300 {
        let body = get_ok(app, token, &format!("/v1/deliveries/{delivery}")).await;
        if body["attempt_history"]
            .as_array()
            .is_some_and(|history| history.len() >= attempts)
        {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("delivery {delivery} never made {attempts} attempts");
}

/// Sends one event to every endpoint and checks each first attempt: 200 where `accepts` says
/// the receiver's secret is current, 401 elsewhere, as recorded by the daemon and as logged by
/// the receiver. Returns each target's delivery id.
async fn send_and_check(
    app: &TestApp,
    token: &str,
    receivers: &[ReceiverProcess],
    targets: &[Target],
    phase: &str,
    accepts: impl Fn(Holds) -> bool,
) -> Vec<String> {
    let event = send_event(app, token, "order.created", json!({ "phase": phase })).await;
    let event_id = event["id"].as_str().unwrap();
    assert_eq!(event["delivery_count"], targets.len(), "{event}");
    let listed = get_ok(
        app,
        token,
        &format!("/v1/deliveries?event_id={event_id}&limit=100"),
    )
    .await;
    let listed = listed["data"].as_array().unwrap();
    let mut deliveries = Vec::new();
    for target in targets {
        let receiver = &receivers[target.receiver];
        let about = format!("{phase}: {} ({} endpoint)", receiver.name, target.scheme);
        let delivery = listed
            .iter()
            .find(|d| d["endpoint_id"] == target.endpoint_id.as_str())
            .unwrap_or_else(|| panic!("{about}: no delivery in {listed:?}"));
        let id = delivery["id"].as_str().unwrap().to_owned();
        let expected = if accepts(target.holds) { 200 } else { 401 };

        let detail = wait_attempts(app, token, &id, 1).await;
        let attempt = &detail["attempt_history"][0];
        assert_eq!(attempt["status_code"], expected, "{about}: {detail}");
        let signed_with = match (target.scheme, phase) {
            ("bolt", "pending") => json!(["X-Bolt-Hmac-Sha256", "X-Bolt-Hmac-Sha256-Pending"]),
            ("bolt", _) => json!(["X-Bolt-Hmac-Sha256"]),
            _ => json!(["webhook-id", "webhook-timestamp", "webhook-signature"]),
        };
        assert_eq!(attempt["signature_headers"], signed_with, "{about}");

        let line = receiver.wait_lines(&id, 1).await.remove(0);
        assert_eq!(line["status"], expected, "{about}: {line}");
        assert_eq!(line["ok"], expected == 200, "{about}: {line}");
        assert_eq!(line["scheme"], target.scheme, "{about}: {line}");
        assert_eq!(line["event_id"], event_id, "{about}: {line}");
        assert_eq!(line["attempt"], "1", "{about}: {line}");
        if expected == 200 {
            assert_eq!(line["matched"], 0, "{about}: {line}");
            assert_eq!(line["duplicate"], false, "{about}: {line}");
            // Deduped on the event id the signature covers (webhook-id, or the body's `id`).
            assert_eq!(line["dedupe_id"], event_id, "{about}: {line}");
        } else {
            // The same reason in every language.
            assert_eq!(
                line["reason"], "no signature matches any configured secret",
                "{about}: {line}"
            );
        }
        deliveries.push(id);
    }
    deliveries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_receiver_verifies_through_a_rotation() {
    receiver_example();
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite app");
    let merchant = app.create_merchant("Interop").await;
    let token = merchant.test_token.as_str();
    let revealed = post(&app, token, "/v1/signing-secret/reveal").await;
    let old = revealed["active"]["secret"].as_str().unwrap().to_owned();

    // Old-only receivers first, given their secret in the environment; the new secret exists
    // only once the rotation starts, and the new-only receivers read it from a file.
    let mut receivers = Vec::new();
    for lang in Lang::ALL {
        for scheme in SCHEMES {
            let via = SecretVia::Env(&old);
            receivers.extend(ReceiverProcess::start(lang, Holds::Old, scheme, via).await);
        }
    }
    let initiated = post(&app, token, "/v1/signing-secret/initiate").await;
    let new = initiated["pending"]["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    // A language skipped above is skipped here too (`start` answers the same way).
    let dir = tempfile::tempdir().unwrap();
    let new_file = dir.path().join("new.secret");
    std::fs::write(&new_file, format!("{new}\n")).unwrap();
    for lang in Lang::ALL {
        for scheme in SCHEMES {
            let via = SecretVia::File(&new_file);
            receivers.extend(ReceiverProcess::start(lang, Holds::New, scheme, via).await);
        }
    }

    let mut targets = Vec::new();
    for (index, receiver) in receivers.iter().enumerate() {
        let scheme = receiver.scheme;
        let url = format!("http://127.0.0.1:{}/{scheme}", receiver.port);
        let created = endpoint(&app, token, json!({ "url": url, "scheme": scheme })).await;
        targets.push(Target {
            receiver: index,
            holds: receiver.holds,
            scheme,
            endpoint_id: created["id"].as_str().unwrap().to_owned(),
        });
    }

    // Pending: every receiver accepts, whichever secret it holds.
    let pending = send_and_check(&app, token, &receivers, &targets, "pending", |_| true).await;
    // A delivery sent again carries the same signed event id, and every receiver reports it as
    // a duplicate.
    for (target, delivery) in targets.iter().zip(&pending) {
        post(&app, token, &format!("/v1/deliveries/{delivery}/retry")).await;
        let lines = receivers[target.receiver].wait_lines(delivery, 2).await;
        assert_eq!(lines[1]["ok"], true, "{}", lines[1]);
        assert_eq!(lines[1]["duplicate"], true, "{}", lines[1]);
    }

    // Complete: only the new secret verifies.
    post(&app, token, "/v1/signing-secret/complete").await;
    let completed = send_and_check(&app, token, &receivers, &targets, "complete", |h| {
        h == Holds::New
    })
    .await;

    // Revert: only the old secret verifies again.
    post(&app, token, "/v1/signing-secret/revert").await;
    send_and_check(&app, token, &receivers, &targets, "revert", |h| {
        h == Holds::Old
    })
    .await;

    // Signatures are made at send time: what the old-only receivers refused after `complete`
    // verifies on its retry, now that the old secret is active again.
    app.clock.advance(chrono::Duration::seconds(10));
    app.state.delivery.wake();
    for (target, delivery) in targets.iter().zip(&completed) {
        if target.holds == Holds::Old {
            let detail = wait_attempts(&app, token, delivery, 2).await;
            assert_eq!(detail["attempt_history"][1]["status_code"], 200, "{detail}");
            let lines = receivers[target.receiver].wait_lines(delivery, 2).await;
            assert_eq!(lines[1]["ok"], true, "{}", lines[1]);
        }
    }
    eprintln!(
        "interop checked: {}",
        receivers
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Runs `command` to its end: its exit status and stderr, or `None` when it was still running
/// after 10 s (it is killed then).
fn exit_within_10s(mut command: Command) -> Option<(std::process::ExitStatus, String)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a receiver");
    for _ in 0..200 {
        if let Some(status) = child.try_wait().expect("poll the receiver") {
            let mut stderr = String::new();
            let _ = child
                .stderr
                .take()
                .map(|mut e| e.read_to_string(&mut stderr));
            return Some((status, stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Posts `body` with `headers` (a unique `X-Hooksign-Delivery-Id` among them) and returns the
/// status, the answer and the receiver's log line for it.
async fn post_to(
    receiver: &ReceiverProcess,
    body: &[u8],
    headers: &[(&str, String)],
) -> (u16, Value, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/hook", receiver.port))
        .body(body.to_vec());
    let mut delivery = "";
    for (name, value) in headers {
        request = request.header(*name, value);
        if name.eq_ignore_ascii_case("X-Hooksign-Delivery-Id") {
            delivery = value;
        }
    }
    let response = request.send().await.expect("post to the receiver");
    let status = response.status().as_u16();
    let answer = response.json().await.expect("a JSON answer");
    let line = receiver.wait_lines(delivery, 1).await.remove(0);
    (status, answer, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_receiver_refuses_a_stripped_delivery_and_dedupes_on_the_signed_id() {
    use hooksign::verify::{bolt_signature, standard_signature};
    receiver_example();
    let secret = "3f1c2a9e8b7d6c5f4e3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";
    let body = br#"{"id":"evt_interop","object":"event","type":"order.created","data":{}}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let now = i64::try_from(now).unwrap();
    let bolt = (
        "X-Bolt-Hmac-Sha256",
        bolt_signature(secret.as_bytes(), body),
    );
    let standard = [
        ("webhook-id", "evt_interop".to_owned()),
        ("webhook-timestamp", now.to_string()),
        (
            "webhook-signature",
            standard_signature(secret.as_bytes(), "evt_interop", now, body),
        ),
    ];
    let delivery = |id: &str| ("X-Hooksign-Delivery-Id", id.to_owned());

    for lang in Lang::ALL {
        let via = SecretVia::Env(secret);
        let Some(receiver) = ReceiverProcess::start(lang, Holds::Old, "standard", via).await else {
            continue;
        };
        // The language is available: check how the receiver starts (and does not).
        // Without a scheme, or with one guessed from the headers, a receiver does not start.
        for scheme in [&[][..], &["--scheme", "auto"], &["--scheme", "both"]] {
            let mut command = lang.command();
            command
                .args(["--port", "0", "--secret", secret])
                .args(scheme);
            let Some((status, stderr)) = exit_within_10s(command) else {
                panic!("the {lang:?} receiver started with {scheme:?}");
            };
            assert_eq!(status.code(), Some(2), "{lang:?} {scheme:?}: {stderr}");
            assert!(stderr.contains("--scheme"), "{lang:?} {scheme:?}: {stderr}");
            assert!(!stderr.contains(secret), "{lang:?}: a secret was printed");
        }
        // Its help warns that --secret is visible to other users and names the alternatives.
        let help = lang.command().arg("--help").output_within(CHILD_DEADLINE);
        let help = String::from_utf8_lossy(&help.stdout);
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for expected in [
            "--secret-file",
            "$HOOKSIGN_VERIFY_SECRETS",
            "VISIBLE TO OTHER USERS (ps, /proc)",
        ] {
            assert!(
                help.contains(expected),
                "{lang:?} --help: {expected}: {help}"
            );
        }

        let name = &receiver.name;
        let mut both = vec![delivery("dlv_std_1"), bolt.clone()];
        both.extend(standard.iter().cloned());
        let (status, answer, line) = post_to(&receiver, body, &both).await;
        assert_eq!(status, 200, "{name}: {answer}");
        assert_eq!(answer["duplicate"], false, "{name}: {answer}");
        assert_eq!(line["dedupe_id"], "evt_interop", "{name}: {line}");
        // Stripped to its (valid) X-Bolt header: refused, the timestamp check is not skipped.
        let stripped = [delivery("dlv_std_2"), bolt.clone()];
        let (status, answer, _) = post_to(&receiver, body, &stripped).await;
        assert_eq!(status, 401, "{name}: {answer}");
        assert_eq!(
            answer["reason"], "missing signature header webhook-id",
            "{name}"
        );
        // The same signed delivery under another delivery id is a duplicate.
        let mut replay = vec![delivery("dlv_std_3")];
        replay.extend(standard.iter().cloned());
        let (status, answer, line) = post_to(&receiver, body, &replay).await;
        assert_eq!(
            (status, &answer["duplicate"]),
            (200, &json!(true)),
            "{name}: {answer}"
        );
        assert_eq!(line["dedupe_id"], "evt_interop", "{name}: {line}");
        drop(receiver);

        let via = SecretVia::Env(secret);
        let Some(receiver) = ReceiverProcess::start(lang, Holds::Old, "bolt", via).await else {
            continue;
        };
        let name = &receiver.name;
        let (status, answer, line) =
            post_to(&receiver, body, &[delivery("dlv_bolt_1"), bolt.clone()]).await;
        assert_eq!(
            (status, &answer["duplicate"]),
            (200, &json!(false)),
            "{name}: {answer}"
        );
        assert_eq!(line["dedupe_id"], "evt_interop", "{name}: {line}");
        let (status, answer, _) =
            post_to(&receiver, body, &[delivery("dlv_bolt_2"), bolt.clone()]).await;
        assert_eq!(
            (status, &answer["duplicate"]),
            (200, &json!(true)),
            "{name}: {answer}"
        );
        let other = br#"{"id":"evt_other","object":"event","type":"order.created","data":{}}"#;
        let other_signature = (
            "X-Bolt-Hmac-Sha256",
            bolt_signature(secret.as_bytes(), other),
        );
        let (status, answer, line) = post_to(
            &receiver,
            other,
            &[delivery("dlv_bolt_2b"), other_signature],
        )
        .await;
        assert_eq!(
            (status, &answer["duplicate"]),
            (200, &json!(false)),
            "{name}: {answer}"
        );
        assert_eq!(line["dedupe_id"], "evt_other", "{name}: {line}");
    }
}
