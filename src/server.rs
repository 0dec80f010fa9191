//! Wiring: builds the [`AppState`] from a [`Config`], makes sure an operator key exists, and
//! serves the router on a bound listener until told to stop.
//!
//! [`App::build`] binds the configured address (port 0 works), so tests run the real server
//! exactly as `hooksign serve` does.
//!
//! Wiring, near the top: it builds every part (the store, the engine, the scheduler, the
//! limits) and hands each only what it needs. Only the command line imports it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthParts, AuthState, LastUsed, Limits};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::delivery::engine::DeliveryEngine;
use crate::delivery::pruner::Pruner;
use crate::ids::DeliveryId;
use crate::provision::{create_operator_key, Actor};
use crate::secrets::scheduler::RotationScheduler;
use crate::secrets::{load_master_key, load_previous_master_key, Encryptor, MasterKeySource};
use crate::state::{AppState, Shared};
use crate::store::{group_commit_writers, GroupCommit, NewEvent, Store};
use crate::supervisor::supervise;

/// The most events one ingest transaction holds.
const INGEST_BATCH: usize = 128;

/// At most `capacity` events wait for a transaction (`delivery.ingest_queue_capacity`).
fn ingest_queue(store: Arc<dyn Store>, capacity: usize) -> GroupCommit<NewEvent, Vec<DeliveryId>> {
    let writers = group_commit_writers(store.as_ref());
    GroupCommit::spawn_bounded(
        writers,
        INGEST_BATCH,
        capacity,
        move |events: Arc<[NewEvent]>| {
            let store = store.clone();
            async move { store.ingest_events(&events).await }
        },
    )
}

/// A built, bound, not yet serving daemon.
pub struct App {
    state: AppState,
    listener: TcpListener,
    /// Where a freshly created operator key was written, if this start created one.
    pub operator_key_file: Option<PathBuf>,
}

