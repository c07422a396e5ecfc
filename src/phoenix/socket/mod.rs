//! The sans-IO socket multiplexer: one per connection (WebSocket) or session (LongPoll).
//!
//! How it works: the transport shell decodes nothing itself. It feeds the [`SocketState`] with
//! inbound frames ([`SocketState::handle_frame`]), inbox events ([`SocketState::handle_event`])
//! and the clock ([`SocketState::handle_timeout`]), then drains [`SocketState::poll_output`]
//! and writes what comes out. All protocol rules live here, once, for both transports:
//!
//! | inbound | action |
//! |---|---|
//! | `phoenix`/`heartbeat` | reply ok, `join_ref` null (channels untouched) |
//! | `phx_join`, no route | error `unmatched topic`, `join_ref` null |
//! | `phx_join`, already `max_channels` | error `too many channels joined` |
//! | `phx_join` | run `join` synchronously, reply ok/error (`join crashed` on panic) |
//! | `phx_join` on a joined topic | terminate the old instance, reply to the new join, then `phx_close` for the old join_ref |
//! | `phx_leave`, JR null or equal | reply ok, `phx_close`, `terminate` |
//! | `phx_leave`/event, JR mismatch | dropped silently (client raced a server close) |
//! | `phx_leave`, not joined | reply ok |
//! | event, joined | `handle_in` → reply / nothing / stop; panic → `phx_error` |
//! | event, not joined | error `unmatched topic`, `join_ref` null |
//!
//! `phx_close` and `phx_error` carry `ref = join_ref` of the instance; pushes carry the
//! instance's join_ref and a null ref; broadcasts carry nulls. Frames of one channel leave in
//! the order the channel produced them (a channel's own broadcasts are delivered to its own
//! socket in line, not through the inbox, so `broadcast` then `push` arrive in that order).
//!
//! The core never reads a clock, sleeps or touches a socket. Its only effects outside itself
//! are non-blocking calls on the node's in-memory [`PubSub`] (subscribe, unsubscribe, publish
//! with `try_send`) and [`Presence`] tables; the unit tests drive it entirely in memory.
//!
//! ## Close codes
//!
//! The WebSocket close codes this server sends, in one table (LongPoll ends the session
//! instead). A client should reconnect after each of them except 1002/1007/1009, which mean
//! the client itself is broken.
//!
//! | code | constant | when |
//! |---|---|---|
//! | 1001 | `CLOSE_GOING_AWAY` | `disconnect` broadcast on the socket id, idle timeout |
//! | 1002 | `CLOSE_PROTOCOL_ERROR` | WebSocket protocol violation |
//! | 1007 | `CLOSE_INVALID_DATA` | invalid UTF-8 in a text frame |
//! | 1008 | `CLOSE_POLICY_VIOLATION` | more inbound messages per second than `--max-messages-per-sec` |
//! | 1009 | `CLOSE_TOO_BIG` | a message larger than `--max-frame-size` |
//! | 1011 | `CLOSE_INTERNAL_ERROR` | an undecodable message |
//! | 1012 | `CLOSE_SERVICE_RESTART` | server shutdown (drain) |
//! | 1013 | `CLOSE_TRY_AGAIN_LATER` | the socket's inbox or outbound queue overflowed (client not reading) |

mod channels;

use super::channel::{AnyChannel, ChannelContext, Effect, HandleIn, Router, TerminateReason};
use super::mailbox::{InstanceId, Mailbox, SocketEvent};
use super::message::{
    Frame, HEARTBEAT_EVENT, HEARTBEAT_TOPIC, Message, Outgoing, PHX_CLOSE, PHX_JOIN, PHX_LEAVE,
    Payload, Reply,
};
use super::metrics::{GaugeGuard, SocketMetrics};
use super::presence::Presence;
use super::pubsub::{PubSub, SubscriptionId};
use super::serializer::Serializer;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// WebSocket close code: going away (disconnect broadcast, idle timeout).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code: protocol error.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// WebSocket close code: invalid UTF-8 in a text frame.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// WebSocket close code: policy violation (inbound message rate).
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;
/// WebSocket close code: frame larger than the limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code: undecodable input.
pub const CLOSE_INTERNAL_ERROR: u16 = 1011;
/// WebSocket close code: server restart (drain).
pub const CLOSE_SERVICE_RESTART: u16 = 1012;
/// WebSocket close code: try again later (a queue of the socket overflowed).
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;
/// Event on the socket-id topic that force-closes every socket with that id.
pub const DISCONNECT_EVENT: &str = "disconnect";

