// The videoroom app: one Phoenix channel `room:<id>` carrying media events and chat, one
// MembraneWebRTC client, and the page (room_ui.ts, shell.ts). Flow as in the tutorial
// (membrane-protocol.md §5.1), plus what a meeting needs: toggles that carry over from the
// pre-join screen, presence on tiles, screen sharing, chat, shortcuts and a "You left" screen.

import { LongPoll, Socket, type Channel } from "phoenix";
import queryString from "query-string";
import {
  LOCAL_PEER_ID,
  LONG_POLL_FALLBACK_MS,
  RECONNECT_GIVE_UP_MS,
  STORAGE_IN_CALL,
  firstConnectAfterMs,
  reconnectAfterMs,
  rejoinAfterMs,
} from "./consts";
import { MembraneWebRTC, type Peer, type TrackContext } from "./membrane";
import { describeMediaError, openMedia, savedDevices, type JoinChoice } from "./prejoin";
import { LevelMeter, PresenceMonitor } from "./presence";
import {
  addVideoElement,
  attachStream,
  attachTrack,
  clearErrorMessage,
  getRoomId,
  makeSelfViewMovable,
  relayout,
  removeRemoteVideoElements,
  removeVideoElement,
  setAutoSpotlight,
  setConnectionState,
  setErrorMessage,
  setFloatingSelfView,
  setParticipantsList,
  setTileFrozen,
  setTileLabel,
  setTileMediaState,
  setToggleButton,
  setupDisconnectButton,
  setupToggleButton,
  tileOf,
} from "./room_ui";
import type { ChatMessage, Shell } from "./shell";

type MediaKind = "audio" | "video";

/** The tile id of our own screen share. */
const LOCAL_SCREEN_ID = "local-screen";

/**
 * Metadata we give our tracks, so the others can show "microphone off"/"camera off":
 * `{kind, active}`, plus `source: "screen"` on a screen share (the tutorial client ignores it
 * and shows one more tile). A track without `active` (e.g. from the original client, `{}`)
 * counts as on.
 */
interface TrackMetadata {
  kind: MediaKind;
  active: boolean;
  source?: "camera" | "screen";
}

/**
 * Reads `?display_name=` and removes it from the address bar (as the tutorial does);
 * `undefined` when the address has none or an empty one (an invite link: the pre-join
 * screen asks).
 */
export function takeDisplayName(): string | undefined {
  const { display_name: name, ...rest } = queryString.parse(window.location.search);
  if (name === undefined) return undefined;
  const search = queryString.stringify(rest);
  window.history.replaceState(
    window.history.state,
    "",
    window.location.pathname + (search ? `?${search}` : "") + window.location.hash,
  );
  const value = Array.isArray(name) ? name[0] : name;
  return value && value.trim() ? value.trim() : undefined;
}

/** What this tab remembers while it is in the call, so that a reload rejoins at once. */
export function inCallState(roomId: string): JoinChoice | undefined {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORAGE_IN_CALL + roomId) ?? "null");
    if (saved && typeof saved.displayName === "string") {
      return { displayName: saved.displayName, audio: saved.audio !== false, video: saved.video !== false };
    }
  } catch {
    // nothing usable saved
  }
  return undefined;
}

function rememberInCall(roomId: string, choice: { displayName: string; audio: boolean; video: boolean } | undefined): void {
  try {
    if (choice) sessionStorage.setItem(STORAGE_IN_CALL + roomId, JSON.stringify(choice));
    else sessionStorage.removeItem(STORAGE_IN_CALL + roomId);
  } catch {
    // private mode: a reload shows the pre-join screen
  }
}

/** Which relay `?relay=` asks for: `udp`, `tcp` or `tls` (that TURN transport only) or `all`. */
export type RelayChoice = "udp" | "tcp" | "tls" | "all";

/** `?relay=udp|tcp|tls|all`: media through our TURN server only (`iceTransportPolicy: "relay"`),
 * to try the path a locked-down network would take; `undefined` without the flag. */
export function relayChoice(search: string): RelayChoice | undefined {
  const value = new URLSearchParams(search).get("relay");
  return value === "udp" || value === "tcp" || value === "tls" || value === "all" ? value : undefined;
}

/** The ICE servers of a channel join reply (`{"iceServers": [...]}`), only the URLs of `relay`'s
 * transport when one is chosen. */
