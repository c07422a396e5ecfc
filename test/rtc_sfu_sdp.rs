//! The SFU's answers to real browser offers (Chromium 156, Firefox ESR), recorded from the
//! tutorial's client: codecs and payload types, directions, msid, mids, bad offers.
use std::collections::BTreeMap;
use std::time::Instant;

use videoroom::rtc::ids::{MediaKind, PeerId, TrackId};
use videoroom::rtc::sfu::{Answer, ConsumerSpec, Mid, Offer, Sfu, SfuConfig, SfuError, SfuResult};

const CHROME_PUBLISHER: &str = include_str!("fixtures/sdp/chromium-156/publisher-first-offer.sdp");
const CHROME_JOINER: &str = include_str!("fixtures/sdp/chromium-156/joiner-offer-1pub.sdp");
const CHROME_VIEWER: &str = include_str!("fixtures/sdp/chromium-156/viewer-offer-2pubs.sdp");
const FIREFOX_PUBLISHER: &str = include_str!("fixtures/sdp/firefox-esr/publisher-first-offer.sdp");
const FIREFOX_JOINER: &str = include_str!("fixtures/sdp/firefox-esr/joiner-offer-1pub.sdp");
const FIREFOX_VIEWER: &str = include_str!("fixtures/sdp/firefox-esr/viewer-offer-2pubs.sdp");

fn sfu() -> Sfu {
    let config = SfuConfig {
        room: "sdp-test".into(),
        local_addrs: vec![
            "127.0.0.1:50000".parse().unwrap(),
            "192.0.2.2:50000".parse().unwrap(),
        ],
        ..SfuConfig::default()
    };
    Sfu::new(config, Instant::now())
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<Mid, TrackId> {
    pairs
        .iter()
        .map(|(k, v)| (Mid::from(*k), TrackId::from(*v)))
        .collect()
}

/// The producers of a publisher's offer: its audio on mid 0, its video on mid 1.
fn audio_and_video() -> BTreeMap<Mid, TrackId> {
    map(&[("0", "p:audio"), ("1", "p:video")])
}

/// A fresh SFU with one peer.
fn sfu_with_peer() -> (Sfu, PeerId) {
    let mut sfu = sfu();
    let peer = PeerId::new_v4();
    sfu.add_peer(peer, Instant::now());
    (sfu, peer)
}

/// A fresh SFU with one peer, and its answer to that peer's `offer` publishing
/// [`audio_and_video`].
fn publisher(offer: &str) -> (Sfu, PeerId, Answer) {
    let (mut sfu, peer) = sfu_with_peer();
    let ans = answer(&mut sfu, peer, offer, &audio_and_video(), &[]);
    (sfu, peer, ans)
}

fn track(publisher: PeerId, kind: MediaKind, n: u32, active: bool) -> ConsumerSpec {
    ConsumerSpec {
        track_id: format!("{publisher}:0000000{n}-aaaa-4bbb-8ccc-dddddddddddd").into(),
        publisher,
        kind,
        stream_id: publisher.to_string(),
        active,
    }
}

/// The lines of one m-section of an SDP, selected by mid.
fn section<'a>(sdp: &'a str, mid: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for l in sdp.lines().map(str::trim_end) {
        if l.starts_with("m=") {
            if current.contains(&format!("a=mid:{mid}").as_str()) {
                return current;
            }
            current = vec![l];
        } else if !current.is_empty() {
            current.push(l);
        }
    }
    if current.contains(&format!("a=mid:{mid}").as_str()) {
        out = current;
    }
    out
}

fn direction<'a>(lines: &[&'a str]) -> &'a str {
    lines
        .iter()
        .find(|l| {
            matches!(
                **l,
                "a=sendonly" | "a=recvonly" | "a=inactive" | "a=sendrecv"
            )
        })
        .copied()
        .unwrap_or("none")
}

fn payload_types<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines[0].split_whitespace().skip(3).collect()
}

fn answer(
    sfu: &mut Sfu,
    peer: PeerId,
    offer: &str,
    inbound: &BTreeMap<Mid, TrackId>,
    outbound: &[ConsumerSpec],
) -> Answer {
    let offer = Offer {
        sdp: offer,
        producers: inbound,
        consumers: outbound,
    };
    sfu.handle_offer(peer, offer, Instant::now())
        .expect("answer")
}

