//! The scope and tenancy matrices, generated from `/openapi.json` (which the unit test
//! `api::openapi::tests::the_document_lists_exactly_the_routes_the_router_registers` holds
//! equal to the router, and `ops.rs` shows answering), so a new route cannot be forgotten: an operation the
//! document lists and [`operation_table`] does not fails both tests, and so does a row the
//! document does not list.
//!
//! - Scopes: for every operation, no key → 401; the operator key on a merchant route, or a
//!   merchant key on an operator route → 403 with its code; a merchant key holding every scope
//!   but the one the route needs → 403 `missing_scope` naming it; a key holding only that scope
//!   → neither 401 nor 403.
//! - Tenancy and mode: for every operation whose path takes an `{id}`, another merchant's id
//!   and the same merchant's other-mode id → 404 `resource_missing`, and nothing changes: the
//!   row count of every table (read from the schema), the audit chains' heads and last entries,
//!   and the object as its owner sees it are the same before and after.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hooksign::keys::Scope;
use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::{endpoint, send_event};
use crate::helpers::{assert_error, get_ok, spawn_app_with, Backend, TestApp, TestMerchant};
use crate::receiver::Receiver;

/// What an operation asks of the caller's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// No key at all (the operational routes).
    Open,
    /// An operator key (`hk_op_…`).
    Operator,
    /// A merchant key holding this scope.
    Scope(Scope),
}

/// What a request's body is made from.
struct Context {
    receiver_url: String,
}

/// One operation of the document and what it needs. Rows run in table order, so the ones that
/// change state come after the ones that read it (the signing secret's transitions in an order
/// where most succeed; the endpoint's delete last).
struct Row {
    /// As in the document: `get`, `post`, …
    method: &'static str,
    path: &'static str,
    guard: Guard,
    /// A valid body, for the handlers that read one before they check the scope: with it, the
    /// scope check, not validation, is what answers.
    body: Option<fn(&Context) -> Value>,
}

impl Row {
    fn with_body(mut self, body: fn(&Context) -> Value) -> Row {
        self.body = Some(body);
        self
    }

    fn method(&self) -> Method {
        Method::from_bytes(self.method.to_uppercase().as_bytes()).expect("method")
    }

    fn name(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }
}

fn row(method: &'static str, path: &'static str, guard: Guard) -> Row {
    Row {
        method,
        path,
        guard,
        body: None,
    }
}

/// Every operation of the HTTP surface and the key it needs.
fn operation_table() -> Vec<Row> {
    use Guard::{Open, Operator};
    let scoped = |method, path, scope| row(method, path, Guard::Scope(scope));
    vec![
        row("get", "/healthz", Open),
        row("get", "/readyz", Open),
        row("get", "/metrics", Open),
        row("get", "/openapi.json", Open),
        row("get", "/v1/merchants", Operator),
        row("post", "/v1/merchants", Operator).with_body(|_| json!({ "name": "Matrix-made" })),
        row("get", "/v1/merchants/{id}", Operator),
        row("patch", "/v1/merchants/{id}", Operator)
            .with_body(|_| json!({ "name": "Matrix renamed" })),
        scoped("get", "/v1/api-keys", Scope::ApiKeysRead),
        scoped("get", "/v1/api-keys/{id}", Scope::ApiKeysRead),
        scoped("patch", "/v1/api-keys/{id}", Scope::ApiKeysWrite)
            .with_body(|_| json!({ "name": "matrix target renamed" })),
        scoped("post", "/v1/api-keys/{id}/roll", Scope::ApiKeysWrite),
        scoped("post", "/v1/api-keys", Scope::ApiKeysWrite)
            .with_body(|_| json!({ "name": "matrix-made", "scopes": ["api_keys:write"] })),
        scoped("post", "/v1/api-keys/{id}/revoke", Scope::ApiKeysWrite),
        scoped("delete", "/v1/api-keys/{id}", Scope::ApiKeysWrite),
        scoped("get", "/v1/signing-secret", Scope::SigningSecretRead),
        scoped(
            "post",
            "/v1/signing-secret/initiate",
            Scope::SigningSecretWrite,
        ),
        scoped(
            "post",
            "/v1/signing-secret/reveal",
            Scope::SigningSecretWrite,
        ),
        scoped(
            "post",
            "/v1/signing-secret/complete",
            Scope::SigningSecretWrite,
        ),
        scoped(
            "post",
            "/v1/signing-secret/revert",
            Scope::SigningSecretWrite,
        ),
        // Nothing is pending after the revert: 409 `no_pending_secret`, past the scope check.
        scoped(
            "post",
            "/v1/signing-secret/cancel",
            Scope::SigningSecretWrite,
        ),
        scoped(
            "put",
            "/v1/signing-secret/schedule",
            Scope::SigningSecretWrite,
        )
        .with_body(|_| json!({ "cron": "0 0 3 1 * *", "grace": 86400 })),
        scoped(
            "delete",
            "/v1/signing-secret/schedule",
            Scope::SigningSecretWrite,
        ),
        scoped("get", "/v1/endpoints", Scope::WebhooksRead),
        scoped("get", "/v1/endpoints/{id}", Scope::WebhooksRead),
        scoped("get", "/v1/deliveries", Scope::WebhooksRead),
        scoped("get", "/v1/deliveries/{id}", Scope::WebhooksRead),
        scoped("post", "/v1/endpoints", Scope::WebhooksWrite)
            .with_body(|context| json!({ "url": context.receiver_url })),
        scoped("patch", "/v1/endpoints/{id}", Scope::WebhooksWrite)
            .with_body(|_| json!({ "description": "patched by the matrix" })),
        scoped("post", "/v1/endpoints/{id}/test", Scope::WebhooksWrite),
        scoped("post", "/v1/endpoints/{id}/replay", Scope::WebhooksWrite),
        scoped("post", "/v1/deliveries/{id}/retry", Scope::WebhooksWrite),
        scoped("delete", "/v1/endpoints/{id}", Scope::WebhooksWrite),
        scoped("get", "/v1/events", Scope::EventsRead),
        scoped("get", "/v1/events/{id}", Scope::EventsRead),
        scoped("post", "/v1/events", Scope::EventsWrite)
            .with_body(|_| json!({ "type": "matrix.checked", "payload": {} })),
        scoped("post", "/v1/sign", Scope::EventsWrite)
            .with_body(|_| json!({ "any": "bytes to sign" })),
        scoped("get", "/v1/audit-events", Scope::AuditRead),
    ]
}

