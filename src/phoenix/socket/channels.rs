//! The channel side of the socket: delivering broadcasts, applying the effects a channel
//! callback requested (in order), and ending channel instances (close, crash, terminate).

use super::{Entry, Output, SocketState};
use crate::phoenix::channel::{Effect, Flow, StopReason, TerminateReason};
use crate::phoenix::message::{Broadcast, Message, Outgoing, PHX_CLOSE, PHX_ERROR, Payload, Reply};
use crate::phoenix::presence::PRESENCE_STATE;
use crate::phoenix::pubsub::Published;
use serde_json::{Value, json};
use std::sync::Arc;

impl SocketState {
    pub(super) fn after_flow(
        &mut self,
        topic: &str,
        join_ref: &Value,
        what: &str,
        result: Result<Flow, String>,
        effects: Vec<Effect>,
    ) {
        self.apply_effects(topic, join_ref, effects);
        match result {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop(reason)) => self.stop_channel(topic, reason),
            Err(panic) => self.crash_channel(topic, what, panic),
        }
    }

    /// Delivers a broadcast to the channel joined on `topic` (intercepted or fast-laned).
    pub(super) fn deliver(&mut self, topic: &str, msg: &Arc<Published>) {
        let Some(entry) = self.channels.get_mut(topic) else {
            return;
        };
        let event = &msg.broadcast.event;
        if !entry.channel.intercepts(event) {
            match msg.frame(self.serializer) {
                Ok(frame) => self.emit(Output::Frame(frame)),
                Err(e) => log::warn!("{}: cannot send {event} on {topic:?}: {e}", self.label),
            }
            return;
        }
        let join_ref = entry.join_ref.clone();
        let payload = msg.broadcast.payload.clone();
        let (result, effects) = entry.call(&self.shared, topic, None, |c, ctx| {
            c.handle_out(event, payload, ctx)
        });
        self.after_flow(topic, &join_ref, "handle_out", result, effects);
    }

    /// Applies a callback's effects in order, on behalf of the channel instance `join_ref` on
    /// `topic` (which may already be removed, when the effects come from `terminate`).
    pub(super) fn apply_effects(&mut self, topic: &str, join_ref: &Value, effects: Vec<Effect>) {
        for effect in effects {
            // Only a live instance (same join_ref) may track presence.
            let sub = self
                .channels
                .get(topic)
                .filter(|e| e.join_ref == *join_ref)
                .map(|e| e.sub);
            let join_ref = join_ref.clone();
            match effect {
                Effect::Push { event, payload } => {
                    let m = Message {
                        join_ref,
                        r#ref: Value::Null,
                        topic: topic.into(),
                        event,
                        payload,
                    };
                    self.send(Outgoing::Message(m));
                }
                Effect::Reply {
                    r#ref,
                    status,
                    payload,
                } => {
                    let r = Reply {
                        join_ref,
                        r#ref,
                        topic: topic.into(),
                        status: Some(status),
                        payload,
                    };
                    self.send(Outgoing::Reply(r));
                }
                Effect::Broadcast {
                    topic: to,
                    event,
                    payload,
                    from_self,
                } => {
                    let msg = Published::new(Broadcast {
                        topic: to.clone(),
                        event,
                        payload,
                    });
                    // Our own subscription to `to` is served in line (keeps per-channel order).
                    let own = self.channels.get(&to).map(|e| e.sub);
                    self.shared.env.pubsub.publish(own, msg.clone());
                    let skip_self = from_self && to == topic;
                    if own.is_some() && !skip_self && !self.closed {
                        self.deliver(&to, &msg);
                    }
                }
                Effect::DeferJoin => {}
                Effect::FinishJoin(reply) => self.finish_join(topic, &join_ref, reply),
                Effect::Track { key, meta } => {
                    let Some(sub) = sub else { continue };
                    self.shared.env.presence.track(sub, topic, &key, meta);
                    let first = self
                        .channels
                        .get_mut(topic)
                        .map(|e| !std::mem::replace(&mut e.tracked, true));
                    if first == Some(true) {
                        let state = self.shared.env.presence.list(topic);
                        let m = Message {
                            join_ref,
                            r#ref: Value::Null,
                            topic: topic.into(),
                            event: PRESENCE_STATE.into(),
                            payload: Payload::Json(state),
                        };
                        self.send(Outgoing::Message(m));
                    }
                }
            }
        }
    }

    pub(super) fn stop_channel(&mut self, topic: &str, reason: StopReason) {
        if !self.channels.contains_key(topic) {
            return;
        }
        let entry = self.remove_entry(topic);
        let event = match reason {
            StopReason::Normal | StopReason::Shutdown(_) => PHX_CLOSE,
            StopReason::Error(ref e) => {
                log::warn!("{}: channel {topic:?} stopped with error: {e}", self.label);
                PHX_ERROR
            }
        };
        let close = self.close_frame(topic, &entry.join_ref, event);
        self.send(close);
        self.terminate_entry(topic, entry, TerminateReason::Stopped(reason));
    }

    pub(super) fn crash_channel(&mut self, topic: &str, what: &str, panic: String) {
        log::error!(
            "{}: channel {topic:?} crashed in {what}: {panic}",
            self.label
        );
        if !self.channels.contains_key(topic) {
            return;
        }
        let entry = self.remove_entry(topic);
        let close = self.close_frame(topic, &entry.join_ref, PHX_ERROR);
        self.send(close);
        self.terminate_entry(topic, entry, TerminateReason::Crashed(panic));
    }

    pub(super) fn close_frame(&self, topic: &str, join_ref: &Value, event: &str) -> Outgoing {
        let payload = if event == PHX_ERROR {
            json!({"reason": "channel_crash"})
        } else {
            json!({})
        };
        Outgoing::Message(Message {
            join_ref: join_ref.clone(),
            r#ref: join_ref.clone(),
            topic: topic.into(),
            event: event.into(),
            payload: Payload::Json(payload),
        })
    }

    /// Answers the deferred join of the instance `join_ref` on `topic`; a refusal ends it.
    fn finish_join(&mut self, topic: &str, join_ref: &Value, reply: Result<Value, Value>) {
        let Some(r#ref) = self
            .channels
            .get_mut(topic)
            .filter(|e| e.join_ref == *join_ref)
            .and_then(|e| e.pending_join.take())
        else {
            return;
        };
        let (status, response, refused) = match reply {
            Ok(response) => ("ok", response, false),
            Err(response) => ("error", response, true),
        };
        self.send(Outgoing::Reply(Reply {
            join_ref: join_ref.clone(),
            r#ref,
            topic: topic.into(),
            status: Some(status.into()),
            payload: Payload::Json(response),
        }));
        if refused {
            // As for a refusal in `join`, the client hears nothing after the error reply:
            // `terminate` runs (exactly once, as promised) but what it pushes is dropped.
            let mut entry = self.remove_entry(topic);
            let reason = TerminateReason::Stopped(StopReason::Normal);
            let (result, _effects) = entry.call(&self.shared, topic, None, |c, ctx| {
                c.terminate(&reason, ctx)
            });
            if let Err(panic) = result {
                log::error!(
                    "{}: channel {topic:?} panicked in terminate: {panic}",
                    self.label
                );
            }
        }
    }

    /// Removes a channel from the tables, its subscription and its presences.
    pub(super) fn remove_entry(&mut self, topic: &str) -> Entry {
        // Callers check `contains_key` first; this is the only way entries leave the table.
        let entry = self
            .channels
            .remove(topic)
            .expect("caller checked the channel exists");
        self.by_instance.remove(&entry.instance);
        self.by_sub.remove(&entry.sub);
        self.shared.env.pubsub.unsubscribe(topic, entry.sub);
        if entry.tracked {
            self.shared.env.presence.untrack_owner(entry.sub, topic);
        }
        entry
    }

    /// Calls `terminate` (exactly once per instance) and forwards what it produced.
    pub(super) fn terminate_entry(
        &mut self,
        topic: &str,
        mut entry: Entry,
        reason: TerminateReason,
    ) {
        let (result, effects) = entry.call(&self.shared, topic, None, |c, ctx| {
            c.terminate(&reason, ctx)
        });
        if let Err(panic) = result {
            log::error!(
                "{}: channel {topic:?} panicked in terminate: {panic}",
                self.label
            );
        }
        self.apply_effects(topic, &entry.join_ref, effects);
    }
}
