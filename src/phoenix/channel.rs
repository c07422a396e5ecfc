//! Channels: the per-topic handlers, their context, and the topic router.
//!
//! A [`Channel`] is created by the [`Router`] when a client joins a topic that matches one of
//! its patterns (`"room:*"` matches every topic starting with `room:`; patterns without `*` match
//! exactly; the first declared route wins). Its callbacks are synchronous and run inside the
//! socket's task, one at a time, exactly like Phoenix's channel process handles one message at a
//! time. They must not block: work that must wait goes to its owner (an actor) and comes back
//! through [`Channel::handle_info`] via a [`ChannelSender`] taken from the context.
//!
//! A panic inside a callback is caught: after join it becomes `phx_error`
//! (`{"reason":"channel_crash"}`) for that channel only; during join it becomes the error reply
//! `{"reason":"join crashed"}`. The socket and its other channels keep working. (This relies on
//! the default `panic = "unwind"`.)

use super::mailbox::{InstanceId, Mailbox, MailboxError, SocketEvent};
use super::message::Payload;
use super::presence::Presence;
use super::pubsub::PubSub;
use serde_json::Value;
use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

/// What `handle_in` asks the socket to do.
#[derive(Debug, Clone, PartialEq)]
pub enum HandleIn {
    /// Reply to the client's message with `status` and `payload` (JSON or bytes).
    Reply {
        /// `"ok"`, `"error"` or an app-defined status.
        status: String,
        /// The reply's `response`.
        payload: Payload,
    },
    /// Send no reply now (the client times out unless [`ChannelContext::reply`] is used later).
    NoReply,
    /// Reply (optionally), then end the channel.
    Stop {
        /// Why the channel stops: normal → `phx_close`, error → `phx_error`.
        reason: StopReason,
        /// An optional reply sent before the close.
        reply: Option<(String, Payload)>,
    },
}

impl HandleIn {
    /// `{"status":"ok","response":{}}`.
    pub fn ok() -> Self {
        HandleIn::Reply {
            status: "ok".into(),
            payload: Payload::empty(),
        }
    }

    /// `{"status":"ok","response":payload}`.
    pub fn ok_with(payload: impl Into<Payload>) -> Self {
        HandleIn::Reply {
            status: "ok".into(),
            payload: payload.into(),
        }
    }

    /// `{"status":"error","response":payload}`.
    pub fn error(payload: impl Into<Payload>) -> Self {
        HandleIn::Reply {
            status: "error".into(),
            payload: payload.into(),
        }
    }
}

/// Whether a channel keeps running after `handle_info` / `handle_out`.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    /// Keep running.
    Continue,
    /// End the channel.
    Stop(StopReason),
}

/// Why a channel decided to stop.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// Normal end: the client gets `phx_close` and does not rejoin.
    Normal,
    /// Shutdown with a reason: also `phx_close`.
    Shutdown(String),
    /// Abnormal end: the client gets `phx_error` and rejoins.
    Error(String),
}

/// Why a channel ended; given to [`Channel::terminate`], which is called exactly once.
#[derive(Debug, Clone, PartialEq)]
pub enum TerminateReason {
    /// The client sent `phx_leave`.
    Left,
    /// The channel itself stopped.
    Stopped(StopReason),
    /// The client joined the same topic again; this instance was replaced.
    DuplicateJoin,
    /// The socket closed (client gone, idle timeout, disconnect broadcast, overload, drain).
    SocketClosed,
    /// A callback panicked (the message is the panic's text).
    Crashed(String),
}

/// What a join answers: `Ok(response)` joins the topic, `Err(response)` refuses it (both
/// become the `phx_reply`'s `response`).
pub type JoinReply = Result<Value, Value>;

/// A handler for one joined topic on one socket.
pub trait Channel: Send + 'static {
    /// Messages server-side code sends to this channel through a [`ChannelSender`].
    type Info: Send + 'static;

    /// Joins `topic` with the client's `payload`: `Ok(response)` or `Err(response)`.
    /// Pushes and broadcasts made here are sent after the join reply.
    fn join(&mut self, topic: &str, payload: Value, ctx: &mut ChannelContext) -> JoinReply;

    /// Handles a client event (any event except the reserved ones).
    fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> HandleIn;

    /// Handles a message from server-side code.
    fn handle_info(&mut self, msg: Self::Info, ctx: &mut ChannelContext) -> Flow {
        let _ = (msg, ctx);
        Flow::Continue
    }

    /// Whether broadcasts of `event` on this topic go through [`Channel::handle_out`]
    /// (Phoenix's `intercept`); otherwise they are forwarded to the client unchanged.
    fn intercepts(&self, event: &str) -> bool {
        let _ = event;
        false
    }

    /// Handles an intercepted broadcast; the default pushes it unchanged.
    fn handle_out(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Flow {
        ctx.push(event, payload);
        Flow::Continue
    }

    /// Called exactly once when the channel ends, for any reason. Pushes made here follow the
    /// `phx_close` and are dropped when the socket itself is gone.
    fn terminate(&mut self, reason: &TerminateReason, ctx: &mut ChannelContext) {
        let _ = (reason, ctx);
    }
}