/// The table, checked against the document: one row per documented operation, none extra,
/// and a row needs a key exactly when the document says the operation does.
fn checked_table(doc: &Value) -> Vec<Row> {
    let table = operation_table();
    let mut documented = BTreeSet::new();
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            documented.insert((method.clone(), path.clone(), secured));
        }
    }
    let listed: BTreeSet<(String, String)> = documented
        .iter()
        .map(|(method, path, _)| (method.clone(), path.clone()))
        .collect();
    let tabled: BTreeSet<(String, String)> = table
        .iter()
        .map(|row| (row.method.to_owned(), row.path.to_owned()))
        .collect();
    assert_eq!(tabled.len(), table.len(), "an operation has two rows");
    let missing: Vec<_> = listed.difference(&tabled).collect();
    assert!(
        missing.is_empty(),
        "operations in /openapi.json with no row in the matrix (say which key and scope each needs): {missing:?}"
    );
    let extra: Vec<_> = tabled.difference(&listed).collect();
    assert!(
        extra.is_empty(),
        "rows in the matrix for operations /openapi.json does not list: {extra:?}"
    );
    for (method, path, secured) in &documented {
        let row = table
            .iter()
            .find(|row| row.method == method && row.path == path)
            .expect("tabled");
        assert_eq!(
            *secured,
            row.guard != Guard::Open,
            "{}: the document's `security` and the matrix disagree on whether it needs a key",
            row.name()
        );
    }
    table
}

/// Ids of one merchant's objects in one mode, by the path's resource.
#[derive(Debug, Clone)]
struct Ids {
    merchant: String,
    api_key: String,
    endpoint: String,
    event: String,
    delivery: String,
}

impl Ids {
    /// The resource a path is about: `/v1/endpoints/{id}/test` → `endpoints`.
    fn resource(path: &str) -> &str {
        path.trim_start_matches("/v1/")
            .split('/')
            .next()
            .unwrap_or_default()
    }

    fn id_for(&self, path: &str) -> &str {
        match Self::resource(path) {
            "merchants" => &self.merchant,
            "api-keys" => &self.api_key,
            "endpoints" => &self.endpoint,
            "events" => &self.event,
            "deliveries" => &self.delivery,
            other => panic!(
                "{path}: the matrix has no `{other}` object to put in {{id}}; make one in its fixtures"
            ),
        }
    }

    /// The path with this merchant's object of the right kind in `{id}`.
    fn concrete(&self, path: &str) -> String {
        if path.contains("{id}") {
            path.replace("{id}", self.id_for(path))
        } else {
            path.to_owned()
        }
    }
}

