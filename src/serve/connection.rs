//! Serving one connection: hyper's HTTP/1.1 on the client's socket, watched so the
//! connection's clocks (see `activity`) see every read, write and request, and closed when a
//! deadline passes, room is needed or the daemon stops.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, Closed, InFlight};
use super::Slot;

pub(super) async fn serve_connection(
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
