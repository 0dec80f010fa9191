//! The worker loop. It claims due deliveries in batches (leased, so a crashed daemon's work is
//! taken over when the lease runs out), sends each one under a global and a per-endpoint
//! concurrency cap, and records the outcome. New work wakes it at once (an in-process signal,
//! and `LISTEN/NOTIFY` between PostgreSQL daemons); the poll interval is only a fallback.
//!
//! Claims beyond an endpoint's free in-flight permits wait in memory behind that endpoint's
//! deliveries in flight (each finishing delivery sends the next one with the same permits),
//! and the claim query skips endpoints that are busy, so a flood to one endpoint neither
//! starves the others nor churns claims.
//!
//! Outcomes are group-committed: concurrent outcomes share one transaction, and each delivery
//! task waits until its outcome is stored.
//!
//! Decrypted secrets are cached per merchant and mode and checked against the version the
//! claim read from the database, which every rotation bumps: a delivery is never signed with
//! a secret older than its batch, and unchanged secrets are not re-read per delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::Duration;
use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pings::{PingPermit, PingRefused, PingSlots};
use super::retry::{AttemptResult, RetryPolicy};
use super::sender::{send_attempt, AttemptContext, DeliveryClients};
use super::slots::{Admission, EndpointSlots};
use crate::clock::Clock;
use crate::config::DeliveryConfig;
use crate::ids::{EndpointId, MerchantId};
use crate::keys::Mode;
use crate::records::Decision;
use crate::secrets::keyring::{load_keyring, Keyring};
use crate::secrets::Encryptor;
use crate::store::{
    group_commit_writers, AttemptRecord, ClaimedDelivery, DisabledReason, EndpointRecord,
    FinishedAttempt, GroupCommit, Store,
};

/// How far a claimed delivery is pushed back when it is handed back unsent (its endpoint's queue
/// is full), so the next claim reaches other endpoints' work first.
const SATURATED_BACKOFF_MS: i64 = 250;

/// The most outcomes one transaction records.
const OUTCOME_BATCH: usize = 256;

/// Endpoints named in one claim query as busy, at most (the rest are handed back if claimed).
const MAX_BUSY_SKIPPED: usize = 200;

/// Decrypted secrets and the `secrets_version` they were read at.
type CachedKeyring = (i64, Arc<Keyring>);

/// How one attempt ended for the task that sent it.
enum Delivered {
    /// Recorded (or given back); the endpoint takes more.
    Recorded,
    /// The outcome disabled the endpoint (410 Gone, or failing too long).
    EndpointDisabled,
}

/// The delivery engine of one daemon.
pub struct DeliveryEngine {
    worker_id: String,
    /// `[delivery]`, as the daemon was started with.
    config: DeliveryConfig,
    store: Arc<dyn Store>,
    /// Opens the signing secrets a delivery is signed with.
    encryptor: Arc<Encryptor>,
    clock: Arc<dyn Clock>,
    /// Built once: the verifying client, and one for test-mode endpoints with `tls_verify: false`.
    clients: DeliveryClients,
    allow_private_networks: bool,
    wake: Notify,
    global: Arc<Semaphore>,
    per_endpoint: EndpointSlots,
    /// Test pings in flight, bounded apart from deliveries (see [`super::pings`]).
    pings: PingSlots,
    keyrings: Mutex<HashMap<(MerchantId, Mode), CachedKeyring>>,
    policy: RetryPolicy,
    /// The longest an attempt may take (`DeliveryConfig::max_endpoint_timeout_ms`).
    max_timeout_ms: u32,
    /// Outcomes of attempts, group-committed: concurrent outcomes share a transaction.
    outcomes: GroupCommit<(String, FinishedAttempt), DisabledReason>,
    tasks: TaskTracker,
    batches: AtomicU64,
    /// Claim passes the worker loop has finished (see [`DeliveryEngine::claim_passes`]).
    claim_passes: AtomicU64,
}

impl std::fmt::Debug for DeliveryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryEngine")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