/// Sends `row` to `path` with `token` (none: no credentials) and the row's body.
async fn call(
    app: &TestApp,
    row: &Row,
    path: &str,
    token: Option<&str>,
    context: &Context,
) -> reqwest::Response {
    let mut request = app.request(row.method(), path);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = row.body {
        request = request.json(&body(context));
    }
    request.send().await.expect("request")
}

/// Asserts an error answer, saying `what` was asked when the status or code is not the one
/// expected, then checks the whole envelope with [`assert_error`].
async fn expect_error(
    response: reqwest::Response,
    status: u16,
    kind: &str,
    code: &str,
    what: &str,
) -> Value {
    let got = response.status();
    let mut rebuilt = axum::http::Response::builder().status(got.as_u16());
    for (name, value) in response.headers() {
        rebuilt = rebuilt.header(name, value);
    }
    let bytes = response.bytes().await.expect("body");
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(
        got.as_u16() == status && body["error"]["code"] == code,
        "{what}: expected {status} `{code}`, got {got}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let response = reqwest::Response::from(rebuilt.body(bytes).expect("response"));
    assert_error(response, status, kind, code).await
}

/// Asserts the answer is past authentication and authorisation: neither 401 nor 403 (nor 500).
async fn expect_allowed(response: reqwest::Response, what: &str) {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    assert!(
        ![401, 403].contains(&status) && status < 500,
        "{what}: expected the key to be let through, got {status}: {body}"
    );
}

/// The daemon both matrices run on: the failed-authentication budget is raised, since every
/// operation is called once without a key from the same address, and `http://` is allowed for
/// live-mode endpoints so both modes can deliver to the loopback receiver.
async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |config| {
        config.auth.failed_auth_per_minute = 10_000;
        config.delivery.allow_http = true;
    })
    .await
}

crate::on_both_stores!(
    spawn = super::spawn;
    every_operation_demands_its_kind_of_key_and_its_scope,
    another_merchants_or_modes_ids_are_not_found_and_change_nothing,
);

async fn openapi(app: &TestApp) -> Value {
    let response = app
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "/openapi.json");
    response.json().await.expect("the document is JSON")
}

/// The id of a merchant's first key in `mode`.
fn first_key_id(merchant: &TestMerchant, mode: &str) -> String {
    merchant.body["api_keys"]
        .as_array()
        .expect("api_keys")
        .iter()
        .find(|key| key["mode"] == mode)
        .and_then(|key| key["id"].as_str())
        .expect("key id")
        .to_owned()
}

/// Creates a key holding `scopes`; returns its id and token.
async fn key_with(app: &TestApp, admin: &str, name: &str, scopes: &[Scope]) -> (String, String) {
    let names: Vec<&str> = scopes.iter().map(|scope| scope.as_str()).collect();
    let response = app
        .authed(Method::POST, "/v1/api-keys", admin)
        .json(&json!({ "name": name, "scopes": names }))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 201, "creating the key `{name}`: {body}");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["token"].as_str().expect("token").to_owned(),
    )
}