/// An offer that maps no producers and no consumers, answered or refused.
fn bare_offer(sfu: &mut Sfu, peer: PeerId, sdp: &str) -> SfuResult<Answer> {
    let offer = Offer {
        sdp,
        producers: &BTreeMap::new(),
        consumers: &[],
    };
    sfu.handle_offer(peer, offer, Instant::now())
}

#[test]
fn chrome_publisher_gets_recvonly_opus_vp8_h264_with_its_own_payload_types_and_feedback() {
    let (_, _, ans) = publisher(CHROME_PUBLISHER);
    assert_eq!(ans.mid_to_track_id, audio_and_video());
    let audio = section(&ans.sdp, "0");
    let video = section(&ans.sdp, "1");
    assert_eq!(direction(&audio), "a=recvonly");
    assert_eq!(direction(&video), "a=recvonly");
    assert_eq!(payload_types(&audio), vec!["111"], "{}", ans.sdp);
    assert!(audio.contains(&"a=rtpmap:111 opus/48000/2"));
    // VP8 first (preferred), H264 42e01f with its RTX; nothing else.
    let vpts = payload_types(&video);
    assert_eq!(vpts.first(), Some(&"96"), "{}", ans.sdp);
    assert!(video.contains(&"a=rtpmap:96 VP8/90000"));
    assert!(video.contains(&"a=rtpmap:108 H264/90000"));
    assert!(
        !video
            .iter()
            .any(|l| l.contains("VP9") || l.contains("AV1") || l.contains("42001f"))
    );
    for fb in ["nack", "nack pli", "ccm fir", "transport-cc"] {
        assert!(
            video.contains(&format!("a=rtcp-fb:96 {fb}").as_str()),
            "missing {fb}: {}",
            ans.sdp
        );
    }
    assert!(audio.contains(&"a=rtcp-fb:111 transport-cc"));
    assert!(
        audio
            .iter()
            .any(|l| l.starts_with("a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level"))
    );
    assert!(ans.sdp.contains("a=setup:passive"));
    assert!(ans.sdp.contains("a=group:BUNDLE 0 1"));
    assert!(ans.sdp.contains("a=fingerprint:sha-256 "));
    assert!(ans.sdp.contains("a=ice-lite"), "{}", ans.sdp);
    assert!(
        ans.sdp.contains(" 127.0.0.1 50000 typ host"),
        "candidates belong in the answer: {}",
        ans.sdp
    );
}

#[test]
fn firefox_publisher_gets_its_own_payload_types() {
    let (_, _, ans) = publisher(FIREFOX_PUBLISHER);
    assert_eq!(payload_types(&section(&ans.sdp, "0")), vec!["109"]);
    let vpts = payload_types(&section(&ans.sdp, "1"));
    assert_eq!(vpts.first(), Some(&"120"), "{}", ans.sdp);
    assert!(section(&ans.sdp, "1").contains(&"a=rtpmap:120 VP8/90000"));
}

fn joiner_gets_one_shared_msid_stream(offer: &str) {
    let (mut sfu, b) = sfu_with_peer();
    let a = PeerId::new_v4();
    let inbound = audio_and_video();
    let outbound = [
        track(a, MediaKind::Audio, 1, true),
        track(a, MediaKind::Video, 2, true),
    ];
    let ans = answer(&mut sfu, b, offer, &inbound, &outbound);
    let mut expected = inbound.clone();
    expected.insert("2".into(), outbound[0].track_id.clone());
    expected.insert("3".into(), outbound[1].track_id.clone());
    assert_eq!(ans.mid_to_track_id, expected);
    let stream = a.to_string();
    for (mid, t) in [("2", &outbound[0]), ("3", &outbound[1])] {
        let lines = section(&ans.sdp, mid);
        assert_eq!(direction(&lines), "a=sendonly", "{}", ans.sdp);
        let track_part = t.track_id.as_str().rsplit(':').next().unwrap();
        assert!(
            lines.contains(&format!("a=msid:{stream} {track_part}").as_str()),
            "{}",
            ans.sdp
        );
        let ssrc = lines
            .iter()
            .find(|l| l.starts_with("a=ssrc:") && l.contains(" cname:"));
        assert!(ssrc.is_some(), "no a=ssrc cname in {}", ans.sdp);
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("a=ssrc:") && l.contains(" msid:") && !l.contains(&stream))
        );
    }
}

