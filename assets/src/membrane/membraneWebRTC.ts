// The project's own implementation of the tutorial-era `MembraneWebRTC` client, written from
// membrane-protocol.md (§1 API, §2 events, §3 behaviour). One RTCPeerConnection to the SFU; the
// browser is always the offerer; the server starts every (re)negotiation with `offerData`.

import { v4 as uuidv4 } from "uuid";
import {
  deserializeMediaEvent,
  generateMediaEvent,
  serializeMediaEvent,
  type MediaEvent,
} from "./mediaEvent";
import type {
  Callbacks,
  MembraneWebRTCConfig,
  Peer,
  SerializedMediaEvent,
  TrackContext,
} from "./types";

/**
 * Default `RTCConfiguration`. The original client used Google's public STUN server; this one uses
 * none, because the SFU advertises host candidates of its own and learns the browser's address
 * from the browser's connectivity checks (peer-reflexive), which works on a LAN and on machines
 * without internet access. Pass `rtcConfig` to add STUN/TURN servers for NAT traversal.
 */
export const DEFAULT_RTC_CONFIG: RTCConfiguration = { iceServers: [] };

/** One of our own tracks. `transceiver` is set once the track is attached to the connection. */
interface LocalTrack {
  trackId: string;
  track: MediaStreamTrack | null;
  stream: MediaStream;
  metadata: any;
  transceiver?: RTCRtpTransceiver;
}

/** The wire shape of a peer (`trackIdToMetadata` is a plain object there). */
interface WirePeer {
  id: string;
  metadata?: any;
  trackIdToMetadata?: Record<string, any>;
}

export class MembraneWebRTC {
  private readonly callbacks: Callbacks;
  private rtcConfig: RTCConfiguration;
  private readonly receiveMedia: boolean;

  /** The media connection; created on the first `offerData`, dropped by cleanUp(). */
  private connection?: RTCPeerConnection;
  /** Our own peer as the server knows it; `id` is empty until `peerAccepted`. */
  private localPeer: Peer = { id: "", metadata: {}, trackIdToMetadata: new Map() };
  private localTracks = new Map<string, LocalTrack>();
  /** The other peers of the room. */
  private idToPeer = new Map<string, Peer>();
  /** Every remote track we know of, by track id. */
  private remoteTracks = new Map<string, TrackContext>();
  /** From the latest `sdpAnswer`: which track each m-line carries (ours and the remote ones). */
  private midToTrackId = new Map<string, string>();
  /** A stand-in stream per peer, used only if the answer names no msid stream for its tracks. */
  private fallbackStreams = new Map<string, MediaStream>();
  /** Server candidates that arrived while our offer was still unanswered (applied after the answer). */
  private pendingCandidates: RTCIceCandidateInit[] = [];
  /** Incoming events are handled strictly one after another, async steps included. */
  private queue: Promise<void> = Promise.resolve();
  /** True between join() and cleanUp(): events outside a session are ignored. */
  private active = false;
  /** Extension: ask for an ICE restart when the media connection goes disconnected/failed. */
  private readonly restartIce: boolean;
  /** Extension: the `resumeToken` of the latest `peerAccepted` (our server's; others send none). */
  private token?: string;
  /**
   * Extension: the app said the signalling channel is down (signallingLost()). Events are then
   * withheld instead of sent, and what they asked for is redone after the resumed `peerAccepted`.
   */
  private signallingDown = false;
  /** What withheld events asked for, redone once signalling is back. */
  private redo = { renegotiate: false, peerMetadata: false, trackMetadata: false };
  /** An ICE restart was asked for and its offer is not answered yet (one per episode). */
  private iceRestartAsked = false;

  constructor({ callbacks, rtcConfig, receiveMedia = true, restartIceOnDisconnect = false }: MembraneWebRTCConfig) {
    this.callbacks = callbacks;
    this.rtcConfig = rtcConfig ?? DEFAULT_RTC_CONFIG;
    this.receiveMedia = receiveMedia;
    this.restartIce = restartIceOnDisconnect;
  }

