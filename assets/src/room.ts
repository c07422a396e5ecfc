// The videoroom app: one Phoenix channel `room:<id>` carrying media events, one MembraneWebRTC
// client, and the page (room_ui.ts). Flow as in the tutorial (membrane-protocol.md §5.1), plus
// microphone/camera toggles, display names on tiles and a visible connection state.

import { LongPoll, Socket, type Channel } from "phoenix";
import queryString from "query-string";
import { LOCAL_PEER_ID, LONG_POLL_FALLBACK_MS, MEDIA_CONSTRAINTS } from "./consts";
import { MembraneWebRTC, type Peer, type TrackContext } from "./membrane";
import {
  addVideoElement,
  attachStream,
  getRoomId,
  removeRemoteVideoElements,
  removeVideoElement,
  setConnectionState,
  setErrorMessage,
  setParticipantsList,
  setTileLabel,
  setTileMediaState,
  setToggleButton,
  setupDisconnectButton,
  setupToggleButton,
} from "./room_ui";

type MediaKind = "audio" | "video";

/**
 * Metadata we give our tracks, so the others can show "microphone off"/"camera off":
 * `{kind, active}`. A track without `active` (e.g. from the original client, `{}`) counts as on.
 */
interface TrackMetadata {
  kind: MediaKind;
  active: boolean;
}

/** Reads `?display_name=` and removes it from the address bar (as the tutorial does). */
function takeDisplayName(): string {
  const { display_name: name, ...rest } = queryString.parse(window.location.search);
  const search = queryString.stringify(rest);
  window.history.replaceState(
    window.history.state,
    "",
    window.location.pathname + (search ? `?${search}` : "") + window.location.hash,
  );
  const value = Array.isArray(name) ? name[0] : name;
  return value && value.trim() ? value.trim() : "Anonymous";
}

function displayNameOf(peer: Peer): string {
  const name = peer.metadata?.displayName;
  return typeof name === "string" && name ? name : "Unknown";
}

/** Microphone or camera, from a track's metadata or, failing that, from its media. */
function kindOf(ctx: TrackContext): MediaKind | undefined {
  const kind = ctx.metadata?.kind ?? ctx.track?.kind;
  return kind === "audio" || kind === "video" ? kind : undefined;
}

export class Room {
  /** The media client (exposed read-only for the test hook, see index.ts). */
  public readonly webrtc: MembraneWebRTC;
  private readonly socket: Socket;
  private readonly channel: Channel;
  private readonly roomId: string;
  private readonly displayName: string;
  private localStream?: MediaStream;
  /** Our track ids per kind, once published. */
  private readonly localTrackIds = new Map<MediaKind, string>();
  /** The other participants, in joining order. */
  private peers: Peer[] = [];
  private socketRefs: string[] = [];
  /** The channel join succeeded; from then on losing the socket means leaving the room. */
  private channelJoined = false;
  /** The server accepted us into the room. */
  private accepted = false;
  private left = false;
  private mediaState: RTCPeerConnectionState | undefined;

