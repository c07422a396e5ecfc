// The MembraneWebRTC client: the class and its public types (membrane-protocol.md §1).
export { MembraneWebRTC, DEFAULT_RTC_CONFIG } from "./membraneWebRTC";
export type {
  Callbacks,
  MembraneWebRTCConfig,
  Peer,
  SerializedMediaEvent,
  TrackContext,
} from "./types";