  /**
   * Extension: the resume token of the latest `peerAccepted`, to present when rejoining the
   * channel after a lost socket (`{"resumeToken": …}` in the join params); undefined when the
   * server gave none or after startOver().
   */
  public get resumeToken(): string | undefined {
    return this.token;
  }

  /**
   * Extension: ICE servers (and a transport policy) for the media connection, e.g. the TURN
   * servers of our server's channel join reply; taken by the next connection made and by the
   * current one.
   */
  public useIceServers(iceServers: RTCIceServer[], iceTransportPolicy?: RTCIceTransportPolicy): void {
    this.rtcConfig = { ...this.rtcConfig, iceServers, ...(iceTransportPolicy ? { iceTransportPolicy } : {}) };
    try {
      this.connection?.setConfiguration(this.rtcConfig);
    } catch (e) {
      // A browser refusing the change keeps its current servers; the call goes on.
      console.warn("videoroom: cannot change the ICE servers of the connection", e);
    }
  }

  /**
   * Extension: the app lost its signalling channel (socket closed or errored). The media
   * connection is kept; events are withheld until the server accepts us again. On the resumed
   * `peerAccepted` (same peer id) the room is reconciled through the usual callbacks, then
   * onJoinResumed, and a renegotiation is asked for only if one was withheld or unanswered.
   */
  public signallingLost = (): void => {
    if (this.active) this.signallingDown = true;
  };

  /**
   * Extension: the server no longer knows us (resume refused, server restarted): forgets the
   * session (media connection, remote peers, our published tracks, the token) without stopping
   * the local media tracks, so the app can join() again as a new peer and add them again.
   * No callbacks are called: the app replaces its view on the next onJoinSuccess.
   */
  public startOver = (): void => {
    this.resetSession();
  };

  /** Asks the server to let us in with the given peer metadata (answered by onJoinSuccess/onJoinError). */
  public join = (peerMetadata: any): void => {
    try {
      this.active = true;
      this.localPeer.metadata = peerMetadata;
      this.send(generateMediaEvent("join", { receiveMedia: this.receiveMedia, metadata: peerMetadata }));
    } catch (e) {
      this.callbacks.onConnectionError?.(String(e));
      this.leave();
    }
  };

  /** Feeds one event received from the server (the `data` string of a `mediaEvent` push). */
  public receiveMediaEvent = (mediaEvent: SerializedMediaEvent): void => {
    let event: MediaEvent;
    try {
      event = deserializeMediaEvent(mediaEvent);
    } catch (e) {
      console.warn("MembraneWebRTC: dropping malformed media event", e);
      return;
    }
    this.queue = this.queue
      .then(() => this.handleMediaEvent(event))
      .catch((e) => console.error(`MembraneWebRTC: handling ${event.type} failed`, e));
  };

  /**
   * Publishes a local track; returns its id `"<peerId>:<uuid>"`. Only allowed once the server
   * accepted us (after onJoinSuccess). The track is negotiated on the next `offerData`.
   */
  public addTrack = (
    track: MediaStreamTrack,
    stream: MediaStream,
    trackMetadata: any = new Map(),
  ): string => {
    if (!this.localPeer.id) {
      throw new Error("Cannot add tracks before being accepted by the server");
    }
    const trackId = `${this.localPeer.id}:${uuidv4()}`;
    this.localTracks.set(trackId, { trackId, track, stream, metadata: trackMetadata });
    this.localPeer.trackIdToMetadata.set(trackId, trackMetadata);
    this.send(generateMediaEvent("renegotiateTracks", {}));
    return trackId;
  };