  constructor() {
    this.roomId = getRoomId();
    this.displayName = takeDisplayName();

    this.socket = new Socket("/socket", { longPollFallbackMs: LONG_POLL_FALLBACK_MS });
    this.socket.connect();
    this.socketRefs.push(
      this.socket.onOpen(() => this.showConnectionState()),
      this.socket.onError(() => this.onSocketLost()),
      this.socket.onClose(() => this.onSocketLost()),
    );

    this.channel = this.socket.channel(`room:${this.roomId}`, {});
    this.channel.on("mediaEvent", (event: { data: string }) =>
      this.webrtc.receiveMediaEvent(event.data),
    );
    // A channel error after joining means the server side of our peer is gone.
    this.channel.onError(() => this.onSocketLost());

    this.webrtc = new MembraneWebRTC({
      callbacks: {
        onSendMediaEvent: (data) => {
          this.channel.push("mediaEvent", { data });
        },
        onJoinSuccess: (peerId, peersInRoom) => this.onJoinSuccess(peerId, peersInRoom),
        onJoinError: (metadata) => {
          const reason = metadata && typeof metadata.reason === "string" ? `: ${metadata.reason}` : "";
          this.fail(`The server did not let you into the room${reason}.`);
        },
        onTrackReady: (ctx) => {
          if (ctx.stream) attachStream(ctx.stream, ctx.peer.id);
          this.showTrackState(ctx);
        },
        onTrackAdded: (ctx) => this.showTrackState(ctx),
        onTrackUpdated: (ctx) => this.showTrackState(ctx),
        onTrackRemoved: (ctx) => {
          const kind = kindOf(ctx);
          if (kind && this.peers.some((p) => p.id === ctx.peer.id)) {
            setTileMediaState(ctx.peer.id, { [kind]: false });
          }
        },
        onPeerJoined: (peer) => {
          this.peers.push(peer);
          addVideoElement(peer.id, displayNameOf(peer), false);
          this.updateParticipantsList();
        },
        onPeerLeft: (peer) => {
          this.peers = this.peers.filter((p) => p.id !== peer.id);
          removeVideoElement(peer.id);
          this.updateParticipantsList();
        },
        onPeerUpdated: (peer) => {
          setTileLabel(peer.id, displayNameOf(peer));
          this.updateParticipantsList();
        },
        onConnectionError: (message) => this.fail(message),
        onConnectionStateChange: (state) => {
          this.mediaState = state;
          this.showConnectionState();
        },
      },
    });
  }

  /** Gets the camera and microphone, joins the channel, then the room. */
  public join = async (): Promise<void> => {
    this.showConnectionState();
    this.localStream = await this.getLocalMedia();
    addVideoElement(LOCAL_PEER_ID, `${this.displayName} (you)`, true);
    if (this.localStream) attachStream(this.localStream, LOCAL_PEER_ID);
    this.setupToggles();
    this.updateParticipantsList();

    try {
      await this.joinChannel();
    } catch (reason) {
      this.fail(`Could not join the room: ${JSON.stringify(reason)}`);
      return;
    }
    this.channelJoined = true;
    setupDisconnectButton(() => this.disconnect());
    // Closing the tab: say goodbye so the others drop our tile at once (a LongPoll session
    // would otherwise linger until the server's poll window expires).
    window.addEventListener("pagehide", () => void this.leave());
    this.showConnectionState();
    this.webrtc.join({ displayName: this.displayName });
  };