export function iceServersOf(reply: unknown, relay: RelayChoice | undefined): RTCIceServer[] {
  const servers = (reply as { iceServers?: unknown } | null)?.iceServers;
  if (!Array.isArray(servers)) return [];
  const keep = (url: string): boolean => {
    if (!relay || relay === "all") return true;
    if (relay === "tls") return url.startsWith("turns:");
    return url.startsWith("turn:") && url.endsWith(`transport=${relay}`);
  };
  return servers
    .filter((s): s is RTCIceServer => typeof s === "object" && s !== null && "urls" in s)
    .map((s) => ({ ...s, urls: ([] as string[]).concat(s.urls).filter(keep) }))
    .filter((s) => s.urls.length > 0);
}

/** One recovery of the signalling after a lost socket (for the test hook and the console). */
export interface Reconnection {
  /** When the socket or channel was lost (ms since the epoch). */
  lostAt: number;
  /** When the server had us back (the resumed or the new `peerAccepted`). */
  backAt?: number;
  /** Resumed as the same peer (else joined again as a new one, e.g. after a server restart). */
  resumed?: boolean;
  /** The join refusals met on the way (e.g. `invalid resume token`). */
  refusals: string[];
}

/** A video element, with requestVideoFrameCallback where the browser has it. */
type FrameVideo = HTMLVideoElement & { requestVideoFrameCallback?: (cb: () => void) => number };

function displayNameOf(peer: Peer): string {
  const name = peer.metadata?.displayName;
  return typeof name === "string" && name ? name : "Unknown";
}

/** Microphone or camera, from a track's metadata or, failing that, from its media. */
function kindOf(ctx: TrackContext): MediaKind | undefined {
  const kind = ctx.metadata?.kind ?? ctx.track?.kind;
  return kind === "audio" || kind === "video" ? kind : undefined;
}

function isScreen(ctx: TrackContext): boolean {
  return ctx.metadata?.source === "screen";
}

export class Room {
  /** The media client (exposed read-only for the test hook, see index.ts). */
  public readonly webrtc: MembraneWebRTC;
  private readonly socket: Socket;
  private readonly channel: Channel;
  private readonly roomId: string;
  private readonly displayName: string;
  private localStream?: MediaStream;
  /** Microphone/camera wanted on (from the pre-join screen, then the toggles). */
  private readonly want: Record<MediaKind, boolean>;
  /** Camera and microphone are still to be opened (after the server accepted us). */
  private mediaPending: boolean;
  /** Our track ids per kind, once published. */
  private readonly localTrackIds = new Map<MediaKind, string>();
  private screen?: { stream: MediaStream; track: MediaStreamTrack; trackId: string };
  /** A screen share is being started (the browser's picker is open, or it waits for the camera). */
  private screenStarting = false;
  /** Resolves once the server accepted us and our camera/microphone tracks are added (or none could be opened). */
  private readonly cameraPublished: Promise<void>;
  private markCameraPublished: () => void = () => {};
  /** The other participants, in joining order. */
  private peers: Peer[] = [];
  private peerId?: string;
  private socketRefs: string[] = [];
  /** The channel join succeeded once; from then on a lost socket is reconnected. */
  private channelJoined = false;
  /** The resume token the latest channel join presented (see channelParams). */
  private presentedToken?: string;
  /** Signalling is lost and being recovered (phoenix.js reconnects the socket and rejoins). */
  private reconnecting?: Reconnection;
  private giveUpTimer = 0;
  private frozenTimer = 0;
  /** When each remote tile's video last showed a new frame. */
  private readonly lastFrameAt = new WeakMap<HTMLVideoElement, number>();
  /** Every recovery so far, for tests and the console. */
  public readonly reconnections: Reconnection[] = [];
  /** How long to try to get back before showing "Connection lost" with Rejoin (tests shorten it). */
  public reconnectGiveUpMs = RECONNECT_GIVE_UP_MS;
  /** The server accepted us into the room. */
  private accepted = false;
  private left = false;
  private mediaState: RTCPeerConnectionState | undefined;
  /** The server's diagnosis on show while the media does not connect. */
  private mediaDiagnosis: string | undefined;
  private readonly level = new LevelMeter();
  private readonly presence: PresenceMonitor;
  /** `?relay=`, read before anything rewrites the address. */
  private readonly relay = relayChoice(window.location.search);

