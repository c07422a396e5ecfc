// An HTTP proxy on 127.0.0.1 standing for a network that blocks WebSockets: plain HTTP requests
// (the LongPoll GETs/POSTs) are forwarded to the target server unchanged, WebSocket upgrades are
// either refused with HTTP 403 (`mode: "refuse"`) or left hanging unanswered (`mode: "hang"`,
// like a proxy that swallows the upgrade). It counts what it saw, by kind, in `seen`.
import http from "node:http";

export class WebSocketBlockingProxy {
  constructor(targetPort, mode) {
    if (mode !== "refuse" && mode !== "hang") throw new Error(`unknown mode ${mode}`);
    this.targetPort = targetPort;
    this.mode = mode;
    this.seen = { upgrades: [], requests: [] };
    this.sockets = new Set();
    this.server = http.createServer((req, res) => this.#forward(req, res));
    this.server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
    this.server.on("upgrade", (req, socket) => {
      this.seen.upgrades.push(req.url);
      if (this.mode === "refuse") {
        socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      }
      // "hang": keep the socket open and never answer.
    });
  }

  static async start(targetPort, mode) {
    const proxy = new WebSocketBlockingProxy(targetPort, mode);
    await new Promise((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
    proxy.port = proxy.server.address().port;
    return proxy;
  }

  #forward(req, res) {
    this.seen.requests.push(`${req.method} ${req.url}`);
    const upstream = http.request(
      { host: "127.0.0.1", port: this.targetPort, method: req.method, path: req.url, headers: req.headers },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode, upstreamRes.headers);
        upstreamRes.pipe(res);
      },
    );
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  }

  async close() {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
