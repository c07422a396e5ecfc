//! Serving: one accept loop for plain HTTP and HTTPS, with the connection-level limits.
//!
//! Every connection, plain or TLS, is served by hyper-util's HTTP/1.1 connection builder with
//! upgrades (the Phoenix WebSocket) and graceful shutdown. The limits ([`ServeLimits`]) are
//! applied here, before any request is parsed:
//!
//! | limit | answer |
//! |---|---|
//! | connections in total / per source IP | accepted and closed at once (no descriptor is held), one log line per offender |
//! | TLS handshake time | connection closed |
//! | time to the first byte, then to the end of the headers | connection closed |
//! | header size | 431 (hyper), connection closed |
//!
//! A connection is counted until its socket is closed, WebSocket included: the counter travels
//! inside the I/O object that the upgrade hands to the WebSocket.
//!
//! Shared port ([`serve_shared`]): when ICE-TCP media shares the web port, each connection's
//! first bytes are classified ([`super::sniff`]) before anything else reads it, and an
//! RFC 4571-framed STUN binding request hands the connection (still counted) to the media
//! plane. Classifying waits for at most [`super::sniff::SNIFF_LEN`] bytes, only when the
//! first byte is neither TLS nor an HTTP method, within the same header timeout.
//!
//! Shutdown: when `shutdown` resolves the listener closes, idle connections close, and open
//! HTTP requests get [`ServeLimits::shutdown_grace`] to finish; then the function returns
//! whatever the clients do (half-open connections included).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use warp::{Filter, Rejection};

use super::sniff::{FirstBytes, SNIFF_LEN, classify};

/// Connection-level limits of the HTTP server (filled by `config.rs` from flags).
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Most open connections (WebSockets included); more are closed at once.
    pub max_connections: usize,
    /// Most open connections from one source IP; more are closed at once.
    pub max_connections_per_ip: usize,
    /// A client must send a request's complete headers within this time, counted from the
    /// connection's start or the end of its previous response (slowloris, idle keep-alive).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; bigger: 431.
    pub max_header_bytes: usize,
    /// A TLS client must finish its handshake within this time.
    pub tls_handshake_timeout: Duration,
    /// After `shutdown` resolved, open HTTP requests get this long before the server returns.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 16_384,
            max_connections_per_ip: 256,
            header_read_timeout: Duration::from_secs(10),
            // hyper's smallest allowed buffer is 8192.
            max_header_bytes: 64 * 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_millis(500),
        }
    }
}

/// Serves `filter` on `listener` (over TLS when `tls` is set) with default limits until
/// `shutdown` completes.
pub async fn serve<F>(
    filter: F,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    serve_with(filter, listener, tls, ServeLimits::default(), shutdown).await;
}

/// Serves `filter` over TLS on `listener` with default limits until `shutdown` completes.
pub async fn serve_tls<F>(
    filter: F,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    serve(filter, listener, Some(acceptor), shutdown).await;
}

/// Serves `filter` on `listener` (over TLS when `tls` is set) with `limits` until `shutdown`
/// completes (see the module docs).
pub async fn serve_with<F>(
    filter: F,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    serve_shared(filter, listener, tls, limits, None, shutdown).await;
}

/// A connection the media plane takes over: any byte stream.
pub trait MediaStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> MediaStream for T {}

/// Takes over a web-port connection whose first bytes are ICE-TCP: the stream, the remote
/// address, our local address.
pub type IceTcpHandoff = Arc<dyn Fn(Box<dyn MediaStream>, SocketAddr, SocketAddr) + Send + Sync>;

