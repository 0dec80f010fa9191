//! Endpoints, events, deliveries and attempts: the durable queue of the delivery engine.
//!
//! An event and its delivery rows are written in one transaction, so once the API answered
//! 202 nothing is lost. Workers claim due deliveries in batches with a lease (on PostgreSQL
//! with `FOR UPDATE SKIP LOCKED`, so many daemons share one queue); a lease that runs out is
//! claimed again (at-least-once delivery).
//!
//! Endpoint headers (usually the receiver's credentials) are sealed under the master key on
//! their way to the database and opened when a row is read, so the engine sends the real
//! values and nothing else sees them on disk.

/// The [`StoreError::Conflict`](super::StoreError::Conflict) of a retry of a delivery in flight.
pub const DELIVERY_IN_FLIGHT: &str = "delivery_in_flight";

/// SQL: the delivery (alias `d` or the bare table) is not being sent: no lease, or one that
/// has run out by `$now` (the placeholder given).
pub(super) fn idle_condition(now: &str) -> String {
    format!("(leased_by IS NULL OR lease_until IS NULL OR lease_until < {now})")
}

/// Why the engine disabled an endpoint after an attempt.
pub type DisabledReason = Option<String>;

/// The delivery engine's storage: endpoints, ingest, the queue, outcomes and replays.
pub trait DeliveryStore:
    super::endpoints::EndpointStore
    + super::events::EventStore
    + super::queue::QueueStore
    + super::outcomes::OutcomeStore
    + super::replay::ReplayStore
    + super::paused::PauseStore
{
}

impl<T> DeliveryStore for T where
    T: super::endpoints::EndpointStore
        + super::events::EventStore
        + super::queue::QueueStore
        + super::outcomes::OutcomeStore
        + super::replay::ReplayStore
        + super::paused::PauseStore
        + ?Sized
{
}
