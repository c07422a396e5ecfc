//! Golden tests of every media event's exact JSON (flat dialect, `docs/media-events.md`).
//!
//! Each fixture under `test/fixtures/media_events/` is the exact string that travels inside a
//! `mediaEvent` push. Client events must parse into the expected typed value and serialize back to
//! the same bytes; server events must serialize from the typed value to exactly the fixture.

use std::collections::BTreeMap;

use serde_json::json;
use videoroom::rtc::media_event::*;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/test/fixtures/media_events/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_in(name: &str, expected: MediaEventIn) {
    let text = fixture(name);
    let parsed = MediaEventIn::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(parsed, expected, "{name} parses into the typed event");
    assert_eq!(
        parsed.to_json(),
        text,
        "{name} serializes back to the same bytes"
    );
}

fn assert_out(name: &str, event: MediaEventOut) {
    let text = fixture(name);
    assert_eq!(
        event.to_json(),
        text,
        "{name} serializes to the exact wire JSON"
    );
    assert_eq!(
        MediaEventOut::parse(&text).unwrap(),
        event,
        "{name} parses back"
    );
}

fn map<V: Clone>(entries: &[(&str, V)]) -> BTreeMap<String, V> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn join_carries_receive_media_and_metadata() {
    assert_in(
        "in_join",
        MediaEventIn::Join(JoinData {
            receive_media: true,
            metadata: json!({"displayName": "Alice"}),
        }),
    );
}

