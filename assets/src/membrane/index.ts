// The MembraneWebRTC client: the class and its public types (membrane-protocol.md §1), which are
// every type of ./types.
export { MembraneWebRTC, DEFAULT_RTC_CONFIG } from "./membraneWebRTC";
export type * from "./types";
