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

/** The product's name, in the page title and the header. */
export const PRODUCT_NAME = "Videoroom";

/** localStorage: the display name of the last visit (prefills the pre-join form). */
export const STORAGE_DISPLAY_NAME = "videoroom:displayName";

/** localStorage: the chosen devices, `{audioinput?, videoinput?, audiooutput?}` device ids. */
export const STORAGE_DEVICES = "videoroom:devices";

/**
 * sessionStorage prefix (+ room id): `{displayName, audio, video}` while this tab is in the call,
 * so that a reload rejoins at once; removed when the user leaves.
 */
export const STORAGE_IN_CALL = "videoroom:inCall:";

/** Longest chat message the server accepts, in characters (src/room/chat.rs). */
export const MAX_CHAT_CHARS = 2000;

/** Smallest tile width before the grid pages instead of shrinking further, in CSS pixels. */
export const MIN_TILE_WIDTH = 200;

/** How often tiles' speaking and network indicators are refreshed, in ms. */
export const PRESENCE_INTERVAL_MS = 300;

/** Audio level (0..1) above which someone counts as speaking. */
export const SPEAKING_LEVEL = 0.04;

/** How long the page tries to get back into the call after losing the server before it gives up. */
export const RECONNECT_GIVE_UP_MS = 60_000;

/**
 * phoenix.js's own reconnection delays, used until the call has joined: its LongPoll fallback
 * restarts its 2.5 s timer on every attempt, so it only fires once attempts are that far apart.
 */
export function firstConnectAfterMs(tries: number): number {
  return [10, 50, 100, 150, 200, 250, 500, 1000, 2000][tries - 1] ?? 5000;
}

/**
 * Delay before the socket's next reconnection attempt once in the call (its transport then
 * settled, see Room.keepWorkingTransport): quick at first (a blip), then every 1–1.5 s (a
 * restarting server is back within a few seconds; the jitter spreads a whole room's clients),
 * instead of phoenix's default 5 s.
 */
export function reconnectAfterMs(tries: number): number {
  const base = [10, 50, 100, 250, 500][tries - 1] ?? 1000;
  return base + Math.floor(Math.random() * (tries > 5 ? 500 : 0));
}

/**
 * Delay before the channel's next join attempt (phoenix.js `rejoinAfterMs`): the first one is
 * almost at once, so that after a refused resume token the join as a new peer follows quickly.
 */
export function rejoinAfterMs(tries: number): number {
  return [50, 1000, 2000][tries - 1] ?? 5000;
}
