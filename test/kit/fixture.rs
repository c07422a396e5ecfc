//! The Phoenix conformance fixture (modelled on Phoenix's own `WebSocketChannelsTest` /
//! `LongPollChannelsTest`; `docs/phoenix-protocol.md`), shared by the Rust integration tests
//! (through `test/kit/mod.rs`) and the `phoenix_fixture_server` example used by the Node
//! conformance tests. Self-contained, so the example includes it by `#[path]`.
//!
//! Mounts (all with the same channels: `room:*` RoomChannel, `custom:*` CustomChannel,
//! `echo:*` EchoChannel):
//!
//! | path | check_origin | idle | notes |
//! |---|---|---|---|
//! | `/ws`, `/ws/admin` | `["//example.com"]` | 200 ms | LongPoll window 200 ms |
//! | `/ws/limited` | same | 200 ms | max 1 channel |
//! | `/ws/sip` | same | 200 ms | subprotocols `["sip"]` |
//! | `/custom/:socket_var` | same | 200 ms | path variable → param |
//! | `/socket` (optional) | off | 60 s | LongPoll window 10 s (for phoenix.js) |
//! | `/lponly` (optional) | off | 60 s | WebSocket refused (404), LongPoll only |
//!
//! UserSocket `connect`: `reject=true` → 403; `ratelimit=true` → 429; otherwise assigns
//! `{"user_id": params.user_id}`; `id` = `user_sockets:<user_id>`.

use serde_json::{Value, json};
use std::time::Duration;
use videoroom::phoenix::transport::{
    CheckOrigin, ConnectError, ConnectInfo, Endpoint, Settings, SocketHandler, SocketMount,
};
use videoroom::phoenix::{
    Channel, ChannelContext, EchoChannel, Flow, HandleIn, JoinReply, Payload, ReplyRef, Router,
    SocketLimits, StopReason, TerminateReason,
};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// The context every channel callback gets (short, so the signatures fit one line).
type Ctx<'a> = ChannelContext<'a>;

/// Phoenix's `UserSocket` of the integration tests.
pub struct UserSocket;

impl SocketHandler for UserSocket {
    fn connect(&self, params: &Value, info: &ConnectInfo) -> Result<Value, ConnectError> {
        if params.get("reject").and_then(Value::as_str) == Some("true") {
            return Err(ConnectError::Refused);
        }
        if params.get("ratelimit").and_then(Value::as_str) == Some("true") {
            return Err(ConnectError::Status {
                status: 429,
                body: "Too many requests".into(),
            });
        }
        Ok(json!({
            "user_id": params.get("user_id").cloned().unwrap_or(Value::Null),
            "transport": info.transport,
            "params": params,
            "auth_token": info.auth_token,
        }))
    }

    fn id(&self, assigns: &Value) -> Option<String> {
        match assigns.get("user_id") {
            Some(Value::String(id)) => Some(format!("user_sockets:{id}")),
            _ => None,
        }
    }
}

/// Messages RoomChannel receives from server-side code.
pub enum RoomInfo {
    /// Answer an earlier `later` event and push `info`.
    Later(ReplyRef, Value),
}

/// Phoenix's `RoomChannel` of the integration tests (plus `whoami`, `later`, `slow`, presence).
#[derive(Default)]
pub struct RoomChannel {
    longpoll: bool,
}

impl Channel for RoomChannel {
    type Info = RoomInfo;

    fn join(&mut self, _topic: &str, payload: Value, ctx: &mut Ctx<'_>) -> JoinReply {
        self.longpoll = ctx.assigns().get("transport").and_then(Value::as_str) == Some("longpoll");
        let user_id = ctx.assigns().get("user_id").cloned().unwrap_or(Value::Null);
        ctx.broadcast(
            "user_entered",
            json!({"user": payload.get("user").cloned().unwrap_or(Value::Null)}),
        );
        ctx.push("joined", json!({"status": "connected", "user_id": user_id}));
        if let Some(key) = payload.get("presence_key").and_then(Value::as_str) {
            ctx.track_presence(key, json!({"name": key}));
        }
        Ok(json!({}))
    }

    fn intercepts(&self, event: &str) -> bool {
        event == "new_msg" || event == "bin_ack"
    }

    fn handle_out(&mut self, event: &str, payload: Payload, ctx: &mut Ctx<'_>) -> Flow {
        let mut p = payload.into_json();
        if let Value::Object(m) = &mut p {
            let t = if self.longpoll {
                ":longpoll"
            } else {
                ":websocket"
            };
            m.insert("transport".into(), json!(t));
        }
        ctx.push(event, p);
        Flow::Continue
    }

