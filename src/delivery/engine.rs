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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::Duration;
use rand::Rng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::retry::{AttemptResult, Decision, RetryPolicy};
use super::sender::{build_client, send_attempt, AttemptContext};
use crate::clock::Timestamp;
use crate::config::DeliveryConfig;
use crate::ids::{AuditId, DeliveryId, EndpointId, MerchantId};
use crate::keys::Mode;
use crate::secrets::keyring::{load_keyring, Keyring};
use crate::server::AppState;
use crate::store::{
    AttemptRecord, ClaimedDelivery, DisabledReason, EndpointRecord, FinishedAttempt, GroupCommit,
    NewAuditEvent, Store,
};

/// How far a claimed delivery is pushed back when it is handed back unsent (its endpoint's queue
/// is full), so the next claim reaches other endpoints' work first.
const SATURATED_BACKOFF_MS: i64 = 250;

/// The most outcomes one transaction records.
const OUTCOME_BATCH: usize = 256;

/// Claims queued in memory behind one endpoint's deliveries in flight, at most.
const MAX_WAITING_PER_ENDPOINT: usize = 256;

/// Endpoints named in one claim query as busy, at most (the rest are handed back if claimed).
const MAX_BUSY_SKIPPED: usize = 200;

/// Endpoint slots kept before idle ones are forgotten.
const MAX_IDLE_SLOTS: usize = 1_024;

/// A queued claim is sent only if its attempt can end this long before its lease does.
const LEASE_MARGIN_MS: i64 = 1_000;

/// One endpoint's in-flight cap on this daemon, and the claims waiting for it.
struct EndpointSlot {
    cap: u32,
    semaphore: Arc<Semaphore>,
    waiting: VecDeque<(ClaimedDelivery, Timestamp)>,
}

/// Decrypted secrets and the `secrets_version` they were read at.
type CachedKeyring = (i64, Arc<Keyring>);

/// The delivery engine of one daemon.
pub struct DeliveryEngine {
    worker_id: String,
    client: reqwest::Client,
    allow_private_networks: bool,
    wake: Notify,
    global: Arc<Semaphore>,
    per_endpoint: Mutex<HashMap<EndpointId, EndpointSlot>>,
    stopping: AtomicBool,
    keyrings: Mutex<HashMap<(MerchantId, Mode), CachedKeyring>>,
    policy: RetryPolicy,
    /// Outcomes of attempts, group-committed: concurrent outcomes share a transaction.
    outcomes: GroupCommit<(String, FinishedAttempt), DisabledReason>,
    tasks: TaskTracker,
    batches: AtomicU64,
}

impl std::fmt::Debug for DeliveryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryEngine")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

impl DeliveryEngine {
    /// An engine configured from `[delivery]`, recording outcomes in `store`. Starts its
    /// outcome writer on the current tokio runtime.
    pub fn new(config: &DeliveryConfig, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let outcomes = GroupCommit::spawn_writers(
            crate::server::group_commit_writers(store.as_ref()),
            OUTCOME_BATCH,
            move |attempts: Arc<[(String, FinishedAttempt)]>| {
                let store = store.clone();
                async move { store.finish_attempts(&attempts).await }
            },
        );
        Ok(Self {
            outcomes,
            worker_id: format!("worker-{}", uuid::Uuid::now_v7().simple()),
            client: build_client(config.allow_private_networks)?,
            allow_private_networks: config.allow_private_networks,
            wake: Notify::new(),
            global: Arc::new(Semaphore::new(config.max_in_flight)),
            per_endpoint: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            keyrings: Mutex::new(HashMap::new()),
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
        })
    }

    /// Wakes the worker loop: new deliveries are due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The shared HTTP client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Whether the SSRF guard lets private addresses through.
    pub fn allows_private_networks(&self) -> bool {
        self.allow_private_networks
    }

    /// Deliveries being sent right now by this daemon.
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Takes one of the endpoint's in-flight permits, or, when it has none free, queues the
    /// claim behind the endpoint's deliveries in flight (a finishing delivery sends it next).
    /// Gives the claim back when even the queue is full.
    fn admit(
        &self,
        claim: ClaimedDelivery,
        lease_until: Timestamp,
    ) -> Result<Option<(ClaimedDelivery, OwnedSemaphorePermit)>, DeliveryId> {
        let mut slots = self.per_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        let endpoint = &claim.endpoint;
        let slot = slots.entry(endpoint.id).or_insert_with(|| EndpointSlot {
            cap: endpoint.max_in_flight,
            semaphore: Arc::new(Semaphore::new(endpoint.max_in_flight as usize)),
            waiting: VecDeque::new(),
        });
        if slot.cap != endpoint.max_in_flight {
            // The cap was changed: new attempts use a fresh semaphore of the new size.
            slot.cap = endpoint.max_in_flight;
            slot.semaphore = Arc::new(Semaphore::new(endpoint.max_in_flight as usize));
        }
        if slot.waiting.is_empty() {
            if let Ok(permit) = slot.semaphore.clone().try_acquire_owned() {
                return Ok(Some((claim, permit)));
            }
        }
        if slot.waiting.len() >= MAX_WAITING_PER_ENDPOINT {
            return Err(claim.id);
        }
        slot.waiting.push_back((claim, lease_until));
        Ok(None)
    }

