//! The TURN server's tokio shell: the UDP socket, the TCP and TLS listeners, one relay UDP
//! socket per allocation, and one task that owns the sans-IO [`TurnServer`] and performs its
//! outputs.
//!
//! Every reader (the UDP socket, each TCP/TLS connection, each relay socket) forwards what it
//! reads into the one bounded inbox of the server task; UDP readers drop a datagram when the
//! inbox is full (UDP semantics), stream readers wait (TCP back-pressure). Each connection has
//! a bounded outbox; a client that does not read loses datagrams, never stalls the task.
//! Streams carry STUN messages and ChannelData back to back (RFC 8656 §12.5), framed here by
//! their length fields; a connection silent for [`STREAM_IDLE_TIMEOUT`] is closed (ICE
//! consent checks alone arrive every few seconds).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::server::{AllocationId, ClientId, Output, Transport, TurnServer, TurnServerConfig};
use crate::rtc::metrics::TurnMetrics;

/// Events queued for the server task.
const INBOX_CAPACITY: usize = 4096;
/// Messages queued towards one TCP/TLS client.
const OUTBOX_CAPACITY: usize = 512;
/// The largest datagram or framed message accepted (a STUN message or ChannelData carries at
/// most one UDP datagram; WebRTC keeps those below the path MTU).
const MAX_MESSAGE: usize = 4096;
/// A stream connection silent this long is closed.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A TLS handshake must finish within this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the TURN shell serves on.
pub struct TurnSockets {
    /// TURN over UDP.
    pub udp: Option<UdpSocket>,
    /// TURN over TCP.
    pub tcp: Option<TcpListener>,
    /// TURN over TLS, with the server's certificate.
    pub tls: Option<(TcpListener, TlsAcceptor)>,
}

/// How relay sockets are made.
#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    /// The IP relay sockets bind (the media socket's IP, or unspecified).
    pub bind_ip: IpAddr,
    /// The IP put in XOR-RELAYED-ADDRESS (the relay's port with it).
    pub advertised_ip: IpAddr,
}

enum Event {
    Client {
        client: ClientId,
        bytes: Vec<u8>,
    },
    Connected {
        client: ClientId,
        outbox: mpsc::Sender<Vec<u8>>,
    },
    Gone {
        client: ClientId,
    },
    Peer {
        allocation: AllocationId,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
}

/// Starts the TURN server on `sockets` (inside a tokio runtime); its tasks run as long as the
/// runtime.
pub fn spawn(
    sockets: TurnSockets,
    config: TurnServerConfig,
    relay: RelaySettings,
    metrics: TurnMetrics,
) {
    let max_connections = config.max_allocations;
    let (tx, inbox) = mpsc::channel(INBOX_CAPACITY);
    let udp = sockets.udp.map(Arc::new);
    if let Some(udp) = &udp {
        tokio::spawn(read_udp(udp.clone(), tx.clone()));
    }
    let connections = Arc::new(AtomicUsize::new(0));
    if let Some(listener) = sockets.tcp {
        let limit = (connections.clone(), max_connections);
        tokio::spawn(accept(listener, None, tx.clone(), limit));
    }
    if let Some((listener, acceptor)) = sockets.tls {
        let limit = (connections.clone(), max_connections);
        tokio::spawn(accept(listener, Some(acceptor), tx.clone(), limit));
    }
    let task = ServerTask {
        core: TurnServer::new(config),
        udp,
        relay,
        metrics,
        inbox_tx: tx,
        outboxes: HashMap::new(),
        relays: HashMap::new(),
        refusals: HashMap::new(),
    };
    tokio::spawn(task.run(inbox));
}

struct RelaySocket {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
}

struct ServerTask {
    core: TurnServer,
    udp: Option<Arc<UdpSocket>>,
    relay: RelaySettings,
    metrics: TurnMetrics,
    /// Given to each relay reader.
    inbox_tx: mpsc::Sender<Event>,
    outboxes: HashMap<ClientId, mpsc::Sender<Vec<u8>>>,
    relays: HashMap<AllocationId, RelaySocket>,
    /// Refusals per reason so far (logged at powers of two).
    refusals: HashMap<&'static str, u64>,
}

impl ServerTask {
    async fn run(mut self, mut inbox: mpsc::Receiver<Event>) {
        loop {
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            let event = tokio::select! {
                event = inbox.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
                () = sleep_until(deadline) => {
                    let outputs = self.core.handle_timeout(Instant::now());
                    self.perform(outputs);
                    continue;
                }
            };
            let outputs = match event {
                Event::Client { client, bytes } => {
                    let unix = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    self.core
                        .handle_client(Instant::now(), unix, client, &bytes)
                }
                Event::Connected { client, outbox } => {
                    self.outboxes.insert(client, outbox);
                    Vec::new()
                }
                Event::Gone { client } => {
                    self.outboxes.remove(&client);
                    self.core.client_gone(client)
                }
                Event::Peer {
                    allocation,
                    from,
                    bytes,
                } => {
                    let outputs = self
                        .core
                        .handle_peer(Instant::now(), allocation, from, &bytes);
                    if outputs.iter().any(|o| matches!(o, Output::ToClient { .. })) {
                        self.metrics.packets_to_client.inc();
                        self.metrics.bytes_to_client.inc_by(bytes.len() as u64);
                    }
                    outputs
                }
            };
            self.perform(outputs);
        }
    }