  constructor(
    private readonly shell: Shell,
    choice: JoinChoice,
  ) {
    this.roomId = getRoomId();
    this.displayName = choice.displayName;
    this.localStream = choice.stream;
    this.mediaPending = !choice.stream;
    this.want = { audio: choice.audio, video: choice.video };
    this.cameraPublished = new Promise((resolve) => (this.markCameraPublished = resolve));

    this.socket = new Socket("/socket", {
      longPollFallbackMs: LONG_POLL_FALLBACK_MS,
      reconnectAfterMs: (tries: number) => (this.channelJoined ? reconnectAfterMs(tries) : firstConnectAfterMs(tries)),
      rejoinAfterMs,
    });
    this.socket.connect();
    this.socketRefs.push(
      this.socket.onOpen(() => this.showConnectionState()),
      // Before the join this is Phoenix retrying or falling back to LongPoll; after it, the
      // channel's own error says whether the call's signalling is lost (a LongPoll hiccup can
      // error the socket while the channel stays joined).
      this.socket.onError(() => this.showConnectionState()),
      this.socket.onClose(() => this.showConnectionState()),
    );

    // Params as a function: every automatic rejoin presents the latest resume token.
    this.channel = this.socket.channel(`room:${this.roomId}`, () => this.channelParams());
    this.channel.on("mediaEvent", (event: { data: string }) =>
      this.webrtc.receiveMediaEvent(event.data),
    );
    // The server's diagnosis when this browser's media does not connect (a channel event of
    // its own: the Membrane protocol has none).
    this.channel.on("mediaDiagnosis", (notice: { cause?: unknown; message?: unknown }) =>
      this.onMediaDiagnosis(notice),
    );
    this.channel.on("chat", (message: ChatMessage) => this.shell.addChatMessage(message, message.peerId === this.peerId));
    // A channel error after joining (socket lost, or the server's side of the channel ended):
    // phoenix.js rejoins it (with the token, see channelParams).
    this.channel.onError(() => this.onSignallingLost());

    this.webrtc = new MembraneWebRTC({
      restartIceOnDisconnect: true,
      callbacks: {
        onSendMediaEvent: (data) => {
          this.channel.push("mediaEvent", { data });
        },
        onJoinSuccess: (peerId, peersInRoom) => void this.onJoinSuccess(peerId, peersInRoom),
        onJoinError: (metadata) => {
          const reason = metadata && typeof metadata.reason === "string" ? `: ${metadata.reason}` : "";
          this.fail(`The server did not let you into the room${reason}.`, "You could not join");
        },
        onTrackReady: (ctx) => this.onTrackReady(ctx),
        onTrackAdded: (ctx) => this.showTrackState(ctx),
        onTrackUpdated: (ctx) => this.showTrackState(ctx),
        onTrackRemoved: (ctx) => {
          if (isScreen(ctx)) {
            removeVideoElement(`${ctx.peer.id}-screen`);
            this.updateSpotlight();
            return;
          }
          const kind = kindOf(ctx);
          if (kind && this.peers.some((p) => p.id === ctx.peer.id)) {
            setTileMediaState(ctx.peer.id, { [kind]: false });
          }
        },
        onPeerJoined: (peer) => {
          this.peers.push(peer);
          addVideoElement(peer.id, displayNameOf(peer), false);
          this.updateParticipantsList();
          this.shell.announce(`${displayNameOf(peer)} joined`);
        },
        onPeerLeft: (peer) => {
          this.peers = this.peers.filter((p) => p.id !== peer.id);
          removeVideoElement(peer.id);
          removeVideoElement(`${peer.id}-screen`);
          this.updateSpotlight();
          this.updateParticipantsList();
          this.shell.announce(`${displayNameOf(peer)} left`);
        },
        onPeerUpdated: (peer) => {
          setTileLabel(peer.id, displayNameOf(peer));
          this.updateParticipantsList();
        },
        // A call that ends because its media never connected says why, when the server knew.
        onConnectionError: (message) => this.fail(this.mediaDiagnosis ?? message, "The call ended"),
        onConnectionStateChange: (state) => {
          this.mediaState = state;
          this.showConnectionState();
          if (state === "connected" && this.mediaDiagnosis !== undefined) {
            // It connected after all (e.g. over ICE-TCP): the diagnosis no longer holds.
            this.mediaDiagnosis = undefined;
            clearErrorMessage();
          }
        },
        onJoinResumed: () => this.onBack(true),
      },
    });
    this.presence = new PresenceMonitor(
      () => (this.webrtc as unknown as { connection?: RTCPeerConnection }).connection,
      this.level,
    );
  }

