// Constants of the videoroom app.

/** What we ask the camera and microphone for: 640×360 at 24 fps, plus audio. */
export const MEDIA_CONSTRAINTS: MediaStreamConstraints = {
  audio: true,
  video: { width: 640, height: 360, frameRate: 24 },
};

/** The tile id of our own video (remote tiles use the peer id the server gave). */
export const LOCAL_PEER_ID = "local-peer";

/**
 * How long the Phoenix socket tries the WebSocket before falling back to LongPoll
 * (for networks whose proxies block WebSockets).
 */
export const LONG_POLL_FALLBACK_MS = 2500;
