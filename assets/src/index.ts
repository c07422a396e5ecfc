// Entry point of the room page bundle.
import { Room } from "./room";

declare global {
  interface Window {
    /**
     * Read-only handle for tests and debugging: the Room and its MembraneWebRTC client.
     * It exposes nothing the page's own script could not reach already.
     */
    videoroom?: { room: Room; webrtc: Room["webrtc"] };
  }
}

// The bundle is also harmless on pages without a room (e.g. the lobby).
if (document.getElementById("room")) {
  const room = new Room();
  window.videoroom = { room, webrtc: room.webrtc };
  room.join().catch((e) => console.error("videoroom: joining failed", e));
}
