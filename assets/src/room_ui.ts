// DOM helpers of the room page. The DOM contract (ids, the tile template) is the one of
// membrane-protocol.md §5.1, documented in src/web/pages.rs; what this file adds to it (tile
// overlays, the stage layout, the pager) is created here, so the tutorial's DOM stays as served.

import { layoutTiles, type LayoutResult } from "./layout";

/** The room id the page was rendered for (`#room[data-room-id]`). */
export function getRoomId(): string {
  return document.getElementById("room")!.dataset.roomId!;
}

type ElementKind = "feed" | "video" | "audio";

function elementId(peerId: string, kind: ElementKind): string {
  return `${kind}-${peerId}`;
}

/** The tile element of `tileId` (a peer id, `local-peer`, or `<peer>-screen`). */
export function tileOf(tileId: string): HTMLElement | null {
  return document.getElementById(elementId(tileId, "feed"));
}

/** Up to two initials of a display name, for the camera-off placeholder. */
export function initialsOf(name: string): string {
  const words = name.replace(/\(you\)$/, "").trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
  return letters.map((w) => Array.from(w)[0] ?? "").join("").toUpperCase() || "?";
}

function button(className: string, text: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

/**
 * Adds a tile (no-op if it already exists): cloned from `#video-feed-template`, plus a
 * placeholder with initials (camera off or no video yet), "connecting…" until the first frame,
 * a network-quality badge, and Pin / Full screen buttons. `kind` "screen" marks a screen share.
 */
export function addVideoElement(
  peerId: string,
  label: string,
  isLocal: boolean,
  kind: "camera" | "screen" = "camera",
): void {
  if (tileOf(peerId)) return;
  const template = document.getElementById("video-feed-template") as HTMLTemplateElement;
  const copy = template.content.cloneNode(true) as DocumentFragment;
  const feed = copy.querySelector("div[name='video-feed']") as HTMLDivElement;
  const video = feed.querySelector("video")!;
  const audio = feed.querySelector("audio")!;

  feed.id = elementId(peerId, "feed");
  feed.dataset.peerId = peerId;
  feed.dataset.kind = kind;
  feed.dataset.local = String(isLocal);
  feed.dataset.frames = "none";
  feed.setAttribute("role", "group");
  video.id = elementId(peerId, "video");
  audio.id = elementId(peerId, "audio");
  // The video never plays sound (the audio element does); autoplay needs muted video anyway.
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  audio.autoplay = true;
  // Our own voice must not come back out of our speakers.
  audio.muted = isLocal;
  if (isLocal && kind === "camera") video.classList.add("flip-horizontally");
  const onFrame = () => {
    if (video.videoWidth > 0) feed.dataset.frames = "yes";
  };
  video.addEventListener("loadeddata", onFrame);
  video.addEventListener("resize", onFrame);
  video.addEventListener("playing", onFrame);

  const placeholder = document.createElement("div");
  placeholder.className = "tile-placeholder";
  placeholder.setAttribute("aria-hidden", "true");
  const initials = document.createElement("span");
  initials.className = "tile-initials";
  placeholder.appendChild(initials);
  feed.insertBefore(placeholder, video.nextSibling);

  const connecting = document.createElement("div");
  connecting.className = "tile-connecting";
  connecting.textContent = "connecting…";
  feed.appendChild(connecting);

  const status = document.createElement("div");
  status.setAttribute("name", "video-status");
  status.className = "video-feed-status";
  feed.appendChild(status);

  const network = document.createElement("span");
  network.className = "tile-network";
  network.setAttribute("role", "img");
  network.dataset.quality = "unknown";
  for (let i = 0; i < 3; i++) network.appendChild(document.createElement("i"));
  network.hidden = true;
  feed.appendChild(network);

  const actions = document.createElement("div");
  actions.className = "tile-actions";
  const pin = button("tile-button tile-pin", "Pin", () => togglePin(peerId));
  pin.setAttribute("aria-pressed", "false");
  const full = button("tile-button tile-fullscreen", "Full screen", () => {
    if (document.fullscreenElement === feed) void document.exitFullscreen();
    else void feed.requestFullscreen?.().catch(() => {});
  });
  actions.append(pin, full);
  feed.appendChild(actions);

  setTileLabel(peerId, label, feed);
  (document.getElementById("videos-grid") as HTMLDivElement).appendChild(feed);
  relayout();
}

/** Writes a name into a tile (label, initials, accessible names of the tile and its buttons). */
export function setTileLabel(peerId: string, label: string, feed?: HTMLElement): void {
  const tile = feed ?? tileOf(peerId);
  if (!tile) return;
  const labelEl = tile.querySelector("div[name='video-label']") as HTMLElement | null;
  if (labelEl) labelEl.innerText = label;
  const initials = tile.querySelector(".tile-initials");
  if (initials) initials.textContent = initialsOf(label);
  tile.setAttribute("aria-label", label);
  tile.querySelector(".tile-pin")?.setAttribute("aria-label", `Pin ${label}`);
  tile.querySelector(".tile-fullscreen")?.setAttribute("aria-label", `Show ${label} full screen`);
}

/** Shows a peer's stream in its tile (the tile's `<video>` and `<audio>` play it). */
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

/**
 * Puts `track` into the tile's own stream, replacing a track of the same kind. Each tile has a
 * stream of its own, so a peer's camera and screen share never end up in the same element.
 */
export function attachTrack(peerId: string, track: MediaStreamTrack): void {
  const video = document.getElementById(elementId(peerId, "video")) as HTMLVideoElement | null;
  if (!video) return;
  let stream = video.srcObject as MediaStream | null;
  if (!stream) {
    stream = new MediaStream();
    attachStream(stream, peerId);
  }
  for (const old of stream.getTracks()) {
    if (old.kind === track.kind && old !== track) stream.removeTrack(old);
  }
  if (!stream.getTracks().includes(track)) stream.addTrack(track);
  // Some browsers only pick up a track added to a playing stream after a new play().
  video.play().catch(() => {});
  const audio = document.getElementById(elementId(peerId, "audio")) as HTMLAudioElement | null;
  audio?.play().catch(() => {});
}

/** Removes a peer's tile. */
export function removeVideoElement(peerId: string): void {
  tileOf(peerId)?.remove();
  if (stage.pinned === peerId) stage.pinned = undefined;
  relayout();
}

/** Removes every tile except ours (camera and screen). */
export function removeRemoteVideoElements(localPeerId: string): void {
  document
    .querySelectorAll<HTMLElement>("#videos-grid div[name='video-feed']")
    .forEach((feed) => {
      if (feed.dataset.local !== "true" && feed.id !== elementId(localPeerId, "feed")) feed.remove();
    });
  relayout();
}

/**
 * Marks a tile's microphone/camera as on or off (`data-audio`/`data-video` on the tile, and a
 * visible note); `undefined` leaves that side unchanged.
 */
export function setTileMediaState(
  peerId: string,
  state: { audio?: boolean; video?: boolean },
): void {
  const feed = tileOf(peerId);
  if (!feed) return;
  if (state.audio !== undefined) feed.dataset.audio = state.audio ? "on" : "off";
  if (state.video !== undefined) feed.dataset.video = state.video ? "on" : "off";
  const notes: string[] = [];
  if (feed.dataset.audio === "off") notes.push("Microphone off");
  if (feed.dataset.video === "off") notes.push("Camera off");
  const status = feed.querySelector("[name='video-status']") as HTMLElement | null;
  if (status) status.textContent = notes.join(" · ");
}

/** Shows whether a tile's person is speaking (`data-speaking` drives a ring around the tile). */
export function setTileSpeaking(peerId: string, speaking: boolean): void {
  const feed = tileOf(peerId);
  if (feed && (feed.dataset.speaking === "true") !== speaking) {
    feed.dataset.speaking = String(speaking);
  }
}

/** Network quality as shown on tiles. */
export type NetworkQuality = "good" | "fair" | "poor" | "unknown";

/** Shows a tile's network quality badge (hidden while unknown). */
export function setTileNetwork(peerId: string, quality: NetworkQuality, detail: string): void {
  const badge = tileOf(peerId)?.querySelector<HTMLElement>(".tile-network");
  if (!badge) return;
  badge.hidden = quality === "unknown";
  badge.dataset.quality = quality;
  badge.setAttribute("aria-label", `Network: ${quality}`);
  badge.title = detail ? `Network: ${quality} (${detail})` : `Network: ${quality}`;
}

// ------------------------------------------------------------------------------ the stage layout

/** Layout state of the stage: the pinned tile, the automatic spotlight (a screen share), the page. */
const stage: {
  pinned?: string;
  autoSpotlight?: string;
  page: number;
  floatingSelf: boolean;
  last?: LayoutResult;
  observer?: ResizeObserver;
} = { page: 0, floatingSelf: false };

/** Pins a tile (it is shown large); pinning it again unpins it. */
export function togglePin(tileId: string): void {
  stage.pinned = stage.pinned === tileId ? undefined : tileId;
  relayout();
}

/** The tile shown large when nobody is pinned (a screen share of someone else), or none. */
export function setAutoSpotlight(tileId: string | undefined): void {
  stage.autoSpotlight = tileId;
  relayout();
}

/** Whether our own tile floats small over the stage instead of taking a place in the grid. */
export function setFloatingSelfView(floating: boolean): void {
  stage.floatingSelf = floating;
  const self = tileOf("local-peer");
  if (self) {
    self.classList.toggle("tile-floating", floating);
    if (!floating) setDragOffset(self, { x: 0, y: 0 });
  }
  relayout();
}

/** The last layout decision (for tests and the pager). */
export function lastLayout(): LayoutResult | undefined {
  return stage.last;
}

function pager(): HTMLElement {
  let el = document.getElementById("grid-pager");
  if (el) return el;
  el = document.createElement("nav");
  el.id = "grid-pager";
  el.className = "grid-pager";
  el.setAttribute("aria-label", "Pages of participants");
  const prev = button("pager-button", "Previous page", () => {
    stage.page--;
    relayout();
  });
  prev.dataset.dir = "prev";
  const text = document.createElement("span");
  text.className = "pager-text";
  const next = button("pager-button", "Next page", () => {
    stage.page++;
    relayout();
  });
  next.dataset.dir = "next";
  el.append(prev, text, next);
  document.getElementById("videochat")?.appendChild(el);
  return el;
}

/** Recomputes every tile's box: call after tiles change; resizes are followed automatically. */
export function relayout(): void {
  const grid = document.getElementById("videos-grid");
  if (!grid) return;
  grid.dataset.layout = "stage";
  if (!stage.observer && typeof ResizeObserver !== "undefined") {
    stage.observer = new ResizeObserver(() => relayout());
    stage.observer.observe(grid);
  }
  const all = Array.from(grid.querySelectorAll<HTMLElement>("div[name='video-feed']"));
  grid.dataset.tiles = String(all.length);
  const self = tileOf("local-peer");
  const floatSelf = stage.floatingSelf && all.length > 1 && self !== null;
  self?.classList.toggle("tile-floating", floatSelf);
  const tiles = floatSelf ? all.filter((t) => t !== self) : all;
  const spotId = stage.pinned ?? stage.autoSpotlight;
  const spotlight = spotId ? tileOf(spotId) ?? undefined : undefined;
  for (const t of all) {
    t.querySelector(".tile-pin")?.setAttribute("aria-pressed", String(t.id === `feed-${stage.pinned}`));
    t.dataset.spotlight = String(t === spotlight && tiles.length > 1);
  }
  let result = layoutTiles(grid, tiles, { spotlight, page: stage.page, reserveBottom: 0 });
  const pagerEl = pager();
  if (result.pages > 1) {
    result = layoutTiles(grid, tiles, { spotlight, page: stage.page, reserveBottom: 44 });
  }
  stage.page = result.page;
  pagerEl.hidden = result.pages <= 1;
  pagerEl.querySelector(".pager-text")!.textContent = `Page ${result.page + 1} of ${result.pages}`;
  (pagerEl.querySelector("[data-dir=prev]") as HTMLButtonElement).disabled = result.page === 0;
  (pagerEl.querySelector("[data-dir=next]") as HTMLButtonElement).disabled =
    result.page >= result.pages - 1;
  if (floatSelf && self) {
    const w = Math.max(120, Math.min(240, Math.round(grid.clientWidth * 0.22)));
    self.hidden = false;
    self.dataset.visible = "true";
    self.style.width = `${w}px`;
    self.style.height = `${Math.round((w * 9) / 16)}px`;
    self.style.left = "";
    self.style.top = "";
  }
  grid.dataset.mode = result.mode;
  grid.dataset.pages = String(result.pages);
  stage.last = result;
}

/** The floating self-view's drag offset from its corner, in CSS pixels (kept on the tile). */
function dragOffset(self: HTMLElement): { x: number; y: number } {
  return { x: Number(self.dataset.dragX ?? 0), y: Number(self.dataset.dragY ?? 0) };
}

function setDragOffset(self: HTMLElement, offset: { x: number; y: number }): void {
  self.dataset.dragX = String(offset.x);
  self.dataset.dragY = String(offset.y);
  self.style.transform = offset.x || offset.y ? `translate(${offset.x}px, ${offset.y}px)` : "";
}

/** Lets the floating self-view be dragged (pointer) within the stage; it never leaves it. */
export function makeSelfViewMovable(): void {
  const self = tileOf("local-peer");
  if (!self || self.dataset.movable) return;
  self.dataset.movable = "true";
  let start: { x: number; y: number; dx: number; dy: number } | undefined;
  self.addEventListener("pointerdown", (e) => {
    if (!self.classList.contains("tile-floating") || (e.target as HTMLElement).closest("button")) return;
    const offset = dragOffset(self);
    start = { x: e.clientX, y: e.clientY, dx: offset.x, dy: offset.y };
    self.setPointerCapture(e.pointerId);
  });
  self.addEventListener("pointermove", (e) => {
    if (!start || !self.parentElement) return;
    const stageBox = self.parentElement.getBoundingClientRect();
    const box = self.getBoundingClientRect();
    const current = dragOffset(self);
    // Where the tile sits without any offset (its corner of the stage).
    const homeLeft = box.left - current.x;
    const homeTop = box.top - current.y;
    const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), Math.max(lo, hi));
    setDragOffset(self, {
      x: clamp(start.dx + e.clientX - start.x, stageBox.left - homeLeft, stageBox.right - box.width - homeLeft),
      y: clamp(start.dy + e.clientY - start.y, stageBox.top - homeTop, stageBox.bottom - box.height - homeTop),
    });
  });
  const end = () => (start = undefined);
  self.addEventListener("pointerup", end);
  self.addEventListener("pointercancel", end);
}

// ------------------------------------------------------------------------------ the rest

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

/** Hides the error banner. */
export function clearErrorMessage(): void {
  const banner = document.getElementById("videochat-error");
  if (!banner) return;
  banner.textContent = "";
  banner.style.display = "none";
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
