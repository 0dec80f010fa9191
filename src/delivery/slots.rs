//! Per-endpoint in-flight slots: each endpoint's cap on this daemon, and the claims queued in
//! memory behind its deliveries in flight.
//!
//! A claim is queued only while every permit of its endpoint is held, and each permit holder,
//! when its delivery ends, either hands the permit to the next queued claim or releases it.
//! Both happen under the one lock that [`EndpointSlots::admit`] takes, and a permit is released
//! nowhere else (not even when dropped): so no claim is ever queued behind a permit that is
//! already on its way out, which would leave it waiting for nobody and the endpoint reported
//! busy forever.
//!
//! The claims queued across all endpoints are counted against one bound; past it a claim is
//! handed back to the store rather than held in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::Timestamp;
use crate::config::MAX_ENDPOINT_TIMEOUT_MS;
use crate::ids::{DeliveryId, EndpointId};
use crate::store::ClaimedDelivery;

/// Claims queued in memory behind one endpoint's deliveries in flight, at most.
const MAX_WAITING_PER_ENDPOINT: usize = 256;

/// Endpoint slots kept before idle ones are forgotten.
const MAX_IDLE_SLOTS: usize = 1_024;

/// A queued claim is sent only if its attempt can end this long before its lease does.
pub const LEASE_MARGIN_MS: i64 = 1_000;

/// One endpoint's in-flight cap on this daemon, and the claims waiting for it.
struct Slot {
    cap: u32,
    semaphore: Arc<Semaphore>,
    waiting: VecDeque<(ClaimedDelivery, Timestamp)>,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<EndpointId, Slot>,
    /// Claims in every slot's `waiting`.
    queued: usize,
    /// Claims left queued when their endpoint's last permit went away without handing them on
    /// (its task died, or the engine is stopping): the dispatcher gives them back.
    orphans: Vec<ClaimedDelivery>,
    stopping: bool,
}

/// Every endpoint's slot on this daemon.
pub struct EndpointSlots {
    inner: Arc<Mutex<Inner>>,
    max_queued: usize,
}

/// What [`EndpointSlots::admit`] decided for a claim.
// Returned and taken apart at once, never stored: boxing the claim would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Admission {
    /// Send it now, holding this permit.
    Start(ClaimedDelivery, EndpointPermit),
    /// Queued behind the endpoint's deliveries in flight: one of them sends it next.
    Queued,
    /// No room in memory: give it back to the store.
    HandBack(DeliveryId),
}

