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
//!
//! Layout: this file is the accept loop and the cap; `limits` holds [`ConnectionLimits`] and
//! the file-descriptor limit, `connection` serves one connection, `activity` keeps its clocks
//! (the timeouts) and the registry of open connections. Wiring layer: used by `crate::server`;
//! uses `crate::config` and the HTTP stack (axum, hyper), never the handlers.

mod activity;
mod connection;
mod limits;

#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use activity::{Activity, Registry};
use connection::serve_connection;
use limits::is_out_of_descriptors;
pub use limits::{raise_fd_limit, ConnectionLimits};

/// How long the accept loop pauses after an accept error that is not about one connection.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
