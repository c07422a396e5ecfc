//! ICE-TCP, passive (RFC 6544): browsers open TCP connections to our passive TCP candidate and
//! every datagram travels as one RFC 4571 frame (a 2-byte big-endian length, then the bytes).
//!
//! How this works:
//! - [`FrameReader`] and [`frame`] are the sans-IO framing: bytes in, whole frames out.
//! - [`TcpMedia`] is the I/O shell: it takes connections (from its own listener,
//!   [`TcpMedia::serve_listener`], or handed over by the web server when the port is shared)
//!   and feeds each frame to the UDP mux's routing as a [`Datagram`] with
//!   [`Protocol::Tcp`], so rooms see ICE-TCP exactly like UDP: routed by the STUN `USERNAME`
//!   ufrag, then by the learnt source address (the connection's remote address). The mux
//!   sends a room's TCP [`crate::rtc::net::Transmit`]s to the connection whose remote address
//!   is their destination.
//!
//! Bounds and policies (bad input never kills anything; each offence is one log line):
//! - a frame longer than [`MAX_FRAME`] closes the connection (WebRTC keeps packets below the
//!   path MTU; RFC 4571 allows up to 65535 bytes, which we never need), so a connection buffers
//!   at most one frame plus one read;
//! - the first frame must be a STUN check for a session we know, whole within
//!   [`FIRST_FRAME_WAIT`] of the connection's start (however its bytes trickle in); otherwise
//!   the connection is closed (garbage, port scans, slowloris);
//! - a connection silent for [`crate::rtc::net::ADDR_IDLE_EXPIRY`] is closed (browsers send
//!   consent checks every few seconds);
//! - at most [`MAX_CONNECTIONS`] connections at once; more are closed at once;
//! - each connection's outbox holds at most [`OUTBOX_BYTES`] of frames. When it is full new
//!   frames are dropped whole (counted in `drops{reason="send_failed"}`): TCP already
//!   retransmits, and a receiver that cannot keep up must not stall the room's media loop; the
//!   browsers' NACK/PLI recover the loss as they do on UDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::rtc::net::{ADDR_IDLE_EXPIRY, Datagram, Protocol};
use crate::rtc::udp::{Delivery, MuxIngress};

/// The largest frame we accept (see the module docs).
pub const MAX_FRAME: usize = 16 * 1024;
/// How long a new connection has to send its first whole frame.
pub const FIRST_FRAME_WAIT: Duration = Duration::from_secs(10);
/// Most ICE-TCP connections open at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// Most bytes of frames waiting to be written to one connection.
pub const OUTBOX_BYTES: usize = 512 * 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Why a byte stream is not RFC 4571 framing we take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame's length is above [`MAX_FRAME`].
    #[error("frame of {0} bytes is larger than {MAX_FRAME}")]
    TooLarge(usize),
}

/// Sans-IO RFC 4571 deframer: [`FrameReader::push`] received bytes, then take frames with
/// [`FrameReader::next_frame`] until it returns `None`. Holds at most one partial frame.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` if more bytes are needed, or an error (the stream cannot
    /// continue) when the next frame's length is above [`MAX_FRAME`].
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 2 + len {
            return Ok(None);
        }
        self.buf.advance(2);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Bytes held (a partial frame).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// `payload` as one RFC 4571 frame; `None` if it is longer than 65535 bytes.
