//! The HTTP connection loop: accepts TCP connections and serves the router on each with
//! hyper's HTTP/1.1, so that a client that opens connections and then sends nothing, or a byte
//! now and then, costs little and cannot crowd out anyone else.
//!
//! - **Header-read timeout** (`http.header_read_timeout_secs`): a new connection must deliver
//!   its first request's headers within it, and once the first byte of any later request has
//!   arrived, the rest of its headers must follow within it (slow headers).
//! - **Idle timeout** (`http.idle_timeout_secs`): a keep-alive connection with no request in
//!   flight for this long is closed. (hyper's own header timer cannot tell waiting for the next
//!   request apart from reading a slow one, so both clocks live here, fed by the connection's
//!   reads and its requests.) A request in flight is bounded by `http.request_timeout_secs`;
//!   a response its client does not read is given up after that plus the idle timeout
//!   without progress.
//! - **Connection cap** (`http.max_connections`, lowered to what the file-descriptor limit
//!   allows): at the cap, the next accepted connection takes the place of the connection idle
//!   the longest, which is closed; a connection with a request in flight is never closed for
//!   room. Only when every connection has a request in flight does accepting wait (the kernel
//!   queues new connections meanwhile) until one finishes. Closing new connections at the cap
//!   would refuse `/healthz` exactly while someone holds the cap with idle connections, and
//!   merely waiting would make everyone wait for those to time out; an idle connection costs
//!   its client only a reconnect.
//! - **Accept errors** (`EMFILE`: out of file descriptors) do not spin: the loop closes an idle
//!   connection to free one and backs off briefly.
//! - **Shutdown**: when `stop` fires, the listener closes, idle connections close at once and a
//!   connection with a request in flight closes after answering it. [`serve`] returns when all
//!   are gone; the caller bounds how long it waits (`http.shutdown_timeout_secs`) and dropping
//!   the future closes what is left.
//!
//! Handlers still see the peer address as `ConnectInfo<SocketAddr>`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How long the accept loop pauses after an accept error that is not about one connection.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// File descriptors kept for everything but client connections (database pool, outbound
/// deliveries, files), on top of `database.max_connections` and `delivery.max_in_flight`.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The limits [`serve`] holds connections to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `http.header_read_timeout_secs`.
    pub header_read_timeout: Duration,
    /// `http.idle_timeout_secs`.
    pub idle_timeout: Duration,
    /// `http.request_timeout_secs` (what a request in flight may take).
    pub request_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The configured limits, with the connection cap lowered to fit `fd_limit` (the soft
    /// `RLIMIT_NOFILE` in force, when known) after what the daemon needs for itself.
    pub fn new(config: &Config, fd_limit: Option<u64>) -> Self {
        let http = &config.http;
        let mut max_connections = http.max_connections;
        if let Some(limit) = fd_limit {
            let reserved = RESERVED_DESCRIPTORS
                + u64::from(config.database.max_connections)
                + config.delivery.max_in_flight as u64;
            let room = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
            max_connections = max_connections.min(room.max(1));
        }
        Self {
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(http.idle_timeout_secs),
            request_timeout: Duration::from_secs(http.request_timeout_secs),
            max_connections,
        }
    }
}

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit and returns the
/// soft limit then in force (`None` where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            // macOS refuses an unlimited hard limit as the soft one; 65536 is enough anyway.
            for target in [limit.rlim_max, limit.rlim_max.min(65_536)] {
                let raised = libc::rlimit {
                    rlim_cur: target,
                    rlim_max: limit.rlim_max,
                };
                // SAFETY: setrlimit reads one `rlimit` we own.
                if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                    limit.rlim_cur = target;
                    break;
                }
            }
        }
        #[allow(clippy::useless_conversion)] // `rlim_t` is not `u64` on every Unix
        Some(u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Serves `router` on `listener` within `limits` until `stop` fires and every connection has
/// closed (see the module documentation).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let room = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let open = Registry::default();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "cannot accept connections; backing off");
                if is_out_of_descriptors(&err) {
                    open.close_longest_idle();
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = make_room(&room, &open) => permit,
        };
        while connections.try_join_next().is_some() {}
        let activity = open.insert(limits);
        let slot = Slot {
            open: open.clone(),
            activity: activity.clone(),
            _permit: permit,
        };
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            slot,
            stop.clone(),
        ));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// A connection slot: frees its place in the cap and the registry when the connection ends.
