//! The Phoenix conformance fixture server (`docs/phoenix-protocol.md`) for the Node conformance tests (`cargo run --example
//! phoenix_fixture_server -- <PORT>`; or env `FIXTURE_PORT`; port 0 picks a free one).
//!
//! Contract (kept stable for `test/node/*.test.mjs`):
//! * prints `listening on http://127.0.0.1:PORT` once it accepts connections;
//! * `/ws`, `/ws/admin`, `/ws/limited`, `/ws/sip`, `/custom/:socket_var`: the conformance fixture
//!   (check_origin `["//example.com"]`, idle timeout 200 ms, LongPoll window 200 ms);
//! * `/socket`: the same channels with check_origin off, idle 60 s, LongPoll window 10 s;
//! * `/lponly`: like `/socket` but the WebSocket transport is refused (404), LongPoll only;
//! * channels: `room:*` (RoomChannel), `custom:*` (CustomChannel), `echo:*` (pushes every event
//!   back with the same name and payload and replies `{"status":"ok","response":payload}`;
//!   binary in → binary out);
//! * `POST /test/disconnect/<socket id topic>` → `disconnect` broadcast (e.g.
//!   `user_sockets:42`; sockets connected with `user_id=42` close with 1001);
//! * `POST /test/broadcast/<topic>/<event>` with a JSON body → broadcast of that payload;
//! * `POST /test/broadcast_binary/<topic>/<event>` with any body → binary broadcast;
//! * SIGINT/SIGTERM → every socket closes with 1012, then the process exits.

#[path = "../kit/fixture.rs"]
mod fixture;

use bytes::Bytes;
use videoroom::phoenix::Payload;
use videoroom::phoenix::transport::Endpoint;
use videoroom::phoenix::transport::params::percent_decode;
use warp::Filter;

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("FIXTURE_PORT").ok())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let endpoint = Endpoint::new();

    let pubsub = endpoint.pubsub().clone();
    let disconnect = warp::post()
        .and(warp::path!("test" / "disconnect" / String))
        .map(move |topic: String| {
            pubsub.broadcast(&percent_decode(&topic), "disconnect", Payload::empty());
            warp::reply::json(&serde_json::json!({"ok": true}))
        });
    let pubsub = endpoint.pubsub().clone();
    let broadcast = warp::post()
        .and(warp::path!("test" / "broadcast" / String / String))
        .and(warp::body::json())
        .map(
            move |topic: String, event: String, body: serde_json::Value| {
                pubsub.broadcast(
                    &percent_decode(&topic),
                    &percent_decode(&event),
                    Payload::Json(body),
                );
                warp::reply::json(&serde_json::json!({"ok": true}))
            },
        );
    let pubsub = endpoint.pubsub().clone();
    let broadcast_binary = warp::post()
        .and(warp::path!("test" / "broadcast_binary" / String / String))
        .and(warp::body::bytes())
        .map(move |topic: String, event: String, body: Bytes| {
            pubsub.broadcast(
                &percent_decode(&topic),
                &percent_decode(&event),
                Payload::Binary(body),
            );
            warp::reply::json(&serde_json::json!({"ok": true}))
        });

    let routes = disconnect
        .or(broadcast)
        .or(broadcast_binary)
        .or(fixture::routes(&endpoint, true))
        .with(warp::log("fixture::http"));
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    println!("listening on http://{addr}");
    let drain = endpoint.clone();
    // The app's own serving code, as the in-process fixture of the Rust tests uses.
    videoroom::web::serve(routes, listener, None, async move {
        shutdown_signal().await;
        drain.drain();
        drain.wait_drained(std::time::Duration::from_secs(2)).await;
    })
    .await;
}