  /** Joins the channel, then the room; camera and microphone are published once accepted. */
  public join = async (): Promise<void> => {
    this.showConnectionState();
    rememberInCall(this.roomId, { displayName: this.displayName, ...this.want });
    addVideoElement(LOCAL_PEER_ID, `${this.displayName} (you)`, true);
    makeSelfViewMovable();
    if (this.localStream) this.useLocalStream(this.localStream);
    this.setupControls();
    this.updateParticipantsList();
    this.presence.start();

    try {
      await this.joinChannel();
    } catch (reason) {
      this.fail(`Could not join the room: ${JSON.stringify(reason)}`, "You could not join");
      return;
    }
    this.channelJoined = true;
    this.keepWorkingTransport();
    // Closing the tab: say goodbye so the others drop our tile at once (a LongPoll session
    // would otherwise linger until the server's poll window expires).
    window.addEventListener("pagehide", () => void this.leave());
    this.frozenTimer = window.setInterval(() => this.markFrozenTiles(), 500);
    this.showConnectionState();
    this.webrtc.join({ displayName: this.displayName });
  };

  /** The channel's join params: the resume token of our peer while we have one. */
  private channelParams(): Record<string, string> {
    this.presentedToken = this.webrtc?.resumeToken;
    return this.presentedToken ? { resumeToken: this.presentedToken } : {};
  }

  /**
   * phoenix.js rejoined the channel after a lost socket or channel error. With a token the
   * server took our peer back and replays `peerAccepted` (MembraneWebRTC reconciles the room,
   * then onJoinResumed). Without one (refused, or never accepted) we join as a new peer.
   */
  private onRejoined(): void {
    if (this.left || !this.channelJoined) return;
    this.keepWorkingTransport();
    if (this.presentedToken) return;
    console.info(`videoroom: rejoining room ${this.roomId} as a new peer`);
    this.webrtc.startOver();
    this.accepted = false;
    this.webrtc.join({ displayName: this.displayName });
  }

  /** A (re)join was refused: a resume refusal drops the token, so phoenix's next try joins afresh. */
  private onRejoinRefused(reply: unknown): void {
    if (this.left || !this.channelJoined) return;
    const reason = (reply as { reason?: unknown })?.reason;
    this.reconnecting?.refusals.push(String(reason ?? JSON.stringify(reply)));
    if (this.presentedToken) {
      console.info(`videoroom: resume refused (${String(reason)}), joining as a new peer`);
      this.webrtc.startOver();
    }
  }

  /** The server has us back: resumed as the same peer, or accepted as a new one. */
  private onBack(resumed: boolean): void {
    const r = this.reconnecting;
    if (!r) return;
    r.backAt = Date.now();
    r.resumed = resumed;
    this.reconnecting = undefined;
    window.clearTimeout(this.giveUpTimer);
    console.info(`videoroom: back in room ${this.roomId} after ${r.backAt - r.lostAt} ms (${resumed ? "resumed" : "as a new peer"})`);
    this.shell.announce("Reconnected");
    this.showConnectionState();
  }

  /**
   * Marks remote tiles whose video stopped (no new frame for 1.5 s while the camera is on):
   * during a reconnection the user sees which pictures are frozen. Frames are counted with
   * requestVideoFrameCallback (Firefox reports no decoded-frame count for a MediaStream).
   */
  private markFrozenTiles(): void {
    const now = Date.now();
    for (const feed of document.querySelectorAll<HTMLElement>("#videos-grid div[name='video-feed'][data-local='false']")) {
      const video = feed.querySelector("video") as FrameVideo | null;
      // Without a frame callback there is no telling: such a browser marks nothing.
      if (!video?.requestVideoFrameCallback) continue;
      if (!this.lastFrameAt.has(video)) {
        this.lastFrameAt.set(video, now);
        const onFrame = () => {
          this.lastFrameAt.set(video, Date.now());
          if (video.isConnected) video.requestVideoFrameCallback?.(onFrame);
        };
        video.requestVideoFrameCallback(onFrame);
      }
      const still = now - (this.lastFrameAt.get(video) ?? now);
      setTileFrozen(feed.dataset.peerId ?? "", feed.dataset.frames === "yes" && feed.dataset.video !== "off" && still > 1500);
    }
  }