/// Per-socket limits.
#[derive(Debug, Clone)]
pub struct SocketLimits {
    /// Maximum joined channels (Phoenix: 100).
    pub max_channels: usize,
    /// Close the connection when nothing was received for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Inbound messages per second (a burst of as many is allowed); more: close 1008.
    pub max_messages_per_sec: u32,
    /// Longest topic a client may join, in bytes; longer: join error `topic too long`.
    pub max_topic_bytes: usize,
}

impl Default for SocketLimits {
    fn default() -> Self {
        SocketLimits {
            max_channels: 100,
            idle_timeout: Some(Duration::from_secs(60)),
            max_messages_per_sec: 200,
            max_topic_bytes: 256,
        }
    }
}

/// A client-supplied string as it goes into a log line: at most 64 bytes (cut at a character
/// boundary) and its full length, so an 8 MB topic writes one short line.
pub struct Clip<'a>(pub &'a str);

impl std::fmt::Display for Clip<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 64;
        if self.0.len() <= MAX {
            return write!(f, "{:?}", self.0);
        }
        let mut end = MAX;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{:?}… ({} bytes)", &self.0[..end], self.0.len())
    }
}

/// Inbound rate limit: a token bucket refilled at `rate` per second, holding at most `rate`.
#[derive(Debug)]
struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32, now: Instant) -> Self {
        RateLimit {
            rate: f64::from(rate.max(1)),
            tokens: f64::from(rate.max(1)),
            last: now,
        }
    }

    /// Takes one token; false when the bucket is empty.
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Node-wide services a socket uses.
#[derive(Clone)]
pub struct SocketEnv {
    /// PubSub for channel topics and socket ids.
    pub pubsub: Arc<dyn PubSub>,
    /// Presence tracker.
    pub presence: Arc<Presence>,
    /// Counters and gauges (channels, closes, limit hits).
    pub metrics: SocketMetrics,
}

impl std::fmt::Debug for SocketEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketEnv").finish_non_exhaustive()
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this frame.
    Frame(Frame),
    /// Close the connection with this WebSocket code (LongPoll: end the session).
    Close {
        /// Close code (never 1000 when the client should reconnect).
        code: u16,
        /// Close reason text.
        reason: String,
    },
}

struct Entry {
    instance: InstanceId,
    join_ref: Value,
    sub: SubscriptionId,
    channel: Box<dyn AnyChannel>,
    tracked: bool,
    /// The `ref` of a deferred join not answered yet ([`ChannelContext::defer_join`]).
    pending_join: Option<Value>,
    /// This channel's unit of the channels gauge.
    _counted: GaugeGuard,
}

impl Entry {
    /// Runs one callback of this joined channel (see [`run_callback`]); `current_ref` is the
    /// ref of the client message being handled, if any.
    fn call<R>(
        &mut self,
        shared: &Shared,
        topic: &str,
        current_ref: Option<Value>,
        f: impl FnOnce(&mut dyn AnyChannel, &mut ChannelContext) -> R,
    ) -> (Result<R, String>, Vec<Effect>) {
        let channel = self.channel.as_mut();
        run_callback(
            shared,
            channel,
            topic,
            &self.join_ref,
            self.instance,
            current_ref,
            f,
        )
    }
}

/// Read-only data every channel callback sees.
struct Shared {
    assigns: Value,
    socket_id: Option<String>,
    mailbox: Mailbox,
    env: SocketEnv,
}

