// Public types of the MembraneWebRTC client (membrane-protocol.md §1).

/** A serialized media event: the JSON text carried in `{"data": "..."}` of a `mediaEvent` push. */
export type SerializedMediaEvent = string;

/** Another participant of the room, as the server describes it. */
export interface Peer {
  id: string;
  metadata: any;
  /** Every track the peer publishes, with the metadata it gave that track. */
  trackIdToMetadata: Map<string, any>;
}

/** One remote track. `track` and `stream` stay null until the browser reports the media (onTrackReady). */
export interface TrackContext {
  track: MediaStreamTrack | null;
  stream: MediaStream | null;
  peer: Peer;
  trackId: string;
  metadata: any;
}

/** What the application is told. Only `onSendMediaEvent` is required. */
export interface Callbacks {
  /** A media event the application must push to the server (`channel.push("mediaEvent", {data})`). */
  onSendMediaEvent: (mediaEvent: SerializedMediaEvent) => void;
  /** The server accepted us (`peerAccepted`): our peer id and everybody already in the room. */
  onJoinSuccess?: (peerId: string, peersInRoom: Peer[]) => void;
  /** The server refused us (`peerDenied`); gets the deny payload. */
  onJoinError?: (metadata: any) => void;
  /** Media of a remote track is available: `track` and `stream` are set. */
  onTrackReady?: (ctx: TrackContext) => void;
  /** A remote peer announced a new track (`tracksAdded`); media follows later with onTrackReady. */
  onTrackAdded?: (ctx: TrackContext) => void;
  /** A remote track is gone (`tracksRemoved`, or its peer left). */
  onTrackRemoved?: (ctx: TrackContext) => void;
  /** A remote track changed its metadata (`trackUpdated`). */
  onTrackUpdated?: (ctx: TrackContext) => void;
  onPeerJoined?: (peer: Peer) => void;
  onPeerLeft?: (peer: Peer) => void;
  onPeerUpdated?: (peer: Peer) => void;
  /** The server reported an error, or joining failed; the client has already left. */
  onConnectionError?: (message: string) => void;
  /**
   * Extension beyond the original client (optional, so apps written against the original are
   * unaffected): the state of the media connection (`RTCPeerConnection.connectionState`).
   */
  onConnectionStateChange?: (state: RTCPeerConnectionState) => void;
  /**
   * Extension: after signallingLost(), the server took us back as the same peer (a resumed
   * `peerAccepted`); the changes in the room were already told through the other callbacks.
   */
  onJoinResumed?: (peerId: string) => void;
}

/** Constructor argument of MembraneWebRTC. */
export interface MembraneWebRTCConfig {
  callbacks: Callbacks;
  /** Passed to `new RTCPeerConnection`. Default: `{iceServers: []}` (see DEFAULT_RTC_CONFIG). */
  rtcConfig?: RTCConfiguration;
  /** Whether the server should send us the other peers' media. Default true. */
  receiveMedia?: boolean;
  /**
   * Extension: when the media connection goes `disconnected` or `failed`, send
   * `renegotiateTracks` so the next offer restarts ICE. Default false (as the original).
   */
  restartIceOnDisconnect?: boolean;
}