struct Slot {
    open: Registry,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.remove(self.activity.id);
    }
}

/// Waits for a free place under the cap, closing the connection idle the longest to make one.
async fn make_room(room: &Arc<Semaphore>, open: &Registry) -> OwnedSemaphorePermit {
    loop {
        if let Ok(permit) = room.clone().try_acquire_owned() {
            return permit;
        }
        open.close_longest_idle();
        // Every connection busy: wait, and look again for one that went idle meanwhile.
        if let Ok(Ok(permit)) =
            tokio::time::timeout(Duration::from_millis(50), room.clone().acquire_owned()).await
        {
            return permit;
        }
    }
}

/// Errors about one connection that is already gone: accept the next.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn is_out_of_descriptors(err: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = err;
        false
    }
}

/// Why a connection was closed, for `hooksign_http_connections_closed_total`.
#[derive(Debug, Clone, Copy)]
enum Closed {
    HeaderTimeout,
    IdleTimeout,
    Stalled,
    ForRoom,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Stalled => "stalled",
            Closed::ForRoom => "for_room",
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    slot: Slot,
    stop: CancellationToken,
) {
    let activity = slot.activity.clone();
    let io = hyper_util::rt::TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let in_flight = InFlight::begin(activity.clone());
            request.extensions_mut().insert(ConnectInfo(peer));
            // A Router is always ready: no `poll_ready` needed before `call`.
            let mut router = router.clone();
            async move {
                let response =
                    tower::Service::call(&mut router, request.map(axum::body::Body::new)).await?;
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    let timer = tokio::time::sleep_until(activity.arm().into());
    tokio::pin!(timer);
    let closed = loop {
        // The timer is moved only when the deadline came closer; when it fires early (a
        // request came meanwhile), it is re-armed. Under steady traffic that is once per
        // timeout period, not twice per request.
        let deadline = activity.deadline().0;
        if deadline < timer.deadline().into_std() {
            timer.as_mut().reset(activity.arm().into());
        }
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                break None;
            }
            () = timer.as_mut() => {
                // The clock may have moved on (a request came): only a deadline still past ends it.
                let (deadline, reason) = activity.deadline();
                if Instant::now() >= deadline {
                    break Some(reason);
                }
                timer.as_mut().reset(activity.arm().into());
            }
            // A request ended or a head started: the deadline came closer.
            () = activity.changed.notified() => {}
            () = activity.close_for_room.cancelled(), if !closing => {
                if activity.in_flight.load(Ordering::SeqCst) == 0 {
                    break Some(Closed::ForRoom);
                }
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = stop.cancelled(), if !closing => {
                if activity.in_flight.load(Ordering::SeqCst) == 0 {
                    break None;
                }
                // Answer the request in flight, then close.
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if let Some(reason) = closed {
        tracing::debug!(%peer, reason = reason.as_str(), "closing connection");
        metrics::counter!("hooksign_http_connections_closed_total", "reason" => reason.as_str())
            .increment(1);
    }
    drop(slot);
}

/// The open connections, so that one can be picked to make room.
#[derive(Clone, Default)]
struct Registry(Arc<RegistryInner>);

#[derive(Default)]
struct RegistryInner {
    next_id: AtomicU64,
    connections: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Registry {
    fn insert(&self, limits: ConnectionLimits) -> Arc<Activity> {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(id, limits));
        let mut connections = self.lock();
        connections.insert(id, activity.clone());
        metrics::gauge!("hooksign_http_connections").set(connections.len() as f64);
        activity
    }

    fn remove(&self, id: u64) {
        let mut connections = self.lock();
        connections.remove(&id);
        metrics::gauge!("hooksign_http_connections").set(connections.len() as f64);
    }

    /// Tells the connection without a request in flight that has been idle the longest to
    /// close. Runs only at the cap, so a scan is fine.
    fn close_longest_idle(&self) {
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
struct Activity {
    id: u64,
    limits: ConnectionLimits,
    opened: Instant,
    /// Requests whose response has not been written to the end.
    in_flight: AtomicUsize,
    /// Whether a request has been answered (until then, the header timeout applies).
    answered: AtomicBool,
    /// When the connection last had nothing to do (opened, or its last response ended).
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived while idle.
    head_started: AtomicU64,
    /// When a request in flight last moved (it began, or response bytes were written).
    progress: AtomicU64,
    /// Set to make room under the cap.
    close_for_room: CancellationToken,
    /// The deadline the connection's timer is set to.
    armed: AtomicU64,
    /// Wakes the connection's watcher when its deadline came closer than `armed`.
    changed: Notify,
}

impl Activity {
    fn new(id: u64, limits: ConnectionLimits) -> Self {
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
    fn arm(&self) -> Instant {
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
    fn read(&self) {
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
    fn wrote(&self) {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            self.progress.store(self.now(), Ordering::Relaxed);
        }
    }

    /// When the connection is closed if nothing happens first, and why.
    fn deadline(&self) -> (Instant, Closed) {
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
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
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

/// A response body that keeps its request in flight until hyper has sent it and dropped it.
struct Tracked {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The client's socket, reporting reads and writes to the connection's clocks.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: 100,
        }
    }

    #[test]
    fn the_clock_that_applies_follows_what_the_connection_does() {
        let activity = Arc::new(Activity::new(0, limits()));
        let opened = activity.opened;
        let (at, reason) = activity.deadline();
        assert!(matches!(reason, Closed::HeaderTimeout));
        assert_eq!(at, opened + Duration::from_secs(10));
        let in_flight = InFlight::begin(activity.clone());
        assert!(matches!(activity.deadline().1, Closed::Stalled));
        // Bytes read while a request is in flight do not start a header clock.
        activity.read();
        drop(in_flight);
        let (at, reason) = activity.deadline();
        assert!(matches!(reason, Closed::IdleTimeout));
        assert!(at >= opened + Duration::from_secs(60));
        // The first byte of the next request starts the header clock.
        activity.read();
        let (at, reason) = activity.deadline();
        assert!(matches!(reason, Closed::HeaderTimeout));
        assert!(at < opened + Duration::from_secs(60));
    }

    #[test]
    fn the_cap_follows_the_descriptor_limit() {
        let mut config = Config::default();
        config.http.max_connections = 4096;
        assert_eq!(ConnectionLimits::new(&config, None).max_connections, 4096);
        let reserved = 64 + 10 + 256;
        assert_eq!(
            ConnectionLimits::new(&config, Some(1024)).max_connections,
            1024 - reserved
        );
        assert_eq!(ConnectionLimits::new(&config, Some(10)).max_connections, 1);
    }

    #[test]
    fn room_is_made_by_closing_the_longest_idle_connection_never_a_busy_one() {
        let open = Registry::default();
        let busy = open.insert(limits());
        let _in_flight = InFlight::begin(busy.clone());
        std::thread::sleep(Duration::from_millis(5));
        let older = open.insert(limits());
        std::thread::sleep(Duration::from_millis(5));
        let newer = open.insert(limits());
        open.close_longest_idle();
        assert!(older.close_for_room.is_cancelled());
        assert!(!newer.close_for_room.is_cancelled());
        open.close_longest_idle();
        assert!(newer.close_for_room.is_cancelled());
        open.close_longest_idle();
        assert!(!busy.close_for_room.is_cancelled());
    }
}
