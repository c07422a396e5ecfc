//! The bounded inbox of one socket (WebSocket connection or LongPoll session).
//!
//! Everything that reaches a socket from the server side goes through here: PubSub
//! deliveries and `handle_info` messages for its channels. The queue is bounded; when a sender
//! finds it full the socket is *overloaded* (its client stopped reading, or it cannot keep up):
//! the mailbox trips its overflow signal and the socket's shell closes the connection with a log
//! line naming the socket. Nothing ever waits on a full socket.

use super::pubsub::{Published, SubscriptionId};
use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Notify, mpsc};

/// Identifies one channel instance inside its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub u64);

/// An event for a socket.
pub enum SocketEvent {
    /// A PubSub delivery for the subscription `sub`.
    Deliver {
        /// The subscription it was delivered to.
        sub: SubscriptionId,
        /// The message, with its per-serializer encodings.
        msg: Arc<Published>,
    },
    /// A message for `handle_info` of channel instance `instance`.
    Info {
        /// The target channel instance.
        instance: InstanceId,
        /// The message (downcast to the channel's `Info` type).
        msg: Box<dyn Any + Send>,
    },
}

impl std::fmt::Debug for SocketEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketEvent::Deliver { sub, msg } => {
                write!(f, "Deliver({sub:?}, {})", msg.broadcast.event)
            }
            SocketEvent::Info { instance, .. } => write!(f, "Info({instance:?})"),
        }
    }
}

/// Set when a bounded queue of the socket overflowed; the shell waits on it.
#[derive(Debug, Default)]
pub struct Overflow {
    tripped: AtomicBool,
    notify: Notify,
}

impl Overflow {
    /// Marks the socket as overloaded and wakes its shell.
    pub fn trip(&self) {
        self.tripped.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Whether the socket is overloaded.
    pub fn is_tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    /// Resolves once the socket is overloaded.
    pub async fn tripped(&self) {
        while !self.is_tripped() {
            self.notify.notified().await;
        }
    }
}

/// The sending side of a socket's inbox (cheap to clone).
#[derive(Debug, Clone)]
pub struct Mailbox {
    tx: mpsc::Sender<SocketEvent>,
    overflow: Arc<Overflow>,
}

/// Why a message could not be put in a socket's inbox.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MailboxError {
    /// The inbox is full: the socket is being closed as overloaded.
    #[error("the socket's inbox is full")]
    Full,
    /// The socket is gone.
    #[error("the socket is closed")]
    Closed,
}

impl Mailbox {
    /// Creates an inbox holding at most `capacity` events.
    pub fn new(capacity: usize) -> (Mailbox, mpsc::Receiver<SocketEvent>, Arc<Overflow>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Overflow::default());
        (
            Mailbox {
                tx,
                overflow: overflow.clone(),
            },
            rx,
            overflow,
        )
    }

    /// Queues an event without waiting; a full inbox trips the overflow signal.
    pub fn try_send(&self, ev: SocketEvent) -> Result<(), MailboxError> {
        match self.tx.try_send(ev) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.trip();
                Err(MailboxError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(MailboxError::Closed),
        }
    }

    /// Queues an event, waiting for room (for server-side producers that prefer to wait).
    pub async fn send(&self, ev: SocketEvent) -> Result<(), MailboxError> {
        self.tx.send(ev).await.map_err(|_| MailboxError::Closed)
    }

    /// Whether the socket is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