    /// Carries out the core's outputs (binding a relay feeds the core again).
    fn perform(&mut self, outputs: Vec<Output>) {
        let mut queue = std::collections::VecDeque::from(outputs);
        while let Some(output) = queue.pop_front() {
            match output {
                Output::ToClient { client, bytes } => self.to_client(client, bytes),
                Output::ToPeer {
                    allocation,
                    to,
                    bytes,
                } => {
                    if let Some(relay) = self.relays.get(&allocation)
                        && relay.socket.try_send_to(&bytes, to).is_ok()
                    {
                        self.metrics.packets_to_sfu.inc();
                        self.metrics.bytes_to_sfu.inc_by(bytes.len() as u64);
                    }
                }
                Output::BindRelay { allocation, ipv6 } => {
                    let relayed = self.bind_relay(allocation, ipv6);
                    queue.extend(self.core.relay_bound(Instant::now(), allocation, relayed));
                }
                Output::CloseRelay { allocation } => {
                    if let Some(relay) = self.relays.remove(&allocation) {
                        relay.reader.abort();
                    }
                }
                Output::Refused { client, refusal } => {
                    let code = refusal.code;
                    let reason = refusal.reason;
                    self.metrics
                        .refusals
                        .get_or_create(&[("reason", reason)])
                        .inc();
                    let n = self.refusals.entry(reason).or_default();
                    *n += 1;
                    if n.is_power_of_two() {
                        log::warn!(
                            "turn: refused {} client {} ({code} {reason}, {n} so far): {}",
                            client.transport.as_str(),
                            client.addr,
                            refusal.detail
                        );
                    }
                }
            }
        }
        self.metrics
            .allocations
            .set(i64::try_from(self.core.allocations()).unwrap_or(i64::MAX));
    }

    fn to_client(&self, client: ClientId, bytes: Vec<u8>) {
        match client.transport {
            Transport::Udp => {
                if let Some(udp) = &self.udp {
                    let _ = udp.try_send_to(&bytes, client.addr);
                }
            }
            Transport::Tcp | Transport::Tls => {
                if let Some(outbox) = self.outboxes.get(&client) {
                    let _ = outbox.try_send(bytes);
                }
            }
        }
    }