/// Identifies a client message to answer later with [`ChannelContext::reply`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyRef(pub(crate) Value);

/// A side effect requested by a channel callback, applied by the socket in order.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    Push {
        event: String,
        payload: Payload,
    },
    Reply {
        r#ref: Value,
        status: String,
        payload: Payload,
    },
    Broadcast {
        topic: String,
        event: String,
        payload: Payload,
        from_self: bool,
    },
    Track {
        key: String,
        meta: Value,
    },
    /// Asked in `join`: the reply comes later, through [`Effect::FinishJoin`].
    DeferJoin,
    /// The answer to a deferred join.
    FinishJoin(JoinReply),
}

/// What a channel callback can see and do.
pub struct ChannelContext<'a> {
    pub(crate) topic: &'a str,
    pub(crate) join_ref: &'a Value,
    pub(crate) assigns: &'a Value,
    pub(crate) socket_id: Option<&'a str>,
    pub(crate) current_ref: Option<Value>,
    pub(crate) instance: InstanceId,
    pub(crate) mailbox: &'a Mailbox,
    pub(crate) pubsub: &'a Arc<dyn PubSub>,
    pub(crate) presence: &'a Arc<Presence>,
    pub(crate) effects: Vec<Effect>,
}

impl ChannelContext<'_> {
    /// The channel's topic.
    pub fn topic(&self) -> &str {
        self.topic
    }

    /// The join_ref of this channel instance.
    pub fn join_ref(&self) -> &Value {
        self.join_ref
    }

    /// The socket's assigns (what the socket handler's `connect` returned).
    pub fn assigns(&self) -> &Value {
        self.assigns
    }

    /// The socket id, if the socket handler gave one.
    pub fn socket_id(&self) -> Option<&str> {
        self.socket_id
    }

    /// Pushes `event` to this client only (`[JR, null, topic, event, payload]`).
    pub fn push(&mut self, event: &str, payload: impl Into<Payload>) {
        self.effects.push(Effect::Push {
            event: event.into(),
            payload: payload.into(),
        });
    }

    /// Broadcasts on this channel's topic to every subscriber, this client included.
    pub fn broadcast(&mut self, event: &str, payload: impl Into<Payload>) {
        let topic = self.topic.to_owned();
        self.broadcast_to(&topic, event, payload);
    }

    /// Broadcasts on this channel's topic to every subscriber except this channel instance.
    pub fn broadcast_from(&mut self, event: &str, payload: impl Into<Payload>) {
        self.effects.push(Effect::Broadcast {
            topic: self.topic.into(),
            event: event.into(),
            payload: payload.into(),
            from_self: true,
        });
    }

    /// Broadcasts on any topic.
    pub fn broadcast_to(&mut self, topic: &str, event: &str, payload: impl Into<Payload>) {
        self.effects.push(Effect::Broadcast {
            topic: topic.into(),
            event: event.into(),
            payload: payload.into(),
            from_self: false,
        });
    }

    /// The ref of the client message being handled (in `handle_in`), to reply later.
    pub fn reply_ref(&self) -> Option<ReplyRef> {
        self.current_ref.clone().map(ReplyRef)
    }

    /// Replies to an earlier client message (Phoenix's `reply(socket_ref, …)`).
    pub fn reply(&mut self, to: &ReplyRef, status: &str, payload: impl Into<Payload>) {
        self.effects.push(Effect::Reply {
            r#ref: to.0.clone(),
            status: status.into(),
            payload: payload.into(),
        });
    }

    /// A cloneable handle through which server-side code reaches [`Channel::handle_info`].
    pub fn sender<M: Send + 'static>(&self) -> ChannelSender<M> {
        ChannelSender {
            instance: self.instance,
            mailbox: self.mailbox.clone(),
            _msg: PhantomData,
        }
    }

    /// Tracks this channel instance in Presence under `key`; the client then receives
    /// `presence_state`, and everyone on the topic a `presence_diff`. Untracked automatically
    /// when the channel ends.
    pub fn track_presence(&mut self, key: &str, meta: Value) {
        self.effects.push(Effect::Track {
            key: key.into(),
            meta,
        });
    }

    /// Called in [`Channel::join`]: the join is answered later, with
    /// [`ChannelContext::finish_join`] from a later callback (typically `handle_info`, when
    /// the work the join waits for comes back), and what `join` returns is ignored. Until then
    /// the client has no reply (phoenix.js sends nothing on the topic meanwhile and times the
    /// join out after its `timeout`, 10 s by default); the channel must not push before it
    /// finishes the join. Phoenix's own `join/3` may wait inside its process for a remote
    /// answer; a channel here must not block the socket, so it defers instead.
    pub fn defer_join(&mut self) {
        self.effects.push(Effect::DeferJoin);
    }

    /// Answers a join deferred with [`ChannelContext::defer_join`]: `Ok(response)` joins the
    /// topic, `Err(response)` refuses it (the channel then ends: `terminate` is called with
    /// [`TerminateReason::Stopped`] and the client gets only the error reply, as for a refusal
    /// in `join`). Ignored when no join of this instance is waiting.
    pub fn finish_join(&mut self, reply: JoinReply) {
        self.effects.push(Effect::FinishJoin(reply));
    }

    /// The node's PubSub (for subscriptions beyond this channel's topic, use broadcasts).
    pub fn pubsub(&self) -> &Arc<dyn PubSub> {
        self.pubsub
    }

    /// The node's Presence tracker (e.g. to `list` another topic).
    pub fn presence(&self) -> &Arc<Presence> {
        self.presence
    }
}