  /**
   * Swaps the media of a published track without renegotiation (e.g. another camera), and
   * optionally its metadata. Resolves to false if the track is unknown or the browser refused.
   */
  public replaceTrack = async (
    trackId: string,
    newTrack: MediaStreamTrack | null,
    newTrackMetadata?: any,
  ): Promise<boolean> => {
    const local = this.localTracks.get(trackId);
    if (!local) return false;
    try {
      if (local.transceiver) await local.transceiver.sender.replaceTrack(newTrack);
      if (local.track !== newTrack) {
        if (local.track) local.stream.removeTrack(local.track);
        if (newTrack) local.stream.addTrack(newTrack);
      }
      local.track = newTrack;
      if (newTrackMetadata !== undefined) this.updateTrackMetadata(trackId, newTrackMetadata);
      return true;
    } catch (e) {
      console.warn("MembraneWebRTC: replaceTrack failed", e);
      return false;
    }
  };

  /** Stops publishing a track; the others get `tracksRemoved` after the renegotiation. */
  public removeTrack = (trackId: string): void => {
    const local = this.localTracks.get(trackId);
    if (!local) throw new Error(`Unknown local track ${trackId}`);
    if (local.transceiver && this.connection && this.connection.signalingState !== "closed") {
      // A sendonly transceiver becomes inactive: it no longer counts as sending or receiving.
      this.connection.removeTrack(local.transceiver.sender);
    }
    this.localTracks.delete(trackId);
    this.localPeer.trackIdToMetadata.delete(trackId);
    this.send(generateMediaEvent("renegotiateTracks", {}));
  };

  /** Replaces our peer metadata; the others get onPeerUpdated. */
  public updatePeerMetadata = (peerMetadata: any): void => {
    this.localPeer.metadata = peerMetadata;
    this.send(generateMediaEvent("updatePeerMetadata", { metadata: peerMetadata }));
  };

  /** Replaces a published track's metadata; the others get onTrackUpdated. */
  public updateTrackMetadata = (trackId: string, trackMetadata: any): void => {
    const local = this.localTracks.get(trackId);
    if (local) local.metadata = trackMetadata;
    if (this.localPeer.trackIdToMetadata.has(trackId)) {
      this.localPeer.trackIdToMetadata.set(trackId, trackMetadata);
    }
    this.send(generateMediaEvent("updateTrackMetadata", { trackId, trackMetadata }));
  };

  /** Tells the server we leave, then cleans up. */
  public leave = (): void => {
    if (this.active) {
      try {
        this.send(generateMediaEvent("leave"));
      } catch (e) {
        console.warn("MembraneWebRTC: could not send leave", e);
      }
    }
    this.cleanUp();
  };

  /**
   * Stops our local tracks, closes the media connection and forgets the room. (The original
   * client dropped the connection without closing it; closing frees the ports at once.)
   */
  public cleanUp = (): void => {
    this.localTracks.forEach(({ track }) => track?.stop());
    this.resetSession();
  };

  /** Closes the media connection and forgets the room (local media tracks are left running). */
  private resetSession(): void {
    this.active = false;
    this.token = undefined;
    this.signallingDown = false;
    this.redo = { renegotiate: false, peerMetadata: false, trackMetadata: false };
    this.iceRestartAsked = false;
    this.localTracks = new Map();
    if (this.connection) {
      this.connection.onicecandidate = null;
      this.connection.ontrack = null;
      this.connection.onconnectionstatechange = null;
      this.connection.close();
      this.connection = undefined;
    }
    this.localPeer = { id: "", metadata: {}, trackIdToMetadata: new Map() };
    this.idToPeer = new Map();
    this.remoteTracks = new Map();
    this.midToTrackId = new Map();
    this.fallbackStreams = new Map();
    this.pendingCandidates = [];
  }

  // ---------------------------------------------------------------------------------------------
  // Incoming events