    /// The next claim queued behind an endpoint, for a delivery of that endpoint that has just
    /// finished and still holds its permits. Claims whose lease would run out before an attempt
    /// could finish are handed back in `expired` instead.
    fn next_waiting(
        &self,
        endpoint: EndpointId,
        now: Timestamp,
        expired: &mut Vec<ClaimedDelivery>,
    ) -> Option<ClaimedDelivery> {
        if self.stopping.load(Ordering::Relaxed) {
            return None;
        }
        let mut slots = self.per_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.get_mut(&endpoint)?;
        while let Some((claim, lease_until)) = slot.waiting.pop_front() {
            let attempt_ends = now
                + Duration::milliseconds(i64::from(claim.endpoint.timeout_ms))
                + Duration::milliseconds(LEASE_MARGIN_MS);
            if attempt_ends < lease_until {
                return Some(claim);
            }
            expired.push(claim);
        }
        None
    }

    /// Endpoints this daemon cannot start more deliveries to: all permits taken, or claims
    /// already queued. The claim query skips them.
    fn busy_endpoints(&self) -> Vec<EndpointId> {
        let mut slots = self.per_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() > MAX_IDLE_SLOTS {
            // Forget endpoints with nothing in flight and nothing waiting: the map stays as
            // large as the set of endpoints being delivered to, not every endpoint ever seen.
            slots.retain(|_, slot| {
                !slot.waiting.is_empty() || slot.semaphore.available_permits() < slot.cap as usize
            });
        }
        slots
            .iter()
            .filter(|(_, slot)| !slot.waiting.is_empty() || slot.semaphore.available_permits() == 0)
            .map(|(id, _)| *id)
            .take(MAX_BUSY_SKIPPED)
            .collect()
    }

    async fn keyring(
        &self,
        state: &AppState,
        claim: &ClaimedDelivery,
    ) -> anyhow::Result<Arc<Keyring>> {
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
            Arc::new(load_keyring(state.store.as_ref(), &state.encryptor, key.0, key.1).await?);
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
    pub async fn dispatch_batch(self: &Arc<Self>, state: &AppState) -> anyhow::Result<usize> {
        let config = &state.config.delivery;
        let room = self
            .global
            .available_permits()
            .min(config.batch_size as usize);
        if room == 0 {
            return Ok(0);
        }
        let now = state.clock.now();
        let lease_until = now + Duration::seconds(config.lease_secs as i64);
        let batch = self.batches.fetch_add(1, Ordering::Relaxed);
        let lease = format!("{}/{batch}", self.worker_id);
        let busy = self.busy_endpoints();
        let claimed = state
            .store
            .claim_due(&lease, now, lease_until, room as u32, &busy)
            .await?;
        let mut handed_back = Vec::new();
        let mut started = 0;
        for claim in claimed {
            let (claim, endpoint_permit) = match self.admit(claim, lease_until) {
                Ok(Some(admitted)) => admitted,
                Ok(None) => continue,
                Err(id) => {
                    handed_back.push(id);
                    continue;
                }
            };
            let Ok(global_permit) = self.global.clone().try_acquire_owned() else {
                handed_back.push(claim.id);
                continue;
            };
            started += 1;
            let engine = Arc::clone(self);
            let state = state.clone();
            self.tasks.spawn(async move {
                // The permits stay with this task while it sends the endpoint's queued claims.
                let endpoint = claim.endpoint.id;
                let mut next = Some(claim);
                let mut expired = Vec::new();
                while let Some(claim) = next {
                    engine.deliver(&state, claim).await;
                    next = engine.next_waiting(endpoint, state.clock.now(), &mut expired);
                }
                drop((endpoint_permit, global_permit));
                for claim in expired {
                    let _ = state
                        .store
                        .release_claims(&claim.lease, &[claim.id], state.clock.now())
                        .await;
                }
                engine.wake();
            });
        }
        if !handed_back.is_empty() {
            let later = now + Duration::milliseconds(SATURATED_BACKOFF_MS);
            state
                .store
                .release_claims(&lease, &handed_back, later)
                .await?;
        }
        metrics::gauge!("hooksign_deliveries_in_flight").set(self.tasks.len() as f64);
        // Per-endpoint load without a label per endpoint (unbounded cardinality): how many
        // endpoints are at their in-flight cap right now.
        let saturated_endpoints = self
            .per_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|slot| slot.semaphore.available_permits() == 0)
            .count();
        metrics::gauge!("hooksign_endpoints_at_in_flight_cap").set(saturated_endpoints as f64);
        Ok(started)
    }