#[test]
fn join_without_metadata_reads_metadata_as_null() {
    let event = MediaEventIn::parse(r#"{"type":"join","data":{"receiveMedia":false}}"#).unwrap();
    assert_eq!(
        event,
        MediaEventIn::Join(JoinData {
            receive_media: false,
            metadata: serde_json::Value::Null
        })
    );
}

#[test]
fn renegotiate_tracks_has_empty_object_data() {
    assert_in(
        "in_renegotiate_tracks",
        MediaEventIn::RenegotiateTracks(Empty {}),
    );
}

#[test]
fn sdp_offer_carries_description_track_metadata_and_mids() {
    assert_in(
        "in_sdp_offer",
        MediaEventIn::SdpOffer(SdpOfferData {
            sdp_offer: SessionDescription {
                kind: "offer".into(),
                sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n".into(),
            },
            track_id_to_track_metadata: map(&[
                ("p1:a", json!({})),
                ("p1:v", json!({"kind": "camera"})),
            ]),
            mid_to_track_id: map(&[("0", "p1:a".to_owned()), ("1", "p1:v".to_owned())]),
        }),
    );
}

#[test]
fn client_candidate_has_candidate_and_m_line_index_only() {
    assert_in(
        "in_candidate",
        MediaEventIn::Candidate(ClientCandidateData {
            candidate: "candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host generation 0 ufrag dTxM network-id 1".into(),
            sdp_m_line_index: Some(0),
        }),
    );
}

#[test]
fn update_peer_metadata_carries_metadata() {
    assert_in(
        "in_update_peer_metadata",
        MediaEventIn::UpdatePeerMetadata(UpdatePeerMetadataData {
            metadata: json!({"displayName": "Bob"}),
        }),
    );
}

#[test]
fn update_track_metadata_carries_track_id_and_metadata() {
    assert_in(
        "in_update_track_metadata",
        MediaEventIn::UpdateTrackMetadata(UpdateTrackMetadataData {
            track_id: "p1:v".into(),
            track_metadata: json!({"muted": true}),
        }),
    );
}

#[test]
fn leave_has_no_data_key() {
    assert_in("in_leave", MediaEventIn::Leave);
    assert!(!MediaEventIn::Leave.to_json().contains("data"));
}

#[test]
fn peer_accepted_lists_the_other_peers_with_their_tracks_and_the_resume_token() {
    assert_out(
        "out_peer_accepted",
        MediaEventOut::PeerAccepted(PeerAcceptedData {
            id: "p2".into(),
            peers_in_room: vec![PeerInfo {
                id: "p1".into(),
                metadata: json!({"displayName": "Alice"}),
                track_id_to_metadata: map(&[("p1:a", json!({})), ("p1:v", json!({}))]),
            }],
            resume_token: Some("3q2-7wAAAAC6vLq8urq6vLq8urq8urq8".into()),
        }),
    );
}

#[test]
fn peer_accepted_without_a_resume_token_has_no_resume_token_key() {
    let event = MediaEventOut::PeerAccepted(PeerAcceptedData {
        id: "p2".into(),
        peers_in_room: vec![],
        resume_token: None,
    });
    assert_eq!(
        event.to_json(),
        r#"{"type":"peerAccepted","data":{"id":"p2","peersInRoom":[]}}"#
    );
}

#[test]
fn peer_denied_data_is_the_deny_payload_itself() {
    assert_out(
        "out_peer_denied",
        MediaEventOut::PeerDenied(json!({"reason": "room is full"})),
    );
}

#[test]
fn peer_joined_wraps_the_peer_with_an_empty_track_map() {
    assert_out(
        "out_peer_joined",
        MediaEventOut::PeerJoined(PeerJoinedData {
            peer: PeerInfo {
                id: "p2".into(),
                metadata: json!({"displayName": "Bob"}),
                track_id_to_metadata: BTreeMap::new(),
            },
        }),
    );
}

#[test]
fn peer_left_carries_the_peer_id() {
    assert_out(
        "out_peer_left",
        MediaEventOut::PeerLeft(PeerLeftData {
            peer_id: "p1".into(),
        }),
    );
}

#[test]
fn peer_updated_carries_peer_id_and_metadata() {
    assert_out(
        "out_peer_updated",
        MediaEventOut::PeerUpdated(PeerUpdatedData {
            peer_id: "p1".into(),
            metadata: json!({"displayName": "Al"}),
        }),
    );
}

#[test]
fn tracks_added_carries_the_full_track_map() {
    assert_out(
        "out_tracks_added",
        MediaEventOut::TracksAdded(TracksAddedData {
            peer_id: "p1".into(),
            track_id_to_metadata: map(&[("p1:a", json!({})), ("p1:v", json!({}))]),
        }),
    );
}

#[test]
fn tracks_removed_lists_track_ids() {
    assert_out(
        "out_tracks_removed",
        MediaEventOut::TracksRemoved(TracksRemovedData {
            peer_id: "p1".into(),
            track_ids: vec!["p1:v".into()],
        }),
    );
}

#[test]
fn track_updated_carries_peer_track_and_metadata() {
    assert_out(
        "out_track_updated",
        MediaEventOut::TrackUpdated(TrackUpdatedData {
            peer_id: "p1".into(),
            track_id: "p1:v".into(),
            metadata: json!({"muted": true}),
        }),
    );
}

#[test]
fn offer_data_is_a_plain_map_of_counts() {
    assert_out(
        "out_offer_data",
        MediaEventOut::OfferData(OfferDataData { audio: 1, video: 2 }),
    );
}

#[test]
fn sdp_answer_has_type_sdp_and_mid_map() {
    assert_out(
        "out_sdp_answer",
        MediaEventOut::SdpAnswer(SdpAnswerData {
            kind: "answer".into(),
            sdp: "v=0\r\n".into(),
            mid_to_track_id: map(&[
                ("0", "p2:a".to_owned()),
                ("1", "p2:v".to_owned()),
                ("2", "p1:a".to_owned()),
            ]),
        }),
    );
}

#[test]
fn server_candidate_has_index_zero_and_null_mid_and_ufrag() {
    assert_out(
        "out_candidate",
        MediaEventOut::Candidate(ServerCandidateData::new(
            "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
        )),
    );
}

#[test]
fn error_carries_a_message() {
    assert_out("out_error", MediaEventOut::error("invalid SDP offer"));
}

#[test]
fn invalid_json_is_classified_as_invalid_json() {
    for text in [
        "",
        "{",
        "not json",
        "[1,2]",
        "42",
        r#"{"data":{}}"#,
        r#"{"type":7}"#,
    ] {
        assert!(
            matches!(
                MediaEventIn::parse(text),
                Err(MediaEventError::InvalidJson(_))
            ),
            "{text:?}"
        );
    }
}

#[test]
fn unknown_types_are_classified_as_unknown() {
    for kind in [
        "custom",
        "selectEncoding",
        "peerAccepted",
        "Join",
        "sdpAnswer",
    ] {
        let text = format!(r#"{{"type":"{kind}","data":{{}}}}"#);
        assert_eq!(
            MediaEventIn::parse(&text),
            Err(MediaEventError::UnknownType(kind.into()))
        );
    }
}

#[test]
fn ill_shaped_data_of_known_types_is_invalid_data() {
    for text in [
        r#"{"type":"join","data":{"metadata":{}}}"#,
        r#"{"type":"join","data":{"receiveMedia":"yes","metadata":{}}}"#,
        r#"{"type":"join"}"#,
        r#"{"type":"sdpOffer","data":{"sdpOffer":"v=0"}}"#,
        r#"{"type":"sdpOffer","data":{"sdpOffer":{"type":"offer","sdp":"v=0"},"trackIdToTrackMetadata":{},"midToTrackId":{"0":1}}}"#,
        r#"{"type":"candidate","data":{"sdpMLineIndex":0}}"#,
        r#"{"type":"candidate","data":"candidate:1"}"#,
        r#"{"type":"updateTrackMetadata","data":{"trackMetadata":{}}}"#,
        r#"{"type":"updatePeerMetadata","data":{}}"#,
        r#"{"type":"renegotiateTracks","data":"now"}"#,
    ] {
        assert!(
            matches!(
                MediaEventIn::parse(text),
                Err(MediaEventError::InvalidData { .. })
            ),
            "{text} gave {:?}",
            MediaEventIn::parse(text)
        );
    }
}