/// The protocol state of one socket. See the module docs.
pub struct SocketState {
    serializer: Serializer,
    router: Arc<Router>,
    limits: SocketLimits,
    shared: Shared,
    id_sub: Option<(String, SubscriptionId)>,
    channels: HashMap<String, Entry>,
    by_instance: HashMap<InstanceId, String>,
    by_sub: HashMap<SubscriptionId, String>,
    next_instance: u64,
    last_activity: Instant,
    out: VecDeque<Output>,
    closed: bool,
    label: String,
    rate: RateLimit,
    /// Frames on unmatched topics since the socket opened (logged once, then counted).
    unmatched: u64,
}

impl std::fmt::Debug for SocketState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketState")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}

/// Runs one channel callback with a fresh context; returns its result (Err = panic text) and
/// the effects it requested.
#[allow(clippy::too_many_arguments)]
fn run_callback<R>(
    shared: &Shared,
    channel: &mut dyn AnyChannel,
    topic: &str,
    join_ref: &Value,
    instance: InstanceId,
    current_ref: Option<Value>,
    f: impl FnOnce(&mut dyn AnyChannel, &mut ChannelContext) -> R,
) -> (Result<R, String>, Vec<Effect>) {
    let mut ctx = ChannelContext {
        topic,
        join_ref,
        assigns: &shared.assigns,
        socket_id: shared.socket_id.as_deref(),
        current_ref,
        instance,
        mailbox: &shared.mailbox,
        pubsub: &shared.env.pubsub,
        presence: &shared.env.presence,
        effects: Vec::new(),
    };
    let result = catch_unwind(AssertUnwindSafe(|| f(channel, &mut ctx))).map_err(panic_text);
    (result, ctx.effects)
}