    /// Binds the relay socket of `allocation` and starts its reader; the relayed address.
    fn bind_relay(&mut self, allocation: AllocationId, ipv6: bool) -> Option<SocketAddr> {
        let bind_ip = match (self.relay.bind_ip, ipv6) {
            (ip, _) if !ip.is_unspecified() => ip,
            (_, true) => IpAddr::from([0u16; 8]),
            (_, false) => IpAddr::from([0u8; 4]),
        };
        let bound = std::net::UdpSocket::bind(SocketAddr::new(bind_ip, 0))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(UdpSocket::from_std);
        let socket = match bound {
            Ok(socket) => Arc::new(socket),
            Err(e) => {
                log::warn!("turn: cannot bind a relay socket on {bind_ip}: {e}");
                return None;
            }
        };
        let port = socket.local_addr().ok()?.port();
        let reader = tokio::spawn(read_relay(
            socket.clone(),
            allocation,
            self.inbox_tx.clone(),
        ));
        self.relays
            .insert(allocation, RelaySocket { socket, reader });
        Some(SocketAddr::new(self.relay.advertised_ip, port))
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The UDP socket's reader: every datagram to the server task (dropped when its inbox is full).
async fn read_udp(socket: Arc<UdpSocket>, inbox: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (n, addr) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            // ICMP errors of earlier sends surface here on some systems; keep serving.
            Err(_) => continue,
        };
        let client = ClientId {
            transport: Transport::Udp,
            addr: canonical(addr),
            connection: 0,
        };
        let event = Event::Client {
            client,
            bytes: buf[..n].to_vec(),
        };
        if let Err(mpsc::error::TrySendError::Closed(_)) = inbox.try_send(event) {
            return;
        }
    }
}

/// A relay socket's reader: every datagram to the server task, which drops those from
/// anyone but the SFU.
async fn read_relay(socket: Arc<UdpSocket>, allocation: AllocationId, inbox: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let event = Event::Peer {
            allocation,
            from: canonical(from),
            bytes: buf[..n].to_vec(),
        };
        if let Err(mpsc::error::TrySendError::Closed(_)) = inbox.try_send(event) {
            return;
        }
    }
}

/// Accepts TCP (or, with `tls`, TLS) connections, at most `limit.1` open at once across both
/// listeners.
async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    inbox: mpsc::Sender<Event>,
    limit: (Arc<AtomicUsize>, usize),
) {
    let (open, max) = limit;
    let mut next_connection: u64 = 0;
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                log::warn!("turn: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= max {
            continue; // dropped: closed at once
        }
        open.fetch_add(1, Ordering::Relaxed);
        next_connection += 1;
        let transport = if tls.is_some() {
            Transport::Tls
        } else {
            Transport::Tcp
        };
        let client = ClientId {
            transport,
            addr: canonical(addr),
            connection: next_connection,
        };
        let (tls, inbox, open) = (tls.clone(), inbox.clone(), open.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                None => serve_stream(stream, client, inbox).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => serve_stream(stream, client, inbox).await,
                        Ok(Err(e)) => log::debug!("turn: TLS handshake with {addr} failed: {e}"),
                        Err(_) => log::debug!("turn: TLS handshake with {addr} timed out"),
                    }
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// One TCP/TLS client: reads framed messages into the server task, writes its outbox.
async fn serve_stream<S>(stream: S, client: ClientId, inbox: mpsc::Sender<Event>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (outbox, mut outgoing) = mpsc::channel::<Vec<u8>>(OUTBOX_CAPACITY);
    if inbox
        .send(Event::Connected { client, outbox })
        .await
        .is_err()
    {
        return;
    }
    let write = async move {
        while let Some(bytes) = outgoing.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    let read = async {
        loop {
            let next = tokio::time::timeout(STREAM_IDLE_TIMEOUT, read_frame(&mut reader));
            let bytes = match next.await {
                Ok(Ok(Some(bytes))) => bytes,
                _ => break,
            };
            if inbox.send(Event::Client { client, bytes }).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = write => {}
        () = read => {}
    }
    let _ = inbox.send(Event::Gone { client }).await;
}

/// The next STUN message or ChannelData of a stream (`None` at its end); an oversized or
/// unknown frame is an error (the connection closes).
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = frame_length(header)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not STUN or ChannelData"))?;
    let mut frame = vec![0u8; length];
    frame[..4].copy_from_slice(&header);
    reader.read_exact(&mut frame[4..]).await?;
    Ok(Some(frame))
}

/// The whole length of a stream frame from its first four bytes: a STUN message (first two
/// bits 00: 20-byte header plus its length) or ChannelData (01: 4-byte header plus its length
/// padded to 4, RFC 8656 §12.5); `None` for anything else or anything over [`MAX_MESSAGE`].
pub fn frame_length(header: [u8; 4]) -> Option<usize> {
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let total = match header[0] >> 6 {
        0 => 20 + length,
        1 => 4 + length.div_ceil(4) * 4,
        _ => return None,
    };
    (total <= MAX_MESSAGE).then_some(total)
}

/// IPv4-mapped IPv6 addresses as IPv4 (a dual-stack socket reports IPv4 clients so).
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