/// Deactivates every active key of the admin's mode but those in `keep`, so the next pair of
/// keys fits under the limit of five active keys.
async fn deactivate_all_but(app: &TestApp, admin: &str, keep: &[&str]) {
    let active = get_ok(app, admin, "/v1/api-keys?status=active&limit=100").await;
    for key in active["data"].as_array().expect("data") {
        let id = key["id"].as_str().expect("id");
        if keep.contains(&id) {
            continue;
        }
        let response = app
            .authed(Method::PATCH, &format!("/v1/api-keys/{id}"), admin)
            .json(&json!({ "active": false }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "deactivating {id}");
    }
}

/// The first delivery of an event.
async fn delivery_of(app: &TestApp, token: &str, event: &str) -> String {
    let body = get_ok(app, token, &format!("/v1/events/{event}")).await;
    body["deliveries"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("event {event} made no delivery: {body}"))
        .to_owned()
}

/// An endpoint on the receiver, an event, its delivery and a key, in the mode of `token`.
async fn objects(
    app: &TestApp,
    merchant: &str,
    token: &str,
    api_key: String,
    receiver: &Receiver,
) -> Ids {
    let endpoint = endpoint(app, token, json!({ "url": receiver.url })).await;
    let event = send_event(app, token, "matrix.checked", json!({ "n": 1 })).await;
    let event = event["id"].as_str().expect("event id").to_owned();
    let delivery = delivery_of(app, token, &event).await;
    Ids {
        merchant: merchant.to_owned(),
        api_key,
        endpoint: endpoint["id"].as_str().expect("endpoint id").to_owned(),
        event,
        delivery,
    }
}

async fn every_operation_demands_its_kind_of_key_and_its_scope(app: TestApp) {
    let doc = openapi(&app).await;
    let table = checked_table(&doc);
    let receiver = Receiver::start().await;
    let context = Context {
        receiver_url: receiver.url.clone(),
    };
    let merchant = app.create_merchant("Matrix Co").await;
    let admin = merchant.test_token.clone();
    let admin_id = first_key_id(&merchant, "test");
    // The api-keys rows act on a key holding only `api_keys:write`, which a key holding only
    // that scope may change (a key acts only on keys whose scopes it holds).
    let (target, _) = key_with(&app, &admin, "matrix target", &[Scope::ApiKeysWrite]).await;
    let ids = objects(&app, &merchant.id, &admin, target.clone(), &receiver).await;

    // The keys of the scope in hand: (scope, every scope but it, only it).
    let mut keys: Option<(Scope, String, String)> = None;
    for (n, row) in table.iter().enumerate() {
        let what = row.name();
        let path = ids.concrete(row.path);
        if row.guard == Guard::Open {
            expect_allowed(call(&app, row, &path, None, &context).await, &what).await;
            continue;
        }
        let response = call(&app, row, &path, None, &context).await;
        expect_error(
            response,
            401,
            "authentication",
            "missing_api_key",
            &format!("{what} with no key"),
        )
        .await;
        let scope = match row.guard {
            Guard::Open => unreachable!("handled above"),
            Guard::Operator => {
                let response = call(&app, row, &path, Some(&admin), &context).await;
                expect_error(
                    response,
                    403,
                    "permission",
                    "operator_key_required",
                    &format!("{what} with a merchant key"),
                )
                .await;
                let response = call(&app, row, &path, Some(&app.operator_token), &context).await;
                expect_allowed(response, &format!("{what} with the operator key")).await;
                continue;
            }
            Guard::Scope(scope) => scope,
        };
        let response = call(&app, row, &path, Some(&app.operator_token), &context).await;
        expect_error(
            response,
            403,
            "permission",
            "merchant_key_required",
            &format!("{what} with the operator key"),
        )
        .await;
        if keys.as_ref().is_none_or(|(held, _, _)| *held != scope) {
            deactivate_all_but(&app, &admin, &[&admin_id, &target]).await;
            let others: Vec<Scope> = Scope::ALL.into_iter().filter(|s| *s != scope).collect();
            let (_, without) =
                key_with(&app, &admin, &format!("without {scope} {n}"), &others).await;
            let (_, only) = key_with(&app, &admin, &format!("only {scope} {n}"), &[scope]).await;
            keys = Some((scope, without, only));
        }
        let (_, without, only) = keys.as_ref().expect("keys of the scope");
        let response = call(&app, row, &path, Some(without), &context).await;
        let body = expect_error(
            response,
            403,
            "permission",
            "missing_scope",
            &format!("{what} with every scope but {scope}"),
        )
        .await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("`{scope}`")),
            "{what}: the 403 must name `{scope}`: {body}"
        );
        let response = call(&app, row, &path, Some(only), &context).await;
        expect_allowed(response, &format!("{what} with only {scope}")).await;
    }
}