  private async handleMediaEvent(event: MediaEvent): Promise<void> {
    if (!this.active) return;
    const data = event.data;
    switch (event.type) {
      case "peerAccepted":
        return this.onPeerAccepted(data);
      case "peerDenied":
        this.callbacks.onJoinError?.(data);
        return;
      case "peerJoined":
        return this.onPeerJoined(data.peer);
      case "peerLeft":
        return this.onPeerLeft(data.peerId);
      case "peerUpdated":
        return this.onPeerUpdated(data.peerId, data.metadata);
      case "tracksAdded":
        return this.onTracksAdded(data.peerId, data.trackIdToMetadata ?? {});
      case "tracksRemoved":
        return this.onTracksRemoved(data.peerId, data.trackIds ?? []);
      case "trackUpdated":
        return this.onTrackUpdated(data.peerId, data.trackId, data.metadata);
      case "offerData":
        return this.onOfferData(new Map(Object.entries(data ?? {})));
      case "sdpAnswer":
        return this.onSdpAnswer(data);
      case "candidate":
        return this.onRemoteCandidate(data);
      case "error":
        this.callbacks.onConnectionError?.(data?.message ?? "unknown error");
        this.leave();
        return;
      default:
        // `custom` and anything newer belong to other dialects (§2.4): not ours, ignored.
        console.warn(`MembraneWebRTC: ignoring media event of type ${event.type}`);
    }
  }

  private onPeerAccepted(data: { id: string; peersInRoom?: WirePeer[]; resumeToken?: unknown }): void {
    if (typeof data.resumeToken === "string") this.token = data.resumeToken;
    if (this.localPeer.id && data.id === this.localPeer.id) return this.onResumed(data.peersInRoom ?? []);
    this.localPeer.id = data.id;
    const peers = (data.peersInRoom ?? []).map((p) => this.addPeer(p));
    this.callbacks.onJoinSuccess?.(data.id, peers);
    for (const peer of peers) {
      for (const trackId of peer.trackIdToMetadata.keys()) {
        this.callbacks.onTrackAdded?.(this.remoteTracks.get(trackId)!);
      }
    }
  }

  /**
   * The replayed `peerAccepted` of a resume: the room as it is now replaces what we knew, told
   * through the usual callbacks (peers gone or come, tracks removed, added or changed); our own
   * tracks stay published. Then what was withheld is sent again, and a renegotiation is asked
   * for only if one was withheld, an offer is unanswered, or the media connection needs an ICE
   * restart; the server itself sends `offerData` if the tracks we receive changed.
   */
  private onResumed(peersInRoom: WirePeer[]): void {
    this.signallingDown = false;
    const now = new Map(peersInRoom.filter((p) => p && p.id !== this.localPeer.id).map((p) => [p.id, p]));
    for (const peerId of [...this.idToPeer.keys()]) if (!now.has(peerId)) this.onPeerLeft(peerId);
    for (const wire of now.values()) {
      const peer = this.idToPeer.get(wire.id);
      if (!peer) {
        const added = this.addPeer({ ...wire, trackIdToMetadata: {} });
        this.callbacks.onPeerJoined?.(added);
        this.onTracksAdded(wire.id, wire.trackIdToMetadata ?? {});
        continue;
      }
      if (JSON.stringify(peer.metadata) !== JSON.stringify(wire.metadata)) this.onPeerUpdated(wire.id, wire.metadata);
      const tracks = wire.trackIdToMetadata ?? {};
      this.onTracksRemoved(wire.id, [...peer.trackIdToMetadata.keys()].filter((id) => !(id in tracks)));
      this.onTracksAdded(wire.id, tracks);
      for (const [trackId, metadata] of Object.entries(tracks)) {
        if (JSON.stringify(peer.trackIdToMetadata.get(trackId)) !== JSON.stringify(metadata)) {
          this.onTrackUpdated(wire.id, trackId, metadata);
        }
      }
    }
    const redo = this.redo;
    this.redo = { renegotiate: false, peerMetadata: false, trackMetadata: false };
    if (redo.peerMetadata) this.send(generateMediaEvent("updatePeerMetadata", { metadata: this.localPeer.metadata }));
    if (redo.trackMetadata) {
      for (const local of this.localTracks.values()) {
        this.send(generateMediaEvent("updateTrackMetadata", { trackId: local.trackId, trackMetadata: local.metadata }));
      }
    }
    const state = this.connection?.connectionState;
    const unanswered = this.connection?.signalingState === "have-local-offer";
    if (redo.renegotiate || unanswered || (this.restartIce && (state === "disconnected" || state === "failed"))) {
      this.send(generateMediaEvent("renegotiateTracks", {}));
    }
    this.callbacks.onJoinResumed?.(this.localPeer.id);
  }

