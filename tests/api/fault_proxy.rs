//! A fault-injecting TCP proxy for tests, between the daemon and its database on loopback: it
//! forwards bytes both ways, and on command cuts every connection (a reset, as a server
//! restart or a network fault gives), refuses new ones for a while (the port is closed, as
//! while a server restarts), or delays every chunk it forwards (a slow network).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accepting: tokio::task::JoinHandle<()>,
}

struct Shared {
    upstream: SocketAddr,
    /// Bumped to cut every open connection.
    cuts: watch::Sender<u64>,
    /// Set with a duration to close the port for that long.
    refuse: Mutex<Option<Duration>>,
    refuse_now: Notify,
    /// Whether the port is closed right now.
    refusing: Mutex<bool>,
    latency: Mutex<Duration>,
    connections: Mutex<u64>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (a random port) to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            cuts: watch::channel(0).0,
            refuse: Mutex::new(None),
            refuse_now: Notify::new(),
            refusing: Mutex::new(false),
            latency: Mutex::new(Duration::ZERO),
            connections: Mutex::new(0),
        });
        let accepting = tokio::spawn(accept_loop(listener, addr, shared.clone()));
        FaultProxy {
            addr,
            shared,
            accepting,
        }
    }

    /// Resets every connection open now (both sides see a reset).
    pub fn cut_all(&self) {
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    /// Closes the port for `period` (connecting is refused), then opens it again.
    pub fn refuse_for(&self, period: Duration) {
        *self.shared.refuse.lock().unwrap() = Some(period);
        *self.shared.refusing.lock().unwrap() = true;
        self.shared.refuse_now.notify_one();
    }

    /// Whether connections are being refused right now.
    pub fn refusing(&self) -> bool {
        *self.shared.refusing.lock().unwrap()
    }

    /// Delays every chunk forwarded, either way, by `latency` (zero: none).
    pub fn set_latency(&self, latency: Duration) {
        *self.shared.latency.lock().unwrap() = latency;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        *self.shared.connections.lock().unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut_all();
    }
}

async fn accept_loop(mut listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    *shared.connections.lock().unwrap() += 1;
                    tokio::spawn(forward(client, shared.clone()));
                }
            }
            () = shared.refuse_now.notified() => {
                let period = shared.refuse.lock().unwrap().take().unwrap_or_default();
                drop(listener);
                tokio::time::sleep(period).await;
                // Rebinding the same port right away is allowed (tokio sets SO_REUSEADDR).
                listener = loop {
                    match TcpListener::bind(addr).await {
                        Ok(listener) => break listener,
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                };
                *shared.refusing.lock().unwrap() = false;
            }
        }
    }
}

/// Forwards one connection until either side closes it or it is cut.
async fn forward(mut client: TcpStream, shared: Arc<Shared>) {
    let mut cuts = shared.cuts.subscribe();
    let Ok(mut server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let cut = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        tokio::select! {
            () = copy(&mut client_read, &mut server_write, &shared) => false,
            () = copy(&mut server_read, &mut client_write, &shared) => false,
            _ = cuts.changed() => true,
        }
    };
    if cut {
        // Linger zero: closing sends a reset, not an orderly end.
        #[allow(deprecated)]
        for stream in [&client, &server] {
            let _ = stream.set_linger(Some(Duration::ZERO));
        }
    }
}

async fn copy(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    shared: &Shared,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let latency = *shared.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// `url` (a PostgreSQL URL) with its host and port replaced by `addr`.
pub fn url_through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let userinfo = authority
        .rsplit_once('@')
        .map(|(userinfo, _)| format!("{userinfo}@"))
        .unwrap_or_default();
    format!("{scheme}://{userinfo}{addr}{tail}")
}

/// The host and port a PostgreSQL URL names (5432 when it names none), resolved.
pub async fn upstream_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("a URL").1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let mut addresses = tokio::net::lookup_host(&host)
        .await
        .expect("resolve the database host");
    addresses.next().expect("an address for the database host")
}

#[test]
fn urls_are_pointed_through_the_proxy() {
    let proxy: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    assert_eq!(
        url_through("postgres://postgres@127.0.0.1:5432/db", proxy),
        "postgres://postgres@127.0.0.1:4000/db"
    );
    assert_eq!(
        url_through("postgres://u:p@localhost/db?sslmode=disable", proxy),
        "postgres://u:p@127.0.0.1:4000/db?sslmode=disable"
    );
}