/// One of an endpoint's in-flight permits. It is handed on or released only under the slots'
/// lock: through [`EndpointPermit::hand_on`], or when dropped.
pub struct EndpointPermit {
    inner: Arc<Mutex<Inner>>,
    endpoint: EndpointId,
    permit: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for EndpointPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPermit")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl EndpointSlots {
    /// Slots holding at most `max_queued` claims in memory across all endpoints.
    pub fn new(max_queued: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            max_queued,
        }
    }

    /// Takes one of the endpoint's permits, or, when it has none free, queues the claim behind
    /// the endpoint's deliveries in flight. Hands the claim back when the endpoint's queue or
    /// the global bound is full.
    pub fn admit(&self, claim: ClaimedDelivery, lease_until: Timestamp) -> Admission {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let endpoint = &claim.endpoint;
        let slot = inner.slots.entry(endpoint.id).or_insert_with(|| Slot {
            cap: endpoint.max_in_flight,
            semaphore: Arc::new(Semaphore::new(endpoint.max_in_flight as usize)),
            waiting: VecDeque::new(),
        });
        if slot.cap != endpoint.max_in_flight {
            // The cap was changed: new attempts use a fresh semaphore of the new size (the
            // holders of old permits still hand them on to queued claims).
            slot.cap = endpoint.max_in_flight;
            slot.semaphore = Arc::new(Semaphore::new(endpoint.max_in_flight as usize));
        }
        if slot.waiting.is_empty() {
            if let Ok(permit) = slot.semaphore.clone().try_acquire_owned() {
                let permit = EndpointPermit {
                    inner: self.inner.clone(),
                    endpoint: endpoint.id,
                    permit: Some(permit),
                };
                return Admission::Start(claim, permit);
            }
        }
        if inner.stopping
            || slot.waiting.len() >= MAX_WAITING_PER_ENDPOINT
            || inner.queued >= self.max_queued
        {
            return Admission::HandBack(claim.id);
        }
        slot.waiting.push_back((claim, lease_until));
        inner.queued += 1;
        Admission::Queued
    }

    /// Endpoints this daemon cannot start more deliveries to: all permits taken, or claims
    /// already queued. The claim query skips them (at most `limit` of them are named).
    pub fn busy(&self, limit: usize) -> Vec<EndpointId> {
        let mut inner = lock(&self.inner);
        if inner.slots.len() > MAX_IDLE_SLOTS {
            // Forget endpoints with nothing in flight and nothing waiting: the map stays as
            // large as the set of endpoints being delivered to, not every endpoint ever seen.
            inner.slots.retain(|_, slot| {
                !slot.waiting.is_empty() || slot.semaphore.available_permits() < slot.cap as usize
            });
        }
        inner
            .slots
            .iter()
            .filter(|(_, slot)| !slot.waiting.is_empty() || slot.semaphore.available_permits() == 0)
            .map(|(id, _)| *id)
            .take(limit)
            .collect()
    }

    /// How many endpoints have every permit taken right now.
    pub fn at_cap(&self) -> usize {
        lock(&self.inner)
            .slots
            .values()
            .filter(|slot| slot.semaphore.available_permits() == 0)
            .count()
    }

    /// Claims queued in memory right now, across all endpoints.
    pub fn queued(&self) -> usize {
        lock(&self.inner).queued
    }

    /// Whether the global bound on queued claims is reached.
    pub fn is_full(&self) -> bool {
        self.queued() >= self.max_queued
    }

    /// Claims whose endpoint's permits went away without handing them on; the caller gives
    /// them back to the store.
    pub fn take_orphans(&self) -> Vec<ClaimedDelivery> {
        std::mem::take(&mut lock(&self.inner).orphans)
    }

    /// Stops handing permits on: queued claims are dropped from memory (the caller gives
    /// every lease back) and no claim is queued any more.
    pub fn stop(&self) {
        let mut inner = lock(&self.inner);
        inner.stopping = true;
        inner
            .slots
            .values_mut()
            .for_each(|slot| slot.waiting.clear());
        inner.orphans.clear();
        inner.queued = 0;
    }
}

impl EndpointPermit {
    /// For a delivery of this permit's endpoint that has just ended: the next claim queued
    /// behind the endpoint, with this permit, or `None` after releasing the permit (under the
    /// same lock, so nothing can be queued behind it in between). Claims whose lease would run
    /// out before an attempt could finish are handed back in `expired` instead.
    pub fn hand_on(
        mut self,
        now: Timestamp,
        expired: &mut Vec<ClaimedDelivery>,
    ) -> Option<(ClaimedDelivery, EndpointPermit)> {
        let inner = self.inner.clone();
        let mut guard = lock(&inner);
        let state = &mut *guard;
        if !state.stopping {
            if let Some(slot) = state.slots.get_mut(&self.endpoint) {
                while let Some((claim, lease_until)) = slot.waiting.pop_front() {
                    state.queued -= 1;
                    let attempt_ends =
                        now + Duration::milliseconds(i64::from(
                            claim.endpoint.timeout_ms.min(MAX_ENDPOINT_TIMEOUT_MS),
                        )) + Duration::milliseconds(LEASE_MARGIN_MS);
                    if attempt_ends < lease_until {
                        drop(guard);
                        return Some((claim, self));
                    }
                    expired.push(claim);
                }
            }
        }
        self.release(state);
        None
    }

