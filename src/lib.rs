//! # hooksign
//!
//! A webhook signing and secret-rotation daemon. A platform runs hooksign next to its own
//! services: hooksign holds every merchant's webhook signing secret (one per mode, `live` and
//! `test`), signs each outbound delivery with `X-Bolt-Hmac-Sha256` (plus
//! `X-Bolt-Hmac-Sha256-Pending` while a rotation is pending), and lets each merchant's admins
//! rotate secrets and manage their API keys through a small admin API.
//!
//! ## Reading order
//!
//! - [`verify`] — what a *receiver* links against to check signatures. It is the only module
//!   compiled with `default-features = false`, so a merchant's service can depend on this crate
//!   without pulling in the server.
//! - [`config`] — layered configuration (defaults ← `hooksign.toml` ← `HOOKSIGN_*`).
//! - [`ids`], [`keys`], [`secrets`] — the domain types: prefixed ids, API tokens and scopes,
//!   signing-secret material and its encryption at rest.
//! - [`store`] — the storage trait and its SQLite and PostgreSQL implementations; `sealing`
//!   there unlocks a store with the master key and seals what must not reach the disk in
//!   plaintext (stored idempotent answers, endpoint headers, the audit key).
//! - [`audit`] — the audit log's keyed hash chains, their heads and verification.
//! - [`auth`], [`api`] — the HTTP admin API: authentication (with the client address behind
//!   trusted proxies, `auth::client_addr`), the error envelope, one module per resource, the
//!   lenient integer fields (`api::numbers`), and the OpenAPI document whose bounds come from
//!   the validation's own constants (`api::openapi`).
//! - [`server`] — wiring: builds the [`server::AppState`], binds, serves, shuts down gracefully.
//! - [`serve`] — the connection loop under it: header-read and idle timeouts, the connection
//!   cap, the file-descriptor limit.
//! - [`supervisor`] — restarts a background task that dies, loudly, instead of losing it.
//! - [`cli`] — the `hooksign` command line; `main.rs` only calls [`cli::main`].

pub mod verify;

#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod delivery;
#[cfg(feature = "server")]
pub mod ids;
#[cfg(feature = "server")]
pub mod keys;
#[cfg(feature = "server")]
pub mod provision;
#[cfg(feature = "server")]
pub mod records;
#[cfg(feature = "server")]
pub mod secrets;
#[cfg(feature = "server")]
pub mod serve;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod signing;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod supervisor;
#[cfg(feature = "server")]
pub mod telemetry;
