//! A raw WebSocket client for the signalling benchmarks: plain TCP and hand-written frames
//! (RFC 6455, masked with a zero key), so that the client's own memory and CPU stay small next
//! to the server's. Shared by `socket_memory` and `signalling_bench` (included by `#[path]`).

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client text frame (masked with a zero key, which RFC 6455 allows).
pub fn text_frame(payload: &str) -> Vec<u8> {
    let bytes = payload.as_bytes();
    let mut frame = vec![0x81];
    match bytes.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(bytes);
    frame
}

/// Reads one unmasked server frame; returns its payload.
pub async fn read_frame(tcp: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            tcp.read_exact(&mut l).await?;
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            tcp.read_exact(&mut l).await?;
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    tcp.read_exact(&mut payload).await?;
    Ok(payload)
}

pub async fn open(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    let request = format!(
        "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await?;
        answer.push(byte[0]);
    }
    if !answer.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&answer).into_owned(),
        ));
    }
    Ok(tcp)
}

/// Joins `room:mem-<room>` (the memory benchmark's rooms).
pub async fn join(tcp: &mut TcpStream, room: usize) -> std::io::Result<()> {
    join_topic(tcp, &format!("room:mem-{room}")).await
}

/// Joins `topic` (join_ref and ref `"1"`); fails unless the reply is ok.
pub async fn join_topic(tcp: &mut TcpStream, topic: &str) -> std::io::Result<()> {
    let frame = text_frame(&format!(r#"["1","1","{topic}","phx_join",{{}}]"#));
    tcp.write_all(&frame).await?;
    let reply = read_frame(tcp).await?;
    if !String::from_utf8_lossy(&reply).contains(r#""status":"ok""#) {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&reply).into_owned(),
        ));
    }
    Ok(())
}

/// Pushes the media event `event` (its JSON text as `data`, as the tutorial client does) on
/// `topic`, joined with join_ref `"1"`.
pub async fn push_media_event(
    tcp: &mut TcpStream,
    topic: &str,
    event: &str,
) -> std::io::Result<()> {
    let payload = serde_json::json!({ "data": event });
    let frame = text_frame(&format!(r#"["1",null,"{topic}","mediaEvent",{payload}]"#));
    tcp.write_all(&frame).await
}

/// Reads frames until one contains `needle` (other frames are skipped).
pub async fn read_until(tcp: &mut TcpStream, needle: &str) -> std::io::Result<()> {
    loop {
        let frame = read_frame(tcp).await?;
        if String::from_utf8_lossy(&frame).contains(needle) {
            return Ok(());
        }
    }
}