    /// For a delivery whose outcome has just disabled the endpoint: every claim queued behind
    /// it goes into `given_back` (for the store, where it waits with the endpoint), and the
    /// permit is released, under the same lock.
    pub fn give_back_queue(mut self, given_back: &mut Vec<ClaimedDelivery>) {
        let inner = self.inner.clone();
        let mut guard = lock(&inner);
        let state = &mut *guard;
        if let Some(slot) = state.slots.get_mut(&self.endpoint) {
            state.queued -= slot.waiting.len();
            given_back.extend(slot.waiting.drain(..).map(|(claim, _)| claim));
        }
        self.release(state);
    }

    fn release(&mut self, state: &mut Inner) {
        drop(self.permit.take());
        // Reached with claims still queued only when the permit is dropped without being
        // handed on (its task died, or the engine is stopping): they are given back rather
        // than left waiting for a permit holder that may never come.
        if let Some(slot) = state.slots.get_mut(&self.endpoint) {
            if !slot.waiting.is_empty() {
                let held =
                    slot.cap as usize - slot.semaphore.available_permits().min(slot.cap as usize);
                if held == 0 {
                    state.queued -= slot.waiting.len();
                    state
                        .orphans
                        .extend(slot.waiting.drain(..).map(|(claim, _)| claim));
                }
            }
        }
    }
}