  private onPeerJoined(wire: WirePeer): void {
    // The joining peer is told about itself too (broadcast); it is not one of "the others".
    if (!wire || wire.id === this.localPeer.id || this.idToPeer.has(wire.id)) return;
    this.callbacks.onPeerJoined?.(this.addPeer(wire));
  }

  private onPeerLeft(peerId: string): void {
    const peer = this.idToPeer.get(peerId);
    if (!peer) return;
    // The server sends no tracksRemoved for a leaving peer: its tracks go with it.
    for (const trackId of peer.trackIdToMetadata.keys()) this.dropRemoteTrack(trackId);
    this.idToPeer.delete(peerId);
    this.fallbackStreams.delete(peerId);
    this.callbacks.onPeerLeft?.(peer);
  }

  private onPeerUpdated(peerId: string, metadata: any): void {
    const peer = this.idToPeer.get(peerId);
    if (!peer) return;
    peer.metadata = metadata;
    this.callbacks.onPeerUpdated?.(peer);
  }

  private onTracksAdded(peerId: string, trackIdToMetadata: Record<string, any>): void {
    if (peerId === this.localPeer.id) return;
    const peer = this.idToPeer.get(peerId);
    if (!peer) {
      console.warn(`MembraneWebRTC: tracksAdded for unknown peer ${peerId}`);
      return;
    }
    // The event carries the peer's full current map: only the ids we did not know are new.
    for (const [trackId, metadata] of Object.entries(trackIdToMetadata)) {
      if (peer.trackIdToMetadata.has(trackId)) continue;
      peer.trackIdToMetadata.set(trackId, metadata);
      const ctx = this.newRemoteTrack(peer, trackId, metadata);
      this.callbacks.onTrackAdded?.(ctx);
    }
  }

  private onTracksRemoved(peerId: string, trackIds: string[]): void {
    if (peerId === this.localPeer.id) return;
    const peer = this.idToPeer.get(peerId);
    if (!peer) return;
    for (const trackId of trackIds) {
      if (!peer.trackIdToMetadata.has(trackId)) continue;
      this.dropRemoteTrack(trackId);
      peer.trackIdToMetadata.delete(trackId);
    }
  }

  private onTrackUpdated(peerId: string, trackId: string, metadata: any): void {
    if (peerId === this.localPeer.id) return;
    const peer = this.idToPeer.get(peerId);
    const ctx = this.remoteTracks.get(trackId);
    if (!peer || !ctx) return;
    peer.trackIdToMetadata.set(trackId, metadata);
    ctx.metadata = metadata;
    this.callbacks.onTrackUpdated?.(ctx);
  }

  /** The server wants a (new) offer: `counts` says how many tracks of each kind it will send us. */
  private async onOfferData(counts: Map<string, unknown>): Promise<void> {
    let pc = this.connection;
    if (!pc) {
      pc = new RTCPeerConnection(this.rtcConfig);
      pc.onicecandidate = (ev) => this.onLocalCandidate(ev);
      pc.ontrack = (ev) => this.onTrack(ev);
      const conn = pc;
      pc.onconnectionstatechange = () => {
        this.callbacks.onConnectionStateChange?.(conn.connectionState);
        this.onConnectionState(conn.connectionState);
      };
      this.connection = pc;
    } else {
      if (pc.signalingState === "have-local-offer") {
        // Our previous offer was never answered; the server starts over.
        await pc.setLocalDescription({ type: "rollback" });
      }
      // Every renegotiation is an ICE restart: the server expects new credentials each time.
      pc.restartIce();
    }

    this.attachLocalTracks(pc);
    if (this.receiveMedia) this.addReceiveTransceivers(pc, counts);

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);