  /** Leaves the room: tells the server, stops our media, leaves the channel. */
  public leave = (): Promise<void> => {
    if (this.left) return Promise.resolve();
    this.left = true;
    // A screen share waiting for the camera gives up (it sees `left`).
    this.markCameraPublished();
    this.webrtc.leave();
    this.socket.off(this.socketRefs);
    this.socketRefs = [];
    this.localStream?.getTracks().forEach((t) => t.stop());
    this.screen?.track.stop();
    this.presence.stop();
    window.clearTimeout(this.giveUpTimer);
    window.clearInterval(this.frozenTimer);
    this.level.detach();
    this.shell.disableCallControls();
    this.showToggles();
    // Resolves once the server acknowledged the channel leave (or gave up after 1 s).
    return new Promise((resolve) => {
      this.channel
        .leave(1000)
        .receive("ok", () => resolve())
        .receive("timeout", () => resolve());
    });
  };

  /** Which transport the Phoenix socket ended up on: "websocket" or "longpoll". */
  public get transport(): "websocket" | "longpoll" {
    return (this.socket as unknown as { transport: unknown }).transport === LongPoll
      ? "longpoll"
      : "websocket";
  }

  // ---------------------------------------------------------------------------------------------

  private useLocalStream(stream: MediaStream): void {
    this.localStream = stream;
    stream.getAudioTracks().forEach((t) => (t.enabled = this.want.audio));
    stream.getVideoTracks().forEach((t) => (t.enabled = this.want.video));
    attachStream(stream, LOCAL_PEER_ID);
    this.level.attach(stream);
    this.showToggles();
  }

  private async onJoinSuccess(peerId: string, peersInRoom: Peer[]): Promise<void> {
    const again = this.peerId !== undefined;
    this.accepted = true;
    this.peerId = peerId;
    if (again) {
      // Accepted as a new peer after losing the old one (server restart, resume refused): the
      // others have new ids too; their old tiles stayed (frozen) until now.
      removeRemoteVideoElements(LOCAL_PEER_ID);
      this.localTrackIds.clear();
    }
    // Accepted after losing the socket (as a new peer: a resume goes through onJoinResumed).
    this.onBack(false);
    this.peers = [...peersInRoom];
    for (const peer of peersInRoom) addVideoElement(peer.id, displayNameOf(peer), false);
    this.updateParticipantsList();
    this.showConnectionState();
    console.info(`videoroom: joined room ${this.roomId} as ${peerId}`);
    // Camera and microphone only now: a refused join never turned them on.
    if (this.mediaPending) {
      const opened = await openMedia(savedDevices());
      this.mediaPending = false;
      if (this.left) {
        opened.stream?.getTracks().forEach((t) => t.stop());
        return;
      }
      if (opened.stream) this.useLocalStream(opened.stream);
      else {
        setErrorMessage(`${describeMediaError(opened.error)} You can still watch and listen.`);
        this.showToggles();
      }
    }
    const stream = this.localStream;
    stream?.getTracks().forEach((track) => {
      const kind = track.kind as MediaKind;
      const metadata: TrackMetadata = { kind, active: track.enabled };
      this.localTrackIds.set(kind, this.webrtc.addTrack(track, stream, metadata));
    });
    if (again && this.screen) {
      // Our screen share goes on in the new session.
      const screen = this.screen;
      const metadata: TrackMetadata = { kind: "video", active: true, source: "screen" };
      screen.trackId = this.webrtc.addTrack(screen.track, screen.stream, metadata);
      addVideoElement(LOCAL_SCREEN_ID, "Your screen", true, "screen");
      attachStream(screen.stream, LOCAL_SCREEN_ID);
    }
    this.markCameraPublished();
    this.showConnectionState();
    this.showScreenButton();
  }

  private onTrackReady(ctx: TrackContext): void {
    if (!ctx.track) return;
    if (isScreen(ctx)) {
      const id = `${ctx.peer.id}-screen`;
      addVideoElement(id, `${displayNameOf(ctx.peer)} (screen)`, false, "screen");
      attachTrack(id, ctx.track);
      setTileMediaState(id, { video: true });
      this.updateSpotlight();
      return;
    }
    attachTrack(ctx.peer.id, ctx.track);
    this.applySpeaker(ctx.peer.id);
    this.showTrackState(ctx);
  }

  /** Plays remote audio on the chosen speaker (where the browser supports `setSinkId`). */
  private applySpeaker(tileId: string): void {
    const sink = savedDevices().audiooutput;
    const audio = document.getElementById(`audio-${tileId}`) as (HTMLAudioElement & { setSinkId?: (id: string) => Promise<void> }) | null;
    if (sink && audio?.setSinkId) void audio.setSinkId(sink).catch(() => {});
  }

