// Entry point of the room page bundle.
import { MembraneWebRTC } from "./membrane";
import { showPrejoin, type JoinChoice } from "./prejoin";
import { Room, inCallState, takeDisplayName } from "./room";
import { getRoomId } from "./room_ui";
import { Shell } from "./shell";

declare global {
  interface Window {
    /**
     * Handle for tests and debugging: the MembraneWebRTC class, and on the room page the Room and
     * its client (once the user joined). It exposes nothing the page's own scripts could not reach.
     */
    videoroom?: { MembraneWebRTC: typeof MembraneWebRTC; room?: Room; webrtc?: Room["webrtc"] };
  }
}

window.videoroom = { MembraneWebRTC };

function start(shell: Shell, choice: JoinChoice): void {
  const room = new Room(shell, choice);
  window.videoroom = { MembraneWebRTC, room, webrtc: room.webrtc };
  room.join().catch((e) => console.error("videoroom: joining failed", e));
}

// The bundle is also harmless on pages without a room (e.g. the lobby).
if (document.getElementById("room")) {
  const roomId = getRoomId();
  const shell = new Shell(roomId);
  // A link with a name (the lobby's redirect, the tutorial's flow) joins at once, and so does a
  // reload of a tab that was in the call; an invite link shows the pre-join screen first.
  const named = takeDisplayName();
  const direct: JoinChoice | undefined =
    named !== undefined ? { displayName: named, audio: true, video: true } : inCallState(roomId);
  if (direct) start(shell, direct);
  else void showPrejoin(roomId).then((choice) => start(shell, choice));
}