/// Sends messages to one channel instance's [`Channel::handle_info`]. Bounded: the messages
/// share the socket's inbox; when it is full `try_send` fails with [`MailboxError::Full`] (and
/// the socket is closed as overloaded); after the channel ends messages are dropped.
pub struct ChannelSender<M> {
    instance: InstanceId,
    mailbox: Mailbox,
    _msg: PhantomData<fn(M)>,
}

impl<M> Clone for ChannelSender<M> {
    fn clone(&self) -> Self {
        ChannelSender {
            instance: self.instance,
            mailbox: self.mailbox.clone(),
            _msg: PhantomData,
        }
    }
}

impl<M> std::fmt::Debug for ChannelSender<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSender")
            .field("instance", &self.instance)
            .finish()
    }
}

impl<M: Send + 'static> ChannelSender<M> {
    /// Queues `msg` without waiting.
    pub fn try_send(&self, msg: M) -> Result<(), MailboxError> {
        self.mailbox.try_send(SocketEvent::Info {
            instance: self.instance,
            msg: Box::new(msg),
        })
    }

    /// Queues `msg`, waiting while the inbox is full.
    pub async fn send(&self, msg: M) -> Result<(), MailboxError> {
        self.mailbox
            .send(SocketEvent::Info {
                instance: self.instance,
                msg: Box::new(msg),
            })
            .await
    }

    /// Whether the socket is gone (messages would be dropped).
    pub fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }
}

/// A channel with its `Info` type erased, as the socket stores it.
pub(crate) trait AnyChannel: Send {
    fn join(&mut self, topic: &str, payload: Value, ctx: &mut ChannelContext) -> JoinReply;
    fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> HandleIn;
    fn handle_info(&mut self, msg: Box<dyn Any + Send>, ctx: &mut ChannelContext) -> Flow;
    fn intercepts(&self, event: &str) -> bool;
    fn handle_out(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Flow;
    fn terminate(&mut self, reason: &TerminateReason, ctx: &mut ChannelContext);
}

impl<C: Channel> AnyChannel for C {
    fn join(&mut self, topic: &str, payload: Value, ctx: &mut ChannelContext) -> JoinReply {
        Channel::join(self, topic, payload, ctx)
    }
    fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> HandleIn {
        Channel::handle_in(self, event, payload, ctx)
    }
    fn handle_info(&mut self, msg: Box<dyn Any + Send>, ctx: &mut ChannelContext) -> Flow {
        match msg.downcast::<C::Info>() {
            Ok(msg) => Channel::handle_info(self, *msg, ctx),
            Err(_) => {
                log::warn!(
                    "channel {}: dropped a handle_info message of the wrong type",
                    ctx.topic
                );
                Flow::Continue
            }
        }
    }
    fn intercepts(&self, event: &str) -> bool {
        Channel::intercepts(self, event)
    }
    fn handle_out(&mut self, event: &str, payload: Payload, ctx: &mut ChannelContext) -> Flow {
        Channel::handle_out(self, event, payload, ctx)
    }
    fn terminate(&mut self, reason: &TerminateReason, ctx: &mut ChannelContext) {
        Channel::terminate(self, reason, ctx)
    }
}

type Factory = Arc<dyn Fn() -> Box<dyn AnyChannel> + Send + Sync>;

/// Topic patterns → channel factories.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<(String, Factory)>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.routes.iter().map(|(p, _)| p))
            .finish()
    }
}

fn pattern_matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

impl Router {
    /// A router without routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes topics matching `pattern` (`"room:*"` or an exact topic) to channels made by
    /// `factory`, one per join.
    pub fn channel<C, F>(mut self, pattern: &str, factory: F) -> Self
    where
        C: Channel,
        F: Fn() -> C + Send + Sync + 'static,
    {
        let factory: Factory = Arc::new(move || Box::new(factory()) as Box<dyn AnyChannel>);
        self.routes.push((pattern.to_owned(), factory));
        self
    }

    /// Whether some route matches `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        self.routes.iter().any(|(p, _)| pattern_matches(p, topic))
    }

    pub(crate) fn create(&self, topic: &str) -> Option<Box<dyn AnyChannel>> {
        self.routes
            .iter()
            .find(|(p, _)| pattern_matches(p, topic))
            .map(|(_, f)| f())
    }
}