  /** The newest remote screen share is shown large (unless the user pinned something). */
  private updateSpotlight(): void {
    const screens = Array.from(document.querySelectorAll<HTMLElement>("#videos-grid div[data-kind='screen'][data-local='false']"));
    setAutoSpotlight(screens.length ? screens[screens.length - 1].dataset.peerId : undefined);
  }

  /**
   * The channel's join reply came back over the WebSocket, so it works: Phoenix must no longer
   * swap it for LongPoll. Its fallback also fires when the first heartbeat after connecting is
   * not answered within LONG_POLL_FALLBACK_MS, which a busy tab (or machine) can miss even on a
   * working socket; the swap closes the socket, which for a joined call means leaving it.
   */
  private keepWorkingTransport(): void {
    if (this.transport !== "websocket") return;
    const socket = this.socket as unknown as {
      cancelFallback?: () => void;
      primaryPassedHealthCheck?: boolean;
      longPollFallbackMs?: number;
    };
    socket.primaryPassedHealthCheck = true;
    socket.cancelFallback?.();
    // Reconnections stay on the WebSocket too: while the server is unreachable (a restart, a
    // network cut) each refused attempt would otherwise swap the socket for LongPoll for good.
    socket.longPollFallbackMs = 0;
  }

  private joinChannel(): Promise<unknown> {
    return new Promise((resolve, reject) => {
      // These hooks stay on the join push: they also see every automatic rejoin.
      this.channel
        .join()
        .receive("ok", (reply) => {
          // Our server's TURN servers (none from other servers, or with TURN off).
          this.webrtc.useIceServers(iceServersOf(reply, this.relay), this.relay ? "relay" : undefined);
          this.onRejoined();
          resolve(reply);
        })
        .receive("error", (reply) => {
          this.onRejoinRefused(reply);
          reject(reply);
        })
        // Phoenix keeps retrying the join; "ok" still resolves later.
        .receive("timeout", () => setConnectionState("connecting", "Still connecting…"));
    });
  }

