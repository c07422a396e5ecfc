//! A load peer's ICE-TCP connections (`--ice-tcp`): str0m's TCP transmits go to a connection
//! per destination, opened (from `--local-ip`) on the first one, RFC 4571-framed with the
//! server's own framer ([`videoroom::rtc::tcp`]); frames read back come to the peer's loop
//! through one bounded inbox.
//!
//! Queue policy (UDP semantics, as the peer's UDP socket has): a frame that finds its
//! connection's queue or the inbox full is dropped; a connection that fails is forgotten and
//! the next transmit to that address opens a new one.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use videoroom::rtc::tcp::{FrameReader, frame};

/// Frames waiting to be written to one connection.
const OUTBOX_FRAMES: usize = 1024;
/// Frames read from every connection, waiting for the peer's loop.
const INBOX_FRAMES: usize = 4096;

/// The ICE-TCP connections of one peer.
pub struct TcpLinks {
    local_ip: IpAddr,
    out: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    inbox_tx: mpsc::Sender<(SocketAddr, Bytes)>,
    /// Frames received, with the address of the connection's far end.
    pub inbox: mpsc::Receiver<(SocketAddr, Bytes)>,
}

impl TcpLinks {
    /// No connection yet; connections will leave from `local_ip`.
    pub fn new(local_ip: IpAddr) -> Self {
        let (inbox_tx, inbox) = mpsc::channel(INBOX_FRAMES);
        TcpLinks {
            local_ip,
            out: HashMap::new(),
            inbox_tx,
            inbox,
        }
    }

    /// Queues `payload` as one frame to `destination`, connecting first if needed; `false` if
    /// it was dropped.
    pub fn send(&mut self, destination: SocketAddr, payload: &[u8]) -> bool {
        let Some(framed) = frame(payload) else {
            return false;
        };
        if let Some(tx) = self.out.get(&destination) {
            match tx.try_send(framed) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => return false,
                Err(mpsc::error::TrySendError::Closed(framed)) => {
                    self.out.remove(&destination);
                    return self.connect(destination, framed);
                }
            }
        }
        self.connect(destination, framed)
    }

    /// Starts a connection to `destination` whose first frame is `framed`.
    fn connect(&mut self, destination: SocketAddr, framed: Vec<u8>) -> bool {
        let (tx, rx) = mpsc::channel(OUTBOX_FRAMES);
        let _ = tx.try_send(framed);
        self.out.insert(destination, tx);
        let inbox = self.inbox_tx.clone();
        let local_ip = self.local_ip;
        tokio::task::spawn_local(async move {
            if let Err(e) = run_connection(local_ip, destination, rx, inbox).await {
                log::debug!("ice-tcp to {destination}: {e}");
            }
        });
        true
    }
}

/// Connects, then writes queued frames and reads framed ones until either side ends.
async fn run_connection(
    local_ip: IpAddr,
    destination: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    inbox: mpsc::Sender<(SocketAddr, Bytes)>,
) -> Result<(), String> {
    let stream = crate::phoenix::connect_tcp(destination, local_ip).await?;
    let (mut reader, mut writer) = stream.into_split();
    let write = async move {
        while let Some(framed) = rx.recv().await {
            writer
                .write_all(&framed)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        Ok::<(), String>(())
    };
    let read = async move {
        let mut frames = FrameReader::default();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = reader
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed by the server".to_owned());
            }
            frames.push(&chunk[..n]);
            while let Some(f) = frames.next_frame().map_err(|e| e.to_string())? {
                // Full: dropped, as a datagram the socket buffer could not hold.
                let _ = inbox.try_send((destination, f));
            }
        }
    };
    tokio::select! {
        r = write => r,
        r = read => r,
    }
}