    fn handle_in(&mut self, event: &str, payload: Payload, ctx: &mut Ctx<'_>) -> HandleIn {
        match (event, payload) {
            ("new_msg", p) => {
                ctx.broadcast("new_msg", p);
                if self.longpoll {
                    HandleIn::NoReply
                } else {
                    HandleIn::ok()
                }
            }
            // resume_unwind skips the panic hook: no backtrace printing stalls the test server.
            ("boom", _) => std::panic::resume_unwind(Box::new("boom")),
            ("binary_event", Payload::Binary(data)) => {
                ctx.push("binary_event", vec![0u8, 1]);
                let mut reply = data.to_vec();
                reply.extend_from_slice(&[3, 4]);
                HandleIn::ok_with(reply)
            }
            ("bin", Payload::Binary(_)) => {
                ctx.broadcast("bin_ack", json!({}));
                HandleIn::NoReply
            }
            ("whoami", _) => HandleIn::ok_with(json!({
                "params": ctx.assigns().get("params").cloned().unwrap_or(Value::Null),
                "auth_token": ctx.assigns().get("auth_token").cloned().unwrap_or(Value::Null),
            })),
            ("later", p) => {
                let Some(reply_ref) = ctx.reply_ref() else {
                    return HandleIn::NoReply;
                };
                let sender = ctx.sender::<RoomInfo>();
                let value = p.into_json();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let _ = sender.send(RoomInfo::Later(reply_ref, value)).await;
                });
                HandleIn::NoReply
            }
            ("slow", p) => {
                let ms = p
                    .as_json()
                    .and_then(|v| v.get("ms"))
                    .and_then(Value::as_u64)
                    .unwrap_or(500);
                std::thread::sleep(Duration::from_millis(ms));
                HandleIn::ok()
            }
            ("stop_error", _) => HandleIn::Stop {
                reason: StopReason::Error("asked to".into()),
                reply: None,
            },
            (other, _) => HandleIn::error(json!({"reason": format!("unknown event {other}")})),
        }
    }

    fn handle_info(&mut self, msg: RoomInfo, ctx: &mut Ctx<'_>) -> Flow {
        match msg {
            RoomInfo::Later(reply_ref, value) => {
                ctx.push("info", json!({"value": value}));
                ctx.reply(&reply_ref, "ok", json!({"later": value}));
            }
        }
        Flow::Continue
    }

    fn terminate(&mut self, _reason: &TerminateReason, ctx: &mut Ctx<'_>) {
        ctx.push("you_left", json!({"message": "bye!"}));
    }
}

/// Phoenix's `CustomChannel`: join outcome chosen by the payload's `action`.
pub struct CustomChannel;

impl Channel for CustomChannel {
    type Info = ();

    fn join(&mut self, _topic: &str, payload: Value, _: &mut Ctx<'_>) -> JoinReply {
        match payload.get("action").and_then(Value::as_str) {
            Some("ok") => Ok(json!({"action": "ok"})),
            Some("ignore") => Err(json!({"action": "ignore"})),
            Some("error") => std::panic::resume_unwind(Box::new("join error requested")),
            _ => Err(json!({"reason": "unknown action"})),
        }
    }

    fn handle_in(&mut self, event: &str, _: Payload, _: &mut Ctx<'_>) -> HandleIn {
        match event {
            "close" => HandleIn::Stop {
                reason: StopReason::Normal,
                reply: None,
            },
            _ => HandleIn::NoReply,
        }
    }
}

/// The fixture's channel routes.
pub fn router() -> Router {
    Router::new()
        .channel("room:*", RoomChannel::default)
        .channel("custom:*", || CustomChannel)
        .channel("echo:*", || EchoChannel)
}

/// The fixture settings: `check_origin: ["//example.com"]`, short timeouts.
pub fn fixture_settings() -> Settings {
    Settings {
        check_origin: CheckOrigin::List(vec!["//example.com".into()]),
        socket: SocketLimits {
            idle_timeout: Some(Duration::from_millis(200)),
            ..SocketLimits::default()
        },
        longpoll_window: Duration::from_millis(200),
        max_frame_size: 64 * 1024,
        ..Settings::default()
    }
}

/// Settings for `/socket`: what a real app uses, origin check off.
pub fn app_settings() -> Settings {
    Settings {
        check_origin: CheckOrigin::Off,
        ..Settings::default()
    }
}

/// All fixture routes; `with_app_mounts` adds `/socket` and `/lponly`.
pub fn routes(endpoint: &Endpoint, with_app_mounts: bool) -> BoxedFilter<(Response,)> {
    let idle_timeout = fixture_settings().socket.idle_timeout;
    routes_with_idle_timeout(
        endpoint,
        with_app_mounts,
        idle_timeout.expect("fixture idles"),
    )
}

/// [`routes`] with another idle timeout on the fixture mounts (`/ws`…, `/custom/…`).
pub fn routes_with_idle_timeout(
    endpoint: &Endpoint,
    with_app_mounts: bool,
    idle_timeout: Duration,
) -> BoxedFilter<(Response,)> {
    let mount = |path: &str, f: &dyn Fn(&mut Settings)| {
        let mut s = fixture_settings();
        s.socket.idle_timeout = Some(idle_timeout);
        f(&mut s);
        endpoint.mount(
            SocketMount::new(path, router())
                .handler(UserSocket)
                .settings(s),
        )
    };
    let mut all = mount("/ws", &|_| {})
        .or(mount("/ws/admin", &|_| {}))
        .unify()
        .or(mount("/ws/limited", &|s| s.socket.max_channels = 1))
        .unify()
        .or(mount("/ws/sip", &|s| s.subprotocols = vec!["sip".into()]))
        .unify()
        .or(mount("/custom/:socket_var", &|_| {}))
        .unify()
        .boxed();
    if with_app_mounts {
        let app = endpoint.mount(
            SocketMount::new("/socket", router())
                .handler(UserSocket)
                .settings(app_settings()),
        );
        let lponly = endpoint.mount(
            SocketMount::new("/lponly", router())
                .handler(UserSocket)
                .settings(Settings {
                    websocket: false,
                    ..app_settings()
                }),
        );
        all = all.or(app).unify().or(lponly).unify().boxed();
    }
    all
}
