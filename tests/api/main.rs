//! hooksign's integration tests: one binary, `spawn_app()` per test, every storage-touching
//! test on SQLite and (when `HOOKSIGN_TEST_DATABASE_URL` is set) PostgreSQL.

mod helpers;
mod idempotency;

mod api_keys;
mod at_rest;
mod audit;
mod auth;
mod background;
mod backup;
mod bad_receivers;
mod cli;
mod crash;
mod delivery;
mod disk_faults;
mod durability;
mod endpoint_guards;
mod engine;
mod fault_proxy;
mod faults;
mod ids;
mod interop;
mod limits;
mod lists;
mod matrix;
mod merchants;
mod openapi;
mod ops;
mod paused;
mod receiver;
mod rekey;
mod retention;
mod retention_batches;
mod signing_secret;
mod ssrf;
mod store_conformance;
mod verifiers;
mod walkthrough;
