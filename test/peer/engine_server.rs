//! A stand-in for the room layer, used only until the real `room:*` channel is wired into the
//! app: a minimal Phoenix endpoint plus one loop that owns an `rtc::engine::Engine` (driving the
//! real `Sfu`) per room and one loopback UDP socket. It lets the end-to-end scenarios exercise
//! the real engine and SFU before the room actor exists (`VIDEOROOM_E2E_BACKEND=engine`).

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Instant;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use videoroom::rtc::engine::{Engine, EngineOutput};
use videoroom::rtc::ids::PeerId;
use videoroom::rtc::sfu::{Sfu, SfuConfig};

enum Input {
    Joined {
        room: String,
        peer: PeerId,
        join_ref: Value,
        out: mpsc::Sender<String>,
    },
    MediaEvent {
        peer: PeerId,
        data: String,
    },
    Closed {
        peer: PeerId,
    },
}

/// Serves until the listener's task is aborted. `max_peers`: a joiner beyond it is denied.
pub async fn serve(listener: TcpListener, udp: UdpSocket, max_peers: Option<usize>) {
    let (input_tx, input) = mpsc::channel(4096);
    tokio::spawn(accept_loop(listener, input_tx));
    run(input, udp, max_peers).await;
}

async fn accept_loop(listener: TcpListener, input: mpsc::Sender<Input>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let input = input.clone();
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            connection(ws, input).await;
        });
    }
}

async fn connection(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    input: mpsc::Sender<Input>,
) {
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<String>(1024);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if sink.send(Message::text(frame)).await.is_err() {
                return;
            }
        }
    });
    let mut peer: Option<PeerId> = None;
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let (join_ref, r, topic, event, payload) = (
            frame[0].clone(),
            frame[1].clone(),
            frame[2].as_str().unwrap_or_default().to_owned(),
            frame[3].as_str().unwrap_or_default().to_owned(),
            frame[4].clone(),
        );
        let ok =
            json!([join_ref, r, topic, "phx_reply", {"status": "ok", "response": {}}]).to_string();
        match event.as_str() {
            "heartbeat" => {
                let _ = out_tx.send(ok).await;
            }
            "phx_join" => {
                let Some(room) = topic.strip_prefix("room:") else {
                    continue;
                };
                let id = PeerId::new_v4();
                peer = Some(id);
                let _ = out_tx.send(ok).await;
                let _ = input
                    .send(Input::Joined {
                        room: room.to_owned(),
                        peer: id,
                        join_ref,
                        out: out_tx.clone(),
                    })
                    .await;
            }
            "mediaEvent" => {
                if let (Some(peer), Some(data)) = (peer, payload["data"].as_str()) {
                    let _ = input
                        .send(Input::MediaEvent {
                            peer,
                            data: data.to_owned(),
                        })
                        .await;
                }
            }
            "phx_leave" => {
                let _ = out_tx.send(ok).await;
                if let Some(peer) = peer.take() {
                    let _ = input.send(Input::Closed { peer }).await;
                }
            }
            _ => {}
        }
    }
    if let Some(peer) = peer {
        let _ = input.send(Input::Closed { peer }).await;
    }
    writer.abort();
}

struct PeerConn {
    room: String,
    topic: String,
    join_ref: Value,
    out: mpsc::Sender<String>,
}