impl App {
    /// Connects storage, loads the master key, creates the first operator key on an empty
    /// database, and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`App::build`] with a chosen clock (tests move time by hand).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        config.validate()?;
        let (master_key, source) = load_master_key(&config)?;
        match &source {
            MasterKeySource::Generated(path) => tracing::warn!(
                path = %path.display(),
                "no master key configured: generated one. Back it up: without it the signing secrets cannot be read"
            ),
            MasterKeySource::File(path) => {
                tracing::info!(path = %path.display(), key_id = master_key.id(), "master key loaded")
            }
            MasterKeySource::Config => tracing::info!(
                key_id = master_key.id(),
                "master key loaded from configuration"
            ),
        }
        let previous_key: Vec<_> = load_previous_master_key(&config)?.into_iter().collect();
        let encryptor = Arc::new(Encryptor::new(&master_key).with_older(&previous_key));
        let (store, postgres) =
            crate::store::connect_with_postgres(&config, encryptor.clone(), clock.clone()).await?;
        let config = Arc::new(config);
        let auth = AuthState::new(AuthParts {
            config: config.clone(),
            store: store.clone(),
            clock: clock.clone(),
            limits: Arc::new(Limits::new(&config.auth, clock.clone())),
            last_used: Arc::new(LastUsed::default()),
        });
        let delivery = DeliveryEngine::new(
            &config.delivery,
            store.clone(),
            encryptor.clone(),
            clock.clone(),
        )?;
        let scheduler = RotationScheduler {
            store: store.clone(),
            encryptor: encryptor.clone(),
            clock: clock.clone(),
            revert_window: chrono::Duration::seconds(config.secrets.revert_window_secs as i64),
        };
        let pruner = Pruner::new(&config.retention, store.clone(), clock.clone());
        let state = AppState::new(Shared {
            ingest: Arc::new(ingest_queue(
                store.clone(),
                config.delivery.ingest_queue_capacity,
            )),
            config,
            store,
            encryptor,
            clock,
            metrics: crate::telemetry::prometheus(),
            auth,
            delivery: Arc::new(delivery),
            scheduler: Arc::new(scheduler),
            postgres,
            pruner: Arc::new(pruner),
        });
        let operator_key_file = ensure_operator_key(&state).await?;
        let addr = state.config.listen_addr()?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Ok(App {
            state,
            listener,
            operator_key_file,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (tests inspect the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting, gives in-flight requests
    /// `http.shutdown_timeout_secs` to finish, and closes the database.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            state, listener, ..
        } = self;
        let grace = Duration::from_secs(state.config.http.shutdown_timeout_secs);
        let addr = listener.local_addr()?;
        tracing::info!(%addr, database = state.store.backend(), "hooksign listening");
        let stop = CancellationToken::new();
        let router = crate::api::router(state.clone());
        let fd_limit = crate::serve::raise_fd_limit();
        let limits = crate::serve::ConnectionLimits::new(&state.config, fd_limit);
        tracing::info!(
            open_files_limit = fd_limit,
            max_connections = limits.max_connections,
            "connection cap"
        );
        let mut server = tokio::spawn(crate::serve::serve(listener, router, limits, stop.clone()));
        // Each background task is restarted if it dies (see `supervisor`).
        let housekeeping = supervised("housekeeping", &state, &stop, housekeeping);
        let scheduler = supervised("rotation scheduler", &state, &stop, rotation_scheduler);
        let workers = supervised("delivery workers", &state, &stop, move |state, stop| {
            state.delivery.clone().run(stop, grace)
        });
        let work_listener = supervised("work listener", &state, &stop, listen_for_work);
        let sweep = supervised("delivery sweep", &state, &stop, delivery_sweep);
        let retention = supervised("retention", &state, &stop, |state, stop| {
            state.pruner.clone().run(stop)
        });
        let outcome: anyhow::Result<()> = tokio::select! {
            result = &mut server => result.map_err(Into::into),
            () = shutdown => {
                tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new connections, finishing in-flight requests");
                stop.cancel();
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(result) => result.map_err(Into::into),
                    Err(_) => {
                        tracing::warn!("in-flight requests did not finish in time; closing them");
                        server.abort();
                        Ok(())
                    }
                }
            }
        };
        stop.cancel();
        for (name, task) in [
            ("housekeeping", housekeeping),
            ("rotation scheduler", scheduler),
            ("delivery workers", workers),
            ("work listener", work_listener),
            ("delivery sweep", sweep),
            ("retention", retention),
        ] {
            if let Err(err) = task.await {
                tracing::error!(%err, task = name, "background task failed");
            }
        }
        state.store.close().await;
        tracing::info!("hooksign stopped");
        outcome
    }
}

/// The first pause before a dead background task is started again.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// Runs a background task under the supervisor, with its own handles on the state and the
/// stop token.
fn supervised<Fut>(
    name: &'static str,
    state: &AppState,
    stop: &CancellationToken,
    run: impl Fn(AppState, CancellationToken) -> Fut + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let (state, stop) = (state.clone(), stop.clone());
    supervise(name, stop.clone(), RESTART_BACKOFF, move || {
        run(state.clone(), stop.clone())
    })
}

/// Background upkeep: flushes `last_used_at` every `auth.last_used_flush_secs`, prunes expired
/// nonces and idempotency keys, idle rate-limit entries and queue metrics every 15 s, and flushes once more
/// when stopped.
async fn housekeeping(state: AppState, stop: CancellationToken) {
    // The first flush comes one period after start (an interval's first tick is immediate).
    let flush_every = Duration::from_secs(state.config.auth.last_used_flush_secs);
    let mut flush =
        tokio::time::interval_at(tokio::time::Instant::now() + flush_every, flush_every);
    let mut prune = tokio::time::interval(Duration::from_secs(15));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = flush.tick() => {
                if let Err(err) = state.auth.last_used.flush(state.store.as_ref()).await {
                    tracing::warn!(error = %err, "cannot write last_used_at; will retry");
                }
            }
            _ = prune.tick() => {
                match state.store.prune_expired(state.clock.now()).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::debug!(pruned, "pruned expired nonces and idempotency keys"),
                    Err(err) => tracing::warn!(error = %err, "cannot prune expired nonces and idempotency keys"),
                }
                state.auth.limits.shrink();
                match state.store.queue_stats().await {
                    Ok((depth, oldest)) => {
                        metrics::gauge!("hooksign_delivery_queue_depth").set(depth as f64);
                        let age = oldest.map_or(0.0, |at| (state.clock.now() - at).num_milliseconds().max(0) as f64 / 1000.0);
                        metrics::gauge!("hooksign_delivery_oldest_due_age_seconds").set(age);
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot read the delivery queue depth"),
                }
            }
        }
    }
    if let Err(err) = state.auth.last_used.flush(state.store.as_ref()).await {
        tracing::error!(error = %err, "cannot write last_used_at at shutdown");
    }
}

