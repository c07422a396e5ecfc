// Loads the two real, unchanged phoenix.js clients (npm aliases `phoenix-1.6` and `phoenix-1.8`)
// into a browser-like global scope on Node.
//
// phoenix.js reads its globals once, when the module is evaluated:
//   const global = self || window || <1.6: undefined | 1.8: globalThis>
// and later looks up `global.WebSocket`, `global.XMLHttpRequest`, `global.fetch`.
// * 1.8 is imported first with no `self`/`window`, so its scope is `globalThis`, where we put
//   the `ws` package's WebSocket (Node 20 has none). Its LongPoll then uses Node's own `fetch`
//   and `AbortController`, the path phoenix.js 1.8 takes when there is no XMLHttpRequest.
// * 1.6 has no fetch path and no globalThis fallback: it is imported while `self` is a scope
//   object holding `ws`'s WebSocket and our XMLHttpRequest (./xhr.mjs); `self` is removed
//   again right after, so 1.8 never sees the XMLHttpRequest.
import { readFileSync } from "node:fs";
import { WebSocket as WsWebSocket } from "ws";
import { NodeXMLHttpRequest } from "./xhr.mjs";

// The packages do not export package.json; read it from test/node_modules directly.
function installedVersion(alias) {
  const pkg = JSON.parse(readFileSync(new URL(`../../node_modules/${alias}/package.json`, import.meta.url), "utf8"));
  return pkg.version;
}

if (typeof globalThis.self !== "undefined" || typeof globalThis.window !== "undefined") {
  throw new Error("phoenix_clients.mjs must be loaded before anything defines `self` or `window`");
}

// Always the `ws` implementation, even on a Node version that ships its own WebSocket, so every
// run exercises the same client stack.
globalThis.WebSocket = WsWebSocket;

const phoenix18 = await import("phoenix-1.8");

const scope16 = { WebSocket: WsWebSocket, XMLHttpRequest: NodeXMLHttpRequest };
globalThis.self = scope16;
let phoenix16;
try {
  phoenix16 = await import("phoenix-1.6");
} finally {
  delete globalThis.self;
}

/** The clients under test, oldest first. */
export const clients = [
  {
    name: `phoenix@${installedVersion("phoenix-1.6")}`,
    version: installedVersion("phoenix-1.6"),
    Socket: phoenix16.Socket,
    LongPoll: phoenix16.LongPoll,
    Presence: phoenix16.Presence,
    /** The `authToken` option (Sec-WebSocket-Protocol / X-Phoenix-AuthToken) came with 1.8.0. */
    hasAuthToken: false,
    /** phoenix.js 1.6 has no `longPollFallbackMs` (added in 1.7.11). */
    hasLongPollFallback: false,
    /** LongPoll sends one POST per push, several in flight at once: no order across pushes. */
    longPollKeepsPushOrder: false,
    /** How LongPoll reaches the server in this client. */
    longPollHttp: "XMLHttpRequest (test/node/support/xhr.mjs over node:http)",
  },
  {
    name: `phoenix@${installedVersion("phoenix-1.8")}`,
    version: installedVersion("phoenix-1.8"),
    Socket: phoenix18.Socket,
    LongPoll: phoenix18.LongPoll,
    Presence: phoenix18.Presence,
    hasAuthToken: true,
    hasLongPollFallback: true,
    /** LongPoll batches pushes into ndjson POSTs, one in flight at a time: pushes stay in order. */
    longPollKeepsPushOrder: true,
    longPollHttp: "fetch (Node's own)",
  },
];

if (clients[0].version !== "1.6.0" || !clients[1].version.startsWith("1.8.")) {
  throw new Error(`unexpected phoenix versions installed: ${clients.map((c) => c.version).join(", ")}; run npm ci in test/`);
}
