//! The clocks of each connection (header-read, idle and stalled-response timeouts) and the
//! registry of open connections the cap picks the longest idle one from. Plain state shared
//! between a connection's socket, its requests and its watcher; uses only `std` and tokio's
//! synchronisation types.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ConnectionLimits;

/// Why a connection was closed, for `hooksign_http_connections_closed_total`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Closed {
    HeaderTimeout,
    IdleTimeout,
    Stalled,
    ForRoom,
}

impl Closed {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Stalled => "stalled",
            Closed::ForRoom => "for_room",
        }
    }
}

/// The open connections, so that one can be picked to make room.
#[derive(Clone, Default)]
pub(super) struct Registry(Arc<RegistryInner>);

#[derive(Default)]
struct RegistryInner {
    next_id: AtomicU64,
    connections: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Registry {
    pub(super) fn insert(&self, limits: ConnectionLimits) -> Arc<Activity> {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(id, limits));
        let mut connections = self.lock();
        connections.insert(id, activity.clone());
        metrics::gauge!("hooksign_http_connections").set(connections.len() as f64);
        activity
    }

    pub(super) fn remove(&self, id: u64) {
        let mut connections = self.lock();
        connections.remove(&id);
        metrics::gauge!("hooksign_http_connections").set(connections.len() as f64);
    }

    /// Tells the connection without a request in flight that has been idle the longest to
    /// close. Runs only at the cap, so a scan is fine.
    pub(super) fn close_longest_idle(&self) {
        let connections = self.lock();
        let victim = connections
            .values()
            .filter(|activity| !activity.close_for_room.is_cancelled())
            .filter(|activity| activity.in_flight.load(Ordering::SeqCst) == 0)
            .min_by_key(|activity| activity.idle_since());
        if let Some(activity) = victim {
            activity.close_for_room.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        // The map holds no invariant a panic elsewhere could break.
        self.0
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// No time recorded yet.
const NEVER: u64 = u64::MAX;

/// What one connection is doing, as its clocks need it. Times are milliseconds since
/// `opened`.
pub(super) struct Activity {
    pub(super) id: u64,
    limits: ConnectionLimits,
    pub(super) opened: Instant,
    /// Requests whose response has not been written to the end.
    pub(super) in_flight: AtomicUsize,
    /// Whether a request has been answered (until then, the header timeout applies).
    answered: AtomicBool,
    /// When the connection last had nothing to do (opened, or its last response ended).
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived while idle.
    head_started: AtomicU64,
    /// When a request in flight last moved (it began, or response bytes were written).
    progress: AtomicU64,
    /// Set to make room under the cap.
    pub(super) close_for_room: CancellationToken,
    /// The deadline the connection's timer is set to.
    armed: AtomicU64,
    /// Wakes the connection's watcher when its deadline came closer than `armed`.
    pub(super) changed: Notify,
}

impl Activity {
    pub(super) fn new(id: u64, limits: ConnectionLimits) -> Self {
        Self {
            id,
            limits,
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            answered: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NEVER),
            progress: AtomicU64::new(0),
            close_for_room: CancellationToken::new(),
            armed: AtomicU64::new(NEVER),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened + Duration::from_millis(millis)
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.opened).as_millis()).unwrap_or(NEVER - 1)
    }

    /// The current deadline, noted as the one the timer is set to.
    pub(super) fn arm(&self) -> Instant {
        let deadline = self.deadline().0;
        self.armed.store(self.millis(deadline), Ordering::SeqCst);
        deadline
    }

    /// Wakes the watcher if the deadline is now closer than the timer.
    fn nudge(&self) {
        if self.millis(self.deadline().0) < self.armed.load(Ordering::SeqCst) {
            self.changed.notify_one();
        }
    }

    fn idle_since(&self) -> Instant {
        self.at(self.idle_since.load(Ordering::SeqCst))
    }

    /// Bytes arrived from the client.
    pub(super) fn read(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            let now = self.now();
            let started =
                self.head_started
                    .compare_exchange(NEVER, now, Ordering::SeqCst, Ordering::SeqCst);
            if started.is_ok() {
                self.nudge();
            }
        }
    }

    /// Response bytes were written.
    pub(super) fn wrote(&self) {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            self.progress.store(self.now(), Ordering::Relaxed);
        }
    }

    /// When the connection is closed if nothing happens first, and why.
    pub(super) fn deadline(&self) -> (Instant, Closed) {
        let limits = &self.limits;
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            let progress = self.at(self.progress.load(Ordering::Relaxed));
            return (
                progress + limits.request_timeout + limits.idle_timeout,
                Closed::Stalled,
            );
        }
        match self.head_started.load(Ordering::SeqCst) {
            NEVER if self.answered.load(Ordering::SeqCst) => {
                (self.idle_since() + limits.idle_timeout, Closed::IdleTimeout)
            }
            NEVER => (
                self.idle_since() + limits.header_read_timeout,
                Closed::HeaderTimeout,
            ),
            started => (
                self.at(started) + limits.header_read_timeout,
                Closed::HeaderTimeout,
            ),
        }
    }
}

/// A request in flight on a connection, from the moment its headers are read until its
/// response has been written to the end (or abandoned).
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(super) fn begin(activity: Arc<Activity>) -> Self {
        activity.progress.store(activity.now(), Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.head_started.store(NEVER, Ordering::SeqCst);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        // The idle clock is set before the count drops, so the watcher never pairs "idle"
        // with the idle time of an earlier request.
        activity.idle_since.store(activity.now(), Ordering::SeqCst);
        activity.head_started.store(NEVER, Ordering::SeqCst);
        activity.answered.store(true, Ordering::SeqCst);
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
        activity.nudge();
    }
}