/// Every `delivery.sweep_interval_secs`: expires deliveries older than
/// `delivery.max_age_secs` and finishes interrupted pauses and resumes (`store/paused.rs`),
/// counting the expired ones in `hooksign_deliveries_expired_total`.
async fn delivery_sweep(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(
        state.config.delivery.sweep_interval_secs,
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_age = state.config.delivery.max_age();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => match state.store.sweep_deliveries(state.clock.now(), max_age).await {
                Ok(swept) => {
                    metrics::counter!("hooksign_deliveries_expired_total").increment(swept.expired);
                    if swept != crate::store::Swept::default() {
                        tracing::info!(expired = swept.expired, paused = swept.paused, resumed = swept.resumed, "delivery sweep");
                    }
                    if swept.resumed > 0 {
                        state.delivery.wake();
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot sweep expired deliveries; will retry"),
            },
        }
    }
}

/// Wakes the delivery workers when another daemon on the same PostgreSQL queues work.
async fn listen_for_work(state: AppState, stop: CancellationToken) {
    match state.postgres.clone() {
        Some(postgres) => {
            let engine = state.delivery.clone();
            postgres.listen_for_work(move || engine.wake(), stop).await;
        }
        None => stop.cancelled().await,
    }
}

/// Runs the rotation scheduler every `secrets.scheduler_interval_secs` until stopped.
async fn rotation_scheduler(state: AppState, stop: CancellationToken) {
    let every = Duration::from_secs(state.config.secrets.scheduler_interval_secs);
    state.scheduler.clone().run(every, stop).await
}

/// On an empty database, creates an operator key and writes it to `<data_dir>/operator.key`
/// (0600). The key itself is never logged, only the path.
async fn ensure_operator_key(state: &AppState) -> anyhow::Result<Option<PathBuf>> {
    if state.store.has_operator_key().await? {
        return Ok(None);
    }
    let now = state.clock.now();
    let (_, token) = create_operator_key(
        state.store.as_ref(),
        "initial operator key",
        Actor::default(),
        now,
    )
    .await?;
    let path = state.config.data_dir.join("operator.key");
    replace_private_file(&path, token.expose().as_bytes())
        .with_context(|| format!("cannot write the operator key to {}", path.display()))?;
    tracing::warn!(path = %path.display(), "empty database: created an operator key and wrote it to this file (mode 0600)");
    Ok(Some(path))
}

/// Writes a 0600 file, replacing an older one atomically (a stale key from a reset database).
fn replace_private_file(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    crate::secrets::write_private_file(&temp, contents)?;
    std::fs::rename(&temp, path)
}

/// Resolves on SIGTERM or ctrl-c. The handlers are installed when this is called, not when the
/// future is first polled: a signal that arrives once the daemon has said it is listening, but
/// before `App::run` waits on this future, still shuts it down gracefully rather than killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |handler: std::io::Result<tokio::signal::unix::Signal>,
                        name: &'static str| async move {
                match handler {
                    Ok(mut handler) => {
                        handler.recv().await;
                    }
                    Err(err) => {
                        tracing::error!(%err, "cannot listen for {name}");
                        std::future::pending::<()>().await;
                    }
                }
            };
            let (interrupt, terminate) = handlers;
            tokio::select! {
                () = wait(interrupt, "ctrl-c") => {},
                () = wait(terminate, "SIGTERM") => {},
            }
        }
        #[cfg(not(unix))]
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    }
}