#[test]
fn chrome_joiner_receives_audio_and_video_under_one_msid_stream() {
    joiner_gets_one_shared_msid_stream(CHROME_JOINER);
}

#[test]
fn firefox_joiner_receives_audio_and_video_under_one_msid_stream() {
    joiner_gets_one_shared_msid_stream(FIREFOX_JOINER);
}

fn disabled_tracks_become_inactive(offer: &str) {
    let (mut sfu, v) = sfu_with_peer();
    let (a, b) = (PeerId::new_v4(), PeerId::new_v4());
    let outbound = [
        track(a, MediaKind::Audio, 1, true),
        track(a, MediaKind::Video, 2, true),
        track(b, MediaKind::Audio, 3, false),
        track(b, MediaKind::Video, 4, false),
    ];
    let ans = answer(&mut sfu, v, offer, &BTreeMap::new(), &outbound);
    assert_eq!(
        ans.mid_to_track_id.len(),
        4,
        "disabled tracks keep their mids: {:?}",
        ans.mid_to_track_id
    );
    assert_eq!(ans.mid_to_track_id[&Mid::from("0")], outbound[0].track_id);
    assert_eq!(ans.mid_to_track_id[&Mid::from("3")], outbound[3].track_id);
    assert_eq!(direction(&section(&ans.sdp, "0")), "a=sendonly");
    assert_eq!(direction(&section(&ans.sdp, "1")), "a=sendonly");
    assert_eq!(
        direction(&section(&ans.sdp, "2")),
        "a=inactive",
        "{}",
        ans.sdp
    );
    assert_eq!(direction(&section(&ans.sdp, "3")), "a=inactive");
}

#[test]
fn chrome_viewer_gets_inactive_m_lines_for_disabled_tracks() {
    disabled_tracks_become_inactive(CHROME_VIEWER);
}

#[test]
fn firefox_viewer_gets_inactive_m_lines_for_disabled_tracks() {
    disabled_tracks_become_inactive(FIREFOX_VIEWER);
}

#[test]
fn surplus_recvonly_m_lines_are_inactive_and_unmapped() {
    let (mut sfu, v) = sfu_with_peer();
    let a = PeerId::new_v4();
    let outbound = [track(a, MediaKind::Video, 2, true)];
    let ans = answer(&mut sfu, v, CHROME_VIEWER, &BTreeMap::new(), &outbound);
    assert_eq!(
        ans.mid_to_track_id,
        map(&[("1", outbound[0].track_id.as_str())])
    );
    assert_eq!(direction(&section(&ans.sdp, "0")), "a=inactive");
    assert_eq!(direction(&section(&ans.sdp, "1")), "a=sendonly");
    assert_eq!(direction(&section(&ans.sdp, "2")), "a=inactive");
}

#[test]
fn a_re_offer_with_new_ice_credentials_gets_new_local_credentials() {
    let (mut sfu, b, first) = publisher(CHROME_PUBLISHER);
    let ufrags_before = sfu.ice_ufrags();
    let restarted = CHROME_PUBLISHER
        .replace("a=ice-ufrag:", "a=ice-ufrag:x")
        .replace("a=ice-pwd:", "a=ice-pwd:y");
    let second = answer(&mut sfu, b, &restarted, &audio_and_video(), &[]);
    let ufrag = |sdp: &str| {
        sdp.lines()
            .find(|l| l.starts_with("a=ice-ufrag:"))
            .unwrap()
            .to_string()
    };
    assert_ne!(ufrag(&first.sdp), ufrag(&second.sdp));
    assert_ne!(ufrags_before, sfu.ice_ufrags());
    assert_eq!(
        sfu.ice_ufrags(),
        vec![
            ufrag(&second.sdp)
                .trim_start_matches("a=ice-ufrag:")
                .to_string()
        ]
    );
}

#[test]
fn garbage_sdp_is_an_invalid_offer() {
    let (mut sfu, p) = sfu_with_peer();
    for garbage in [
        "",
        "hello",
        "v=0\r\nm=audio\r\n",
        "v=0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n",
    ] {
        let r = bare_offer(&mut sfu, p, garbage);
        assert!(
            matches!(r, Err(SfuError::InvalidSdp(_))),
            "{garbage:?} gave {r:?}"
        );
    }
    // The peer is still usable afterwards.
    answer(&mut sfu, p, CHROME_PUBLISHER, &audio_and_video(), &[]);
}