pub fn frame(payload: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(payload.len()).ok()?;
    let mut out = Vec::with_capacity(2 + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// The sending side of one connection: a byte-bounded queue of frames (see the module docs).
#[derive(Debug, Clone)]
pub struct TcpOutbox {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

/// Why [`TcpOutbox::try_push`] did not queue a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxRefusal {
    /// The connection's outbox is full: the frame is dropped.
    Full,
    /// The payload is longer than a frame can be.
    TooLarge,
    /// The connection is closed.
    Closed,
}

impl TcpOutbox {
    /// Frames `payload` and queues it unless the outbox is full.
    pub fn try_push(&self, payload: &[u8]) -> Result<(), OutboxRefusal> {
        let framed = frame(payload).ok_or(OutboxRefusal::TooLarge)?;
        let len = framed.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > OUTBOX_BYTES {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(OutboxRefusal::Full);
        }
        self.tx.send(framed).map_err(|_| {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            OutboxRefusal::Closed
        })
    }
}

/// The ICE-TCP shell (see the module docs): cheap to clone.
#[derive(Clone)]
pub struct TcpMedia {
    ingress: MuxIngress,
    open: Arc<AtomicUsize>,
    refused: Arc<AtomicU64>,
}

impl TcpMedia {
    /// ICE-TCP connections routed through `ingress` (the UDP mux's routing).
    pub fn new(ingress: MuxIngress) -> Self {
        TcpMedia {
            ingress,
            open: Arc::default(),
            refused: Arc::default(),
        }
    }

    /// Accepts connections on a dedicated ICE-TCP port until the listener fails for good
    /// (runs on the current tokio runtime).
    pub fn serve_listener(&self, listener: TcpListener) {
        let media = self.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((tcp, remote)) => {
                        let _ = tcp.set_nodelay(true);
                        match tcp.local_addr() {
                            Ok(local) => media.accept(tcp, remote, local),
                            Err(e) => log::debug!("ice-tcp: {remote}: no local address: {e}"),
                        }
                    }
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        log::warn!("ice-tcp: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }

    /// Serves one connection from `remote` to our `local` address (closed at once when
    /// [`MAX_CONNECTIONS`] are open).
    pub fn accept<IO>(&self, io: IO, remote: SocketAddr, local: SocketAddr)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        let gauge = self.ingress.metrics().ice_tcp_connections.clone();
        gauge.inc();
        let slot = OpenSlot(self.open.clone(), gauge);
        if open > MAX_CONNECTIONS {
            let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if refused.is_power_of_two() {
                log::warn!(
                    "ice-tcp: refusing {remote}: {MAX_CONNECTIONS} connections open ({refused} refused)"
                );
            }
            return;
        }
        let ingress = self.ingress.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(io, canonical(remote), canonical(local), ingress).await;
        });
    }

    /// ICE-TCP connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Frees a connection's place in [`TcpMedia`]'s count (and the gauge) when dropped.
struct OpenSlot(Arc<AtomicUsize>, prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        self.1.dec();
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, as the candidates are written.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Reads frames from `io` into the mux until the connection ends or breaks a rule (one log
/// line), with a writer task draining its outbox meanwhile. One function, not several: the
/// read loop, the first-frame rule and the cleanup share the connection's state (the
/// unstarted writer, whether it is attached), and split up they would pass all of it around.
async fn serve_connection<IO>(io: IO, remote: SocketAddr, local: SocketAddr, ingress: MuxIngress)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, writer) = tokio::io::split(io);
    let (tx, rx) = mpsc::unbounded_channel();
    let outbox = TcpOutbox {
        tx,
        queued: Arc::default(),
        dropped: Arc::default(),
    };
    let mut unstarted_writer = Some((writer, rx));
    let mut frames = FrameReader::default();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut attached = false;
    let mut writer_task = None;
    // The first frame has one deadline in all (a byte now and then does not extend it); after
    // it, each read may take up to the idle expiry.
    let first_frame_by = tokio::time::Instant::now() + FIRST_FRAME_WAIT;
    let why: String = loop {
        let deadline = if attached {
            tokio::time::Instant::now() + ADDR_IDLE_EXPIRY
        } else {
            first_frame_by
        };
        let n = match tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await {
            Err(_) if attached => break format!("silent for {ADDR_IDLE_EXPIRY:?}"),
            Err(_) => break format!("no whole first frame within {FIRST_FRAME_WAIT:?}"),
            Ok(Err(e)) => break format!("read error: {e}"),
            Ok(Ok(0)) => {
                log::debug!("ice-tcp: {remote} closed the connection");
                break String::new();
            }
            Ok(Ok(n)) => n,
        };
        frames.push(&chunk[..n]);
        let broken = loop {
            let contents = match frames.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            };
            let datagram = Datagram {
                source: remote,
                destination: local,
                received: Instant::now(),
                protocol: Protocol::Tcp,
                contents,
            };
            if !attached {
                // Only a check for a known session opens the way (it teaches the mux the
                // address); the connection is then findable for sending.
                if !ingress.is_check_for_known_session(&datagram.contents) {
                    break Some("first frame is not a STUN check for a known session".into());
                }
                ingress.attach_tcp(remote, outbox.clone());
                if let Some((writer, rx)) = unstarted_writer.take() {
                    let queued = outbox.queued.clone();
                    writer_task = Some(tokio::spawn(write_frames(writer, rx, queued)));
                }
                attached = true;
            }
            if ingress.deliver(datagram) == Delivery::Stopped {
                break Some("media plane stopped".into());
            }
        };
        if let Some(why) = broken {
            break why;
        }
    };
    if !why.is_empty() {
        log::info!("ice-tcp: closing the connection from {remote}: {why}");
    }
    if attached {
        ingress.detach_tcp(remote);
    }
    let dropped = outbox.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        log::info!("ice-tcp: {remote}: {dropped} frames dropped (outbox full)");
    }
    drop(outbox);
    if let Some(task) = writer_task {
        task.abort();
    }
}