impl DeliveryEngine {
    /// An engine configured from `[delivery]`, delivering the work queued in `store`, signing
    /// with the secrets `encryptor` opens, at `clock`'s time. Starts its outcome writer on the
    /// current tokio runtime.
    pub fn new(
        config: &DeliveryConfig,
        store: Arc<dyn Store>,
        encryptor: Arc<Encryptor>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let writer = store.clone();
        let outcomes = GroupCommit::spawn_writers(
            group_commit_writers(store.as_ref()),
            OUTCOME_BATCH,
            move |attempts: Arc<[(String, FinishedAttempt)]>| {
                let store = writer.clone();
                async move { store.finish_attempts(&attempts).await }
            },
        );
        Ok(Self {
            outcomes,
            config: config.clone(),
            store,
            encryptor,
            clock,
            worker_id: format!("worker-{}", uuid::Uuid::now_v7().simple()),
            clients: DeliveryClients::build(config)?,
            allow_private_networks: config.allow_private_networks,
            wake: Notify::new(),
            global: Arc::new(Semaphore::new(config.max_in_flight)),
            per_endpoint: EndpointSlots::new(config.max_queued_claims),
            pings: PingSlots::default(),
            keyrings: Mutex::new(HashMap::new()),
            max_timeout_ms: config.max_endpoint_timeout_ms(),
            policy: RetryPolicy {
                schedule: config
                    .retry_schedule_secs
                    .iter()
                    .map(|secs| Duration::seconds(*secs as i64))
                    .collect(),
                jitter: config.retry_jitter,
                retry_after_cap: Duration::seconds(config.retry_after_cap_secs as i64),
            },
            tasks: TaskTracker::new(),
            batches: AtomicU64::new(0),
            claim_passes: AtomicU64::new(0),
        })
    }

    /// Wakes the worker loop: new deliveries are due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The shared HTTP client (the one that verifies certificates).
    pub fn client(&self) -> &reqwest::Client {
        self.clients.verified()
    }

    /// Whether the SSRF guard lets private addresses through.
    pub fn allows_private_networks(&self) -> bool {
        self.allow_private_networks
    }

    /// Deliveries being sent right now by this daemon.
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// How many claim passes the worker loop has finished (each claim query, whatever it
    /// found). A pass that began after some moment has seen the clock and the rows as they
    /// were then, so a test can wait for one instead of sleeping and guessing ("nothing due
    /// was left unclaimed", "nothing not due was claimed").
    pub fn claim_passes(&self) -> u64 {
        self.claim_passes.load(Ordering::Acquire)
    }

    /// Claims queued in memory behind busy endpoints right now.
    pub fn queued_claims(&self) -> usize {
        self.per_endpoint.queued()
    }

    /// Endpoints this daemon reports busy to the claim query right now (every permit taken or
    /// claims queued).
    pub fn busy_endpoints(&self) -> usize {
        self.per_endpoint.busy(usize::MAX).len()
    }

