// DOM helpers of the room page. The DOM contract (ids, the tile template) is the one of
// membrane-protocol.md §5.1, documented in src/web/pages.rs; nothing else on the page is assumed.

/** The room id the page was rendered for (`#room[data-room-id]`). */
export function getRoomId(): string {
  return document.getElementById("room")!.dataset.roomId!;
}

type ElementKind = "feed" | "video" | "audio";

function elementId(peerId: string, kind: ElementKind): string {
  return `${kind}-${peerId}`;
}

/** Adds a tile for a peer (no-op if it already has one): cloned from `#video-feed-template`. */
export function addVideoElement(peerId: string, label: string, isLocal: boolean): void {
  if (document.getElementById(elementId(peerId, "feed"))) return;
  const template = document.getElementById("video-feed-template") as HTMLTemplateElement;
  const copy = template.content.cloneNode(true) as DocumentFragment;
  const feed = copy.querySelector("div[name='video-feed']") as HTMLDivElement;
  const video = feed.querySelector("video")!;
  const audio = feed.querySelector("audio")!;

  feed.id = elementId(peerId, "feed");
  feed.dataset.peerId = peerId;
  video.id = elementId(peerId, "video");
  audio.id = elementId(peerId, "audio");
  // The video never plays sound (the audio element does); autoplay needs muted video anyway.
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  audio.autoplay = true;
  // Our own voice must not come back out of our speakers.
  audio.muted = isLocal;
  if (isLocal) video.classList.add("flip-horizontally");

  const status = document.createElement("div");
  status.setAttribute("name", "video-status");
  status.className = "video-feed-status";
  feed.appendChild(status);

  setTileLabel(peerId, label, feed);
  (document.getElementById("videos-grid") as HTMLDivElement).appendChild(feed);
  resizeVideosGrid();
}

/** Writes a peer's display name into its tile. */
export function setTileLabel(peerId: string, label: string, feed?: HTMLElement): void {
  const tile = feed ?? document.getElementById(elementId(peerId, "feed"));
  const labelEl = tile?.querySelector("div[name='video-label']") as HTMLElement | null;
  if (labelEl) labelEl.innerText = label;
}

/** Shows a peer's stream in its tile (video and audio share one stream: the publisher's msid). */
export function attachStream(stream: MediaStream, peerId: string): void {
  const video = document.getElementById(elementId(peerId, "video")) as HTMLVideoElement | null;
  const audio = document.getElementById(elementId(peerId, "audio")) as HTMLAudioElement | null;
  if (video && video.srcObject !== stream) {
    video.srcObject = stream;
    video.play().catch(() => {});
  }
  if (audio && audio.srcObject !== stream) {
    audio.srcObject = stream;
    audio.play().catch(() => {});
  }
}

/** Removes a peer's tile. */
export function removeVideoElement(peerId: string): void {
  document.getElementById(elementId(peerId, "feed"))?.remove();
  resizeVideosGrid();
}

/** Removes every tile except ours. */
export function removeRemoteVideoElements(localPeerId: string): void {
  document
    .querySelectorAll<HTMLElement>("#videos-grid div[name='video-feed']")
    .forEach((feed) => {
      if (feed.id !== elementId(localPeerId, "feed")) feed.remove();
    });
  resizeVideosGrid();
}

/**
 * Marks a tile's microphone/camera as on or off (`data-audio`/`data-video` on the tile, and a
 * visible note); `undefined` leaves that side unchanged.
 */
export function setTileMediaState(
  peerId: string,
  state: { audio?: boolean; video?: boolean },
): void {
  const feed = document.getElementById(elementId(peerId, "feed"));
  if (!feed) return;
  if (state.audio !== undefined) feed.dataset.audio = state.audio ? "on" : "off";
  if (state.video !== undefined) feed.dataset.video = state.video ? "on" : "off";
  const notes: string[] = [];
  if (feed.dataset.audio === "off") notes.push("Microphone off");
  if (feed.dataset.video === "off") notes.push("Camera off");
  const status = feed.querySelector("[name='video-status']") as HTMLElement | null;
  if (status) status.textContent = notes.join(" · ");
}

// Tiles per row on wide screens: 1, 2, 3, then 2 for four (a square), 3 up to six, 4 beyond;
// narrow screens always get one column.
function resizeVideosGrid(): void {
  const grid = document.getElementById("videos-grid");
  if (!grid) return;
  const tiles = grid.children.length;
  const perRow = tiles <= 3 ? Math.max(tiles, 1) : tiles === 4 ? 2 : tiles <= 6 ? 3 : 4;
  const stale = Array.from(grid.classList).filter((c) => c.includes("grid-cols"));
  grid.classList.remove(...stale);
  grid.classList.add("grid-cols-1", `md:grid-cols-${perRow}`);
  grid.dataset.tiles = String(tiles);
}

/** "Participants: a, b" (names are user input: written as text, never as HTML). */
export function setParticipantsList(names: string[]): void {
  const list = document.getElementById("participants-list");
  if (!list) return;
  const heading = document.createElement("b");
  heading.textContent = "Participants";
  list.replaceChildren(heading, document.createTextNode(`: ${names.join(", ")}`));
}

/** Shows the error banner. */
export function setErrorMessage(message: string): void {
  const banner = document.getElementById("videochat-error");
  if (!banner) return;
  banner.textContent = message;
  banner.style.display = "block";
}

/** The connection states shown in `#connection-state`. */
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "disconnected" | "failed";

/** Shows the connection state: `data-state` for styling and tests, plus readable text. */
export function setConnectionState(state: ConnectionState, text: string): void {
  const el = document.getElementById("connection-state");
  if (!el) return;
  el.dataset.state = state;
  el.textContent = text;
}

/** Wires the Disconnect button. */
export function setupDisconnectButton(onClick: () => void): void {
  document.getElementById("disconnect")?.addEventListener("click", onClick);
}

/** Wires a toggle button (`#toggle-mic`, `#toggle-camera`). */
export function setupToggleButton(id: string, onClick: () => void): void {
  document.getElementById(id)?.addEventListener("click", onClick);
}

/**
 * Shows a toggle's state: `aria-pressed="true"` means muted/off, and the text says what a click does.
 * `available` false disables it (no such device).
 */
export function setToggleButton(
  id: string,
  state: { off: boolean; available: boolean; text: string },
): void {
  const button = document.getElementById(id) as HTMLButtonElement | null;
  if (!button) return;
  button.setAttribute("aria-pressed", String(state.off));
  button.disabled = !state.available;
  button.textContent = state.text;
}
