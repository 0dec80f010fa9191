//! The daemon's shared state: what every handler may read, built once by
//! [`crate::server::App`].
//!
//! [`AppState`] is one shared allocation: cloning it (axum does so for every middleware and
//! handler of every request) is one reference count. The parts below it never see it whole:
//! the authentication middleware takes [`AuthState`], the delivery engine and the rotation
//! scheduler hold their own handles on the store, the encryptor and the clock. So this module
//! sits just under the HTTP surface (`api`, later the web admin) and above everything it holds.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::AuthState;
use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::engine::DeliveryEngine;
use crate::delivery::pruner::Pruner;
use crate::ids::DeliveryId;
use crate::secrets::scheduler::RotationScheduler;
use crate::secrets::Encryptor;
use crate::store::{GroupCommit, NewEvent, PgStore, Store};

/// Everything a handler may need.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Wraps the shared parts.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub encryptor: Arc<Encryptor>,
    pub clock: Arc<dyn Clock>,
    pub metrics: PrometheusHandle,
    /// What the authentication middleware uses: rate limits, `last_used_at`, the store.
    pub auth: AuthState,
    /// The delivery engine (worker loop, HTTP client, caches).
    pub delivery: Arc<DeliveryEngine>,
    /// The rotation scheduler (completions, cron policies, the revert window's end).
    pub scheduler: Arc<RotationScheduler>,
    /// Event ingestion, group-committed: concurrent events share a transaction.
    pub ingest: Arc<GroupCommit<NewEvent, Vec<DeliveryId>>>,
    /// The PostgreSQL store, when that is the backend: the daemon `LISTEN`s on it for work
    /// queued by other instances.
    pub postgres: Option<PgStore>,
    /// The retention task (pruning in batches; tests run a pass with `pruner.tick()`).
    pub pruner: Arc<Pruner>,
}