async fn run(mut input: mpsc::Receiver<Input>, udp: UdpSocket, max_peers: Option<usize>) {
    let local = udp.local_addr().expect("udp addr");
    let mut rooms: HashMap<String, (Engine, Instant)> = HashMap::new();
    let mut peers: HashMap<PeerId, PeerConn> = HashMap::new();
    let mut buf = vec![0u8; 2000];
    loop {
        let next = rooms
            .values()
            .map(|(_, t)| *t)
            .min()
            .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(1));
        let touched: Option<String> = tokio::select! {
            item = input.recv() => {
                let Some(item) = item else { return };
                let now = Instant::now();
                match item {
                    Input::Joined { room, peer, join_ref, out } => {
                        peers.insert(peer, PeerConn { room: room.clone(), topic: format!("room:{room}"), join_ref, out });
                        rooms.entry(room.clone()).or_insert_with(|| {
                            let config = SfuConfig { room: room.clone(), local_addrs: vec![local], ..SfuConfig::default() };
                            (Engine::new(room.clone(), Sfu::new(config, now)), now)
                        });
                        None
                    }
                    Input::MediaEvent { peer, data } => {
                        let room = peers.get(&peer).map(|p| p.room.clone());
                        if let Some((engine, _)) = room.as_ref().and_then(|r| rooms.get_mut(r)) {
                            engine.handle_media_event(peer, &data, now);
                        }
                        room
                    }
                    Input::Closed { peer } => {
                        let room = peers.remove(&peer).map(|p| p.room);
                        if let Some((engine, _)) = room.as_ref().and_then(|r| rooms.get_mut(r)) {
                            engine.remove_peer(peer);
                        }
                        room
                    }
                }
            }
            received = udp.recv_from(&mut buf) => {
                let Ok((n, source)) = received else { continue };
                let now = Instant::now();
                let datagram = &buf[..n];
                let room = rooms.iter().find(|(_, (e, _))| e.accepts(source, local, datagram)).map(|(r, _)| r.clone());
                if let Some((engine, _)) = room.as_ref().and_then(|r| rooms.get_mut(r)) {
                    engine.handle_datagram(now, source, local, datagram);
                }
                room
            }
            _ = tokio::time::sleep_until(next.into()) => {
                let now = Instant::now();
                let due: Vec<String> = rooms.iter().filter(|(_, (_, t))| *t <= now).map(|(r, _)| r.clone()).collect();
                for room in &due {
                    let (engine, _) = rooms.get_mut(room).expect("due room");
                    engine.handle_timeout(now);
                    drain(room, &mut rooms, &peers, &udp, max_peers).await;
                }
                None
            }
        };
        if let Some(room) = touched {
            drain(&room, &mut rooms, &peers, &udp, max_peers).await;
            let empty = rooms.get(&room).is_some_and(|(e, _)| e.member_count() == 0)
                && !peers.values().any(|p| p.room == room);
            if empty {
                rooms.remove(&room);
            }
        }
    }
}

async fn drain(
    room: &str,
    rooms: &mut HashMap<String, (Engine, Instant)>,
    peers: &HashMap<PeerId, PeerConn>,
    udp: &UdpSocket,
    max_peers: Option<usize>,
) {
    let Some((engine, timeout)) = rooms.get_mut(room) else {
        return;
    };
    loop {
        match engine.poll_output() {
            EngineOutput::JoinRequest { peer, .. } => {
                let now = Instant::now();
                if max_peers.is_some_and(|max| engine.member_count() >= max) {
                    engine.deny_peer(peer, json!({"reason": "room is full"}));
                } else {
                    engine.accept_peer(peer, now);
                }
            }
            EngineOutput::Send { to, event } => push(peers, &[to], &event).await,
            EngineOutput::Broadcast { to, event } => push(peers, &to, &event).await,
            EngineOutput::IceUfrags(_) | EngineOutput::PeerRemoved(_) => {}
            EngineOutput::Transmit(t) => {
                let _ = udp.send_to(&t.contents, t.destination).await;
            }
            EngineOutput::Timeout(t) => {
                *timeout = t;
                return;
            }
        }
    }
}

async fn push(peers: &HashMap<PeerId, PeerConn>, to: &[PeerId], event: &str) {
    for id in to {
        if let Some(p) = peers.get(id) {
            let frame = json!([p.join_ref, null, p.topic, "mediaEvent", {"data": event}]);
            let _ = p.out.try_send(frame.to_string());
        }
    }
}