impl Drop for EndpointPermit {
    fn drop(&mut self) {
        if self.permit.is_some() {
            let inner = self.inner.clone();
            let mut state = lock(&inner);
            self.release(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ids::{EventId, MerchantId};
    use crate::keys::Mode;
    use crate::signing::Scheme;
    use crate::store::EndpointRecord;

    fn endpoint(max_in_flight: u32) -> EndpointRecord {
        let now = chrono::Utc::now();
        EndpointRecord {
            id: EndpointId::new(),
            merchant_id: MerchantId::new(),
            mode: Mode::Test,
            url: "http://127.0.0.1:9/hook".into(),
            description: String::new(),
            event_types: Vec::new(),
            scheme: Scheme::Bolt,
            enabled: true,
            max_in_flight,
            timeout_ms: 1_000,
            headers: BTreeMap::new(),
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
            tls_verify: true,
        }
    }

    fn claim(endpoint: &EndpointRecord) -> ClaimedDelivery {
        ClaimedDelivery {
            id: DeliveryId::new(),
            lease: "worker-test/0".into(),
            event_id: EventId::new(),
            event_type: "order.created".into(),
            body: b"{}".to_vec(),
            attempts: 0,
            endpoint: endpoint.clone(),
            secrets_version: 0,
        }
    }

    fn lease() -> Timestamp {
        chrono::Utc::now() + Duration::seconds(60)
    }

    fn started(admission: Admission) -> (ClaimedDelivery, EndpointPermit) {
        match admission {
            Admission::Start(claim, permit) => (claim, permit),
            other => panic!("expected a start, got {other:?}"),
        }
    }

    /// The race of issue 12, item 9: the last holder of an endpoint's permit finds nothing
    /// queued; a claim admitted right then must start at once, not queue behind a permit that
    /// is about to go away (nothing would ever send it, and the endpoint would stay busy).
    #[test]
    fn a_claim_admitted_as_the_last_permit_is_released_starts_at_once() {
        let slots = EndpointSlots::new(100);
        let ep = endpoint(1);
        let (_, permit) = started(slots.admit(claim(&ep), lease()));
        let mut expired = Vec::new();
        // The delivery ends and finds nothing queued: the permit is released in the same step.
        assert!(permit.hand_on(chrono::Utc::now(), &mut expired).is_none());
        let (_, permit) = started(slots.admit(claim(&ep), lease()));
        assert!(slots.busy(10).contains(&ep.id), "at its cap while sending");
        drop(permit);
        assert!(slots.busy(10).is_empty());
        assert_eq!(slots.queued(), 0);
        assert!(expired.is_empty());
    }

    #[test]
    fn queued_claims_are_sent_in_order_with_the_finishing_permit() {
        let slots = EndpointSlots::new(100);
        let ep = endpoint(1);
        let (_, permit) = started(slots.admit(claim(&ep), lease()));
        let second = claim(&ep);
        let second_id = second.id;
        assert!(matches!(slots.admit(second, lease()), Admission::Queued));
        assert!(matches!(
            slots.admit(claim(&ep), lease()),
            Admission::Queued
        ));
        assert_eq!(slots.queued(), 2);
        assert_eq!(slots.busy(10), vec![ep.id]);
        let mut expired = Vec::new();
        let (next, permit) = permit.hand_on(chrono::Utc::now(), &mut expired).unwrap();
        assert_eq!(next.id, second_id);
        let (_, permit) = permit.hand_on(chrono::Utc::now(), &mut expired).unwrap();
        assert!(permit.hand_on(chrono::Utc::now(), &mut expired).is_none());
        assert_eq!(slots.queued(), 0);
        assert!(slots.busy(10).is_empty());
        assert!(expired.is_empty());
    }

    #[test]
    fn claims_whose_lease_would_run_out_are_handed_back_not_sent() {
        let slots = EndpointSlots::new(100);
        let ep = endpoint(1);
        let (_, permit) = started(slots.admit(claim(&ep), lease()));
        let soon = chrono::Utc::now() + Duration::milliseconds(500);
        assert!(matches!(slots.admit(claim(&ep), soon), Admission::Queued));
        let mut expired = Vec::new();
        assert!(permit.hand_on(chrono::Utc::now(), &mut expired).is_none());
        assert_eq!(expired.len(), 1);
        assert_eq!(slots.queued(), 0);
        assert!(slots.busy(10).is_empty());
    }

    #[test]
    fn queued_claims_are_bounded_across_endpoints() {
        let slots = EndpointSlots::new(2);
        let (a, b) = (endpoint(1), endpoint(1));
        let _held_a = started(slots.admit(claim(&a), lease()));
        let _held_b = started(slots.admit(claim(&b), lease()));
        assert!(matches!(slots.admit(claim(&a), lease()), Admission::Queued));
        assert!(matches!(slots.admit(claim(&b), lease()), Admission::Queued));
        assert!(slots.is_full());
        let refused = claim(&a);
        let refused_id = refused.id;
        match slots.admit(refused, lease()) {
            Admission::HandBack(id) => assert_eq!(id, refused_id),
            other => panic!("expected a hand-back, got {other:?}"),
        }
        assert_eq!(slots.queued(), 2);
        // An endpoint with a free permit still starts: the bound is on memory, not on sending.
        let _started = started(slots.admit(claim(&endpoint(1)), lease()));
    }

    #[test]
    fn a_disabled_endpoints_queue_is_given_back_not_handed_on() {
        let slots = EndpointSlots::new(16);
        let ep = endpoint(1);
        let (_, permit) = started(slots.admit(claim(&ep), lease()));
        for _ in 0..3 {
            assert!(matches!(
                slots.admit(claim(&ep), lease()),
                Admission::Queued
            ));
        }
        assert_eq!(slots.queued(), 3);
        let mut given_back = Vec::new();
        permit.give_back_queue(&mut given_back);
        assert_eq!(given_back.len(), 3);
        assert_eq!(slots.queued(), 0);
        // The permit is free again: the next claim starts at once.
        started(slots.admit(claim(&ep), lease()));
    }

    #[test]
    fn a_permit_dropped_without_handing_on_gives_its_queue_back() {
        let slots = EndpointSlots::new(100);
        let ep = endpoint(2);
        let (_, first) = started(slots.admit(claim(&ep), lease()));
        let (_, second) = started(slots.admit(claim(&ep), lease()));
        assert!(matches!(
            slots.admit(claim(&ep), lease()),
            Admission::Queued
        ));
        // One holder dies: the other still holds a permit and will send the queued claim.
        drop(first);
        assert!(slots.take_orphans().is_empty());
        assert_eq!(slots.queued(), 1);
        // The last holder dies too: the claim is given back instead of waiting for nobody.
        drop(second);
        assert_eq!(slots.take_orphans().len(), 1);
        assert_eq!(slots.queued(), 0);
        assert!(slots.busy(10).is_empty());
    }
}
