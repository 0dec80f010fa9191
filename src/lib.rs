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
//! Bottom up, the way the layers point (`ARCHITECTURE.md` draws them; `cargo test --lib
//! architecture` checks that no import points up):
//!
//! - [`verify`] — what a *receiver* links against to check signatures. It is the only module
//!   compiled with `default-features = false`, so a merchant's service can depend on this crate
//!   without pulling in the server. [`signing`] is the daemon's side of the same contract.
//! - Plain types and pure rules: [`config`] (defaults ← `hooksign.toml` ← `HOOKSIGN_*`), [`ids`], [`clock`],
//!   the plain records the store returns, [`keys`] (tokens, scopes, the key rules),
//!   [`secrets`] (secret material, encryption at rest, the rotation state machine), the pure
//!   delivery rules (`delivery::{retry, filter, envelope, ssrf}`), the [`audit`] chain.
//! - [`store`] — the storage trait and its SQLite and PostgreSQL implementations: all SQL.
//! - Services: the delivery engine ([`delivery`]), the rotation scheduler and keyring
//!   (`secrets::{scheduler, keyring}`), [`provision`] (operator keys, merchants).
//! - [`http`] — the error envelope, the request id and the extractors, shared by
//!   [`auth`] (authentication, rate limits, nonces, idempotency) and [`api`] (one module per
//!   resource, the OpenAPI document), which reads the [`state::AppState`].
//! - [`server`] — wiring: builds the state and each part, binds, serves, shuts down
//!   gracefully; [`serve`] is the connection loop under it; [`supervisor`] restarts a
//!   background task that dies.
//! - [`cli`] — the `hooksign` command line; `main.rs` only calls [`cli::main`].

pub mod verify;

#[cfg(feature = "server")]
pub mod api;
#[cfg(all(test, feature = "server"))]
mod architecture;
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
pub mod http;
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
pub mod state;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod supervisor;
#[cfg(feature = "server")]
pub mod telemetry;