/// Most bytes gathered from the outbox into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// Writes queued frames to the connection, several per system call when they pile up, until
/// the outbox closes or a write fails.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(f) => batch.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        let written = writer.write_all(&batch).await;
        queued.fetch_sub(batch.len(), Ordering::Relaxed);
        if let Err(e) = written {
            log::debug!("ice-tcp: write failed: {e}");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_from_a_stream_split_anywhere() {
        let mut r = FrameReader::default();
        r.push(&[0x00, 0x03, b'a', b'b']);
        assert_eq!(r.next_frame(), Ok(None));
        r.push(&[b'c', 0x00, 0x00, 0x00]);
        assert_eq!(r.next_frame(), Ok(Some(Bytes::from_static(b"abc"))));
        assert_eq!(r.next_frame(), Ok(Some(Bytes::new())), "an empty frame");
        assert_eq!(r.next_frame(), Ok(None));
        assert_eq!(r.buffered(), 1, "half of the next length");
        r.push(&[0x01, 0xFF]);
        assert_eq!(r.next_frame(), Ok(Some(Bytes::from_static(&[0xFF]))));
    }

    #[test]
    fn a_length_above_the_limit_is_refused_before_its_bytes_arrive() {
        let mut r = FrameReader::default();
        r.push(&[0x40, 0x01]);
        assert_eq!(r.next_frame(), Err(FrameError::TooLarge(0x4001)));
        let mut r = FrameReader::default();
        r.push(&[0x40, 0x00]);
        assert_eq!(
            r.next_frame(),
            Ok(None),
            "16384 bytes is the largest allowed"
        );
    }

    #[test]
    fn frame_prefixes_the_big_endian_length() {
        assert_eq!(frame(b"abc"), Some(vec![0x00, 0x03, b'a', b'b', b'c']));
        assert_eq!(frame(&[]), Some(vec![0x00, 0x00]));
        assert_eq!(
            frame(&vec![7u8; 65535]).map(|f| f[..2].to_vec()),
            Some(vec![0xFF, 0xFF])
        );
        assert_eq!(frame(&vec![7u8; 65536]), None);
    }

    #[test]
    fn a_full_outbox_drops_whole_frames_and_takes_more_once_written() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let outbox = TcpOutbox {
            tx,
            queued: Arc::default(),
            dropped: Arc::default(),
        };
        let payload = vec![0u8; 1198];
        let fits = OUTBOX_BYTES / 1200;
        for _ in 0..fits {
            assert_eq!(outbox.try_push(&payload), Ok(()));
        }
        assert_eq!(outbox.try_push(&payload), Err(OutboxRefusal::Full));
        assert_eq!(outbox.dropped.load(Ordering::Relaxed), 1);
        // The writer took one frame off.
        let f = rx.try_recv().unwrap();
        outbox.queued.fetch_sub(f.len(), Ordering::Relaxed);
        assert_eq!(outbox.try_push(&payload), Ok(()));
        drop(rx);
        assert_eq!(outbox.try_push(&[1]), Err(OutboxRefusal::Closed));
    }
}