    async fn keyring(&self, claim: &ClaimedDelivery) -> anyhow::Result<Arc<Keyring>> {
        let key = (claim.endpoint.merchant_id, claim.endpoint.mode);
        if let Some((version, keyring)) = self
            .keyrings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if *version >= claim.secrets_version {
                return Ok(keyring.clone());
            }
        }
        let keyring =
            Arc::new(load_keyring(self.store.as_ref(), &self.encryptor, key.0, key.1).await?);
        let mut keyrings = self.keyrings.lock().unwrap_or_else(|p| p.into_inner());
        // What was just read is at least as new as the claim's version; a newer cached entry
        // (read for a later claim) is kept.
        if keyrings
            .get(&key)
            .is_none_or(|(version, _)| *version <= claim.secrets_version)
        {
            keyrings.insert(key, (claim.secrets_version, keyring.clone()));
        }
        Ok(keyring)
    }

    /// Claims one batch and starts sending it. Returns how many deliveries were started.
    pub async fn dispatch_batch(self: &Arc<Self>) -> anyhow::Result<usize> {
        let config = &self.config;
        let room = self
            .global
            .available_permits()
            .min(config.batch_size as usize);
        if room == 0 {
            return Ok(0);
        }
        let now = self.clock.now();
        let lease_until = now + Duration::seconds(config.lease_secs as i64);
        let batch = self.batches.fetch_add(1, Ordering::Relaxed);
        let lease = format!("{}/{batch}", self.worker_id);
        self.give_back_orphans().await;
        let busy = self.per_endpoint.busy(MAX_BUSY_SKIPPED);
        let claimed = self
            .store
            .claim_due(&lease, now, lease_until, room as u32, &busy)
            .await?;
        let mut handed_back = Vec::new();
        let mut started = 0;
        for mut claim in claimed {
            // Rows older than the cap (or written by hand) must not outlast the lease either.
            claim.endpoint.timeout_ms = claim.endpoint.timeout_ms.min(self.max_timeout_ms);
            // The global permit first: a claim admitted to its endpoint is then always sent,
            // and an endpoint permit is never taken only to be given up again.
            let Ok(global_permit) = self.global.clone().try_acquire_owned() else {
                handed_back.push(claim.id);
                continue;
            };
            let (claim, endpoint_permit) = match self.per_endpoint.admit(claim, lease_until) {
                Admission::Start(claim, permit) => (claim, permit),
                Admission::Queued => continue,
                Admission::HandBack(id) => {
                    handed_back.push(id);
                    continue;
                }
            };
            started += 1;
            let engine = Arc::clone(self);
            self.tasks.spawn(async move {
                // The permits stay with this task while it sends the endpoint's queued claims;
                // the endpoint permit is released by `hand_on` once nothing is queued.
                let mut next = Some((claim, endpoint_permit));
                let mut expired = Vec::new();
                while let Some((claim, permit)) = next {
                    next = match engine.deliver(claim).await {
                        Delivered::EndpointDisabled => {
                            // The claims queued behind it go back to the store, where they
                            // wait with the endpoint instead of being sent to it anyway.
                            permit.give_back_queue(&mut expired);
                            None
                        }
                        Delivered::Recorded => permit.hand_on(engine.clock.now(), &mut expired),
                    };
                }
                drop(global_permit);
                for claim in expired {
                    let _ = engine
                        .store
                        .release_claims(&claim.lease, &[claim.id], engine.clock.now())
                        .await;
                }
                engine.wake();
            });
        }
        if !handed_back.is_empty() {
            let later = now + Duration::milliseconds(SATURATED_BACKOFF_MS);
            self.store
                .release_claims(&lease, &handed_back, later)
                .await?;
        }
        metrics::gauge!("hooksign_deliveries_in_flight").set(self.tasks.len() as f64);
        metrics::gauge!("hooksign_delivery_claims_queued").set(self.per_endpoint.queued() as f64);
        // Per-endpoint load without a label per endpoint (unbounded cardinality): how many
        // endpoints are at their in-flight cap right now.
        metrics::gauge!("hooksign_endpoints_at_in_flight_cap")
            .set(self.per_endpoint.at_cap() as f64);
        Ok(started)
    }

    /// Gives back, due now, the claims that were queued behind an endpoint whose deliveries
    /// ended without sending them (a delivery task that died).
    async fn give_back_orphans(&self) {
        let orphans = self.per_endpoint.take_orphans();
        if orphans.is_empty() {
            return;
        }
        tracing::warn!(
            claims = orphans.len(),
            "giving back claims left queued behind an endpoint whose delivery task ended"
        );
        let now = self.clock.now();
        for claim in orphans {
            if let Err(err) = self
                .store
                .release_claims(&claim.lease, &[claim.id], now)
                .await
            {
                tracing::warn!(delivery = %claim.id, error = %err, "cannot give a claim back; its lease will run out");
            }
        }
    }

    async fn deliver(&self, claim: ClaimedDelivery) -> Delivered {
        let keyring = match self.keyring(&claim).await {
            Ok(keyring) => keyring,
            Err(err) => {
                tracing::error!(delivery = %claim.id, error = %err, "cannot load signing secrets; releasing the delivery");
                let later = self.clock.now() + Duration::seconds(5);
                let _ = self
                    .store
                    .release_claims(&claim.lease, &[claim.id], later)
                    .await;
                return Delivered::Recorded;
            }
        };
        let attempt = claim.attempts + 1;
        let now = self.clock.now();
        let (event_id, delivery_id) = (claim.event_id.to_string(), claim.id.to_string());
        let context = AttemptContext {
            event_id: &event_id,
            delivery_id: &delivery_id,
            attempt,
            now,
        };
        let (result, record) = send_attempt(
            &self.clients,
            self.allow_private_networks,
            &claim.endpoint,
            &keyring.signing_keys(),
            &claim.body,
            &context,
        )
        .await;
        let unit: f64 = rand::thread_rng().gen();
        let decision = self.policy.decide(&result, attempt, self.clock.now(), unit);
        record_metrics(&result, &record, decision);
        let finished = FinishedAttempt {
            delivery_id: claim.id,
            endpoint_id: claim.endpoint.id,
            record,
            decision,
            now: self.clock.now(),
            disable_after: Duration::seconds(self.config.disable_after_secs as i64),
        };
        match self.outcomes.submit((claim.lease.clone(), finished)).await {
            // The store audited it in the same transaction.
            Ok(Some(reason)) => {
                tracing::warn!(endpoint = %claim.endpoint.id, %reason, "endpoint disabled");
                return Delivered::EndpointDisabled;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::error!(delivery = %claim.id, error = %err, "cannot record a delivery attempt")
            }
        }
        Delivered::Recorded
    }

    /// The worker loop, until `stop`; then waits up to `grace` for deliveries in flight and
    /// gives back every lease this daemon still holds.
    pub async fn run(self: Arc<Self>, stop: CancellationToken, grace: StdDuration) {
        let poll = StdDuration::from_millis(self.config.poll_interval_ms);
        loop {
            // A claim is never cancelled half-way: a dropped query may still commit its leases
            // after the release below, leaving them to expire instead of being given back.
            if stop.is_cancelled() {
                break;
            }
            let started = self.dispatch_batch().await;
            self.claim_passes.fetch_add(1, Ordering::Release);
            let full = match started {
                Ok(count) => count > 0 && count >= self.config.batch_size as usize,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot claim deliveries; will retry");
                    false
                }
            };
            if full {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
        // Deliveries in flight finish, but queued claims are not started: their leases are
        // given back below.
        self.per_endpoint.stop();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.tasks.len(),
                "deliveries still in flight at the shutdown deadline"
            );
        }
        if let Err(err) = self.store.release_worker(&self.worker_id).await {
            tracing::error!(error = %err, "cannot release delivery leases at shutdown");
        }
    }

    /// A slot for a test ping to `endpoint`, or the bound that refuses it (see
    /// [`super::pings`]).
    pub fn start_ping(&self, endpoint: EndpointId) -> Result<PingPermit, PingRefused> {
        self.pings.try_start(endpoint)
    }

    /// Sends a signed ping to an endpoint now (not queued, not retried), holding `_permit`
    /// (from [`DeliveryEngine::start_ping`]) until it ends.
    pub async fn ping(
        &self,
        _permit: PingPermit,
        endpoint: &EndpointRecord,
        body: &[u8],
        event_id: &str,
    ) -> anyhow::Result<(AttemptResult, AttemptRecord, bool)> {
        let keyring = load_keyring(
            self.store.as_ref(),
            &self.encryptor,
            endpoint.merchant_id,
            endpoint.mode,
        )
        .await?;
        let context = AttemptContext {
            event_id,
            delivery_id: event_id,
            attempt: 1,
            now: self.clock.now(),
        };
        let mut endpoint = endpoint.clone();
        endpoint.timeout_ms = endpoint.timeout_ms.min(self.max_timeout_ms);
        let (result, record) = send_attempt(
            &self.clients,
            self.allow_private_networks,
            &endpoint,
            &keyring.signing_keys(),
            body,
            &context,
        )
        .await;
        Ok((result, record, keyring.pending.is_some()))
    }
}

fn record_metrics(result: &AttemptResult, record: &AttemptRecord, decision: Decision) {
    let outcome = match decision {
        Decision::Delivered => "delivered",
        Decision::RetryAt(_) => "retry",
        Decision::Failed | Decision::FailedAndDisableEndpoint => "failed",
    };
    metrics::counter!("hooksign_delivery_attempts_total", "outcome" => outcome, "class" => result.class()).increment(1);
    metrics::histogram!("hooksign_delivery_attempt_duration_seconds")
        .record(record.latency_ms as f64 / 1000.0);
}
