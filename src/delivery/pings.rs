//! Bounds on test pings (`POST /v1/endpoints/{id}/test`). A ping is sent at once, outside the
//! queue and its in-flight caps, so without a bound of its own every request would hold an
//! outbound connection for as long as the receiver keeps it (and, under an `Idempotency-Key`,
//! even after the client has gone). So this daemon sends at most [`PINGS_PER_ENDPOINT`] pings
//! to one endpoint and [`MAX_PINGS`] in all at once; a ping over either bound is refused
//! rather than queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ids::EndpointId;

/// Test pings in flight to one endpoint on this daemon, at most.
pub const PINGS_PER_ENDPOINT: u32 = 1;

/// Test pings in flight on this daemon, at most.
pub const MAX_PINGS: u32 = 16;

/// Why a ping was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingRefused {
    /// [`PINGS_PER_ENDPOINT`] pings to this endpoint are in flight.
    EndpointBusy,
    /// [`MAX_PINGS`] pings are in flight on this daemon.
    DaemonBusy,
}

#[derive(Default)]
struct Inner {
    /// Pings in flight per endpoint; an endpoint with none has no entry.
    per_endpoint: HashMap<EndpointId, u32>,
    total: u32,
}

/// The pings in flight on this daemon.
#[derive(Default)]
pub struct PingSlots {
    inner: Arc<Mutex<Inner>>,
}

/// The right to send one ping; the slot is freed when it is dropped (the ping ended, or the
/// request sending it was dropped).
#[derive(Debug)]
pub struct PingPermit {
    inner: Arc<Mutex<Inner>>,
    endpoint: EndpointId,
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl PingSlots {
    /// Takes a slot for a ping to `endpoint`, or says which bound is reached.
    pub fn try_start(&self, endpoint: EndpointId) -> Result<PingPermit, PingRefused> {
        let mut inner = lock(&self.inner);
        let in_flight = inner.per_endpoint.get(&endpoint).copied().unwrap_or(0);
        if in_flight >= PINGS_PER_ENDPOINT {
            return Err(PingRefused::EndpointBusy);
        }
        if inner.total >= MAX_PINGS {
            return Err(PingRefused::DaemonBusy);
        }
        inner.per_endpoint.insert(endpoint, in_flight + 1);
        inner.total += 1;
        Ok(PingPermit {
            inner: self.inner.clone(),
            endpoint,
        })
    }

    /// Pings in flight on this daemon right now.
    pub fn in_flight(&self) -> u32 {
        lock(&self.inner).total
    }
}

impl Drop for PingPermit {
    fn drop(&mut self) {
        let mut inner = lock(&self.inner);
        inner.total = inner.total.saturating_sub(1);
        if let Some(count) = inner.per_endpoint.get_mut(&self.endpoint) {
            *count -= 1;
            if *count == 0 {
                inner.per_endpoint.remove(&self.endpoint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_ping_to_one_endpoint_waits_for_the_first_to_end() {
        let slots = PingSlots::default();
        let endpoint = EndpointId::new();
        let first = slots.try_start(endpoint).expect("first ping");
        assert_eq!(
            slots.try_start(endpoint).unwrap_err(),
            PingRefused::EndpointBusy
        );
        let other = slots
            .try_start(EndpointId::new())
            .expect("another endpoint");
        drop(first);
        let again = slots.try_start(endpoint).expect("slot freed");
        drop((other, again));
        assert_eq!(slots.in_flight(), 0);
        assert!(lock(&slots.inner).per_endpoint.is_empty());
    }

    #[test]
    fn pings_over_the_daemon_bound_are_refused() {
        let slots = PingSlots::default();
        let held: Vec<_> = (0..MAX_PINGS)
            .map(|_| slots.try_start(EndpointId::new()).expect("under the bound"))
            .collect();
        assert_eq!(
            slots.try_start(EndpointId::new()).unwrap_err(),
            PingRefused::DaemonBusy
        );
        drop(held);
        assert!(slots.try_start(EndpointId::new()).is_ok());
    }
}
