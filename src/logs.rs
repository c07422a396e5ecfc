//! Log output: one `room=… peer=…` vocabulary in every line, plain text or one JSON object per
//! line (`--log-format json`), with secrets removed whatever module wrote the line.
//!
//! - Every line that concerns a room or a peer says `room=<id>` and `peer=<id>` in its message;
//!   the JSON format also lifts them into `room` and `peer` fields for log shippers.
//! - Secrets never reach the output at any level: the value after `ice-pwd:` (SDP, also in
//!   str0m's own debug lines), after `token=`, after the `base64url.bearer.phx.` WebSocket
//!   subprotocol and of a JSON `resumeToken` (join params, `peerAccepted`, also inside an
//!   escaped media event) is replaced by `<redacted>` ([`redact`]).
//! - Known noise is demoted: str0m warns "Ignore remote PT RED change" on every re-offer from
//!   Chrome, which is harmless (its payload-type module is capped at `error`); the rest is
//!   demoted where it is logged (Firefox's end-of-candidates and `.local` candidates, a
//!   refused joiner's `leave`).
//!
//! The level comes from `RUST_LOG` (default `info`), as with `env_logger`.

use std::borrow::Cow;
use std::io::Write;

use crate::config::LogFormat;

/// str0m's module whose warnings about ignored payload-type changes are noise.
const STR0M_PAYLOAD_PARAMS: &str = "str0m::format::payload_params";

/// Installs the global logger writing to stderr in `format`.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.filter_module(STR0M_PAYLOAD_PARAMS, log::LevelFilter::Error);
    match format {
        LogFormat::Text => builder.format(|buf, record| {
            let msg = record.args().to_string();
            writeln!(
                buf,
                "[{} {:<5} {}] {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                redact(&msg)
            )
        }),
        LogFormat::Json => builder.format(|buf, record| {
            let msg = record.args().to_string();
            let line = json_line(
                &buf.timestamp_millis().to_string(),
                record.level().as_str(),
                record.target(),
                &redact(&msg),
            );
            writeln!(buf, "{line}")
        }),
    };
    builder.init();
}

/// One JSON log line: `ts`, `level`, `target`, `msg`, plus `room` and `peer` when the message
/// names them (`room=<id>`, `peer=<id>`).
pub fn json_line(ts: &str, level: &str, target: &str, msg: &str) -> String {
    let mut object = serde_json::Map::new();
    object.insert("ts".into(), ts.into());
    object.insert("level".into(), level.into());
    object.insert("target".into(), target.into());
    for key in ["room", "peer"] {
        if let Some(value) = field(msg, key) {
            object.insert(key.into(), value.into());
        }
    }
    object.insert("msg".into(), msg.into());
    serde_json::Value::Object(object).to_string()
}

/// The value of the first `key=value` word of `msg`.
fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.split_whitespace().find_map(|word| {
        word.strip_prefix(key)?
            .strip_prefix('=')
            .filter(|v| !v.is_empty())
    })
}

/// `text` with the values of secret fields replaced by `<redacted>` (see the module docs).
pub fn redact(text: &str) -> Cow<'_, str> {
    const SECRETS: [&str; 6] = [
        "ice-pwd:",
        "token=",
        "bearer.phx.",
        r#"resumeToken":""#,
        r#"resumeToken\":\""#,
        "resumeToken=",
    ];
    if !SECRETS.iter().any(|s| text.contains(s)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = SECRETS
            .iter()
            .filter_map(|s| rest.find(s).map(|at| (at, s.len())))
            .min();
        let Some((at, len)) = next else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '&' | ',' | '\\'))
            .unwrap_or(rest.len());
        if end > 0 {
            out.push_str("<redacted>");
        }
        rest = &rest[end..];
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_passwords_and_tokens_are_redacted_wherever_they_appear() {
        let sdp = "a=ice-ufrag:abcd\\r\\na=ice-pwd:s3cr3tpassword0123456789\\r\\n";
        assert_eq!(
            redact(sdp),
            "a=ice-ufrag:abcd\\r\\na=ice-pwd:<redacted>\\r\\n"
        );
        assert_eq!(
            redact("GET /socket/websocket?token=abc.def&vsn=2.0.0"),
            "GET /socket/websocket?token=<redacted>&vsn=2.0.0"
        );
        assert_eq!(
            redact("protocols base64url.bearer.phx.dG9rZW4, phoenix"),
            "protocols base64url.bearer.phx.<redacted>, phoenix"
        );
        assert_eq!(redact("room=a peer=b connected"), "room=a peer=b connected");
        assert_eq!(
            redact(r#"join {"resumeToken":"q1Zx-_AB"} resumeToken=q1Zx"#),
            r#"join {"resumeToken":"<redacted>"} resumeToken=<redacted>"#
        );
        assert_eq!(
            redact(r#"{"data":"{\"id\":\"p\",\"resumeToken\":\"q1Zx-_AB\"}"}"#),
            r#"{"data":"{\"id\":\"p\",\"resumeToken\":\"<redacted>\"}"}"#
        );
    }

    #[test]
    fn a_json_line_lifts_room_and_peer_out_of_the_message() {
        let line = json_line(
            "2026-12-02T04:00:00.000Z",
            "INFO",
            "videoroom::room",
            "room=lobby peer=7f3c joined the channel from 10.0.0.1",
        );
        let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(v["room"], "lobby");
        assert_eq!(v["peer"], "7f3c");
        assert_eq!(v["level"], "INFO");
        assert_eq!(
            v["msg"],
            "room=lobby peer=7f3c joined the channel from 10.0.0.1"
        );
        let plain = json_line("t", "WARN", "x", "http: accept failed");
        let v: serde_json::Value = serde_json::from_str(&plain).expect("one JSON object");
        assert!(v.get("room").is_none() && v.get("peer").is_none());
    }
}