    async fn deliver(&self, state: &AppState, claim: ClaimedDelivery) {
        let keyring = match self.keyring(state, &claim).await {
            Ok(keyring) => keyring,
            Err(err) => {
                tracing::error!(delivery = %claim.id, error = %err, "cannot load signing secrets; releasing the delivery");
                let later = state.clock.now() + Duration::seconds(5);
                let _ = state
                    .store
                    .release_claims(&claim.lease, &[claim.id], later)
                    .await;
                return;
            }
        };
        let attempt = claim.attempts + 1;
        let now = state.clock.now();
        let (event_id, delivery_id) = (claim.event_id.to_string(), claim.id.to_string());
        let context = AttemptContext {
            event_id: &event_id,
            delivery_id: &delivery_id,
            attempt,
            now,
        };
        let (result, record) = send_attempt(
            &self.client,
            self.allow_private_networks,
            &claim.endpoint,
            &keyring.signing_keys(),
            &claim.body,
            &context,
        )
        .await;
        let unit: f64 = rand::thread_rng().gen();
        let decision = self
            .policy
            .decide(&result, attempt, state.clock.now(), unit);
        record_metrics(&result, &record, decision);
        let finished = FinishedAttempt {
            delivery_id: claim.id,
            endpoint_id: claim.endpoint.id,
            record,
            decision,
            now: state.clock.now(),
            disable_after: Duration::seconds(state.config.delivery.disable_after_secs as i64),
        };
        match self.outcomes.submit((claim.lease.clone(), finished)).await {
            Ok(Some(reason)) => audit_disabled(state, &claim.endpoint, &reason).await,
            Ok(None) => {}
            Err(err) => {
                tracing::error!(delivery = %claim.id, error = %err, "cannot record a delivery attempt")
            }
        }
    }

    /// The worker loop, until `stop`; then waits up to `grace` for deliveries in flight and
    /// gives back every lease this daemon still holds.
    pub async fn run(
        self: Arc<Self>,
        state: AppState,
        stop: CancellationToken,
        grace: StdDuration,
    ) {
        let poll = StdDuration::from_millis(state.config.delivery.poll_interval_ms);
        loop {
            // A claim is never cancelled half-way: a dropped query may still commit its leases
            // after the release below, leaving them to expire instead of being given back.
            if stop.is_cancelled() {
                break;
            }
            let started = self.dispatch_batch(&state).await;
            let full = match started {
                Ok(count) => count > 0 && count >= state.config.delivery.batch_size as usize,
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
        self.stopping.store(true, Ordering::Relaxed);
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
        self.per_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values_mut()
            .for_each(|slot| slot.waiting.clear());
        if let Err(err) = state.store.release_worker(&self.worker_id).await {
            tracing::error!(error = %err, "cannot release delivery leases at shutdown");
        }
    }

    /// Sends a signed ping to an endpoint now (not queued, not retried).
    pub async fn ping(
        &self,
        state: &AppState,
        endpoint: &EndpointRecord,
        body: &[u8],
        event_id: &str,
    ) -> anyhow::Result<(AttemptResult, AttemptRecord, bool)> {
        let keyring = load_keyring(
            state.store.as_ref(),
            &state.encryptor,
            endpoint.merchant_id,
            endpoint.mode,
        )
        .await?;
        let context = AttemptContext {
            event_id,
            delivery_id: event_id,
            attempt: 1,
            now: state.clock.now(),
        };
        let (result, record) = send_attempt(
            &self.client,
            self.allow_private_networks,
            endpoint,
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

async fn audit_disabled(state: &AppState, endpoint: &EndpointRecord, reason: &str) {
    tracing::warn!(endpoint = %endpoint.id, %reason, "endpoint disabled");
    let event = NewAuditEvent {
        id: AuditId::new(),
        merchant_id: Some(endpoint.merchant_id),
        mode: Some(endpoint.mode),
        actor_key_id: None,
        action: "endpoint.disable",
        target: endpoint.id.to_string(),
        request_id: None,
        details: serde_json::json!({ "reason": reason }),
        created_at: state.clock.now(),
    };
    if let Err(err) = state.store.record_audit(&event).await {
        tracing::error!(error = %err, "cannot audit an endpoint being disabled");
    }
}