/// A database connection of the test's own, to read the schema and count rows.
enum Database {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// What "nothing changed" compares: every table's row count, each audit chain's head and the
/// last audit entries.
#[derive(Debug, PartialEq)]
struct Snapshot {
    rows: Vec<(String, i64)>,
    audit_heads: Vec<String>,
    last_audit_events: Vec<String>,
}

impl Database {
    async fn open(app: &TestApp) -> Database {
        let url = &app.config.database.url;
        match app.backend {
            Backend::Sqlite => {
                Database::Sqlite(sqlx::SqlitePool::connect(url).await.expect("sqlite"))
            }
            Backend::Postgres => {
                Database::Postgres(sqlx::PgPool::connect(url).await.expect("postgres"))
            }
        }
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        match self {
            Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
            Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        }
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    async fn count(&self, sql: &str) -> i64 {
        match self {
            Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    /// Every table of the schema, as the database lists them.
    async fn tables(&self) -> Vec<String> {
        let sql = match self {
            Database::Sqlite(_) => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            Database::Postgres(_) => {
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
            }
        };
        self.strings(sql).await
    }

    async fn snapshot(&self, tables: &[String]) -> Snapshot {
        let mut rows = Vec::new();
        for table in tables {
            let count = self
                .count(&format!("SELECT COUNT(*) FROM \"{table}\""))
                .await;
            rows.push((table.clone(), count));
        }
        Snapshot {
            rows,
            audit_heads: self
                .strings("SELECT chain || ' ' || CAST(seq AS TEXT) || ' ' || hash FROM audit_heads ORDER BY chain")
                .await,
            last_audit_events: self
                .strings(
                    "SELECT chain || ' ' || CAST(seq AS TEXT) || ' ' || action || ' ' || target || ' ' || hash \
                     FROM audit_events ORDER BY created_at DESC, id DESC LIMIT 5",
                )
                .await,
        }
    }
}

/// Waits until the delivery is delivered, so no background work changes the database later.
async fn wait_delivered(app: &TestApp, token: &str, delivery: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = get_ok(app, token, &format!("/v1/deliveries/{delivery}")).await;
        if body["status"] == "delivered"
            && body["attempt_history"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "delivery {delivery} was not delivered within 20 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How the owner of an object sees it (to show a refused call left it alone).
async fn as_its_owner_sees_it(app: &TestApp, owner: &str, ids: &Ids, path: &str) -> Value {
    let resource = Ids::resource(path);
    let view = format!("/v1/{resource}/{}", ids.id_for(path));
    get_ok(app, owner, &view).await
}

async fn another_merchants_or_modes_ids_are_not_found_and_change_nothing(app: TestApp) {
    let doc = openapi(&app).await;
    let table = checked_table(&doc);
    let receiver = Receiver::start().await;
    let context = Context {
        receiver_url: receiver.url.clone(),
    };
    let ours = app.create_merchant("Tenant A").await;
    let theirs = app.create_merchant("Tenant B").await;
    let caller = ours.test_token.clone();
    // The caller's own objects are not needed: the targets are the other merchant's, in the
    // caller's mode, and the caller's own in the other mode.
    let their_objects = objects(
        &app,
        &theirs.id,
        &theirs.test_token,
        first_key_id(&theirs, "test"),
        &receiver,
    )
    .await;
    let other_mode_objects = objects(
        &app,
        &ours.id,
        &ours.live_token,
        first_key_id(&ours, "live"),
        &receiver,
    )
    .await;
    let targets = [
        ("another merchant's", &theirs.test_token, &their_objects),
        ("the other mode's", &ours.live_token, &other_mode_objects),
    ];
    for (_, owner, ids) in targets {
        wait_delivered(&app, owner, &ids.delivery).await;
    }
    let database = Database::open(&app).await;
    let tables = database.tables().await;
    assert!(
        [
            "merchants",
            "api_keys",
            "endpoints",
            "deliveries",
            "audit_events"
        ]
        .iter()
        .all(|t| tables.iter().any(|listed| listed == t)),
        "the schema lists the tables: {tables:?}"
    );

    let with_ids: Vec<&Row> = table
        .iter()
        .filter(|row| row.path.contains("{id}"))
        .collect();
    assert!(!with_ids.is_empty(), "the document has routes with an id");
    for row in with_ids {
        for (whose, owner, ids) in targets {
            let what = format!("{} with {whose} id", row.name());
            let path = ids.concrete(row.path);
            let owner_view = match row.guard {
                Guard::Scope(_) => Some(as_its_owner_sees_it(&app, owner, ids, row.path).await),
                _ => None,
            };
            let before = database.snapshot(&tables).await;
            let sent_before = receiver.received().len();
            let response = call(&app, row, &path, Some(&caller), &context).await;
            match row.guard {
                // Merchants are the operator's: a merchant key is refused whichever id it names.
                Guard::Operator => {
                    expect_error(response, 403, "permission", "operator_key_required", &what).await
                }
                Guard::Scope(_) => {
                    expect_error(response, 404, "invalid_request", "resource_missing", &what).await
                }
                Guard::Open => panic!("{what}: an open route with an id needs a tenancy rule"),
            };
            let after = database.snapshot(&tables).await;
            assert_eq!(before, after, "{what} changed the database");
            // Nor did it reach the receiver (a test ping is sent within the request).
            assert_eq!(
                receiver.received().len(),
                sent_before,
                "{what} sent something to the endpoint"
            );
            if let Some(owner_view) = owner_view {
                assert_eq!(
                    owner_view,
                    as_its_owner_sees_it(&app, owner, ids, row.path).await,
                    "{what} changed the object"
                );
            }
        }
    }
    // The operator is not scoped to a merchant: it sees either one.
    for merchant in [&ours.id, &theirs.id] {
        let response = app
            .operator(Method::GET, &format!("/v1/merchants/{merchant}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "the operator reads {merchant}");
    }
}