    // Mids exist only after setLocalDescription.
    const midToTrackId: Record<string, string> = {};
    const trackIdToTrackMetadata: Record<string, any> = {};
    for (const local of this.localTracks.values()) {
      trackIdToTrackMetadata[local.trackId] = local.metadata;
      const mid = local.transceiver?.mid;
      if (mid != null) midToTrackId[mid] = local.trackId;
    }
    this.send(
      generateMediaEvent("sdpOffer", {
        sdpOffer: { type: "offer", sdp: offer.sdp },
        trackIdToTrackMetadata,
        midToTrackId,
      }),
    );
  }

  /** Local tracks added since the last offer get their own sendonly transceiver. */
  private attachLocalTracks(pc: RTCPeerConnection): void {
    for (const local of this.localTracks.values()) {
      if (local.transceiver || !local.track) continue;
      // addTransceiver, not pc.addTrack: addTrack could reuse one of our recvonly transceivers
      // and turn it into sendrecv, which would break the server's m-line accounting.
      local.transceiver = pc.addTransceiver(local.track, {
        direction: "sendonly",
        streams: [local.stream],
      });
    }
  }

  /** Tops up recvonly transceivers so that there is one per track the server will send (never removes). */
  private addReceiveTransceivers(pc: RTCPeerConnection, counts: Map<string, unknown>): void {
    for (const kind of ["audio", "video"] as const) {
      const wanted = Number(counts.get(kind) ?? 0);
      const have = pc
        .getTransceivers()
        .filter((t) => t.direction === "recvonly" && t.receiver.track?.kind === kind).length;
      for (let i = have; i < wanted; i++) pc.addTransceiver(kind, { direction: "recvonly" });
    }
  }

  private async onSdpAnswer(data: { sdp: string; midToTrackId?: Record<string, string> }) {
    const pc = this.connection;
    if (!pc) {
      console.warn("MembraneWebRTC: sdpAnswer without a connection");
      return;
    }
    // The answer's map covers every m-line (ours, received, inactive): it replaces the old one
    // before ontrack fires inside setRemoteDescription.
    this.midToTrackId = new Map(Object.entries(data.midToTrackId ?? {}));
    await pc.setRemoteDescription({ type: "answer", sdp: data.sdp });
    this.iceRestartAsked = false;
    const pending = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const candidate of pending) await this.addRemoteCandidate(pc, candidate);
  }

  private async onRemoteCandidate(data: {
    candidate: string;
    sdpMLineIndex?: number | null;
    sdpMid?: string | null;
    usernameFragment?: string | null;
  }) {
    const pc = this.connection;
    if (!pc || !data || typeof data.candidate !== "string") return;
    const init: RTCIceCandidateInit = {
      // The Elixir server sent libnice's "a=candidate:…"; the browser wants "candidate:…".
      candidate: data.candidate.replace(/^a=/, ""),
      sdpMLineIndex: data.sdpMLineIndex ?? 0,
      sdpMid: data.sdpMid ?? undefined,
      usernameFragment: data.usernameFragment ?? undefined,
    };
    // Before the answer to our current offer, a candidate would land in the previous ICE
    // generation (or be refused): keep it until the answer is applied.
    if (pc.signalingState === "have-local-offer" || !pc.remoteDescription) {
      this.pendingCandidates.push(init);
      return;
    }
    await this.addRemoteCandidate(pc, init);
  }

  private async addRemoteCandidate(pc: RTCPeerConnection, candidate: RTCIceCandidateInit) {
    try {
      await pc.addIceCandidate(candidate);
    } catch (e) {
      // A candidate of an older ICE generation, for instance: not fatal.
      console.warn("MembraneWebRTC: remote candidate rejected", candidate.candidate, e);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Browser events

  private onLocalCandidate(ev: RTCPeerConnectionIceEvent): void {
    // null (end of candidates) and Firefox's "" end-of-generation marker are never sent.
    if (!ev.candidate || !ev.candidate.candidate) return;
    this.send(
      generateMediaEvent("candidate", {
        candidate: ev.candidate.candidate,
        sdpMLineIndex: ev.candidate.sdpMLineIndex,
      }),
    );
  }

  /**
   * Extension (restartIceOnDisconnect): a media connection that went disconnected or failed
   * (the network changed) asks the server for a round; every offer restarts ICE.
   */
  private onConnectionState(state: RTCPeerConnectionState): void {
    if (!this.restartIce || !this.active) return;
    if (state === "connected") {
      this.iceRestartAsked = false;
      return;
    }
    if ((state === "disconnected" || state === "failed") && !this.iceRestartAsked) {
      this.iceRestartAsked = true;
      console.info(`MembraneWebRTC: media connection ${state}, restarting ICE`);
      this.send(generateMediaEvent("renegotiateTracks", {}));
    }
  }

  private onTrack(ev: RTCTrackEvent): void {
    const mid = ev.transceiver.mid;
    const trackId = mid != null ? this.midToTrackId.get(mid) : undefined;
    const ctx = trackId !== undefined ? this.remoteTracks.get(trackId) : undefined;
    if (!ctx) {
      console.warn(`MembraneWebRTC: media for unknown m-line ${mid} (track ${trackId})`);
      return;
    }
    ctx.track = ev.track;
    ctx.stream = ev.streams[0] ?? this.fallbackStream(ctx.peer.id, ev.track);
    this.callbacks.onTrackReady?.(ctx);
  }

  // ---------------------------------------------------------------------------------------------
  // Helpers

  private addPeer(wire: WirePeer): Peer {
    const peer: Peer = {
      id: wire.id,
      metadata: wire.metadata,
      trackIdToMetadata: new Map(Object.entries(wire.trackIdToMetadata ?? {})),
    };
    this.idToPeer.set(peer.id, peer);
    for (const [trackId, metadata] of peer.trackIdToMetadata) {
      this.newRemoteTrack(peer, trackId, metadata);
    }
    return peer;
  }

  private newRemoteTrack(peer: Peer, trackId: string, metadata: any): TrackContext {
    const ctx: TrackContext = { track: null, stream: null, peer, trackId, metadata };
    this.remoteTracks.set(trackId, ctx);
    return ctx;
  }

  private dropRemoteTrack(trackId: string): void {
    const ctx = this.remoteTracks.get(trackId);
    if (!ctx) return;
    this.remoteTracks.delete(trackId);
    for (const [mid, id] of this.midToTrackId) if (id === trackId) this.midToTrackId.delete(mid);
    this.callbacks.onTrackRemoved?.(ctx);
  }

  private fallbackStream(peerId: string, track: MediaStreamTrack): MediaStream {
    let stream = this.fallbackStreams.get(peerId);
    if (!stream) {
      stream = new MediaStream();
      this.fallbackStreams.set(peerId, stream);
    }
    stream.getTracks().filter((t) => t.kind === track.kind).forEach((t) => stream!.removeTrack(t));
    stream.addTrack(track);
    return stream;
  }

  private send(event: MediaEvent): void {
    if (this.signallingDown) {
      // Withheld: the server would not get it. Candidates and offers of a lost round are
      // replaced by a new round; metadata is sent again as it is then.
      if (event.type === "renegotiateTracks" || event.type === "sdpOffer") this.redo.renegotiate = true;
      if (event.type === "updatePeerMetadata") this.redo.peerMetadata = true;
      if (event.type === "updateTrackMetadata") this.redo.trackMetadata = true;
      return;
    }
    this.callbacks.onSendMediaEvent(serializeMediaEvent(event));
  }
}