  private setupControls(): void {
    setupToggleButton("toggle-mic", () => this.toggle("audio"));
    setupToggleButton("toggle-camera", () => this.toggle("video"));
    setupDisconnectButton(() => void this.disconnect());
    this.shell.shareButton.addEventListener("click", () => void this.toggleScreen());
    this.shell.selfViewButton.addEventListener("click", () => {
      const floating = this.shell.selfViewButton.getAttribute("aria-pressed") !== "true";
      this.shell.selfViewButton.setAttribute("aria-pressed", String(floating));
      setFloatingSelfView(floating);
    });
    this.shell.chatForm.addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendChat();
    });
    // Shortcuts as in Meet: Ctrl+D microphone, Ctrl+E camera (Cmd on macOS).
    document.addEventListener("keydown", (e) => {
      if (!(e.ctrlKey || e.metaKey) || e.altKey || e.shiftKey) return;
      const key = e.key.toLowerCase();
      if (key === "d" || key === "e") {
        e.preventDefault();
        this.toggle(key === "d" ? "audio" : "video");
      }
    });
    this.showToggles();
    this.showScreenButton();
  }

  private sendChat(): void {
    const input = this.shell.chatInput;
    const text = input.value;
    if (!text.trim() || this.left) return;
    // Answers may come out of order (a refusal is immediate, an accepted message goes through
    // the room): the error shown is the last one, cleared when the user sends again.
    this.shell.setChatError("");
    this.channel
      .push("chat", { text })
      .receive("ok", () => {
        if (input.value === text) input.value = "";
      })
      .receive("error", (r: { reason?: string }) =>
        this.shell.setChatError(`Not sent: ${r?.reason ?? "refused by the server"}.`),
      )
      .receive("timeout", () => this.shell.setChatError("Not sent: no answer from the server."));
  }

  /** Turns our microphone or camera on/off; the others learn it through the track metadata. */
  private toggle(kind: MediaKind): void {
    if (this.left) return;
    const track = this.localTrack(kind);
    if (!track && !this.mediaPending) return;
    this.want[kind] = !this.want[kind];
    if (track) {
      track.enabled = this.want[kind];
      const trackId = this.localTrackIds.get(kind);
      if (trackId) {
        const metadata: TrackMetadata = { kind, active: track.enabled };
        this.webrtc.updateTrackMetadata(trackId, metadata);
      }
    }
    rememberInCall(this.roomId, { displayName: this.displayName, ...this.want });
    this.showToggles();
    this.shell.announce(
      kind === "audio"
        ? this.want.audio ? "Microphone on" : "Microphone off"
        : this.want.video ? "Camera on" : "Camera off",
    );
  }

  private async toggleScreen(): Promise<void> {
    if (this.screen) {
      this.stopScreen();
      return;
    }
    if (this.screenStarting || this.left) return;
    this.screenStarting = true;
    this.showScreenButton();
    try {
      await this.startScreen();
    } finally {
      this.screenStarting = false;
      this.showScreenButton();
    }
  }

  /**
   * Asks the browser for a screen or tab (inside the click, as browsers require), then publishes
   * it once our camera and microphone are: a share started while they are still being set up
   * waits for them instead of racing their negotiation.
   */
  private async startScreen(): Promise<void> {
    let stream: MediaStream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (e) {
      // The user closing the picker is not an error worth a banner.
      if ((e as { name?: string })?.name !== "NotAllowedError") {
        this.shell.announce(`Could not share the screen: ${String(e)}`);
      }
      return;
    }
    const track = stream.getVideoTracks()[0];
    if (track) await this.cameraPublished;
    if (!track || this.left || track.readyState === "ended") {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    const metadata: TrackMetadata = { kind: "video", active: true, source: "screen" };
    const trackId = this.webrtc.addTrack(track, stream, metadata);
    this.screen = { stream, track, trackId };
    // The browser's own "Stop sharing" ends the track.
    track.addEventListener("ended", () => this.stopScreen());
    addVideoElement(LOCAL_SCREEN_ID, "Your screen", true, "screen");
    attachStream(stream, LOCAL_SCREEN_ID);
    setTileMediaState(LOCAL_SCREEN_ID, { video: true });
    this.shell.announce("You are sharing your screen");
  }

  private stopScreen(): void {
    const screen = this.screen;
    if (!screen) return;
    this.screen = undefined;
    if (!this.left) this.webrtc.removeTrack(screen.trackId);
    screen.track.stop();
    removeVideoElement(LOCAL_SCREEN_ID);
    this.showScreenButton();
    this.shell.announce("Screen sharing stopped");
  }

  private showScreenButton(): void {
    const b = this.shell.shareButton;
    b.setAttribute("aria-pressed", String(!!this.screen));
    b.textContent = this.screen ? "Stop sharing" : "Share screen";
    // Usable once the server let us in; while a share is starting, a second click does nothing.
    b.disabled = this.left || !this.accepted || this.screenStarting;
  }

  private localTrack(kind: MediaKind): MediaStreamTrack | undefined {
    return kind === "audio"
      ? this.localStream?.getAudioTracks()[0]
      : this.localStream?.getVideoTracks()[0];
  }

  /** The toggles show the real state: a device that is gone or a call that ended disables them. */
  private showToggles(): void {
    const mic = this.localTrack("audio");
    const camera = this.localTrack("video");
    const live = (t: MediaStreamTrack | undefined) => !!t && t.readyState === "live";
    const micAvailable = !this.left && (live(mic) || (!mic && this.mediaPending));
    const cameraAvailable = !this.left && (live(camera) || (!camera && this.mediaPending));
    const micOff = !micAvailable || !this.want.audio;
    const cameraOff = !cameraAvailable || !this.want.video;
    setToggleButton("toggle-mic", {
      off: micOff,
      available: micAvailable,
      text: micOff ? "Unmute microphone" : "Mute microphone",
    });
    setToggleButton("toggle-camera", {
      off: cameraOff,
      available: cameraAvailable,
      text: cameraOff ? "Turn camera on" : "Turn camera off",
    });
    setTileMediaState(LOCAL_PEER_ID, { audio: !micOff, video: !cameraOff });
    this.updateParticipantsList();
  }

  private showTrackState(ctx: TrackContext): void {
    if (isScreen(ctx)) return;
    const kind = kindOf(ctx);
    if (!kind) return;
    setTileMediaState(ctx.peer.id, { [kind]: ctx.metadata?.active !== false });
    this.updateParticipantsList();
  }

  private updateParticipantsList(): void {
    setParticipantsList([this.displayName, ...this.peers.map(displayNameOf)]);
    this.shell.setPeople([
      { name: this.displayName, you: true, micOff: tileOf(LOCAL_PEER_ID)?.dataset.audio === "off" },
      ...this.peers.map((p) => ({ name: displayNameOf(p), you: false, micOff: tileOf(p.id)?.dataset.audio === "off" })),
    ]);
  }

  /**
   * The channel errored (socket lost, or the server's side of it ended). Before the channel
   * joined this is Phoenix retrying (or falling back to LongPoll). After, phoenix.js reconnects
   * with backoff and rejoins presenting our resume token: the media connection and the tiles
   * stay meanwhile. After reconnectGiveUpMs without getting back, the page says so and offers
   * Rejoin.
   */
  private onSignallingLost(): void {
    if (this.left) return;
    if (!this.channelJoined) {
      this.showConnectionState();
      return;
    }
    if (!this.reconnecting) {
      this.reconnecting = { lostAt: Date.now(), refusals: [] };
      this.reconnections.push(this.reconnecting);
      this.webrtc.signallingLost();
      this.giveUpTimer = window.setTimeout(() => this.giveUp(), this.reconnectGiveUpMs);
      console.info(`videoroom: connection to the server lost, reconnecting`);
      this.shell.announce("Connection lost, reconnecting");
    }
    this.showConnectionState();
  }

  /** Could not get back within reconnectGiveUpMs: leave, say so, offer Rejoin. */
  private giveUp(): void {
    if (this.left || !this.reconnecting) return;
    void this.leave();
    this.socket.disconnect();
    this.peers = [];
    removeRemoteVideoElements(LOCAL_PEER_ID);
    this.updateParticipantsList();
    const seconds = Math.round(this.reconnectGiveUpMs / 1000);
    const message = `The connection to the server was lost and could not be restored for ${seconds} s. Check your network, then rejoin.`;
    setErrorMessage(message);
    setConnectionState("disconnected", "Disconnected");
    this.shell.showEndScreen("Connection lost", message, () => this.rejoin());
  }

  /** Shows why the media does not connect, unless it connected meanwhile. */
  private onMediaDiagnosis(notice: { cause?: unknown; message?: unknown }): void {
    if (typeof notice?.message !== "string" || this.mediaState === "connected") return;
    this.mediaDiagnosis = notice.message;
    setErrorMessage(notice.message);
  }

  private fail(message: string, title: string): void {
    setErrorMessage(message);
    rememberInCall(this.roomId, undefined);
    void this.leave().then(() => this.socket.disconnect());
    setConnectionState("failed", "Connection failed");
    this.shell.showEndScreen(title, message, () => this.rejoin());
  }

  /** Joins again with the same name and toggles (a reload that goes straight into the call). */
  private rejoin(): void {
    rememberInCall(this.roomId, { displayName: this.displayName, ...this.want });
    window.location.reload();
  }

  private async disconnect(): Promise<void> {
    rememberInCall(this.roomId, undefined);
    const left = this.leave();
    setConnectionState("disconnected", "Disconnected");
    removeRemoteVideoElements(LOCAL_PEER_ID);
    relayout();
    this.shell.showEndScreen("You left the meeting", `You left room ${this.roomId}.`, () => this.rejoin());
    await left;
  }

  private showConnectionState(): void {
    if (this.left) return;
    const via = this.transport === "longpoll" ? "LongPoll" : "WebSocket";
    if (this.reconnecting) {
      setConnectionState("reconnecting", "Reconnecting…");
    } else if (!this.socket.isConnected() || !this.channelJoined) {
      setConnectionState("connecting", "Connecting…");
    } else if (!this.accepted) {
      setConnectionState("connecting", "Joining…");
    } else if (this.mediaPending) {
      // Accepted, but the camera and microphone are still opening: nothing is published yet.
      setConnectionState("connecting", "Starting camera and microphone…");
    } else if (this.localTrackIds.size > 0 && this.mediaState === undefined) {
      // Our tracks are added but the media connection does not exist yet (first offerData).
      setConnectionState("connecting", `Connecting media… (via ${via})`);
    } else if (this.mediaState === "failed") {
      setConnectionState("failed", "Media connection failed");
    } else if (this.mediaState === "disconnected") {
      setConnectionState("reconnecting", "Reconnecting…");
    } else if (this.mediaState === "connecting" || this.mediaState === "new") {
      setConnectionState("connecting", `Connecting media… (via ${via})`);
    } else {
      // Media connected, or nothing to exchange yet (alone without camera/microphone).
      setConnectionState("connected", `Connected (via ${via})`);
    }
  }
}
