//! A one-room SFU with a bare HTTP offer/answer endpoint, for probing real browsers against
//! `rtc::sfu` on the real media driver, without the Phoenix/media-event layers (used by test/browser/rtc_sfu_browsers.test.mjs).
//!
//! `GET /` serves a page; `POST /offer` takes `{name, sdp, tracks: [{mid, trackId, kind}],
//! receive}` and answers `{sdp, midToTrackId}`. A receiving peer gets every track published so
//! far, in publication order. Prints `sfu_probe listening on http://127.0.0.1:PORT`.
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use videoroom::rtc::driver::{MediaDriver, MediaShell};
use videoroom::rtc::ids::{MediaKind, PeerId};
use videoroom::rtc::sfu::{ConsumerSpec, Offer, Sfu, SfuConfig, SfuEvent};
use videoroom::rtc::udp::{UdpMux, candidate_addrs};
use warp::Filter;

#[derive(Deserialize)]
struct TrackInfo {
    mid: String,
    #[serde(rename = "trackId")]
    track_id: String,
    kind: String,
}

#[derive(Deserialize)]
struct OfferBody {
    name: String,
    sdp: String,
    tracks: Vec<TrackInfo>,
    receive: bool,
}

type Reply = oneshot::Sender<Result<serde_json::Value, String>>;

async fn room(mut media: MediaShell<Sfu>, mut offers: mpsc::Receiver<(OfferBody, Reply)>) {
    let mut peers: HashMap<String, PeerId> = HashMap::new();
    let mut published: Vec<ConsumerSpec> = Vec::new();
    loop {
        drain(&mut media);
        tokio::select! {
            offer = offers.recv() => {
                let Some((body, reply)) = offer else { return };
                let now = Instant::now();
                let peer = *peers.entry(body.name.clone()).or_insert_with(|| {
                    let p = PeerId::new_v4();
                    eprintln!("peer {} is {p}", body.name);
                    media.driver().signal(|sfu| sfu.add_peer(p, now));
                    p
                });
                let inbound: BTreeMap<videoroom::rtc::sfu::Mid, videoroom::rtc::ids::TrackId> =
                    body.tracks.iter().map(|t| (t.mid.as_str().into(), t.track_id.as_str().into())).collect();
                for t in &body.tracks {
                    if !published.iter().any(|p| p.track_id.as_str() == t.track_id) {
                        let kind = if t.kind == "audio" { MediaKind::Audio } else { MediaKind::Video };
                        published.push(ConsumerSpec {
                            track_id: t.track_id.as_str().into(),
                            publisher: peer,
                            kind,
                            stream_id: peer.to_string(),
                            active: true,
                        });
                    }
                }
                let outbound: Vec<ConsumerSpec> = if body.receive {
                    published.iter().filter(|t| t.publisher != peer).cloned().collect()
                } else {
                    Vec::new()
                };
                let result = media
                    .driver()
                    .signal(|sfu| {
                        let offer = Offer { sdp: &body.sdp, producers: &inbound, consumers: &outbound };
                        sfu.handle_offer(peer, offer, now)
                    })
                    .unwrap_or_else(|| Err(videoroom::rtc::sfu::SfuError::InvalidSdp("sfu crashed".into())));
                // Publishes the new ufrags before the answer leaves.
                drain(&mut media);
                let _ = reply.send(
                    result
                        .map(|a| serde_json::json!({"sdp": a.sdp, "midToTrackId": a.mid_to_track_id.iter().map(|(m, t)| (m.to_string(), t.to_string())).collect::<BTreeMap<_, _>>()}))
                        .map_err(|e| e.to_string()),
                );
            }
            () = media.wait() => {}
        }
    }
}

/// Sends what the driver has to send; logs the SFU's events and removes failed peers.
fn drain(media: &mut MediaShell<Sfu>) {
    while let Some(e) = media.poll_event() {
        eprintln!("sfu event: {e:?}");
        if let SfuEvent::PeerFailed(p) = e {
            media.driver().signal(|sfu| sfu.remove_peer(p));
        }
    }
}