/// [`serve_with`], handing ICE-TCP connections to `ice_tcp` when it is set (the port is
/// shared; see the module docs).
pub async fn serve_shared<F>(
    filter: F,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ServeLimits,
    ice_tcp: Option<IceTcpHandoff>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let graceful = GracefulShutdown::new();
    let counter = Arc::new(ConnectionCounter::new(&limits));
    let builder = Arc::new(http_builder(&limits));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    log::warn!("http: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(guard) = counter.admit(peer.ip()) else {
            // Refused: the descriptor is closed right here, before any byte is read.
            drop(tcp);
            continue;
        };
        prepare_accepted(&tcp);
        let io = Counted {
            io: tcp,
            _guard: guard,
        };
        let service = with_client_addr(filter.clone(), peer);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        let handshake_timeout = limits.tls_handshake_timeout;
        let idle_timeout = limits.header_read_timeout;
        let ice_tcp = ice_tcp.clone();
        tokio::spawn(async move {
            if !first_byte_within(&io.io, idle_timeout, peer).await {
                return;
            }
            if let Some(handoff) = ice_tcp
                && sniff_within(&io.io, idle_timeout).await == FirstBytes::IceTcp
            {
                match io.io.local_addr() {
                    Ok(local) => handoff(Box::new(io), peer, local),
                    Err(e) => log::debug!("http: {peer}: no local address: {e}"),
                }
                return;
            }
            let result = match tls {
                None => {
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                    watcher.watch(connection.into_owned()).await
                }
                Some(acceptor) => {
                    let Some(stream) = tls_accept(&acceptor, io, handshake_timeout, peer).await
                    else {
                        return;
                    };
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
            };
            if let Err(e) = result {
                log::debug!("http: connection with {peer} ended with an error: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        log::info!(
            "http: open requests did not finish within {:?}; stopping anyway",
            limits.shutdown_grace
        );
    }
}

/// The HTTP/1.1 connection builder with the header timeout and size limit.
/// What every accepted connection gets before anything is read from it: no Nagle delay.
/// Signalling is small messages each answered by the other side (join, offer, answer,
/// candidates), and a push written while an earlier one is unacknowledged would otherwise wait
/// for the client's delayed ACK, ~40 ms on Linux, at every step of a join (measured: a 2-member
/// meeting's join to first video 206 → 12 ms). Phoenix's Cowboy/Ranch sets `nodelay` on its
/// sockets too; ICE-TCP media frames, handed off from here, want it as much.
fn prepare_accepted(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
}

fn http_builder(limits: &ServeLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
}

/// Waits for the connection's first byte. hyper's header timer starts with the first byte, so a
/// connection that sends nothing is closed here after the same time (`false`).
async fn first_byte_within(tcp: &tokio::net::TcpStream, wait: Duration, peer: SocketAddr) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, tcp.peek(&mut first)).await {
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
        Err(_) => {
            log::debug!("http: {peer} sent nothing for {wait:?}; closing");
            false
        }
    }
}

/// Classifies the connection by its first bytes without consuming them, waiting (up to
/// `wait`) only while they cannot be told apart yet.
async fn sniff_within(tcp: &TcpStream, wait: Duration) -> FirstBytes {
    let deadline = tokio::time::Instant::now() + wait;
    let mut prefix = [0u8; SNIFF_LEN];
    loop {
        let seen = match tokio::time::timeout_at(deadline, tcp.peek(&mut prefix)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return FirstBytes::Unknown,
        };
        match classify(&prefix[..seen]) {
            FirstBytes::NeedMore if seen > 0 && tokio::time::Instant::now() < deadline => {
                // `peek` returns at once while the bytes it saw are unread: poll gently for
                // the rest of the 10 (they normally come in the same segment).
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            FirstBytes::NeedMore => return FirstBytes::Unknown,
            decided => return decided,
        }
    }
}

/// The TLS handshake, bounded by `wait`; `None` (logged) when it fails or times out.
async fn tls_accept<IO>(
    acceptor: &TlsAcceptor,
    io: IO,
    wait: Duration,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<IO>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(wait, acceptor.accept(io)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            log::debug!("https: TLS handshake with {peer} failed: {e}");
            None
        }
        Err(_) => {
            log::debug!("https: TLS handshake with {peer} timed out");
            None
        }
    }
}

/// The hyper service for one connection: `filter`, with the client's address put in every
/// request's extensions as a plain [`SocketAddr`] (what the Phoenix transports read).
fn with_client_addr<F>(
    filter: F,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = warp::reply::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<warp::reply::Response, std::convert::Infallible>> + Send,
> + Clone
+ Send
+ 'static
where
    F: Filter<Error = Rejection> + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let inner = TowerToHyperService::new(warp::service(filter));
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(peer);
        hyper::service::Service::call(&inner, request)
    })
}

/// Counts open connections in total and per source IP.
struct ConnectionCounter {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    /// Open connections per IP, and whether that IP was already logged as over the limit.
    per_ip: Mutex<HashMap<IpAddr, (usize, bool)>>,
    /// Whether the total limit was logged since the server was last under it.
    total_logged: std::sync::atomic::AtomicBool,
}

impl ConnectionCounter {
    fn new(limits: &ServeLimits) -> Self {
        ConnectionCounter {
            max_total: limits.max_connections.max(1),
            max_per_ip: limits.max_connections_per_ip.max(1),
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            total_logged: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Counts a new connection from `ip`, or `None` (with one log line per offender) when a
    /// limit is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionGuard> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if self.total.load(Ordering::SeqCst) >= self.max_total {
            if !self.total_logged.swap(true, Ordering::SeqCst) {
                log::warn!(
                    "http: refusing connections: {} open (limit --max-connections)",
                    self.max_total
                );
            }
            return None;
        }
        let entry = per_ip.entry(ip).or_insert((0, false));
        if entry.0 >= self.max_per_ip {
            if !entry.1 {
                entry.1 = true;
                log::warn!(
                    "http: refusing connections from {ip}: {} open (limit --max-connections-per-ip)",
                    self.max_per_ip
                );
            }
            return None;
        }
        entry.0 += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        Some(ConnectionGuard {
            counter: self.clone(),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = per_ip.get_mut(&ip) {
            entry.0 = entry.0.saturating_sub(1);
            if entry.0 == 0 {
                per_ip.remove(&ip);
            }
        }
        if self.total.fetch_sub(1, Ordering::SeqCst) <= self.max_total {
            self.total_logged.store(false, Ordering::SeqCst);
        }
    }
}

/// One counted connection; released when dropped.
struct ConnectionGuard {
    counter: Arc<ConnectionCounter>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.counter.release(self.ip);
    }
}

/// A TCP stream that holds its connection's place in the counter until it is dropped.
struct Counted {
    io: TcpStream,
    _guard: ConnectionGuard,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The local address to print for a listener, e.g. `https://127.0.0.1:4000`.
pub fn url_for(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_accepted_connection_is_prepared_without_nagle_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        assert!(
            !accepted.nodelay().expect("read"),
            "the kernel's default is Nagle on"
        );
        prepare_accepted(&accepted);
        assert!(accepted.nodelay().expect("read"));
    }
}