  /** Leaves the room: tells the server, stops our media, leaves the channel. */
  public leave = (): Promise<void> => {
    if (this.left) return Promise.resolve();
    this.left = true;
    this.webrtc.leave();
    this.socket.off(this.socketRefs);
    this.socketRefs = [];
    this.localStream?.getTracks().forEach((t) => t.stop());
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

  private onJoinSuccess(peerId: string, peersInRoom: Peer[]): void {
    this.accepted = true;
    const stream = this.localStream;
    stream?.getTracks().forEach((track) => {
      const kind = track.kind as MediaKind;
      const metadata: TrackMetadata = { kind, active: track.enabled };
      this.localTrackIds.set(kind, this.webrtc.addTrack(track, stream, metadata));
    });
    this.peers = [...peersInRoom];
    for (const peer of peersInRoom) addVideoElement(peer.id, displayNameOf(peer), false);
    this.updateParticipantsList();
    this.showConnectionState();
    console.info(`videoroom: joined room ${this.roomId} as ${peerId}`);
  }

  private joinChannel(): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.channel
        .join()
        .receive("ok", resolve)
        .receive("error", reject)
        // Phoenix keeps retrying the join; "ok" still resolves later.
        .receive("timeout", () => setConnectionState("connecting", "Still connecting…"));
    });
  }

  private async getLocalMedia(): Promise<MediaStream | undefined> {
    // Both devices, else whichever one works: a missing camera should not keep anyone out.
    const attempts: MediaStreamConstraints[] = [
      MEDIA_CONSTRAINTS,
      { audio: MEDIA_CONSTRAINTS.audio },
      { video: MEDIA_CONSTRAINTS.video },
    ];
    let lastError: unknown;
    for (const constraints of attempts) {
      try {
        return await navigator.mediaDevices.getUserMedia(constraints);
      } catch (e) {
        lastError = e;
      }
    }
    setErrorMessage(
      `Could not use your camera or microphone (${String(lastError)}). You can still watch and listen.`,
    );
    return undefined;
  }

  private setupToggles(): void {
    setupToggleButton("toggle-mic", () => this.toggle("audio"));
    setupToggleButton("toggle-camera", () => this.toggle("video"));
    this.showToggles();
  }

  /** Turns our microphone or camera on/off; the others learn it through the track metadata. */
  private toggle(kind: MediaKind): void {
    const track = this.localTrack(kind);
    if (!track) return;
    track.enabled = !track.enabled;
    const trackId = this.localTrackIds.get(kind);
    if (trackId && !this.left) {
      const metadata: TrackMetadata = { kind, active: track.enabled };
      this.webrtc.updateTrackMetadata(trackId, metadata);
    }
    this.showToggles();
  }

  private localTrack(kind: MediaKind): MediaStreamTrack | undefined {
    return kind === "audio"
      ? this.localStream?.getAudioTracks()[0]
      : this.localStream?.getVideoTracks()[0];
  }

  private showToggles(): void {
    const mic = this.localTrack("audio");
    const camera = this.localTrack("video");
    const micOff = !mic?.enabled;
    const cameraOff = !camera?.enabled;
    setToggleButton("toggle-mic", {
      off: micOff,
      available: !!mic,
      text: micOff ? "Unmute microphone" : "Mute microphone",
    });
    setToggleButton("toggle-camera", {
      off: cameraOff,
      available: !!camera,
      text: cameraOff ? "Turn camera on" : "Turn camera off",
    });
    setTileMediaState(LOCAL_PEER_ID, { audio: !micOff, video: !cameraOff });
  }

  private showTrackState(ctx: TrackContext): void {
    const kind = kindOf(ctx);
    if (!kind) return;
    setTileMediaState(ctx.peer.id, { [kind]: ctx.metadata?.active !== false });
  }

  private updateParticipantsList(): void {
    setParticipantsList([this.displayName, ...this.peers.map(displayNameOf)]);
  }

  /** Socket error/close. Before the channel joined this is Phoenix retrying (or falling back to LongPoll). */
  private onSocketLost(): void {
    if (this.left) return;
    if (!this.channelJoined) {
      this.showConnectionState();
      return;
    }
    void this.leave();
    this.socket.disconnect();
    this.peers = [];
    removeRemoteVideoElements(LOCAL_PEER_ID);
    this.updateParticipantsList();
    setErrorMessage("The connection to the server was lost. Reload the page to join again.");
    setConnectionState("disconnected", "Disconnected");
  }

  private fail(message: string): void {
    setErrorMessage(message);
    void this.leave().then(() => this.socket.disconnect());
    setConnectionState("failed", "Connection failed");
  }

  private async disconnect(): Promise<void> {
    const left = this.leave();
    setConnectionState("disconnected", "Disconnected");
    // Back to the lobby with the room prefilled, once the server has seen us leave.
    await left;
    window.location.replace(`/?room_id=${encodeURIComponent(this.roomId)}`);
  }

  private showConnectionState(): void {
    if (this.left) return;
    const via = this.transport === "longpoll" ? "LongPoll" : "WebSocket";
    if (!this.socket.isConnected() || !this.channelJoined) {
      setConnectionState("connecting", "Connecting…");
    } else if (!this.accepted) {
      setConnectionState("connecting", "Joining…");
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
