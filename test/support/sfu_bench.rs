//! Forwarding cost of `rtc::sfu::Sfu`, in process and in virtual time: one publisher (Opus 50
//! packets/s + VP8 100 packets/s of 1100 bytes) and N subscribers, all str0m peers passing
//! datagrams in memory. Only the time spent inside the Sfu's methods is counted (the peers' own
//! SRTP work is not), and reported per forwarded packet.
//!
//! `cargo run --release --example sfu_bench -- [subscribers=20] [seconds=10]`
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind as StrKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Input, Output, Rtc, RtcConfig};
use videoroom::rtc::ids::{MediaKind, PeerId};
use videoroom::rtc::sfu::{ConsumerSpec, Sfu, SfuConfig, SfuOutput};

struct Peer {
    id: PeerId,
    addr: SocketAddr,
    rtc: Rtc,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let subscribers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let start = Instant::now();
    let mut now = start;
    let sfu_addr: SocketAddr = "10.0.0.1:50000".parse().unwrap();
    let config = SfuConfig {
        room: "bench".into(),
        local_addrs: vec![sfu_addr],
        ..SfuConfig::default()
    };
    let mut sfu = Sfu::new(config, now);
    let mut sfu_time = Duration::ZERO;
    let mut peers: Vec<Peer> = (0..=subscribers)
        .map(|i| {
            let addr: SocketAddr = format!("10.1.{}.{}:40000", i / 250, i % 250 + 1)
                .parse()
                .unwrap();
            let mut rtc = RtcConfig::new().set_rtp_mode(true).build(now);
            rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
            let id = PeerId::new_v4();
            sfu.add_peer(id, now);
            Peer { id, addr, rtc }
        })
        .collect();

    // Peer 0 publishes audio + video; the others receive both.
    let (a_id, v_id) = (format!("{}:a", peers[0].id), format!("{}:v", peers[0].id));
    let mut mids: Vec<Mid> = Vec::new();
    let mut outbound = Vec::new();
    for (i, p) in peers.iter_mut().enumerate() {
        let mut api = p.rtc.sdp_api();
        let mut inbound = BTreeMap::new();
        if i == 0 {
            let s = Some(p.id.to_string());
            let a = api.add_media(
                StrKind::Audio,
                Direction::SendOnly,
                s.clone(),
                Some(a_id.clone()),
                None,
            );
            let v = api.add_media(
                StrKind::Video,
                Direction::SendOnly,
                s,
                Some(v_id.clone()),
                None,
            );
            inbound.insert(a, a_id.as_str().into());
            inbound.insert(v, v_id.as_str().into());
            mids = vec![a, v];
        } else {
            api.add_media(StrKind::Audio, Direction::RecvOnly, None, None, None);
            api.add_media(StrKind::Video, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api.apply().unwrap();
        let answer = sfu
            .handle_offer(p.id, &offer.to_sdp_string(), &inbound, &outbound, now)
            .unwrap();
        p.rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer.sdp).unwrap())
            .unwrap();
        if i == 0 {
            for (track_id, kind) in [
                (a_id.clone(), MediaKind::Audio),
                (v_id.clone(), MediaKind::Video),
            ] {
                outbound.push(ConsumerSpec {
                    track_id: track_id.as_str().into(),
                    publisher: p.id,
                    kind,
                    stream_id: p.id.to_string(),
                    active: true,
                });
            }
        }
    }

    let mut queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let step = Duration::from_millis(5);
    let end = start + Duration::from_secs(seconds);
    let (mut seq, mut next_audio, mut next_video) = (1u64, now, now);
    let mut measured_from = None;
    let mut measured_rtp = 0;
    while now < end {
        now += step;
        // Publisher media.
        if peers[0].rtc.is_connected() {
            let pt = |rtc: &Rtc, c: Codec| {
                rtc.codec_config()
                    .iter()
                    .find(|p| p.spec().codec == c)
                    .unwrap()
                    .pt()
            };
            let (apt, vpt) = (
                pt(&peers[0].rtc, Codec::Opus),
                pt(&peers[0].rtc, Codec::Vp8),
            );
            let mut api = peers[0].rtc.direct_api();
            while next_audio <= now {
                next_audio += Duration::from_millis(20);
                let tx = api.stream_tx_by_mid(mids[0], None).unwrap();
                tx.write_rtp(RtpWrite::new(
                    apt,
                    seq.into(),
                    seq as u32 * 960,
                    now,
                    vec![7u8; 100],
                ));
                seq += 1;
            }
            while next_video <= now {
                next_video += Duration::from_millis(20);
                for _ in 0..2 {
                    let tx = api.stream_tx_by_mid(mids[1], None).unwrap();
                    tx.write_rtp(
                        RtpWrite::new(vpt, seq.into(), seq as u32 * 90, now, vec![9u8; 1100])
                            .nackable(true),
                    );
                    seq += 1;
                }
            }
            if measured_from.is_none() && now > start + Duration::from_secs(1) {
                measured_from = Some(now);
                sfu_time = Duration::ZERO;
                measured_rtp = sfu.stats().rtp_out;
            }
        }
        for p in &mut peers {
            p.rtc.handle_input(Input::Timeout(now)).unwrap();
            drain_peer(p, &mut queue);
        }
        let t = Instant::now();
        sfu.handle_timeout(now);
        drain_sfu(&mut sfu, &mut queue);
        sfu_time += t.elapsed();
        while let Some((src, dst, data)) = queue.pop_front() {
            if dst == sfu_addr {
                let t = Instant::now();
                sfu.handle_datagram(now, src, dst, &data);
                drain_sfu(&mut sfu, &mut queue);
                sfu_time += t.elapsed();
            } else if let Some(p) = peers.iter_mut().find(|p| p.addr == dst) {
                let r = Receive::new(Protocol::Udp, src, dst, &data).unwrap();
                p.rtc.handle_input(Input::Receive(now, r)).unwrap();
                drain_peer(p, &mut queue);
            }
        }
    }
    let stats = sfu.stats();
    let forwarded = stats.rtp_out - measured_rtp;
    let virtual_secs = measured_from
        .map(|f| (end - f).as_secs_f64())
        .unwrap_or(0.0);
    println!("subscribers: {subscribers}, virtual time measured: {virtual_secs:.1} s");
    println!(
        "packets in: {}, forwarded (measured): {forwarded}",
        stats.rtp_in
    );
    println!("sfu cpu time: {:.3} s", sfu_time.as_secs_f64());
    if forwarded > 0 {
        println!(
            "cost per forwarded packet: {:.2} us  (~{:.0} forwarded packets per cpu-second)",
            sfu_time.as_secs_f64() * 1e6 / forwarded as f64,
            forwarded as f64 / sfu_time.as_secs_f64()
        );
    }
}

fn drain_peer(p: &mut Peer, queue: &mut VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>) {
    loop {
        match p.rtc.poll_output().unwrap() {
            Output::Timeout(_) => return,
            Output::Transmit(t) => queue.push_back((t.source, t.destination, t.contents.into())),
            Output::Event(_) => {}
        }
    }
}

fn drain_sfu(sfu: &mut Sfu, queue: &mut VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>) {
    loop {
        match sfu.poll_output() {
            SfuOutput::Timeout(_) => return,
            SfuOutput::Transmit(t) => queue.push_back((t.source, t.destination, t.contents)),
            SfuOutput::Event(_) => {}
        }
    }
}