#[test]
fn an_offer_without_a_usable_codec_is_refused() {
    let (mut sfu, p) = sfu_with_peer();
    let no_video_codec = CHROME_PUBLISHER
        .replace("VP8/90000", "VP7/90000")
        .replace("42e01f", "640032");
    let r = bare_offer(&mut sfu, p, &no_video_codec);
    assert!(matches!(r, Err(SfuError::NoUsableCodec(_))), "{r:?}");
    let no_audio_codec = FIREFOX_PUBLISHER.replace("opus/48000/2", "speex/16000");
    let r = bare_offer(&mut sfu, p, &no_audio_codec);
    assert!(matches!(r, Err(SfuError::NoUsableCodec(_))), "{r:?}");
}

#[test]
fn offers_from_unknown_peers_are_refused() {
    let mut sfu = sfu();
    let r = bare_offer(&mut sfu, PeerId::new_v4(), CHROME_PUBLISHER);
    assert!(matches!(r, Err(SfuError::UnknownPeer(_))));
}

#[test]
fn local_candidates_are_host_candidates_of_every_configured_address() {
    let sfu = sfu();
    let c = sfu.local_candidates();
    assert_eq!(c.len(), 2);
    assert!(
        c[0].starts_with("candidate:") && c[0].contains(" 127.0.0.1 50000 typ host"),
        "{c:?}"
    );
    assert!(c[1].contains(" 192.0.2.2 50000 typ host"), "{c:?}");
}

#[test]
fn remote_candidates_are_parsed_and_mdns_names_refused() {
    let (mut sfu, p, _) = publisher(CHROME_PUBLISHER);
    sfu.handle_remote_candidate(
        p,
        "candidate:1 1 udp 2122260223 192.0.2.9 54321 typ host generation 0",
    )
    .unwrap();
    sfu.handle_remote_candidate(p, "a=candidate:2 1 udp 2122260223 192.0.2.9 54322 typ host")
        .unwrap();
    let r = sfu.handle_remote_candidate(
        p,
        "candidate:3 1 udp 2122260223 4f2e1c3d-aaaa.local 54321 typ host",
    );
    assert!(matches!(r, Err(SfuError::BadCandidate(_))), "{r:?}");
    assert!(matches!(
        sfu.handle_remote_candidate(p, "nonsense"),
        Err(SfuError::BadCandidate(_))
    ));
}

/// The server's candidates with ICE-TCP on: the UDP host candidates, then passive TCP ones on
/// the same addresses, ranked below every UDP one (RFC 8445 type preference 90 against 126), so
/// a browser that can use UDP nominates UDP.
#[test]
fn ice_tcp_candidates_are_passive_and_rank_below_every_udp_candidate() {
    let config = SfuConfig {
        room: "sdp-test".into(),
        local_addrs: vec![
            "127.0.0.1:50000".parse().unwrap(),
            "192.0.2.2:50000".parse().unwrap(),
        ],
        tcp_addrs: vec![
            "127.0.0.1:4000".parse().unwrap(),
            "192.0.2.2:4000".parse().unwrap(),
        ],
        ..SfuConfig::default()
    };
    let candidates = Sfu::new(config, Instant::now()).local_candidates();
    let fields = |c: &String| -> (String, u32, String) {
        let f: Vec<&str> = c.split_whitespace().collect();
        (
            f[2].to_lowercase(),
            f[3].parse().unwrap(),
            format!("{}:{}", f[4], f[5]),
        )
    };
    let parsed: Vec<(String, u32, String)> = candidates.iter().map(fields).collect();
    let protocols: Vec<(&str, &str)> = parsed
        .iter()
        .map(|(p, _, a)| (p.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        protocols,
        [
            ("udp", "127.0.0.1:50000"),
            ("udp", "192.0.2.2:50000"),
            ("tcp", "127.0.0.1:4000"),
            ("tcp", "192.0.2.2:4000")
        ]
    );
    assert!(
        candidates[2..]
            .iter()
            .all(|c| c.ends_with("typ host tcptype passive")),
        "{candidates:?}"
    );
    let lowest_udp = parsed[..2].iter().map(|(_, p, _)| *p).min().unwrap();
    let highest_tcp = parsed[2..].iter().map(|(_, p, _)| *p).max().unwrap();
    assert!(highest_tcp < lowest_udp, "{candidates:?}");
}
