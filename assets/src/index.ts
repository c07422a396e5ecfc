// Entry point of the room page bundle.
import { MembraneWebRTC } from "./membrane";
import { Room } from "./room";

declare global {
  interface Window {
    /**
     * Handle for tests and debugging: the MembraneWebRTC class, and on the room page the Room and
     * its client. It exposes nothing the page's own scripts could not reach already.
     */
    videoroom?: { MembraneWebRTC: typeof MembraneWebRTC; room?: Room; webrtc?: Room["webrtc"] };
  }
}

window.videoroom = { MembraneWebRTC };

// The bundle is also harmless on pages without a room (e.g. the lobby).
if (document.getElementById("room")) {
  const room = new Room();
  window.videoroom = { MembraneWebRTC, room, webrtc: room.webrtc };
  room.join().catch((e) => console.error("videoroom: joining failed", e));
}