const PAGE: &str = r#"<!doctype html><html><body><video id="v" autoplay muted playsinline></video><script>
const q = new URLSearchParams(location.search);
const name = q.get('name'), role = q.get('role'), pubs = Number(q.get('pubs') || 0);
const pc = new RTCPeerConnection();
window.received = [];
pc.ontrack = e => {
  window.received.push({kind: e.track.kind, stream: e.streams[0] ? e.streams[0].id : null, mid: e.transceiver.mid});
  if (e.track.kind === 'video') document.getElementById('v').srcObject = e.streams[0];
};
window.setup = async () => {
  if (role === 'pub') {
    const s = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 360}});
    for (const t of s.getTracks()) pc.addTransceiver(t, {direction: 'sendonly', streams: [s]});
  } else {
    for (let i = 0; i < pubs; i++) {
      pc.addTransceiver('audio', {direction: 'recvonly'});
      pc.addTransceiver('video', {direction: 'recvonly'});
    }
  }
};
window.negotiate = async (restart) => {
  if (restart) pc.restartIce();
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const tracks = pc.getTransceivers().filter(t => t.sender.track)
    .map(t => ({mid: t.mid, trackId: name + ':' + t.sender.track.id, kind: t.sender.track.kind}));
  const r = await fetch('/offer', {method: 'POST', headers: {'content-type': 'application/json'},
    body: JSON.stringify({name, sdp: pc.localDescription.sdp, tracks, receive: role === 'sub'})});
  if (!r.ok) throw new Error(await r.text());
  const a = await r.json();
  await pc.setRemoteDescription({type: 'answer', sdp: a.sdp});
  return a.midToTrackId;
};
window.stats = async () => {
  const out = {frames: {}, audio: {}, packetsSent: 0, state: pc.connectionState, ice: pc.iceConnectionState};
  (await pc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') out.frames[s.mid] = s.framesDecoded || 0;
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audio[s.mid] = s.packetsReceived || 0;
    if (s.type === 'outbound-rtp') out.packetsSent += s.packetsSent || 0;
  });
  return out;
};
</script></body></html>"#;

#[tokio::main]
async fn main() {
    env_logger::init();
    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0")
        .await
        .expect("udp bind");
    // Firefox cannot reach loopback-only candidates: advertise every IPv4 interface.
    let local_addrs = candidate_addrs(socket.local_addr().expect("udp addr"), None);
    eprintln!("candidates: {local_addrs:?}");
    let mux = UdpMux::spawn(socket);
    let udp = mux.open_route("probe");
    let config = SfuConfig {
        room: "probe".into(),
        local_addrs,
        ..SfuConfig::default()
    };
    let (tx, rx) = mpsc::channel::<(OfferBody, Reply)>(16);
    let driver = MediaDriver::new("probe", Sfu::new(config, Instant::now()));
    tokio::spawn(room(MediaShell::new(driver, Some(udp)), rx));

    let page = warp::path::end()
        .and(warp::get())
        .map(|| warp::reply::html(PAGE));
    let offer = warp::path("offer")
        .and(warp::post())
        .and(warp::body::json())
        .and_then(move |body: OfferBody| {
            let tx = tx.clone();
            async move {
                let (reply, answer) = oneshot::channel();
                let _ = tx.send((body, reply)).await;
                let result = answer.await.unwrap_or_else(|_| Err("room stopped".into()));
                Ok::<_, std::convert::Infallible>(match result {
                    Ok(v) => {
                        warp::reply::with_status(warp::reply::json(&v), warp::http::StatusCode::OK)
                    }
                    Err(e) => warp::reply::with_status(
                        warp::reply::json(&serde_json::json!({ "error": e })),
                        warp::http::StatusCode::BAD_REQUEST,
                    ),
                })
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("tcp bind");
    println!(
        "sfu_probe listening on http://{}",
        listener.local_addr().expect("tcp addr")
    );
    warp::serve(page.or(offer)).incoming(listener).run().await;
}