impl SocketState {
    /// A socket that connected with `assigns` and optional `socket_id`; subscribes the id
    /// topic so a `disconnect` broadcast reaches it. `mailbox` is this socket's inbox.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        serializer: Serializer,
        router: Arc<Router>,
        limits: SocketLimits,
        env: SocketEnv,
        assigns: Value,
        socket_id: Option<String>,
        mailbox: Mailbox,
        now: Instant,
    ) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let label = match &socket_id {
            Some(id) => format!("socket #{n} ({id})"),
            None => format!("socket #{n}"),
        };
        let id_sub = socket_id.as_ref().map(|id| {
            let sub = SubscriptionId::next();
            env.pubsub.subscribe(id, sub, mailbox.clone());
            (id.clone(), sub)
        });
        SocketState {
            serializer,
            router,
            limits: limits.clone(),
            shared: Shared {
                assigns,
                socket_id,
                mailbox,
                env,
            },
            id_sub,
            channels: HashMap::new(),
            by_instance: HashMap::new(),
            by_sub: HashMap::new(),
            next_instance: 1,
            last_activity: now,
            out: VecDeque::new(),
            closed: false,
            label,
            rate: RateLimit::new(limits.max_messages_per_sec, now),
            unmatched: 0,
        }
    }

    /// A name for log lines: `socket #N (id)`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The negotiated serializer.
    pub fn serializer(&self) -> Serializer {
        self.serializer
    }

    /// Number of joined channels.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Whether the socket has closed (a `Close` output was produced or the transport ended).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Next output for the shell, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`SocketState::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.limits.idle_timeout.map(|t| self.last_activity + t)
    }

    /// Advances the clock: closes the socket (1001) when it has been idle too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.poll_timeout()
            && now >= deadline
        {
            log::info!(
                "{}: closing, nothing received for {:?}",
                self.label,
                self.limits.idle_timeout.unwrap_or_default()
            );
            self.close(CLOSE_GOING_AWAY, "idle timeout");
        }
    }

    /// Handles one inbound frame; undecodable input closes the socket with 1011.
    pub fn handle_frame(&mut self, now: Instant, frame: &Frame) {
        if self.closed {
            return;
        }
        self.last_activity = now;
        if !self.rate.take(now) {
            log::warn!(
                "{}: closing with {CLOSE_POLICY_VIOLATION}, more than {} messages per second",
                self.label,
                self.limits.max_messages_per_sec
            );
            self.close(CLOSE_POLICY_VIOLATION, "too many messages");
            return;
        }
        match self.serializer.decode(frame) {
            Ok(msg) => self.handle_message(now, msg),
            Err(e) => {
                log::warn!("{}: closing, undecodable frame: {e}", self.label);
                self.close(CLOSE_INTERNAL_ERROR, "invalid message");
            }
        }
    }

    /// Handles one decoded inbound message (the dispatch table in the module docs).
    pub fn handle_message(&mut self, now: Instant, msg: Message) {
        if self.closed {
            return;
        }
        self.last_activity = now;
        if msg.topic == HEARTBEAT_TOPIC && msg.event == HEARTBEAT_EVENT {
            self.send(Outgoing::Reply(Reply::ok(
                Value::Null,
                msg.r#ref,
                HEARTBEAT_TOPIC,
            )));
            return;
        }
        match msg.event.as_str() {
            PHX_JOIN => self.handle_join(msg),
            PHX_LEAVE => self.handle_leave(msg),
            _ => self.handle_event_in(msg),
        }
    }

    fn unmatched(&mut self, msg: &Message) {
        // One line per socket: a flood of unmatched frames is answered, not logged per frame.
        self.unmatched += 1;
        if self.unmatched == 1 {
            log::warn!(
                "{}: ignoring {} on unmatched topic {} (further ones on this socket are not logged)",
                self.label,
                Clip(&msg.event),
                Clip(&msg.topic)
            );
        }
        let reply = Reply::error_reason(
            Value::Null,
            msg.r#ref.clone(),
            &msg.topic,
            "unmatched topic",
        );
        self.send(Outgoing::Reply(reply));
    }

    /// 1.8.12 rule: a null join_ref is accepted; a different non-null one is stale.
    fn is_stale(entry: &Entry, msg: &Message) -> bool {
        !msg.join_ref.is_null() && msg.join_ref != entry.join_ref
    }

    fn handle_join(&mut self, msg: Message) {
        // Duplicate join: the old instance ends first; its phx_close follows the new reply.
        let old_close = self.channels.contains_key(&msg.topic).then(|| {
            let entry = self.remove_entry(&msg.topic);
            let close = self.close_frame(&msg.topic, &entry.join_ref, PHX_CLOSE);
            self.terminate_entry(&msg.topic, entry, TerminateReason::DuplicateJoin);
            close
        });
        match self.open_channel(&msg) {
            Some(channel) => self.join_channel(msg, channel, old_close),
            None => {
                if let Some(close) = old_close {
                    self.send(close);
                }
            }
        }
    }

    /// A new channel for the join's topic, or `None` after sending the refusal (topic too long,
    /// unmatched topic, too many channels).
    fn open_channel(&mut self, msg: &Message) -> Option<Box<dyn AnyChannel>> {
        let topic = &msg.topic;
        let refusal = if topic.len() > self.limits.max_topic_bytes {
            log::warn!(
                "{}: refusing join of {}: longer than {} bytes",
                self.label,
                Clip(topic),
                self.limits.max_topic_bytes
            );
            self.shared.env.metrics.limit_hit("topic_bytes");
            "topic too long"
        } else {
            let Some(channel) = self.router.create(topic) else {
                self.unmatched(msg);
                return None;
            };
            if self.channels.len() < self.limits.max_channels {
                return Some(channel);
            }
            log::warn!(
                "{}: refusing join of {}: {} channels already joined",
                self.label,
                Clip(topic),
                self.channels.len()
            );
            self.shared.env.metrics.limit_hit("channels_per_socket");
            "too many channels joined"
        };
        let reply = Reply::error_reason(msg.join_ref.clone(), msg.r#ref.clone(), topic, refusal);
        self.send(Outgoing::Reply(reply));
        None
    }

    /// Runs the channel's `join` callback and answers it; `old_close` (a duplicate join's
    /// phx_close) goes right after the reply, before anything the new instance pushes.
    fn join_channel(
        &mut self,
        msg: Message,
        mut channel: Box<dyn AnyChannel>,
        old_close: Option<Outgoing>,
    ) {
        let topic = msg.topic.clone();
        let join_ref = if msg.join_ref.is_null() {
            msg.r#ref.clone()
        } else {
            msg.join_ref.clone()
        };
        let instance = InstanceId(self.next_instance);
        self.next_instance += 1;
        let sub = SubscriptionId::next();
        // Subscribed before the reply is written, so no broadcast after the reply is missed.
        self.shared
            .env
            .pubsub
            .subscribe(&topic, sub, self.shared.mailbox.clone());
        let payload = msg.payload.into_json();
        let (result, effects) = run_callback(
            &self.shared,
            channel.as_mut(),
            &topic,
            &join_ref,
            instance,
            None,
            |c, ctx| c.join(&topic, payload, ctx),
        );
        let deferred =
            matches!(result, Ok(Ok(_))) && effects.iter().any(|e| matches!(e, Effect::DeferJoin));
        if deferred {
            // The reply comes with the channel's `finish_join`; the instance is live meanwhile
            // (its info messages reach it, a leave or duplicate join ends it).
            if let Some(close) = old_close {
                self.send(close);
            }
            self.insert_entry(&topic, instance, &join_ref, sub, channel, Some(msg.r#ref));
            self.apply_effects(&topic, &join_ref, effects);
            return;
        }
        let (status, response) = match result {
            Ok(Ok(response)) => ("ok", response),
            Ok(Err(response)) => ("error", response),
            Err(panic) => {
                self.shared
                    .env
                    .metrics
                    .errors
                    .get_or_create(&[("kind", "join_panicked")])
                    .inc();
                log::error!("{}: join of {} crashed: {panic}", self.label, Clip(&topic));
                ("error", json!({"reason": "join crashed"}))
            }
        };
        self.send(Outgoing::Reply(Reply {
            join_ref: join_ref.clone(),
            r#ref: msg.r#ref,
            topic: topic.clone(),
            status: Some(status.into()),
            payload: Payload::Json(response),
        }));
        if let Some(close) = old_close {
            self.send(close);
        }
        if status != "ok" {
            self.shared.env.pubsub.unsubscribe(&topic, sub);
            return;
        }
        self.insert_entry(&topic, instance, &join_ref, sub, channel, None);
        self.apply_effects(&topic, &join_ref, effects);
    }

    /// Enters a joined (or, with `pending_join`, joining) channel in the tables.
    fn insert_entry(
        &mut self,
        topic: &str,
        instance: InstanceId,
        join_ref: &Value,
        sub: SubscriptionId,
        channel: Box<dyn AnyChannel>,
        pending_join: Option<Value>,
    ) {
        self.by_instance.insert(instance, topic.to_owned());
        self.by_sub.insert(sub, topic.to_owned());
        self.channels.insert(
            topic.to_owned(),
            Entry {
                instance,
                join_ref: join_ref.clone(),
                sub,
                channel,
                tracked: false,
                pending_join,
                _counted: GaugeGuard::new(&self.shared.env.metrics.channels),
            },
        );
    }

    fn handle_leave(&mut self, msg: Message) {
        let Some(entry) = self.channels.get(&msg.topic) else {
            self.send(Outgoing::Reply(Reply::ok(
                msg.join_ref,
                msg.r#ref,
                &msg.topic,
            )));
            return;
        };
        if Self::is_stale(entry, &msg) {
            log::debug!(
                "{}: dropping stale phx_leave for {}",
                self.label,
                Clip(&msg.topic)
            );
            return;
        }
        let entry = self.remove_entry(&msg.topic);
        self.send(Outgoing::Reply(Reply::ok(
            entry.join_ref.clone(),
            msg.r#ref,
            &msg.topic,
        )));
        let close = self.close_frame(&msg.topic, &entry.join_ref, PHX_CLOSE);
        self.send(close);
        self.terminate_entry(&msg.topic, entry, TerminateReason::Left);
    }

    fn handle_event_in(&mut self, msg: Message) {
        let Some(entry) = self.channels.get_mut(&msg.topic) else {
            return self.unmatched(&msg);
        };
        if Self::is_stale(entry, &msg) {
            log::debug!(
                "{}: dropping {} with stale join_ref on {}",
                self.label,
                Clip(&msg.event),
                Clip(&msg.topic)
            );
            return;
        }
        let (join_ref, topic) = (entry.join_ref.clone(), msg.topic.clone());
        let (event, payload) = (msg.event, msg.payload);
        let current_ref = Some(msg.r#ref.clone());
        let (result, effects) = entry.call(&self.shared, &topic, current_ref, |c, ctx| {
            c.handle_in(&event, payload, ctx)
        });
        self.apply_effects(&topic, &join_ref, effects);
        let reply = |status: String, payload: Payload| {
            Outgoing::Reply(Reply {
                join_ref: join_ref.clone(),
                r#ref: msg.r#ref.clone(),
                topic: topic.clone(),
                status: Some(status),
                payload,
            })
        };
        match result {
            Ok(HandleIn::Reply { status, payload }) => self.send(reply(status, payload)),
            Ok(HandleIn::NoReply) => {}
            Ok(HandleIn::Stop { reason, reply: r }) => {
                if let Some((status, payload)) = r {
                    self.send(reply(status, payload));
                }
                self.stop_channel(&topic, reason);
            }
            Err(panic) => self.crash_channel(&topic, &event, panic),
        }
    }

    /// Handles an event from the socket's inbox (PubSub delivery or `handle_info` message).
    pub fn handle_event(&mut self, _now: Instant, ev: SocketEvent) {
        if self.closed {
            return;
        }
        match ev {
            SocketEvent::Deliver { sub, msg } => {
                if self.id_sub.as_ref().is_some_and(|(_, s)| *s == sub) {
                    if msg.broadcast.event == DISCONNECT_EVENT {
                        log::info!("{}: closing on disconnect broadcast", self.label);
                        self.close(CLOSE_GOING_AWAY, "disconnect");
                    }
                    return;
                }
                if let Some(topic) = self.by_sub.get(&sub).cloned() {
                    self.deliver(&topic, &msg);
                }
            }
            SocketEvent::Info { instance, msg } => {
                let Some(topic) = self.by_instance.get(&instance).cloned() else {
                    log::debug!(
                        "{}: dropping handle_info for ended channel {instance:?}",
                        self.label
                    );
                    return;
                };
                let Some(entry) = self.channels.get_mut(&topic) else {
                    return;
                };
                let join_ref = entry.join_ref.clone();
                let (result, effects) =
                    entry.call(&self.shared, &topic, None, |c, ctx| c.handle_info(msg, ctx));
                self.after_flow(&topic, &join_ref, "handle_info", result, effects);
            }
        }
    }

    /// Server shutdown: close with 1012 so clients reconnect elsewhere.
    pub fn drain(&mut self) {
        if !self.closed {
            log::info!("{}: draining", self.label);
            self.close(CLOSE_SERVICE_RESTART, "server restart");
        }
    }

    /// Closes the socket with `code`: every channel terminates, then a `Close` output.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.closed {
            return;
        }
        self.shared.env.metrics.closed(code);
        self.out.push_back(Output::Close {
            code,
            reason: reason.into(),
        });
        self.transport_closed();
    }

    /// The transport is gone (client closed, network error): every channel terminates and
    /// nothing more is sent.
    pub fn transport_closed(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        for topic in topics {
            let entry = self.remove_entry(&topic);
            self.terminate_entry(&topic, entry, TerminateReason::SocketClosed);
        }
        if let Some((id, sub)) = self.id_sub.take() {
            self.shared.env.pubsub.unsubscribe(&id, sub);
        }
    }

    fn send(&mut self, out: Outgoing) {
        match self.serializer.encode(&out) {
            Ok(frame) => self.emit(Output::Frame(frame)),
            Err(e) => log::warn!("{}: cannot encode outgoing frame: {e}", self.label),
        }
    }

    fn emit(&mut self, out: Output) {
        // After close, frames (e.g. pushes from terminate) have nowhere to go.
        if !self.closed {
            self.out.push_back(out);
        }
    }
}

impl Drop for SocketState {
    fn drop(&mut self) {
        self.transport_closed();
    }
}

#[cfg(test)]
mod tests;
